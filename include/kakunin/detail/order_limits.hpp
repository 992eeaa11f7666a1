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
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/rate_window.hpp"
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
        const std::uint64_t d = pow10_u64(s);
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
    /// `track_notional`: keep working orders and their notional even without a notional limit
    /// in the scope (firm-wide budgets need both; the default capacity then applies).
    explicit OrderLimits(const Scope& s, std::size_t capacity = 0, bool track_notional = false)
        : m_instruments(s.instruments), m_counterparties(s.counterparties) {
        validate(s);
        const PreTradeLimits& l = s.limits;
        if (l.max_open_orders)
            m_capacity = *l.max_open_orders;
        else if (capacity > 0)
            m_capacity = capacity;
        else if (l.has_lifecycle_limits() || track_notional)
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
        m_track_notional = m_has_daily_limit || m_has_working_limit || track_notional;
        m_max_open = l.max_open_orders.value_or(0);
        if (l.max_messages_per_second) m_messages = RateWindow(*l.max_messages_per_second);
        if (m_capacity > 0) {
            std::size_t slots = 8;
            while (slots < m_capacity * 2) slots *= 2;
            m_slots.assign(slots, IdSlot{});
            m_mask = slots - 1;
            m_orders.assign(m_capacity, Working{});
            m_keys.assign(m_capacity, 0);
            m_heap_pos.assign(m_capacity, 0);
            // At most one group per working order, and no more than the scope has.
            const std::size_t groups = std::min<std::size_t>(
                m_capacity, m_instruments.size() * m_counterparties.size() * 2);
            std::size_t group_slots = 8;
            unsigned group_bits = 3;
            while (group_slots < groups * 2) {
                group_slots *= 2;
                ++group_bits;
            }
            m_groups.assign(group_slots, Group{});
            m_group_shift = 64 - group_bits;
            // Level k of a heap exists only in a group of at least 2^k orders, so no more than
            // capacity / 2^k groups hold one at a time: a pool of that many blocks per level,
            // each block 2^k entries, never runs out (at most capacity x 17 entries in all).
            std::size_t entries = 0, blocks = 0;
            for (unsigned k = 0; k < heap_levels && (std::size_t{1} << k) <= m_capacity; ++k) {
                entries += (m_capacity >> k) << k;
                blocks += m_capacity >> k;
            }
            m_heap.assign(entries, -1);
            m_heap_free.reserve(blocks);
            std::size_t start = 0;
            for (unsigned k = 0; k < heap_levels && (std::size_t{1} << k) <= m_capacity; ++k) {
                m_level_free_base[k] = m_heap_free.size();
                for (std::size_t b = 0; b < (m_capacity >> k); ++b) {
                    m_heap_free.push_back(static_cast<std::int32_t>(start));
                    start += std::size_t{1} << k;
                }
                m_level_free_count[k] = m_capacity >> k;
            }
            m_free.reserve(m_capacity);
            for (std::size_t i = m_capacity; i > 0; --i)
                m_free.push_back(static_cast<std::int32_t>(i - 1));
        }
    }

    /// True when working orders are tracked (any lifecycle limit, or a capacity was given).
    bool tracking() const noexcept { return m_capacity > 0; }
    /// Whether working orders keep their notional (a notional limit, or firm budgets).
    bool tracks_notional() const noexcept { return m_track_notional; }
    std::size_t capacity() const noexcept { return m_capacity; }

    // ---- requests ------------------------------------------------------------------------

    /// Every lifecycle reason against a new order, given the state now. Without tracking only
    /// max_daily_notional applies (the day's allowed notional, as before lifecycle tracking).
    ReasonSet evaluate_new(const Order& o, TimeNs now, NewPlan& plan) const noexcept {
        return evaluate_new(o, m_instruments.find(o.instrument),
                            m_counterparties.find(o.counterparty), now, plan);
    }

    /// The same, for a caller that has looked the order's instrument and counterparty up
    /// already (the Guard's compiled scope): their indices in the scope's `instruments` and
    /// `counterparties` lists, -1 for a name not in it. An index out of range counts as -1.
    ReasonSet evaluate_new(const Order& o, int instrument, int counterparty, TimeNs now,
                           NewPlan& plan) const noexcept {
        ReasonSet r;
        plan = NewPlan{};
        if (!tracking()) {
            if (m_has_daily_limit && o.quantity.is_positive() && o.price.is_positive()) {
                int128 n = 0;
                if (!mul_div_pow10(to_units(o.quantity), o.price.units, o.price.scale, true, n))
                    r.add(ReasonCode::notional_overflow);
                else if (n > m_daily_limit - today(m_day_total, now))
                    r.add(ReasonCode::daily_notional_exceeded);
                else
                    plan.notional = n;
            }
            return r;
        }
        // The id's slot is fetched while the limits are evaluated, and probed last.
        const bool id_ok =
            !o.client_order_id.empty() && o.client_order_id.size() <= max_order_id_length;
        if (id_ok) {
            plan.hash = id_hash(o.client_order_id);
            __builtin_prefetch(&m_slots[plan.hash & m_mask]);
        } else {
            r.add(ReasonCode::order_id_missing);
        }
        const bool trackable = evaluate_limits(o, instrument, counterparty, now, plan, r);
        if (id_ok) {
            if (find_slot(o.client_order_id, plan.hash) >= 0)
                r.add(ReasonCode::duplicate_order_id);
            else
                plan.valid = trackable;
        }
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
        // Every member is set (the id only up to its length): no zeroing of the whole record.
        w.hash = static_cast<std::uint32_t>(plan.hash);
        w.instrument = plan.instrument;
        w.counterparty = plan.counterparty;
        w.pending_amends = 0;
        w.side = o.side;
        w.in_use = true;
        w.acked = w.cancel_pending = false;
        w.id_length = static_cast<std::uint8_t>(o.client_order_id.size());
        w.filled = 0;
        w.reserved_quantity = w.latest_quantity = plan.quantity;
        w.notional = plan.notional;
        w.price_high = w.price_low = w.latest_price = o.price;
        std::memcpy(w.id, o.client_order_id.data(), o.client_order_id.size());
        m_keys[static_cast<std::size_t>(index)] = aggressive_key(w);
        insert_slot(index, w.hash);
        heap_insert(add_group(group_of(plan.instrument, plan.counterparty, o.side == Side::sell)),
                    index);
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
        m_messages.count(now);
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
    int counterparty_index(std::string_view counterparty) const noexcept {
        return m_counterparties.find(counterparty);
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
        m_messages.carry_from(old.m_messages);
        if (!tracking()) return;
        for (std::size_t i = 0; i < m_instrument_state.size(); ++i) {
            InstrumentState& mine = m_instrument_state[i];
            InstrumentState kept = old.m_instrument_state[i];
            kept.has_limit = mine.has_limit;
            kept.max_long = mine.max_long;
            kept.max_short = mine.max_short;
            mine = kept;
        }
        // Same instruments, counterparties and capacity: every table has the same shape.
        m_orders.swap(old.m_orders);
        m_keys.swap(old.m_keys);
        m_heap_pos.swap(old.m_heap_pos);
        m_free.swap(old.m_free);
        m_slots.swap(old.m_slots);
        m_mask = old.m_mask;
        m_groups.swap(old.m_groups);
        m_group_shift = old.m_group_shift;
        m_heap.swap(old.m_heap);
        m_heap_free.swap(old.m_heap_free);
        std::copy(std::begin(old.m_level_free_base), std::end(old.m_level_free_base),
                  std::begin(m_level_free_base));
        std::copy(std::begin(old.m_level_free_count), std::end(old.m_level_free_count),
                  std::begin(m_level_free_count));
        m_open = old.m_open;
        m_working_notional = old.m_working_notional;
    }

    /// A Decimal (scale <= 18) in 10^-18 units; exact (|units| < 2^63, so < 2^123).
    static int128 to_units(Decimal d) noexcept {
        return d.scale <= scale
                   ? static_cast<int128>(d.units) * static_cast<int128>(pow10_u64(scale - d.scale))
                   : 0;
    }

private:
    /// A working order, 64-byte aligned: its first cache line holds the id's length and hash,
    /// the order's group and state, what has filled and what is reserved (what a lookup, a
    /// fill and a close read first); the second its notional and prices; the id the third.
    struct alignas(64) Working {
        std::uint32_t hash = 0;  ///< the id's hash, low 32 bits (as in its IdSlot)
        std::int32_t instrument = -1, counterparty = -1;
        std::uint32_t pending_amends = 0;
        Side side = Side::buy;
        bool in_use = false, acked = false, cancel_pending = false;
        std::uint8_t id_length = 0;
        int128 filled = 0;
        int128 reserved_quantity = 0;
        // line 1
        int128 notional = 0;
        int128 latest_quantity = 0;
        Decimal latest_price, price_high;
        // line 2
        char id[max_order_id_length] = {};
        // line 3
        Decimal price_low;
    };
    static_assert(offsetof(Working, reserved_quantity) + sizeof(int128) <= 64 &&
                      offsetof(Working, id) == 128 && sizeof(Working) == 256,
                  "the cache lines of a working order, as laid out above");

    /// An entry of the id table: the order's index and its id's hash (low 32 bits).
    struct IdSlot {
        std::uint32_t hash = 0;
        std::int32_t index = -1;
    };

    /// Levels of a group's heap: a group holds at most capacity <= 100,000 < 2^17 orders.
    static constexpr unsigned heap_levels = 17;
    static_assert((std::uint64_t{1} << heap_levels) > Scope::max_open_orders_limit);

    /// The working orders of one (instrument, counterparty, side), in the group table while
    /// it has any: a binary min-heap of their indices by aggressive key, its level k (2^k
    /// positions, from 2^k) a block of the level-k pool in m_heap, and the keenest key at
    /// hand, so that a self-trade check reads this entry only.
    struct Group {
        static constexpr std::uint64_t none = ~std::uint64_t{0};  ///< a free table slot
        int128 best_key = 0;                                      ///< the key at position 1
        std::uint64_t id = none;
        std::uint32_t size = 0;
        std::int32_t level[heap_levels] = {};  ///< where level k's block starts in m_heap
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

    /// evaluate_new's reasons but the id's. False when the order cannot be tracked (its
    /// quantity, price or instrument is not valid).
    bool evaluate_limits(const Order& o, int instrument, int counterparty, TimeNs now,
                         NewPlan& plan, ReasonSet& r) const noexcept {
        const bool quantity_ok = o.quantity.is_positive() && o.quantity.scale <= scale;
        const bool price_ok = o.price.is_positive() && o.price.scale <= scale;
        if (!quantity_ok) r.add(ReasonCode::invalid_quantity);
        if (!price_ok) r.add(ReasonCode::invalid_price);
        if (m_free.empty() || (m_max_open != 0 && m_open >= m_max_open))
            r.add(ReasonCode::max_open_orders_exceeded);
        if (rate_exceeded(now)) r.add(ReasonCode::message_rate_exceeded);
        plan.instrument =
            instrument >= 0 && static_cast<std::size_t>(instrument) < m_instruments.size()
                ? instrument
                : -1;
        plan.counterparty =
            counterparty >= 0 && static_cast<std::size_t>(counterparty) < m_counterparties.size()
                ? counterparty
                : -1;
        if (!quantity_ok || !price_ok || plan.instrument < 0) return false;

        const InstrumentState& st = m_instrument_state[static_cast<std::size_t>(plan.instrument)];
        const int128 q = to_units(o.quantity);
        plan.quantity = q;
        const bool buy = o.side == Side::buy;
        int128 side_total;
        if (__builtin_add_overflow(buy ? st.working_buy : st.working_sell, q, &side_total)) {
            r.add(ReasonCode::notional_overflow);
            return true;
        }
        if (st.has_limit && position_exceeded(st, buy, side_total))
            r.add(ReasonCode::max_position_exceeded);
        if (m_track_notional) {
            if (!mul_div_pow10(q, o.price.units, o.price.scale, true, plan.notional)) {
                r.add(ReasonCode::notional_overflow);
                return true;
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
        return true;
    }

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

    bool rate_exceeded(TimeNs now) const noexcept { return m_messages.exceeded(now); }

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

    std::uint64_t group_of(const Working& w) const noexcept {
        return group_of(w.instrument, w.counterparty, w.side == Side::sell);
    }

    static int128 aggressive_key(const Working& w) noexcept {
        return w.side == Side::buy ? -price_units(w.price_high) : price_units(w.price_low);
    }

    /// Would an order of side `buy` at `price` cross a working order of `group` (the other
    /// side, same instrument and counterparty)? The keenest opposite order decides.
    bool crosses(std::uint64_t group, bool buy, int128 price) const noexcept {
        const Group* g = find_group(group);
        if (!g) return false;
        return buy ? g->best_key <= price : -g->best_key >= price;
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
        if (key != m_keys[static_cast<std::size_t>(index)]) {
            m_keys[static_cast<std::size_t>(index)] = key;
            heap_fix(*find_group(group_of(w)), m_heap_pos[static_cast<std::size_t>(index)], index);
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
        Group* g = find_group(group_of(w));
        heap_erase(*g, index);
        if (g->size == 0) remove_group(*g);
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
        return slot >= 0 ? m_slots[static_cast<std::size_t>(slot)].index : -1;
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

    /// The same n bytes (n <= 64), compared a word at a time in line.
    static bool same_id(const char* a, const char* b, std::size_t n) noexcept {
        std::size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            std::uint64_t x, y;
            std::memcpy(&x, a + i, 8);
            std::memcpy(&y, b + i, 8);
            if (x != y) return false;
        }
        for (; i < n; ++i)
            if (a[i] != b[i]) return false;
        return true;
    }

    /// The slot holding `id`, or -1. A slot keeps its id's hash, so a probe past another id
    /// reads the order's record only when their hashes agree.
    std::int64_t find_slot(std::string_view id, std::uint64_t hash) const noexcept {
        if (m_slots.empty()) return -1;
        const auto h = static_cast<std::uint32_t>(hash);
        for (std::size_t slot = h & m_mask;; slot = (slot + 1) & m_mask) {
            const IdSlot s = m_slots[slot];
            if (s.index < 0) return -1;
            if (s.hash != h) continue;
            const Working& w = m_orders[static_cast<std::size_t>(s.index)];
            if (w.id_length == id.size() && same_id(w.id, id.data(), id.size()))
                return static_cast<std::int64_t>(slot);
        }
    }

    void insert_slot(std::int32_t index, std::uint32_t h) noexcept {
        std::size_t slot = h & m_mask;
        while (m_slots[slot].index >= 0) slot = (slot + 1) & m_mask;
        m_slots[slot] = IdSlot{h, index};
    }

    void erase_slot(std::int32_t index) noexcept {
        std::size_t hole = m_orders[static_cast<std::size_t>(index)].hash & m_mask;
        while (m_slots[hole].index != index) hole = (hole + 1) & m_mask;
        m_slots[hole] = IdSlot{};
        // Shift back every later entry of the run whose home slot is not in (hole, slot].
        for (std::size_t slot = (hole + 1) & m_mask; m_slots[slot].index >= 0;
             slot = (slot + 1) & m_mask) {
            if (stays_in_run(hole, m_slots[slot].hash & m_mask, slot)) continue;
            m_slots[hole] = m_slots[slot];
            m_slots[slot] = IdSlot{};
            hole = slot;
        }
    }

    // ---- the self-trade index: per group, a heap of its orders by aggressive key ----------

    /// The group table: linear probing on a multiplicative hash of the group id.
    std::size_t group_home(std::uint64_t id) const noexcept {
        return static_cast<std::size_t>((id * 0x9e3779b97f4a7c15ull) >> m_group_shift);
    }

    const Group* find_group(std::uint64_t id) const noexcept {
        if (m_groups.empty()) return nullptr;
        const std::size_t mask = m_groups.size() - 1;
        for (std::size_t slot = group_home(id);; slot = (slot + 1) & mask) {
            const Group& g = m_groups[slot];
            if (g.id == id) return &g;
            if (g.id == Group::none) return nullptr;
        }
    }
    Group* find_group(std::uint64_t id) noexcept {
        return const_cast<Group*>(static_cast<const OrderLimits*>(this)->find_group(id));
    }

    /// The group's entry, made empty if it has none (there is always room: no more groups
    /// than working orders, and twice as many slots).
    Group& add_group(std::uint64_t id) noexcept {
        const std::size_t mask = m_groups.size() - 1;
        std::size_t slot = group_home(id);
        while (m_groups[slot].id != id && m_groups[slot].id != Group::none)
            slot = (slot + 1) & mask;
        Group& g = m_groups[slot];
        g.id = id;
        return g;
    }

    /// An emptied group leaves the table (backward-shift deletion, as in the id table).
    void remove_group(Group& g) noexcept {
        const std::size_t mask = m_groups.size() - 1;
        std::size_t hole = static_cast<std::size_t>(&g - m_groups.data());
        m_groups[hole] = Group{};
        for (std::size_t slot = (hole + 1) & mask; m_groups[slot].id != Group::none;
             slot = (slot + 1) & mask) {
            if (stays_in_run(hole, group_home(m_groups[slot].id) & mask, slot)) continue;
            m_groups[hole] = m_groups[slot];
            m_groups[slot] = Group{};
            hole = slot;
        }
    }

    /// Backward-shift deletion: an entry at `slot` whose home is in (hole, slot] (cyclically)
    /// stays where it is; any other moves into the hole.
    static bool stays_in_run(std::size_t hole, std::size_t home, std::size_t slot) noexcept {
        return hole <= slot ? (hole < home && home <= slot) : (hole < home || home <= slot);
    }

    // The heap: position p (from 1) is in level floor(log2 p), at p - 2^level in its block.

    static unsigned level_of(std::uint32_t p) noexcept {
        return 31u - static_cast<unsigned>(__builtin_clz(p));
    }
    std::int32_t& heap_at(Group& g, std::uint32_t p) noexcept {
        const unsigned k = level_of(p);
        return m_heap[static_cast<std::size_t>(g.level[k]) + (p - (std::uint32_t{1} << k))];
    }
    const int128& key_of(std::int32_t order) const noexcept {
        return m_keys[static_cast<std::size_t>(order)];
    }
    void heap_set(Group& g, std::uint32_t p, std::int32_t order) noexcept {
        heap_at(g, p) = order;
        m_heap_pos[static_cast<std::size_t>(order)] = p;
        if (p == 1) g.best_key = key_of(order);
    }

    /// Places `order` at p or above, moving less keen parents down.
    void sift_up(Group& g, std::uint32_t p, std::int32_t order) noexcept {
        const int128 key = key_of(order);
        while (p > 1) {
            const std::int32_t parent = heap_at(g, p / 2);
            if (!(key < key_of(parent))) break;
            heap_set(g, p, parent);
            p /= 2;
        }
        heap_set(g, p, order);
    }

    /// Places `order` at p or below, moving keener children up.
    void sift_down(Group& g, std::uint32_t p, std::int32_t order) noexcept {
        const int128 key = key_of(order);
        for (;;) {
            std::uint32_t c = 2 * p;
            if (c > g.size) break;
            std::int32_t child = heap_at(g, c);
            if (c < g.size) {
                const std::int32_t right = heap_at(g, c + 1);
                if (key_of(right) < key_of(child)) {
                    ++c;
                    child = right;
                }
            }
            if (!(key_of(child) < key)) break;
            heap_set(g, p, child);
            p = c;
        }
        heap_set(g, p, order);
    }

    /// `order`, whose key may have changed, goes from p to where its key belongs.
    void heap_fix(Group& g, std::uint32_t p, std::int32_t order) noexcept {
        if (p > 1 && key_of(order) < key_of(heap_at(g, p / 2)))
            sift_up(g, p, order);
        else
            sift_down(g, p, order);
    }

    void heap_insert(Group& g, std::int32_t order) noexcept {
        const std::uint32_t p = ++g.size;
        const unsigned k = level_of(p);
        if (p == std::uint32_t{1} << k) {  // the first of a new level: a block from its pool
            g.level[k] = m_heap_free[m_level_free_base[k] + --m_level_free_count[k]];
        }
        sift_up(g, p, order);
    }

    void heap_erase(Group& g, std::int32_t order) noexcept {
        const std::uint32_t p = m_heap_pos[static_cast<std::size_t>(order)];
        const std::uint32_t last = g.size;
        const std::int32_t moved = heap_at(g, last);
        --g.size;
        const unsigned k = level_of(last);
        if (last == std::uint32_t{1} << k)  // its level emptied: the block goes back
            m_heap_free[m_level_free_base[k] + m_level_free_count[k]++] = g.level[k];
        if (p != last) heap_fix(g, p, moved);
    }

    StringSet m_instruments, m_counterparties;
    std::vector<InstrumentState> m_instrument_state;
    std::size_t m_capacity = 0;
    std::vector<Working> m_orders;
    // Per working order, apart from its record so that a sift touches small entries only:
    std::vector<int128> m_keys;             ///< aggressive price: buys negated, smaller is keener
    std::vector<std::uint32_t> m_heap_pos;  ///< position in its group's heap (1: the keenest)
    std::vector<std::int32_t> m_free;
    std::vector<IdSlot> m_slots;
    std::size_t m_mask = 0;
    std::vector<Group> m_groups;
    unsigned m_group_shift = 64;
    std::vector<std::int32_t> m_heap;       ///< every level pool, level 0 first
    std::vector<std::int32_t> m_heap_free;  ///< per level, a stack of free block starts
    std::size_t m_level_free_base[heap_levels] = {};
    std::size_t m_level_free_count[heap_levels] = {};
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

    RateWindow m_messages;  ///< max_messages_per_second, over every request checked
};

}  // namespace kakunin::detail
