// The libpq layer shared by the PostgreSQL backends.
#include "postgres/pg.hpp"

#include <charconv>

namespace kakunin::pg {

namespace {

// libpq messages end with a newline; keep reports on one line.
std::string one_line(const char* text) {
    std::string s = text ? text : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    for (char& c : s) {
        if (c == '\n') c = ' ';
    }
    return s;
}

}  // namespace

bool is_plain_identifier(std::string_view name) noexcept {
    if (name.empty() || name.size() > 63) return false;
    if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_')) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

std::int64_t to_i64(std::string_view text) {
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size()) {
        throw Error(ErrorCategory::database,
                    "postgres: expected an integer, got \"" + std::string(text) + "\"");
    }
    return v;
}

Connection::Connection(const std::string& conninfo, const char* application_name) {
    const char* keys[] = {"dbname", "fallback_application_name", nullptr};
    const char* values[] = {conninfo.c_str(), application_name, nullptr};
    m_conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (m_conn == nullptr) throw DbError("", true, "postgres: out of memory connecting");
    if (PQstatus(m_conn) != CONNECTION_OK) {
        const std::string msg = "postgres: cannot connect: " + one_line(PQerrorMessage(m_conn));
        PQfinish(m_conn);
        m_conn = nullptr;
        throw DbError("", true, msg);
    }
    // A library does not write to stderr: server notices are dropped.
    PQsetNoticeProcessor(
        m_conn, [](void*, const char*) {}, nullptr);
}

Connection::~Connection() {
    if (m_conn) PQfinish(m_conn);
}

void Connection::fail(const PGresult* r, const std::string& what) const {
    std::string state;
    std::string msg;
    if (r) {
        const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (s) state = s;
        msg = one_line(PQresultErrorMessage(r));
    }
    if (msg.empty()) msg = one_line(PQerrorMessage(m_conn));
    const bool lost = PQstatus(m_conn) != CONNECTION_OK || state.rfind("08", 0) == 0 ||
                      state == "57P01" || state == "57P02" || state == "57P03";
    throw DbError(state, lost,
                  "postgres: " + what + ": " + msg + (state.empty() ? "" : " [" + state + "]"));
}

Result Connection::check(PGresult* r, ExecStatusType expected, const char* what) const {
    Result res(r);
    if (!res || PQresultStatus(res.get()) != expected) fail(res.get(), what);
    return res;
}

namespace {

struct ParamArrays {
    std::vector<const char*> values;
    explicit ParamArrays(const Params& params) {
        values.reserve(params.size());
        for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    }
};

ExecStatusType ok_status(const PGresult* r) {
    const ExecStatusType s = PQresultStatus(r);
    return s == PGRES_TUPLES_OK ? PGRES_TUPLES_OK : PGRES_COMMAND_OK;
}

}  // namespace

Result Connection::exec(const char* sql, const Params& params) {
    ParamArrays a(params);
    PGresult* r = PQexecParams(m_conn, sql, static_cast<int>(params.size()), nullptr,
                               a.values.data(), nullptr, nullptr, 0);
    return check(r, r ? ok_status(r) : PGRES_COMMAND_OK, sql);
}

Result Connection::exec_prepared(const char* name, const Params& params) {
    ParamArrays a(params);
    PGresult* r = PQexecPrepared(m_conn, name, static_cast<int>(params.size()), a.values.data(),
                                 nullptr, nullptr, 0);
    return check(r, r ? ok_status(r) : PGRES_COMMAND_OK, name);
}

void Connection::prepare(const char* name, const char* sql, int nparams) {
    check(PQprepare(m_conn, name, sql, nparams, nullptr), PGRES_COMMAND_OK, name);
}

void Connection::command(const std::string& sql) {
    PGresult* r = PQexec(m_conn, sql.c_str());
    check(r, r ? ok_status(r) : PGRES_COMMAND_OK, sql.substr(0, 60).c_str());
}

std::string Connection::quote_identifier(std::string_view name) {
    if (!is_plain_identifier(name)) {
        throw Error(ErrorCategory::invalid_input,
                    "postgres: \"" + std::string(name) +
                        "\" is not a plain role name (lowercase letters, digits, _; at most 63)");
    }
    char* q = PQescapeIdentifier(m_conn, name.data(), name.size());
    if (!q) fail(nullptr, "escape identifier");
    std::string out(q);
    PQfreemem(q);
    return out;
}

}  // namespace kakunin::pg
