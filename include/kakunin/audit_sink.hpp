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

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kakunin {

/// What a sink found and repaired when it opened (a crash can leave a torn last line).
struct AuditSinkRecovery {
    bool tail_cut = false;
    std::uint64_t cut_offset = 0;  ///< byte offset where the removed bytes began
    std::uint64_t cut_bytes = 0;   ///< how many bytes were removed
    std::string reason;            ///< "no trailing newline" (a torn write)
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
    /// Calls `fn` with each stored line from the `first`-th on (0-based): what a writer that
    /// knows the first `first` lines reads to continue from lines another writer appended
    /// (AuditLogWriter::catch_up). The default reads every line and skips the first ones.
    virtual void for_each_line_from(std::uint64_t first,
                                    const std::function<void(std::string_view)>& fn);
    /// What the sink repaired when it opened. The default: nothing.
    virtual AuditSinkRecovery recovery() const { return {}; }
    /// Where an AuditTrail writing to this sink keeps its write-ahead journal unless told
    /// otherwise (AuditTrailOptions::journal_path). The default: nowhere (no journal).
    virtual std::string journal_path() const { return {}; }

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
    void for_each_line_from(std::uint64_t first,
                            const std::function<void(std::string_view)>& fn) final;

protected:
    virtual void do_append(const std::string_view* lines, std::size_t count) = 0;
    virtual void do_flush() = 0;
    virtual void do_for_each_line(const std::function<void(std::string_view)>& fn) { (void)fn; }
    /// The default reads every line through do_for_each_line and skips the first ones.
    virtual void do_for_each_line_from(std::uint64_t first,
                                       const std::function<void(std::string_view)>& fn);

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
    void do_for_each_line_from(std::uint64_t first,
                               const std::function<void(std::string_view)>& fn) override;

private:
    std::vector<std::string> m_lines;
    std::uint64_t m_flushes = 0;
};

struct FileAuditSinkOptions {
    /// fdatasync after every append (one batch): an appended batch is durable when append returns.
    /// When false, lines become durable at flush().
    bool sync_every_append = true;
    /// The log the file must hold. When set, a file whose first record belongs to another log
    /// is refused before anything in it is changed. Empty: any audit log.
    std::string log_id = {};
    /// How the file is locked against other writers (flock, exclusive):
    enum class Lock {
        /// for as long as the sink is open (one writer: a Guard's log). A second sink on the
        /// file, in this or another process, is refused at once.
        while_open,
        /// only while a hold() lasts (writers that take turns, each continuing from what the
        /// others appended: the CA log, shared by the command line and an in-process LocalCa).
        /// Opening takes it for its checks and releases it; a writer on such a sink is built,
        /// and appends, inside a hold, and calls AuditLogWriter::catch_up at the start of each.
        per_hold,
    };
    Lock lock = Lock::while_open;
    /// With Lock::per_hold: how long opening and hold() wait for another holder before they
    /// throw (io), naming the holder.
    std::chrono::milliseconds lock_wait{5000};
};

/// JSON Lines in one file (DESIGN §5).
///
/// Opening creates the file (and syncs its directory), or checks what it holds before changing
/// anything: its first line must be a record (of `options.log_id` when set), else it is refused
/// (kakunin::Error invalid_input, "not an audit log") and left as it was. A last line without
/// its trailing newline is what a crash in the middle of a write leaves; it is cut off and
/// reported through recovery() so the writer can record a `log.truncated_tail` record. A
/// complete last line is never cut (the writer checks every line).
///
/// A write error never duplicates or tears a record: the sink knows the offset of its last
/// durable byte, and when a write or an fdatasync fails it cuts the file back to that offset
/// (ftruncate) before throwing. A failed append() has then stored nothing, so the writer's retry
/// writes the batch whole, once; lines an earlier append() stored but no flush() made durable
/// are kept in memory and written again, whole, by the next append() or flush() (after a failed
/// fsync Linux may have dropped them from the page cache). If cutting back fails too, the sink
/// is broken: every later append() and flush() throws (io) with the reason, and nothing more is
/// written after what may be a partial or duplicate record; reopening repairs a torn last line
/// and refuses anything else.
///
/// Once the log has a first record, the sink keeps a copy of it beside the log, in
/// `PATH.started`: opening refuses (invalid_state) a missing, empty or different log where that
/// file says one was started, instead of silently beginning a new log at seq 0. Every flush also
/// checks that the path still names the open file (device and inode): a log deleted, moved or
/// replaced while open makes every later append and flush throw (io), so nothing written to
/// the orphaned file is reported durable.
///
/// The file is locked (flock, exclusive) while open (FileAuditSinkOptions::Lock::while_open): a
/// second FileAuditSink on the same file, in this or another process, throws kakunin::Error (io,
/// "already open for writing elsewhere") naming the holder. With Lock::per_hold the lock is
/// taken by hold() and released when the Hold ends; appends and flushes need one (else
/// invalid_state). hold() waits up to `lock_wait` for another holder, then throws (io) naming
/// it. Whoever takes the lock writes `PATH.holder` (pid, program, since when; not synced, removed
/// when the lock is released), which is what these messages quote. The kernel releases the lock
/// of a process that dies, so a holder file left by a dead process blocks nobody: the message
/// then says that the process it names is no longer running.
///
/// A hold continues from what other processes appended since this sink last held the file
/// (their lines are read with for_each_line_from, e.g. by AuditLogWriter::catch_up), repairs a
/// torn last line a crashed holder left (reported through recovery(), like at open), and refuses
/// (invalid_state) a file that shrank below what this sink had seen.
class FileAuditSink final : public LockingAuditSink {
public:
    explicit FileAuditSink(std::string path, FileAuditSinkOptions options = {});
    ~FileAuditSink() override;
    FileAuditSink(const FileAuditSink&) = delete;
    FileAuditSink& operator=(const FileAuditSink&) = delete;

    /// The file's lock for as long as it lives (Lock::per_hold). Movable; ending it syncs what
    /// is not yet durable (best effort: flush() is what reports errors) and releases the lock.
    class Hold {
    public:
        Hold(Hold&& other) noexcept : m_sink(other.m_sink) { other.m_sink = nullptr; }
        Hold& operator=(Hold&&) = delete;
        Hold(const Hold&) = delete;
        Hold& operator=(const Hold&) = delete;
        ~Hold();

    private:
        friend class FileAuditSink;
        explicit Hold(FileAuditSink* sink) : m_sink(sink) {}
        FileAuditSink* m_sink;
    };
    /// Takes the lock (Lock::per_hold only, else invalid_state; waiting up to `lock_wait`, then
    /// io naming the holder) and continues from the file as other writers left it. One Hold at
    /// a time per sink (a second one throws invalid_state). Thread-safe.
    [[nodiscard]] Hold hold();
    /// PATH.holder: who holds the lock, as its holder wrote it.
    std::string holder_path() const { return m_path + ".holder"; }

    std::string name() const override { return "file:" + m_path; }
    AuditSinkRecovery recovery() const override { return m_recovery; }
    /// PATH.journal, beside the log.
    std::string journal_path() const override { return m_path + ".journal"; }
    const std::string& path() const noexcept { return m_path; }

protected:
    void do_append(const std::string_view* lines, std::size_t count) override;
    void do_flush() override;
    void do_for_each_line(const std::function<void(std::string_view)>& fn) override;
    void do_for_each_line_from(std::uint64_t first,
                               const std::function<void(std::string_view)>& fn) override;

private:
    void lock_file(std::chrono::milliseconds wait);
    void unlock_file() noexcept;
    void open_checks(bool existed, const std::string& marker);
    void continue_from_file();
    void release_hold() noexcept;
    void check_held() const;
    std::optional<std::string> read_first_line() const;
    std::optional<std::string> check_content() const;
    void repair_tail();
    void write_marker(const std::string& first_line);
    void write_marker_if_missing();
    void check_still_named();
    [[noreturn]] void throw_detached() const;
    void check_writable() const;
    void write_or_cut(std::string_view bytes);
    void rewrite_pending();
    void sync_or_cut(std::size_t keep_pending);
    [[noreturn]] void cut_back(const char* what, int err);

    std::string m_path;
    std::string m_marker_path;  ///< PATH.started: the log's first record, once it has one
    FileAuditSinkOptions m_options;
    int m_fd = -1;
    std::uint64_t m_dev = 0, m_ino = 0;  ///< of the open file, to notice a deleted path
    bool m_has_marker = false;
    bool m_detached = false;
    std::uint64_t m_size = 0;     ///< bytes of complete lines in the file
    std::uint64_t m_durable = 0;  ///< offset of the last durable byte (m_size once synced)
    bool m_unsynced = false;
    /// The file was cut back to m_durable: m_pending must be written again before anything else.
    bool m_rewrite = false;
    std::string m_broken;   ///< why the sink refuses to write (cutting back failed); empty if not
    std::string m_pending;  ///< lines stored after m_durable, not yet durable
    std::string m_buffer;
    AuditSinkRecovery m_recovery;
    bool m_locked = false;  ///< this sink holds the flock
    bool m_held = false;    ///< a Hold is alive (Lock::per_hold)
    /// A known line count: the first m_mark_lines lines end exactly at byte m_mark_offset
    /// (<= m_size), so for_each_line_from need not scan the file from its start.
    std::uint64_t m_mark_lines = 0, m_mark_offset = 0;
};

}  // namespace kakunin
