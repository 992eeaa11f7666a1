// kakunin/firm_limits.hpp — desk and firm budgets shared by many Guards in many processes
// (RTS 6 Art. 15(4)-(5): credit and market limits per desk and firm; docs/operations.md).
//
// A budget (say the firm's daily notional, 5,000,000 EUR) is shared by every Guard that holds a
// lease of it. A lease is a part of the budget, taken and topped up in the background by a
// FirmLimitSource (PostgresFirmLimits: the sum of leases never exceeds the budget, even with
// processes killed mid-way). check() only consumes its lease: no network, no allocation, reason
// firm_limit_exceeded when it is used up and firm_lease_expired when none is in force.
//
//   auto firm = std::make_shared<kakunin::PostgresFirmLimits>(runtime, {{"firm-daily"}});
//   options.firm_limits = firm;   // every Guard of this desk
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"

namespace kakunin {

/// What a budget limits, summed over every Guard holding a lease of it.
enum class FirmBudgetKind : std::uint8_t {
    /// Notional of the orders allowed in the UTC day (quantity x price, the quote currency's
    /// money; amends that raise it count their increase). Spent: it comes back only at midnight.
    daily_notional,
    /// Remaining notional of working orders. Held: it comes back as orders stop working.
    working_notional,
    /// Working orders. Held.
    open_orders,
};

const char* to_string(FirmBudgetKind kind) noexcept;
/// "daily_notional", "working_notional", "open_orders"; nullopt for anything else.
std::optional<FirmBudgetKind> firm_budget_kind(std::string_view name) noexcept;
/// Held budgets need the Guard to track working orders (it then does, with the default capacity
/// when nothing else sets one).
constexpr bool firm_budget_held(FirmBudgetKind kind) noexcept {
    return kind != FirmBudgetKind::daily_notional;
}

/// Amounts of money are kept in 10^-6 of the currency (a Guard consumes the ceiling); orders as
/// counts.
inline constexpr unsigned firm_money_scale = 6;

/// One Guard's lease of one budget. The Guard consumes it under its own lock; the source tops it
/// up from its own thread. Both sides use atomics, so neither waits for the other.
///
/// Levels are in the Guard's own terms: `consumed` is what the Guard has taken (spent budgets:
/// its running total, never reset; held budgets: what it holds now), `granted` is how far it may
/// go, `acked` is the consumption the source last reported to the budget's keeper, and `slice`
/// bounds how far consumption may run ahead of `acked`. So the keeper always knows each lease's
/// consumption to within one slice, which is what lets it take back a dead holder's lease safely.
class FirmLease {
public:
    /// `currency`: for money budgets, the quote currency they are kept in (an order quoted in
    /// another is refused, firm_limit_exceeded); empty for open_orders.
    FirmLease(std::string budget_id, FirmBudgetKind kind, std::string currency, std::int64_t slice)
        : m_budget_id(std::move(budget_id)),
          m_kind(kind),
          m_currency(std::move(currency)),
          m_slice(slice) {}

    const std::string& budget_id() const noexcept { return m_budget_id; }
    const std::string& currency() const noexcept { return m_currency; }
    FirmBudgetKind kind() const noexcept { return m_kind; }
    std::int64_t slice() const noexcept { return m_slice; }

    /// The Guard, under its lock: 0 if consumption may reach `level` at `now`, else the reason
    /// (1: the lease is used up, 2: no lease in force). Allocation-free.
    int refuses(std::int64_t level, TimeNs now) const noexcept {
        if (now >= m_expires_ns.load(std::memory_order_acquire)) return 2;
        const std::int64_t cap = std::min(m_granted.load(std::memory_order_acquire),
                                          m_acked.load(std::memory_order_acquire) + m_slice);
        return level > cap ? 1 : 0;
    }
    /// The Guard, under its lock: consumption is now `level`.
    void consume(std::int64_t level) noexcept {
        m_consumed.store(level, std::memory_order_release);
    }
    std::int64_t consumed() const noexcept { return m_consumed.load(std::memory_order_acquire); }

    /// The source: the keeper granted up to `granted`, knowing consumption `acked`, until
    /// `expires_ns` (the Guard's clock). A lease with `expires_ns` 0 is not in force.
    void grant(std::int64_t granted, std::int64_t acked, TimeNs expires_ns) noexcept {
        // The grant first: a check between the stores sees the new grant with the old acked
        // (the bound it had, capped by what the keeper now counts) or both new; never a new
        // acked (which may have jumped, after the keeper took an aged-out lease back) with the
        // old grant. The expiry last: a first grant is in force only once both are there.
        m_granted.store(granted, std::memory_order_release);
        m_acked.store(acked, std::memory_order_release);
        m_expires_ns.store(expires_ns, std::memory_order_release);
    }
    void withdraw() noexcept { m_expires_ns.store(0, std::memory_order_release); }

    std::int64_t granted() const noexcept { return m_granted.load(std::memory_order_acquire); }
    std::int64_t acked() const noexcept { return m_acked.load(std::memory_order_acquire); }
    TimeNs expires_ns() const noexcept { return m_expires_ns.load(std::memory_order_acquire); }

private:
    std::string m_budget_id;
    FirmBudgetKind m_kind;
    std::string m_currency;
    std::int64_t m_slice;
    std::atomic<std::int64_t> m_consumed{0};
    std::atomic<std::int64_t> m_granted{0};
    std::atomic<std::int64_t> m_acked{0};
    std::atomic<TimeNs> m_expires_ns{0};
};

/// Hands leases to Guards and keeps them topped up (PostgresFirmLimits; or your own keeper).
class FirmLimitSource {
public:
    virtual ~FirmLimitSource() = default;
    /// Whether any of its budgets is held (working_notional, open_orders): the Guard then
    /// tracks working orders and their notional.
    virtual bool holds_working_orders() const noexcept = 0;
    /// A Guard of `agent_id` starts: one lease per budget the source applies, registered and
    /// topped up from now on (the first grant may still be on its way: until then the Guard
    /// refuses with firm_lease_expired). `clock` is the Guard's, for the leases' expiry; it
    /// outlives the leases. Throws kakunin::Error if the source cannot take the Guard.
    virtual std::vector<std::shared_ptr<FirmLease>> attach(std::string_view agent_id,
                                                           const Clock& clock) = 0;
    /// The Guard stops: its leases are withdrawn and what it did not consume goes back (or
    /// ages out, if the keeper cannot be reached). Must not throw.
    virtual void detach(const std::vector<std::shared_ptr<FirmLease>>& leases) noexcept = 0;
};

}  // namespace kakunin
