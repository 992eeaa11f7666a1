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

/// RTS 6 Art. 15 pre-trade limits. Every member is optional.
struct PreTradeLimits {
    /// instrument -> maximum quantity per order, sorted by instrument.
    std::vector<std::pair<std::string, Decimal>> max_order_quantity;
    std::optional<std::uint32_t> price_collar_bps;       ///< |price - reference| <= bps/10^4 x ref
    std::optional<std::uint32_t> max_orders_per_second;  ///< every order message checked counts
    std::optional<Money> max_daily_notional;             ///< allowed orders per UTC day

    bool empty() const noexcept {
        return max_order_quantity.empty() && !price_collar_bps && !max_orders_per_second &&
               !max_daily_notional;
    }
};

struct Scope {
    static constexpr int current_version = 1;
    /// Limits that keep compiled state bounded; a scope beyond them is refused.
    static constexpr std::size_t max_list_size = 4096;
    static constexpr std::uint32_t max_rate_limit = 1'000'000;
    static constexpr std::uint32_t max_collar_bps = 1'000'000;

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
