// tests/temp_dir.hpp — a fresh directory under the system temporary directory, removed with
// its contents when the test is done.
#pragma once

#include <stdlib.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <system_error>

namespace kakunin::test {

class TempDir {
public:
    /// `prefix` names the directory (prefix-XXXXXX), so a leftover one says whose it was.
    explicit TempDir(const std::string& prefix = "kakunin-test") {
        std::string templ =
            (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        m_path = templ;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const noexcept { return m_path; }
    std::string operator/(const std::string& name) const { return (m_path / name).string(); }

private:
    std::filesystem::path m_path;
};

}  // namespace kakunin::test
