// AuditSink helpers, the locking base class, the memory sink and the JSON Lines file sink.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <thread>

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

void AuditSink::for_each_line_from(std::uint64_t first,
                                   const std::function<void(std::string_view)>& fn) {
    std::uint64_t index = 0;
    for_each_line([&](std::string_view line) {
        if (index++ >= first) fn(line);
    });
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

void LockingAuditSink::for_each_line_from(std::uint64_t first,
                                          const std::function<void(std::string_view)>& fn) {
    std::lock_guard<std::mutex> lock(m_mutex);
    do_for_each_line_from(first, fn);
}

void LockingAuditSink::do_for_each_line_from(std::uint64_t first,
                                             const std::function<void(std::string_view)>& fn) {
    std::uint64_t index = 0;
    do_for_each_line([&](std::string_view line) {
        if (index++ >= first) fn(line);
    });
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

void MemoryAuditSink::do_for_each_line_from(std::uint64_t first,
                                            const std::function<void(std::string_view)>& fn) {
    for (std::size_t i = static_cast<std::size_t>(std::min<std::uint64_t>(first, m_lines.size()));
         i < m_lines.size(); ++i)
        fn(m_lines[i]);
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

// ---- who holds the lock: PATH.holder --------------------------------------------------------

std::string utc_text(std::int64_t ns) {
    const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::int64_t wall_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string seconds_text(std::int64_t ns) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ns) / 1e9);
    return buf;
}

/// Written by whoever takes the lock, right after taking it; only read to name the holder in a
/// message, so it is not synced (a crash loses a description, never a lock).
void write_holder(const std::string& path) noexcept {
    try {
        const nlohmann::json j = {{"pid", static_cast<long long>(::getpid())},
                                  {"program", program_invocation_short_name},
                                  {"since_ns", wall_ns()}};
        const std::string text =
            j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0) return;
        std::size_t written = 0;
        while (written < text.size()) {
            const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            written += static_cast<std::size_t>(n);
        }
        ::close(fd);
    } catch (...) {
        // Only a description: the lock is what counts.
    }
}

/// "pid 4242 (kakunin) holds it since 2026-...Z (3.1 s ago), as PATH.holder says", or why the
/// holder cannot be named.
std::string describe_holder(const std::string& path) {
    std::string text;
    bool found = false;
    try {
        found = read_whole(path, text);
    } catch (const Error&) {
    }
    if (!found || text.empty())
        return "the holder did not describe itself (" + path +
               " is missing or empty: a program that does not write it, or one that has only "
               "just taken the lock)";
    long long pid = 0;
    std::string program;
    std::int64_t since = 0;
    try {
        const nlohmann::json j = nlohmann::json::parse(text);
        pid = j.at("pid").get<long long>();
        program = j.at("program").get<std::string>();
        since = j.at("since_ns").get<std::int64_t>();
    } catch (const nlohmann::json::exception&) {
        return "the holder's description in " + path + " is unreadable";
    }
    std::string out = "pid " + std::to_string(pid) + " (" + program + ") holds it since " +
                      utc_text(since) + " (" + seconds_text(wall_ns() - since) + " ago), as " +
                      path + " says";
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
        out += "; but no process " + std::to_string(pid) +
               " is running, so that description is stale (the kernel released that process's "
               "lock when it ended) and the present holder did not describe itself";
    return out;
}

}  // namespace

FileAuditSink::Hold::~Hold() {
    if (m_sink != nullptr) m_sink->release_hold();
}

void FileAuditSink::lock_file(std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
        if (::flock(m_fd, LOCK_EX | LOCK_NB) == 0) break;
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) throw_io("lock", m_path, errno);
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            const std::string who = describe_holder(holder_path());
            // One writer per log: a second one would interleave lines and break seq.
            if (m_options.lock == FileAuditSinkOptions::Lock::while_open)
                throw Error(ErrorCategory::io, "audit file " + m_path +
                                                   ": already open for writing elsewhere: " + who);
            throw Error(
                ErrorCategory::io,
                "audit file " + m_path + ": locked by another writer for more than " +
                    seconds_text(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count()) +
                    ": " + who);
        }
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
        pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
    m_locked = true;
    write_holder(holder_path());
}

void FileAuditSink::unlock_file() noexcept {
    if (!m_locked) return;
    // Removed while still held: the next holder writes its own.
    (void)::unlink(holder_path().c_str());
    (void)::flock(m_fd, LOCK_UN);
    m_locked = false;
}

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
    const bool per_hold = m_options.lock == FileAuditSinkOptions::Lock::per_hold;
    try {
        lock_file(per_hold ? m_options.lock_wait : std::chrono::milliseconds(0));
        // Under the lock: another writer taking turns may have started the log meanwhile.
        if (per_hold) m_has_marker = read_whole(m_marker_path, marker);
        open_checks(existed, marker);
        if (per_hold) unlock_file();
    } catch (...) {
        unlock_file();
        ::close(m_fd);
        throw;
    }
}

void FileAuditSink::open_checks(bool existed, const std::string& marker) {
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
                        "audit file " + m_path + (first ? " does not begin with" : " is empty of") +
                            " the first record " + m_marker_path +
                            " holds: it was truncated or replaced by another log; restore "
                            "it (or, to begin a new log on purpose, remove " +
                            m_marker_path + ")");
        }
    }
    repair_tail();
    m_durable = m_size;
    if (first && !m_has_marker) write_marker(*first);
}

FileAuditSink::~FileAuditSink() {
    if (m_fd >= 0) {
        if (m_unsynced) (void)io::sync_data(m_fd);
        unlock_file();
        ::close(m_fd);
    }
}

FileAuditSink::Hold FileAuditSink::hold() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_options.lock != FileAuditSinkOptions::Lock::per_hold)
        throw Error(ErrorCategory::invalid_state,
                    "audit file " + m_path +
                        ": hold() needs FileAuditSinkOptions::Lock::per_hold (this sink holds "
                        "its lock while open)");
    if (m_held)
        throw Error(ErrorCategory::invalid_state,
                    "audit file " + m_path + ": this sink already holds the lock");
    lock_file(m_options.lock_wait);
    try {
        continue_from_file();
    } catch (...) {
        unlock_file();
        throw;
    }
    m_held = true;
    return Hold(this);
}

// What other writers did while this sink did not hold the file: they appended complete lines
// (or, if one crashed mid-write, a torn last line, which is cut as at open).
void FileAuditSink::continue_from_file() {
    check_still_named();
    struct stat st {};
    if (::fstat(m_fd, &st) != 0) throw_io("stat", m_path, errno);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size < m_size)
        throw Error(ErrorCategory::invalid_state,
                    "audit file " + m_path + " holds " + std::to_string(size) +
                        " bytes, fewer than the " + std::to_string(m_size) +
                        " this writer had seen: it was cut back or replaced while no writer held "
                        "it; restore it");
    if (size == m_size) return;
    if (m_rewrite || !m_pending.empty()) {
        m_broken =
            "lines this writer stored but could not make durable would now follow lines another "
            "writer appended, so nothing more is written to it; reopen the log";
        throw Error(ErrorCategory::io, "audit file " + m_path + ": " + m_broken);
    }
    const bool was_empty = m_size == 0;
    m_size = size;
    repair_tail();
    m_durable = m_size;
    if (was_empty) {
        (void)check_content();
        write_marker_if_missing();
    }
}

void FileAuditSink::release_hold() noexcept {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_unsynced && !m_rewrite && io::sync_data(m_fd) == 0) {
        m_durable = m_size;
        m_pending.clear();
        m_unsynced = false;
    }
    unlock_file();
    m_held = false;
}

void FileAuditSink::check_held() const {
    if (m_options.lock == FileAuditSinkOptions::Lock::per_hold && !m_held)
        throw Error(
            ErrorCategory::invalid_state,
            "audit file " + m_path + ": written without holding its lock (FileAuditSink::hold())");
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
    if (m_mark_offset > m_size) m_mark_lines = m_mark_offset = 0;
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
    if (m_mark_offset > m_size) m_mark_lines = m_mark_offset = 0;
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
    check_held();
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
    const bool at_mark = m_mark_offset == m_size;
    write_or_cut(m_buffer);  // on failure nothing of this batch is stored
    if (at_mark) {
        m_mark_lines += count;
        m_mark_offset = m_size;
    }
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
    // Nothing to write needs no lock (a LocalCa closing its log between turns).
    if (!m_unsynced && !m_rewrite && (m_has_marker || m_size == 0)) return;
    check_held();
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
    do_for_each_line_from(0, fn);
}

void FileAuditSink::do_for_each_line_from(std::uint64_t first,
                                          const std::function<void(std::string_view)>& fn) {
    constexpr std::size_t block = 1 << 20;
    std::string buf;
    std::string carry;
    std::uint64_t offset = 0;
    std::uint64_t index = 0;  // of the next line to end
    if (m_mark_offset <= m_size && m_mark_lines <= first) {
        offset = m_mark_offset;
        index = m_mark_lines;
    }
    auto line = [&](std::string_view l) {
        if (index++ >= first) fn(l);
    };
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
                line(std::string_view(buf.data() + start, pos - start));
            } else {
                carry.append(buf, start, pos - start);
                line(carry);
                carry.clear();
            }
            start = pos + 1;
        }
        carry.append(buf, start, std::string::npos);
    }
    if (!carry.empty()) {
        if (index >= first) fn(carry);
    } else {
        m_mark_lines = index;
        m_mark_offset = m_size;
    }
}

}  // namespace kakunin
