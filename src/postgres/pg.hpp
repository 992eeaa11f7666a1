// Private to src/postgres: a thin RAII layer over libpq. Every statement with values goes through
// PQsendQueryParams/PQsendPrepare with bound parameters; identifiers are validated and quoted with
// PQescapeIdentifier. Failures throw kakunin::Error (database) carrying the SQLSTATE.
//
// libpq waits for a server forever: a backend that stops answering (SIGSTOP, a hung host, a
// network that drops packets without a reset) would block its caller for good. So a Connection
// is non-blocking and waits with poll() for at most its io_timeout at a time (sending, or
// waiting for the next result); past it the connection is given up (DbError, connection_lost).
// The connection also asks for connect_timeout, TCP keepalives and tcp_user_timeout, which the
// conninfo may override.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/error.hpp"

namespace kakunin::pg {

/// A database error with its SQLSTATE ("" when the connection broke without one).
class DbError : public Error {
public:
    DbError(std::string sqlstate, bool connection_lost, const std::string& message)
        : Error(ErrorCategory::database, message),
          m_sqlstate(std::move(sqlstate)),
          m_connection_lost(connection_lost) {}
    const std::string& sqlstate() const noexcept { return m_sqlstate; }
    /// The connection is unusable (server restart, network): reconnecting may help.
    bool connection_lost() const noexcept { return m_connection_lost; }

private:
    std::string m_sqlstate;
    bool m_connection_lost;
};

struct ResultDeleter {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

/// Text parameters; std::nullopt is SQL NULL.
using Params = std::vector<std::optional<std::string>>;

/// How long the backends wait for the server at a time, unless told otherwise.
inline constexpr std::chrono::milliseconds default_io_timeout{10000};

class Connection {
public:
    /// Connects; throws DbError (connection_lost) when the server cannot be reached.
    /// `application_name` is what pg_stat_activity shows unless the conninfo sets one.
    /// `io_timeout`: the longest wait for the server at a time; zero waits forever (init-db,
    /// whose DDL may rightly wait for locks).
    explicit Connection(const std::string& conninfo, const char* application_name = "kakunin",
                        std::chrono::milliseconds io_timeout = default_io_timeout);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    PGconn* get() const noexcept { return m_conn; }
    bool ok() const noexcept {
        return m_conn != nullptr && !m_broken && PQstatus(m_conn) == CONNECTION_OK;
    }

    /// Runs one statement with bound text parameters; throws DbError unless it succeeded.
    Result exec(const char* sql, const Params& params = {});
    /// Runs a prepared statement.
    Result exec_prepared(const char* name, const Params& params);
    void prepare(const char* name, const char* sql, int nparams);
    /// Runs a utility statement that takes no values (BEGIN, COMMIT, DDL with quoted names).
    void command(const std::string& sql);

    /// COPY ... FROM STDIN: starts it, sends data (waiting until the server took it), ends it.
    void copy_in(const std::string& sql);
    void put_copy_data(const char* data, std::size_t size);
    void end_copy(const char* what);

    /// Sends a statement whose rows are read one by one with next_row() (single-row mode).
    void send_single_row(const char* sql, const Params& params);
    /// The next row of send_single_row()'s statement as a PGRES_SINGLE_TUPLE result, or null at
    /// the end; throws DbError if the statement failed.
    Result next_row(const char* what);
    /// `"name"` quoted by libpq, after checking that `name` is a plain lowercase identifier.
    std::string quote_identifier(std::string_view name);

    /// Throws DbError for `r` (or for the connection when `r` is null) with `what` in front.
    [[noreturn]] void fail(const PGresult* r, const std::string& what) const;
    /// Checks a result; throws DbError if its status is not `expected`.
    Result check(PGresult* r, ExecStatusType expected, const char* what) const;

private:
    /// Starts the wait budget of one step (a statement, a chunk of COPY data).
    void start_wait();
    /// Waits until the socket is readable (or writable too); gives the connection up past the
    /// deadline.
    void wait_socket(bool writable, const char* what);
    /// Sends what libpq has buffered.
    void flush_output(const char* what);
    /// The next result of the statement in flight (null when it is complete).
    PGresult* next_result(const char* what);
    /// Sends one statement's results to check(): the first error, else the last result (stopping
    /// at COPY IN, which wants data).
    Result finish(ExecStatusType expected, const char* what);
    /// Result of a send function: fail unless it queued the statement, then send it.
    void sent(int ok, const char* what);

    PGconn* m_conn = nullptr;
    std::chrono::milliseconds m_io_timeout{0};
    std::chrono::steady_clock::time_point m_deadline{};
    bool m_broken = false;  ///< given up after a timeout: the owner must reconnect
};

/// True for [a-z_][a-z0-9_]{0,62}: the role names Kakunin accepts from options.
bool is_plain_identifier(std::string_view name) noexcept;

/// Value of column `col` of row `row` ("" for NULL).
inline std::string_view value(const PGresult* r, int row, int col) {
    return std::string_view(PQgetvalue(r, row, col),
                            static_cast<std::size_t>(PQgetlength(r, row, col)));
}
inline bool is_null(const PGresult* r, int row, int col) { return PQgetisnull(r, row, col) != 0; }
std::int64_t to_i64(std::string_view text);

/// The wait of a LISTEN connection (the revocation and human-step feeds), until `stop`:
/// each notification's payload goes to `notified` (true: a catch-up is due); `catch_up` runs
/// when one is due and, with a positive `check_interval`, at least that often (a silent
/// connection looks the same whether nothing is published or the backend stopped answering:
/// the catch-up's deadline tells them apart). A byte on `wake_fd` ends the wait early. Throws
/// DbError when the connection fails (the caller reconnects).
void listen_until_stopped(Connection& c, int wake_fd, std::chrono::milliseconds check_interval,
                          const std::atomic<bool>& stop,
                          const std::function<bool(const char* payload)>& notified,
                          const std::function<void()>& catch_up);

}  // namespace kakunin::pg
