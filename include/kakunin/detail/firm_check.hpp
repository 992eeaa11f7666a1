// kakunin/detail/firm_check.hpp — the Guard's side of firm-wide budgets (firm_limits.hpp):
// the leases it holds, checked and consumed under the Guard's lock without allocating.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/order_limits.hpp"
#include "kakunin/detail/wide_math.hpp"
#include "kakunin/error.hpp"
#include "kakunin/firm_limits.hpp"
#include "kakunin/order.hpp"

namespace kakunin::detail {

class FirmCheck {
public:
    static constexpr std::size_t max_leases = 8;

    /// The consumption each lease would reach, for commit().
    struct Plan {
        std::array<std::int64_t, max_leases> level;  ///< filled by evaluate() for each lease
    };

    FirmCheck() = default;
    FirmCheck(const FirmCheck&) = delete;
    FirmCheck& operator=(const FirmCheck&) = delete;
    /// Gives the leases back: also when the Guard's constructor throws after attach().
    ~FirmCheck() {
        if (m_source) m_source->detach(m_leases);
    }

    void attach(const std::shared_ptr<FirmLimitSource>& source, std::string_view agent_id,
                const Clock& clock) {
        std::vector<std::shared_ptr<FirmLease>> leases = source->attach(agent_id, clock);
        if (leases.size() > max_leases) {
            source->detach(leases);
            throw Error(ErrorCategory::invalid_input,
                        "firm limits: a Guard holds at most 8 budgets' leases");
        }
        m_source = source;
        m_leases = std::move(leases);
        for (const auto& l : m_leases) m_any_held |= firm_budget_held(l->kind());
    }

    /// The scope's instruments (at construction and rotation, under the Guard's lock): a money
    /// budget checks an order's quote currency only when some instrument is quoted in another.
    void bind(const std::vector<std::string>& instruments) noexcept {
        for (std::size_t i = 0; i < m_leases.size(); ++i) {
            const FirmLease& l = *m_leases[i];
            bool other = false;
            if (l.kind() != FirmBudgetKind::open_orders)
                for (const std::string& s : instruments) other |= quote_of(s) != l.currency();
            m_check_currency[i] = other;
        }
    }
    const std::vector<std::shared_ptr<FirmLease>>& leases() const noexcept { return m_leases; }
    bool any() const noexcept { return !m_leases.empty(); }

    /// 10^-18 money units to the leases' 10^-6, rounded up (a Guard never takes less than it
    /// uses); negative amounts are 0.
    static std::int64_t money6(int128 units18) noexcept {
        if (units18 <= 0) return 0;
        constexpr std::uint64_t d = 1000000000000;  // 10^12
        // Most notionals fit in 64 bits: a 64-bit division is several times cheaper.
        if (units18 <= static_cast<int128>(UINT64_MAX - d)) {
            const auto u = static_cast<std::uint64_t>(units18);
            return static_cast<std::int64_t>((u + d - 1) / d);
        }
        const int128 q = (units18 + static_cast<int128>(d) - 1) / static_cast<int128>(d);
        return q > INT64_MAX ? INT64_MAX : static_cast<std::int64_t>(q);
    }

    /// ceil(quantity x price) in 10^-18 money, for a Guard that does not track notional; 0
    /// for an order that is not a valid one (its other reasons refuse it).
    static int128 notional_of(const Order& o) noexcept {
        if (o.quantity.units <= 0 || o.price.units <= 0 || o.quantity.scale > 18 ||
            o.price.scale > 18)
            return 0;
        const int128 q = static_cast<int128>(o.quantity.units) *
                         static_cast<int128>(pow10_u64(18 - o.quantity.scale));
        int128 out = 0;
        return mul_div_pow10(q, o.price.units, o.price.scale, true, out) ? out : 0;
    }

    /// What an amend adds to the notional when the Guard does not track it: its largest terms
    /// now against the order's largest before (both ceil(quantity x price), 10^-18 money; 0
    /// when it adds nothing or does not fit, which its other reasons refuse).
    static int128 amend_notional(int128 quantity, Decimal price, int128 old_quantity,
                                 Decimal old_price) noexcept {
        int128 now = 0, before = 0;
        if (!mul_div_pow10(quantity, price.units, price.scale, true, now)) return 0;
        if (!mul_div_pow10(old_quantity, old_price.units, old_price.scale, false, before))
            before = 0;
        return now > before ? now - before : 0;
    }

    /// A request on `instrument` adding `notional` (10^-18 money) to the day's total and
    /// the working notional, and `orders` working orders, with the Guard now at
    /// `working_notional` (10^-18) and `working` orders.
    ReasonSet evaluate(std::string_view instrument, int128 notional, int128 working_notional,
                       std::size_t working, int orders, TimeNs now, Plan& plan) const noexcept {
        ReasonSet r;
        const std::int64_t added = money6(notional);
        for (std::size_t i = 0; i < m_leases.size(); ++i) {
            const FirmLease& l = *m_leases[i];
            std::int64_t level = 0;
            switch (l.kind()) {
                case FirmBudgetKind::daily_notional: level = sat_add(l.consumed(), added); break;
                case FirmBudgetKind::working_notional:
                    level = money6(working_notional + notional);
                    break;
                case FirmBudgetKind::open_orders:
                    level = static_cast<std::int64_t>(working) + orders;
                    break;
            }
            plan.level[i] = level;
            if (m_check_currency[i] && notional > 0 && quote_of(instrument) != l.currency()) {
                r.add(ReasonCode::firm_limit_exceeded);
                continue;
            }
            // Only what the request adds is refused: a held level may sit above a lease that
            // shrank, and cancelling down to it must stay possible.
            const bool adds = l.kind() == FirmBudgetKind::open_orders ? orders > 0 : added > 0;
            if (!adds) continue;
            switch (l.refuses(level, now)) {
                case 1: r.add(ReasonCode::firm_limit_exceeded); break;
                case 2: r.add(ReasonCode::firm_lease_expired); break;
                default: break;
            }
        }
        return r;
    }

    /// The request was allowed: its spent budgets are consumed.
    void commit(const Plan& plan) noexcept {
        for (std::size_t i = 0; i < m_leases.size(); ++i) {
            if (!firm_budget_held(m_leases[i]->kind())) m_leases[i]->consume(plan.level[i]);
        }
    }
    bool any_held() const noexcept { return m_any_held; }

    /// After any change to working orders: the held budgets' levels, as they are now.
    void hold(int128 working_notional, std::size_t working) noexcept {
        if (!m_any_held) return;
        for (const auto& l : m_leases) {
            if (l->kind() == FirmBudgetKind::working_notional)
                l->consume(money6(working_notional));
            else if (l->kind() == FirmBudgetKind::open_orders)
                l->consume(static_cast<std::int64_t>(working));
        }
    }

private:
    static std::int64_t sat_add(std::int64_t a, std::int64_t b) noexcept {
        std::int64_t out;
        return __builtin_add_overflow(a, b, &out) ? INT64_MAX : out;
    }

    std::shared_ptr<FirmLimitSource> m_source;
    std::array<bool, max_leases> m_check_currency{};
    bool m_any_held = false;
    std::vector<std::shared_ptr<FirmLease>> m_leases;
};

}  // namespace kakunin::detail
