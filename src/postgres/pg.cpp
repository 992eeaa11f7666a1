// The libpq layer shared by the PostgreSQL backends.
#include "postgres/pg.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
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

Connection::Connection(const std::string& conninfo, const char* application_name,
                       std::chrono::milliseconds io_timeout)
    : m_io_timeout(io_timeout) {
    // Before dbname, so that the conninfo (expanded from it) overrides them.
    std::vector<const char*> keys, values;
    std::string connect_timeout, user_timeout;
    if (io_timeout.count() > 0) {
        connect_timeout = std::to_string(std::max<long long>(2, (io_timeout.count() + 999) / 1000));
        user_timeout = std::to_string(io_timeout.count());
        keys = {"connect_timeout",     "keepalives",       "keepalives_idle",
                "keepalives_interval", "keepalives_count", "tcp_user_timeout"};
        values = {connect_timeout.c_str(), "1", "5", "2", "3", user_timeout.c_str()};
    }
    keys.insert(keys.end(), {"dbname", "fallback_application_name", nullptr});
    values.insert(values.end(), {conninfo.c_str(), application_name, nullptr});
    m_conn = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
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
    if (PQsetnonblocking(m_conn, 1) != 0) {
        const std::string msg = "postgres: cannot make the connection non-blocking: " +
                                one_line(PQerrorMessage(m_conn));
        PQfinish(m_conn);
        m_conn = nullptr;
        throw DbError("", true, msg);
    }
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
    const bool lost = m_broken || PQstatus(m_conn) != CONNECTION_OK || state.rfind("08", 0) == 0 ||
                      state == "57P01" || state == "57P02" || state == "57P03";
    throw DbError(state, lost,
                  "postgres: " + what + ": " + msg + (state.empty() ? "" : " [" + state + "]"));
}

Result Connection::check(PGresult* r, ExecStatusType expected, const char* what) const {
    Result res(r);
    if (!res || PQresultStatus(res.get()) != expected) fail(res.get(), what);
    return res;
}

void Connection::start_wait() {
    m_deadline = m_io_timeout.count() > 0 ? std::chrono::steady_clock::now() + m_io_timeout
                                          : std::chrono::steady_clock::time_point::max();
}

void Connection::wait_socket(bool writable, const char* what) {
    for (;;) {
        int timeout_ms = -1;
        if (m_deadline != std::chrono::steady_clock::time_point::max()) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                m_deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                // The server may still act on what it got; whoever reconnects finds out.
                m_broken = true;
                throw DbError("", true,
                              "postgres: " + std::string(what) +
                                  ": no answer from the server "
                                  "within " +
                                  std::to_string(m_io_timeout.count()) +
                                  " ms; the connection is given up");
            }
            timeout_ms = static_cast<int>(std::min<long long>(left.count() + 1, 60000));
        }
        pollfd p{PQsocket(m_conn), static_cast<short>(POLLIN | (writable ? POLLOUT : 0)), 0};
        if (p.fd < 0) fail(nullptr, what);
        const int n = ::poll(&p, 1, timeout_ms);
        if (n > 0) return;
        if (n < 0 && errno != EINTR) fail(nullptr, what);
    }
}

void Connection::flush_output(const char* what) {
    for (;;) {
        const int r = PQflush(m_conn);
        if (r == 0) return;
        if (r < 0) fail(nullptr, what);
        wait_socket(/*writable=*/true, what);
        // The server may be sending (notices, an error) while we send: read it, or both stall.
        if (!PQconsumeInput(m_conn)) fail(nullptr, what);
    }
}

PGresult* Connection::next_result(const char* what) {
    while (PQisBusy(m_conn)) {
        wait_socket(/*writable=*/false, what);
        if (!PQconsumeInput(m_conn)) fail(nullptr, what);
    }
    return PQgetResult(m_conn);
}

void Connection::sent(int ok, const char* what) {
    if (!ok) fail(nullptr, what);
    flush_output(what);
}

Result Connection::finish(ExecStatusType expected, const char* what) {
    Result first_error;
    Result last;
    while (PGresult* raw = next_result(what)) {
        Result r(raw);
        const ExecStatusType st = PQresultStatus(raw);
        const bool copy = st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
            if (!first_error) first_error = std::move(r);
        } else {
            last = std::move(r);
        }
        if (copy) break;  // the statement now waits for data, not for us to read
    }
    if (first_error) fail(first_error.get(), what);
    if (!last) fail(nullptr, what);
    const ExecStatusType st = PQresultStatus(last.get());
    const bool ok = expected == PGRES_EMPTY_QUERY
                        ? (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
                        : st == expected;
    if (!ok) fail(last.get(), what);
    return last;
}

namespace {

struct ParamArrays {
    std::vector<const char*> values;
    explicit ParamArrays(const Params& params) {
        values.reserve(params.size());
        for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    }
};

// finish(): a statement that returns rows or none.
constexpr ExecStatusType any_ok = PGRES_EMPTY_QUERY;

}  // namespace

Result Connection::exec(const char* sql, const Params& params) {
    ParamArrays a(params);
    start_wait();
    sent(PQsendQueryParams(m_conn, sql, static_cast<int>(params.size()), nullptr, a.values.data(),
                           nullptr, nullptr, 0),
         sql);
    return finish(any_ok, sql);
}

Result Connection::exec_prepared(const char* name, const Params& params) {
    ParamArrays a(params);
    start_wait();
    sent(PQsendQueryPrepared(m_conn, name, static_cast<int>(params.size()), a.values.data(),
                             nullptr, nullptr, 0),
         name);
    return finish(any_ok, name);
}

void Connection::prepare(const char* name, const char* sql, int nparams) {
    start_wait();
    sent(PQsendPrepare(m_conn, name, sql, nparams, nullptr), name);
    finish(PGRES_COMMAND_OK, name);
}

void Connection::command(const std::string& sql) {
    const std::string what = sql.substr(0, 60);
    start_wait();
    sent(PQsendQuery(m_conn, sql.c_str()), what.c_str());
    finish(any_ok, what.c_str());
}

void Connection::copy_in(const std::string& sql) {
    const std::string what = sql.substr(0, 60);
    start_wait();
    sent(PQsendQuery(m_conn, sql.c_str()), what.c_str());
    finish(PGRES_COPY_IN, what.c_str());
}

void Connection::put_copy_data(const char* data, std::size_t size) {
    start_wait();
    for (;;) {
        const int r = PQputCopyData(m_conn, data, static_cast<int>(size));
        if (r < 0) fail(nullptr, "COPY data");
        if (r == 1) break;
        flush_output("COPY data");  // 0: libpq's buffer is full; make room
    }
    // Wait until the server took it: the buffer does not grow while the server is not reading.
    flush_output("COPY data");
}

void Connection::end_copy(const char* what) {
    start_wait();
    for (;;) {
        const int r = PQputCopyEnd(m_conn, nullptr);
        if (r < 0) fail(nullptr, what);
        if (r == 1) break;
        flush_output(what);
    }
    flush_output(what);
    finish(PGRES_COMMAND_OK, what);
}

void Connection::send_single_row(const char* sql, const Params& params) {
    ParamArrays a(params);
    start_wait();
    if (!PQsendQueryParams(m_conn, sql, static_cast<int>(params.size()), nullptr, a.values.data(),
                           nullptr, nullptr, 0) ||
        !PQsetSingleRowMode(m_conn)) {
        fail(nullptr, sql);
    }
    flush_output(sql);
}

Result Connection::next_row(const char* what) {
    start_wait();
    for (;;) {
        Result r(next_result(what));
        if (!r) return r;
        const ExecStatusType st = PQresultStatus(r.get());
        if (st == PGRES_SINGLE_TUPLE) return r;
        if (st == PGRES_TUPLES_OK) continue;  // the end; the next result is null
        fail(r.get(), what);
    }
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

void listen_until_stopped(Connection& c, int wake_fd, std::chrono::milliseconds check_interval,
                          const std::atomic<bool>& stop,
                          const std::function<bool(const char* payload)>& notified,
                          const std::function<void()>& catch_up) {
    PGconn* raw = c.get();
    const bool checking = check_interval.count() > 0;
    auto next_check = std::chrono::steady_clock::now() + check_interval;
    while (!stop.load()) {
        // Notifications first: a catch-up's round trip may have read some into libpq's queue,
        // and the socket would not wake the poll for them.
        bool need_catch_up = false;
        while (PGnotify* note = PQnotifies(raw)) {
            need_catch_up |= notified(note->extra);
            PQfreemem(note);
        }
        if (checking && std::chrono::steady_clock::now() >= next_check) need_catch_up = true;
        if (need_catch_up) {
            catch_up();
            next_check = std::chrono::steady_clock::now() + check_interval;
            continue;
        }
        int wait_ms = 1000;
        if (checking) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                next_check - std::chrono::steady_clock::now());
            wait_ms = static_cast<int>(std::clamp<long long>(left.count() + 1, 0, 1000));
        }
        pollfd fds[2] = {{PQsocket(raw), POLLIN, 0}, {wake_fd, POLLIN, 0}};
        const int n = ::poll(fds, 2, wait_ms);
        if (n < 0 && errno != EINTR) c.fail(nullptr, "poll");
        if (stop.load()) break;
        if (!PQconsumeInput(raw)) c.fail(nullptr, "LISTEN connection");
    }
}

}  // namespace kakunin::pg
