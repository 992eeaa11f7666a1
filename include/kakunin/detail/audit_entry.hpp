// kakunin/detail/audit_entry.hpp — one entry of the audit trail's queue, and the journal slot
// that holds it. An entry is plain bytes (no pointer, nothing to destroy), so the queue can live
// in a memory-mapped file (the write-ahead journal, docs/audit-format.md section 13) and a later
// process can read what a dead one wrote.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "kakunin/decision.hpp"
#include "kakunin/lifecycle.hpp"
#include "kakunin/order.hpp"

namespace kakunin::detail {

/// memcpy for an entry's fields (ids and names mostly under 16 bytes; a reasoning may be longer),
/// as overlapping fixed-size moves. An inlined memcpy of a length the compiler only knows to be at
/// most 128 bytes becomes `rep movsq`, whose start-up cost was a sixth of an audited check().
inline void copy_short(char* to, const char* from, std::size_t n) noexcept {
    if (n >= 16) {
        for (std::size_t at = 0; at + 16 < n; at += 16) std::memcpy(to + at, from + at, 16);
        std::memcpy(to + n - 16, from + n - 16, 16);
    } else if (n >= 8) {
        std::memcpy(to, from, 8);
        std::memcpy(to + n - 8, from + n - 8, 8);
    } else if (n >= 4) {
        std::memcpy(to, from, 4);
        std::memcpy(to + n - 4, from + n - 4, 4);
    } else if (n != 0) {
        to[0] = from[0];
        to[n / 2] = from[n / 2];
        to[n - 1] = from[n - 1];
    }
}

/// One queue entry: a decision and the order's text, a state change, an amend or cancel
/// decision, an execution report as applied, or one part of an event with a JSON payload.
/// Fixed size, trivially copyable.
struct AuditEntry {
    static constexpr std::size_t text_capacity = 1024;
    enum class Kind : std::uint8_t { order, state, json, amend, cancel, execution };
    Kind kind = Kind::order;
    TimeNs ts_ns = 0;
    Decision decision;
    Side side = Side::buy;
    Decimal quantity, price, reference_price;
    bool has_reference = false;
    /// Kind::amend: which of quantity and price the amend gives. Kind::execution: which of them
    /// the report type carries (a fill both, a mark the price).
    bool has_quantity = false, has_price = false;
    /// Kind::execution: the report's type and what applying it did (its `problem` is kept as
    /// text, field 1: the pointer is cleared, so the entry holds no address).
    ExecutionType exec_type = ExecutionType::ack;
    ExecutionResult result;
    std::uint32_t instrument_length = 0;  ///< Kind::execution: before truncation
    /// Kind::json: this entry is part `part` (from 0) of `parts` consecutive entries that
    /// together hold one event: part 0 has the event name (field 0), every part a piece of the
    /// payload (field 1), in order.
    std::uint32_t part = 0, parts = 1;
    /// Lengths of client_order_id, instrument, counterparty, region, reasoning (for a state
    /// change: event, by, reason; for an amend or cancel: client_order_id; for an execution:
    /// instrument, problem, client_order_id; for a JSON part: event, payload piece) as stored,
    /// and the last field's full length before truncation (the reasoning, the reason, the id,
    /// or the whole payload's length).
    std::uint16_t length[5] = {};
    std::uint32_t reasoning_length = 0;
    char text[text_capacity];

    /// Copies the fields in order: each but the last up to max_order_field_length bytes (the
    /// Guard rejects an order with a longer id, instrument, counterparty or region), the last
    /// (reasoning, reason) in the rest, its full length kept beside it.
    void set_text(const std::string_view* fields, std::size_t n) noexcept {
        static_assert(4 * max_order_field_length < text_capacity, "room for the reasoning");
        std::size_t used = 0;
        for (std::size_t i = 0; i < 5; ++i) {
            if (i >= n) {
                length[i] = 0;
                continue;
            }
            const std::size_t room = text_capacity - used;
            const std::size_t cap =
                i + 1 < n ? std::min<std::size_t>(room, max_order_field_length) : room;
            const std::size_t len = std::min(fields[i].size(), cap);
            if (len != 0) copy_short(text + used, fields[i].data(), len);  // data() may be null
            length[i] = static_cast<std::uint16_t>(len);
            used += len;
        }
    }
    std::string_view field(std::size_t i) const noexcept {
        std::size_t offset = 0;
        for (std::size_t k = 0; k < i; ++k) offset += length[k];
        return {text + offset, length[i]};
    }
    /// Bytes of the entry that hold something: everything before the text, and the text used.
    std::size_t used_bytes() const noexcept {
        std::size_t n = offsetof(AuditEntry, text);
        for (std::uint16_t l : length) n += l;
        return n;
    }
};
static_assert(std::is_trivially_copyable<AuditEntry>::value,
              "an audit entry is plain bytes: it may live in a mapped file");

/// A 64-bit checksum (not cryptographic) that tells a journal slot the disk kept whole from one
/// it kept half of: four independent multiply-rotate lanes over 8-byte words, then a final mix.
/// About 300 bytes (an order with short ids) take some 15 ns.
inline std::uint64_t journal_checksum(const void* data, std::size_t n,
                                      std::uint64_t seed) noexcept {
    constexpr std::uint64_t k1 = 0x9E3779B185EBCA87ull, k2 = 0xC2B2AE3D27D4EB4Full;
    auto rotl = [](std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
    auto mix = [&](std::uint64_t h, std::uint64_t v) { return rotl(h ^ (v * k2), 31) * k1; };
    auto load = [](const unsigned char* p) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        return v;
    };
    const unsigned char* p = static_cast<const unsigned char*>(data);
    std::uint64_t a = seed + k1, b = seed ^ k2, c = ~seed, d = n * k1;
    for (; n >= 32; p += 32, n -= 32) {
        a = mix(a, load(p));
        b = mix(b, load(p + 8));
        c = mix(c, load(p + 16));
        d = mix(d, load(p + 24));
    }
    for (; n >= 8; p += 8, n -= 8) a = mix(a, load(p));
    if (n != 0) {
        std::uint64_t t = 0;
        std::memcpy(&t, p, n);
        b = mix(b, t);
    }
    std::uint64_t h = a ^ rotl(b, 17) ^ rotl(c, 31) ^ rotl(d, 47);
    h ^= h >> 33;
    h *= k2;
    h ^= h >> 29;
    return h;
}

/// One slot of the queue (and of the journal, when the queue is the journal's mapped file).
/// The producer fills `entry`, then seals it: the checksum, then the journal sequence number,
/// stored last (release), so a slot whose `jseq` is newer than the log's holds a whole entry
/// unless the disk tore it, which the checksum tells. `jseq` 0: never sealed.
struct alignas(64) JournalSlot {
    std::atomic<std::uint64_t> jseq{0};
    std::uint64_t checksum = 0;
    AuditEntry entry;

    void seal(std::uint64_t seq) noexcept {
        checksum = journal_checksum(&entry, entry.used_bytes(), seq);
        jseq.store(seq, std::memory_order_release);
    }
    /// True when the slot holds a whole entry sealed as `seq`.
    bool intact(std::uint64_t seq) const noexcept {
        return entry.used_bytes() <= sizeof(AuditEntry) &&
               checksum == journal_checksum(&entry, entry.used_bytes(), seq);
    }
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the seal is a plain store");

}  // namespace kakunin::detail
