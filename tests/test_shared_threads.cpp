// SharedThreads (shared_threads.hpp): the Guards of one process on one audit-writer thread, one
// watchdog thread and one incident thread. Fifty Guards add no thread, every decision is
// recorded once in each Guard's own log (which verifies), a dead man's switch still fires from
// the shared incident thread, and a sink that hangs holds the shared writer: every Guard then
// refuses orders after its grace (the shared watchdog never calls a sink), and all of them
// allow again, with nothing lost, once the sink returns.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "audit_test_support.hpp"
#include "kakunin/audit.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/shared_threads.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using namespace kakunin;
using namespace std::chrono_literals;

namespace {

/// Threads of this process now (/proc/self/task).
std::size_t threads_now() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task"))
        ++n;
    return n;
}

/// Waits (up to 5 s) for the thread count to settle at `expected`; returns the last count.
std::size_t threads_settle(std::size_t expected) {
    std::size_t n = threads_now();
    for (int i = 0; i < 500 && n != expected; ++i) {
        std::this_thread::sleep_for(10ms);
        n = threads_now();
    }
    return n;
}

Scope unlimited() {
    Scope scope = parse_scope_json(test::seed_scope_json);
    scope.limits = PreTradeLimits{};
    return scope;
}

GuardOptions options_for(std::shared_ptr<AuditSink> sink, std::shared_ptr<SharedThreads> threads,
                         std::shared_ptr<Notifier> notifier) {
    GuardOptions o;
    o.observe = false;
    o.audit = AuditTrailOptions{std::move(sink)};
    o.audit->shutdown_deadline = 5000ms;
    // One thread makes fifty logs durable in turn, on a CI disk that may be slow: this file is
    // about sharing, not the grace (the hung-sink case sets its own).
    o.audit->sink_failure_grace = 30s;
    o.threads = std::move(threads);
    o.notifier = std::move(notifier);  // the incident desk runs (a pass every 2 ms)
    return o;
}

std::shared_ptr<AuditSink> file_sink(const std::string& path) {
    return std::make_shared<FileAuditSink>(path);
}

/// The client order ids of a log's order records, with how often each appears.
std::map<std::string, int> order_ids(const std::string& path) {
    std::map<std::string, int> ids;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        if (j.value("kind", "") != "record") continue;
        if (j.at("event").get<std::string>().rfind("order.", 0) != 0) continue;
        ++ids[j.at("payload").at("order").at("client_order_id").get<std::string>()];
    }
    return ids;
}

/// A file sink whose flush waits while the gate is closed: a disk that stops answering.
class GatedSink final : public LockingAuditSink {
public:
    explicit GatedSink(std::string path) : m_file(std::move(path)) {}
    std::string name() const override { return "gated " + m_file.name(); }
    void close_gate() {
        std::lock_guard<std::mutex> lock(m_gate_mutex);
        m_closed = true;
    }
    void open_gate() {
        {
            std::lock_guard<std::mutex> lock(m_gate_mutex);
            m_closed = false;
        }
        m_gate.notify_all();
    }
    bool held() const { return m_held.load(); }
    AuditSinkRecovery recovery() const override { return m_file.recovery(); }

protected:
    void do_for_each_line(const std::function<void(std::string_view)>& f) override {
        m_file.for_each_line(f);
    }
    void do_append(const std::string_view* lines, std::size_t n) override {
        m_file.append(lines, n);
    }
    void do_flush() override {
        std::unique_lock<std::mutex> lock(m_gate_mutex);
        m_held.store(m_closed);
        m_gate.wait(lock, [&] { return !m_closed; });
        m_held.store(false);
        lock.unlock();
        m_file.flush();
    }

private:
    FileAuditSink m_file;
    std::mutex m_gate_mutex;
    std::condition_variable m_gate;
    bool m_closed = false;
    std::atomic<bool> m_held{false};
};

}  // namespace

TEST_CASE(
    "fifty Guards on SharedThreads: one audit writer, one watchdog and one incident thread for "
    "all of them, every decision recorded once in each Guard's own log, which verifies",
    "[shared_threads]") {
    test::TempDir dir("kakunin-shared-threads");
    TestAuthority authority;
    const Scope scope = unlimited();
    auto notifier = std::make_shared<MemoryNotifier>();
    const std::size_t base = threads_now();

    // A Guard of its own: an audit writer, a watchdog and an incident thread.
    std::size_t own_threads = 0;
    {
        Guard alone(authority.credentials_for(scope), authority.clock(),
                    options_for(file_sink(dir / "alone.jsonl"), nullptr, notifier));
        own_threads = threads_settle(base + 3) - base;
    }
    CHECK(own_threads == 3);
    CHECK(threads_settle(base) == base);

    constexpr int guards = 50, orders = 40;
    auto shared = std::make_shared<SharedThreads>();
    CHECK(threads_settle(base + 4) == base + 4);  // writer, watchdog, reporter, incidents
    std::vector<std::string> logs;
    AuditCertificates certs;
    {
        std::vector<std::unique_ptr<Guard>> fleet;
        for (int g = 0; g < guards; ++g) {
            GuardCredentials creds = authority.credentials_for(scope);
            certs.add_der(creds.certificate.der());
            logs.push_back(dir / ("agent-" + std::to_string(g) + ".jsonl"));
            fleet.push_back(
                std::make_unique<Guard>(std::move(creds), authority.clock(),
                                        options_for(file_sink(logs.back()), shared, notifier)));
        }
        // The Guards add no thread.
        CHECK(threads_settle(base + 4) == base + 4);
        CHECK(shared->audit_trails() == static_cast<std::size_t>(guards));
        CHECK(shared->incident_desks() == static_cast<std::size_t>(guards));

        // Two strategy threads, each trading through half the Guards (Catch2 asserts on this
        // thread only: the strategies count what was not allowed).
        std::atomic<int> not_allowed{0};
        auto trade = [&](int first) {
            Order o = test::good_order();
            o.quantity = Decimal{1, 3};
            for (int k = 0; k < orders; ++k)
                for (int g = first; g < guards; g += 2) {
                    const std::string id = "g" + std::to_string(g) + "-" + std::to_string(k);
                    o.client_order_id = id;
                    if (!fleet[g]->check(o).allowed()) ++not_allowed;
                }
        };
        std::thread a(trade, 0), b(trade, 1);
        a.join();
        b.join();
        CHECK(not_allowed.load() == 0);
        for (auto& guard : fleet) CHECK(guard->audit()->wait_durable(10s));
        for (auto& guard : fleet) CHECK(guard->audit()->counters().durable == orders);

        // The dead man's switch of one Guard fires from the shared incident thread.
        GuardOptions o = options_for(file_sink(dir / "heartbeat.jsonl"), shared, notifier);
        o.heartbeat_timeout = 100ms;
        Guard watched(authority.credentials_for(scope), authority.clock(), o);
        watched.heartbeat();
        authority.clock().advance(1s);  // no heartbeat for a second of the Guard's clock
        const auto until = std::chrono::steady_clock::now() + 5s;
        while (!watched.halted() && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(2ms);
        CHECK(watched.halted());
        for (auto& guard : fleet) CHECK_FALSE(guard->halted());
    }  // every Guard's final checkpoint, written on the shared writer
    CHECK(shared->audit_trails() == 0);
    CHECK(shared->incident_desks() == 0);
    CHECK(threads_settle(base + 4) == base + 4);

    for (int g = 0; g < guards; ++g) {
        INFO(logs[g]);
        AuditVerifyOptions vo;
        vo.require_closed = true;
        const AuditVerifyResult r = verify_audit_log_file(logs[g], certs, vo);
        INFO(r.message);
        CHECK(r.ok);
        const std::map<std::string, int> ids = order_ids(logs[g]);
        CHECK(ids.size() == static_cast<std::size_t>(orders));
        for (int k = 0; k < orders; ++k)
            CHECK(ids.count("g" + std::to_string(g) + "-" + std::to_string(k)) == 1);
        for (const auto& [id, n] : ids) CHECK(n == 1);
    }
}

TEST_CASE(
    "a sink that hangs holds the shared writer: every Guard on it refuses orders after its "
    "grace, and all allow again, with every decision recorded, once the sink returns",
    "[shared_threads]") {
    test::TempDir dir("kakunin-shared-threads");
    TestAuthority authority;
    const Scope scope = unlimited();
    auto shared = std::make_shared<SharedThreads>();
    constexpr int guards = 4;
    const auto grace = 300ms;
    std::vector<std::string> logs;
    AuditCertificates certs;
    auto gated = std::make_shared<GatedSink>(dir / "gated.jsonl");
    int sent[guards] = {};
    {
        std::vector<std::unique_ptr<Guard>> fleet;
        for (int g = 0; g < guards; ++g) {
            GuardCredentials creds = authority.credentials_for(scope);
            certs.add_der(creds.certificate.der());
            logs.push_back(g == 0 ? dir / "gated.jsonl"
                                  : dir / ("agent-" + std::to_string(g) + ".jsonl"));
            GuardOptions o = options_for(g == 0 ? gated : file_sink(logs.back()), shared, nullptr);
            o.audit->sink_failure_grace = grace;
            o.audit->journal = false;
            fleet.push_back(
                std::make_unique<Guard>(std::move(creds), authority.clock(), std::move(o)));
        }
        Order order = test::good_order();
        order.quantity = Decimal{1, 3};
        std::vector<std::string> ids;  // the orders hold views of these
        ids.reserve(100000);
        auto send = [&](int g) {
            ids.push_back("g" + std::to_string(g) + "-" + std::to_string(sent[g]++));
            order.client_order_id = ids.back();
            return fleet[g]->check(order);
        };
        for (int g = 0; g < guards; ++g) REQUIRE(send(g).allowed());
        for (auto& guard : fleet) REQUIRE(guard->audit()->wait_durable(5s));

        gated->close_gate();
        for (int g = 0; g < guards; ++g) REQUIRE(send(g).allowed());  // within the grace
        const auto hung_at = std::chrono::steady_clock::now();
        while (!gated->held() && std::chrono::steady_clock::now() - hung_at < 5s)
            std::this_thread::sleep_for(1ms);
        REQUIRE(gated->held());  // the shared writer waits inside the gated sink's flush
        // Every Guard refuses within its grace and a watchdog tick or two: the other three
        // Guards' sinks work, but their writer is the one held; the watchdog is not.
        bool refused[guards] = {};
        while (std::chrono::steady_clock::now() - hung_at < grace + 3s) {
            bool all = true;
            for (int g = 0; g < guards; ++g) {
                if (refused[g]) continue;
                const Decision d = send(g);
                if (!d.allowed()) {
                    CHECK(d.reasons.contains(ReasonCode::audit_unavailable));
                    refused[g] = true;
                }
                all = all && refused[g];
            }
            if (all) break;
            std::this_thread::sleep_for(5ms);
        }
        for (int g = 0; g < guards; ++g) CHECK(refused[g]);
        CHECK(std::chrono::steady_clock::now() - hung_at >= grace);

        gated->open_gate();
        for (int g = 0; g < guards; ++g) {
            INFO("Guard " << g);
            bool allowed = false;
            const auto cleared = std::chrono::steady_clock::now();
            while (!allowed && std::chrono::steady_clock::now() - cleared < 5s) {
                allowed = send(g).allowed();
                if (!allowed) std::this_thread::sleep_for(5ms);
            }
            CHECK(allowed);
        }
        for (auto& guard : fleet) CHECK(guard->audit()->wait_durable(5s));
        for (auto& guard : fleet) CHECK(guard->audit()->counters().unrecorded_rejections == 0);
    }
    gated.reset();  // the last owner: closes its log
    for (int g = 0; g < guards; ++g) {
        INFO(logs[g]);
        AuditVerifyOptions vo;
        vo.require_closed = true;
        const AuditVerifyResult r = verify_audit_log_file(logs[g], certs, vo);
        INFO(r.message);
        CHECK(r.ok);
        const std::map<std::string, int> ids = order_ids(logs[g]);
        CHECK(ids.size() == static_cast<std::size_t>(sent[g]));  // allowed and refused alike
        for (const auto& [id, n] : ids) CHECK(n == 1);
    }
}

TEST_CASE(
    "an error handler that blocks on the shared writer does not blind the shared watchdog: "
    "another Guard whose records wait behind it is refused after its grace",
    "[shared_threads]") {
    test::TempDir dir("kakunin-shared-threads");
    TestAuthority authority;
    const Scope scope = unlimited();
    auto shared = std::make_shared<SharedThreads>();
    const auto grace = 300ms, blocked_for = 2500ms;
    // Guard A: a sink that fails, and an error handler that takes 2.5 s over its first report
    // (on the shared writer, which waits with it).
    auto failing = std::make_shared<test::FlakyAuditSink>();
    failing->failing = true;
    std::atomic<bool> blocked{false};
    GuardOptions oa = options_for(failing, shared, nullptr);
    oa.audit->sink_failure_grace = grace;
    oa.audit->journal = false;
    oa.audit->shutdown_deadline = 200ms;
    oa.audit->error_handler = [&](std::string_view) {
        if (!blocked.exchange(true)) std::this_thread::sleep_for(blocked_for);
    };
    // Guard B: a working file sink, whose records wait behind the blocked writer.
    GuardOptions ob = options_for(file_sink(dir / "b.jsonl"), shared, nullptr);
    ob.audit->sink_failure_grace = grace;
    Guard a(authority.credentials_for(scope), authority.clock(), oa);
    Guard b(authority.credentials_for(scope), authority.clock(), ob);
    Order order = test::good_order();
    order.quantity = Decimal{1, 3};
    std::vector<std::string> ids;
    ids.reserve(10000);
    auto send = [&](Guard& g) {
        ids.push_back("o-" + std::to_string(ids.size()));
        order.client_order_id = ids.back();
        return g.check(order);
    };
    REQUIRE(send(b).allowed());
    REQUIRE(b.audit()->wait_durable(5s));
    const auto started = std::chrono::steady_clock::now();
    REQUIRE(send(a).allowed());  // the writer fails on it and reports: the handler blocks
    while (!blocked.load() && std::chrono::steady_clock::now() - started < 5s)
        std::this_thread::sleep_for(1ms);
    REQUIRE(blocked.load());
    REQUIRE(send(b).allowed());  // queued behind the blocked writer
    bool refused = false;
    while (!refused && std::chrono::steady_clock::now() - started < blocked_for - 500ms) {
        const Decision d = send(b);
        refused = !d.allowed() && d.reasons.contains(ReasonCode::audit_unavailable);
        if (!refused) std::this_thread::sleep_for(5ms);
    }
    INFO("ms since the handler blocked: " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - started)
                                                 .count());
    CHECK(refused);  // within the grace and a few ticks, long before the handler returns
    CHECK(std::chrono::steady_clock::now() - started < blocked_for);
    // Once the handler returns, B's records become durable and B allows again.
    bool allowed = false;
    while (!allowed && std::chrono::steady_clock::now() - started < blocked_for + 5s) {
        allowed = send(b).allowed();
        if (!allowed) std::this_thread::sleep_for(5ms);
    }
    CHECK(allowed);
}
