// The audit trail under pressure: state changes recorded when orders fill the queue, a blocking
// mode that records a whole simulated day, a failing sink's own messages reaching the error
// handler with exponential backoff, and a shutdown that ends with a checkpoint covering every
// record. Each case was reproduced on the code before its fix.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

using namespace kakunin;
using test::good_order;
using steady = std::chrono::steady_clock;

namespace {

std::size_t count_of(const std::vector<std::string>& lines, const std::string& needle) {
    return static_cast<std::size_t>(
        std::count_if(lines.begin(), lines.end(),
                      [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
}

/// A memory sink: appends wait while `blocked`; each append sleeps `delay`; the first
/// `fail_appends` appends throw with a numbered message, the first `fail_flushes` flushes too.
/// Every append is timed.
class PressureSink final : public LockingAuditSink {
public:
    std::atomic<bool> blocked{false};
    std::chrono::microseconds delay{0};
    int fail_appends = 0;
    int fail_flushes = 0;
    std::string name() const override { return "pressure"; }
    std::vector<std::string> lines() const {
        std::lock_guard<std::mutex> l(m_data_mutex);
        return m_lines;
    }
    std::vector<steady::time_point> append_times() const {
        std::lock_guard<std::mutex> l(m_data_mutex);
        return m_append_times;
    }

protected:
    void do_append(const std::string_view* l, std::size_t n) override {
        while (blocked.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (delay.count() != 0) std::this_thread::sleep_for(delay);
        std::lock_guard<std::mutex> lock(m_data_mutex);
        m_append_times.push_back(steady::now());
        if (m_appends++ < fail_appends)
            throw Error(ErrorCategory::io,
                        "pressure sink: disk on fire (append " + std::to_string(m_appends) + ")");
        for (std::size_t i = 0; i < n; ++i) m_lines.emplace_back(l[i]);
    }
    void do_flush() override {
        std::lock_guard<std::mutex> lock(m_data_mutex);
        if (m_flushes++ < fail_flushes)
            throw Error(ErrorCategory::io,
                        "pressure sink: fsync refused (flush " + std::to_string(m_flushes) + ")");
    }

private:
    mutable std::mutex m_data_mutex;
    std::vector<std::string> m_lines;
    std::vector<steady::time_point> m_append_times;
    int m_appends = 0, m_flushes = 0;
};

const Scope& unlimited_seed() {
    static const Scope s = [] {
        Scope scope = parse_scope_json(test::seed_scope_json);
        scope.limits = PreTradeLimits{};
        return scope;
    }();
    return s;
}

struct Messages {
    std::mutex mutex;
    std::vector<std::string> list;
    std::vector<std::string> copy() {
        std::lock_guard<std::mutex> l(mutex);
        return list;
    }
};

GuardOptions pressure_options(std::shared_ptr<AuditSink> sink,
                              std::shared_ptr<Messages> messages = nullptr) {
    GuardOptions options;
    options.audit = AuditTrailOptions{std::move(sink)};
    options.audit->record_signatures = false;
    if (messages)
        options.audit->error_handler = [messages](std::string_view m) {
            std::lock_guard<std::mutex> l(messages->mutex);
            messages->list.emplace_back(m);
        };
    return options;
}

AuditVerifyResult verify_lines(const std::vector<std::string>& lines,
                               const AgentCertificate& cert) {
    AuditCertificates certs;
    certs.add_der(cert.der());
    return verify_audit_lines(lines, certs);  // require_closed: a checkpoint covers every record
}

}  // namespace

// ---- 1: state changes have a reserve of their own ---------------------------------------------

TEST_CASE("a halt is recorded even when rejected orders have filled the audit queue",
          "[pressure][state_reserve]") {
    TestAuthority authority;
    auto sink = std::make_shared<PressureSink>();
    GuardOptions options = pressure_options(sink);
    options.audit->queue_capacity = 64;
    options.audit->reserve = 8;
    options.audit->batch_max = 16;
    GuardCredentials creds = authority.credentials_for(unlimited_seed());
    const AgentCertificate cert = creds.certificate;
    std::uint64_t unrecorded = 0;
    {
        Guard guard(creds, authority.clock(), options);
        sink->blocked.store(true);
        // The writer holds one batch in the blocked sink; orders fill the queue behind it until
        // even the rejections no longer fit.
        for (int i = 0; i < 300; ++i) guard.check(good_order());
        unrecorded = guard.audit()->counters().unrecorded_rejections;
        REQUIRE(unrecorded > 0);  // the queue was full for orders
        guard.halt("end of day", "Test Officer");
        guard.resume("Test Officer");
        guard.halt("end of day, really", "Test Officer");
        sink->blocked.store(false);
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    }
    const auto lines = sink->lines();
    CHECK(count_of(lines, "\"event\":\"guard.halted\"") == 2);
    CHECK(count_of(lines, "\"event\":\"guard.resumed\"") == 1);
    CHECK(count_of(lines, "end of day, really") == 1);
    const AuditVerifyResult r = verify_lines(lines, cert);
    INFO(r.message);
    CHECK(r.ok);
}

TEST_CASE("orders and execution reports never take the state changes' reserve",
          "[pressure][state_reserve]") {
    TestAuthority authority;
    auto sink = std::make_shared<PressureSink>();
    GuardOptions options = pressure_options(sink);
    options.audit->queue_capacity = 64;
    options.audit->reserve = 8;
    options.audit->state_reserve = 16;
    options.audit->batch_max = 16;
    Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    sink->blocked.store(true);
    // Orders until the queue no longer takes even a rejection (the writer is stuck in the
    // blocked sink with what it took first).
    std::uint64_t full_at = 0;
    for (int i = 0; i < 1000; ++i) {
        guard.check(good_order());
        const AuditTrailCounters c = guard.audit()->counters();
        if (c.unrecorded_rejections >= 3) {
            full_at = c.queued;
            break;
        }
    }
    REQUIRE(full_at != 0);
    for (int i = 0; i < 10; ++i) guard.check(good_order());
    CHECK(guard.audit()->counters().queued == full_at);  // orders: no more room
    ExecutionReport report;
    report.type = ExecutionType::mark;
    report.instrument = good_order().instrument;
    report.price = good_order().price;
    guard.on_execution(report);
    CHECK(guard.audit()->counters().queued == full_at);  // reports: no more room either
    CHECK(guard.audit()->counters().unrecorded_reports == 1);
    // The 16 reserved slots take 8 halts and 8 resumes.
    for (int i = 0; i < 8; ++i) {
        guard.halt("drill " + std::to_string(i), "Test Officer");
        guard.resume("Test Officer");
    }
    CHECK(guard.audit()->counters().queued == full_at + 16);
    sink->blocked.store(false);
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    CHECK(count_of(sink->lines(), "\"event\":\"guard.halted\"") == 8);
    CHECK(count_of(sink->lines(), "\"event\":\"guard.resumed\"") == 8);
}

// ---- 2: blocking mode for backtests -----------------------------------------------------------

TEST_CASE("a simulated 24-hour day in blocking mode records every decision and the final halt",
          "[pressure][blocking]") {
    TestAuthority authority;
    auto sink = std::make_shared<PressureSink>();
    sink->delay = std::chrono::microseconds(500);  // far slower than check()
    GuardOptions options = pressure_options(sink);
    options.audit->queue_capacity = 512;
    options.audit->batch_max = 128;
    options.audit->block_when_full = true;
    GuardCredentials creds = authority.credentials_for(unlimited_seed(), std::chrono::hours(26));
    const AgentCertificate cert = creds.certificate;
    constexpr int orders = 200'000;
    constexpr std::int64_t step_ns = 24LL * 3600 * 1'000'000'000 / orders;  // 432 ms
    int audit_unavailable = 0, allowed = 0;
    AuditTrailCounters c;
    {
        Guard guard(creds, authority.clock(), options);
        const Order o = good_order();
        for (int i = 0; i < orders; ++i) {
            authority.clock().advance(std::chrono::nanoseconds(step_ns));
            const Decision d = guard.check(o);
            if (d.reasons.contains(ReasonCode::audit_unavailable)) ++audit_unavailable;
            if (d.allowed()) ++allowed;
        }
        guard.halt("end of the simulated day", "Test Officer");
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(60)));
        c = guard.audit()->counters();
    }  // the shutdown's final checkpoint
    CHECK(audit_unavailable == 0);
    CHECK(allowed > 0);
    CHECK(c.unrecorded_rejections == 0);
    CHECK(c.queued == static_cast<std::uint64_t>(orders) + 1);
    const auto lines = sink->lines();
    CHECK(count_of(lines, "\"event\":\"order.") == static_cast<std::size_t>(orders));
    CHECK(count_of(lines, "\"event\":\"order.allowed\"") == static_cast<std::size_t>(allowed));
    REQUIRE_FALSE(lines.empty());
    CHECK(count_of(lines, "end of the simulated day") == 1);
    CHECK(lines.back().find("\"kind\":\"checkpoint\"") != std::string::npos);
    const AuditVerifyResult r = verify_lines(lines, cert);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == static_cast<std::uint64_t>(orders) + 1);
    CHECK(r.covered == r.records);
}

TEST_CASE("blocking mode still fails closed on a sink that stays down", "[pressure][blocking]") {
    TestAuthority authority;
    auto sink = std::make_shared<PressureSink>();
    sink->fail_appends = 1'000'000;
    auto messages = std::make_shared<Messages>();
    GuardOptions options = pressure_options(sink, messages);
    options.audit->queue_capacity = 64;
    options.audit->batch_max = 16;
    options.audit->block_when_full = true;
    options.audit->sink_failure_grace = std::chrono::milliseconds(200);
    options.audit->shutdown_deadline = std::chrono::milliseconds(200);
    Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    const auto start = steady::now();
    bool refused = false;
    for (int i = 0; i < 500 && !refused; ++i)
        refused = guard.check(good_order()).reasons.contains(ReasonCode::audit_unavailable);
    // It waited for room at most about the grace, then refused: never blocked forever.
    CHECK(refused);
    CHECK(steady::now() - start < std::chrono::seconds(5));
}

// ---- 3: a failing sink's messages and exponential backoff -------------------------------------

TEST_CASE("a failing sink's own messages reach the error handler and retries back off",
          "[pressure][backoff]") {
    TestAuthority authority;
    auto sink = std::make_shared<PressureSink>();
    constexpr int failures = 7;  // pauses of 5, 10, 20, 40, 80, 160, 320 ms
    sink->fail_appends = failures;
    auto messages = std::make_shared<Messages>();
    GuardOptions options = pressure_options(sink, messages);
    options.audit->checkpoint_interval = std::chrono::seconds(60);
    Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    for (int i = 0; i < 5; ++i) REQUIRE(guard.check(good_order()).allowed());
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    const AuditTrailCounters c = guard.audit()->counters();
    CHECK(c.durable == c.queued);
    CHECK(c.sink_failures == static_cast<std::uint64_t>(failures));
    CHECK(count_of(sink->lines(), "\"event\":\"order.allowed\"") == 5);

    const auto times = sink->append_times();
    REQUIRE(times.size() >= static_cast<std::size_t>(failures) + 1);
    // One retry per backoff step: attempt k+1 comes no sooner than 5 ms * 2^k after attempt k.
    for (int k = 0; k < failures; ++k) {
        const auto gap =
            std::chrono::duration_cast<std::chrono::microseconds>(times[k + 1] - times[k]);
        const auto step = std::chrono::milliseconds(5 << k);
        INFO("attempt " << k + 1 << " to " << k + 2 << ": " << gap.count() << " us");
        CHECK(gap >= step);
    }

    const auto got = messages->copy();
    INFO("messages: " << Catch::Detail::stringify(got));
    CHECK(count_of(got, "pressure sink: disk on fire (append 1)") == 1);
    CHECK(count_of(got, "pressure sink: disk on fire (append 7); records are kept") == 1);
    CHECK(count_of(got, "write failed") <= static_cast<std::size_t>(failures));
    CHECK(count_of(got, "works again after 7 failed write(s)") == 1);
}

TEST_CASE("a failed sink flush is retried although nothing new is pending", "[pressure][backoff]") {
    TestAuthority authority;
    auto sink = std::make_shared<PressureSink>();
    sink->fail_flushes = 2;
    auto messages = std::make_shared<Messages>();
    GuardOptions options = pressure_options(sink, messages);
    options.audit->checkpoint_interval = std::chrono::seconds(60);  // no checkpoint to help
    Guard guard(authority.credentials_for(unlimited_seed()), authority.clock(), options);
    REQUIRE(guard.check(good_order()).allowed());
    // The lines were appended, then the flush failed: only a retried flush makes them durable.
    CHECK(guard.audit()->wait_durable(std::chrono::seconds(2)));
    CHECK(count_of(messages->copy(), "pressure sink: fsync refused (flush 1)") == 1);
}

// ---- 4: the shutdown ends with a checkpoint covering every record -----------------------------

TEST_CASE("a shutdown after a sink outage ends with a checkpoint covering every record",
          "[pressure][shutdown]") {
    TestAuthority authority;
    auto sink = std::make_shared<PressureSink>();
    sink->fail_appends = 3;
    GuardCredentials creds = authority.credentials_for(unlimited_seed());
    const AgentCertificate cert = creds.certificate;
    {
        GuardOptions options = pressure_options(sink);
        options.audit->checkpoint_every = 7;
        Guard guard(creds, authority.clock(), options);
        for (int i = 0; i < 20; ++i) {
            authority.clock().advance(std::chrono::milliseconds(10));
            guard.check(good_order());
        }
    }  // destroyed at once, the sink still failing
    const auto lines = sink->lines();
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.back().find("\"kind\":\"checkpoint\"") != std::string::npos);
    const AuditVerifyResult r = verify_lines(lines, cert);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 20);
    CHECK(r.covered == 20);
    CHECK(r.uncovered_records == 0);
}

// ---- 2, through the CLI: kakunin replay --audit-out records every decision ---------------------

namespace {

using test::Run;

const test::Cli cli{"correct horse battery staple"};

}  // namespace

TEST_CASE("replay --audit-out records every decision of a day faster than the writer",
          "[pressure][blocking][cli]") {
    test::TempDir dir("kakunin-pressure");
    {
        std::ofstream scope(dir / "scope.json");
        scope << test::seed_scope_json;
    }
    for (const char* step :
         {"ca init --dir state",
          "agent register --dir state --agent agent-7 --owner 'Desk 3' --purpose 'BTC MM' "
          "--by 'Jane Roe'",
          "scope approve --dir state --agent agent-7 --scope scope.json --approver 'Jane Doe'"}) {
        const Run r = cli.run(dir, step);
        INFO(step << "\n" << r.err);
        REQUIRE(r.code == 0);
    }
    // Bursts of 50 orders in the same second, every 10 minutes of a day, all signed per record:
    // far more than the writer keeps up with, with a queue of 4096.
    constexpr int orders = 6000;
    {
        std::ofstream csv(dir / "orders.csv");
        csv << "ts,instrument,counterparty,side,quantity,price,region,reasoning\n";
        for (int i = 0; i < orders; ++i) {
            const int minute = (i / 50) * 10 % (24 * 60);
            const int hour = minute / 60;
            char ts[32];
            std::snprintf(ts, sizeof ts, "2024-01-%02dT%02d:%02d:00Z",
                          8 + (i / 50) * 10 / (24 * 60), hour, minute % 60);
            csv << ts << ",BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1,order " << i << "\n";
        }
    }
    const Run sim = cli.run(
        dir, "replay --dir state --agent agent-7 --orders orders.csv --audit-out a.jsonl --json");
    INFO("stdout: " << sim.out << "\nstderr: " << sim.err);
    REQUIRE(sim.code == 0);
    const auto summary = nlohmann::json::parse(sim.out);
    CHECK(summary.at("orders") == orders);
    CHECK_FALSE(summary.at("rejected").contains("audit_unavailable"));
    const Run v = cli.run(dir, "audit verify --log a.jsonl --certs a.jsonl.certs --json");
    INFO("verify: " << v.out << v.err);
    REQUIRE(v.code == 0);
    const auto verified = nlohmann::json::parse(v.out);
    CHECK(verified.at("ok") == true);
    CHECK(verified.at("records") == orders);
    CHECK(verified.at("signed_records") == orders);
}
