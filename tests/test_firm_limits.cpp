// Firm-wide budgets (docs/operations.md): a Guard consumes only its lease (firm_limit_exceeded
// when it is used up, firm_lease_expired when none is in force), held budgets follow the
// working orders, and the leases given by PostgresFirmLimits never add up to more than the
// budget, across Guards, processes and a process SIGKILLed mid-run.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "kakunin/fleet.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/postgres_credentials.hpp"
#include "kakunin/postgres_firm_limits.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "kakunin/testing.hpp"
#include "pg_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

extern char** environ;

using namespace kakunin;
using namespace std::chrono_literals;

namespace {

// Every day, all day: the firm tests run on the wall clock.
const std::string always_scope_json = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR"],
  "counterparties": ["exchange_a"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1"],
  "limits": {"max_orders_per_second": 100000}
})";

const Scope& always_scope() {
    static const Scope s = parse_scope_json(always_scope_json);
    return s;
}

Order order(const char* id, std::int64_t eur) {
    Order o = test::good_order();
    o.client_order_id = id;
    o.quantity = Decimal{1, 0};
    o.price = Decimal{eur, 0};
    o.reference_price = std::nullopt;
    return o;
}

constexpr std::int64_t eur6 = 1000000;  // one euro in the leases' units

}  // namespace

TEST_CASE("firm limits: a Guard consumes only its lease and refuses past it") {
    ManualClock clock(utc(2024, 1, 8, 12, 0, 0));
    auto source =
        std::make_shared<TestFirmLimits>(FirmBudgetKind::daily_notional, "EUR", 1000 * eur6);
    GuardOptions options;
    options.firm_limits = source;
    {
        Guard guard(always_scope(), clock, options);
        // No grant yet: nothing is allowed, for the right reason.
        Decision d = guard.check(order("a", 100));
        CHECK(d.reasons.contains(ReasonCode::firm_lease_expired));
        CHECK_FALSE(d.reasons.contains(ReasonCode::firm_limit_exceeded));

        source->lease()->grant(250 * eur6, 0, clock.now_ns() + 1'000'000'000);
        CHECK(guard.check(order("b", 100)).allowed());
        CHECK(guard.check(order("c", 100)).allowed());
        CHECK(source->lease()->consumed() == 200 * eur6);
        d = guard.check(order("d", 100));  // 300 > 250
        CHECK(d.reasons.contains(ReasonCode::firm_limit_exceeded));
        CHECK(source->lease()->consumed() == 200 * eur6);  // a refused order takes nothing
        CHECK(guard.check(order("e", 50)).allowed());      // exactly the grant
        CHECK(source->lease()->consumed() == 250 * eur6);

        // The slice: consumption may not run further ahead of what the keeper knows.
        source->lease()->grant(10000 * eur6, 250 * eur6, clock.now_ns() + 1'000'000'000);
        CHECK(guard.check(order("f", 900)).allowed());  // 1150 <= 250 + 1000
        CHECK(guard.check(order("g", 200)).reasons.contains(ReasonCode::firm_limit_exceeded));

        // Past its expiry the lease is not in force, whatever is left of it.
        clock.advance(2s);
        CHECK(guard.check(order("h", 1)).reasons.contains(ReasonCode::firm_lease_expired));
        source->lease()->grant(10000 * eur6, 1150 * eur6, clock.now_ns() + 1'000'000'000);
        CHECK(guard.check(order("j", 1)).allowed());
    }
    CHECK(source->detached() == 1);  // the Guard gave its lease back

    // A budget kept in another currency than the order's quote refuses it: amounts are never
    // converted.
    auto usd = std::make_shared<TestFirmLimits>(FirmBudgetKind::daily_notional, "USD", 1000 * eur6);
    GuardOptions uo;
    uo.firm_limits = usd;
    Guard guard(always_scope(), clock, uo);
    usd->lease()->grant(10000 * eur6, 0, clock.now_ns() + 1'000'000'000);
    CHECK(guard.check(order("k", 1)).reasons.contains(ReasonCode::firm_limit_exceeded));
    CHECK(usd->lease()->consumed() == 0);
}

TEST_CASE("firm limits: an open-orders budget follows the working orders") {
    ManualClock clock(utc(2024, 1, 8, 12, 0, 0));
    auto source = std::make_shared<TestFirmLimits>(FirmBudgetKind::open_orders, "", 100);
    GuardOptions options;
    options.firm_limits = source;
    Guard guard(always_scope(), clock, options);
    source->lease()->grant(2, 0, clock.now_ns() + 10'000'000'000);
    CHECK(guard.check(order("a", 10)).allowed());
    CHECK(guard.check(order("b", 10)).allowed());
    CHECK(source->lease()->consumed() == 2);
    CHECK(guard.check(order("c", 10)).reasons.contains(ReasonCode::firm_limit_exceeded));
    // A fill ends order a: its place in the budget is free again.
    ExecutionReport fill;
    fill.type = ExecutionType::fill;
    fill.client_order_id = "a";
    fill.instrument = "BTC_EUR";
    fill.side = Side::buy;
    fill.quantity = Decimal{1, 0};
    fill.price = Decimal{10, 0};
    guard.on_execution(fill);
    CHECK(source->lease()->consumed() == 1);
    CHECK(guard.check(order("c", 10)).allowed());
    CHECK(source->lease()->consumed() == 2);
}

// ---- PostgreSQL --------------------------------------------------------------------------

namespace {

FirmBudget daily_budget(const std::string& id, std::int64_t eur, std::int64_t chunk_eur) {
    FirmBudget b;
    b.id = id;
    b.kind = FirmBudgetKind::daily_notional;
    b.currency = "EUR";
    b.amount = eur * eur6;
    b.chunk = chunk_eur * eur6;
    b.set_by = "Jane Doe";
    b.reason = "desk A daily credit";
    b.set_at_ns = SystemClock().now_ns();
    return b;
}

std::int64_t budget_field(const std::string& conninfo, const std::string& id,
                          std::int64_t FirmBudgetState::*field) {
    for (const FirmBudgetState& s : firm_budget_states(conninfo))
        if (s.budget.id == id) return s.*field;
    return -1;
}

}  // namespace

TEST_CASE("firm limits: two Guards on PostgreSQL never allow more than the budget together") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    std::uint64_t recorded = 0;
    CHECK(set_firm_budget(db.app(), daily_budget("desk-a", 10000, 500),
                          [&] { return ++recorded + 41; }) == 42);
    // The database refuses what it must, and then nothing is recorded.
    FirmBudget bad = daily_budget("desk-a", 10000, 500);
    bad.kind = FirmBudgetKind::open_orders;
    bad.currency = "";
    CHECK_NOTHROW(set_firm_budget(db.app(), bad, [&] { return ++recorded; }));  // no lease yet
    CHECK(set_firm_budget(db.app(), daily_budget("desk-a", 10000, 500),
                          [&] { return ++recorded; }) > 0);
    const std::uint64_t before = recorded;

    TestAuthority authority(SystemClock().now_ns());
    SystemClock clock;
    PostgresRuntime runtime(db.app());
    PostgresFirmLimitsOptions fo;
    fo.budgets = {"desk-a"};
    auto firm = std::make_shared<PostgresFirmLimits>(runtime, fo);
    CHECK_THROWS_WITH(PostgresFirmLimits(runtime, PostgresFirmLimitsOptions{{"nope"}}),
                      Catch::Contains("budget nope is not set"));

    std::int64_t allowed_eur = 0;
    {
        std::vector<std::unique_ptr<Guard>> guards;
        for (int i = 0; i < 2; ++i) {
            GuardOptions o;
            o.firm_limits = firm;
            guards.push_back(
                std::make_unique<Guard>(authority.credentials_for(always_scope()), clock, o));
        }
        REQUIRE(firm->wait_granted(10s));
        // While leases are out, the budget's kind cannot change.
        CHECK_THROWS_WITH(set_firm_budget(db.app(), bad, [&] { return ++recorded; }),
                          Catch::Contains("cannot change while Guards hold leases"));
        CHECK(recorded == before);

        int refused_in_a_row = 0;
        const auto until = std::chrono::steady_clock::now() + 20s;
        int n = 0;
        while (refused_in_a_row < 400 && std::chrono::steady_clock::now() < until) {
            Guard& g = *guards[n % 2];
            const std::string id = "o" + std::to_string(n++);
            const Decision d = g.check(order(id.c_str(), 100));
            if (d.allowed()) {
                allowed_eur += 100;
                refused_in_a_row = 0;
            } else {
                REQUIRE((d.reasons.contains(ReasonCode::firm_limit_exceeded) ||
                         d.reasons.contains(ReasonCode::firm_lease_expired)));
                ++refused_in_a_row;
                std::this_thread::sleep_for(1ms);  // the thread tops the leases up meanwhile
            }
        }
        INFO("allowed " << allowed_eur << " EUR of 10000");
        CHECK(allowed_eur <= 10000);
        CHECK(allowed_eur >= 9000);  // the leases reached nearly all of it
    }
    // Both Guards stopped: what they consumed is spent, the rest came back.
    CHECK(budget_field(db.app(), "desk-a", &FirmBudgetState::spent) == allowed_eur * eur6);
    CHECK(budget_field(db.app(), "desk-a", &FirmBudgetState::leased) == 0);
}

// ---- three processes, ten Guards each, one budget; one process killed ---------------------

namespace {

constexpr int kProcesses = 3;
constexpr int kGuards = 10;
constexpr std::int64_t kOrderEur = 100;

// Shared with the children through a MAP_SHARED file: what each Guard allowed (euros), which
// survives a SIGKILL of its process, and each child's state.
struct Board {
    std::atomic<std::int64_t> allowed[kProcesses][kGuards];
    std::atomic<int> ready[kProcesses];
    std::atomic<int> done[kProcesses];
};

Board* map_board(const std::string& path, bool create) {
    const int fd = ::open(path.c_str(), O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0600);
    if (fd < 0) return nullptr;
    if (create && ::ftruncate(fd, sizeof(Board)) != 0) return nullptr;
    void* p = ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    return p == MAP_FAILED ? nullptr : static_cast<Board*>(p);
}

pid_t spawn_self(const std::string& test_name, const std::vector<std::string>& env) {
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) envs.emplace_back(*e);
    envs.insert(envs.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string self = "/proc/self/exe", name = test_name;
    char* argv[] = {self.data(), name.data(), nullptr};
    pid_t pid = 0;
    if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()) != 0) return -1;
    return pid;
}

std::int64_t allowed_of(const Board& b, int p) {
    std::int64_t sum = 0;
    for (int g = 0; g < kGuards; ++g) sum += b.allowed[p][g].load();
    return sum;
}

}  // namespace

TEST_CASE("firm limits child: ten Guards trade against the firm budget", "[.]") {
    const char* conninfo = std::getenv("KK_FIRM_CONNINFO");
    const char* board_path = std::getenv("KK_FIRM_BOARD");
    const char* index_text = std::getenv("KK_FIRM_INDEX");
    REQUIRE(conninfo != nullptr);
    REQUIRE(board_path != nullptr);
    REQUIRE(index_text != nullptr);
    const int p = std::atoi(index_text);
    Board* board = map_board(board_path, false);
    REQUIRE(board != nullptr);

    // The whole setup of a process in a fleet, on one runtime: feeds, fleet state, the
    // audit logs in PostgreSQL and the firm budget's leases.
    TestAuthority authority(SystemClock().now_ns(), "p" + std::to_string(p) + "-agent-");
    SystemClock clock;
    PostgresRuntimeOptions ro;
    ro.application_name = "kk-firm-p" + std::to_string(p);
    PostgresRuntime runtime(conninfo, ro);
    PostgresFirmLimitsOptions fo;
    fo.budgets = {"firm-daily"};
    fo.lease_ttl = 1500ms;
    fo.renew_before = 1000ms;
    auto firm = std::make_shared<PostgresFirmLimits>(runtime, fo);
    PostgresFleet fleet(runtime);
    REQUIRE(fleet.wait_until_listening(10s));
    {
        std::vector<std::unique_ptr<Guard>> guards;
        // Every Guard leaves the fleet before it goes, also when a failed assertion unwinds
        // this scope (the fleet's thread reads the Guards it publishes).
        struct Members {
            PostgresFleet& fleet;
            std::vector<std::unique_ptr<Guard>>& guards;
            ~Members() {
                for (auto& g : guards) fleet.remove(*g);
            }
        } members{fleet, guards};
        for (int g = 0; g < kGuards; ++g) {
            GuardCredentials c = authority.credentials_for(always_scope());
            c.revocation_feed = runtime.revocation_feed();
            c.credential_feed = runtime.credential_feed();
            GuardOptions o;
            o.firm_limits = firm;
            o.human_steps = runtime.human_step_feed();
            o.audit = AuditTrailOptions{std::make_shared<PostgresAuditSink>(
                runtime, PostgresAuditSinkOptions{c.certificate.agent_id()})};
            // Thirty Guards' records on one server, on two cores under a sanitizer, may take
            // longer than the default 2 s to become durable: this test is about the budget.
            o.audit->sink_failure_grace = 10s;
            guards.push_back(std::make_unique<Guard>(std::move(c), clock, std::move(o)));
            fleet.add(*guards.back());
        }
        fleet.publish_now();
        REQUIRE(firm->wait_granted(10s));
        board->ready[p].store(1);
        // Trade until nothing has been allowed for longer than a lease lives (so that a dead
        // process's leases have aged out and what came back of them was taken too).
        auto last_allowed = std::chrono::steady_clock::now();
        const auto give_up = last_allowed + 60s;
        std::uint64_t n = 0;
        while (std::chrono::steady_clock::now() - last_allowed < 3s &&
               std::chrono::steady_clock::now() < give_up) {
            for (int g = 0; g < kGuards; ++g) {
                const std::string id = "o" + std::to_string(n++);
                const Decision d =
                    guards[static_cast<std::size_t>(g)]->check(order(id.c_str(), kOrderEur));
                if (d.allowed()) {
                    board->allowed[p][g].fetch_add(kOrderEur);
                    last_allowed = std::chrono::steady_clock::now();
                } else if (!d.reasons.contains(ReasonCode::firm_limit_exceeded) &&
                           !d.reasons.contains(ReasonCode::firm_lease_expired)) {
                    FAIL("refused for another reason: " << to_string(*d.reasons.begin()));
                }
            }
            std::this_thread::sleep_for(2ms);
        }
    }  // the Guards stop: their leases go back
    board->done[p].store(1);
}

TEST_CASE("firm limits: 3 processes x 10 Guards share a budget and a killed one's lease returns") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    constexpr std::int64_t budget_eur = 3'000'000;
    constexpr std::int64_t chunk_eur = 1'000;
    REQUIRE(set_firm_budget(db.app(), daily_budget("firm-daily", budget_eur, chunk_eur),
                            [] { return std::uint64_t{1}; }) == 1);
    test::TempDir dir;
    const std::string board_path = (dir.path() / "board").string();
    Board* board = map_board(board_path, true);
    REQUIRE(board != nullptr);

    std::vector<pid_t> pids;
    for (int p = 0; p < kProcesses; ++p) {
        pids.push_back(spawn_self("firm limits child: ten Guards trade against the firm budget",
                                  {"KK_FIRM_CONNINFO=" + db.app(), "KK_FIRM_BOARD=" + board_path,
                                   "KK_FIRM_INDEX=" + std::to_string(p)}));
        REQUIRE(pids.back() > 0);
    }
    auto wait_for = [](std::chrono::milliseconds limit, auto&& done) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(2ms);
        return done();
    };
    REQUIRE(wait_for(60s, [&] {
        return board->ready[0].load() && board->ready[1].load() && board->ready[2].load();
    }));
    // Each process, with its feeds, fleet state, audit logs and leases, holds at most 2
    // connections; and the fleet view lists all 30 agents.
    for (int p = 0; p < kProcesses; ++p) {
        const std::string n =
            su.value("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                     {"kk-firm-p" + std::to_string(p) + "%"});
        CHECK(std::stoi(n) <= 2);
    }
    const test::CommandResult fleet_status =
        test::run_command({KAKUNIN_CLI_PATH, "fleet", "status", "--postgres", db.app(), "--json"});
    REQUIRE(fleet_status.status == 0);
    const auto fleet_json = nlohmann::json::parse(fleet_status.output);
    CHECK(fleet_json["agents"].size() == kProcesses * kGuards);
    for (const auto& a : fleet_json["agents"]) CHECK(a["state"] == "trading");
    // Kill the third process mid-run: once a quarter of the budget is used.
    REQUIRE(wait_for(60s, [&] {
        return allowed_of(*board, 0) + allowed_of(*board, 1) + allowed_of(*board, 2) >=
               budget_eur / 4;
    }));
    REQUIRE(::kill(pids[2], SIGKILL) == 0);
    int status = 0;
    ::waitpid(pids[2], &status, 0);
    CHECK(WIFSIGNALED(status));
    const std::int64_t killed_allowed = allowed_of(*board, 2);
    // The killed process's leases are still out, counted in full, until they age out.
    const std::string killed_rows_sql =
        "SELECT count(*) FROM kakunin_audit.firm_leases WHERE holder LIKE $1";
    const std::string killed_holder = "%:" + std::to_string(pids[2]) + ":%";
    CHECK(su.value(killed_rows_sql, {killed_holder}) == std::to_string(kGuards));

    for (int p = 0; p < 2; ++p) {
        ::waitpid(pids[static_cast<std::size_t>(p)], &status, 0);
        CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    const std::int64_t survivors = allowed_of(*board, 0) + allowed_of(*board, 1);
    const std::int64_t total = survivors + killed_allowed;
    const std::int64_t spent = budget_field(db.app(), "firm-daily", &FirmBudgetState::spent);
    INFO("allowed " << total << " EUR of " << budget_eur << " (killed process: " << killed_allowed
                    << "), spent on record " << spent / eur6);
    // Never more than the budget, across all 30 Guards.
    CHECK(total <= budget_eur);
    // Every Guard traded while its lease lasted.
    for (int p = 0; p < kProcesses; ++p)
        for (int g = 0; g < kGuards; ++g) CHECK(board->allowed[p][g].load() > 0);
    // The killed process's leases aged out and came back: no row of it is left, nothing is
    // leased any more, and what it may have consumed (its report plus one slice per lease) is
    // spent, no less than what it really allowed.
    CHECK(su.value(killed_rows_sql, {killed_holder}) == "0");
    CHECK(budget_field(db.app(), "firm-daily", &FirmBudgetState::leased) == 0);
    CHECK(spent <= budget_eur * eur6);
    CHECK(spent >= total * eur6);
    CHECK(spent - survivors * eur6 <= (killed_allowed + kGuards * chunk_eur) * eur6);
    // The survivors used what came back: the budget is spent but for the killed process's
    // slices and the last fragment of each lease.
    CHECK(spent >= (budget_eur - kGuards * chunk_eur - 2 * kGuards * kOrderEur) * eur6);
    ::munmap(board, sizeof(Board));
}

TEST_CASE("firm limits: an amend that raises the notional consumes the daily lease") {
    ManualClock clock(utc(2024, 1, 8, 12, 0, 0));
    // Working orders tracked for a lifecycle limit, without a notional limit of the scope's own.
    std::string json = always_scope_json;
    json.replace(json.find(R"("max_orders_per_second": 100000)"), 31,
                 R"("max_orders_per_second": 100000, "max_open_orders": 10)");
    const Scope scope = parse_scope_json(json);
    auto firm =
        std::make_shared<TestFirmLimits>(FirmBudgetKind::daily_notional, "EUR", 100000 * eur6);
    GuardOptions options;
    options.firm_limits = firm;
    Guard guard(scope, clock, options);
    firm->lease()->grant(1000 * eur6, 0, clock.now_ns() + 10'000'000'000);
    REQUIRE(guard.check(order("a", 100)).allowed());
    CHECK(firm->lease()->consumed() == 100 * eur6);
    Amend up;
    up.client_order_id = "a";
    up.quantity = Decimal{5, 0};  // 5 @ 100: 400 more
    CHECK(guard.amend(up).allowed());
    CHECK(firm->lease()->consumed() == 500 * eur6);
    up.quantity = Decimal{20, 0};  // 2,000 in all: past the 1,000 granted
    CHECK(guard.amend(up).reasons.contains(ReasonCode::firm_limit_exceeded));
    CHECK(firm->lease()->consumed() == 500 * eur6);
    Amend down;
    down.client_order_id = "a";
    down.quantity = Decimal{2, 0};  // lowering takes nothing and gives nothing back
    CHECK(guard.amend(down).allowed());
    CHECK(firm->lease()->consumed() == 500 * eur6);
}

TEST_CASE(
    "firm limits: a held budget keeps an orphaned lease's orders reserved until a person "
    "releases them") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    FirmBudget b;
    b.id = "desk-orders";
    b.kind = FirmBudgetKind::open_orders;
    b.amount = 10;
    b.chunk = 2;
    b.set_by = "Jane Doe";
    b.reason = "desk A working orders";
    set_firm_budget(db.app(), b, [] { return std::uint64_t{1}; });
    test::PgSession app(db.app());
    auto lease = [&](const std::string& holder, int consumed, int want, int ttl_ms) {
        return std::stoll(app.value(
            "SELECT granted FROM kakunin_audit.firm_lease('desk-orders', $1, 'agent', $2, $3, 2, "
            "$4, false)",
            {holder, std::to_string(consumed), std::to_string(want), std::to_string(ttl_ms)}));
    };
    // Holder A reports 4 working orders and is granted up to 8; then it stops renewing
    // (its process lost the database, its orders may still rest at the venue).
    CHECK(lease("a", 4, 4, 50) == 8);
    std::this_thread::sleep_for(100ms);
    // B's call ages A out: A keeps what its orders may hold (4 reported + a slice of 2), and
    // B gets only the rest.
    CHECK(lease("b", 0, 10, 5000) == 4);
    CHECK(app.value("SELECT orphaned::text || ' ' || granted FROM kakunin_audit.firm_leases WHERE "
                    "holder = 'a'") == "true 6");
    auto status = firm_budget_states(db.app());
    REQUIRE(status.size() == 1);
    CHECK(status[0].orphaned == 1);
    CHECK(status[0].leased == 10);

    // A person releases them (through the CLI: recorded in the CA log first).
    test::TempDir dir;
    const std::string state = (dir.path() / "ca").string();
    const auto env = std::string("KAKUNIN_KMS_PASSPHRASE=firm-test");
    REQUIRE(
        test::run_command({"env", env, KAKUNIN_CLI_PATH, "ca", "init", "--dir", state}).status ==
        0);
    const test::CommandResult released = test::run_command(
        {"env", env, KAKUNIN_CLI_PATH, "firm", "release", "--dir", state, "--postgres", db.app(),
         "--budget", "desk-orders", "--by", "Jane Doe", "--reason", "cancelled at the venue"});
    INFO(released.output);
    REQUIRE(released.status == 0);
    CHECK_THAT(released.output, Catch::Contains("1 orphaned lease(s) of desk-orders released"));
    CHECK(lease("b", 0, 10, 5000) == 10);
    CHECK(firm_budget_states(db.app())[0].orphaned == 0);
    const test::CommandResult unknown = test::run_command(
        {"env", env, KAKUNIN_CLI_PATH, "firm", "release", "--dir", state, "--postgres", db.app(),
         "--budget", "nope", "--by", "Jane Doe", "--reason", "x"});
    CHECK(unknown.status != 0);
    CHECK_THAT(unknown.output, Catch::Contains("firm budget nope is not set"));
}
