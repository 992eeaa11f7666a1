// kakunin/decimal.hpp — exact decimal quantities, prices and amounts. No floating point.
//
// A Decimal is an integer number of units of 10^-scale: "500000.00" is {50000000, 2}. Products
// (notional = quantity x price) are computed exactly in 128 bits and compared exactly:
//
//   auto q = kakunin::parse_decimal("5"), p = kakunin::parse_decimal("100000.00");
//   kakunin::Wide n = kakunin::multiply(q, p);               // 500000.00, exact
//   bool over = kakunin::compare(n, kakunin::parse_decimal("500000.00")) > 0;  // false
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kakunin/error.hpp"

namespace kakunin {

__extension__ typedef __int128 int128;
__extension__ typedef unsigned __int128 uint128;

struct Decimal {
    static constexpr unsigned max_scale = 18;
    std::int64_t units = 0;  ///< value = units / 10^scale
    std::uint8_t scale = 0;  ///< 0..max_scale

    /// A Decimal is a number only with scale <= max_scale (parse_decimal never makes another;
    /// a hand-built one can be). One that is not is neither positive nor negative, so every
    /// check that wants a positive amount refuses it, before any arithmetic could overflow.
    constexpr bool valid() const noexcept { return scale <= max_scale; }
    constexpr bool is_positive() const noexcept { return valid() && units > 0; }
    constexpr bool is_negative() const noexcept { return valid() && units < 0; }
    /// Approximate value, for statistics (anomaly scores) only: never for limits or money.
    double to_double() const noexcept {
        static constexpr double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8, 1e9,
                                           1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};
        return static_cast<double>(units) / pow10[scale <= max_scale ? scale : max_scale];
    }
};

/// A product of two Decimals: up to 126 bits of units, scale up to 36.
struct Wide {
    int128 units = 0;
    unsigned scale = 0;
};

namespace detail {

constexpr int128 pow10_128(unsigned n) noexcept {
    int128 r = 1;
    for (unsigned i = 0; i < n; ++i) r *= 10;
    return r;
}

/// 10^n for n <= 18 (all fit in 63 bits), by table: the hot path rescales every amount.
inline std::uint64_t pow10_u64(unsigned n) noexcept {
    static constexpr std::uint64_t table[19] = {1ull,
                                                10ull,
                                                100ull,
                                                1'000ull,
                                                10'000ull,
                                                100'000ull,
                                                1'000'000ull,
                                                10'000'000ull,
                                                100'000'000ull,
                                                1'000'000'000ull,
                                                10'000'000'000ull,
                                                100'000'000'000ull,
                                                1'000'000'000'000ull,
                                                10'000'000'000'000ull,
                                                100'000'000'000'000ull,
                                                1'000'000'000'000'000ull,
                                                10'000'000'000'000'000ull,
                                                100'000'000'000'000'000ull,
                                                1'000'000'000'000'000'000ull};
    return table[n];
}

/// out = v * 10^n; false on overflow (n <= 38).
inline bool mul_pow10(int128 v, unsigned n, int128& out) noexcept {
    if (n > 38) return v == 0 ? (out = 0, true) : false;
    return !__builtin_mul_overflow(v, pow10_128(n), &out);
}

}  // namespace detail

/// Parses "-?[0-9]+(\.[0-9]+)?" with at most 18 fractional digits and no overflow.
/// No exponent, sign '+', blanks or thousands separators: a limit is written one way only.
inline std::optional<Decimal> try_parse_decimal(std::string_view s) noexcept {
    Decimal d;
    std::size_t i = 0;
    bool negative = false;
    if (i < s.size() && s[i] == '-') {
        negative = true;
        ++i;
    }
    std::size_t int_digits = 0, frac_digits = 0;
    std::uint64_t acc = 0;
    constexpr std::uint64_t limit = static_cast<std::uint64_t>(INT64_MAX);
    auto push = [&](char c) {
        std::uint64_t next;
        if (__builtin_mul_overflow(acc, 10u, &next)) return false;
        if (__builtin_add_overflow(next, static_cast<std::uint64_t>(c - '0'), &next)) return false;
        if (next > limit) return false;
        acc = next;
        return true;
    };
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++int_digits)
        if (!push(s[i])) return std::nullopt;
    if (int_digits == 0) return std::nullopt;
    if (i < s.size() && s[i] == '.') {
        ++i;
        for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++frac_digits)
            if (!push(s[i])) return std::nullopt;
        if (frac_digits == 0 || frac_digits > Decimal::max_scale) return std::nullopt;
    }
    if (i != s.size()) return std::nullopt;
    d.units = negative ? -static_cast<std::int64_t>(acc) : static_cast<std::int64_t>(acc);
    d.scale = static_cast<std::uint8_t>(frac_digits);
    return d;
}

/// Throwing form for cold paths; the message quotes the text.
inline Decimal parse_decimal(std::string_view s) {
    auto d = try_parse_decimal(s);
    if (!d)
        throw Error(ErrorCategory::invalid_input,
                    "'" + std::string(s) +
                        "' is not a decimal number (digits, optional '.' and up to 18 "
                        "fractional digits, optional leading '-', within 64 bits)");
    return *d;
}

namespace detail {
inline std::string format_units(int128 units, unsigned scale) {
    bool negative = units < 0;
    // Work on the magnitude in unsigned 128 bits so INT128_MIN cannot occur here.
    uint128 mag = negative ? static_cast<uint128>(-(units + 1)) + 1 : static_cast<uint128>(units);
    std::string digits;
    do {
        digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(mag % 10)));
        mag /= 10;
    } while (mag != 0);
    if (scale > 0) {
        if (digits.size() <= scale) digits.insert(0, scale - digits.size() + 1, '0');
        digits.insert(digits.size() - scale, 1, '.');
    }
    if (negative) digits.insert(digits.begin(), '-');
    return digits;
}
}  // namespace detail

/// Prints exactly the value and scale: {50000000, 2} -> "500000.00".
inline std::string to_string(Decimal d) { return detail::format_units(d.units, d.scale); }
inline std::string to_string(const Wide& w) { return detail::format_units(w.units, w.scale); }

/// Exact product; cannot overflow (|units| < 2^63 each).
constexpr Wide multiply(Decimal a, Decimal b) noexcept {
    return Wide{static_cast<int128>(a.units) * static_cast<int128>(b.units),
                static_cast<unsigned>(a.scale) + b.scale};
}

constexpr Wide widen(Decimal d) noexcept { return Wide{d.units, d.scale}; }

/// Exact three-way comparison: negative, zero or positive.
inline int compare(const Wide& a, const Wide& b) noexcept {
    if (a.scale == b.scale) return a.units < b.units ? -1 : (a.units > b.units ? 1 : 0);
    // Bring the smaller scale up. If that overflows, its magnitude exceeds anything the other
    // side can hold, so the sign decides.
    bool a_up = a.scale < b.scale;
    const Wide& lo = a_up ? a : b;
    const Wide& hi = a_up ? b : a;
    int128 scaled;
    int r;
    if (!detail::mul_pow10(lo.units, hi.scale - lo.scale, scaled))
        r = lo.units < 0 ? -1 : 1;
    else
        r = scaled < hi.units ? -1 : (scaled > hi.units ? 1 : 0);
    return a_up ? r : -r;
}
inline int compare(Decimal a, Decimal b) noexcept { return compare(widen(a), widen(b)); }
inline int compare(const Wide& a, Decimal b) noexcept { return compare(a, widen(b)); }

/// Converts to a fixed scale, rounding towards +infinity when digits are dropped (so a running
/// total never under-counts). False if the result does not fit.
inline bool rescale_ceil(const Wide& w, unsigned scale, int128& out) noexcept {
    if (w.scale <= scale) return detail::mul_pow10(w.units, scale - w.scale, out);
    unsigned drop = w.scale - scale;
    if (drop > 38) {
        out = w.units > 0 ? 1 : 0;
        return true;
    }
    int128 div = detail::pow10_128(drop);
    int128 q = w.units / div;
    if (w.units % div != 0 && w.units > 0) ++q;
    out = q;
    return true;
}

}  // namespace kakunin
