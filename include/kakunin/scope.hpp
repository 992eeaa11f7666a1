// kakunin/scope.hpp — an agent's authority limits (DESIGN §3): what it may trade, where, when,
// and how much, including the RTS 6 Art. 15 pre-trade limits.
//
// The JSON form is the one people read and approve; the certificate carries the same content in
// a critical extension. Parsing validates everything and names the member at fault:
//
//   kakunin::Scope scope = kakunin::parse_scope_json(text);   // throws kakunin::Error
//   std::string canonical = kakunin::to_json(scope);           // sorted keys, no whitespace
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kakunin/money.hpp"

namespace kakunin {

/// Days are a bit mask, bit 0 = Monday ... bit 6 = Sunday.
struct TradingWindow {
    std::uint8_t days = 0;
    std::uint16_t from_minute = 0;  ///< inclusive, 0..1439
    std::uint16_t to_minute = 0;    ///< exclusive, 1..1440 (1440 = "24:00")
};

/// The largest net position an agent may hold in one instrument, in base units, each side
/// checked worst case (docs/lifecycle.md): position + working buys + this buy <= max_long, and
/// position - working sells - this sell >= -max_short. Zero forbids that side.
struct PositionLimit {
    Decimal max_long;
    Decimal max_short;
};

/// RTS 6 Art. 15 pre-trade limits. Every member is optional.
struct PreTradeLimits {
    /// instrument -> maximum quantity per order, sorted by instrument.
    std::vector<std::pair<std::string, Decimal>> max_order_quantity;
    std::optional<std::uint32_t> price_collar_bps;       ///< |price - reference| <= bps/10^4 x ref
    std::optional<std::uint32_t> max_orders_per_second;  ///< every new order checked counts
    /// Exposure per UTC day: notional filled today plus the remaining notional of working
    /// orders (without lifecycle tracking: the notional of the day's allowed orders).
    std::optional<Money> max_daily_notional;

    // Order lifecycle limits (docs/lifecycle.md). Any of them turns lifecycle tracking on:
    // every new order then needs a client_order_id.
    /// instrument -> worst-case net position limit, sorted by instrument.
    std::vector<std::pair<std::string, PositionLimit>> max_position;
    std::optional<std::uint32_t> max_open_orders;  ///< working orders at once
    std::optional<Money> max_working_notional;     ///< remaining notional of working orders
    /// New orders, amends and cancels together, in any one-second window.
    std::optional<std::uint32_t> max_messages_per_second;
    /// Realised plus unrealised loss over the UTC day; reaching it means reduce-only.
    std::optional<Money> max_daily_loss;

    /// True when any order lifecycle limit is set.
    bool has_lifecycle_limits() const noexcept {
        return !max_position.empty() || max_open_orders || max_working_notional ||
               max_messages_per_second || max_daily_loss;
    }

    bool empty() const noexcept {
        return max_order_quantity.empty() && !price_collar_bps && !max_orders_per_second &&
               !max_daily_notional && !has_lifecycle_limits();
    }
};

struct Scope {
    static constexpr int current_version = 1;
    /// Limits that keep compiled state bounded; a scope beyond them is refused.
    static constexpr std::size_t max_list_size = 4096;
    static constexpr std::uint32_t max_rate_limit = 1'000'000;
    static constexpr std::uint32_t max_collar_bps = 1'000'000;
    /// Bound of limits.max_open_orders: the working-order table is preallocated to it.
    static constexpr std::uint32_t max_open_orders_limit = 100'000;

    int version = current_version;
    Money max_transaction;
    std::vector<std::string> instruments;
    std::vector<std::string> counterparties;
    std::vector<TradingWindow> trading_hours;
    std::vector<std::string> regions;
    PreTradeLimits limits;
};

/// Checks a Scope built in code as strictly as the JSON parser does. Throws kakunin::Error
/// (invalid_input) naming the member, e.g. "instruments[2]: 'BTCEUR' is not BASE_QUOTE".
void validate(const Scope& scope);

/// Parses and validates the JSON form. Unknown or duplicate members, numbers where decimal
/// strings belong, negative amounts and empty lists are errors naming the member; JSON syntax
/// errors name the line and column.
Scope parse_scope_json(std::string_view text);

/// Reads a file and parses it; errors are prefixed with the path.
Scope load_scope_file(const std::string& path);

/// Canonical JSON (RFC 8785 for this integer/string-only document: sorted keys, no whitespace).
/// parse_scope_json(to_json(s)) == s, and the approval hash is SHA-256 over these bytes.
std::string to_json(const Scope& scope);

/// Same content, indented for people.
std::string to_pretty_json(const Scope& scope);

/// "Mon".."Sun" for bit 0..6.
const char* day_name(int bit) noexcept;

}  // namespace kakunin
