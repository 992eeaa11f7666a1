// Faults of the generic audit trail, its writer and the file sink: a sink failing at shutdown, a
// sink that hangs, the log file deleted under the writer, the clock stepped back, a full queue,
// and `replay --audit-out` pointed at a file that is not an audit log. Each case was reproduced
// on the code before its fix; each is bounded to a few seconds.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "audit_test_support.hpp"
#include "cli_test_support.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using namespace kakunin;
using test::good_order;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

namespace {

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-faults-trail") {}
};

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
}

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return std::string(to_string(e.category())) + ": " + e.what();
    }
    return "no error";
}

std::size_t count_of(const std::vector<std::string>& lines, const std::string& needle) {
    return static_cast<std::size_t>(
        std::count_if(lines.begin(), lines.end(),
                      [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
}

/// A memory sink whose appends and flushes fail while `failing` is set.
class FailingSink final : public LockingAuditSink {
public:
    std::atomic<bool> failing{false};
    std::atomic<std::uint64_t> attempts{0};
    std::string name() const override { return "failing"; }
    std::vector<std::string> lines() const {
        std::lock_guard<std::mutex> l(m_lines_mutex);
        return m_lines;
    }

protected:
    void do_append(const std::string_view* l, std::size_t n) override {
        ++attempts;
        if (failing.load()) throw Error(ErrorCategory::io, "failing sink: down");
        std::lock_guard<std::mutex> lock(m_lines_mutex);
        for (std::size_t i = 0; i < n; ++i) m_lines.emplace_back(l[i]);
    }
    void do_flush() override {
        ++attempts;
        if (failing.load()) throw Error(ErrorCategory::io, "failing sink: down");
    }

private:
    mutable std::mutex m_lines_mutex;
    std::vector<std::string> m_lines;
};

/// A memory sink whose flush blocks while the latch is closed: a hung backend (a PostgreSQL
/// server stopped with SIGSTOP, an NFS server gone), which neither returns nor throws.
class LatchSink final : public LockingAuditSink {
public:
    std::string name() const override { return "latch"; }
    void close_latch() {
        std::lock_guard<std::mutex> l(m_latch_mutex);
        m_closed = true;
    }
    void open_latch() {
        {
            std::lock_guard<std::mutex> l(m_latch_mutex);
            m_closed = false;
        }
        m_opened.notify_all();
    }
    std::atomic<int> blocked_flushes{0};
    std::size_t size() const {
        std::lock_guard<std::mutex> l(m_lines_mutex);
        return m_lines.size();
    }

protected:
    void do_append(const std::string_view* l, std::size_t n) override {
        std::lock_guard<std::mutex> lock(m_lines_mutex);
        for (std::size_t i = 0; i < n; ++i) m_lines.emplace_back(l[i]);
    }
    void do_flush() override {
        std::unique_lock<std::mutex> l(m_latch_mutex);
        if (m_closed) ++blocked_flushes;
        m_opened.wait(l, [&] { return !m_closed; });
    }

private:
    std::mutex m_latch_mutex;
    std::condition_variable m_opened;
    bool m_closed = false;
    mutable std::mutex m_lines_mutex;
    std::vector<std::string> m_lines;
};

/// A memory sink whose appends wait while `blocked` is set.
class BlockingSink final : public LockingAuditSink {
public:
    std::atomic<bool> blocked{false};
    std::string name() const override { return "blocking"; }
    std::vector<std::string> lines() const {
        std::lock_guard<std::mutex> l(m_lines_mutex);
        return m_lines;
    }

protected:
    void do_append(const std::string_view* l, std::size_t n) override {
        while (blocked.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::lock_guard<std::mutex> lock(m_lines_mutex);
        for (std::size_t i = 0; i < n; ++i) m_lines.emplace_back(l[i]);
    }
    void do_flush() override {}

private:
    mutable std::mutex m_lines_mutex;
    std::vector<std::string> m_lines;
};

const Scope& unlimited_seed() {
    static const Scope s = [] {
        Scope scope = parse_scope_json(test::seed_scope_json);
        scope.limits = PreTradeLimits{};
        return scope;
    }();
    return s;
}

GuardOptions trail_options(std::shared_ptr<AuditSink> sink) {
    GuardOptions options;
    options.audit = AuditTrailOptions{std::move(sink)};
    options.audit->record_signatures = false;
    return options;
}

}  // namespace

// ---- hardening 4: the sink fails just before shutdown -----------------------------------------

TEST_CASE("trail shutdown keeps retrying a failing sink until every queued record is durable",
          "[faults][trail][shutdown]") {
    TestAuthority authority;
    auto sink = std::make_shared<FailingSink>();
    std::uint64_t queued = 0;
    std::thread recover;
    {
        Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(),
                    trail_options(sink));
        sink->failing.store(true);
        for (int i = 0; i < 20; ++i) REQUIRE(guard.check(good_order()).allowed());
        queued = guard.audit()->counters().queued;
        // The sink comes back 300 ms into the shutdown: the 20 allowed orders must still land.
        recover = std::thread([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            sink->failing.store(false);
        });
    }  // ~Guard: the trail stops while the sink is failing
    recover.join();
    CHECK(queued == 20);
    const auto lines = sink->lines();
    CHECK(count_of(lines, "\"event\":\"order.allowed\"") == 20);
    CHECK(count_of(lines, "\"kind\":\"checkpoint\"") >= 1);  // the final checkpoint too
}

TEST_CASE("a shutdown that cannot make records durable reports how many to the error handler",
          "[faults][trail][shutdown]") {
    TestAuthority authority;
    auto sink = std::make_shared<FailingSink>();
    GuardOptions options = trail_options(sink);
    options.audit->shutdown_deadline = std::chrono::milliseconds(300);
    auto messages = std::make_shared<std::vector<std::string>>();
    auto messages_mutex = std::make_shared<std::mutex>();
    options.audit->error_handler = [messages, messages_mutex](std::string_view m) {
        std::lock_guard<std::mutex> l(*messages_mutex);
        messages->emplace_back(m);
    };
    std::optional<Guard> guard;
    guard.emplace(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    sink->failing.store(true);
    for (int i = 0; i < 20; ++i) REQUIRE(guard->check(good_order()).allowed());
    const auto stop_at = steady::now();
    guard.reset();  // the trail stops while the sink keeps failing
    const auto shutdown = steady::now() - stop_at;
    // Bounded: the deadline and a little more, not forever.
    CHECK(shutdown < std::chrono::seconds(3));
    CHECK(sink->lines().empty());
    std::lock_guard<std::mutex> l(*messages_mutex);
    INFO("messages: " << Catch::Detail::stringify(*messages));
    REQUIRE_FALSE(messages->empty());
    CHECK_THAT(messages->back(), Catch::Contains("20 queued record(s) not durable") &&
                                     Catch::Contains("failing sink: down"));
    CHECK(sink->attempts.load() > 10);  // it kept retrying until the deadline
}

// ---- fault 2: a hung sink ---------------------------------------------------------------------

TEST_CASE(
    "a hung sink makes check() fail closed once the oldest undurable record is older "
    "than the grace",
    "[faults][trail][hung]") {
    TestAuthority authority;
    auto sink = std::make_shared<LatchSink>();
    GuardOptions options = trail_options(sink);
    const auto grace = std::chrono::milliseconds(300);
    options.audit->sink_failure_grace = grace;
    auto messages = std::make_shared<std::vector<std::string>>();
    auto messages_mutex = std::make_shared<std::mutex>();
    options.audit->error_handler = [messages, messages_mutex](std::string_view m) {
        std::lock_guard<std::mutex> l(*messages_mutex);
        messages->emplace_back(m);
    };
    Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    REQUIRE(guard.check(good_order()).allowed());
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(5)));

    struct Reopen {  // whatever happens below, the Guard's destructor must not hang
        LatchSink& sink;
        ~Reopen() { sink.open_latch(); }
    } reopen{*sink};
    sink->close_latch();  // from here on flush() neither returns nor throws
    const auto hung_at = steady::now();
    std::optional<std::chrono::milliseconds> refused_after;
    int allowed_after_refusal = 0;
    // 50 orders per second, for at most 3 s (the queue of 4096 would take 80 s to fill).
    while (steady::now() - hung_at < std::chrono::seconds(3)) {
        const Decision d = guard.check(good_order());
        const auto since =
            std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - hung_at);
        if (d.reasons.contains(ReasonCode::audit_unavailable)) {
            if (!refused_after) refused_after = since;
        } else if (refused_after && d.allowed()) {
            ++allowed_after_refusal;
        }
        if (refused_after && since > *refused_after + std::chrono::milliseconds(500)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(refused_after.has_value());
    INFO("first audit_unavailable " << refused_after->count() << " ms after the sink hung");
    CHECK(*refused_after >= grace - std::chrono::milliseconds(50));   // not before the grace
    CHECK(*refused_after <= grace + std::chrono::milliseconds(700));  // and soon after it
    CHECK(allowed_after_refusal == 0);
    CHECK_FALSE(guard.audit()->counters().healthy);
    CHECK(sink->blocked_flushes.load() >= 1);
    {
        std::lock_guard<std::mutex> l(*messages_mutex);
        REQUIRE_FALSE(messages->empty());
        CHECK_THAT(messages->front(), Catch::Contains("refusing orders with audit_unavailable") &&
                                          Catch::Contains("not yet durable"));
    }

    sink->open_latch();  // the backend wakes up: trading resumes by itself
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(5)));
    bool allowed_again = false;
    for (int i = 0; i < 200 && !allowed_again; ++i) {
        allowed_again = guard.check(good_order()).allowed();
        if (!allowed_again) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(allowed_again);
}

TEST_CASE("a shutdown held by a hung sink says so instead of waiting silently",
          "[faults][trail][hung][shutdown]") {
    TestAuthority authority;
    auto sink = std::make_shared<LatchSink>();
    GuardOptions options = trail_options(sink);
    options.audit->shutdown_deadline = std::chrono::milliseconds(200);
    auto messages = std::make_shared<std::vector<std::string>>();
    auto messages_mutex = std::make_shared<std::mutex>();
    const auto start = steady::now();
    auto said_at = std::make_shared<std::atomic<std::int64_t>>(0);
    options.audit->error_handler = [=](std::string_view m) {
        std::lock_guard<std::mutex> l(*messages_mutex);
        messages->emplace_back(m);
        if (m.find("has not returned") != std::string_view::npos)
            said_at->store(
                std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start)
                    .count());
    };
    std::optional<Guard> guard;
    guard.emplace(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    sink->close_latch();
    for (int i = 0; i < 5; ++i) REQUIRE(guard->check(good_order()).allowed());
    // The backend wakes up 2.5 s later; the destructor must have spoken long before.
    std::thread wake([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));
        sink->open_latch();
    });
    guard.reset();
    wake.join();
    INFO("messages: " << Catch::Detail::stringify(*messages));
    CHECK(said_at->load() > 0);
    CHECK(said_at->load() < 2000);
    std::lock_guard<std::mutex> l(*messages_mutex);
    CHECK(std::any_of(messages->begin(), messages->end(), [](const std::string& m) {
        return m.find("5 queued record(s) not durable") != std::string::npos;
    }));
    CHECK(sink->size() >= 5);  // once it returned, the records went through after all
}

// ---- fault 4: the open log file is deleted ----------------------------------------------------

TEST_CASE("the file sink refuses to report durable once its file is deleted or replaced",
          "[faults][sink][unlinked]") {
    TempDir dir;
    const std::string path = dir / "agent.jsonl";
    test::AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:agent-7");
    ManualClock clock(utc(2024, 1, 8));
    FileAuditSink sink(path);
    AuditLogWriter log(sink, clock, agent.signer(kms), AuditWriterOptions{"agent-7"});
    log.append(audit_event::order_allowed, R"({"decision":"allow"})");
    log.flush();
    REQUIRE(log.durable_size() == 1);

    SECTION("deleted") { REQUIRE(::unlink(path.c_str()) == 0); }
    SECTION("replaced by another file") {
        REQUIRE(::unlink(path.c_str()) == 0);
        write_bytes(path, "");
    }
    log.append(audit_event::order_allowed, R"({"decision":"allow"})");
    CHECK_THAT(error_of([&] { log.flush(); }),
               Catch::Contains("io") && Catch::Contains("no longer names the open log"));
    CHECK(log.durable_size() == 1);
    // It stays failed: nothing written to the orphaned file is ever reported durable.
    CHECK_THROWS_AS(log.flush(), Error);
    CHECK(log.durable_size() == 1);
}

TEST_CASE("a Guard whose log file is deleted rejects with audit_unavailable after the grace",
          "[faults][trail][unlinked]") {
    TempDir dir;
    const std::string path = dir / "agent.jsonl";
    TestAuthority authority;
    auto sink = std::make_shared<FileAuditSink>(path);
    GuardOptions options = trail_options(sink);
    options.audit->sink_failure_grace = std::chrono::milliseconds(200);
    options.audit->shutdown_deadline = std::chrono::milliseconds(200);
    options.audit->error_handler = [](std::string_view) {};
    Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    REQUIRE(guard.check(good_order()).allowed());
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(5)));
    REQUIRE(::unlink(path.c_str()) == 0);
    const auto deadline = steady::now() + std::chrono::seconds(3);
    bool refused = false;
    while (!refused && steady::now() < deadline) {
        refused = guard.check(good_order()).reasons.contains(ReasonCode::audit_unavailable);
        if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(refused);
    CHECK_FALSE(guard.audit()->wait_durable(std::chrono::milliseconds(100)));
    const AuditTrailCounters c = guard.audit()->counters();
    CHECK(c.durable < c.queued);
}

TEST_CASE("reopening refuses to begin a new log where a deleted or replaced one was",
          "[faults][sink][unlinked]") {
    TempDir dir;
    const std::string path = dir / "agent.jsonl";
    test::AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:agent-7");
    ManualClock clock(utc(2024, 1, 8));
    auto write_log = [&](const std::string& p, const std::string& log_id, int records) {
        FileAuditSink sink(p);
        AuditLogWriter log(sink, clock, agent.signer(kms), AuditWriterOptions{log_id});
        for (int i = 0; i < records; ++i)
            log.append(audit_event::order_allowed, R"({"decision":"allow"})");
        log.close();
    };
    write_log(path, "agent-7", 3);
    REQUIRE(fs::exists(path + ".started"));
    CHECK_NOTHROW(FileAuditSink(path));  // the same log opens as before

    SECTION("deleted") {
        fs::remove(path);
        CHECK_THAT(error_of([&] { FileAuditSink sink(path); }), Catch::Contains("invalid_state") &&
                                                                    Catch::Contains("is missing") &&
                                                                    Catch::Contains(".started"));
        CHECK_FALSE(fs::exists(path));  // and it did not create one
    }
    SECTION("truncated to nothing") {
        write_bytes(path, "");
        CHECK_THAT(error_of([&] { FileAuditSink sink(path); }),
                   Catch::Contains("invalid_state") && Catch::Contains("truncated or replaced"));
    }
    SECTION("replaced by another log") {
        const std::string other = dir / "other.jsonl";
        clock.advance(std::chrono::seconds(1));
        write_log(other, "agent-7", 1);
        fs::remove(other + ".started");
        fs::rename(other, path);
        CHECK_THAT(error_of([&] { FileAuditSink sink(path); }),
                   Catch::Contains("invalid_state") && Catch::Contains("truncated or replaced"));
    }
    SECTION("a new log on purpose: the marker removed") {
        fs::remove(path);
        fs::remove(path + ".started");
        write_log(path, "agent-7", 1);
        const auto v = verify_audit_log_file(path, [&] {
            AuditCertificates c;
            c.add_der(agent.cert_der, "agent-7");  // its CN is "agent:agent-7"
            return c;
        }());
        CHECK(v.ok);
        CHECK(v.records == 1);
    }
}

// ---- fault 5: the clock steps back ------------------------------------------------------------

TEST_CASE("time-based checkpoints continue after the clock steps back an hour",
          "[faults][writer][clock]") {
    test::AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:a");
    ManualClock clock(utc(2024, 1, 8, 12));
    MemoryAuditSink sink;
    AuditWriterOptions opts{"a", "", "", 0};
    opts.checkpoint_interval_ns = 200'000'000;  // 200 ms
    AuditLogWriter log(sink, clock, agent.signer(kms), opts);
    log.append(audit_event::order_allowed, R"({"decision":"allow"})");
    clock.advance(std::chrono::milliseconds(250));
    REQUIRE(log.maybe_checkpoint());
    REQUIRE(log.checkpointed_size() == 1);

    clock.advance(-std::chrono::hours(1));  // NTP, an operator, a VM restored from a snapshot
    log.append(audit_event::order_allowed, R"({"decision":"allow"})");
    const auto until = steady::now() + std::chrono::seconds(2);
    bool checkpointed = false;
    while (!checkpointed && steady::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        checkpointed = log.maybe_checkpoint();
    }
    CHECK(checkpointed);
    CHECK(log.checkpointed_size() == 2);
}

// ---- fault 7: rejections the full queue could not take ----------------------------------------

TEST_CASE("rejections the full queue could not record are counted in the log",
          "[faults][trail][unrecorded]") {
    TestAuthority authority;
    auto sink = std::make_shared<BlockingSink>();
    GuardOptions options = trail_options(sink);
    options.audit->queue_capacity = 64;
    options.audit->reserve = 8;
    options.audit->batch_max = 16;
    std::uint64_t unrecorded = 0;
    {
        Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(), options);
        sink->blocked.store(true);
        for (int i = 0; i < 300; ++i) guard.check(good_order());
        unrecorded = guard.audit()->counters().unrecorded_rejections;
        REQUIRE(unrecorded > 0);
        sink->blocked.store(false);
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(5)));
    }
    const auto lines = sink->lines();
    std::uint64_t recorded_count = 0;
    for (const auto& l : lines) {
        if (l.find("\"event\":\"audit.unrecorded_rejections\"") == std::string::npos) continue;
        const AuditRecord r = parse_audit_record(l);
        const auto p = nlohmann::json::parse(r.canonical).at("payload");
        recorded_count += p.at("count").get<std::uint64_t>();
        CHECK(p.at("from_ns").get<std::int64_t>() <= p.at("to_ns").get<std::int64_t>());
    }
    CHECK(recorded_count == unrecorded);
}

// ---- hardening 12: replay --audit-out on a file that is not an audit log ----------------------

namespace {

using test::Run;

const test::Cli cli{"correct horse battery staple"};

}  // namespace

TEST_CASE("replay --audit-out leaves a file that is not an audit log as it was",
          "[faults][sink][cli]") {
    TempDir dir;
    write_bytes(dir / "scope.json", test::seed_scope_json);
    for (const char* step :
         {"ca init --dir state",
          "agent register --dir state --agent agent-7 --owner 'Desk 3' --purpose 'BTC MM' "
          "--by 'Jane Roe'",
          "scope approve --dir state --agent agent-7 --scope scope.json --approver 'Jane Doe'"}) {
        const Run r = cli.run(dir, step);
        INFO(step << "\n" << r.err);
        REQUIRE(r.code == 0);
    }
    write_bytes(dir / "orders.csv",
                "ts,instrument,counterparty,side,quantity,price,region,reasoning\n"
                "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1,first\n");
    const std::string ca_pem = read_bytes(dir / "state/ca.pem");
    REQUIRE(ca_pem.find("-----END CERTIFICATE-----\n") != std::string::npos);
    const Run r = cli.run(dir,
                          "replay --dir state --agent agent-7 --orders orders.csv --audit-out "
                          "state/ca.pem");
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code != 0);
    CHECK_THAT(r.err, Catch::Contains("not an audit log"));
    CHECK(read_bytes(dir / "state/ca.pem") == ca_pem);  // not one byte changed
}

TEST_CASE("the file sink changes nothing in a file that is not the expected audit log",
          "[faults][sink][repair]") {
    TempDir dir;
    test::AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:agent-7");
    ManualClock clock(utc(2024, 1, 8));
    auto write_log = [&](const std::string& p, const std::string& log_id, int records) {
        FileAuditSink sink(p);
        AuditLogWriter log(sink, clock, agent.signer(kms), AuditWriterOptions{log_id});
        for (int i = 0; i < records; ++i)
            log.append(audit_event::order_allowed, R"({"decision":"allow"})");
        log.close();
    };
    auto refused_unchanged = [&](const std::string& p, const std::string& fragment,
                                 FileAuditSinkOptions o = {}) {
        const std::string before = read_bytes(p);
        CHECK_THAT(error_of([&] { FileAuditSink sink(p, o); }), Catch::Contains(fragment));
        CHECK(read_bytes(p) == before);
    };
    SECTION("a PEM certificate") {
        const std::string p = dir / "ca.pem";
        write_bytes(p, "-----BEGIN CERTIFICATE-----\nMIIBVTCC\n-----END CERTIFICATE-----\n");
        refused_unchanged(p, "not an audit log: line 1");
    }
    SECTION("a one-line JSON file without its newline") {
        const std::string p = dir / "scope.json";
        write_bytes(p, R"({"version":1,"instruments":["BTC_EUR"]})");
        refused_unchanged(p, "not an audit log");
    }
    SECTION("a JSON Lines file of something else with a torn-looking tail") {
        const std::string p = dir / "decisions.jsonl";
        write_bytes(p, "{\"line\":2,\"verdict\":\"allow\"}\n{\"line\":3,\"ver");
        refused_unchanged(p, "not an audit log: line 1");
    }
    SECTION("an audit log of another log id") {
        const std::string p = dir / "agent-8.jsonl";
        write_log(p, "agent-8", 2);
        {
            std::ofstream out(p, std::ios::binary | std::ios::app);
            out << "{\"agent\":\"agent-8\",\"cert";  // a torn tail it must not cut either
        }
        FileAuditSinkOptions o;
        o.log_id = "agent-7";
        refused_unchanged(p,
                          "not an audit log of \"agent-7\": line 1 is a record of log "
                          "\"agent-8\"",
                          o);
    }
    SECTION("a complete last line that is not an audit line is not cut") {
        const std::string p = dir / "agent-7.jsonl";
        write_log(p, "agent-7", 2);
        {
            std::ofstream out(p, std::ios::binary | std::ios::app);
            out << "-----END CERTIFICATE-----\n";
        }
        const std::string before = read_bytes(p);
        {
            FileAuditSink sink(p);
            CHECK_FALSE(sink.recovery().tail_cut);
            // The writer refuses the line, naming it.
            CHECK_THAT(error_of([&] {
                           AuditLogWriter log(sink, clock, agent.signer(kms),
                                              AuditWriterOptions{"agent-7"});
                       }),
                       Catch::Contains("line 4"));
        }
        CHECK(read_bytes(p) == before);
    }
    SECTION("a torn last record of the expected log is still cut") {
        const std::string p = dir / "agent-7.jsonl";
        write_log(p, "agent-7", 2);
        const std::string before = read_bytes(p);
        {
            std::ofstream out(p, std::ios::binary | std::ios::app);
            out << "{\"agent\":\"agent-7\",\"cert_fp\":\"sha";
        }
        FileAuditSinkOptions o;
        o.log_id = "agent-7";
        FileAuditSink sink(p, o);
        CHECK(sink.recovery().tail_cut);
        CHECK(sink.recovery().reason == "no trailing newline");
        CHECK(read_bytes(p) == before);
    }
}
