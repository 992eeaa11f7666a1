// The audit trail's write-ahead journal: a preallocated file of slots mapped MAP_SHARED.
#include "journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../io/durable_file.hpp"
#include "kakunin/error.hpp"

namespace kakunin::audit_detail {
namespace {

constexpr char kMagic[16] = "KAKUNIN JOURNAL";
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kHeaderBytes = 4096;
constexpr std::size_t kMaxLogId = 1024;
constexpr std::uint64_t kMarkSeed = 0x4B414B554E494E4Dull;

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

struct Journal::Header {
    char magic[16];
    std::uint32_t version;
    std::uint32_t slot_bytes;   ///< sizeof(detail::JournalSlot) of the build that wrote it
    std::uint32_t entry_bytes;  ///< sizeof(detail::AuditEntry)
    std::uint32_t text_offset;  ///< offsetof(detail::AuditEntry, text)
    std::uint64_t capacity;
    std::uint32_t log_id_length;
    char log_id[kMaxLogId];
    /// The watermark, in two banks written in turn: a bank torn by a crash fails its checksum
    /// and the other, older one holds.
    struct Bank {
        std::uint64_t jseq, records, checksum;
    } banks[2];
    std::uint64_t mark_writes;
};
Journal::Header* Journal::header() const noexcept { return static_cast<Header*>(m_base); }

Journal::Journal(std::string path, const std::string& log_id, std::size_t capacity)
    : m_path(std::move(path)), m_log_id(log_id) {
    static_assert(sizeof(Header) <= kHeaderBytes, "the header fits its page");
    const std::string where = "audit journal " + m_path + ": ";
    if (log_id.size() > kMaxLogId)
        throw Error(ErrorCategory::invalid_input, where + "log id longer than 1024 bytes");
    struct stat before {};
    const bool existed = ::stat(m_path.c_str(), &before) == 0;
    m_fd = ::open(m_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (m_fd < 0) throw Error(ErrorCategory::io, where + "cannot open: " + errno_text(errno));
    try {
        if (::flock(m_fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            throw Error(
                ErrorCategory::io,
                where + (err == EWOULDBLOCK ? "in use by another audit trail (in this or another "
                                              "process): one trail per log"
                                            : "cannot lock: " + errno_text(err)));
        }
        struct stat st {};
        if (::fstat(m_fd, &st) != 0)
            throw Error(ErrorCategory::io, where + "cannot stat: " + errno_text(errno));
        if (!S_ISREG(st.st_mode))
            throw Error(ErrorCategory::invalid_state, where + "not a regular file");
        Header h{};
        const std::size_t size = static_cast<std::size_t>(st.st_size);
        bool fresh = size == 0;
        if (!fresh) {
            if (size < sizeof(Header) ||
                ::pread(m_fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h))
                throw Error(ErrorCategory::invalid_state,
                            where + "not a Kakunin audit journal (" + std::to_string(size) +
                                " bytes, shorter than its header); nothing in it was changed");
            // A header still all zero is what a crash while creating the journal leaves.
            static const Header zero{};
            fresh = std::memcmp(&h, &zero, sizeof h) == 0;
        }
        if (fresh) {
            initialise(log_id, capacity, {});
            if (!existed) io::sync_parent_directory(m_path);
            return;
        }
        if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
            throw Error(
                ErrorCategory::invalid_state,
                where + "not a Kakunin audit journal (no magic); nothing in it was changed");
        if (h.version != kVersion || h.slot_bytes != sizeof(detail::JournalSlot) ||
            h.entry_bytes != sizeof(detail::AuditEntry) ||
            h.text_offset != offsetof(detail::AuditEntry, text))
            throw Error(ErrorCategory::invalid_state,
                        where + "written by a build with another entry layout (version " +
                            std::to_string(h.version) + ", slots of " +
                            std::to_string(h.slot_bytes) + " bytes; this build: version " +
                            std::to_string(kVersion) + ", " +
                            std::to_string(sizeof(detail::JournalSlot)) +
                            " bytes): open it with the build that wrote it, or move it aside to "
                            "start without the entries it may hold");
        const std::string theirs(h.log_id, std::min<std::size_t>(h.log_id_length, kMaxLogId));
        if (theirs != log_id)
            throw Error(ErrorCategory::invalid_state,
                        where + "the journal of log \"" + theirs + "\", not of \"" + log_id + "\"");
        const std::uint64_t want = kHeaderBytes + h.capacity * sizeof(detail::JournalSlot);
        if (h.capacity == 0 || st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) != want)
            throw Error(ErrorCategory::invalid_state,
                        where + std::to_string(st.st_size) + " bytes where its capacity of " +
                            std::to_string(h.capacity) + " slots needs " + std::to_string(want) +
                            ": cut or grown by something else; nothing in it was changed");
        map(static_cast<std::size_t>(h.capacity));
    } catch (...) {
        unmap();
        ::close(m_fd);
        m_fd = -1;
        throw;
    }
}

Journal::~Journal() {
    unmap();
    if (m_fd >= 0) ::close(m_fd);  // releases the lock
}

void Journal::map(std::size_t capacity) {
    const std::size_t bytes = kHeaderBytes + capacity * sizeof(detail::JournalSlot);
    void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, m_fd, 0);
    if (base == MAP_FAILED)
        throw Error(ErrorCategory::io,
                    "audit journal " + m_path + ": cannot map: " + errno_text(errno));
    m_base = base;
    m_bytes = bytes;
    m_capacity = capacity;
    m_slots = reinterpret_cast<detail::JournalSlot*>(static_cast<char*>(base) + kHeaderBytes);
    // Each page written once now (its own bytes again), so that the first entries of the run
    // do not take the page faults.
    const long page = ::sysconf(_SC_PAGESIZE);
    const std::size_t step = page > 0 ? static_cast<std::size_t>(page) : 4096;
    volatile char* p = static_cast<volatile char*>(base);
    for (std::size_t i = 0; i < bytes; i += step) p[i] = p[i];
}

void Journal::unmap() noexcept {
    if (m_base != nullptr) ::munmap(m_base, m_bytes);
    m_base = nullptr;
    m_slots = nullptr;
    m_bytes = 0;
}

void Journal::initialise(const std::string& log_id, std::size_t capacity, Mark mark) {
    const std::string where = "audit journal " + m_path + ": ";
    unmap();
    const std::uint64_t bytes = kHeaderBytes + capacity * sizeof(detail::JournalSlot);
    // Zero first (the header too: a crash from here on leaves a journal that opens as new),
    // then the size, reserved on the disk so a full disk never faults a write into the mapping.
    if (io::truncate_to(m_fd, 0) != 0 || io::truncate_to(m_fd, bytes) != 0)
        throw Error(ErrorCategory::io, where + "cannot size: " + errno_text(errno));
    const int err = ::posix_fallocate(m_fd, 0, static_cast<off_t>(bytes));
    if (err != 0 && err != EOPNOTSUPP && err != EINVAL)
        throw Error(ErrorCategory::io, where + "cannot reserve " + std::to_string(bytes) +
                                           " bytes: " + errno_text(err));
    map(capacity);
    Header& h = *header();
    h.version = kVersion;
    h.slot_bytes = sizeof(detail::JournalSlot);
    h.entry_bytes = sizeof(detail::AuditEntry);
    h.text_offset = offsetof(detail::AuditEntry, text);
    h.capacity = capacity;
    h.log_id_length = static_cast<std::uint32_t>(log_id.size());
    std::memcpy(h.log_id, log_id.data(), log_id.size());
    h.mark_writes = 0;
    set_mark(mark);
    set_mark(mark);  // both banks
    if (sync() != 0) throw Error(ErrorCategory::io, where + "cannot sync: " + errno_text(errno));
    std::memcpy(h.magic, kMagic, sizeof kMagic);  // last: a journal from here on
    if (sync() != 0) throw Error(ErrorCategory::io, where + "cannot sync: " + errno_text(errno));
}

void Journal::reshape(std::size_t capacity) {
    if (capacity == m_capacity) return;
    const Mark keep = mark();
    initialise(m_log_id, capacity, keep);
}

Journal::Mark Journal::mark() const noexcept {
    const Header& h = *header();
    Mark best;
    bool found = false;
    for (const Header::Bank& b : h.banks) {
        const std::uint64_t pair[2] = {b.jseq, b.records};
        if (b.checksum != detail::journal_checksum(pair, sizeof pair, kMarkSeed)) continue;
        if (!found || b.jseq > best.jseq || (b.jseq == best.jseq && b.records > best.records))
            best = Mark{b.jseq, b.records};
        found = true;
    }
    return best;
}

void Journal::set_mark(Mark m) noexcept {
    Header& h = *header();
    Header::Bank& b = h.banks[h.mark_writes++ & 1];
    const std::uint64_t pair[2] = {m.jseq, m.records};
    b.checksum = 0;  // torn from here until the new checksum is in
    b.jseq = m.jseq;
    b.records = m.records;
    b.checksum = detail::journal_checksum(pair, sizeof pair, kMarkSeed);
}

int Journal::sync() noexcept {
    if (m_base == nullptr) return 0;
    return ::msync(m_base, m_bytes, MS_SYNC) == 0 ? 0 : errno;
}

Journal::Found Journal::scan(std::uint64_t after_jseq) const {
    Found f;
    struct Ref {
        std::uint64_t jseq;
        std::size_t slot;
    };
    std::vector<Ref> refs;
    std::vector<std::uint64_t> damaged;
    for (std::size_t i = 0; i < m_capacity; ++i) {
        const std::uint64_t j = m_slots[i].jseq.load(std::memory_order_acquire);
        if (j <= after_jseq) continue;
        if (m_slots[i].intact(j))
            refs.push_back({j, i});
        else
            damaged.push_back(j);
    }
    std::sort(refs.begin(), refs.end(), [](const Ref& a, const Ref& b) { return a.jseq < b.jseq; });
    if (!refs.empty()) f.last_jseq = refs.back().jseq;
    f.damaged = damaged.size();
    // Whole JSON events only: part 0 of N followed by parts 1..N-1 with consecutive numbers.
    // The newest event without all its parts is what a process that died inside push_event
    // leaves (the call never returned): dropped, not counted. Anywhere else it is damage.
    for (std::size_t i = 0; i < refs.size();) {
        const detail::AuditEntry& e = m_slots[refs[i].slot].entry;
        std::size_t n = 1;
        if (e.kind == detail::AuditEntry::Kind::json) {
            const bool at_end = e.part == 0 && i + e.parts > refs.size();
            bool whole = e.part == 0 && e.parts >= 1 && !at_end;
            for (std::size_t k = 1; whole && k < e.parts; ++k) {
                const detail::AuditEntry& p = m_slots[refs[i + k].slot].entry;
                whole = refs[i + k].jseq == refs[i].jseq + k &&
                        p.kind == detail::AuditEntry::Kind::json && p.part == k &&
                        p.parts == e.parts;
            }
            if (!whole) {
                if (!at_end) ++f.damaged;
                ++i;
                continue;
            }
            n = e.parts;
        }
        for (std::size_t k = 0; k < n; ++k) {
            f.entries.push_back(m_slots[refs[i + k].slot].entry);
            f.jseqs.push_back(refs[i + k].jseq);
        }
        i += n;
    }
    // Numbers between the watermark and the newest intact slot that no slot holds: slots a
    // power loss did not keep (a process crash loses none).
    const std::uint64_t span = f.last_jseq > after_jseq ? f.last_jseq - after_jseq : 0;
    std::uint64_t present = refs.size();
    for (std::uint64_t j : damaged)
        if (j <= f.last_jseq) ++present;
    f.missing = span > present ? span - present : 0;
    return f;
}

}  // namespace kakunin::audit_detail
