// kakunin/detail/rate_window.hpp — a sliding one-second window over message times: "at most N
// in any second". A ring of the last N times, preallocated; count() is O(1) and allocation-free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kakunin/clock.hpp"

namespace kakunin::detail {

class RateWindow {
public:
    RateWindow() = default;
    /// At most `limit` messages in any one second; 0: no limit (nothing is kept).
    explicit RateWindow(std::size_t limit) : m_ring(limit, 0) {}

    bool enabled() const noexcept { return !m_ring.empty(); }
    std::size_t limit() const noexcept { return m_ring.size(); }

    /// True if one more message at `now` would make limit + 1 within one second: the limit-th
    /// latest is less than 1 s old. `now` must not go back (the Guard keeps time forward-only).
    bool exceeded(TimeNs now) const noexcept {
        return enabled() && m_filled && now - m_ring[m_next] < 1'000'000'000;
    }
    /// Counts a message at `now` (allowed or not: every message checked counts).
    void count(TimeNs now) noexcept {
        if (!enabled()) return;
        m_ring[m_next] = now;
        if (++m_next == m_ring.size()) {
            m_next = 0;
            m_filled = true;
        }
    }

    /// Takes the newest times of `from` (as many as this window holds): a limit changed by a
    /// renewed certificate keeps what was counted. Neither allocates.
    void carry_from(const RateWindow& from) noexcept {
        if (!enabled()) return;
        const std::size_t have = from.m_filled ? from.m_ring.size() : from.m_next;
        const std::size_t keep = std::min(have, m_ring.size());
        for (std::size_t i = 0; i < keep; ++i)
            m_ring[i] =
                from.m_ring[(from.m_next + from.m_ring.size() - keep + i) % from.m_ring.size()];
        m_filled = keep == m_ring.size();
        m_next = keep % m_ring.size();
    }

    void swap(RateWindow& other) noexcept {
        m_ring.swap(other.m_ring);
        std::swap(m_next, other.m_next);
        std::swap(m_filled, other.m_filled);
    }

private:
    std::vector<TimeNs> m_ring;
    std::size_t m_next = 0;
    bool m_filled = false;
};

}  // namespace kakunin::detail
