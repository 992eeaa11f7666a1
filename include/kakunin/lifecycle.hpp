// kakunin/lifecycle.hpp — what happens to an order after check(): the agent's amend and cancel
// requests, and the venue's execution reports (docs/lifecycle.md). Value types only; text fields
// are views the caller owns for the duration of the call, and nothing here allocates.
//
//   kakunin::Amend a{"c-17", kakunin::parse_decimal("2"), std::nullopt};   // new total quantity
//   kakunin::ExecutionReport fill{kakunin::ExecutionType::fill, "c-17", "BTC_EUR",
//                                 kakunin::Side::buy, kakunin::parse_decimal("0.5"),
//                                 kakunin::parse_decimal("42000.10")};
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kakunin/decimal.hpp"
#include "kakunin/order.hpp"

namespace kakunin {

/// A working order's id is kept in a fixed slot: a longer client_order_id cannot be tracked and
/// a new order carrying one is rejected (order_id_missing).
inline constexpr std::size_t max_order_id_length = 64;

/// Working orders tracked when the scope sets lifecycle limits but no max_open_orders and the
/// Guard's options name no capacity. Over capacity a new order is rejected, never allocated.
inline constexpr std::size_t default_working_order_capacity = 4096;

/// A change to a working order: its new total quantity (the filled part included) and/or its
/// new price. An absent member keeps the order's current value.
struct Amend {
    std::string_view client_order_id;
    std::optional<Decimal> quantity;
    std::optional<Decimal> price;
    /// For a new price when the scope sets price_collar_bps (as Order::reference_price).
    std::optional<Decimal> reference_price = std::nullopt;
};

/// A request to cancel a working order. Never refused for limits, halt or revocation; only an
/// id that is not working is refused (unknown_order_id).
struct Cancel {
    std::string_view client_order_id;
};

/// What the venue reports. `mark` is not about an order: it sets an instrument's mark price.
enum class ExecutionType : std::uint8_t {
    ack,        ///< the venue accepted the new order, or the oldest pending amend
    reject,     ///< the venue refused the order: it stops working
    fill,       ///< part or all of the order executed (quantity and price of this fill)
    cancelled,  ///< the order was cancelled: it stops working
    expired,    ///< the order expired (time in force): it stops working
    mark,       ///< the instrument's mark price, for unrealised profit and loss
};

inline const char* to_string(ExecutionType t) noexcept {
    switch (t) {
        case ExecutionType::ack: return "ack";
        case ExecutionType::reject: return "reject";
        case ExecutionType::fill: return "fill";
        case ExecutionType::cancelled: return "cancelled";
        case ExecutionType::expired: return "expired";
        case ExecutionType::mark: return "mark";
    }
    return "unknown";
}

struct ExecutionReport {
    ExecutionType type = ExecutionType::ack;
    std::string_view client_order_id;  ///< empty for mark
    /// For a fill of an id that is not working (whose position it moves) and for mark. For a
    /// working order the order's own instrument and side apply.
    std::string_view instrument;
    Side side = Side::buy;
    Decimal quantity;  ///< fill: executed quantity, > 0
    Decimal price;     ///< fill: execution price; mark: the mark price; > 0
};

/// What applying one execution report did.
struct ExecutionResult {
    bool applied = false;        ///< the state changed
    bool unknown_order = false;  ///< the id is not working (a fill is applied all the same)
    bool order_closed = false;   ///< the order stopped working: its exposure is released
    /// This report took the day's loss to max_daily_loss: reduce-only mode is now in force.
    bool reduce_only_entered = false;
    /// Static text for the error handler when the report was refused or is suspicious (a fill
    /// for an unknown id, a malformed report); null otherwise.
    const char* problem = nullptr;
};

}  // namespace kakunin
