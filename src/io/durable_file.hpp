// Private: the one way Kakunin makes a file durable. Write to a temporary file beside it, fsync
// the file, rename it over the target (or link it, when the target must not exist yet), fsync
// the directory. A reader sees the old file or the new one, never half a file, and once the call
// returns the new one survives a crash. Used by the CA's state directory, the baseline store, the
// software KMS's key files, the command line's output files, the evidence package and the file
// audit sink's PATH.started. The same file holds the raw calls an append-only file is written
// with (write_all, sync_data, truncate_to), so that tests can make them fail (io::testing).
//
//   kakunin::io::write_durable(state + "/crl.pem", crl.pem());
//   auto out = kakunin::io::DurableFile::prepare(path);   // refuses an unwritable path now
//   ... irreversible work ...
//   out.commit(text);                                     // durable, or throws (io)
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include <string>
#include <string_view>

namespace kakunin::io {

enum class Overwrite {
    replace,  ///< rename(2) over an existing file
    refuse,   ///< link(2): an existing target is kakunin::Error (invalid_state), never replaced
};

/// A temporary file beside `path`, created by prepare(), that becomes `path` on commit(). Until
/// then `path` is untouched; destroying an uncommitted DurableFile removes the temporary file.
/// Not thread-safe; one per target.
class DurableFile {
public:
    /// Creates the temporary file now, so that a missing directory, a directory in the way or a
    /// read-only location is refused before the caller does anything it cannot undo. With
    /// Overwrite::refuse an existing `path` is refused here too (and again at commit()).
    /// Throws kakunin::Error (invalid_input for an empty path, invalid_state for an existing
    /// target with refuse, io otherwise) naming the path.
    static DurableFile prepare(const std::string& path, Overwrite overwrite = Overwrite::replace,
                               mode_t mode = 0644);
    DurableFile(DurableFile&& other) noexcept;
    DurableFile& operator=(DurableFile&&) = delete;
    DurableFile(const DurableFile&) = delete;
    DurableFile& operator=(const DurableFile&) = delete;
    ~DurableFile();

    /// Writes `content`, fsyncs, moves it to the target and fsyncs the directory. Throws
    /// kakunin::Error (io; invalid_state when refuse finds the target) naming the path; the
    /// target is then unchanged (or, if only the directory fsync failed, replaced but perhaps
    /// not durable) and the temporary file is gone. Call at most once.
    void commit(std::string_view content);

    const std::string& path() const noexcept { return m_path; }

private:
    DurableFile(std::string path, std::string tmp, int fd, Overwrite overwrite);
    void discard() noexcept;

    std::string m_path;
    std::string m_tmp;
    int m_fd = -1;
    Overwrite m_overwrite = Overwrite::replace;
};

/// prepare(path, overwrite, mode).commit(content).
void write_durable(const std::string& path, std::string_view content,
                   Overwrite overwrite = Overwrite::replace, mode_t mode = 0644);

/// fsync of the directory that holds `path` (what makes a created or renamed name durable).
/// Throws kakunin::Error (io) naming the directory.
void sync_parent_directory(const std::string& path);

/// Writes all of `data` at `fd`'s position (retrying EINTR and short writes). Returns 0, or the
/// errno of the failure; `written` is how many bytes reached the file before it. A write(2) that
/// stores nothing is EIO. Never throws.
int write_all(int fd, const char* data, std::size_t size, std::size_t& written) noexcept;
/// fdatasync(2) (fsync(2) with `metadata`), retried on EINTR: 0 or the errno.
int sync_data(int fd, bool metadata = false) noexcept;
/// ftruncate(2) to `size` bytes, retried on EINTR: 0 or the errno.
int truncate_to(int fd, std::uint64_t size) noexcept;

/// FOR TESTS ONLY: disk errors injected into write_all(), sync_data() and truncate_to() (and so
/// into DurableFile and FileAuditSink), process-wide, to exercise what an EIO does to a real
/// file. Nothing is injected unless a test calls inject_fault(); the cost otherwise is one
/// relaxed atomic load per call.
namespace testing {

enum class FaultSite { write, sync, truncate };

struct Fault {
    std::uint64_t skip = 0;   ///< calls that succeed before the first failing one
    std::uint64_t times = 1;  ///< consecutive calls that fail (UINT64_MAX: until cleared)
    /// A failing write_all() first writes this many bytes of its data for real (a partial
    /// write, then the error); ignored for sync and truncate.
    std::size_t after_bytes = 0;
    int error = EIO;  ///< errno of the failure
};

/// Replaces the plan for `site`.
void inject_fault(FaultSite site, Fault fault) noexcept;
/// Removes every plan; calls succeed again.
void clear_faults() noexcept;
/// Calls at `site` that failed by injection since the last clear_faults().
std::uint64_t injected_failures(FaultSite site) noexcept;

}  // namespace testing

}  // namespace kakunin::io
