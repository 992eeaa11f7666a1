// The Guard's audit trail: every decision and state change becomes a signed record that
// verifies offline; a full queue or a failing sink rejects orders with audit_unavailable
// (never allows one unrecorded) and recovers by itself.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "kakunin/audit_verify.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

using namespace kakunin;
using test::good_order;

namespace {

/// A memory sink that can be blocked (appends wait) or made to fail, from another thread.
class ControlledSink final : public LockingAuditSink {
public:
    std::atomic<bool> blocked{false}, failing{false};
    std::string name() const override { return "controlled"; }
    std::vector<std::string> lines() const {
        std::lock_guard<std::mutex> l(m_lines_mutex);
        return m_lines;
    }

protected:
    void do_append(const std::string_view* l, std::size_t n) override {
        while (blocked.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (failing.load()) throw Error(ErrorCategory::io, "controlled sink: down");
        std::lock_guard<std::mutex> lock(m_lines_mutex);
        for (std::size_t i = 0; i < n; ++i) m_lines.emplace_back(l[i]);
    }
    void do_flush() override {
        if (failing.load()) throw Error(ErrorCategory::io, "controlled sink: down");
    }

private:
    mutable std::mutex m_lines_mutex;
    std::vector<std::string> m_lines;
};

std::string temp_file(const std::string& name) {
    return "/tmp/kakunin-trail-" + std::to_string(getpid()) + "-" + name;
}

const Scope& seed() {
    static const Scope s = parse_scope_json(test::seed_scope_json);
    return s;
}

}  // namespace

TEST_CASE("every decision and state change is a signed record that verifies offline") {
    TestAuthority authority;
    const std::string path = temp_file("agent.jsonl");
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());  // the sink's note that a log began here
    std::remove((path + ".journal").c_str());  // and the trail\'s write-ahead journal
    GuardCredentials creds = authority.credentials_for(seed());
    const AgentCertificate cert = creds.certificate;
    {
        auto sink = std::make_shared<FileAuditSink>(path);
        GuardOptions options;
        options.audit = AuditTrailOptions{sink};
        options.audit->checkpoint_every = 10;
        Guard guard(creds, authority.clock(), options);
        Order o = good_order();
        o.reasoning = "mean reversion: \"spread\" 2.1 sigma, ünïcode ok";
        for (int i = 0; i < 25; ++i) {
            authority.clock().advance(std::chrono::milliseconds(100));
            REQUIRE(guard.check(o).allowed());
        }
        Order bad = good_order();
        bad.counterparty = "exchange_z";
        CHECK_FALSE(guard.check(bad).allowed());
        guard.halt("desk kill switch", "M. Rossi");
        CHECK_FALSE(guard.check(o).allowed());
        guard.resume("A. Schmidt");
        CHECK(guard.check(o).allowed());
        REQUIRE(guard.audit() != nullptr);
        CHECK(guard.audit()->wait_durable(std::chrono::seconds(10)));
        const AuditTrailCounters c = guard.audit()->counters();
        CHECK(c.queued == 30);
        CHECK(c.durable == 30);
        CHECK(c.unrecorded_rejections == 0);
        CHECK(c.healthy);
    }  // the Guard's destruction writes the final checkpoint

    AuditCertificates certs;
    certs.add_der(cert.der());
    AuditVerifyOptions vo;
    vo.require_record_signatures = true;
    const AuditVerifyResult r = verify_audit_log_file(path, certs, vo);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 30);
    CHECK(r.signed_records == 30);
    CHECK(r.checkpoints >= 3);

    std::ifstream in(path);
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(in, line)) lines.push_back(line);
    auto count = [&](const std::string& needle) {
        return std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
            return l.find(needle) != std::string::npos;
        });
    };
    CHECK(count("\"event\":\"order.allowed\"") == 26);
    CHECK(count("\"event\":\"order.rejected\"") == 2);
    CHECK(count("\"event\":\"guard.halted\"") == 1);
    CHECK(count("\"event\":\"guard.resumed\"") == 1);
    CHECK(count("\"reasons\":[\"counterparty_not_allowed\"]") == 1);
    CHECK(count("\"reasons\":[\"halted\"]") == 1);
    CHECK(count("\"by\":\"M. Rossi\"") == 1);
    CHECK(count("mean reversion: \\\"spread\\\" 2.1 sigma") == 27);
    CHECK(count(cert.fingerprint()) == 30 + r.checkpoints);
    // Records follow decision order: the halt sits between the last allowed and the rejection.
    const auto halted_at = std::find_if(lines.begin(), lines.end(), [](const std::string& l) {
        return l.find("guard.halted") != std::string::npos;
    });
    REQUIRE(halted_at != lines.end());
    CHECK(std::find_if(halted_at, lines.end(), [](const std::string& l) {
              return l.find("\"reasons\":[\"halted\"]") != std::string::npos;
          }) != lines.end());

    // Reopening continues the same log: seq and the tree go on.
    {
        auto sink = std::make_shared<FileAuditSink>(path);
        GuardOptions options;
        options.audit = AuditTrailOptions{sink};
        Guard guard(creds, authority.clock(), options);
        CHECK(guard.check(good_order()).allowed());
    }
    const AuditVerifyResult again = verify_audit_log_file(path, certs, vo);
    INFO(again.message);
    CHECK(again.ok);
    CHECK(again.records == 31);
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());  // the sink's note that a log began here
    std::remove((path + ".journal").c_str());  // and the trail\'s write-ahead journal
}

TEST_CASE("a nearly full queue rejects with audit_unavailable and never allows unrecorded") {
    TestAuthority authority;
    auto sink = std::make_shared<ControlledSink>();
    GuardOptions options;
    options.audit = AuditTrailOptions{sink};
    options.audit->queue_capacity = 64;
    options.audit->reserve = 8;
    options.audit->batch_max = 16;
    options.audit->record_signatures = false;
    Scope scope = seed();
    scope.limits = PreTradeLimits{};
    Guard guard(authority.credentials_for(scope), authority.clock(), options);
    sink->blocked.store(true);
    int allowed = 0, audit_rejected = 0;
    for (int i = 0; i < 200; ++i) {
        const Decision d = guard.check(good_order());
        if (d.allowed()) ++allowed;
        if (d.reasons.contains(ReasonCode::audit_unavailable)) ++audit_rejected;
    }
    CHECK(audit_rejected > 0);
    const AuditTrailCounters blocked = guard.audit()->counters();
    // Everything allowed was queued; what could not be queued was a rejection.
    CHECK(blocked.queued + blocked.unrecorded_rejections == 200);
    CHECK(static_cast<std::uint64_t>(allowed) <= blocked.queued);
    sink->blocked.store(false);
    CHECK(guard.audit()->wait_durable(std::chrono::seconds(10)));
    CHECK(guard.check(good_order()).allowed());
}

TEST_CASE("a failing sink stops trading after the grace period and trading resumes by itself") {
    TestAuthority authority;
    auto sink = std::make_shared<ControlledSink>();
    GuardOptions options;
    options.audit = AuditTrailOptions{sink};
    options.audit->sink_failure_grace = std::chrono::milliseconds(100);
    options.audit->record_signatures = false;
    Scope scope = seed();
    scope.limits = PreTradeLimits{};
    Guard guard(authority.credentials_for(scope), authority.clock(), options);
    CHECK(guard.check(good_order()).allowed());
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    sink->failing.store(true);
    CHECK(guard.check(good_order()).allowed());  // within the grace period
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool refused = false;
    while (!refused && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        refused = guard.check(good_order()).reasons.contains(ReasonCode::audit_unavailable);
    }
    CHECK(refused);
    CHECK_FALSE(guard.audit()->counters().healthy);
    CHECK(guard.audit()->counters().sink_failures > 0);
    sink->failing.store(false);
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    bool allowed_again = false;
    for (int i = 0; i < 100 && !allowed_again; ++i) {
        allowed_again = guard.check(good_order()).allowed();
        if (!allowed_again) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(allowed_again);
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    // Nothing queued was lost while the sink was down.
    const AuditTrailCounters c = guard.audit()->counters();
    CHECK(c.durable == c.queued);
    std::size_t records = 0;
    for (const auto& l : sink->lines())
        records += l.find("\"kind\":\"record\"") != std::string::npos;
    CHECK(records == c.queued);
}
