// A Guard restarted on its own log is the Guard that stopped (docs/restart.md): halt and
// reduce-only mode with who and why, the day's totals, rate windows, working orders, positions,
// observation, incidents with their deadlines, an automatic halt that only a signed re-enable
// lifts. The differential case runs one random trading day twice, once uninterrupted and once
// stopped and restarted at random points, and requires every decision after each restart to be
// the uninterrupted run's. (tests/test_restart_kill.cpp kills a trading process with SIGKILL.)
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kakunin/audit_verify.hpp"
#include "kakunin/audit_writer.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using namespace kakunin;

namespace {

const std::string k_limits = R"("limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 5,
    "max_daily_notional": {"currency": "EUR", "amount": "400000.00"},
    "max_position": {"BTC_EUR": {"long": "5", "short": "3"}},
    "max_open_orders": 6,
    "max_working_notional": {"currency": "EUR", "amount": "200000.00"},
    "max_messages_per_second": 8,
    "max_daily_loss": {"currency": "EUR", "amount": "3000.00"}
  })";

Scope lifecycle_scope() {
    return parse_scope_json(test::seed_with(R"("limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"}
  })",
                                            k_limits));
}

/// One agent's credentials and a log file; guard() opens a Guard on them (restoring).
struct Desk {
    explicit Desk(TimeNs start = test::monday(9)) : authority(start) {}
    test::TempDir dir;
    TestAuthority authority;
    GuardCredentials creds = authority.credentials_for(lifecycle_scope());
    std::string log = (dir.path() / "agent.jsonl").string();
    std::vector<std::string> errors;

    std::unique_ptr<Guard> guard(GuardOptions o = {}, const std::string& path = {}) {
        o.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(path.empty() ? log : path)};
        o.incident_thread = false;
        auto g = std::make_unique<Guard>(creds, authority.clock(), o);
        g->set_error_handler([this](std::string_view m) { errors.emplace_back(m); });
        return g;
    }
    ManualClock& clock() { return authority.clock(); }
};

Order order(const std::string& id, Side side, const char* quantity, const char* price = "40000",
            const char* instrument = "BTC_EUR") {
    Order o = test::good_order();
    o.client_order_id = id;
    o.instrument = instrument;
    o.side = side;
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal(price);
    o.reference_price = o.price;
    return o;
}

ExecutionReport fill(const std::string& id, const char* quantity, const char* price) {
    ExecutionReport e;
    e.type = ExecutionType::fill;
    e.client_order_id = id;
    e.quantity = parse_decimal(quantity);
    e.price = parse_decimal(price);
    return e;
}

std::string text(const Decision& d) {
    std::string s = to_string(d.verdict);
    for (ReasonCode r : d.reasons) s += std::string(" ") + to_string(r);
    return s;
}

std::string text(const LifecycleState& s) {
    std::string out = "filled " + s.filled_today + " working " + s.working_notional + " pnl " +
                      s.daily_pnl + (s.reduce_only ? " reduce-only" : "");
    for (const auto& p : s.positions)
        out +=
            " | " + p.instrument + " " + p.position + " +" + p.working_buy + " -" + p.working_sell;
    for (const auto& id : s.working_orders) out += " " + id;
    return out;
}

}  // namespace

TEST_CASE(
    "a restarted Guard keeps its halt, reduce-only mode, totals, working orders and "
    "positions",
    "[restart]") {
    Desk d;
    std::string before, halt_id;
    {
        auto g = d.guard();
        REQUIRE(g->check(order("a", Side::buy, "2")).allowed());
        REQUIRE(g->check(order("b", Side::buy, "1")).allowed());
        d.clock().advance(std::chrono::seconds(1));
        REQUIRE(g->on_execution(fill("a", "2", "40000")).applied);
        g->reduce_only("desk limit review", "R. Risk");
        halt_id = g->halt("end of session", "J. Doe");
        before = text(g->lifecycle_state());
    }
    auto g = d.guard();
    CHECK(g->halted());
    REQUIRE(g->current_halt());
    CHECK(g->current_halt()->by == "J. Doe");
    CHECK(g->current_halt()->reason == "end of session");
    CHECK(g->current_halt()->halt_id == halt_id);
    CHECK(g->reduce_only_in_force());
    CHECK(text(g->lifecycle_state()) == before);
    CHECK(g->working_orders() == std::vector<std::string>{"b"});
    CHECK(g->check(order("c", Side::buy, "1")).reasons.contains(ReasonCode::halted));

    g->resume("J. Doe");
    g->lift_reduce_only("R. Risk");
    // 2 BTC filled + 1 working at 40,000 = 120,000 of the day's 400,000: 8 ETH more is over.
    const Decision over = g->check(order("d", Side::sell, "8", "40000", "ETH_EUR"));
    INFO(text(over));
    CHECK(over.reasons.contains(ReasonCode::daily_notional_exceeded));
    CHECK(g->check(order("e", Side::buy, "1")).allowed());
    // A working order of the first run can still be cancelled and reported on.
    CHECK(g->cancel(Cancel{"b"}).allowed());
}

TEST_CASE(
    "a halt restored from the log hands its working orders to on_cancel_all when the "
    "first run never did",
    "[restart]") {
    Desk d;
    {
        auto g = d.guard();
        REQUIRE(g->check(order("a", Side::buy, "1")).allowed());
        REQUIRE(g->check(order("b", Side::sell, "1", "40100")).allowed());
        g->halt("drill", "J. Doe");  // no on_cancel_all: the list went nowhere but the log
    }
    std::vector<CancelAll> lists;
    GuardOptions o;
    o.on_cancel_all = [&](const CancelAll& c) { lists.push_back(c); };
    { auto g = d.guard(o); }
    CHECK(lists.empty());  // the log shows the first run's guard.cancel_all for that halt

    // A log whose halt has no cancel list (the process died right after the halt record).
    // Rebuilt through a memory sink: the log must stay a valid chain to be opened at all.
    auto rebuilt = std::make_shared<MemoryAuditSink>();
    {
        // Re-record the first run without its cancel list: a fresh log with the same decisions.
        Desk e;
        GuardOptions plain;
        plain.audit = AuditTrailOptions{rebuilt};
        plain.incident_thread = false;
        {
            Guard g(e.creds, e.clock(), plain);
            REQUIRE(g.check(order("a", Side::buy, "1")).allowed());
            REQUIRE(g.check(order("b", Side::sell, "1", "40100")).allowed());
        }
        // The halt record alone, as a crash right after it leaves the log.
        const AuditSigner signer{*e.creds.kms, e.creds.key, e.creds.certificate.fingerprint()};
        AuditLogWriter w(*rebuilt, e.clock(), signer,
                         AuditWriterOptions{e.creds.certificate.agent_id()}, signer);
        w.append(audit_event::guard_halted,
                 R"({"automatic":false,"by":"J. Doe","halt":"halt-x-1","reason":"drill"})");
        w.flush();
        lists.clear();
        GuardOptions again = o;
        again.audit = AuditTrailOptions{rebuilt};
        again.incident_thread = false;
        Guard restarted(e.creds, e.clock(), again);
        CHECK(restarted.halted());
        REQUIRE(lists.size() == 1);
        CHECK(lists[0].halt_id == "halt-x-1");
        CHECK(lists[0].order_ids == std::vector<std::string>{"a", "b"});
    }
}

namespace {

/// One request or report of a random trading day.
struct Step {
    int kind;  // 0 new, 1 amend, 2 cancel, 3 fill, 4 cancelled, 5 mark, 6 halt/resume,
               // 7 reduce-only, 8 acknowledge the newest open incident
    std::string id;
    Side side;
    std::string quantity, price;
    TimeNs at;
    std::string region = "eu-west-1";
};

std::vector<Step> random_day(unsigned seed, TimeNs t0, int count, bool acks = false) {
    std::mt19937_64 rng(seed);
    std::vector<Step> steps;
    TimeNs at = t0;
    int next_id = 0;
    for (int i = 0; i < count; ++i) {
        at += static_cast<TimeNs>(rng() % 400'000'000);  // up to 0.4 s apart: rates bite
        Step s;
        s.kind = static_cast<int>(rng() % 11);
        if (s.kind > 7) s.kind = 0;
        s.id = "o" + std::to_string(s.kind == 0 ? next_id++ : next_id > 0 ? rng() % next_id : 0);
        s.side = rng() % 2 ? Side::buy : Side::sell;
        s.quantity = std::to_string(1 + rng() % 3);
        s.price = std::to_string(39000 + rng() % 2000);
        s.at = at;
        if (i % 8 == 3) s.region = "eu-central-1";  // unseen by a baseline learned on eu-west-1
        if (acks && i % 150 == 149) s.kind = 8;     // the first after the window
        steps.push_back(s);
    }
    return steps;
}

/// Halted, the lifecycle figures, and each incident's state, escalation and warnings.
std::string state_text(const Guard& g) {
    std::string incidents;
    for (const Incident& i : g.incidents())
        incidents += std::string(" ") + to_string(i.state) + (i.escalated ? "!" : "") + "/" +
                     std::to_string(i.warnings);
    return (g.halted() ? "halted " : "") + text(g.lifecycle_state()) +
           (incidents.empty() ? "" : " | incidents" + incidents);
}

/// Puts one step through the Guard at its time; what it decided, and the state after it.
std::string apply_step(Guard& g, ManualClock& clock, const Step& s) {
    clock.set(s.at);
    std::string out;
    switch (s.kind) {
        case 0: {
            Order o = order(s.id, s.side, s.quantity.c_str(), s.price.c_str());
            o.region = s.region;
            out = text(g.check(o));
            break;
        }
        case 1: {
            Amend a{s.id, parse_decimal(s.quantity), parse_decimal(s.price)};
            a.reference_price = a.price;
            out = text(g.amend(a));
            break;
        }
        case 2: out = text(g.cancel(Cancel{s.id})); break;
        case 3:
            out =
                g.on_execution(fill(s.id, "1", s.price.c_str())).applied ? "filled" : "not filled";
            break;
        case 4: {
            ExecutionReport e;
            e.type = ExecutionType::cancelled;
            e.client_order_id = s.id;
            out = g.on_execution(e).order_closed ? "closed" : "open";
            break;
        }
        case 5: {
            ExecutionReport e;
            e.type = ExecutionType::mark;
            e.instrument = "BTC_EUR";
            e.price = parse_decimal(s.price);
            out = g.on_execution(e).reduce_only_entered ? "reduce-only" : "marked";
            break;
        }
        case 6:
            if (g.halted()) {
                g.resume("J. Doe");
                out = "resumed";
            } else {
                g.halt("pause", "J. Doe");
                out = "halted";
            }
            break;
        case 7:
            if (g.reduce_only_in_force()) {
                g.lift_reduce_only("R. Risk");
                out = "lifted";
            } else {
                g.reduce_only("risk review", "R. Risk");
                out = "reduce-only";
            }
            break;
        default: {
            // Acknowledges the newest open incident; with none, a mark (every step makes one
            // record: steps_in_log counts them).
            const auto incidents = g.incidents();
            auto open = std::find_if(incidents.rbegin(), incidents.rend(), [](const Incident& i) {
                return i.state == IncidentState::open;
            });
            if (open != incidents.rend()) {
                g.acknowledge_incident(open->id, "On Call", "looking");
                out = "acknowledged";
            } else {
                ExecutionReport e;
                e.type = ExecutionType::mark;
                e.instrument = "BTC_EUR";
                e.price = parse_decimal(s.price);
                out = g.on_execution(e).reduce_only_entered ? "reduce-only" : "marked";
            }
        }
    }
    g.process_incidents();  // on simulated time, after every step (both runs alike)
    return out + " | " + state_text(g);
}

}  // namespace

TEST_CASE("restarted at random points, a trading day decides exactly as the uninterrupted one",
          "[restart][differential]") {
    for (unsigned seed = 1; seed <= 6; ++seed) {
        CAPTURE(seed);
        Desk d;
        const std::vector<Step> steps = random_day(seed, d.clock().now_ns(), 400);
        std::vector<std::string> expected;
        {
            auto g = d.guard({}, (d.dir.path() / "uninterrupted.jsonl").string());
            for (const Step& s : steps) expected.push_back(apply_step(*g, d.clock(), s));
        }
        // The same day, stopped and restarted at a few random points.
        std::mt19937_64 rng(seed * 7919);
        const std::vector<std::size_t> stops = {rng() % 100, 100 + rng() % 100, 200 + rng() % 100,
                                                300 + rng() % 100, steps.size()};
        std::size_t i = 0;
        for (std::size_t stop : stops) {
            auto g = d.guard();
            for (; i < stop; ++i) {
                CAPTURE(i);
                REQUIRE(apply_step(*g, d.clock(), steps[i]) == expected[i]);
            }
        }
        AuditCertificates certs;
        certs.add_der(d.creds.certificate.der());
        const AuditVerifyResult r = verify_audit_log_file(d.log, certs);
        INFO(r.message);
        CHECK(r.ok);
    }
}

TEST_CASE("observation survives restarts: the builder counts from the log's first record",
          "[restart][baseline]") {
    Desk d;
    TimeNs first;
    std::uint64_t orders = 0;
    {
        auto g = d.guard();
        first = d.clock().now_ns();
        for (int day = 0; day < 3; ++day) {  // three sessions (within the test CRL's hour)
            for (int k = 0; k < 5; ++k) {
                d.clock().advance(std::chrono::minutes(1));
                const std::string id = "x" + std::to_string(day * 10 + k);
                if (g->check(order(id, Side::buy, "0.1")).allowed()) {
                    ++orders;
                    ExecutionReport e;
                    e.type = ExecutionType::cancelled;
                    e.client_order_id = id;
                    g->on_execution(e);
                }
            }
            d.clock().advance(std::chrono::minutes(5));
        }
        REQUIRE(orders == 15);
        REQUIRE(g->observation()->orders() == orders);
    }
    auto g = d.guard();
    REQUIRE(g->observation());
    CHECK(g->observation()->orders() == orders);
    // From the log's first record (the first order, a minute after the first run started), not
    // from the restart: the observation's days go on counting.
    CHECK(g->observation()->started_at() == first + 60'000'000'000LL);
    CHECK(g->observation()->started_at() < d.clock().now_ns() - 20 * 60'000'000'000LL);
}

namespace {

// Around the clock, wide limits: behaviour decides (as in tests/test_behaviour.cpp).
const char* const behaviour_scope = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "50000000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR"],
  "counterparties": ["exchange_a"],
  "trading_hours": [{"days": ["Mon","Tue","Wed","Thu","Fri","Sat","Sun"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {"max_orders_per_second": 50}
})";

constexpr TimeNs minute = 60'000'000'000LL;

Order scored(const char* region, const char* quantity, const std::string& id = "s") {
    Order o = order(id, Side::buy, quantity);
    o.region = region;
    return o;
}

/// Seven days of 0.05 .. 0.95 BTC orders every 2 minutes from eu-west-1, from `start`.
Baseline learned(const Scope& scope, const std::string& agent, TimeNs start) {
    BaselineBuilder b(scope, agent);
    b.start(start);
    unsigned n = 0;
    for (TimeNs t = start; t < start + 7 * 1440 * minute; t += 2 * minute) {
        const std::string q = "0." + std::to_string(n++ % 10) + "5";
        b.observe(scored("eu-west-1", q.c_str()), t);
    }
    return b.finalize(start + 7 * 1440 * minute);
}

struct Behaviour {
    const TimeNs start = utc(2024, 1, 1, 0, 0, 0);
    test::TempDir dir;
    TestAuthority authority{start + 7 * 1440 * minute + 600 * minute};
    GuardCredentials creds = authority.credentials_for(parse_scope_json(behaviour_scope));
    Baseline baseline =
        learned(parse_scope_json(behaviour_scope), creds.certificate.agent_id(), start);
    std::string log = (dir.path() / "agent.jsonl").string();

    std::unique_ptr<Guard> guard(ScoringPolicy policy) {
        Baseline b = baseline;
        b.policy = policy;
        GuardOptions o;
        o.baseline = ApprovedBaseline{
            b, approve_baseline(*authority.kms(), b, "C. Officer", authority.clock().now_ns(), 1)};
        o.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(log)};
        o.incident_thread = false;
        return std::make_unique<Guard>(creds, authority.clock(), o);
    }
};

}  // namespace

TEST_CASE(
    "incidents come back with their state and deadline, and an unacknowledged one "
    "escalates after the restart",
    "[restart][incident]") {
    Behaviour w;
    ScoringPolicy p;
    p.halt_on_escalation = true;
    p.investigation_window_s = 60;
    std::vector<Incident> before;
    {
        auto g = w.guard(p);
        REQUIRE(g->check(scored("eu-central-1", "0.5")).verdict == Verdict::warn);
        g->process_incidents();
        w.authority.clock().advance(std::chrono::seconds(5));
        REQUIRE(g->check(scored("eu-central-1", "0.5")).verdict == Verdict::warn);  // 2nd warning
        g->process_incidents();
        before = g->incidents();
        REQUIRE(before.size() == 1);
        REQUIRE(before[0].warnings == 2);
    }
    w.authority.clock().advance(std::chrono::seconds(30));
    {
        auto g = w.guard(p);
        auto after = g->incidents();
        REQUIRE(after.size() == 1);
        CHECK(after[0].id == before[0].id);
        CHECK(after[0].state == IncidentState::open);
        CHECK(after[0].deadline_ns == before[0].deadline_ns);
        CHECK(after[0].warnings == 2);
        CHECK(after[0].score_ppm == before[0].score_ppm);
        g->process_incidents();
        CHECK_FALSE(g->halted());  // not yet due
        w.authority.clock().advance(std::chrono::seconds(30));
        g->process_incidents();  // the restarted Guard escalates, and halts (the policy says so)
        CHECK(g->incidents()[0].escalated);
        CHECK(g->halted());
    }
    // Restarted again: the automatic halt is in force, and only a signed re-enable lifts it.
    auto g = w.guard(p);
    CHECK(g->halted());
    CHECK(g->incidents()[0].escalated);
    CHECK_THROWS_WITH(g->resume("Desk Head"), Catch::Contains("signed"));
    REQUIRE(g->current_halt());
    const auto st = sign_reenable(*w.authority.kms(), w.creds.certificate.agent_id(),
                                  g->current_halt()->halt_id, "Desk Head", "region confirmed",
                                  w.authority.clock().now_ns());
    g->reenable(st);
    CHECK_FALSE(g->halted());
    CHECK(g->check(scored("eu-west-1", "0.5")).allowed());
}

TEST_CASE(
    "an acknowledged incident does not escalate after a restart, and an automatic "
    "revocation stays in force",
    "[restart][incident]") {
    Behaviour w;
    ScoringPolicy p;
    p.halt_on_escalation = true;
    p.investigation_window_s = 60;
    {
        auto g = w.guard(p);
        REQUIRE(g->check(scored("eu-central-1", "0.5")).verdict == Verdict::warn);
        g->process_incidents();
        g->acknowledge_incident(g->incidents()[0].id, "On Call", "on it");
    }
    w.authority.clock().advance(std::chrono::minutes(5));
    {
        auto g = w.guard(p);
        g->process_incidents();
        REQUIRE(g->incidents().size() == 1);
        CHECK(g->incidents()[0].state == IncidentState::acknowledged);
        CHECK_FALSE(g->incidents()[0].escalated);
        CHECK_FALSE(g->halted());
        // 100 BTC from an unseen region: the revocation level, halted in this call.
        const Decision d = g->check(scored("eu-central-1", "100", "big"));
        REQUIRE(d.reasons.contains(ReasonCode::anomaly_revocation));
        g->process_incidents();
        REQUIRE(g->revoked());
    }
    auto g = w.guard(p);
    CHECK(g->halted());
    CHECK(g->revoked());
    CHECK(g->check(scored("eu-west-1", "0.5")).reasons.contains(ReasonCode::certificate_revoked));
    const auto st =
        sign_reenable(*w.authority.kms(), w.creds.certificate.agent_id(),
                      g->current_halt()->halt_id, "Desk Head", "try", w.authority.clock().now_ns());
    CHECK_THROWS_WITH(g->reenable(st), Catch::Contains("keyCompromise"));
}

namespace {

/// Steps of the random day the log holds: each step makes exactly one record of these.
std::size_t steps_in_log(const std::string& path) {
    std::ifstream in(path);
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) {
        const auto at = line.find("\"event\":\"");
        if (at == std::string::npos) continue;
        const std::string_view event =
            std::string_view(line).substr(at + 9, line.find('"', at + 9) - at - 9);
        const bool hot = event.substr(0, 6) == "order." || event.substr(0, 6) == "amend." ||
                         event.substr(0, 7) == "cancel." || event.substr(0, 10) == "execution.";
        const bool person =
            event == "guard.halted" || event == "guard.resumed" ||
            event == "incident.acknowledged" || event == "guard.reduce_only_lifted" ||
            (event == "guard.reduce_only" && line.find("\"by\":\"R. Risk\"") != std::string::npos);
        if (hot || person) ++n;
    }
    return n;
}

void say(int fd, const std::string& line) {
    const std::string text = line + "\n";
    std::size_t off = 0;
    while (off < text.size()) {
        const ssize_t w = ::write(fd, text.data() + off, text.size() - off);
        if (w <= 0) ::_exit(3);
        off += static_cast<std::size_t>(w);
    }
}

/// The child: a Guard restarted on the log, trading the day from where the log ends, saying
/// what it restored ("R steps state") and each step's result ("S i result") until killed.
[[noreturn]] void trade(Desk& d, const std::vector<Step>& steps, int fd,
                        const GuardOptions& options) {
    try {
        d.clock().set(steps.front().at);
        auto g = d.guard(options);
        const std::size_t done = steps_in_log(d.log);
        say(fd, "R " + std::to_string(done) + " " + state_text(*g));
        for (std::size_t i = done; i < steps.size(); ++i) {
            say(fd, "S " + std::to_string(i) + " " + apply_step(*g, d.clock(), steps[i]));
            ::usleep(200);
        }
        g.reset();
        say(fd, "D");
        ::_exit(0);
    } catch (const std::exception& e) {
        say(fd, std::string("E ") + e.what());
        ::_exit(2);
    }
}

/// Lines from a pipe.
class Lines {
public:
    explicit Lines(int fd) : m_fd(fd) {}
    bool next(std::string& line) {
        for (;;) {
            const auto nl = m_buffer.find('\n');
            if (nl != std::string::npos) {
                line = m_buffer.substr(0, nl);
                m_buffer.erase(0, nl + 1);
                return true;
            }
            char chunk[4096];
            const ssize_t n = ::read(m_fd, chunk, sizeof chunk);
            if (n <= 0) return false;
            m_buffer.append(chunk, static_cast<std::size_t>(n));
        }
    }

private:
    int m_fd;
    std::string m_buffer;
};

}  // namespace

TEST_CASE(
    "a trading process killed with SIGKILL 20 times comes back each time with its halt, "
    "reduce-only mode, totals and open incidents, and decides as the uninterrupted run",
    "[restart][kill]") {
    Desk d;
    // Behaviour too: a baseline learned from a week of eu-west-1 orders, scored on the region
    // alone, so every eu-central-1 order warns and opens or joins an incident; unacknowledged
    // for 20 s, one escalates (acknowledgements come later in the day).
    GuardOptions options;
    {
        const TimeNs start = d.clock().now_ns() - 7 * 86'400'000'000'000LL;
        BaselineBuilder b(lifecycle_scope(), d.creds.certificate.agent_id());
        b.start(start);
        for (TimeNs t = start; t < d.clock().now_ns(); t += 600'000'000'000LL)
            b.observe(order("w", Side::buy, "1"), t);
        Baseline baseline = b.finalize(d.clock().now_ns());
        for (std::size_t i = 0; i < score_component_count; ++i)
            baseline.policy.weights_ppm[i] =
                std::string(component_name(i)) == "origin" ? 1'000'000 : 0;
        baseline.policy.investigation_window_s = 20;
        options.baseline = ApprovedBaseline{
            baseline,
            approve_baseline(*d.authority.kms(), baseline, "C. Officer", d.clock().now_ns(), 1)};
    }
    const std::vector<Step> steps = random_day(42, d.clock().now_ns(), 500, true);
    std::vector<std::string> expected;
    {
        auto g = d.guard(options, (d.dir.path() / "uninterrupted.jsonl").string());
        for (const Step& s : steps) expected.push_back(apply_step(*g, d.clock(), s));
    }
    auto state_of = [&](std::size_t done) {
        if (done == 0)
            return std::string(
                "filled 0 working 0 pnl 0 | BTC_EUR 0 +0 -0 | ETH_EUR 0 +0 -0 | "
                "SOL_EUR 0 +0 -0");
        const std::string& e = expected[done - 1];
        return e.substr(e.find(" | ") + 3);
    };
    std::mt19937_64 rng(7);
    std::size_t reported = 0;  // steps a child said it had done
    int kills = 0, halted_restarts = 0, reduce_only_restarts = 0, incident_restarts = 0;
    for (int run = 0;; ++run) {
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(fds[0]);
            trade(d, steps, fds[1], options);
        }
        ::close(fds[1]);
        Lines lines(fds[0]);
        const bool kill_it = kills < 20;
        const std::size_t target = 5 + rng() % 25;
        std::size_t seen = 0;
        bool finished = false;
        std::string line;
        while (lines.next(line)) {
            INFO(line);
            REQUIRE(line.size() >= 1);
            REQUIRE(line[0] != 'E');
            if (line[0] == 'R') {
                const std::size_t done = std::stoul(line.substr(2));
                // Everything reported is in the log; at most the step in progress beyond it.
                REQUIRE(done >= reported);
                REQUIRE(done <= reported + 1);
                REQUIRE(line.substr(line.find(' ', 2) + 1) == state_of(done));
                if (line.find("halted") != std::string::npos) ++halted_restarts;
                if (line.find("reduce-only") != std::string::npos) ++reduce_only_restarts;
                if (line.find(" open") != std::string::npos) ++incident_restarts;
                reported = done;
            } else if (line[0] == 'S') {
                const std::size_t i = std::stoul(line.substr(2));
                REQUIRE(i == reported);
                REQUIRE(line.substr(line.find(' ', 2) + 1) == expected[i]);
                reported = i + 1;
                if (kill_it && ++seen == target) ::kill(pid, SIGKILL);
            } else if (line[0] == 'D') {
                finished = true;
            }
        }
        ::close(fds[0]);
        int status = 0;
        ::waitpid(pid, &status, 0);
        if (finished) {
            CHECK(WIFEXITED(status));
            break;
        }
        REQUIRE(WIFSIGNALED(status));
        ++kills;
    }
    CHECK(kills == 20);
    CHECK(reported == steps.size());
    // The day puts a halt and reduce-only mode in force often enough that restarts met them.
    CHECK(halted_restarts > 0);
    CHECK(reduce_only_restarts > 0);
    CHECK(incident_restarts > 0);  // restarts that came back with an open incident
    // The uninterrupted day had warnings, acknowledgements and escalations to match.
    CHECK(expected.back().find("incidents") != std::string::npos);
    CHECK(expected.back().find("acknowledged") != std::string::npos);
    UNSCOPED_INFO(expected.back());
    CHECK(expected.back().find("!") != std::string::npos);
    AuditCertificates certs;
    certs.add_der(d.creds.certificate.der());
    AuditVerifyOptions vo;
    vo.require_record_signatures = true;
    const AuditVerifyResult r = verify_audit_log_file(d.log, certs, vo);
    INFO(r.message);
    CHECK(r.ok);
}

namespace {

/// A file log whose disk can be unplugged: while down every write throws, nothing reaches it.
class UnpluggableSink final : public AuditSink {
public:
    explicit UnpluggableSink(const std::string& path) : m_file(path) {}
    void append(const std::string_view* lines, std::size_t count) override {
        if (down) throw Error(ErrorCategory::io, "disk unplugged");
        m_file.append(lines, count);
    }
    void flush() override {
        if (down) throw Error(ErrorCategory::io, "disk unplugged");
        m_file.flush();
    }
    std::string name() const override { return m_file.name(); }
    void for_each_line(const std::function<void(std::string_view)>& fn) override {
        m_file.for_each_line(fn);
    }
    AuditSinkRecovery recovery() const override { return m_file.recovery(); }
    std::string journal_path() const override { return m_file.journal_path(); }
    std::atomic<bool> down{false};

private:
    FileAuditSink m_file;
};

std::vector<std::string> events_of(const std::string& path, const std::string& event) {
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
        if (line.find("\"event\":\"" + event + "\"") != std::string::npos) out.push_back(line);
    return out;
}

}  // namespace

TEST_CASE(
    "a Guard stopped while its sink fails leaves the gap visible: recovered from the "
    "journal, or without one recorded as log.gap with the count",
    "[restart][gap]") {
    for (const bool journal : {false, true}) {
        CAPTURE(journal);
        Desk d;
        // Limits without lifecycle tracking: 26 orders at one instant are all allowed.
        const GuardCredentials plain =
            d.authority.credentials_for(parse_scope_json(test::seed_scope_json));
        std::vector<std::string> messages;
        {
            auto sink = std::make_shared<UnpluggableSink>(d.log);
            GuardOptions o;
            o.audit = AuditTrailOptions{sink};
            o.audit->journal = journal;
            o.audit->shutdown_deadline = std::chrono::milliseconds(200);
            o.audit->error_handler = [&](std::string_view m) { messages.emplace_back(m); };
            o.incident_thread = false;
            Guard g(plain, d.clock(), o);
            for (int i = 0; i < 6; ++i)
                REQUIRE(g.check(order("a" + std::to_string(i), Side::buy, "0.1")).allowed());
            REQUIRE(g.audit()->wait_durable(std::chrono::seconds(5)));
            sink->down = true;  // 20 more allowed within the grace, none of them durable
            for (int i = 0; i < 20; ++i)
                REQUIRE(g.check(order("b" + std::to_string(i), Side::buy, "0.1")).allowed());
        }
        const std::string said = messages.empty() ? std::string() : messages.back();
        INFO(said);
        CHECK(said.find("20 queued record(s) not durable") != std::string::npos);
        auto reopen = [&] {  // the disk is back
            GuardOptions o;
            o.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(d.log)};
            o.audit->journal = journal;
            o.incident_thread = false;
            Guard g(plain, d.clock(), o);
        };
        reopen();
        // With the journal all 26 decisions are in the log, without it the 6 made durable.
        CHECK(events_of(d.log, "order.allowed").size() == (journal ? 26u : 6u));
        const auto gaps = events_of(d.log, "log.gap");
        const auto recovered = events_of(d.log, "log.recovered");
        if (journal) {
            CHECK(gaps.empty());
            REQUIRE(recovered.size() == 1);
            CHECK(recovered[0].find("\"count\":20") != std::string::npos);
        } else {
            CHECK(said.find("noted in") != std::string::npos);
            REQUIRE(gaps.size() == 1);
            CHECK(gaps[0].find("\"count\":20") != std::string::npos);
            CHECK_FALSE(std::filesystem::exists(d.log + ".gap"));  // the note is gone once recorded
            reopen();                                              // recorded once
            CHECK(events_of(d.log, "log.gap").size() == 1);
        }
        AuditCertificates certs;
        certs.add_der(plain.certificate.der());
        const AuditVerifyResult r = verify_audit_log_file(d.log, certs);
        INFO(r.message);
        CHECK(r.ok);
    }
}

TEST_CASE(
    "a log that does not verify as found refuses the start, unless a named operator "
    "accepts it (recorded)",
    "[restart][verify]") {
    Desk d;
    const AuditSigner agent{*d.creds.kms, d.creds.key, d.creds.certificate.fingerprint()};
    SECTION("records no checkpoint covers and no signature vouches for") {
        {
            // An unsigned log cut off by a crash, or lines added by something else.
            FileAuditSink sink(d.log);
            AuditLogWriter w(sink, d.clock(), agent,
                             AuditWriterOptions{d.creds.certificate.agent_id()});
            w.append(audit_event::guard_resumed, R"({"by":"Mallory","reason":"x"})");
            w.flush();
        }
        CHECK_THROWS_WITH(d.guard(), Catch::Contains("does not verify") &&
                                         Catch::Contains("covered by no checkpoint") &&
                                         Catch::Contains("accept_unverified_log"));
        CHECK(events_of(d.log, "log.accepted").empty());  // nothing was written
        {
            GuardOptions o;
            o.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(d.log)};
            o.audit->accept_unverified_log =
                AuditTrailOptions::Acceptance{"T. Operator", "ticket 4711"};
            o.incident_thread = false;
            Guard g(d.creds, d.clock(), o);
        }
        const auto accepted = events_of(d.log, "log.accepted");
        REQUIRE(accepted.size() == 1);
        CHECK(accepted[0].find("T. Operator") != std::string::npos);
        CHECK(accepted[0].find("ticket 4711") != std::string::npos);
        CHECK(accepted[0].find("covered by no checkpoint") != std::string::npos);
        auto g = d.guard();  // covered now by the accepting trail's checkpoint
        CHECK(events_of(d.log, "log.accepted").size() == 1);
    }
    SECTION("a last checkpoint of this agent's key whose signature does not verify") {
        {
            auto g = d.guard();
            REQUIRE(g->check(order("a", Side::buy, "1")).allowed());
        }
        std::vector<std::string> lines;
        {
            std::ifstream in(d.log);
            for (std::string line; std::getline(in, line);) lines.push_back(line);
        }
        std::string& last = lines.back();
        REQUIRE(last.find("\"kind\":\"checkpoint\"") != std::string::npos);
        const auto sig = last.find("\"sig\":\"") + 7;
        last[sig] = last[sig] == 'A' ? 'B' : 'A';  // one base64 character of the signature
        {
            std::ofstream out(d.log, std::ios::trunc);
            for (const auto& l : lines) out << l << "\n";
        }
        CHECK_THROWS_WITH(d.guard(),
                          Catch::Contains("last checkpoint") && Catch::Contains("does not verify"));
    }
    SECTION("a signed log cut off by a crash verifies by its records' signatures") {
        {
            FileAuditSink sink(d.log);
            AuditLogWriter w(sink, d.clock(), agent,
                             AuditWriterOptions{d.creds.certificate.agent_id()}, agent);
            w.append(audit_event::guard_halted,
                     R"({"automatic":false,"by":"J. Doe","halt":"halt-y-1","reason":"drill"})");
            w.flush();  // no checkpoint: the process died here
        }
        auto g = d.guard();
        CHECK(g->halted());
        CHECK(events_of(d.log, "log.accepted").empty());
    }
}
