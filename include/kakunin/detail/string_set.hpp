// kakunin/detail/string_set.hpp — a set of strings built once, looked up without allocating.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kakunin::detail {

/// Open addressing over FNV-1a hashes; find() returns the entry's index in construction order.
class StringSet {
public:
    StringSet() = default;
    explicit StringSet(const std::vector<std::string>& items) : m_items(items) {
        std::size_t capacity = 8;
        while (capacity < items.size() * 2) capacity *= 2;
        m_slots.assign(capacity, -1);
        m_mask = capacity - 1;
        for (std::size_t i = 0; i < m_items.size(); ++i) {
            std::size_t slot = hash(m_items[i]) & m_mask;
            while (m_slots[slot] >= 0) slot = (slot + 1) & m_mask;
            m_slots[slot] = static_cast<std::int32_t>(i);
        }
    }

    /// The i-th item, in the order given (0 <= i < size()).
    std::string_view item(int i) const noexcept { return m_items[static_cast<std::size_t>(i)]; }

    int find(std::string_view s) const noexcept {
        if (m_slots.empty()) return -1;
        std::size_t slot = hash(s) & m_mask;
        for (;;) {
            const std::int32_t i = m_slots[slot];
            if (i < 0) return -1;
            if (m_items[static_cast<std::size_t>(i)] == s) return i;
            slot = (slot + 1) & m_mask;
        }
    }
    std::size_t size() const noexcept { return m_items.size(); }
    const std::string& operator[](std::size_t i) const noexcept { return m_items[i]; }

    static std::uint64_t hash(std::string_view s) noexcept {
        std::uint64_t h = 14695981039346656037ull;
        for (unsigned char c : s) {
            h ^= c;
            h *= 1099511628211ull;
        }
        return h ^ (h >> 29);
    }

private:
    std::vector<std::string> m_items;
    std::vector<std::int32_t> m_slots;
    std::size_t m_mask = 0;
};

}  // namespace kakunin::detail
