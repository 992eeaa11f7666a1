// AuditSink helpers, the locking base class, the memory sink and the JSON Lines file sink.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

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

FileAuditSink::FileAuditSink(std::string path, FileAuditSinkOptions options)
    : m_path(std::move(path)), m_options(options) {
    const std::filesystem::path parent = std::filesystem::path(m_path).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    const bool existed = ::access(m_path.c_str(), F_OK) == 0;
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
        repair_tail();
    } catch (...) {
        ::close(m_fd);
        throw;
    }
}

FileAuditSink::~FileAuditSink() {
    if (m_fd >= 0) {
        if (m_unsynced) ::fdatasync(m_fd);
        ::close(m_fd);
    }
}

void FileAuditSink::repair_tail() {
    if (m_size == 0) return;
    // Find the start of the last line: scan backwards from the end for the previous newline.
    constexpr std::size_t block = 64 * 1024;
    std::string buf;
    std::uint64_t end = m_size;
    char last = 0;
    read_at(m_fd, m_size - 1, &last, 1, m_path);
    const bool has_newline = last == '\n';
    std::uint64_t scan_end = has_newline ? m_size - 1 : m_size;  // exclusive
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
    std::string reason;
    if (!has_newline) {
        reason = "no trailing newline";
    } else {
        std::string line(static_cast<std::size_t>(end - 1 - line_start), '\0');
        read_at(m_fd, line_start, line.data(), line.size(), m_path);
        if (!nlohmann::json::accept(line)) reason = "last line is not valid JSON";
    }
    if (reason.empty()) return;
    if (::ftruncate(m_fd, static_cast<off_t>(line_start)) != 0) throw_io("truncate", m_path, errno);
    if (::fsync(m_fd) != 0) throw_io("fsync", m_path, errno);
    m_recovery.tail_cut = true;
    m_recovery.cut_offset = line_start;
    m_recovery.cut_bytes = m_size - line_start;
    m_recovery.reason = reason;
    m_size = line_start;
}

void FileAuditSink::do_append(const std::string_view* lines, std::size_t count) {
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
    std::size_t done = 0;
    while (done < m_buffer.size()) {
        const ssize_t n = ::write(m_fd, m_buffer.data() + done, m_buffer.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            // Never leave half a batch behind: cut back to the last complete line.
            if (done > 0 && ::ftruncate(m_fd, static_cast<off_t>(m_size)) != 0) {
                throw_io("write failed and truncating back failed", m_path, errno);
            }
            throw_io("write", m_path, err);
        }
        done += static_cast<std::size_t>(n);
    }
    m_size += m_buffer.size();
    m_unsynced = true;
    if (m_options.sync_every_append) do_flush();
}

void FileAuditSink::do_flush() {
    if (!m_unsynced) return;
    if (::fdatasync(m_fd) != 0) throw_io("fdatasync", m_path, errno);
    m_unsynced = false;
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
