#include "io/durable_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

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

// ---- injected faults (tests only) -------------------------------------------------------------

namespace testing {
namespace {

constexpr std::size_t k_sites = 3;

struct FaultPlans {
    std::mutex mutex;
    bool armed[k_sites] = {};
    Fault plan[k_sites];
    std::uint64_t failures[k_sites] = {};
};

FaultPlans& plans() {
    static FaultPlans p;
    return p;
}

std::atomic<bool> g_any_armed{false};

}  // namespace

void inject_fault(FaultSite site, Fault fault) noexcept {
    FaultPlans& p = plans();
    std::lock_guard<std::mutex> lock(p.mutex);
    p.armed[static_cast<std::size_t>(site)] = true;
    p.plan[static_cast<std::size_t>(site)] = fault;
    g_any_armed.store(true, std::memory_order_release);
}

void clear_faults() noexcept {
    FaultPlans& p = plans();
    std::lock_guard<std::mutex> lock(p.mutex);
    for (std::size_t i = 0; i < k_sites; ++i) {
        p.armed[i] = false;
        p.failures[i] = 0;
    }
    g_any_armed.store(false, std::memory_order_release);
}

std::uint64_t injected_failures(FaultSite site) noexcept {
    FaultPlans& p = plans();
    std::lock_guard<std::mutex> lock(p.mutex);
    return p.failures[static_cast<std::size_t>(site)];
}

}  // namespace testing

namespace {

/// Whether this call at `site` fails by injection; if so, `fault` is its plan.
bool injected(testing::FaultSite site, testing::Fault& fault) noexcept {
    if (!testing::g_any_armed.load(std::memory_order_acquire)) return false;
    testing::FaultPlans& p = testing::plans();
    std::lock_guard<std::mutex> lock(p.mutex);
    const std::size_t i = static_cast<std::size_t>(site);
    if (!p.armed[i]) return false;
    testing::Fault& plan = p.plan[i];
    if (plan.skip > 0) {
        --plan.skip;
        return false;
    }
    if (plan.times == 0) return false;
    if (plan.times != UINT64_MAX) --plan.times;
    ++p.failures[i];
    fault = plan;
    return true;
}

int write_some(int fd, const char* data, std::size_t size, std::size_t& written) noexcept {
    while (written < size) {
        const ssize_t n = ::write(fd, data + written, size - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return EIO;
        written += static_cast<std::size_t>(n);
    }
    return 0;
}

}  // namespace

int write_all(int fd, const char* data, std::size_t size, std::size_t& written) noexcept {
    written = 0;
    testing::Fault fault;
    if (injected(testing::FaultSite::write, fault)) {
        // What a failing disk does: part of the data reaches the file, then the error.
        const int err = write_some(fd, data, std::min(fault.after_bytes, size), written);
        return err != 0 ? err : fault.error;
    }
    return write_some(fd, data, size, written);
}

int sync_data(int fd, bool metadata) noexcept {
    testing::Fault fault;
    if (injected(testing::FaultSite::sync, fault)) return fault.error;
    while ((metadata ? ::fsync(fd) : ::fdatasync(fd)) != 0) {
        if (errno != EINTR) return errno;
    }
    return 0;
}

int truncate_to(int fd, std::uint64_t size) noexcept {
    testing::Fault fault;
    if (injected(testing::FaultSite::truncate, fault)) return fault.error;
    while (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
        if (errno != EINTR) return errno;
    }
    return 0;
}

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
    std::size_t written = 0;
    if (const int err = write_all(m_fd, content.data(), content.size(), written); err != 0) {
        discard();
        fail("cannot write", m_path, err);
    }
    if (const int err = sync_data(m_fd, true); err != 0) {
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
