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

/// Instruments, counterparties, size and collar limits, every day's hours; no rate or daily
/// notional limit, so a clock moving 1 µs per order never makes a limit refuse.
const char* const journal_scope = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a", "exchange_b"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                     "from": "00:00", "to": "23:59"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {"max_order_quantity": {"ETH_EUR": "150"}, "price_collar_bps": 500}
})";

Order journal_order() {
    Order o;
    o.client_order_id = "bench-1";
    o.instrument = "ETH_EUR";
    o.counterparty = "exchange_b";
    o.side = Side::buy;
    o.quantity = Decimal{1, 3};
    o.price = Decimal{250012, 2};
    o.reference_price = Decimal{250000, 2};
    o.region = "eu-central-1";
    return o;
}

void remove_log(const std::string& path) {
    for (const char* suffix : {"", ".started", ".journal"}) std::remove((path + suffix).c_str());
}

/// check() on a Guard whose audit trail writes a file log (records unsigned, as in
/// audit_file_records_per_s), with or without the journal. Timed in bursts of 1,000 orders; the
/// writer catches up between bursts with the timer stopped, so the queue never fills (on two
/// cores the writer thread shares the machine with the loop either way).
void check_audited(benchmark::State& state, bool journal) {
    TestAuthority authority;
    const std::string path = temp_path(journal ? "journal.jsonl" : "nojournal.jsonl");
    remove_log(path);
    {
        GuardOptions options;
        options.incident_thread = false;
        options.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(path)};
        options.audit->record_signatures = false;
        options.audit->journal = journal;
        Guard guard(authority.credentials_for(parse_scope_json(journal_scope)), authority.clock(),
                    options);
        const Order o = journal_order();
        long wrong = 0;
        std::uint64_t n = 0;
        for (auto _ : state) {
            authority.clock().advance(std::chrono::microseconds(1));
            const Decision d = guard.check(o);
            wrong += !d.allowed();
            if (++n % 1000 == 0) {
                state.PauseTiming();
                guard.audit()->wait_durable(std::chrono::seconds(10));
                state.ResumeTiming();
            }
        }
        // (No allocation count here: the writer thread allocates while it builds records, and
        // the counter is the process's. tests/test_allocation.cpp counts check() alone.)
        if (wrong != 0) state.SkipWithError("an order was refused in the benchmark loop");
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
    const GuardCredentials creds = authority.credentials_for(parse_scope_json(journal_scope));
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
            const Order order = journal_order();
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
