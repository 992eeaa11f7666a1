// Shared test helpers: the seed scope of DESIGN §3 and order builders.
#pragma once

#include <stdexcept>
#include <string>

#include "kakunin/clock.hpp"
#include "kakunin/order.hpp"
#include "kakunin/scope.hpp"

namespace kakunin::test {

inline const std::string seed_scope_json = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a", "exchange_b"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "07:00", "to": "20:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"}
  }
})";

/// The seed scope JSON with the first occurrence of `from` replaced by `to`.
inline std::string seed_with(const std::string& from, const std::string& to) {
    std::string s = seed_scope_json;
    const auto pos = s.find(from);
    if (pos == std::string::npos)
        throw std::logic_error("seed_with: '" + from + "' not in the seed");
    return s.replace(pos, from.size(), to);
}

/// Monday 2024-01-08 (a Monday), at the given UTC time.
inline TimeNs monday(unsigned h, unsigned m = 0, unsigned s = 0) {
    return utc(2024, 1, 8, h, m, s);
}

/// An order inside the seed scope: 1 BTC at 40000.00 on exchange_a from eu-west-1, reference
/// price equal to the price.
inline Order good_order() {
    Order o;
    o.client_order_id = "c-1";
    o.instrument = "BTC_EUR";
    o.counterparty = "exchange_a";
    o.side = Side::buy;
    o.quantity = Decimal{1, 0};
    o.price = Decimal{4000000, 2};
    o.region = "eu-west-1";
    o.reference_price = o.price;
    return o;
}

}  // namespace kakunin::test
