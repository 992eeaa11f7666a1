// kakunin/detail/spsc_ring.hpp — the one hand-off from the hot path to a background thread: a
// bounded single-producer / single-consumer ring, preallocated at construction, whose entries
// are written and read in place. The audit trail's queue and the Guard's anomaly ring are both
// one.
//
//   detail::SpscRing<Entry> ring(4096);
//   if (Entry* e = ring.claim()) { e->x = 1; ring.publish(); }   // producer: nullptr when full
//   while (Entry* e = ring.front()) { use(*e); ring.pop(); }     // consumer: nullptr when empty
//   for (std::size_t i = 0, n = ring.available(); i < n; ++i) use(*ring.peek(i));  // a batch
//
// Threading: one producer thread (or callers serialised by a lock) calls claim()/publish(); one
// consumer (likewise) calls front()/peek()/available()/pop(); size() and the counters may be
// read from any thread. Nothing allocates, blocks or throws after construction. A slot is the
// producer's from claim() until publish() and the consumer's from front() until pop(): the
// other side never touches it meanwhile, so the entries need no atomics of their own.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace kakunin::detail {

template <class T>
class SpscRing {
public:
    /// `capacity` entries, default-constructed now (throws std::bad_alloc, or
    /// std::invalid_argument for 0).
    /// With `slots`, the entries are in memory the caller owns and keeps in place for the
    /// ring's life (the audit journal's mapped file), used as they are: nothing is constructed
    /// there.
    explicit SpscRing(std::size_t capacity, T* slots = nullptr)
        : m_owned(slots != nullptr ? 0 : checked(capacity)),
          m_slots(slots != nullptr ? slots : m_owned.data()),
          m_capacity(checked(capacity)) {}
    SpscRing(const SpscRing&) = delete;
    SpscRing& operator=(const SpscRing&) = delete;

    // ---- producer ----

    /// The next free slot to fill in place, or nullptr when the ring is full. Nothing is
    /// visible to the consumer until publish(); a claim not published is simply reused.
    T* claim() noexcept {
        // The consumer's tail is read (a cache line the other core writes) only when the copy
        // the producer last read says the ring is full.
        if (size_seen() >= m_capacity && size_now() >= m_capacity) return nullptr;
        return &m_slots[m_head_slot];
    }
    /// Hands the slot from the last claim() to the consumer.
    void publish() noexcept {
        if (++m_head_slot == m_capacity) m_head_slot = 0;
        m_head.store(m_head.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    /// Entries published and not yet popped as the producer last saw the tail: never fewer than
    /// size(), so a producer that refuses when this is too large fails closed; exact after a
    /// claim() that found the ring full. Producer thread only.
    std::size_t size_seen() const noexcept {
        return static_cast<std::size_t>(m_head.load(std::memory_order_relaxed) - m_tail_seen);
    }
    /// size_seen() after reading the consumer's tail again (producer thread only).
    std::size_t size_now() noexcept {
        m_tail_seen = m_tail.load(std::memory_order_acquire);
        return size_seen();
    }

    // ---- consumer ----

    /// The oldest published entry, or nullptr when the ring is empty.
    T* front() noexcept { return peek(0); }
    /// The i-th published entry after the oldest (0 is front()), or nullptr when fewer are
    /// published: a consumer may work on a batch in place and pop() it afterwards.
    T* peek(std::size_t i) noexcept {
        // The producer's head (a cache line the other core writes on every publish) is read
        // only when the copy the consumer last read has fewer entries than asked for.
        const std::uint64_t tail = m_tail.load(std::memory_order_relaxed);
        if (m_head_seen - tail <= i && available() <= i) return nullptr;
        return &m_slots[(tail + i) % m_capacity];
    }
    /// Entries published and not yet popped, reading the producer's head now: the entries a
    /// batch may then peek() without reading it again (consumer thread only).
    std::size_t available() noexcept {
        m_head_seen = m_head.load(std::memory_order_acquire);
        return static_cast<std::size_t>(m_head_seen - m_tail.load(std::memory_order_relaxed));
    }
    /// Gives the `n` oldest entries back to the producer (n <= size(), as seen by the consumer).
    void pop(std::size_t n = 1) noexcept {
        const std::uint64_t tail = m_tail.load(std::memory_order_relaxed) + n;
        // What was popped was published: the head seen is never behind the tail.
        if (m_head_seen < tail) m_head_seen = tail;
        m_tail.store(tail, std::memory_order_release);
    }

    // ---- anyone ----

    /// Entries published and not yet popped. Exact on the producer's and the consumer's thread;
    /// from a third thread, a value it had at some moment during the call.
    std::size_t size() const noexcept {
        // Tail first: it never passes the head, and the head read after it is no earlier.
        const std::uint64_t tail = m_tail.load(std::memory_order_acquire);
        const std::uint64_t used = m_head.load(std::memory_order_acquire) - tail;
        return used < m_capacity ? static_cast<std::size_t>(used) : m_capacity;
    }
    bool empty() const noexcept { return size() == 0; }
    std::size_t capacity() const noexcept { return m_capacity; }
    /// Entries published since construction (the head), and popped (the tail).
    std::uint64_t pushed() const noexcept { return m_head.load(std::memory_order_acquire); }
    std::uint64_t popped() const noexcept { return m_tail.load(std::memory_order_acquire); }

private:
    static std::size_t checked(std::size_t capacity) {
        if (capacity == 0) throw std::invalid_argument("SpscRing: capacity 0");
        return capacity;
    }

    std::vector<T> m_owned;  ///< empty when the caller owns the slots
    T* m_slots;
    std::size_t m_capacity;
    // Each index on its own cache line: the producer writes one, the consumer the other.
    alignas(64) std::atomic<std::uint64_t> m_head{0};
    // The producer's own: the tail it last read, and the head's slot (no division per claim).
    std::uint64_t m_tail_seen = 0;
    std::size_t m_head_slot = 0;
    alignas(64) std::atomic<std::uint64_t> m_tail{0};
    std::uint64_t m_head_seen = 0;  ///< the consumer's own: the head it last read
};

}  // namespace kakunin::detail
