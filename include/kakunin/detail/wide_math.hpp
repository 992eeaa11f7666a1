// kakunin/detail/wide_math.hpp — exact comparisons of products of 128-bit magnitudes.
#pragma once

#include <cstdint>

#include "kakunin/decimal.hpp"

namespace kakunin::detail {

using u128 = kakunin::uint128;

/// The 256-bit product of two unsigned 128-bit numbers as (high, low).
inline void mul_128x128(u128 a, u128 b, u128& hi, u128& lo) noexcept {
    const u128 mask = ~std::uint64_t{0};
    const u128 a_lo = a & mask, a_hi = a >> 64, b_lo = b & mask, b_hi = b >> 64;
    const u128 ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    const u128 mid = (ll >> 64) + (lh & mask) + (hl & mask);
    lo = (ll & mask) | (mid << 64);
    hi = hh + (lh >> 64) + (hl >> 64) + (mid >> 64);
}

/// Three-way comparison of a*b and c*d, exact for any unsigned 128-bit operands.
inline int compare_products(u128 a, u128 b, u128 c, u128 d) noexcept {
    u128 h1, l1, h2, l2;
    mul_128x128(a, b, h1, l1);
    mul_128x128(c, d, h2, l2);
    if (h1 != h2) return h1 < h2 ? -1 : 1;
    if (l1 != l2) return l1 < l2 ? -1 : 1;
    return 0;
}

}  // namespace kakunin::detail
