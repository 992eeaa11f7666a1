// AuditSink helpers, the locking base class, the memory sink and the JSON Lines file sink.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "audit/json.hpp"
#include "io/durable_file.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/error.hpp"

namespace kakunin {

void AuditSink::append(const std::vector<std::string>& lines) {
    std::vector<std::string_view> views(lines.begin(), lines.end());
    append(views.data(), views.size());
}

void LockingAuditSink::append(const std::string_view* lines, std::size_t count) {
    std::lock_guard<std::mutex> lock(m_mutex);
    do_append(lines, count);
}

void LockingAuditSink::flush() {
    std::lock_guard<std::mutex> lock(m_mutex);
    do_flush();
}

void LockingAuditSink::for_each_line(const std::function<void(std::string_view)>& fn) {
    std::lock_guard<std::mutex> lock(m_mutex);
    do_for_each_line(fn);
}

// ---- MemoryAuditSink -------------------------------------------------------------------------

std::vector<std::string> MemoryAuditSink::lines() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_lines;
}

std::size_t MemoryAuditSink::size() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_lines.size();
}

std::uint64_t MemoryAuditSink::flushes() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_flushes;
}

void MemoryAuditSink::do_append(const std::string_view* lines, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) m_lines.emplace_back(lines[i]);
}

void MemoryAuditSink::do_for_each_line(const std::function<void(std::string_view)>& fn) {
    for (const auto& l : m_lines) fn(l);
}

// ---- FileAuditSink ---------------------------------------------------------------------------

namespace {

[[noreturn]] void throw_io(const std::string& what, const std::string& path, int err) {
    throw Error(ErrorCategory::io, "audit file " + path + ": " + what + ": " + std::strerror(err));
}

void sync_directory_of(const std::string& path) { io::sync_parent_directory(path); }

// Reads exactly `size` bytes at `offset`.
void read_at(int fd, std::uint64_t offset, char* out, std::size_t size, const std::string& path) {
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_io("read", path, errno);
        }
        if (n == 0) throw Error(ErrorCategory::io, "audit file " + path + ": unexpected end");
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace

namespace {

constexpr std::string_view k_record_start = "{\"agent\":\"";  // every record line begins so

bool read_whole(const std::string& path, std::string& out) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return false;
        throw_io("open", path, errno);
    }
    out.clear();
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            throw_io("read", path, err);
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return true;
}

}  // namespace

FileAuditSink::FileAuditSink(std::string path, FileAuditSinkOptions options)
    : m_path(std::move(path)), m_marker_path(m_path + ".started"), m_options(std::move(options)) {
    const std::filesystem::path parent = std::filesystem::path(m_path).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    const bool existed = ::access(m_path.c_str(), F_OK) == 0;
    std::string marker;
    m_has_marker = read_whole(m_marker_path, marker);
    if (!existed && m_has_marker) {
        // Deleted (or moved) while a log was expected here: starting a fresh log at seq 0 would
        // hide every record it held.
        throw Error(ErrorCategory::invalid_state,
                    "audit file " + m_path + " is missing, but " + m_marker_path +
                        " says a log was started there: it was deleted or moved; restore it (or, "
                        "to begin a new log on purpose, remove " +
                        m_marker_path + ")");
    }
    m_fd = ::open(m_path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (m_fd < 0) throw_io("open", m_path, errno);
    try {
        // One writer per log: a second one would interleave lines and break seq.
        if (::flock(m_fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK) {
                throw Error(ErrorCategory::io,
                            "audit file " + m_path + ": already open for writing elsewhere");
            }
            throw_io("lock", m_path, errno);
        }
        if (!existed) sync_directory_of(m_path);
        struct stat st {};
        if (::fstat(m_fd, &st) != 0) throw_io("stat", m_path, errno);
        m_size = static_cast<std::uint64_t>(st.st_size);
        m_dev = st.st_dev;
        m_ino = st.st_ino;
        const std::optional<std::string> first = check_content();
        if (m_has_marker) {
            if (!first || *first + "\n" != marker) {
                throw Error(ErrorCategory::invalid_state,
                            "audit file " + m_path +
                                (first ? " does not begin with" : " is empty of") +
                                " the first record " + m_marker_path +
                                " holds: it was truncated or replaced by another log; restore "
                                "it (or, to begin a new log on purpose, remove " +
                                m_marker_path + ")");
            }
        }
        repair_tail();
        m_durable = m_size;
        if (first && !m_has_marker) write_marker(*first);
    } catch (...) {
        ::close(m_fd);
        throw;
    }
}

FileAuditSink::~FileAuditSink() {
    if (m_fd >= 0) {
        if (m_unsynced) (void)io::sync_data(m_fd);
        ::close(m_fd);
    }
}

std::optional<std::string> FileAuditSink::read_first_line() const {
    constexpr std::size_t block = 64 * 1024;
    std::string line;
    std::uint64_t offset = 0;
    while (offset < m_size) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(block, m_size - offset));
        const std::size_t old = line.size();
        line.resize(old + n);
        read_at(m_fd, offset, line.data() + old, n, m_path);
        const std::size_t pos = line.find('\n', old);
        if (pos != std::string::npos) {
            line.resize(pos);
            return line;
        }
        offset += n;
    }
    return std::nullopt;
}

std::optional<std::string> FileAuditSink::check_content() const {
    if (m_size == 0) return std::nullopt;
    auto refuse = [&](const std::string& why) {
        throw Error(ErrorCategory::invalid_input,
                    "audit file " + m_path + ": not an audit log" +
                        (m_options.log_id.empty() ? "" : " of \"" + m_options.log_id + "\"") +
                        ": " + why + "; nothing in the file was changed");
    };
    std::optional<std::string> first = read_first_line();
    if (!first) {
        // One unterminated line: a log whose first batch was torn, if it begins like a record.
        std::string head(
            static_cast<std::size_t>(std::min<std::uint64_t>(m_size, k_record_start.size())), '\0');
        read_at(m_fd, 0, head.data(), head.size(), m_path);
        if (k_record_start.substr(0, head.size()) != head)
            refuse("its only line has no newline and does not begin like a record");
        return std::nullopt;
    }
    audit_detail::ParsedLine parsed;
    std::string error;
    if (!audit_detail::parse_line(*first, parsed, error)) refuse("line 1: " + error);
    if (parsed.kind != audit_detail::LineKind::record)
        refuse("line 1 is a checkpoint, not the log's first record");
    if (!m_options.log_id.empty() && parsed.record.log_id != m_options.log_id)
        refuse("line 1 is a record of log \"" + parsed.record.log_id + "\"");
    return first;
}

void FileAuditSink::write_marker(const std::string& first_line) {
    io::write_durable(m_marker_path, first_line + "\n", io::Overwrite::replace, 0640);
    m_has_marker = true;
}

void FileAuditSink::repair_tail() {
    if (m_size == 0) return;
    char last = 0;
    read_at(m_fd, m_size - 1, &last, 1, m_path);
    // A complete last line is left alone (the writer checks every line when it opens the log);
    // only what a torn write leaves, a last line without its newline, is cut. Each batch is
    // written in one go and synced before it counts as durable, so such a line never held a
    // record that was reported durable.
    if (last == '\n') return;
    constexpr std::size_t block = 64 * 1024;
    std::string buf;
    std::uint64_t scan_end = m_size;  // exclusive
    std::uint64_t line_start = 0;
    bool found = false;
    while (scan_end > 0 && !found) {
        const std::uint64_t begin = scan_end > block ? scan_end - block : 0;
        buf.resize(static_cast<std::size_t>(scan_end - begin));
        read_at(m_fd, begin, buf.data(), buf.size(), m_path);
        const std::size_t pos = buf.rfind('\n');
        if (pos != std::string::npos) {
            line_start = begin + pos + 1;
            found = true;
        }
        scan_end = begin;
    }
    if (const int err = io::truncate_to(m_fd, line_start); err != 0)
        throw_io("truncate", m_path, err);
    if (const int err = io::sync_data(m_fd, true); err != 0) throw_io("fsync", m_path, err);
    m_recovery.tail_cut = true;
    m_recovery.cut_offset = line_start;
    m_recovery.cut_bytes = m_size - line_start;
    m_recovery.reason = "no trailing newline";
    m_size = line_start;
}

void FileAuditSink::check_still_named() {
    struct stat by_path {};
    const bool same =
        ::stat(m_path.c_str(), &by_path) == 0 && by_path.st_dev == m_dev && by_path.st_ino == m_ino;
    if (same) return;
    m_detached = true;
    throw_detached();
}

void FileAuditSink::throw_detached() const {
    throw Error(ErrorCategory::io,
                "audit file " + m_path +
                    ": the path no longer names the open log (deleted, moved or replaced): "
                    "lines written since are not in the log; restore the file and restart");
}

void FileAuditSink::check_writable() const {
    if (m_detached) throw_detached();
    if (!m_broken.empty()) throw Error(ErrorCategory::io, "audit file " + m_path + ": " + m_broken);
}

// Everything after the last durable byte goes: the bytes of the call that failed (perhaps half a
// line), and lines stored earlier but not yet synced, which m_pending keeps and the next call
// writes again whole. A retry therefore never lands on top of a partial or unsynced batch.
void FileAuditSink::cut_back(const char* what, int err) {
    // A file that already ends at its last durable byte needs no cut: on a filesystem turned
    // read-only the write stored nothing, and ftruncate fails too (EROFS).
    struct stat st {};
    const bool already = ::fstat(m_fd, &st) == 0 && st.st_size >= 0 &&
                         static_cast<std::uint64_t>(st.st_size) == m_durable;
    if (const int cut_err = already ? 0 : io::truncate_to(m_fd, m_durable); cut_err != 0) {
        m_broken = std::string(what) + " failed (" + std::strerror(err) +
                   ") and cutting the file back to its last durable byte (offset " +
                   std::to_string(m_durable) + ") failed too (" + std::strerror(cut_err) +
                   "): it may end in a partial or duplicate record, so nothing more is written "
                   "to it; reopening repairs a torn last line and refuses anything else";
        throw Error(ErrorCategory::io, "audit file " + m_path + ": " + m_broken);
    }
    m_size = m_durable;
    m_unsynced = false;
    m_rewrite = !m_pending.empty();
    throw Error(ErrorCategory::io, "audit file " + m_path + ": " + what + ": " +
                                       std::strerror(err) +
                                       "; cut back to the last durable byte (offset " +
                                       std::to_string(m_durable) + ")");
}

void FileAuditSink::write_or_cut(std::string_view bytes) {
    std::size_t written = 0;
    if (const int err = io::write_all(m_fd, bytes.data(), bytes.size(), written); err != 0)
        cut_back("write", err);
    m_size += bytes.size();
    m_unsynced = true;
}

void FileAuditSink::rewrite_pending() {
    write_or_cut(m_pending);
    m_rewrite = false;
}

// `keep_pending`: how much of m_pending stays stored if the sync fails (what earlier appends
// stored; the batch of a failing append is not stored, its caller retries it).
void FileAuditSink::sync_or_cut(std::size_t keep_pending) {
    if (const int err = io::sync_data(m_fd); err != 0) {
        m_pending.resize(keep_pending);
        cut_back("fdatasync", err);
    }
    m_durable = m_size;
    m_pending.clear();
    m_unsynced = false;
    // Synced into a file nobody can find is not durable: the path must still name it.
    check_still_named();
}

void FileAuditSink::do_append(const std::string_view* lines, std::size_t count) {
    check_writable();
    if (count == 0) return;
    m_buffer.clear();
    for (std::size_t i = 0; i < count; ++i) {
        if (lines[i].find('\n') != std::string_view::npos) {
            throw Error(ErrorCategory::invalid_input,
                        "audit file " + m_path + ": line contains a newline");
        }
        m_buffer.append(lines[i]);
        m_buffer.push_back('\n');
    }
    if (m_rewrite) rewrite_pending();
    const std::size_t keep = m_pending.size();
    write_or_cut(m_buffer);  // on failure nothing of this batch is stored
    if (m_pending.empty())
        m_pending.swap(m_buffer);  // keeps both capacities
    else
        m_pending += m_buffer;
    if (m_options.sync_every_append) {
        sync_or_cut(keep);
        write_marker_if_missing();
    }
}

void FileAuditSink::do_flush() {
    check_writable();
    if (m_rewrite) rewrite_pending();
    if (m_unsynced) sync_or_cut(m_pending.size());
    write_marker_if_missing();
}

void FileAuditSink::write_marker_if_missing() {
    if (!m_has_marker && m_size > 0) {
        if (const auto first = read_first_line()) write_marker(*first);
    }
}

void FileAuditSink::do_for_each_line(const std::function<void(std::string_view)>& fn) {
    constexpr std::size_t block = 1 << 20;
    std::string buf;
    std::string carry;
    std::uint64_t offset = 0;
    while (offset < m_size) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(block, m_size - offset));
        buf.resize(n);
        read_at(m_fd, offset, buf.data(), n, m_path);
        offset += n;
        std::size_t start = 0;
        for (std::size_t pos = buf.find('\n'); pos != std::string::npos;
             pos = buf.find('\n', start)) {
            if (carry.empty()) {
                fn(std::string_view(buf.data() + start, pos - start));
            } else {
                carry.append(buf, start, pos - start);
                fn(carry);
                carry.clear();
            }
            start = pos + 1;
        }
        carry.append(buf, start, std::string::npos);
    }
    if (!carry.empty()) fn(carry);
}

}  // namespace kakunin
