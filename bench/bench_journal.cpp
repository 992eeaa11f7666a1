// The audit trail's write-ahead journal (docs/audit-format.md section 13): what sealing each
// decision into the mapped journal adds to check(), beside the same audited Guard without a
// journal, and how fast a trail records what a dead process left in its journal.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "bench_support.hpp"
#include "kakunin/audit_trail.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/testing.hpp"

namespace kakunin::bench {
namespace {

void remove_log(const std::string& path) {
    for (const char* suffix : {"", ".started", ".journal"}) std::remove((path + suffix).c_str());
}

/// check() on the Guard of BM_check_allowed (the typical scope, the order 100 ms apart through
/// the trading session, scored against an approved baseline of that flow), here on credentials
/// and with the audit trail writing a file log (records unsigned, as in
/// audit_file_records_per_s), with or without the journal. Beside check_allowed_median_ns the
/// difference is the certificate's gate (validity, CRL freshness) and the audit trail. Timed in
/// bursts of 1,000 orders; between bursts, with the timer stopped, the writer catches up (so the
/// queue never fills: on two cores the writer thread shares the machine with the loop either
/// way) and the CRL is renewed before it goes stale.
void check_audited(benchmark::State& state, bool journal) {
    SessionSteps steps(utc(2024, 1, 22, 7, 0, 0));  // after the baseline's observation ends
    TestAuthority authority(steps.peek());
    ManualClock& clock = authority.clock();
    const std::string path = temp_path(journal ? "journal.jsonl" : "nojournal.jsonl");
    remove_log(path);
    {
        GuardCredentials credentials = authority.credentials_for(parse_scope_json(typical_scope),
                                                                 std::chrono::hours(24 * 366 * 2));
        const Baseline baseline = typical_baseline(credentials.certificate.agent_id());
        GuardOptions options;
        options.incident_thread = false;
        options.baseline = ApprovedBaseline{
            baseline, approve_baseline(*authority.kms(), baseline, TestAuthority::officer,
                                       baseline.observed_to_ns, 1)};
        options.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(path)};
        options.audit->record_signatures = false;
        options.audit->journal = journal;
        if (getenv("NOAUDIT")) options.audit.reset();
        Guard guard(std::move(credentials), clock, options);
        if (!guard.enforcing_baseline()) state.SkipWithError("anomaly scoring is not on");
        const Order o = typical_order(true);
        TimeNs crl_from = clock.now_ns();
        long wrong = 0;
        ReasonSet why;
        std::uint64_t n = 0;
        for (auto _ : state) {
            if (++n % 1000 == 0) {  // before every 1,000th order, the session's first included
                state.PauseTiming();
                if (guard.audit()) guard.audit()->wait_durable(std::chrono::seconds(10));
                if (steps.peek() - crl_from >= 1'800'000'000'000) {  // half its validity
                    clock.set(crl_from = steps.peek());
                    guard.update_crl(authority.ca().issue_crl());
                }
                state.ResumeTiming();
            }
            clock.set(steps.next());
            const Decision d = guard.check(o);
            if (!d.allowed() || d.verdict == Verdict::warn) {
                ++wrong;
                why.merge(d.reasons);
            }
        }
        // (No allocation count here: the writer thread allocates while it builds records, and
        // the counter is the process's. tests/test_allocation.cpp counts check() alone.)
        if (wrong != 0) {
            std::string reasons;
            for (const ReasonCode r : why) reasons += std::string(" ") + to_string(r);
            state.SkipWithError(
                (std::to_string(wrong) + " orders refused or warned in the loop:" + reasons)
                    .c_str());
        }
    }
    remove_log(path);
}

void BM_check_allowed_journal(benchmark::State& state) { check_audited(state, true); }
void BM_check_allowed_audited(benchmark::State& state) { check_audited(state, false); }

/// A sink that refuses every write: what a trail queues on it stays in the journal.
class RefusingSink final : public LockingAuditSink {
public:
    std::string name() const override { return "refusing"; }

protected:
    void do_append(const std::string_view*, std::size_t) override {
        throw Error(ErrorCategory::io, "refusing sink");
    }
    void do_flush() override { throw Error(ErrorCategory::io, "refusing sink"); }
};

/// A trail on a refusing sink queues `range(0)` decisions into the journal and gives up at
/// shutdown; then a trail on the file log records them from the journal (timed: opening the
/// journal, reading it, building, appending and syncing the records). Unsigned records.
void BM_journal_recovery(benchmark::State& state) {
    TestAuthority authority;
    const GuardCredentials creds = authority.credentials_for(parse_scope_json(typical_scope));
    const std::string agent = creds.certificate.agent_id();
    const std::string path = temp_path("recovery.jsonl");
    const auto entries = static_cast<std::size_t>(state.range(0));
    std::uint64_t recovered = 0;
    for (auto _ : state) {
        state.PauseTiming();
        remove_log(path);
        {
            AuditTrailOptions o{std::make_shared<RefusingSink>()};
            o.journal_path = path + ".journal";
            o.queue_capacity = entries + 64;
            o.record_signatures = false;
            o.shutdown_deadline = std::chrono::milliseconds(1);
            o.sink_failure_grace = std::chrono::minutes(1);
            o.error_handler = [](std::string_view) {};
            AuditTrail dead(o, authority.clock(), creds.kms, creds.key, agent,
                            creds.certificate.fingerprint());
            const Order order = typical_order(true);
            Decision d;
            d.verdict = Verdict::allow;
            for (std::size_t i = 0; i < entries; ++i) {
                d.ts_ns = authority.clock().now_ns() + static_cast<TimeNs>(i);
                if (!dead.push_order(order, d)) state.SkipWithError("the queue was full");
            }
        }
        state.ResumeTiming();
        AuditTrailOptions o{std::make_shared<FileAuditSink>(path)};
        o.queue_capacity = entries + 64;
        o.record_signatures = false;
        AuditTrail trail(o, authority.clock(), creds.kms, creds.key, agent,
                         creds.certificate.fingerprint());
        recovered += trail.counters().recovered;
    }
    remove_log(path);
    if (recovered != entries * state.iterations())
        state.SkipWithError("not every entry was recovered");
    state.counters["records_per_s"] =
        benchmark::Counter(static_cast<double>(recovered), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_check_allowed_journal);
BENCHMARK(BM_check_allowed_audited);
BENCHMARK(BM_journal_recovery)
    ->Arg(20000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

}  // namespace
}  // namespace kakunin::bench
