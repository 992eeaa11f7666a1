// kakunin/guard.hpp — the pre-trade gate. One Guard per agent; check() every order before it
// leaves the process.
//
//   kakunin::SystemClock clock;
//   kakunin::Guard guard(kakunin::load_scope_file("scope.json"), clock);
//   kakunin::Decision d = guard.check(order);       // noexcept, no allocation
//   if (d.allowed()) venue.send(order);
//   guard.halt("desk kill switch", "J. Doe");       // rejects everything from here on
//
// Thread safety: check(), halt(), resume(), halted() and counters() may be called from any
// threads at once. Once halt() has returned, no check() allows an order until resume().
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/spin_lock.hpp"
#include "kakunin/detail/string_set.hpp"
#include "kakunin/detail/wide_math.hpp"
#include "kakunin/error.hpp"
#include "kakunin/order.hpp"
#include "kakunin/scope.hpp"

namespace kakunin {

namespace detail {

/// A Scope compiled for the hot path: interned names, a minute-of-week bitmap, limits rescaled
/// to fixed units. Immutable after construction; evaluate() is stateless and thread-safe.
class CompiledScope {
public:
    static constexpr unsigned day_total_scale = 18;  ///< running daily totals, in 10^-18 units

    explicit CompiledScope(const Scope& scope)
        : m_instruments(scope.instruments),
          m_counterparties(scope.counterparties),
          m_regions(scope.regions),
          m_currency(scope.max_transaction.currency.packed()),
          m_max_transaction(scope.max_transaction.amount) {
        validate(scope);
        for (const auto& w : scope.trading_hours)
            for (unsigned day = 0; day < 7; ++day)
                if (w.days & (1u << day))
                    for (unsigned m = w.from_minute; m < w.to_minute; ++m)
                        set_minute(day * 1440 + m);
        m_max_quantity.assign(m_instruments.size(), Decimal{});
        m_has_max_quantity.assign(m_instruments.size(), 0);
        for (const auto& [instrument, quantity] : scope.limits.max_order_quantity) {
            const auto i = static_cast<std::size_t>(m_instruments.find(instrument));
            m_max_quantity[i] = quantity;
            m_has_max_quantity[i] = 1;
        }
        m_collar_bps = scope.limits.price_collar_bps.value_or(0);
        m_rate_limit = scope.limits.max_orders_per_second.value_or(0);
        if (scope.limits.max_daily_notional) {
            m_has_daily_limit = true;
            if (!rescale_ceil(widen(scope.limits.max_daily_notional->amount), day_total_scale,
                              m_daily_limit))
                throw Error(ErrorCategory::invalid_input,
                            "limits.max_daily_notional.amount: too large");
        }
    }

    /// The stateless part of a check: every reason that depends on the order and the time only.
    /// Writes the notional in day-total units to `day_units` (-1 if it cannot be counted).
    ReasonSet evaluate(const Order& o, TimeNs now, int128& day_units) const noexcept {
        ReasonSet r;
        const bool quantity_ok = o.quantity.is_positive();
        const bool price_ok = o.price.is_positive();
        if (!quantity_ok) r.add(ReasonCode::invalid_quantity);
        if (!price_ok) r.add(ReasonCode::invalid_price);
        const std::string_view quote = quote_of(o.instrument);
        if (quote.empty())
            r.add(ReasonCode::invalid_instrument);
        else if (Currency::pack(quote) != m_currency)
            r.add(ReasonCode::currency_mismatch);
        const int instrument = m_instruments.find(o.instrument);
        if (instrument < 0) r.add(ReasonCode::instrument_not_allowed);
        if (m_counterparties.find(o.counterparty) < 0) r.add(ReasonCode::counterparty_not_allowed);
        if (m_regions.find(o.region) < 0) r.add(ReasonCode::region_not_allowed);
        if (!minute_allowed(minute_of_week(now))) r.add(ReasonCode::outside_trading_hours);

        day_units = -1;
        if (quantity_ok && price_ok) {
            const Wide notional = multiply(o.quantity, o.price);
            if (compare(notional, m_max_transaction) > 0)
                r.add(ReasonCode::max_transaction_exceeded);
            if (m_has_daily_limit && !rescale_ceil(notional, day_total_scale, day_units)) {
                r.add(ReasonCode::notional_overflow);
                day_units = -1;
            }
        }
        if (instrument >= 0 && m_has_max_quantity[static_cast<std::size_t>(instrument)] &&
            compare(o.quantity, m_max_quantity[static_cast<std::size_t>(instrument)]) > 0)
            r.add(ReasonCode::max_order_quantity_exceeded);
        if (m_collar_bps != 0) check_collar(o, price_ok, r);
        return r;
    }

    std::uint32_t rate_limit() const noexcept { return m_rate_limit; }
    bool has_daily_limit() const noexcept { return m_has_daily_limit; }
    int128 daily_limit() const noexcept { return m_daily_limit; }

private:
    void set_minute(unsigned m) noexcept { m_minutes[m / 64] |= std::uint64_t{1} << (m % 64); }
    bool minute_allowed(unsigned m) const noexcept { return (m_minutes[m / 64] >> (m % 64)) & 1u; }

    void check_collar(const Order& o, bool price_ok, ReasonSet& r) const noexcept {
        if (!o.reference_price) {
            r.add(ReasonCode::reference_price_missing);
            return;
        }
        const Decimal ref = *o.reference_price;
        if (!ref.is_positive()) {
            r.add(ReasonCode::invalid_reference_price);
            return;
        }
        if (!price_ok) return;
        // |price - ref| / ref <= bps / 10^4, exactly: both at one scale (< 2^123), then
        // |P - R| * 10^4 <= bps * R in 256-bit arithmetic.
        const unsigned scale = o.price.scale > ref.scale ? o.price.scale : ref.scale;
        const int128 p = static_cast<int128>(o.price.units) * pow10_128(scale - o.price.scale);
        const int128 q = static_cast<int128>(ref.units) * pow10_128(scale - ref.scale);
        const u128 diff = static_cast<u128>(p > q ? p - q : q - p);
        if (compare_products(diff, 10'000, static_cast<u128>(q), m_collar_bps) > 0)
            r.add(ReasonCode::price_collar_breached);
    }

    StringSet m_instruments, m_counterparties, m_regions;
    std::uint64_t m_currency;
    Decimal m_max_transaction;
    std::uint64_t m_minutes[(7 * 1440 + 63) / 64] = {};
    std::vector<Decimal> m_max_quantity;
    std::vector<unsigned char> m_has_max_quantity;
    std::uint32_t m_collar_bps = 0;
    std::uint32_t m_rate_limit = 0;
    bool m_has_daily_limit = false;
    int128 m_daily_limit = 0;
};

}  // namespace detail

/// Counters since construction; read with Guard::counters().
struct GuardCounters {
    std::uint64_t checks = 0;
    std::uint64_t allowed = 0;
    std::uint64_t rejected = 0;
};

/// Who stopped or re-enabled the Guard, and why (RTS 6 Art. 12 and 15(3)).
struct GuardStateChange {
    bool halted = false;
    TimeNs at_ns = 0;
    std::string by;  ///< a named person, or "kakunin" for automatic halts
    std::string reason;
};

class Guard {
public:
    /// Validates and compiles the scope; throws kakunin::Error (invalid_input) if it is invalid.
    /// The clock is borrowed and must outlive the Guard.
    Guard(const Scope& scope, const Clock& clock)
        : m_scope(scope), m_compiled(scope), m_clock(clock) {
        if (m_compiled.rate_limit() > 0) m_rate_ring.assign(m_compiled.rate_limit(), 0);
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

    /// Decides on one order. Never throws, never allocates, reads the clock once. Every reason
    /// that applies is reported. Stateful limits (message rate, daily notional) are updated
    /// atomically with the verdict, so concurrent callers see one consistent order of checks.
    Decision check(const Order& order) noexcept {
        Decision d;
        d.ts_ns = m_clock.now_ns();
        int128 day_units;
        d.reasons = m_compiled.evaluate(order, d.ts_ns, day_units);

        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (m_halted.load(std::memory_order_relaxed)) d.reasons.add(ReasonCode::halted);
        if (!m_rate_ring.empty()) {
            // Sliding one-second window over every message checked, rejected ones included.
            const TimeNs oldest = m_rate_ring[m_rate_next];
            if (m_rate_filled && d.ts_ns - oldest < 1'000'000'000)
                d.reasons.add(ReasonCode::order_rate_exceeded);
            m_rate_ring[m_rate_next] = d.ts_ns;
            if (++m_rate_next == m_rate_ring.size()) {
                m_rate_next = 0;
                m_rate_filled = true;
            }
        }
        if (m_compiled.has_daily_limit() && day_units >= 0) {
            const std::int64_t day = utc_day(d.ts_ns);
            if (day != m_day) {
                m_day = day;
                m_day_total = 0;
            }
            if (day_units > m_compiled.daily_limit() - m_day_total)
                d.reasons.add(ReasonCode::daily_notional_exceeded);
        }
        ++m_counters.checks;
        if (d.reasons.empty()) {
            d.verdict = Verdict::allow;
            if (m_compiled.has_daily_limit()) m_day_total += day_units;
            ++m_counters.allowed;
        } else {
            d.verdict = Verdict::reject;
            ++m_counters.rejected;
        }
        return d;
    }

    /// Kill switch (RTS 6 Art. 12): from the moment this returns, every check() rejects with
    /// `halted`. `by` names the person or system; both strings are kept.
    void halt(std::string_view reason, std::string_view by) {
        GuardStateChange change{true, m_clock.now_ns(), std::string(by), std::string(reason)};
        std::lock_guard<std::mutex> history(m_history_mutex);
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            m_halted.store(true, std::memory_order_relaxed);
        }
        m_history.push_back(std::move(change));
    }

    /// Re-enables a halted Guard (RTS 6 Art. 15(3): a designated person decides). Throws
    /// kakunin::Error (invalid_state) if the Guard is not halted, (invalid_input) if `by` is empty.
    void resume(std::string_view by) {
        if (by.empty())
            throw Error(ErrorCategory::invalid_input,
                        "resume: the person re-enabling must be named");
        GuardStateChange change{false, m_clock.now_ns(), std::string(by), "resumed"};
        std::lock_guard<std::mutex> history(m_history_mutex);
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            if (!m_halted.load(std::memory_order_relaxed))
                throw Error(ErrorCategory::invalid_state, "resume: the guard is not halted");
            m_halted.store(false, std::memory_order_relaxed);
        }
        m_history.push_back(std::move(change));
    }

    bool halted() const noexcept { return m_halted.load(std::memory_order_acquire); }

    /// Every halt and resume so far, oldest first.
    std::vector<GuardStateChange> state_history() const {
        std::lock_guard<std::mutex> history(m_history_mutex);
        return m_history;
    }

    GuardCounters counters() const noexcept {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        return m_counters;
    }

    const Scope& scope() const noexcept { return m_scope; }

private:
    const Scope m_scope;
    const detail::CompiledScope m_compiled;
    const Clock& m_clock;

    mutable detail::SpinLock m_lock;  // guards everything below up to m_counters
    std::atomic<bool> m_halted{false};
    std::vector<TimeNs> m_rate_ring;
    std::size_t m_rate_next = 0;
    bool m_rate_filled = false;
    std::int64_t m_day = INT64_MIN;
    int128 m_day_total = 0;
    GuardCounters m_counters;

    mutable std::mutex m_history_mutex;
    std::vector<GuardStateChange> m_history;
};

}  // namespace kakunin
