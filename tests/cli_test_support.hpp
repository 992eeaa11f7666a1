// tests/cli_test_support.hpp — the real `kakunin` program (KAKUNIN_CLI_PATH) run by sh in a
// test's directory, its exit code, stdout and stderr captured apart, and the file helpers around
// it.
//   const test::Cli cli{"my passphrase"};  test::TempDir d("kakunin-my-test");
//   cli.ok(d, "ca init --dir state");  const test::Run r = cli.run(d, "crl --dir state");
#pragma once

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>

#include "temp_dir.hpp"

namespace kakunin::test {

/// `s` as one word for sh: in single quotes, each ' written as '\''.
inline std::string quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

/// The whole file at `path`, "" if it cannot be read.
inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Replaces the file at `path` with `text`.
inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

struct Run {
    int code = -1;  ///< the exit status, -1 if the shell did not exit normally
    std::string out, err;
};

/// `command` (a line for sh, words quoted by the caller) run after `cd dir`, its stdout and
/// stderr written to dir/.out and dir/.err and read back.
inline Run run_in(const TempDir& dir, const std::string& command) {
    const std::string line = "cd " + quote(dir.path().string()) + " && " + command + " >" +
                             quote(dir / ".out") + " 2>" + quote(dir / ".err");
    const int status = std::system(line.c_str());
    Run r;
    r.code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(dir / ".out");
    r.err = slurp(dir / ".err");
    return r;
}

/// REQUIREs that `r` exited 0; `what` (the step) and the output are reported when it did not.
inline void require_ok(const Run& r, const std::string& what) {
    INFO(what << "\nstdout: " << r.out << "\nstderr: " << r.err);
    REQUIRE(r.code == 0);
}

/// The program with KAKUNIN_KMS_PASSPHRASE set to the passphrase of the test's key store;
/// `args` are spliced into the command line as they are (quote what needs it).
class Cli {
public:
    explicit Cli(std::string passphrase) : m_passphrase(std::move(passphrase)) {}

    Run run(const TempDir& dir, const std::string& args) const {
        return run_in(dir, "KAKUNIN_KMS_PASSPHRASE=" + quote(m_passphrase) + " " +
                               quote(KAKUNIN_CLI_PATH) + " " + args);
    }

    /// `run`, REQUIREd to exit 0 (the output is reported when it does not).
    Run ok(const TempDir& dir, const std::string& args) const {
        Run r = run(dir, args);
        INFO("kakunin " << args << "\nstdout: " << r.out << "\nstderr: " << r.err);
        REQUIRE(r.code == 0);
        return r;
    }

    /// `ok`, its stdout parsed as JSON.
    nlohmann::json ok_json(const TempDir& dir, const std::string& args) const {
        return nlohmann::json::parse(ok(dir, args).out);
    }

private:
    std::string m_passphrase;
};

}  // namespace kakunin::test
