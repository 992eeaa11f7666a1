// A real PostgreSQL server for the PostgreSQL tests. scripts/test starts one and exports
// KAKUNIN_TEST_PG (libpq keyword=value conninfo of a superuser); under plain ctest, when it is
// unset, the first test that needs it starts a throwaway server in a temporary directory through
// scripts/lib/postgres.sh and stops it when the process exits. Missing PostgreSQL binaries are a
// test failure that says to run scripts/test, never a skip.
#pragma once

#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kakunin/postgres.hpp"

extern char** environ;

namespace kakunin::test {

struct CommandResult {
    int status = -1;  ///< exit status, or -1 when it did not exit normally
    std::string output;
};

/// Runs argv (no shell), stdout and stderr captured together.
inline CommandResult run_command(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    CommandResult result;
    if (rc != 0) {
        ::close(fds[0]);
        result.output = "cannot run " + argv[0];
        return result;
    }
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) result.output.append(buf, n);
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

/// Runs a function of scripts/lib/postgres.sh on DIR (and an optional argument), then prints
/// KAKUNIN_TEST_PG.
inline CommandResult run_pg_script(const std::string& function, const std::string& dir,
                                   const std::string& arg = "") {
    const std::string lib = std::string(KAKUNIN_SOURCE_DIR) + "/scripts/lib/postgres.sh";
    return run_command({"bash", "-c",
                        "source \"$1\" && " + function +
                            " \"$2\" ${3:+\"$3\"} && printf '%s\\n' \"${KAKUNIN_TEST_PG:-}\"",
                        "bash", lib, dir, arg});
}

/// A PostgreSQL server this process started in a temporary directory; stopped and removed on
/// destruction.
class PgServer {
public:
    PgServer() {
        char tmpl[] = "/tmp/kakunin-pg-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        m_root = tmpl;
        // The server runs as another OS user when we are root: it must reach DIR through here.
        ::chmod(m_root.c_str(), 0755);
        m_dir = m_root + "/pg";
        const CommandResult r = run_pg_script("kakunin_pg_start", m_dir);
        if (r.status != 0) {
            const std::string out = r.output;
            stop_and_remove();
            throw std::runtime_error(
                "cannot start a test PostgreSQL server (run scripts/test, which installs "
                "PostgreSQL and starts one): " +
                out);
        }
        m_conninfo = r.output.substr(0, r.output.find('\n'));
    }
    ~PgServer() { stop_and_remove(); }
    PgServer(const PgServer&) = delete;
    PgServer& operator=(const PgServer&) = delete;

    const std::string& conninfo() const { return m_conninfo; }
    /// Stops and starts the server. `crash`: immediate stop (no shutdown checkpoint), so the
    /// start recovers from the WAL as after a power cut.
    void restart(bool crash) {
        CommandResult r = run_pg_script("kakunin_pg_stop", m_dir, crash ? "immediate" : "fast");
        if (r.status != 0) throw std::runtime_error("kakunin_pg_stop failed: " + r.output);
        r = run_pg_script("kakunin_pg_start", m_dir);
        if (r.status != 0) throw std::runtime_error("kakunin_pg_start failed: " + r.output);
    }

private:
    void stop_and_remove() {
        if (m_root.empty()) return;
        run_pg_script("kakunin_pg_stop", m_dir);
        std::error_code ec;
        std::filesystem::remove_all(m_root, ec);
        m_root.clear();
    }

    std::string m_root;
    std::string m_dir;
    std::string m_conninfo;
};

/// The superuser conninfo of the server the tests share: $KAKUNIN_TEST_PG, else a server of
/// this process (started on first use, stopped at exit).
inline const std::string& shared_pg_conninfo() {
    static std::unique_ptr<PgServer> own;
    static const std::string conninfo = [] {
        const char* env = std::getenv("KAKUNIN_TEST_PG");
        if (env && *env) return std::string(env);
        own = std::make_unique<PgServer>();
        return own->conninfo();
    }();
    return conninfo;
}

/// `base` with other keywords (libpq takes the last value of a repeated keyword).
inline std::string conninfo_with(const std::string& base, const std::string& extra) {
    return base + " " + extra;
}

/// What a statement did: ok, or the SQLSTATE and message it failed with.
struct SqlOutcome {
    bool ok = false;
    std::string sqlstate;
    std::string message;
    std::vector<std::vector<std::string>> rows;
};

/// A plain libpq session for poking at the database the way an attacker or a DBA would.
class PgSession {
public:
    explicit PgSession(const std::string& conninfo) : m_conn(PQconnectdb(conninfo.c_str())) {
        if (PQstatus(m_conn) != CONNECTION_OK) {
            const std::string msg = PQerrorMessage(m_conn);
            PQfinish(m_conn);
            throw std::runtime_error("cannot connect: " + msg);
        }
        PQsetNoticeProcessor(
            m_conn, [](void*, const char*) {}, nullptr);
    }
    ~PgSession() { PQfinish(m_conn); }
    PgSession(const PgSession&) = delete;
    PgSession& operator=(const PgSession&) = delete;

    /// One statement, optionally with text parameters.
    SqlOutcome exec(const std::string& sql, const std::vector<std::string>& params = {}) {
        std::vector<const char*> values;
        for (const auto& p : params) values.push_back(p.c_str());
        return outcome(PQexecParams(m_conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                    values.data(), nullptr, nullptr, 0));
    }
    /// Sends a statement without waiting (it may block on a lock); receive() gets its outcome.
    bool send(const std::string& sql) { return PQsendQuery(m_conn, sql.c_str()) == 1; }
    SqlOutcome receive() {
        SqlOutcome out = outcome(PQgetResult(m_conn));
        while (PGresult* extra = PQgetResult(m_conn)) PQclear(extra);
        return out;
    }
    /// Runs a statement that must succeed; returns the first column of the first row ("" if
    /// none).
    std::string value(const std::string& sql, const std::vector<std::string>& params = {}) {
        SqlOutcome o = exec(sql, params);
        if (!o.ok) throw std::runtime_error(sql + ": " + o.message);
        return o.rows.empty() || o.rows[0].empty() ? std::string() : o.rows[0][0];
    }

private:
    static SqlOutcome outcome(PGresult* r) {
        SqlOutcome out;
        const ExecStatusType st = PQresultStatus(r);
        out.ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (!out.ok) {
            const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            out.sqlstate = s ? s : "";
            out.message = r ? PQresultErrorMessage(r) : "no result";
        }
        for (int i = 0; i < PQntuples(r); ++i) {
            std::vector<std::string> row;
            for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetvalue(r, i, j));
            out.rows.push_back(std::move(row));
        }
        PQclear(r);
        return out;
    }

    PGconn* m_conn;
};

/// A fresh database with the audit schema, and role names of its own (roles are cluster-wide and
/// tests of several processes share a server). Dropped, with its roles, on destruction.
class AuditTestDb {
public:
    /// `as_non_superuser`: init-db runs as a role of its own with CREATEROLE and CREATE on the
    /// database, not as a superuser.
    explicit AuditTestDb(const std::string& server_conninfo, bool as_non_superuser = false)
        : m_server(server_conninfo) {
        static std::atomic<int> counter{0};
        const std::string tag =
            std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1));
        m_db = "kk_test_" + tag;
        options.owner_role = "kk_owner_" + tag;
        options.app_role = "kk_app_" + tag;
        PgSession admin(m_server);
        admin.value("CREATE DATABASE " + m_db);
        if (as_non_superuser) {
            m_installer = "kk_installer_" + tag;
            admin.value("CREATE ROLE " + m_installer + " LOGIN CREATEROLE");
            admin.value("GRANT CREATE ON DATABASE " + m_db + " TO " + m_installer);
            init_audit_database(conninfo_with(superuser(), "user=" + m_installer), options);
        } else {
            init_audit_database(superuser(), options);
        }
    }
    ~AuditTestDb() {
        try {
            PgSession admin(m_server);
            admin.exec("DROP DATABASE IF EXISTS " + m_db + " WITH (FORCE)");
            admin.exec("DROP ROLE IF EXISTS " + options.app_role);
            admin.exec("DROP ROLE IF EXISTS " + options.owner_role);
            if (!m_installer.empty()) admin.exec("DROP ROLE IF EXISTS " + m_installer);
        } catch (...) {
            // The server is gone already: nothing left to clean.
        }
    }
    AuditTestDb(const AuditTestDb&) = delete;
    AuditTestDb& operator=(const AuditTestDb&) = delete;

    std::string superuser() const { return conninfo_with(m_server, "dbname=" + m_db); }
    std::string app() const {
        return conninfo_with(m_server, "dbname=" + m_db + " user=" + options.app_role);
    }
    const std::string& name() const { return m_db; }

    AuditDbOptions options;

private:
    std::string m_server;
    std::string m_db;
    std::string m_installer;
};

}  // namespace kakunin::test
