// kakunin/decision.hpp — what Guard::check() answers: a verdict, every reason that applied, and
// the risk score. A rejection is a value, never an exception.
//
//   kakunin::Decision d = guard.check(order);
//   if (!d.allowed()) for (auto r : d.reasons) log(kakunin::to_string(r));
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>

#include "kakunin/clock.hpp"

namespace kakunin {

enum class Verdict : std::uint8_t {
    allow,   ///< send it
    warn,    ///< send it; a warning was raised (anomaly score over the warning threshold)
    reject,  ///< do not send it
};

inline const char* to_string(Verdict v) noexcept {
    switch (v) {
        case Verdict::allow: return "allow";
        case Verdict::warn: return "warn";
        case Verdict::reject: return "reject";
    }
    return "unknown";
}

/// Reason codes, numbered in ranges that never get reused:
///   1xx  state of the Guard          2xx  authority (certificate scope)
///   3xx  RTS 6 pre-trade limits      4xx  the order itself is malformed
///   5xx  behaviour (anomaly score)   6xx  credentials (certificate, CRL)
enum class ReasonCode : std::uint16_t {
    halted = 100,             ///< kill switch or automatic halt in force
    audit_unavailable = 101,  ///< the audit queue is nearly full or its sink keeps failing

    instrument_not_allowed = 200,    ///< instrument not in the scope
    counterparty_not_allowed = 201,  ///< counterparty not in the scope
    region_not_allowed = 202,        ///< signing region not in the scope
    outside_trading_hours = 203,     ///< order time outside every trading window (UTC)
    max_transaction_exceeded = 204,  ///< quantity x price above max_transaction
    currency_mismatch = 205,         ///< instrument quoted in another currency than the limit

    max_order_quantity_exceeded = 300,  ///< RTS 6 Art. 15(1) maximum order volume
    price_collar_breached = 301,        ///< RTS 6 Art. 15(1) price collar vs reference price
    reference_price_missing = 302,      ///< a collar is set but the order has no reference price
    order_rate_exceeded = 303,          ///< RTS 6 Art. 15(1) maximum messages per second
    daily_notional_exceeded = 304,      ///< RTS 6 Art. 15(4) credit/market limit per UTC day
    // Order lifecycle (docs/lifecycle.md): working orders, positions, messages, daily loss.
    max_position_exceeded = 305,          ///< worst-case net position beyond max_position
    max_open_orders_exceeded = 306,       ///< max_open_orders working, or the table is full
    max_working_notional_exceeded = 307,  ///< remaining notional of working orders too large
    message_rate_exceeded = 308,          ///< new, amend and cancel requests per second
    daily_loss_limit_reached = 309,       ///< the UTC day's loss has reached max_daily_loss
    reduce_only = 310,                    ///< reduce-only mode: the order does not reduce
    duplicate_order_id = 311,             ///< a working order already has this id
    unknown_order_id = 312,               ///< amend or cancel of an id that is not working
    self_trade = 313,        ///< would cross the agent's own working order (same venue)
    order_id_missing = 314,  ///< no usable client_order_id (empty or over 64 bytes)
    // Firm-wide limits (docs/operations.md): budgets shared by many Guards, through leases.
    firm_limit_exceeded = 315,  ///< the Guard's lease of a desk or firm budget is used up
    firm_lease_expired = 316,   ///< no lease in force (never granted, or not renewed in time)

    invalid_quantity = 400,         ///< quantity zero, negative or not a Decimal (scale > 18)
    invalid_price = 401,            ///< price zero, negative or not a Decimal (scale > 18)
    invalid_instrument = 402,       ///< not BASE_QUOTE
    notional_overflow = 403,        ///< the notional or the day's total does not fit
    invalid_reference_price = 404,  ///< reference price zero, negative or scale > 18
    order_field_too_long = 405,     ///< id, instrument, counterparty or region over 128 bytes

    anomaly_warning = 500,     ///< (verdict warn) score at or above the warning threshold
    anomaly_revocation = 501,  ///< score at or above the revocation threshold: halted, revoked

    certificate_expired = 600,        ///< the agent certificate's notAfter has passed
    certificate_not_yet_valid = 601,  ///< before the agent certificate's notBefore
    certificate_revoked = 602,        ///< the certificate was revoked (CRL or revocation feed)
    revocation_status_stale = 603,    ///< the CRL in force is past its nextUpdate
};

/// Every code, in numeric order. Keep in step with the enum.
inline constexpr std::array<ReasonCode, 37> all_reason_codes = {
    ReasonCode::halted,
    ReasonCode::audit_unavailable,
    ReasonCode::instrument_not_allowed,
    ReasonCode::counterparty_not_allowed,
    ReasonCode::region_not_allowed,
    ReasonCode::outside_trading_hours,
    ReasonCode::max_transaction_exceeded,
    ReasonCode::currency_mismatch,
    ReasonCode::max_order_quantity_exceeded,
    ReasonCode::price_collar_breached,
    ReasonCode::reference_price_missing,
    ReasonCode::order_rate_exceeded,
    ReasonCode::daily_notional_exceeded,
    ReasonCode::max_position_exceeded,
    ReasonCode::max_open_orders_exceeded,
    ReasonCode::max_working_notional_exceeded,
    ReasonCode::message_rate_exceeded,
    ReasonCode::daily_loss_limit_reached,
    ReasonCode::reduce_only,
    ReasonCode::duplicate_order_id,
    ReasonCode::unknown_order_id,
    ReasonCode::self_trade,
    ReasonCode::order_id_missing,
    ReasonCode::firm_limit_exceeded,
    ReasonCode::firm_lease_expired,
    ReasonCode::invalid_quantity,
    ReasonCode::invalid_price,
    ReasonCode::invalid_instrument,
    ReasonCode::notional_overflow,
    ReasonCode::invalid_reference_price,
    ReasonCode::order_field_too_long,
    ReasonCode::anomaly_warning,
    ReasonCode::anomaly_revocation,
    ReasonCode::certificate_expired,
    ReasonCode::certificate_not_yet_valid,
    ReasonCode::certificate_revoked,
    ReasonCode::revocation_status_stale,
};

inline const char* to_string(ReasonCode r) noexcept {
    switch (r) {
        case ReasonCode::halted: return "halted";
        case ReasonCode::audit_unavailable: return "audit_unavailable";
        case ReasonCode::instrument_not_allowed: return "instrument_not_allowed";
        case ReasonCode::counterparty_not_allowed: return "counterparty_not_allowed";
        case ReasonCode::region_not_allowed: return "region_not_allowed";
        case ReasonCode::outside_trading_hours: return "outside_trading_hours";
        case ReasonCode::max_transaction_exceeded: return "max_transaction_exceeded";
        case ReasonCode::currency_mismatch: return "currency_mismatch";
        case ReasonCode::max_order_quantity_exceeded: return "max_order_quantity_exceeded";
        case ReasonCode::price_collar_breached: return "price_collar_breached";
        case ReasonCode::reference_price_missing: return "reference_price_missing";
        case ReasonCode::order_rate_exceeded: return "order_rate_exceeded";
        case ReasonCode::daily_notional_exceeded: return "daily_notional_exceeded";
        case ReasonCode::max_position_exceeded: return "max_position_exceeded";
        case ReasonCode::max_open_orders_exceeded: return "max_open_orders_exceeded";
        case ReasonCode::max_working_notional_exceeded: return "max_working_notional_exceeded";
        case ReasonCode::message_rate_exceeded: return "message_rate_exceeded";
        case ReasonCode::daily_loss_limit_reached: return "daily_loss_limit_reached";
        case ReasonCode::reduce_only: return "reduce_only";
        case ReasonCode::duplicate_order_id: return "duplicate_order_id";
        case ReasonCode::unknown_order_id: return "unknown_order_id";
        case ReasonCode::self_trade: return "self_trade";
        case ReasonCode::order_id_missing: return "order_id_missing";
        case ReasonCode::firm_limit_exceeded: return "firm_limit_exceeded";
        case ReasonCode::firm_lease_expired: return "firm_lease_expired";
        case ReasonCode::invalid_quantity: return "invalid_quantity";
        case ReasonCode::invalid_price: return "invalid_price";
        case ReasonCode::invalid_instrument: return "invalid_instrument";
        case ReasonCode::notional_overflow: return "notional_overflow";
        case ReasonCode::invalid_reference_price: return "invalid_reference_price";
        case ReasonCode::order_field_too_long: return "order_field_too_long";
        case ReasonCode::anomaly_warning: return "anomaly_warning";
        case ReasonCode::anomaly_revocation: return "anomaly_revocation";
        case ReasonCode::certificate_expired: return "certificate_expired";
        case ReasonCode::certificate_not_yet_valid: return "certificate_not_yet_valid";
        case ReasonCode::certificate_revoked: return "certificate_revoked";
        case ReasonCode::revocation_status_stale: return "revocation_status_stale";
    }
    return "unknown";
}

/// A set of reason codes in one 64-bit word (bit i = all_reason_codes[i]); iterates in numeric
/// order. Allocation-free.
class ReasonSet {
public:
    static constexpr int index_of(ReasonCode r) noexcept {
        for (std::size_t i = 0; i < all_reason_codes.size(); ++i)
            if (all_reason_codes[i] == r) return static_cast<int>(i);
        return -1;
    }
    constexpr void add(ReasonCode r) noexcept { m_bits |= std::uint64_t{1} << index_of(r); }
    constexpr bool contains(ReasonCode r) const noexcept { return (m_bits >> index_of(r)) & 1u; }
    constexpr bool empty() const noexcept { return m_bits == 0; }
    int size() const noexcept { return __builtin_popcountll(m_bits); }
    constexpr std::uint64_t bits() const noexcept { return m_bits; }
    constexpr void merge(ReasonSet other) noexcept { m_bits |= other.m_bits; }

    class iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = ReasonCode;
        using difference_type = std::ptrdiff_t;
        using pointer = const ReasonCode*;
        using reference = ReasonCode;

        constexpr explicit iterator(std::uint64_t rest) noexcept : m_rest(rest) {}
        ReasonCode operator*() const noexcept {
            return all_reason_codes[static_cast<std::size_t>(__builtin_ctzll(m_rest))];
        }
        iterator& operator++() noexcept {
            m_rest &= m_rest - 1;
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator before = *this;
            ++*this;
            return before;
        }
        constexpr bool operator==(iterator o) const noexcept { return m_rest == o.m_rest; }
        constexpr bool operator!=(iterator o) const noexcept { return m_rest != o.m_rest; }

    private:
        std::uint64_t m_rest;
    };
    constexpr iterator begin() const noexcept { return iterator(m_bits); }
    constexpr iterator end() const noexcept { return iterator(0); }

private:
    static_assert(all_reason_codes.size() <= 64, "ReasonSet holds 64 codes");
    std::uint64_t m_bits = 0;
};

/// Number of anomaly-score components (size, frequency, concentration, time of day, origin).
inline constexpr std::size_t score_component_count = 5;

struct Decision {
    Verdict verdict = Verdict::reject;
    ReasonSet reasons;
    TimeNs ts_ns = 0;             ///< the one clock reading this check used
    std::uint32_t score_ppm = 0;  ///< anomaly score in parts per million (0 = no baseline yet)
    std::array<std::uint32_t, score_component_count> components_ppm{};

    bool allowed() const noexcept { return verdict != Verdict::reject; }
};

}  // namespace kakunin
