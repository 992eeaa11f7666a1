// Private: the one way Kakunin makes a file durable. Write to a temporary file beside it, fsync
// the file, rename it over the target (or link it, when the target must not exist yet), fsync
// the directory. A reader sees the old file or the new one, never half a file, and once the call
// returns the new one survives a crash. Used by the CA's state directory, the baseline store, the
// software KMS's key files, the command line's output files and the evidence package.
//
//   kakunin::io::write_durable(state + "/crl.pem", crl.pem());
//   auto out = kakunin::io::DurableFile::prepare(path);   // refuses an unwritable path now
//   ... irreversible work ...
//   out.commit(text);                                     // durable, or throws (io)
#pragma once

#include <sys/types.h>

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

}  // namespace kakunin::io
