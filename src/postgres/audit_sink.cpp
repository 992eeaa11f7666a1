// PostgresAuditSink: JSON Lines of one log into kakunin_audit.audit_records (COPY, one
// transaction per flush) and audit_checkpoints, replayed in seq order.
#include <chrono>
#include <optional>
#include <set>
#include <thread>

#include "audit/json.hpp"
#include "kakunin/postgres.hpp"
#include "postgres/pg.hpp"

namespace kakunin {

namespace {

constexpr const char* insert_checkpoint_sql =
    "INSERT INTO kakunin_audit.audit_checkpoints (log_id, size, ts_ns, root, key_fp, sig, line) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)";

struct PendingLine {
    bool is_record = true;
    std::uint64_t seq_or_size = 0;  ///< a record's seq, a checkpoint's size
    std::int64_t ts_ns = 0;
    std::string event;      ///< record
    std::string canonical;  ///< record
    std::optional<std::string> sig;
    std::string root_hex;  ///< checkpoint
    std::string key_fp;    ///< checkpoint
    std::string line;
};

// Months since 1970-01 (UTC) of a time in ns: the partition a record goes to.
std::int64_t month_index(std::int64_t ts_ns) {
    std::int64_t secs = ts_ns / 1000000000;
    if (ts_ns % 1000000000 < 0) --secs;
    std::int64_t days = secs / 86400;
    if (secs % 86400 < 0) --days;
    // civil_from_days (H. Hinnant)
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
    return (y - 1970) * 12 + (m - 1);
}

// COPY text format: backslash, newline, carriage return and tab are escaped.
void append_copy_field(std::string& out, std::string_view v) {
    for (char ch : v) {
        switch (ch) {
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default: out.push_back(ch);
        }
    }
}

}  // namespace

struct PostgresAuditSink::Impl {
    std::string conninfo;
    PostgresAuditSinkOptions options;
    std::unique_ptr<pg::Connection> conn;
    bool need_reconcile = false;
    std::vector<PendingLine> pending;
    std::set<std::int64_t> known_months;  ///< partitions known to exist
    std::string copy_buffer;

    void connect() {
        conn.reset();
        conn = std::make_unique<pg::Connection>(conninfo, "kakunin-audit-sink");
        conn->prepare("kk_insert_checkpoint", insert_checkpoint_sql, 7);
        need_reconcile = true;
    }

    void ensure_connected() {
        if (!conn || !conn->ok()) connect();
    }

    void rollback_quietly() {
        if (conn && conn->ok()) PQclear(PQexec(conn->get(), "ROLLBACK"));
    }

    // After a new connection: drop from `pending` what an earlier, unacknowledged commit already
    // stored, after checking that it is byte for byte what we hold.
    void reconcile() {
        const std::string& log_id = options.log_id;
        const std::uint64_t stored_next = static_cast<std::uint64_t>(pg::to_i64(pg::value(
            conn->exec("SELECT coalesce(max(seq) + 1, 0) FROM kakunin_audit.audit_records "
                       "WHERE log_id = $1",
                       {log_id})
                .get(),
            0, 0)));
        const std::uint64_t stored_cp = static_cast<std::uint64_t>(pg::to_i64(pg::value(
            conn->exec("SELECT coalesce(max(size), 0) FROM kakunin_audit.audit_checkpoints "
                       "WHERE log_id = $1",
                       {log_id})
                .get(),
            0, 0)));
        std::optional<std::uint64_t> first_seq;
        for (const auto& p : pending) {
            if (p.is_record) {
                first_seq = p.seq_or_size;
                break;
            }
        }
        if (first_seq && *first_seq < stored_next) {
            pg::Result r = conn->exec(
                "SELECT seq, line FROM kakunin_audit.audit_records WHERE log_id = $1 AND seq >= "
                "$2 AND seq < $3 ORDER BY seq",
                {log_id, std::to_string(*first_seq), std::to_string(stored_next)});
            std::size_t row = 0;
            for (const auto& p : pending) {
                if (!p.is_record || p.seq_or_size >= stored_next) continue;
                if (row >= static_cast<std::size_t>(PQntuples(r.get())) ||
                    pg::value(r.get(), static_cast<int>(row), 1) != p.line) {
                    throw Error(ErrorCategory::database,
                                "postgres audit log " + log_id + ": the stored record seq " +
                                    std::to_string(p.seq_or_size) +
                                    " differs from the one this writer holds");
                }
                ++row;
            }
        }
        std::vector<PendingLine> rest;
        rest.reserve(pending.size());
        for (auto& p : pending) {
            const bool stored =
                p.is_record ? p.seq_or_size < stored_next : p.seq_or_size <= stored_cp;
            if (!stored) rest.push_back(std::move(p));
        }
        pending = std::move(rest);
        need_reconcile = false;
    }

    void write_batch() {
        PGconn* c = conn->get();
        conn->command("BEGIN");
        std::set<std::int64_t> new_months;
        for (const auto& p : pending) {
            if (!p.is_record) continue;
            const std::int64_t m = month_index(p.ts_ns);
            if (known_months.count(m) || new_months.count(m)) continue;
            conn->exec("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(p.ts_ns)});
            new_months.insert(m);
        }
        bool any_record = false;
        copy_buffer.clear();
        for (const auto& p : pending) {
            if (!p.is_record) continue;
            any_record = true;
            append_copy_field(copy_buffer, options.log_id);
            copy_buffer += '\t';
            copy_buffer += std::to_string(p.seq_or_size);
            copy_buffer += '\t';
            copy_buffer += std::to_string(p.ts_ns);
            copy_buffer += '\t';
            append_copy_field(copy_buffer, p.event);
            copy_buffer += '\t';
            append_copy_field(copy_buffer, p.canonical);
            copy_buffer += '\t';
            if (p.sig) {
                append_copy_field(copy_buffer, *p.sig);
            } else {
                copy_buffer += "\\N";
            }
            copy_buffer += '\t';
            append_copy_field(copy_buffer, p.line);
            copy_buffer += '\n';
        }
        if (any_record) {
            conn->check(PQexec(c,
                               "COPY kakunin_audit.audit_records (log_id, seq, ts_ns, event, "
                               "canonical, sig, line) FROM STDIN"),
                        PGRES_COPY_IN, "COPY audit_records");
            constexpr std::size_t chunk = 1 << 20;
            for (std::size_t off = 0; off < copy_buffer.size(); off += chunk) {
                const std::size_t n = std::min(chunk, copy_buffer.size() - off);
                if (PQputCopyData(c, copy_buffer.data() + off, static_cast<int>(n)) != 1) {
                    conn->fail(nullptr, "COPY data");
                }
            }
            if (PQputCopyEnd(c, nullptr) != 1) conn->fail(nullptr, "COPY end");
            conn->check(PQgetResult(c), PGRES_COMMAND_OK, "COPY audit_records");
            while (PGresult* extra = PQgetResult(c)) PQclear(extra);
        }
        for (const auto& p : pending) {
            if (p.is_record) continue;
            conn->exec_prepared("kk_insert_checkpoint",
                                {options.log_id, std::to_string(p.seq_or_size),
                                 std::to_string(p.ts_ns), p.root_hex, p.key_fp, p.sig, p.line});
        }
        conn->command("COMMIT");
        known_months.insert(new_months.begin(), new_months.end());
    }
};

std::vector<std::string> postgres_audit_log_ids(const std::string& conninfo) {
    pg::Connection c(conninfo, "kakunin-audit-reader");
    pg::Result r = c.exec(
        "SELECT log_id FROM (SELECT DISTINCT log_id FROM kakunin_audit.audit_records) l "
        "ORDER BY log_id COLLATE \"C\"");
    std::vector<std::string> ids;
    for (int i = 0; i < PQntuples(r.get()); ++i) ids.emplace_back(pg::value(r.get(), i, 0));
    return ids;
}

PostgresAuditSink::PostgresAuditSink(std::string conninfo, PostgresAuditSinkOptions options)
    : m_impl(std::make_unique<Impl>()) {
    if (options.log_id.empty()) {
        throw Error(ErrorCategory::invalid_input, "postgres audit sink: empty log_id");
    }
    m_impl->conninfo = std::move(conninfo);
    m_impl->options = std::move(options);
    m_impl->connect();
    m_impl->need_reconcile = false;
}

PostgresAuditSink::~PostgresAuditSink() = default;

std::string PostgresAuditSink::name() const { return "postgres:" + m_impl->options.log_id; }

std::size_t PostgresAuditSink::pending_lines() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_impl->pending.size();
}

void PostgresAuditSink::do_append(const std::string_view* lines, std::size_t count) {
    Impl& d = *m_impl;
    std::vector<PendingLine> batch;
    batch.reserve(count);
    audit_detail::ParsedLine parsed;
    std::string error;
    for (std::size_t i = 0; i < count; ++i) {
        if (!audit_detail::parse_line(lines[i], parsed, error)) {
            throw Error(ErrorCategory::invalid_input, "postgres audit sink " + d.options.log_id +
                                                          ": line " + std::to_string(i + 1) +
                                                          " of the batch: " + error);
        }
        PendingLine p;
        p.line = std::string(lines[i]);
        if (parsed.kind == audit_detail::LineKind::record) {
            const AuditRecord& r = parsed.record;
            if (r.log_id != d.options.log_id) {
                throw Error(ErrorCategory::invalid_input,
                            "postgres audit sink " + d.options.log_id + ": a record of log \"" +
                                r.log_id + "\"");
            }
            p.seq_or_size = r.seq;
            p.ts_ns = r.ts_ns;
            p.event = r.event;
            p.canonical = std::string(parsed.canonical);
            if (!r.sig.empty()) p.sig = r.sig;
        } else {
            const AuditCheckpoint& c = parsed.checkpoint;
            if (c.log_id != d.options.log_id) {
                throw Error(ErrorCategory::invalid_input,
                            "postgres audit sink " + d.options.log_id + ": a checkpoint of log \"" +
                                c.log_id + "\"");
            }
            p.is_record = false;
            p.seq_or_size = c.size;
            p.ts_ns = c.ts_ns;
            p.root_hex = to_hex(c.root);
            p.key_fp = c.key_fp;
            p.sig = base64_encode(c.sig.data(), c.sig.size());
        }
        batch.push_back(std::move(p));
    }
    for (auto& p : batch) d.pending.push_back(std::move(p));
}

void PostgresAuditSink::do_flush() {
    Impl& d = *m_impl;
    if (d.pending.empty()) return;
    std::exception_ptr last;
    for (int attempt = 0; attempt <= d.options.reconnect_attempts; ++attempt) {
        if (attempt > 0) std::this_thread::sleep_for(d.options.reconnect_delay);
        try {
            d.ensure_connected();
            if (d.need_reconcile) d.reconcile();
            if (!d.pending.empty()) d.write_batch();
            d.pending.clear();
            return;
        } catch (const pg::DbError& e) {
            if (!e.connection_lost()) {
                d.rollback_quietly();
                throw;
            }
            // Whether the COMMIT happened is unknown: reconcile() finds out on the next
            // connection. Nothing is reported durable meanwhile.
            d.conn.reset();
            last = std::current_exception();
        }
    }
    std::rethrow_exception(last);
}

void PostgresAuditSink::do_for_each_line(const std::function<void(std::string_view)>& fn) {
    Impl& d = *m_impl;
    d.ensure_connected();
    pg::Result cps = d.conn->exec(
        "SELECT size, line FROM kakunin_audit.audit_checkpoints WHERE log_id = $1 ORDER BY size",
        {d.options.log_id});
    const int n_cps = PQntuples(cps.get());
    int next_cp = 0;
    PGconn* c = d.conn->get();
    const char* values[1] = {d.options.log_id.c_str()};
    if (!PQsendQueryParams(c,
                           "SELECT seq, line FROM kakunin_audit.audit_records WHERE log_id = $1 "
                           "ORDER BY seq",
                           1, nullptr, values, nullptr, nullptr, 0) ||
        !PQsetSingleRowMode(c)) {
        d.conn->fail(nullptr, "read audit_records");
    }
    try {
        while (PGresult* raw = PQgetResult(c)) {
            pg::Result r(raw);
            const ExecStatusType st = PQresultStatus(raw);
            if (st == PGRES_TUPLES_OK) continue;  // the end; PQgetResult returns null next
            if (st != PGRES_SINGLE_TUPLE) d.conn->fail(raw, "read audit_records");
            const std::int64_t seq = pg::to_i64(pg::value(raw, 0, 0));
            while (next_cp < n_cps && pg::to_i64(pg::value(cps.get(), next_cp, 0)) <= seq) {
                fn(pg::value(cps.get(), next_cp++, 1));
            }
            fn(pg::value(raw, 0, 1));
        }
    } catch (...) {
        // Rows may still be arriving: this connection is no longer usable for statements.
        d.conn.reset();
        throw;
    }
    while (next_cp < n_cps) fn(pg::value(cps.get(), next_cp++, 1));
}

}  // namespace kakunin
