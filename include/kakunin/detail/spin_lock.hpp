// kakunin/detail/spin_lock.hpp — a test-and-test-and-set lock for critical sections of a few
// dozen instructions on the hot path. Never held across a call that can block.
#pragma once

#include <atomic>

namespace kakunin::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

class SpinLock {
public:
    void lock() noexcept {
        while (m_locked.exchange(true, std::memory_order_acquire))
            while (m_locked.load(std::memory_order_relaxed)) cpu_relax();
    }
    void unlock() noexcept { m_locked.store(false, std::memory_order_release); }

private:
    std::atomic<bool> m_locked{false};
};

}  // namespace kakunin::detail
