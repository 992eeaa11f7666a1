// Private to src/postgres: a thin RAII layer over libpq. Every statement with values goes through
// PQexecParams/PQprepare with bound parameters; identifiers are validated and quoted with
// PQescapeIdentifier. Failures throw kakunin::Error (database) carrying the SQLSTATE.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
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

class Connection {
public:
    /// Connects; throws DbError (connection_lost) when the server cannot be reached.
    /// `application_name` is what pg_stat_activity shows unless the conninfo sets one.
    explicit Connection(const std::string& conninfo, const char* application_name = "kakunin");
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    PGconn* get() const noexcept { return m_conn; }
    bool ok() const noexcept { return m_conn != nullptr && PQstatus(m_conn) == CONNECTION_OK; }

    /// Runs one statement with bound text parameters; throws DbError unless it succeeded.
    Result exec(const char* sql, const Params& params = {});
    /// Runs a prepared statement.
    Result exec_prepared(const char* name, const Params& params);
    void prepare(const char* name, const char* sql, int nparams);
    /// Runs a utility statement that takes no values (BEGIN, COMMIT, DDL with quoted names).
    void command(const std::string& sql);
    /// `"name"` quoted by libpq, after checking that `name` is a plain lowercase identifier.
    std::string quote_identifier(std::string_view name);

    /// Throws DbError for `r` (or for the connection when `r` is null) with `what` in front.
    [[noreturn]] void fail(const PGresult* r, const std::string& what) const;
    /// Checks a result; throws DbError if its status is not `expected`.
    Result check(PGresult* r, ExecStatusType expected, const char* what) const;

private:
    PGconn* m_conn = nullptr;
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

}  // namespace kakunin::pg
