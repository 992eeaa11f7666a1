#include "io/durable_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "kakunin/error.hpp"

namespace kakunin::io {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
    throw Error(ErrorCategory::io, path + ": " + what + " (" + std::strerror(err) + ")");
}

[[noreturn]] void exists_error(const std::string& path) {
    throw Error(ErrorCategory::invalid_state, path + ": exists and is not replaced");
}

bool path_exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

/// Unique within the process too: two threads may prepare the same target.
std::string temp_name(const std::string& path) {
    static std::atomic<unsigned> counter{0};
    return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

}  // namespace

DurableFile::DurableFile(std::string path, std::string tmp, int fd, Overwrite overwrite)
    : m_path(std::move(path)), m_tmp(std::move(tmp)), m_fd(fd), m_overwrite(overwrite) {}

DurableFile::DurableFile(DurableFile&& other) noexcept
    : m_path(std::move(other.m_path)),
      m_tmp(std::move(other.m_tmp)),
      m_fd(other.m_fd),
      m_overwrite(other.m_overwrite) {
    other.m_fd = -1;
    other.m_tmp.clear();
}

DurableFile::~DurableFile() { discard(); }

void DurableFile::discard() noexcept {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
    if (!m_tmp.empty()) ::unlink(m_tmp.c_str());
    m_tmp.clear();
}

DurableFile DurableFile::prepare(const std::string& path, Overwrite overwrite, mode_t mode) {
    if (path.empty()) throw Error(ErrorCategory::invalid_input, "output path is empty");
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        throw Error(ErrorCategory::io, path + ": is a directory");
    if (overwrite == Overwrite::refuse && path_exists(path)) exists_error(path);
    std::string tmp = temp_name(path);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) fail("cannot write", path, errno);
    return DurableFile(path, std::move(tmp), fd, overwrite);
}

void DurableFile::commit(std::string_view content) {
    if (m_fd < 0) throw Error(ErrorCategory::invalid_state, m_path + ": already written");
    std::size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::write(m_fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int err = n < 0 ? errno : EIO;
            discard();
            fail("cannot write", m_path, err);
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(m_fd) != 0) {
        const int err = errno;
        discard();
        fail("cannot sync", m_path, err);
    }
    const int fd = m_fd;
    m_fd = -1;
    if (::close(fd) != 0) {
        const int err = errno;
        discard();
        fail("cannot write", m_path, err);
    }
    if (m_overwrite == Overwrite::replace) {
        if (::rename(m_tmp.c_str(), m_path.c_str()) != 0) {
            const int err = errno;
            discard();
            fail("cannot rename into place", m_path, err);
        }
    } else {
        // link() refuses an existing name, unlike rename(): two writers cannot both win.
        if (::link(m_tmp.c_str(), m_path.c_str()) != 0) {
            const int err = errno;
            discard();
            if (err == EEXIST) exists_error(m_path);
            fail("cannot create", m_path, err);
        }
        ::unlink(m_tmp.c_str());
    }
    m_tmp.clear();
    sync_parent_directory(m_path);
}

void write_durable(const std::string& path, std::string_view content, Overwrite overwrite,
                   mode_t mode) {
    DurableFile::prepare(path, overwrite, mode).commit(content);
}

void sync_parent_directory(const std::string& path) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("cannot open directory", dir.string(), errno);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) fail("cannot sync directory", dir.string(), err);
}

}  // namespace kakunin::io
