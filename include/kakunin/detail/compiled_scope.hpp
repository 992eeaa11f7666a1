// kakunin/detail/compiled_scope.hpp — a Scope compiled for the hot path, and the Authority the
// Guard swaps whole on rotation and CRL updates. Immutable after construction.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/string_set.hpp"
#include "kakunin/detail/wide_math.hpp"
#include "kakunin/error.hpp"
#include "kakunin/order.hpp"
#include "kakunin/scope.hpp"

namespace kakunin {
namespace detail {

/// `units` x 10^-scale as a Decimal, trailing zeros dropped; zero (invalid) if it does not fit.
/// Exact for any amount that came from a Decimal (OrderLimits keeps 10^-18 units).
inline Decimal decimal_of_units(int128 units, unsigned scale) noexcept {
    while (scale > 0 && units % 10 == 0) {
        units /= 10;
        --scale;
    }
    if (units > INT64_MAX || units < INT64_MIN) return Decimal{};
    return Decimal{static_cast<std::int64_t>(units), static_cast<std::uint8_t>(scale)};
}

/// A Scope compiled for the hot path: interned names, a minute-of-week bitmap, limits rescaled
/// to fixed units. Immutable after construction; evaluate() is stateless and thread-safe.
class CompiledScope {
public:
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
    }

    /// The stateless part of a check: every reason that depends on the order and the time only.
    /// The stateful limits (rate, daily notional, the lifecycle) are detail::OrderLimits'.
    ReasonSet evaluate(const Order& o, TimeNs now) const noexcept {
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
        if (!fields_recordable(o)) r.add(ReasonCode::order_field_too_long);

        check_terms(instrument, o.quantity, o.price, o.reference_price, true, r);
        return r;
    }

    /// The scope's reasons against an amend's new terms of a working order (its instrument's
    /// index, the total quantity and price in force after the amend): the order-size, money and
    /// collar limits, and the trading hours. The rest was decided when the order was new.
    ReasonSet evaluate_amend(int instrument, Decimal quantity, Decimal price,
                             const std::optional<Decimal>& reference_price, bool price_changed,
                             TimeNs now) const noexcept {
        ReasonSet r;
        if (!minute_allowed(minute_of_week(now))) r.add(ReasonCode::outside_trading_hours);
        if (!quantity.is_positive()) r.add(ReasonCode::invalid_quantity);
        if (!price.is_positive()) r.add(ReasonCode::invalid_price);
        // The collar judges a new price only: an amend of the quantity alone keeps a price that
        // was within the collar when it was checked.
        check_terms(instrument, quantity, price, reference_price, price_changed, r);
        return r;
    }

    std::uint32_t rate_limit() const noexcept { return m_rate_limit; }
    /// The instrument of index i (as detail::OrderLimits numbers them: the scope's order).
    std::string_view instrument_name(int i) const noexcept {
        return i >= 0 ? m_instruments.item(i) : std::string_view();
    }

private:
    void set_minute(unsigned m) noexcept { m_minutes[m / 64] |= std::uint64_t{1} << (m % 64); }
    bool minute_allowed(unsigned m) const noexcept { return (m_minutes[m / 64] >> (m % 64)) & 1u; }

    /// Order size, max_transaction and the collar, for an order's (or an amend's) terms.
    void check_terms(int instrument, Decimal quantity, Decimal price,
                     const std::optional<Decimal>& reference_price, bool collar,
                     ReasonSet& r) const noexcept {
        const bool price_ok = price.is_positive();
        if (quantity.is_positive() && price_ok &&
            compare(multiply(quantity, price), m_max_transaction) > 0)
            r.add(ReasonCode::max_transaction_exceeded);
        if (instrument >= 0 && m_has_max_quantity[static_cast<std::size_t>(instrument)] &&
            compare(quantity, m_max_quantity[static_cast<std::size_t>(instrument)]) > 0)
            r.add(ReasonCode::max_order_quantity_exceeded);
        if (collar && m_collar_bps != 0) check_collar(price, reference_price, price_ok, r);
    }

    void check_collar(Decimal price, const std::optional<Decimal>& reference_price, bool price_ok,
                      ReasonSet& r) const noexcept {
        if (!reference_price) {
            r.add(ReasonCode::reference_price_missing);
            return;
        }
        const Decimal ref = *reference_price;
        if (!ref.is_positive()) {
            r.add(ReasonCode::invalid_reference_price);
            return;
        }
        if (!price_ok) return;
        // |price - ref| / ref <= bps / 10^4, exactly: both at one scale (< 2^123), then
        // |P - R| * 10^4 <= bps * R in 256-bit arithmetic.
        const unsigned scale = price.scale > ref.scale ? price.scale : ref.scale;
        const int128 p = static_cast<int128>(price.units) * pow10_128(scale - price.scale);
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
};

/// What the hot path needs of the agent's authority: the compiled scope and the times that
/// end it. Immutable; replaced whole by Guard::rotate() and Guard::update_crl().
struct Authority {
    explicit Authority(const Scope& scope) : compiled(scope) {}
    CompiledScope compiled;
    bool has_certificate = false;
    std::int64_t not_before_s = INT64_MIN;  ///< X.509 times have one-second resolution
    std::int64_t not_after_s = INT64_MAX;   ///< inclusive (RFC 5280 §4.1.2.5)
    std::int64_t crl_next_update_s = INT64_MAX;
    std::int64_t expiry_warning_s = INT64_MAX;  ///< from here on, warn once
};

}  // namespace detail

}  // namespace kakunin
