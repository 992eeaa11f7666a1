// kakunin/detail/order_limits.hpp — the order lifecycle engine (docs/lifecycle.md): working
// orders, positions, exposure, message rate, daily loss and reduce-only mode, all preallocated
// at construction. Requests are decided and reports applied without allocating or throwing.
//
//   detail::OrderLimits limits(scope, options_capacity);
//   detail::OrderLimits::NewPlan plan;
//   ReasonSet r = limits.evaluate_new(order, now, plan);   // + the Guard's other reasons
//   limits.count_message(now);                             // every request checked counts
//   if (r.empty()) limits.commit_new(order, plan, now);     // only an allowed order
//   ExecutionResult e = limits.apply(report, now);         // venue reports
//
// Not thread-safe: the Guard serialises every call under its own lock.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/string_set.hpp"
#include "kakunin/detail/wide_math.hpp"
#include "kakunin/error.hpp"
#include "kakunin/lifecycle.hpp"
#include "kakunin/order.hpp"
#include "kakunin/scope.hpp"

namespace kakunin::detail {

/// round(a x b / 10^s) with floor (round_up false) or ceiling, exact for any operands (the
/// product is formed in 256 bits). False if the result does not fit in int128 (s <= 18).
inline bool mul_div_pow10(int128 a, std::int64_t b, unsigned s, bool round_up,
                          int128& out) noexcept {
    const bool negative = (a < 0) != (b < 0) && a != 0 && b != 0;
    const u128 ua = a < 0 ? static_cast<u128>(-(a + 1)) + 1 : static_cast<u128>(a);
    const u128 ub = b < 0 ? static_cast<u128>(-(b + 1)) + 1 : static_cast<u128>(b);
    u128 hi, lo;
    mul_128x128(ua, ub, hi, lo);
    u128 q = lo;
    bool inexact = false;
    if (s == 0) {
        if (hi != 0) return false;
    } else {
        const std::uint64_t d = static_cast<std::uint64_t>(pow10_128(s));
        if (hi == 0) {
            if ((lo >> 64) == 0) {
                const std::uint64_t l = static_cast<std::uint64_t>(lo);
                q = l / d;
                inexact = l % d != 0;
            } else {
                q = lo / d;
                inexact = lo % d != 0;
            }
        } else {
            // Long division of the four 64-bit limbs by d (< 2^60): each step's quotient fits.
            const std::uint64_t limbs[4] = {
                static_cast<std::uint64_t>(hi >> 64), static_cast<std::uint64_t>(hi),
                static_cast<std::uint64_t>(lo >> 64), static_cast<std::uint64_t>(lo)};
            std::uint64_t quotient[4];
            u128 rem = 0;
            for (int i = 0; i < 4; ++i) {
                const u128 cur = (rem << 64) | limbs[i];
                quotient[i] = static_cast<std::uint64_t>(cur / d);
                rem = cur % d;
            }
            if (quotient[0] != 0 || quotient[1] != 0) return false;
            q = (static_cast<u128>(quotient[2]) << 64) | quotient[3];
            inexact = rem != 0;
        }
    }
    // Rounding away from zero is a ceiling for positive results and a floor for negative ones.
    if (inexact && round_up != negative) ++q;
    const u128 int128_max = ~u128{0} >> 1;
    if (q > int128_max) return false;
    out = negative ? -static_cast<int128>(q) : static_cast<int128>(q);
    return true;
}

/// The order lifecycle engine. Construction validates and preallocates; every other member is
/// noexcept and allocation-free. Amounts are exact: quantities in 10^-18 base units, money in
/// 10^-18 of the scope's currency, both int128.
class OrderLimits {
public:
    static constexpr unsigned scale = 18;  ///< quantities, prices and money, in 10^-18 units

    /// What evaluate_new() found, for commit_new(): computed once.
    struct NewPlan {
        std::uint64_t hash = 0;
        int instrument = -1;
        int counterparty = -1;
        int128 quantity = 0;  ///< in 10^-18 base units
        int128 notional = 0;  ///< ceil(quantity x price), money units; 0 when not tracked
        bool valid = false;   ///< evaluate found the order trackable
    };

    /// What evaluate_amend() found, for commit_amend().
    struct AmendPlan {
        int order = -1;
        int128 latest_quantity = 0;  ///< the amend's total quantity (or the current one)
        Decimal latest_price;
        int128 reserved_quantity = 0;  ///< max of every total since the last settled ack
        Decimal price_high, price_low;
        int128 notional = 0;
    };

    /// One working order, as the Guard or a test reads it.
    struct WorkingOrderInfo {
        int instrument = -1;
        int counterparty = -1;
        Side side = Side::buy;
        int128 filled = 0;             ///< 10^-18 base units
        int128 reserved_quantity = 0;  ///< largest total quantity it may still have
        int128 latest_quantity = 0;    ///< total quantity of the latest request
        Decimal latest_price;
        int128 reserved_notional = 0;  ///< money units (0 when notional is not tracked)
        bool acked = false;
        std::uint32_t pending_amends = 0;
        bool cancel_pending = false;
    };

    /// `capacity`: the Guard's option for working orders when the scope has no
    /// max_open_orders (0: default_working_order_capacity when lifecycle limits are set, and
    /// no tracking otherwise). Throws kakunin::Error (invalid_input) for an invalid scope.
    explicit OrderLimits(const Scope& s, std::size_t capacity = 0)
        : m_instruments(s.instruments), m_counterparties(s.counterparties) {
        validate(s);
        const PreTradeLimits& l = s.limits;
        if (l.max_open_orders)
            m_capacity = *l.max_open_orders;
        else if (capacity > 0)
            m_capacity = capacity;
        else if (l.has_lifecycle_limits())
            m_capacity = default_working_order_capacity;
        if (m_capacity > Scope::max_open_orders_limit)
            throw Error(ErrorCategory::invalid_input,
                        "working order capacity: more than " +
                            std::to_string(Scope::max_open_orders_limit));
        m_instrument_state.assign(m_instruments.size(), InstrumentState{});
        for (const auto& [instrument, limit] : l.max_position) {
            InstrumentState& st =
                m_instrument_state[static_cast<std::size_t>(m_instruments.find(instrument))];
            st.has_limit = true;
            st.max_long = to_units(limit.max_long);
            st.max_short = to_units(limit.max_short);
        }
        auto exact = [](Decimal d, const char* member) {
            if (d.scale > scale)
                throw Error(ErrorCategory::invalid_input,
                            std::string(member) + ": more than 18 decimals");
            return to_units(d);
        };
        for (const auto& [instrument, limit] : l.max_position) {
            exact(limit.max_long, "limits.max_position");
            exact(limit.max_short, "limits.max_position");
        }
        auto money_limit = [&exact](const std::optional<Money>& m, bool& has, int128& out) {
            if (!m) return;
            exact(m->amount, "limits");
            has = true;
            out = to_units(m->amount);
        };
        money_limit(l.max_daily_notional, m_has_daily_limit, m_daily_limit);
        money_limit(l.max_working_notional, m_has_working_limit, m_working_limit);
        money_limit(l.max_daily_loss, m_has_loss_limit, m_loss_limit);
        m_track_notional = m_has_daily_limit || m_has_working_limit;
        m_max_open = l.max_open_orders.value_or(0);
        if (l.max_messages_per_second) m_rate_ring.assign(*l.max_messages_per_second, 0);
        if (m_capacity > 0) {
            std::size_t slots = 8;
            while (slots < m_capacity * 2) slots *= 2;
            m_slots.assign(slots, -1);
            m_mask = slots - 1;
            m_orders.assign(m_capacity, Working{});
            m_nodes.assign(m_capacity, Node{});
            m_free.reserve(m_capacity);
            for (std::size_t i = m_capacity; i > 0; --i)
                m_free.push_back(static_cast<std::int32_t>(i - 1));
        }
    }

    /// True when working orders are tracked (any lifecycle limit, or a capacity was given).
    bool tracking() const noexcept { return m_capacity > 0; }
    std::size_t capacity() const noexcept { return m_capacity; }

    // ---- requests ------------------------------------------------------------------------

    /// Every lifecycle reason against a new order, given the state now. Without tracking only
    /// max_daily_notional applies (the day's allowed notional, as before lifecycle tracking).
    ReasonSet evaluate_new(const Order& o, TimeNs now, NewPlan& plan) const noexcept {
        ReasonSet r;
        plan = NewPlan{};
        const bool quantity_ok = o.quantity.is_positive() && o.quantity.scale <= scale;
        const bool price_ok = o.price.is_positive() && o.price.scale <= scale;
        if (!tracking()) {
            if (m_has_daily_limit && quantity_ok && price_ok) {
                int128 n;
                if (!mul_div_pow10(to_units(o.quantity), o.price.units, o.price.scale, true, n))
                    r.add(ReasonCode::notional_overflow);
                else if (n > m_daily_limit - today(m_day_total, now))
                    r.add(ReasonCode::daily_notional_exceeded);
                plan.notional = n;
            }
            return r;
        }
        if (!quantity_ok) r.add(ReasonCode::invalid_quantity);
        if (!price_ok) r.add(ReasonCode::invalid_price);
        if (o.client_order_id.empty() || o.client_order_id.size() > max_order_id_length) {
            r.add(ReasonCode::order_id_missing);
        } else {
            plan.hash = id_hash(o.client_order_id);
            if (find_slot(o.client_order_id, plan.hash) >= 0)
                r.add(ReasonCode::duplicate_order_id);
            else
                plan.valid = true;
        }
        if (m_free.empty() || (m_max_open != 0 && m_open >= m_max_open))
            r.add(ReasonCode::max_open_orders_exceeded);
        if (rate_exceeded(now)) r.add(ReasonCode::message_rate_exceeded);
        plan.instrument = m_instruments.find(o.instrument);
        plan.counterparty = m_counterparties.find(o.counterparty);
        if (!quantity_ok || !price_ok || plan.instrument < 0) {
            plan.valid = false;
            return r;
        }

        const InstrumentState& st = m_instrument_state[static_cast<std::size_t>(plan.instrument)];
        const int128 q = to_units(o.quantity);
        plan.quantity = q;
        const bool buy = o.side == Side::buy;
        int128 side_total;
        if (__builtin_add_overflow(buy ? st.working_buy : st.working_sell, q, &side_total)) {
            r.add(ReasonCode::notional_overflow);
            return r;
        }
        if (st.has_limit && position_exceeded(st, buy, side_total))
            r.add(ReasonCode::max_position_exceeded);
        if (m_track_notional) {
            if (!mul_div_pow10(q, o.price.units, o.price.scale, true, plan.notional)) {
                r.add(ReasonCode::notional_overflow);
                return r;
            }
            check_notional(plan.notional, now, r);
        }
        if (m_reduce_only || loss_reached(now)) {
            if (!reduces(st, buy, side_total)) {
                if (m_reduce_only) r.add(ReasonCode::reduce_only);
                if (loss_reached(now)) r.add(ReasonCode::daily_loss_limit_reached);
            }
        }
        if (plan.counterparty >= 0 &&
            crosses(group_of(plan.instrument, plan.counterparty, buy), buy, price_units(o.price)))
            r.add(ReasonCode::self_trade);
        return r;
    }

    /// Enters an allowed new order (evaluate_new found no reason, nor did the Guard).
    void commit_new(const Order& o, const NewPlan& plan, TimeNs now) noexcept {
        roll(now);
        if (!tracking()) {
            if (m_has_daily_limit) m_day_total += plan.notional;
            return;
        }
        if (!plan.valid || plan.instrument < 0 || plan.counterparty < 0 || m_free.empty()) return;
        const std::int32_t index = m_free.back();
        m_free.pop_back();
        Working& w = m_orders[static_cast<std::size_t>(index)];
        w = Working{};
        w.in_use = true;
        w.hash = plan.hash;
        w.id_length = static_cast<std::uint8_t>(o.client_order_id.size());
        std::memcpy(w.id, o.client_order_id.data(), o.client_order_id.size());
        w.instrument = plan.instrument;
        w.counterparty = plan.counterparty;
        w.side = o.side;
        w.reserved_quantity = w.latest_quantity = plan.quantity;
        w.price_high = w.price_low = w.latest_price = o.price;
        w.notional = plan.notional;
        Node& node = m_nodes[static_cast<std::size_t>(index)];
        node.group = group_of(plan.instrument, plan.counterparty, o.side == Side::sell);
        node.key = aggressive_key(w);
        node.priority = next_priority();
        node.left = node.right = -1;
        insert_slot(index);
        m_root = treap_insert(m_root, index);
        InstrumentState& st = m_instrument_state[static_cast<std::size_t>(w.instrument)];
        (o.side == Side::buy ? st.working_buy : st.working_sell) += plan.quantity;
        if (m_track_notional) m_working_notional += plan.notional;
        ++m_open;
    }

    /// Every lifecycle reason against an amend of a working order: only what the amend adds is
    /// checked against a limit (an amend that raises nothing is not refused for that limit).
    ReasonSet evaluate_amend(const Amend& a, TimeNs now, AmendPlan& plan) const noexcept {
        ReasonSet r;
        plan = AmendPlan{};
        if (rate_exceeded(now)) r.add(ReasonCode::message_rate_exceeded);
        const int index = find(a.client_order_id);
        if (index < 0) {
            r.add(ReasonCode::unknown_order_id);
            return r;
        }
        const Working& w = m_orders[static_cast<std::size_t>(index)];
        plan.order = index;
        plan.latest_quantity = w.latest_quantity;
        plan.latest_price = w.latest_price;
        if (a.quantity) {
            if (!a.quantity->is_positive() || a.quantity->scale > scale ||
                to_units(*a.quantity) <= w.filled)
                r.add(ReasonCode::invalid_quantity);
            else
                plan.latest_quantity = to_units(*a.quantity);
        }
        if (a.price) {
            if (!a.price->is_positive() || a.price->scale > scale)
                r.add(ReasonCode::invalid_price);
            else
                plan.latest_price = *a.price;
        }
        if (r.contains(ReasonCode::invalid_quantity) || r.contains(ReasonCode::invalid_price))
            return r;
        const bool buy = w.side == Side::buy;
        plan.reserved_quantity = std::max(w.reserved_quantity, plan.latest_quantity);
        plan.price_high =
            compare(plan.latest_price, w.price_high) > 0 ? plan.latest_price : w.price_high;
        plan.price_low =
            compare(plan.latest_price, w.price_low) < 0 ? plan.latest_price : w.price_low;
        const InstrumentState& st = m_instrument_state[static_cast<std::size_t>(w.instrument)];
        const int128 added = plan.reserved_quantity - w.reserved_quantity;  // >= 0
        int128 side_total;
        if (__builtin_add_overflow(buy ? st.working_buy : st.working_sell, added, &side_total)) {
            r.add(ReasonCode::notional_overflow);
            return r;
        }
        if (added > 0 && st.has_limit && position_exceeded(st, buy, side_total))
            r.add(ReasonCode::max_position_exceeded);
        if (m_track_notional) {
            if (!remaining_notional(plan.reserved_quantity, w.filled, plan.price_high,
                                    plan.notional)) {
                r.add(ReasonCode::notional_overflow);
                return r;
            }
            if (plan.notional > w.notional) check_notional(plan.notional - w.notional, now, r);
        }
        if ((m_reduce_only || loss_reached(now)) && !reduces(st, buy, side_total)) {
            if (m_reduce_only) r.add(ReasonCode::reduce_only);
            if (loss_reached(now)) r.add(ReasonCode::daily_loss_limit_reached);
        }
        if (a.price &&
            crosses(group_of(w.instrument, w.counterparty, buy), buy, price_units(*a.price)))
            r.add(ReasonCode::self_trade);
        return r;
    }

    /// Applies an allowed amend: the larger quantity and the wider prices are reserved at once
    /// and kept until the venue has acknowledged every pending request of the order.
    void commit_amend(const AmendPlan& plan, TimeNs now) noexcept {
        roll(now);
        if (plan.order < 0) return;
        Working& w = m_orders[static_cast<std::size_t>(plan.order)];
        w.latest_quantity = plan.latest_quantity;
        w.latest_price = plan.latest_price;
        if (w.pending_amends < UINT32_MAX) ++w.pending_amends;
        reserve(plan.order, plan.reserved_quantity, plan.price_high, plan.price_low, plan.notional);
    }

    /// A cancel is refused only for an id that is not working.
    ReasonSet evaluate_cancel(const Cancel& c) const noexcept {
        ReasonSet r;
        if (find(c.client_order_id) < 0) r.add(ReasonCode::unknown_order_id);
        return r;
    }
    /// Marks the cancel as pending; the exposure stays until the venue confirms.
    void commit_cancel(const Cancel& c) noexcept {
        const int index = find(c.client_order_id);
        if (index >= 0) m_orders[static_cast<std::size_t>(index)].cancel_pending = true;
    }

    /// Counts one request (new, amend or cancel, allowed or not) toward
    /// max_messages_per_second. Call once per request, after evaluating it.
    /// Also starts a new UTC day's totals when `now` is past the current one, so every
    /// request and report moves the day forward alike.
    void count_message(TimeNs now) noexcept {
        roll(now);
        if (m_rate_ring.empty()) return;
        m_rate_ring[m_rate_next] = now;
        if (++m_rate_next == m_rate_ring.size()) {
            m_rate_next = 0;
            m_rate_filled = true;
        }
    }

    // ---- execution reports ---------------------------------------------------------------

    /// Applies one venue report. Fills are facts: a fill for an id that is not working still
    /// moves the position (unknown_order and problem are set for the error handler).
    ExecutionResult apply(const ExecutionReport& e, TimeNs now) noexcept {
        ExecutionResult result;
        roll(now);
        if (!tracking()) {
            result.problem = "execution report without lifecycle tracking: ignored";
            return result;
        }
        if (e.type == ExecutionType::mark) return apply_mark(e);
        const int index = find(e.client_order_id);
        if (e.type == ExecutionType::fill) return apply_fill(e, index);
        if (index < 0) {
            result.unknown_order = true;
            return result;
        }
        Working& w = m_orders[static_cast<std::size_t>(index)];
        switch (e.type) {
            case ExecutionType::ack:
                if (!w.acked) {
                    w.acked = true;
                    if (w.pending_amends == 0) break;
                    // The amends sent before the order's own ack are still pending.
                    result.applied = true;
                    return result;
                }
                if (w.pending_amends == 0) return result;  // nothing outstanding: ignored
                if (--w.pending_amends == 0) {
                    // Every request acknowledged: the latest terms are the order's terms.
                    int128 notional = 0;
                    if (m_track_notional)
                        remaining_notional(w.latest_quantity, w.filled, w.latest_price, notional);
                    reserve(index, w.latest_quantity, w.latest_price, w.latest_price, notional);
                    if (w.filled >= w.reserved_quantity) {
                        close(index);
                        result.order_closed = true;
                    }
                }
                break;
            case ExecutionType::reject:
            case ExecutionType::cancelled:
            case ExecutionType::expired:
                close(index);
                result.order_closed = true;
                break;
            default: break;
        }
        result.applied = true;
        return result;
    }

    // ---- reduce-only mode and the kill switch --------------------------------------------

    /// In reduce-only mode only orders that reduce the position (and cancels) pass. Entered by
    /// a person, or automatically when the day's loss reaches max_daily_loss; only a person
    /// lifts it (the Guard checks who and records it).
    void set_reduce_only(bool on) noexcept { m_reduce_only = on; }
    bool reduce_only() const noexcept { return m_reduce_only; }

    /// Calls f(std::string_view id) for every working order (e.g. to cancel them all on a
    /// halt). f must not call back into the engine.
    template <class F>
    void for_each_working(F&& f) const {
        for (const Working& w : m_orders)
            if (w.in_use) f(std::string_view(w.id, w.id_length));
    }

    // ---- state, for the Guard's figures and for tests ------------------------------------

    std::size_t working_count() const noexcept { return m_open; }
    int instrument_index(std::string_view instrument) const noexcept {
        return m_instruments.find(instrument);
    }
    std::optional<WorkingOrderInfo> working_order(std::string_view id) const noexcept {
        const int index = find(id);
        if (index < 0) return std::nullopt;
        const Working& w = m_orders[static_cast<std::size_t>(index)];
        WorkingOrderInfo info;
        info.instrument = w.instrument;
        info.counterparty = w.counterparty;
        info.side = w.side;
        info.filled = w.filled;
        info.reserved_quantity = w.reserved_quantity;
        info.latest_quantity = w.latest_quantity;
        info.latest_price = w.latest_price;
        info.reserved_notional = w.notional;
        info.acked = w.acked;
        info.pending_amends = w.pending_amends;
        info.cancel_pending = w.cancel_pending;
        return info;
    }
    /// Net position of an instrument in 10^-18 base units (0 for an unknown instrument).
    int128 position(int instrument) const noexcept { return state(instrument).position; }
    int128 working_buy(int instrument) const noexcept { return state(instrument).working_buy; }
    int128 working_sell(int instrument) const noexcept { return state(instrument).working_sell; }
    /// Remaining notional of working orders (money units; tracked with a notional limit).
    int128 working_notional() const noexcept { return m_working_notional; }
    /// Notional filled on the UTC day of `now` (money units; tracked with a notional limit).
    int128 filled_today(TimeNs now) const noexcept { return today(m_filled_today, now); }
    /// Realised plus unrealised profit (negative: loss) over the UTC day of `now`, in money
    /// units (tracked with max_daily_loss).
    int128 daily_pnl(TimeNs now) const noexcept { return today(m_pnl, now); }
    /// True when the loss over the UTC day of `now` has reached max_daily_loss.
    bool loss_reached(TimeNs now) const noexcept {
        return m_has_loss_limit && today(m_pnl, now) <= -m_loss_limit;
    }

    // ---- a renewed certificate: new limits, the same state ------------------------------

    /// Empty if this engine (built for a renewed scope, not used yet) can take over `old`'s
    /// state with adopt(); otherwise why not. Without tracking only the day's total carries,
    /// so anything goes; with tracking the instruments, counterparties, capacity and what is
    /// tracked (notional, daily loss) must stay, since working orders are kept by them.
    std::string cannot_adopt(const OrderLimits& old) const {
        if (!old.tracking() && !tracking()) return {};
        if (old.tracking() != tracking())
            return "it turns lifecycle tracking " + std::string(tracking() ? "on" : "off");
        if (old.m_instruments.size() != m_instruments.size() ||
            old.m_counterparties.size() != m_counterparties.size())
            return "it changes the instruments or counterparties of tracked working orders";
        for (std::size_t i = 0; i < m_instruments.size(); ++i)
            if (old.m_instruments.item(static_cast<int>(i)) !=
                m_instruments.item(static_cast<int>(i)))
                return "it changes the instruments of tracked working orders";
        for (std::size_t i = 0; i < m_counterparties.size(); ++i)
            if (old.m_counterparties.item(static_cast<int>(i)) !=
                m_counterparties.item(static_cast<int>(i)))
                return "it changes the counterparties of tracked working orders";
        if (old.m_capacity != m_capacity) return "it changes the working-order capacity";
        if (old.m_track_notional != m_track_notional)
            return "it adds or removes every notional limit (max_daily_notional, "
                   "max_working_notional) while orders are tracked";
        if (old.m_has_loss_limit != m_has_loss_limit)
            return "it adds or removes max_daily_loss while positions are tracked";
        return {};
    }

    /// Takes `old`'s state, keeping this engine's limits (cannot_adopt(old) was empty). No
    /// allocation: storage is swapped. `old` is left with this engine's unused storage.
    void adopt(OrderLimits& old) noexcept {
        m_day = old.m_day;
        m_day_total = old.m_day_total;
        m_filled_today = old.m_filled_today;
        m_pnl = old.m_pnl;
        m_reduce_only = old.m_reduce_only;
        if (!m_rate_ring.empty() && !old.m_rate_ring.empty()) {
            const std::size_t have = old.m_rate_filled ? old.m_rate_ring.size() : old.m_rate_next;
            const std::size_t keep = std::min(have, m_rate_ring.size());
            for (std::size_t i = 0; i < keep; ++i)
                m_rate_ring[i] =
                    old.m_rate_ring[(old.m_rate_next + old.m_rate_ring.size() - keep + i) %
                                    old.m_rate_ring.size()];
            m_rate_filled = keep == m_rate_ring.size();
            m_rate_next = keep % m_rate_ring.size();
        }
        if (!tracking()) return;
        for (std::size_t i = 0; i < m_instrument_state.size(); ++i) {
            InstrumentState& mine = m_instrument_state[i];
            InstrumentState kept = old.m_instrument_state[i];
            kept.has_limit = mine.has_limit;
            kept.max_long = mine.max_long;
            kept.max_short = mine.max_short;
            mine = kept;
        }
        m_orders.swap(old.m_orders);
        m_nodes.swap(old.m_nodes);
        m_free.swap(old.m_free);
        m_slots.swap(old.m_slots);
        m_mask = old.m_mask;
        m_root = old.m_root;
        m_seed = old.m_seed;
        m_open = old.m_open;
        m_working_notional = old.m_working_notional;
    }

    /// A Decimal (scale <= 18) in 10^-18 units; exact (|units| < 2^63, so < 2^123).
    static int128 to_units(Decimal d) noexcept {
        return d.scale <= scale ? static_cast<int128>(d.units) * pow10_128(scale - d.scale) : 0;
    }

private:
    struct Working {
        std::uint64_t hash = 0;
        int128 filled = 0;
        int128 reserved_quantity = 0;
        int128 latest_quantity = 0;
        int128 notional = 0;
        Decimal latest_price, price_high, price_low;
        std::int32_t instrument = -1, counterparty = -1;
        std::uint32_t pending_amends = 0;
        Side side = Side::buy;
        bool in_use = false, acked = false, cancel_pending = false;
        std::uint8_t id_length = 0;
        char id[max_order_id_length] = {};
    };

    /// A working order in the self-trade index, apart from its record so that a search
    /// touches one small node per level.
    struct Node {
        int128 key = 0;           ///< aggressive price: buys negated, so smaller is keener
        std::uint64_t group = 0;  ///< (instrument, counterparty, side)
        std::int32_t left = -1, right = -1;
        std::uint32_t priority = 0;
    };

    struct InstrumentState {
        int128 position = 0, working_buy = 0, working_sell = 0;
        bool has_limit = false;
        int128 max_long = 0, max_short = 0;
        bool has_price = false;
        Decimal last_price;
        int128 value = 0;  ///< floor(position x last price), money units
        int128 cash = 0;   ///< today's cash flow: sells add, buys subtract (rounded down)
        std::int64_t cash_day = INT64_MIN;
    };

    const InstrumentState& state(int i) const noexcept {
        static const InstrumentState none{};
        return i >= 0 && static_cast<std::size_t>(i) < m_instrument_state.size()
                   ? m_instrument_state[static_cast<std::size_t>(i)]
                   : none;
    }

    static int128 price_units(Decimal p) noexcept { return to_units(p); }

    /// A total of the current UTC day, zero once `now` is past it (the roll happens on the
    /// next change of state; a clock stepping back never resets a total).
    int128 today(int128 total, TimeNs now) const noexcept {
        return utc_day(now) > m_day ? 0 : total;
    }

    void roll(TimeNs now) noexcept {
        const std::int64_t day = utc_day(now);
        if (day <= m_day) return;
        m_day = day;
        m_day_total = 0;
        m_filled_today = 0;
        m_pnl = 0;  // each instrument's carried position is re-based at its latest price
    }

    bool rate_exceeded(TimeNs now) const noexcept {
        return !m_rate_ring.empty() && m_rate_filled &&
               now - m_rate_ring[m_rate_next] < 1'000'000'000;
    }

    /// Worst case for this side: buys position + working buys (this order included) beyond
    /// max_long; sells position - working sells below -max_short.
    static bool position_exceeded(const InstrumentState& st, bool buy, int128 side_total) noexcept {
        int128 worst;
        if (buy)
            return __builtin_add_overflow(st.position, side_total, &worst) || worst > st.max_long;
        return __builtin_sub_overflow(st.position, side_total, &worst) || worst < -st.max_short;
    }

    /// Reduces the position even if every working order of its side fills: a sell while long
    /// that cannot take it below zero, a buy while short that cannot take it above zero.
    static bool reduces(const InstrumentState& st, bool buy, int128 side_total) noexcept {
        if (buy) return st.position < 0 && st.position + side_total <= 0;
        return st.position > 0 && st.position - side_total >= 0;
    }

    void check_notional(int128 added, TimeNs now, ReasonSet& r) const noexcept {
        if (m_has_working_limit && added > m_working_limit - m_working_notional)
            r.add(ReasonCode::max_working_notional_exceeded);
        if (m_has_daily_limit &&
            added > m_daily_limit - m_working_notional - today(m_filled_today, now))
            r.add(ReasonCode::daily_notional_exceeded);
    }

    static bool remaining_notional(int128 reserved, int128 filled, Decimal price,
                                   int128& out) noexcept {
        const int128 remaining = reserved > filled ? reserved - filled : 0;
        return mul_div_pow10(remaining, price.units, price.scale, true, out);
    }

    std::uint64_t group_of(int instrument, int counterparty, bool sell) const noexcept {
        return ((static_cast<std::uint64_t>(instrument) * m_counterparties.size() +
                 static_cast<std::uint64_t>(counterparty))
                << 1) |
               (sell ? 1u : 0u);
    }

    static int128 aggressive_key(const Working& w) noexcept {
        return w.side == Side::buy ? -price_units(w.price_high) : price_units(w.price_low);
    }

    /// Would an order of side `buy` at `price` cross a working order of `group` (the other
    /// side, same instrument and counterparty)? The keenest opposite order decides.
    bool crosses(std::uint64_t group, bool buy, int128 price) const noexcept {
        std::int32_t t = m_root, best = -1;
        while (t >= 0) {
            const Node& n = m_nodes[static_cast<std::size_t>(t)];
            if (n.group >= group) {
                best = t;
                t = n.left;
            } else {
                t = n.right;
            }
        }
        if (best < 0) return false;
        const Node& n = m_nodes[static_cast<std::size_t>(best)];
        if (n.group != group) return false;
        return buy ? n.key <= price : -n.key >= price;
    }

    /// Sets an order's reservation and moves the totals by the difference.
    void reserve(int index, int128 reserved_quantity, Decimal high, Decimal low,
                 int128 notional) noexcept {
        Working& w = m_orders[static_cast<std::size_t>(index)];
        InstrumentState& st = m_instrument_state[static_cast<std::size_t>(w.instrument)];
        int128& side_total = w.side == Side::buy ? st.working_buy : st.working_sell;
        side_total +=
            remaining(reserved_quantity, w.filled) - remaining(w.reserved_quantity, w.filled);
        w.reserved_quantity = reserved_quantity;
        if (m_track_notional) {
            m_working_notional += notional - w.notional;
            w.notional = notional;
        }
        w.price_high = high;
        w.price_low = low;
        const int128 key = aggressive_key(w);
        Node& node = m_nodes[static_cast<std::size_t>(index)];
        if (key != node.key) {
            m_root = treap_erase(m_root, index);
            node.key = key;
            node.left = node.right = -1;
            m_root = treap_insert(m_root, index);
        }
    }

    static int128 remaining(int128 reserved, int128 filled) noexcept {
        return reserved > filled ? reserved - filled : 0;
    }

    /// The order stops working: its remaining exposure is released.
    void close(int index) noexcept {
        Working& w = m_orders[static_cast<std::size_t>(index)];
        InstrumentState& st = m_instrument_state[static_cast<std::size_t>(w.instrument)];
        (w.side == Side::buy ? st.working_buy : st.working_sell) -=
            remaining(w.reserved_quantity, w.filled);
        if (m_track_notional) m_working_notional -= w.notional;
        m_root = treap_erase(m_root, index);
        erase_slot(index);
        w.in_use = false;
        m_free.push_back(index);
        --m_open;
    }

    ExecutionResult apply_mark(const ExecutionReport& e) noexcept {
        ExecutionResult result;
        const int i = m_instruments.find(e.instrument);
        if (i < 0) {
            result.problem = "mark price for an instrument not in the scope: ignored";
            return result;
        }
        if (!e.price.is_positive() || e.price.scale > scale) {
            result.problem = "mark price not positive: ignored";
            return result;
        }
        InstrumentState& st = m_instrument_state[static_cast<std::size_t>(i)];
        int128 value = 0, pnl = m_pnl;
        if (m_has_loss_limit) {
            rebase(st);
            if (!mul_div_pow10(st.position, e.price.units, e.price.scale, false, value) ||
                __builtin_sub_overflow(pnl, st.value, &pnl) ||
                __builtin_add_overflow(pnl, value, &pnl)) {
                result.problem = "mark price: the position's value does not fit: ignored";
                return result;
            }
        }
        st.has_price = true;
        st.last_price = e.price;
        st.value = value;
        m_pnl = pnl;
        result.applied = true;
        after_loss_change(result);
        return result;
    }

    ExecutionResult apply_fill(const ExecutionReport& e, int index) noexcept {
        ExecutionResult result;
        result.unknown_order = index < 0;
        Working* w = index >= 0 ? &m_orders[static_cast<std::size_t>(index)] : nullptr;
        const int i = w ? w->instrument : m_instruments.find(e.instrument);
        const Side side = w ? w->side : e.side;
        auto refuse = [&](const char* why) {
            result.problem = why;
            if (!m_reduce_only) {
                m_reduce_only = true;  // fail closed: a fact was lost, the position is unsure
                result.reduce_only_entered = true;
            }
            return result;
        };
        if (i < 0) return refuse("fill for an instrument not in the scope: position unknown");
        if (!e.quantity.is_positive() || e.quantity.scale > scale || !e.price.is_positive() ||
            e.price.scale > scale)
            return refuse("fill with a quantity or price that is not positive: position unknown");
        InstrumentState& st = m_instrument_state[static_cast<std::size_t>(i)];
        const int128 f = to_units(e.quantity);
        const bool buy = side == Side::buy;
        // Everything is computed first, so a fill that does not fit changes nothing.
        int128 position, notional = 0, cash_flow = 0, value = 0, cash = 0, pnl = m_pnl;
        if (buy ? __builtin_add_overflow(st.position, f, &position)
                : __builtin_sub_overflow(st.position, f, &position))
            return refuse("fill: the position does not fit: position unknown");
        if (m_track_notional && !mul_div_pow10(f, e.price.units, e.price.scale, true, notional))
            return refuse("fill: the notional does not fit: position unknown");
        if (m_has_loss_limit) {
            rebase(st);
            // Cash flow rounded down: a buy pays the ceiling, a sell receives the floor.
            if (!mul_div_pow10(buy ? -f : f, e.price.units, e.price.scale, false, cash_flow) ||
                !mul_div_pow10(position, e.price.units, e.price.scale, false, value) ||
                __builtin_add_overflow(st.cash, cash_flow, &cash) ||
                __builtin_sub_overflow(pnl, st.cash + st.value, &pnl) ||
                __builtin_add_overflow(pnl, cash + value, &pnl))
                return refuse("fill: the profit and loss does not fit: position unknown");
        }
        if (w) {
            int128 working_notional = 0;
            const int128 filled =
                w->filled + std::min(f, remaining(w->reserved_quantity, w->filled));
            if (m_track_notional)
                remaining_notional(w->reserved_quantity, filled, w->price_high, working_notional);
            (buy ? st.working_buy : st.working_sell) -= filled - w->filled;
            w->filled = filled;
            if (m_track_notional) {
                m_working_notional += working_notional - w->notional;
                w->notional = working_notional;
            }
            if (w->filled >= w->reserved_quantity) {
                close(index);
                result.order_closed = true;
            }
        } else {
            result.problem = "fill for an order id that is not working: applied to the position";
        }
        st.position = position;
        st.has_price = true;
        st.last_price = e.price;
        if (m_track_notional) m_filled_today = saturating_add(m_filled_today, notional);
        if (m_has_loss_limit) {
            st.cash = cash;
            st.value = value;
            m_pnl = pnl;
        }
        result.applied = true;
        after_loss_change(result);
        return result;
    }

    /// The instrument's cash flow belongs to an earlier day: re-base its carried position at
    /// the latest price (its value), so the day's profit and loss starts at zero.
    void rebase(InstrumentState& st) noexcept {
        if (st.cash_day == m_day) return;
        st.cash_day = m_day;
        st.cash = -st.value;
    }

    void after_loss_change(ExecutionResult& result) noexcept {
        if (m_has_loss_limit && m_pnl <= -m_loss_limit && !m_reduce_only) {
            m_reduce_only = true;
            result.reduce_only_entered = true;
        }
    }

    static int128 saturating_add(int128 a, int128 b) noexcept {
        int128 r;
        return __builtin_add_overflow(a, b, &r) ? static_cast<int128>(~u128{0} >> 1) : r;
    }

    // ---- the id table: open addressing, linear probing, backward-shift deletion ----------

    int find(std::string_view id) const noexcept {
        if (m_slots.empty() || id.empty() || id.size() > max_order_id_length) return -1;
        const std::int64_t slot = find_slot(id, id_hash(id));
        return slot >= 0 ? m_slots[static_cast<std::size_t>(slot)] : -1;
    }

    /// Eight bytes at a time (ids are at most 64 bytes): a multiply-xorshift mix per word.
    static std::uint64_t id_hash(std::string_view id) noexcept {
        std::uint64_t h = 0x9e3779b97f4a7c15ull ^ id.size();
        std::size_t i = 0;
        for (; i + 8 <= id.size(); i += 8) {
            std::uint64_t w;
            std::memcpy(&w, id.data() + i, 8);
            h = (h ^ w) * 0xff51afd7ed558ccdull;
            h ^= h >> 32;
        }
        if (i < id.size()) {
            std::uint64_t w = 0;
            std::memcpy(&w, id.data() + i, id.size() - i);
            h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
            h ^= h >> 29;
        }
        h *= 0xff51afd7ed558ccdull;
        return h ^ (h >> 32);
    }

    /// The slot holding `id`, or -1.
    std::int64_t find_slot(std::string_view id, std::uint64_t hash) const noexcept {
        if (m_slots.empty()) return -1;
        std::size_t slot = hash & m_mask;
        for (;;) {
            const std::int32_t i = m_slots[slot];
            if (i < 0) return -1;
            const Working& w = m_orders[static_cast<std::size_t>(i)];
            if (w.hash == hash && w.id_length == id.size() &&
                std::memcmp(w.id, id.data(), id.size()) == 0)
                return static_cast<std::int64_t>(slot);
            slot = (slot + 1) & m_mask;
        }
    }

    void insert_slot(std::int32_t index) noexcept {
        std::size_t slot = m_orders[static_cast<std::size_t>(index)].hash & m_mask;
        while (m_slots[slot] >= 0) slot = (slot + 1) & m_mask;
        m_slots[slot] = index;
    }

    void erase_slot(std::int32_t index) noexcept {
        const Working& w = m_orders[static_cast<std::size_t>(index)];
        std::size_t hole =
            static_cast<std::size_t>(find_slot(std::string_view(w.id, w.id_length), w.hash));
        m_slots[hole] = -1;
        // Shift back every later entry of the run whose home slot is not in (hole, slot].
        for (std::size_t slot = (hole + 1) & m_mask; m_slots[slot] >= 0;
             slot = (slot + 1) & m_mask) {
            const std::size_t home =
                m_orders[static_cast<std::size_t>(m_slots[slot])].hash & m_mask;
            const bool stays =
                hole <= slot ? (hole < home && home <= slot) : (hole < home || home <= slot);
            if (stays) continue;
            m_slots[hole] = m_slots[slot];
            m_slots[slot] = -1;
            hole = slot;
        }
    }

    // ---- the self-trade index: a treap of working orders by (group, aggressive key) ------

    bool before(std::int32_t a, std::int32_t b) const noexcept {
        const Node& x = m_nodes[static_cast<std::size_t>(a)];
        const Node& y = m_nodes[static_cast<std::size_t>(b)];
        if (x.group != y.group) return x.group < y.group;
        if (x.key != y.key) return x.key < y.key;
        return a < b;
    }

    std::int32_t treap_insert(std::int32_t t, std::int32_t x) noexcept {
        if (t < 0) return x;
        Node& n = m_nodes[static_cast<std::size_t>(t)];
        if (m_nodes[static_cast<std::size_t>(x)].priority > n.priority) {
            split(t, x, m_nodes[static_cast<std::size_t>(x)].left,
                  m_nodes[static_cast<std::size_t>(x)].right);
            return x;
        }
        if (before(x, t))
            n.left = treap_insert(n.left, x);
        else
            n.right = treap_insert(n.right, x);
        return t;
    }

    /// Splits t into the nodes before x (l) and after it (r).
    void split(std::int32_t t, std::int32_t x, std::int32_t& l, std::int32_t& r) noexcept {
        if (t < 0) {
            l = r = -1;
            return;
        }
        Node& n = m_nodes[static_cast<std::size_t>(t)];
        if (before(t, x)) {
            split(n.right, x, n.right, r);
            l = t;
        } else {
            split(n.left, x, l, n.left);
            r = t;
        }
    }

    std::int32_t merge(std::int32_t l, std::int32_t r) noexcept {
        if (l < 0) return r;
        if (r < 0) return l;
        Node& a = m_nodes[static_cast<std::size_t>(l)];
        Node& b = m_nodes[static_cast<std::size_t>(r)];
        if (a.priority > b.priority) {
            a.right = merge(a.right, r);
            return l;
        }
        b.left = merge(l, b.left);
        return r;
    }

    std::int32_t treap_erase(std::int32_t t, std::int32_t x) noexcept {
        if (t < 0) return -1;
        Node& n = m_nodes[static_cast<std::size_t>(t)];
        if (t == x) {
            const std::int32_t joined = merge(n.left, n.right);
            n.left = n.right = -1;
            return joined;
        }
        if (before(x, t))
            n.left = treap_erase(n.left, x);
        else
            n.right = treap_erase(n.right, x);
        return t;
    }

    std::uint32_t next_priority() noexcept {
        m_seed ^= m_seed << 13;
        m_seed ^= m_seed >> 7;
        m_seed ^= m_seed << 17;
        return static_cast<std::uint32_t>(m_seed >> 32);
    }

    StringSet m_instruments, m_counterparties;
    std::vector<InstrumentState> m_instrument_state;
    std::size_t m_capacity = 0;
    std::vector<Working> m_orders;
    std::vector<Node> m_nodes;
    std::vector<std::int32_t> m_free;
    std::vector<std::int32_t> m_slots;
    std::size_t m_mask = 0;
    std::int32_t m_root = -1;
    std::uint64_t m_seed = 0x9e3779b97f4a7c15ull;
    std::size_t m_open = 0;
    std::uint32_t m_max_open = 0;

    bool m_track_notional = false;
    bool m_has_daily_limit = false, m_has_working_limit = false, m_has_loss_limit = false;
    int128 m_daily_limit = 0, m_working_limit = 0, m_loss_limit = 0;
    int128 m_working_notional = 0;
    int128 m_filled_today = 0;
    int128 m_day_total = 0;  ///< without tracking: the day's allowed notional
    int128 m_pnl = 0;        ///< today's profit and loss over every instrument
    std::int64_t m_day = INT64_MIN;
    bool m_reduce_only = false;

    std::vector<TimeNs> m_rate_ring;
    std::size_t m_rate_next = 0;
    bool m_rate_filled = false;
};

}  // namespace kakunin::detail
