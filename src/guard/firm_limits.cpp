// Names of firm-wide budget kinds (firm_limits.hpp).
#include "kakunin/firm_limits.hpp"

namespace kakunin {

const char* to_string(FirmBudgetKind kind) noexcept {
    switch (kind) {
        case FirmBudgetKind::daily_notional: return "daily_notional";
        case FirmBudgetKind::working_notional: return "working_notional";
        case FirmBudgetKind::open_orders: return "open_orders";
    }
    return "unknown";
}

std::optional<FirmBudgetKind> firm_budget_kind(std::string_view name) noexcept {
    for (FirmBudgetKind k : {FirmBudgetKind::daily_notional, FirmBudgetKind::working_notional,
                             FirmBudgetKind::open_orders}) {
        if (name == to_string(k)) return k;
    }
    return std::nullopt;
}

}  // namespace kakunin
