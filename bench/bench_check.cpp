// Guard::check() on the hot path, and the yardstick it is measured against: one Botan Ed25519
// signature over 64 bytes in the same run (DESIGN §7).
#include <benchmark/benchmark.h>
#include <botan/auto_rng.h>
#include <botan/ed25519.h>
#include <botan/pubkey.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "bench_support.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"

namespace kakunin::bench {
namespace {

/// The Guard under measurement: the typical scope with anomaly scoring on, against a baseline
/// learned from a week of the same flow (one 13-hour session at 10 orders/s) and approved.
std::unique_ptr<Guard> scoring_guard(const Clock& clock,
                                     std::shared_ptr<FirmLimitSource> firm = nullptr) {
    const Baseline baseline = typical_baseline("bench-agent");
    auto kms = SoftwareKms::in_memory();
    GuardOptions options;
    options.baseline = ApprovedBaseline{
        baseline, approve_baseline(*kms, baseline, "Bench Officer", baseline.observed_to_ns, 1)};
    options.incident_thread = false;
    options.firm_limits = std::move(firm);
    return std::make_unique<Guard>(parse_scope_json(typical_scope), clock, options);
}

void run_check(benchmark::State& state, bool allowed, bool firm_lease = false) {
    StepClock clock;
    // With a firm lease in force: a daily-notional budget whose lease never runs out or ages
    // out here, so that every check consumes it (the hot path's whole cost of firm limits).
    std::shared_ptr<TestFirmLimits> firm;
    if (firm_lease)
        firm =
            std::make_shared<TestFirmLimits>(FirmBudgetKind::daily_notional, "EUR", INT64_MAX / 4);
    auto scored = scoring_guard(clock, firm);
    if (firm) firm->lease()->grant(INT64_MAX / 4, 0, INT64_MAX);
    Guard& guard = *scored;
    const Order o = typical_order(allowed);
    if (!guard.enforcing_baseline()) state.SkipWithError("anomaly scoring is not on");
    for (int i = 0; i < 1000; ++i) benchmark::DoNotOptimize(guard.check(o));  // warm
    const auto before = allocation_count();
    long wrong = 0;
    for (auto _ : state) {
        const Decision d = guard.check(o);
        wrong += d.allowed() != allowed || d.verdict == Verdict::warn;
        benchmark::DoNotOptimize(d);
    }
    const auto allocations = allocation_count() - before;
    if (wrong != 0) state.SkipWithError("unexpected verdict in the benchmark loop");
    state.counters["allocations_per_call"] =
        static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

void BM_check_allowed(benchmark::State& state) { run_check(state, true); }

/// The same check with a firm-wide lease in force (goal: within 10 % of BM_check_allowed).
void BM_check_allowed_firm(benchmark::State& state) { run_check(state, true, true); }

/// The same order on the limits alone (no baseline): what scoring adds is the difference.
void BM_check_allowed_limits_only(benchmark::State& state) {
    StepClock clock;
    Guard guard(parse_scope_json(typical_scope), clock);
    const Order o = typical_order(true);
    for (auto _ : state) benchmark::DoNotOptimize(guard.check(o));
}
void BM_check_rejected(benchmark::State& state) { run_check(state, false); }

/// Per-call latency distribution: each call timed on its own, the timer's own cost subtracted.
void BM_check_allowed_latency(benchmark::State& state) {
    StepClock clock;
    auto scored = scoring_guard(clock);
    Guard& guard = *scored;
    const Order o = typical_order(true);
    using C = std::chrono::steady_clock;
    constexpr std::size_t samples = 1 << 20;
    std::vector<std::int64_t> t(samples), overhead(samples);
    for (auto _ : state) {
        for (std::size_t i = 0; i < samples; ++i) {
            const auto a = C::now();
            const auto b = C::now();
            overhead[i] = (b - a).count();
        }
        for (std::size_t i = 0; i < samples; ++i) {
            const auto a = C::now();
            benchmark::DoNotOptimize(guard.check(o));
            const auto b = C::now();
            t[i] = (b - a).count();
        }
    }
    std::sort(t.begin(), t.end());
    std::sort(overhead.begin(), overhead.end());
    const double base = static_cast<double>(overhead[samples / 2]);
    auto at = [&](double q) {
        return std::max(0.0,
                        static_cast<double>(t[static_cast<std::size_t>(q * (samples - 1))]) - base);
    };
    state.counters["p50_ns"] = at(0.5);
    state.counters["p99_ns"] = at(0.99);
    state.counters["p999_ns"] = at(0.999);
    state.counters["timer_overhead_ns"] = base;
}

void BM_ed25519_sign(benchmark::State& state) {
    Botan::AutoSeeded_RNG rng;
    Botan::Ed25519_PrivateKey key(rng);
    Botan::PK_Signer signer(key, rng, "Pure");
    std::vector<std::uint8_t> message(64, 0x5a);
    for (auto _ : state) benchmark::DoNotOptimize(signer.sign_message(message, rng));
}

BENCHMARK(BM_check_allowed);
BENCHMARK(BM_check_allowed_firm);
BENCHMARK(BM_check_rejected);
BENCHMARK(BM_check_allowed_limits_only);
BENCHMARK(BM_check_allowed_latency)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ed25519_sign);

}  // namespace
}  // namespace kakunin::bench
