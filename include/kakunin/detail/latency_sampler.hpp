// kakunin/detail/latency_sampler.hpp — check()'s latency histogram: one call in 64 is timed
// with a pair of steady-clock reads into fixed buckets of relaxed atomics, so the other 63 pay
// two plain loads and stores and no clock read. Read with Guard::check_latency().
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace kakunin::detail {

/// Upper bounds (inclusive, nanoseconds) of the latency buckets; a last bucket takes the rest.
inline constexpr std::array<std::int64_t, 12> latency_bounds_ns = {
    250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000, 1'000'000, 10'000'000};

class LatencySampler {
public:
    /// One call in this many is timed.
    static constexpr std::uint32_t sample_every = 64;
    static_assert((sample_every & (sample_every - 1)) == 0, "a power of two");

    /// True for the call to time. Racy on purpose: concurrent callers may both see one tick
    /// (a sample more or fewer); a load and a store, no read-modify-write, no clock.
    bool tick() noexcept {
        const std::uint32_t n = m_tick.load(std::memory_order_relaxed);
        m_tick.store(n + 1, std::memory_order_relaxed);
        return (n & (sample_every - 1)) == 0;
    }
    static std::int64_t now_ns() noexcept {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
    void record(std::int64_t ns) noexcept {
        if (ns < 0) ns = 0;
        std::size_t i = 0;
        while (i < latency_bounds_ns.size() && ns > latency_bounds_ns[i]) ++i;
        m_buckets[i].fetch_add(1, std::memory_order_relaxed);
        m_sum_ns.fetch_add(static_cast<std::uint64_t>(ns), std::memory_order_relaxed);
    }
    /// The counts per bucket (not cumulative) and the sum of the timed calls, from any thread.
    void read(std::array<std::uint64_t, latency_bounds_ns.size() + 1>& counts,
              std::uint64_t& sum_ns) const noexcept {
        for (std::size_t i = 0; i < counts.size(); ++i)
            counts[i] = m_buckets[i].load(std::memory_order_relaxed);
        sum_ns = m_sum_ns.load(std::memory_order_relaxed);
    }

private:
    std::atomic<std::uint32_t> m_tick{0};
    std::array<std::atomic<std::uint64_t>, latency_bounds_ns.size() + 1> m_buckets{};
    std::atomic<std::uint64_t> m_sum_ns{0};
};

}  // namespace kakunin::detail
