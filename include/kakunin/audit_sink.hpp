// kakunin/audit_sink.hpp — where audit lines go. A sink stores JSON Lines (one record or
// checkpoint per line, in seq order) and makes them durable on request. Integrators write their
// own by deriving from LockingAuditSink, which does the locking:
//
//   class MySink final : public kakunin::LockingAuditSink {
//   protected:
//       void do_append(const std::string_view* lines, std::size_t n) override { ... }
//       void do_flush() override { ... }
//   public:
//       std::string name() const override { return "my-sink"; }
//   };
//   kakunin::FileAuditSink file("state/audit/agent-7.jsonl");   // fsync per batch by default
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace kakunin {

/// What a sink found and repaired when it opened (a crash can leave a torn last line).
struct AuditSinkRecovery {
    bool tail_cut = false;
    std::uint64_t cut_offset = 0;  ///< byte offset where the removed bytes began
    std::uint64_t cut_bytes = 0;   ///< how many bytes were removed
    std::string reason;            ///< "no trailing newline" or "last line is not valid JSON"
};

/// Threading: the log writer calls a sink from one thread, but a sink may be shared with readers
/// (export, tests), so implementations must tolerate concurrent calls; LockingAuditSink
/// serialises them. Calls may block (disk, network). Failures throw kakunin::Error (io,
/// database): the caller then treats the lines as not durable and retries or fails closed.
class AuditSink {
public:
    virtual ~AuditSink() = default;

    /// Appends `count` lines (each a JSON object, without newline) in order. Either all lines are
    /// stored or the call throws and none is (as far as the backend can guarantee).
    virtual void append(const std::string_view* lines, std::size_t count) = 0;
    /// Makes every line appended so far durable.
    virtual void flush() = 0;
    /// A short name for messages ("file:/path", "memory").
    virtual std::string name() const = 0;

    /// Calls `fn` with each stored line, in order. A restarted writer continues from these.
    /// The default stores nothing readable (a write-only sink).
    virtual void for_each_line(const std::function<void(std::string_view)>& fn) { (void)fn; }
    /// What the sink repaired when it opened. The default: nothing.
    virtual AuditSinkRecovery recovery() const { return {}; }

    void append(const std::vector<std::string>& lines);
    void append(std::string_view line) { append(&line, 1); }
};

/// Base class that serialises all calls with one mutex: its public functions are final, take the
/// lock and call the protected hooks, which therefore never run concurrently.
class LockingAuditSink : public AuditSink {
public:
    using AuditSink::append;
    void append(const std::string_view* lines, std::size_t count) final;
    void flush() final;
    void for_each_line(const std::function<void(std::string_view)>& fn) final;

protected:
    virtual void do_append(const std::string_view* lines, std::size_t count) = 0;
    virtual void do_flush() = 0;
    virtual void do_for_each_line(const std::function<void(std::string_view)>& fn) { (void)fn; }

    mutable std::mutex m_mutex;
};

/// Keeps lines in memory: for tests, and as the model of a sink.
class MemoryAuditSink final : public LockingAuditSink {
public:
    std::string name() const override { return "memory"; }
    /// A copy of the stored lines.
    std::vector<std::string> lines() const;
    std::size_t size() const;
    /// How many times flush() was called.
    std::uint64_t flushes() const;

protected:
    void do_append(const std::string_view* lines, std::size_t count) override;
    void do_flush() override { ++m_flushes; }
    void do_for_each_line(const std::function<void(std::string_view)>& fn) override;

private:
    std::vector<std::string> m_lines;
    std::uint64_t m_flushes = 0;
};

struct FileAuditSinkOptions {
    /// fdatasync after every append (one batch): an appended batch is durable when append returns.
    /// When false, lines become durable at flush().
    bool sync_every_append = true;
};

/// JSON Lines in one file (DESIGN §5). Opening creates the file (and syncs its directory) or
/// checks its end: a last line without a trailing newline, or that is not valid JSON, is what a
/// crash in the middle of a write leaves; it is cut off and reported through recovery() so the
/// writer can record a `log.truncated_tail` record. A failed append is truncated back, so the file
/// never keeps half a batch. The file is locked (flock, exclusive) while open: a second
/// FileAuditSink on the same file, in this or another process, throws kakunin::Error (io).
class FileAuditSink final : public LockingAuditSink {
public:
    explicit FileAuditSink(std::string path, FileAuditSinkOptions options = {});
    ~FileAuditSink() override;
    FileAuditSink(const FileAuditSink&) = delete;
    FileAuditSink& operator=(const FileAuditSink&) = delete;

    std::string name() const override { return "file:" + m_path; }
    AuditSinkRecovery recovery() const override { return m_recovery; }
    const std::string& path() const noexcept { return m_path; }

protected:
    void do_append(const std::string_view* lines, std::size_t count) override;
    void do_flush() override;
    void do_for_each_line(const std::function<void(std::string_view)>& fn) override;

private:
    void repair_tail();

    std::string m_path;
    FileAuditSinkOptions m_options;
    int m_fd = -1;
    std::uint64_t m_size = 0;  ///< bytes of complete lines in the file
    bool m_unsynced = false;
    std::string m_buffer;
    AuditSinkRecovery m_recovery;
};

}  // namespace kakunin
