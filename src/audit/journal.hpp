// Private: the audit trail's write-ahead journal (docs/audit-format.md section 13). A file of
// fixed-size slots, mapped MAP_SHARED and preallocated, that *is* the trail's queue: check()
// writes its entry into a slot and seals it (checksum, then sequence number) before it returns,
// with no system call. The kernel keeps the pages of a process that dies, so the next trail on
// the same log finds every sealed entry the log does not hold yet and records it.
//
//   audit_detail::Journal j(path, "agent-7", 4096);     // creates, or opens what a run left
//   auto found = j.scan(j.mark().jseq);                 // entries sealed after the watermark
//   ... append them to the log, flush ...
//   j.set_mark({last_jseq, log_records});               // after every durable flush
//
// Layout (native byte order: a crash buffer for the machine that wrote it, not an exchange
// format): one 4,096-byte header (magic, version, the entry layout, the capacity, the log id,
// the watermark in two banks so a torn update leaves the older one), then `capacity` slots of
// sizeof(detail::JournalSlot) bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kakunin/detail/audit_entry.hpp"

namespace kakunin::audit_detail {

class Journal {
public:
    /// The last entry whose record the log holds durably, and how many records the log held
    /// then: the log's records after `records` that came from entries are those after `jseq`.
    struct Mark {
        std::uint64_t jseq = 0;
        std::uint64_t records = 0;
    };
    /// What scan() found after the watermark, in sequence order.
    struct Found {
        std::vector<detail::AuditEntry> entries;
        std::vector<std::uint64_t> jseqs;
        std::uint64_t damaged = 0;  ///< slots newer than the watermark whose checksum failed
        std::uint64_t missing = 0;  ///< sequence numbers absent between the watermark and the last
        std::uint64_t last_jseq = 0;  ///< the newest sealed slot found (0: none)
    };

    /// Opens `path`, creating and preallocating it (capacity slots) when it does not exist or
    /// holds nothing yet, and locks it (flock, exclusive). An existing journal keeps the
    /// capacity it was made with until reshape(). Throws kakunin::Error naming the path and the
    /// reason: io (cannot create, map or lock: "in use by another trail or process"),
    /// invalid_state (another log's journal, another build's entry layout, not a journal).
    Journal(std::string path, const std::string& log_id, std::size_t capacity);
    ~Journal();
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    /// The slots, in the mapping (capacity() of them).
    detail::JournalSlot* slots() noexcept { return m_slots; }
    std::size_t capacity() const noexcept { return m_capacity; }
    const std::string& path() const noexcept { return m_path; }
    Mark mark() const noexcept;
    /// Every whole entry sealed after `after_jseq`, in order (a JSON event only with all its
    /// parts), and what is damaged or missing among them.
    Found scan(std::uint64_t after_jseq) const;
    /// Records the watermark (two plain stores and a checksum into the mapping; no system
    /// call). Writer thread only.
    void set_mark(Mark m) noexcept;
    /// msync(MS_SYNC) of the mapping: what a power loss would keep. 0 or the errno.
    int sync() noexcept;
    /// Makes the journal `capacity` empty slots, keeping the watermark. Only once everything
    /// scan() found is durable in the log. Throws as the constructor.
    void reshape(std::size_t capacity);

private:
    struct Header;
    void map(std::size_t capacity);
    void unmap() noexcept;
    void initialise(const std::string& log_id, std::size_t capacity, Mark mark);
    Header* header() const noexcept;

    std::string m_path;
    int m_fd = -1;
    void* m_base = nullptr;
    std::size_t m_bytes = 0;
    detail::JournalSlot* m_slots = nullptr;
    std::size_t m_capacity = 0;
    std::string m_log_id;
};

}  // namespace kakunin::audit_detail
