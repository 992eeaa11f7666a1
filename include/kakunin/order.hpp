// kakunin/order.hpp — the order a strategy asks the Guard about.
//
// Text fields are views: the caller owns the bytes for the duration of Guard::check(), which
// copies what it keeps. Nothing here allocates.
//
//   kakunin::Order o;
//   o.instrument = "BTC_EUR"; o.counterparty = "exchange_a"; o.region = "eu-west-1";
//   o.side = kakunin::Side::buy;
//   o.quantity = kakunin::parse_decimal("0.5"); o.price = kakunin::parse_decimal("42000.00");
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "kakunin/decimal.hpp"

namespace kakunin {

enum class Side : unsigned char { buy, sell };

inline const char* to_string(Side s) noexcept { return s == Side::buy ? "BUY" : "SELL"; }

struct Order {
    std::string_view client_order_id;
    std::string_view instrument;    ///< BASE_QUOTE, e.g. "BTC_EUR"
    std::string_view counterparty;  ///< venue or counterparty id, e.g. "exchange_a"
    Side side = Side::buy;
    Decimal quantity;         ///< in the base asset; must be > 0
    Decimal price;            ///< in the quote currency per unit of base; must be > 0
    std::string_view region;  ///< where the order is signed, e.g. "eu-west-1"
    std::optional<Decimal> reference_price;  ///< for the price collar (e.g. last trade or mid)
    std::string_view reasoning;  ///< the agent's stated rationale, kept in the audit record
};

/// The longest client order id, instrument, counterparty or region an order may carry: what
/// an audit record holds whole. The Guard rejects a longer one (order_field_too_long) rather
/// than record it cut, where two different ids would read the same.
inline constexpr std::size_t max_order_field_length = 128;

/// True if the id, instrument, counterparty and region each fit max_order_field_length.
constexpr bool fields_recordable(const Order& o) noexcept {
    return o.client_order_id.size() <= max_order_field_length &&
           o.instrument.size() <= max_order_field_length &&
           o.counterparty.size() <= max_order_field_length &&
           o.region.size() <= max_order_field_length;
}

/// The quote currency of "BASE_QUOTE" (text after the last '_'), or empty if malformed.
constexpr std::string_view quote_of(std::string_view instrument) noexcept {
    const auto pos = instrument.rfind('_');
    if (pos == std::string_view::npos || pos == 0 || pos + 1 >= instrument.size()) return {};
    return instrument.substr(pos + 1);
}

}  // namespace kakunin
