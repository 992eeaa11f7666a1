// The order lifecycle on the hot path (DESIGN §7): a new order with every lifecycle limit set
// against 1,000 working orders, and one fill applied to a working order — through the Guard
// (check_lifecycle_median_ns, on_execution_median_ns: what a strategy pays) and through the
// engine alone (the *_engine_* figures). New orders
// come with their instrument and counterparty indices, as the Guard's compiled scope hands
// them over (it looks the names up for its own checks, and that cost is in the Guard's
// figure); BM_check_lifecycle_by_name has the engine look them up itself.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_support.hpp"
#include "kakunin/detail/order_limits.hpp"
#include "kakunin/guard.hpp"

namespace kakunin::bench {
namespace {

/// The typical scope of bench_check.cpp with every lifecycle limit set, wide enough that the
/// orders below are allowed.
const char* const lifecycle_scope = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a", "exchange_b"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "900000000.00"},
    "max_position": {"BTC_EUR": {"long": "100000", "short": "100000"},
                     "ETH_EUR": {"long": "100000", "short": "100000"},
                     "SOL_EUR": {"long": "100000", "short": "100000"}},
    "max_open_orders": 2000,
    "max_working_notional": {"currency": "EUR", "amount": "900000000.00"},
    "max_messages_per_second": 1000000,
    "max_daily_loss": {"currency": "EUR", "amount": "900000000.00"}
  }
})";

constexpr std::size_t working = 1000;
constexpr std::size_t id_ring = 4096;

const char* const instruments[3] = {"BTC_EUR", "ETH_EUR", "SOL_EUR"};
const char* const venues[2] = {"exchange_a", "exchange_b"};

/// Order k of the flow: spread over instruments, venues and sides, buys below 100 and sells
/// above it, so no order crosses another.
Order flow_order(const std::vector<std::string>& ids, std::size_t k) {
    Order o;
    o.client_order_id = ids[k % id_ring];
    o.instrument = instruments[k % 3];
    o.counterparty = venues[(k / 3) % 2];
    o.region = "eu-west-1";
    o.side = (k / 6) % 2 ? Side::sell : Side::buy;
    o.quantity = Decimal{static_cast<std::int64_t>(1000 + k % 97), 3};
    o.price = Decimal{o.side == Side::buy ? 9000 + static_cast<std::int64_t>(k % 900)
                                          : 10100 + static_cast<std::int64_t>(k % 900),
                      2};
    return o;
}

/// The indices of order k's instrument and counterparty in the scope's lists, found once.
struct Indices {
    int instrument[3];
    int venue[2];
    explicit Indices(const detail::OrderLimits& limits) {
        for (int i = 0; i < 3; ++i) instrument[i] = limits.instrument_index(instruments[i]);
        for (int i = 0; i < 2; ++i) venue[i] = limits.counterparty_index(venues[i]);
    }
    int instrument_of(std::size_t k) const { return instrument[k % 3]; }
    int venue_of(std::size_t k) const { return venue[(k / 3) % 2]; }
};

/// Order k decided as check() will: evaluated (indices given), counted, committed if allowed.
bool decide(detail::OrderLimits& limits, const Indices& ix, const Order& o, std::size_t k,
            TimeNs now) {
    detail::OrderLimits::NewPlan plan;
    const ReasonSet r = limits.evaluate_new(o, ix.instrument_of(k), ix.venue_of(k), now, plan);
    limits.count_message(now);
    if (!r.empty()) return false;
    limits.commit_new(o, plan, now);
    return true;
}

std::vector<std::string> make_ids() {
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < id_ring; ++i) ids.push_back("bench-order-" + std::to_string(i));
    return ids;
}

/// Enters orders 0 .. working-1 as they would be after check(): evaluated, counted, committed.
bool fill_book(detail::OrderLimits& limits, const std::vector<std::string>& ids, TimeNs& now) {
    const Indices ix(limits);
    for (std::size_t k = 0; k < working; ++k) {
        if (!decide(limits, ix, flow_order(ids, k), k, now)) return false;
        now += 1'000'000;
    }
    return limits.working_count() == working;
}

/// One new order decided with every lifecycle limit (evaluated, counted, committed) while
/// 1,000 to 2,000 orders work: every 1,000 orders the timer stops while the oldest 1,000 are
/// confirmed cancelled (the pause costs about a nanosecond per order).
template <bool by_name>
void check_lifecycle(benchmark::State& state) {
    detail::OrderLimits limits(parse_scope_json(lifecycle_scope));
    const std::vector<std::string> ids = make_ids();
    const Indices ix(limits);
    TimeNs now = utc(2024, 1, 8, 0, 0, 0);
    if (!fill_book(limits, ids, now)) state.SkipWithError("the book does not fill");
    std::size_t k = working, oldest = 0;
    long refused = 0;
    std::uint64_t allocations = 0;
    for (auto _ : state) {
        const Order o = flow_order(ids, k);
        if constexpr (by_name) {
            detail::OrderLimits::NewPlan plan;
            const ReasonSet r = limits.evaluate_new(o, now, plan);
            limits.count_message(now);
            if (r.empty())
                limits.commit_new(o, plan, now);
            else
                ++refused;
        } else if (!decide(limits, ix, o, k, now)) {
            ++refused;
        }
        now += 1'000'000;
        if (++k - oldest == 2 * working) {
            state.PauseTiming();
            const auto before = allocation_count();
            for (; k - oldest > working; ++oldest) {
                ExecutionReport cancelled;
                cancelled.type = ExecutionType::cancelled;
                cancelled.client_order_id = ids[oldest % id_ring];
                if (!limits.apply(cancelled, now).order_closed) ++refused;
            }
            allocations += allocation_count() - before;
            state.ResumeTiming();
        }
    }
    if (refused != 0) state.SkipWithError("an order was refused in the benchmark loop");
    (void)allocations;
}

void BM_check_lifecycle(benchmark::State& state) { check_lifecycle<false>(state); }

/// The same with the engine looking the instrument and counterparty names up.
void BM_check_lifecycle_by_name(benchmark::State& state) { check_lifecycle<true>(state); }

/// The same with the oldest order confirmed cancelled in every iteration (the book stays at
/// exactly 1,000): a new order plus releasing another order's exposure.
void BM_check_lifecycle_with_release(benchmark::State& state) {
    detail::OrderLimits limits(parse_scope_json(lifecycle_scope));
    const std::vector<std::string> ids = make_ids();
    TimeNs now = utc(2024, 1, 8, 0, 0, 0);
    if (!fill_book(limits, ids, now)) state.SkipWithError("the book does not fill");
    const Indices ix(limits);
    std::size_t k = working;
    long refused = 0;
    const auto before = allocation_count();
    for (auto _ : state) {
        if (!decide(limits, ix, flow_order(ids, k), k, now)) ++refused;
        ExecutionReport cancelled;
        cancelled.type = ExecutionType::cancelled;
        cancelled.client_order_id = ids[(k - working) % id_ring];
        benchmark::DoNotOptimize(limits.apply(cancelled, now));
        now += 1'000'000;
        ++k;
    }
    const auto allocations = allocation_count() - before;
    if (refused != 0) state.SkipWithError("an order was refused in the benchmark loop");
    if (limits.working_count() != working) state.SkipWithError("the book changed size");
    state.counters["allocations_per_call"] =
        static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

/// The decision alone: evaluate_new against 1,000 working orders, nothing committed.
void BM_check_lifecycle_evaluate(benchmark::State& state) {
    detail::OrderLimits limits(parse_scope_json(lifecycle_scope));
    const std::vector<std::string> ids = make_ids();
    TimeNs now = utc(2024, 1, 8, 0, 0, 0);
    if (!fill_book(limits, ids, now)) state.SkipWithError("the book does not fill");
    const Indices ix(limits);
    const Order o = flow_order(ids, working);
    for (auto _ : state) {
        detail::OrderLimits::NewPlan plan;
        benchmark::DoNotOptimize(
            limits.evaluate_new(o, ix.instrument_of(working), ix.venue_of(working), now, plan));
    }
}

/// One partial fill applied to a working order (position, working quantity and notional,
/// filled-today exposure, cash flow and the day's profit and loss all move).
void BM_on_execution(benchmark::State& state) {
    detail::OrderLimits limits(parse_scope_json(lifecycle_scope));
    const std::vector<std::string> ids = make_ids();
    TimeNs now = utc(2024, 1, 8, 0, 0, 0);
    if (!fill_book(limits, ids, now)) state.SkipWithError("the book does not fill");
    std::vector<ExecutionReport> fills(working);
    for (std::size_t k = 0; k < working; ++k) {
        const Order o = flow_order(ids, k);
        fills[k] = ExecutionReport{ExecutionType::fill, o.client_order_id,
                                   o.instrument,        o.side,
                                   Decimal{1, 8},       o.price};  // 0.00000001: never completes it
    }
    std::size_t k = 0;
    long wrong = 0;
    const auto before = allocation_count();
    for (auto _ : state) {
        const ExecutionResult r = limits.apply(fills[k], now);
        wrong += !r.applied || r.unknown_order || r.order_closed;
        if (++k == working) k = 0;
    }
    const auto allocations = allocation_count() - before;
    if (wrong != 0) state.SkipWithError("a fill was not applied to its working order");
    state.counters["allocations_per_call"] =
        static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

/// The scope above through a whole Guard: the order rate as wide as the message rate, so the
/// flow below (one order a millisecond) is allowed.
Scope guard_scope() {
    Scope s = parse_scope_json(lifecycle_scope);
    s.limits.max_orders_per_second = 1'000'000;
    return s;
}

Order guard_order(const std::vector<std::string>& ids, std::size_t k) {
    Order o = flow_order(ids, k);
    o.reference_price = o.price;
    return o;
}

/// Guard::check() of a new order with every lifecycle limit (and the seed's order-by-order
/// limits, no baseline) while 1,000 to 2,000 orders work: what a strategy calls. As in
/// BM_check_lifecycle, the timer stops every 1,000 orders while the oldest 1,000 are confirmed
/// cancelled (through Guard::on_execution).
void BM_guard_check_lifecycle(benchmark::State& state) {
    ManualClock clock(utc(2024, 1, 8, 0, 0, 0));
    Guard guard(guard_scope(), clock);
    const std::vector<std::string> ids = make_ids();
    long refused = 0;
    for (std::size_t k = 0; k < working; ++k) {
        refused += !guard.check(guard_order(ids, k)).allowed();
        clock.advance(std::chrono::milliseconds(1));
    }
    std::size_t k = working, oldest = 0;
    std::uint64_t allocations = 0;
    for (auto _ : state) {
        const Order o = guard_order(ids, k);
        const auto before = allocation_count();
        refused += !guard.check(o).allowed();
        allocations += allocation_count() - before;
        clock.advance(std::chrono::milliseconds(1));
        if (++k - oldest == 2 * working) {
            state.PauseTiming();
            for (; k - oldest > working; ++oldest) {
                ExecutionReport cancelled;
                cancelled.type = ExecutionType::cancelled;
                cancelled.client_order_id = ids[oldest % id_ring];
                if (!guard.on_execution(cancelled).order_closed) ++refused;
            }
            state.ResumeTiming();
        }
    }
    if (refused != 0) state.SkipWithError("an order was refused in the benchmark loop");
    state.counters["allocations_per_call"] =
        static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

/// Guard::on_execution() of one partial fill of a working order (1,000 working).
void BM_guard_on_execution(benchmark::State& state) {
    ManualClock clock(utc(2024, 1, 8, 0, 0, 0));
    Guard guard(guard_scope(), clock);
    const std::vector<std::string> ids = make_ids();
    std::vector<ExecutionReport> fills(working);
    long wrong = 0;
    for (std::size_t k = 0; k < working; ++k) {
        const Order o = guard_order(ids, k);
        wrong += !guard.check(o).allowed();
        clock.advance(std::chrono::milliseconds(1));
        fills[k] = ExecutionReport{
            ExecutionType::fill, o.client_order_id, o.instrument, o.side, Decimal{1, 8}, o.price};
    }
    std::size_t k = 0;
    const auto before = allocation_count();
    for (auto _ : state) {
        const ExecutionResult r = guard.on_execution(fills[k]);
        wrong += !r.applied || r.unknown_order || r.order_closed;
        if (++k == working) k = 0;
    }
    const auto allocations = allocation_count() - before;
    if (wrong != 0) state.SkipWithError("a fill was not applied to its working order");
    state.counters["allocations_per_call"] =
        static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

BENCHMARK(BM_guard_check_lifecycle);
BENCHMARK(BM_guard_on_execution);
BENCHMARK(BM_check_lifecycle);
BENCHMARK(BM_check_lifecycle_by_name);
BENCHMARK(BM_check_lifecycle_with_release);
BENCHMARK(BM_check_lifecycle_evaluate);
BENCHMARK(BM_on_execution);

}  // namespace
}  // namespace kakunin::bench
