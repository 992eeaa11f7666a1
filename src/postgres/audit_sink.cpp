// PostgresAuditSink: JSON Lines of one log into kakunin_audit.audit_records (COPY straight into
// the month's partition, transactions of bounded size) and audit_checkpoints, replayed in seq
// order. What it holds uncommitted is bounded too: during an outage append() refuses more.
#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "audit/json.hpp"
#include "kakunin/postgres.hpp"
#include "postgres/pg.hpp"
#include "postgres/runtime_core.hpp"

namespace kakunin {

namespace {

constexpr const char* insert_checkpoint_sql =
    "INSERT INTO kakunin_audit.audit_checkpoints (log_id, size, ts_ns, root, key_fp, sig, line) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)";

// The columns of a stored line. A record's canonical text and signature are spans of `line`
// (the line is the canonical text with `,"sig":"…"` spliced in), so a line is copied once.
struct PendingLine {
    bool is_record = true;
    std::uint64_t seq_or_size = 0;  ///< a record's seq, a checkpoint's size
    std::int64_t ts_ns = 0;
    std::string event;               ///< record
    std::size_t sig_at = 0;          ///< record: where `,"sig":"…"` starts in `line`
    std::size_t sig_size = 0;        ///< record: its length (0: unsigned)
    std::optional<std::string> sig;  ///< checkpoint
    std::string root_hex;            ///< checkpoint
    std::string key_fp;              ///< checkpoint
    std::string line;

    std::string_view canonical_head() const { return std::string_view(line).substr(0, sig_at); }
    std::string_view canonical_tail() const {
        return sig_size == 0 ? std::string_view{}
                             : std::string_view(line).substr(sig_at + sig_size);
    }
    /// The base64 of a record's `sig` (empty when unsigned).
    std::string_view record_sig() const {
        constexpr std::size_t prefix = 8;  // ,"sig":"
        return sig_size == 0
                   ? std::string_view{}
                   : std::string_view(line).substr(sig_at + prefix, sig_size - prefix - 1);
    }
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

// COPY text format: backslash, newline, carriage return and tab are escaped. Canonical JSON has
// no raw control characters, so a line is mostly long runs to copy at once: eight bytes at a
// time are tested for a backslash or any control character (a superset of the four), and only
// a word holding one is looked at byte by byte.
void append_copy_field(std::string& out, std::string_view v) {
    constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    const auto candidates = [&](std::uint64_t w) {
        const std::uint64_t x = w ^ (ones * '\\');
        // A zero byte of x (a backslash), or a byte below 0x20 (a control character): both
        // tests are exact for a word with neither.
        return ((x - ones) & ~x & highs) | ((w - ones * 0x20) & ~w & highs);
    };
    std::size_t run = 0, i = 0;
    for (;;) {
        while (i + 8 <= v.size()) {
            std::uint64_t w;
            std::memcpy(&w, v.data() + i, 8);
            if (candidates(w) != 0) break;
            i += 8;
        }
        const std::size_t end = std::min(v.size(), i + 8);
        if (i >= end) break;
        for (; i < end; ++i) {
            const char* escaped;
            switch (v[i]) {
                case '\\': escaped = "\\\\"; break;
                case '\n': escaped = "\\n"; break;
                case '\r': escaped = "\\r"; break;
                case '\t': escaped = "\\t"; break;
                default: continue;
            }
            out.append(v.data() + run, i - run);
            out.append(escaped, 2);
            run = i + 1;
        }
    }
    out.append(v.data() + run, v.size() - run);
}

// Whether the application role may COPY straight into a partition: it must carry the seq check
// (created with it by ensure_partition, ENABLE ALWAYS) and the column grants. A partition made
// by an older schema lacks both, and its records go through the parent as before.
constexpr const char* direct_partition_sql =
    "SELECT p.oid IS NOT NULL "
    "AND pg_catalog.has_column_privilege(p.oid, 'log_id', 'INSERT') "
    "AND pg_catalog.has_column_privilege(p.oid, 'seq', 'INSERT') "
    "AND pg_catalog.has_column_privilege(p.oid, 'ts_ns', 'INSERT') "
    "AND pg_catalog.has_column_privilege(p.oid, 'event', 'INSERT') "
    "AND pg_catalog.has_column_privilege(p.oid, 'canonical', 'INSERT') "
    "AND pg_catalog.has_column_privilege(p.oid, 'sig', 'INSERT') "
    "AND pg_catalog.has_column_privilege(p.oid, 'line', 'INSERT') "
    "AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = p.oid "
    "AND t.tgname = 'audit_records_seq' AND t.tgenabled = 'A' "
    "AND t.tgfoid = 'kakunin_audit.check_record_seq()'::pg_catalog.regprocedure) "
    "FROM (SELECT pg_catalog.to_regclass('kakunin_audit.' || pg_catalog.quote_ident($1)) AS oid) "
    "p";

/// Where a month's records go.
struct Partition {
    std::string target;  ///< "kakunin_audit.<partition>" or "kakunin_audit.audit_records"
    bool direct = false;
};

/// One COPY row of a record: the columns (log_id, seq, ts_ns, event, canonical, sig, line).
void append_copy_row(std::string& out, std::string_view log_id_field, const PendingLine& p) {
    out += log_id_field;
    out += '\t';
    out += std::to_string(p.seq_or_size);
    out += '\t';
    out += std::to_string(p.ts_ns);
    out += '\t';
    append_copy_field(out, p.event);
    out += '\t';
    append_copy_field(out, p.canonical_head());
    append_copy_field(out, p.canonical_tail());
    out += '\t';
    if (p.sig_size != 0) {
        append_copy_field(out, p.record_sig());
    } else {
        out += "\\N";
    }
    out += '\t';
    append_copy_field(out, p.line);
    out += '\n';
}

/// COPY data goes to the server in chunks of this size, as the rows are formatted, so that the
/// server parses and inserts while the rest is being built.
constexpr std::size_t copy_chunk = 256 * 1024;

/// The month's partition, created if missing (inside the batch's transaction: `fresh` holds
/// what this transaction created until it commits; `committed` what earlier ones did).
const Partition& partition_for(pg::Connection& conn, std::int64_t ts_ns,
                               const std::map<std::int64_t, Partition>& committed,
                               std::map<std::int64_t, Partition>& fresh) {
    const std::int64_t m = month_index(ts_ns);
    if (auto it = committed.find(m); it != committed.end()) return it->second;
    if (auto it = fresh.find(m); it != fresh.end()) return it->second;
    const std::string name(pg::value(
        conn.exec("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(ts_ns)}).get(), 0,
        0));
    Partition p;
    p.direct = pg::is_plain_identifier(name) &&
               pg::value(conn.exec(direct_partition_sql, {name}).get(), 0, 0) == "t";
    p.target = p.direct ? "kakunin_audit." + conn.quote_identifier(name)
                        : std::string("kakunin_audit.audit_records");
    return fresh.emplace(m, std::move(p)).first->second;
}

/// After a new connection: drops from `pending` (one log's uncommitted lines, in log order)
/// what an earlier, unacknowledged commit already stored, after checking that it is byte for
/// byte what we hold. Returns the bytes of the lines left.
std::size_t reconcile_pending(pg::Connection& conn, const std::string& log_id,
                              std::deque<PendingLine>& pending) {
    const std::uint64_t stored_next = static_cast<std::uint64_t>(pg::to_i64(
        pg::value(conn.exec("SELECT coalesce(max(seq) + 1, 0) FROM kakunin_audit.audit_records "
                            "WHERE log_id = $1",
                            {log_id})
                      .get(),
                  0, 0)));
    const std::uint64_t stored_cp = static_cast<std::uint64_t>(pg::to_i64(
        pg::value(conn.exec("SELECT coalesce(max(size), 0) FROM kakunin_audit.audit_checkpoints "
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
        pg::Result r = conn.exec(
            "SELECT seq, line FROM kakunin_audit.audit_records WHERE log_id = $1 AND seq >= "
            "$2 AND seq < $3 ORDER BY seq",
            {log_id, std::to_string(*first_seq), std::to_string(stored_next)});
        std::size_t row = 0;
        for (const auto& p : pending) {
            if (!p.is_record || p.seq_or_size >= stored_next) continue;
            if (row >= static_cast<std::size_t>(PQntuples(r.get())) ||
                pg::value(r.get(), static_cast<int>(row), 1) != p.line) {
                throw Error(ErrorCategory::database, "postgres audit log " + log_id +
                                                         ": the stored record seq " +
                                                         std::to_string(p.seq_or_size) +
                                                         " differs from the one this writer holds");
            }
            ++row;
        }
    }
    std::deque<PendingLine> rest;
    std::size_t bytes = 0;
    for (auto& p : pending) {
        const bool stored = p.is_record ? p.seq_or_size < stored_next : p.seq_or_size <= stored_cp;
        if (stored) continue;
        bytes += p.line.size();
        rest.push_back(std::move(p));
    }
    pending = std::move(rest);
    return bytes;
}

/// Inserts a checkpoint line (parameters of insert_checkpoint_sql).
pg::Params checkpoint_params(const std::string& log_id, const PendingLine& p) {
    return {
        log_id, std::to_string(p.seq_or_size), std::to_string(p.ts_ns), p.root_hex, p.key_fp, p.sig,
        p.line};
}

}  // namespace

// ---- the sinks of one PostgresRuntime: group commit on its write connection ----------------

namespace postgres_detail {

struct AuditSinkGroup {
    explicit AuditSinkGroup(pg::SharedConnection& w) : writer(w) {}

    /// A sink's share of the group; every member of it is guarded by `mutex`.
    struct Member {
        std::string log_id;
        std::string log_id_field;          ///< log_id escaped for COPY
        std::deque<PendingLine> pending;   ///< uncommitted, in log order, not in flight
        std::size_t lines = 0, bytes = 0;  ///< uncommitted: pending and in flight
        bool in_flight = false;            ///< a group commit holds its oldest lines
        bool need_reconcile = false;       ///< a commit carrying its lines went unacknowledged
        /// The database refused its lines (not a lost connection): only its own flush stores
        /// them, alone, until one succeeds; the other sinks' groups leave them out.
        bool refused = false;
        /// Why a group commit carrying its lines failed: thrown by its next flush (once).
        std::exception_ptr error;
    };

    /// A member's lines taken into one group commit.
    struct Part {
        Member* member = nullptr;
        std::deque<PendingLine> lines;  ///< taken from the member's pending; what is left goes back
        std::size_t taken_lines = 0, taken_bytes = 0;
        std::size_t keep = 0;    ///< lines[0, keep) go into the transaction
        bool reconcile = false;  ///< read back what the database holds first
        bool committed = false;
        bool refused = false;
        std::exception_ptr error;
    };

    pg::SharedConnection& writer;
    std::mutex mutex;
    std::condition_variable idle;  ///< `writing` became false
    std::vector<Member*> members;  ///< registration order
    bool writing = false;          ///< a flush runs a group commit (one at a time)
    std::size_t next_member = 0;   ///< where the next group starts taking others' lines
    // Used only by the flush that is writing:
    std::map<std::int64_t, Partition> partitions;  ///< months whose partition exists
    std::string copy_buffer;

    /// One transaction storing parts[i].lines[0, keep) for every part: one COPY per partition
    /// target and round (a round takes, of every log, its next run of records of one month, so
    /// each log's records go in seq order), then the checkpoints. A refusal rolls back.
    void transaction(pg::Connection& c, const std::vector<Part*>& parts) {
        try {
            c.command("BEGIN");
            std::map<std::int64_t, Partition> fresh;
            std::vector<std::size_t> pos(parts.size(), 0);
            struct Run {
                const Part* part;
                std::size_t begin, end;
            };
            for (;;) {
                std::map<std::int64_t, std::vector<Run>> round;
                for (std::size_t i = 0; i < parts.size(); ++i) {
                    const Part& p = *parts[i];
                    std::size_t b = pos[i];
                    while (b < p.keep && !p.lines[b].is_record) ++b;
                    if (b >= p.keep) {
                        pos[i] = p.keep;
                        continue;
                    }
                    const std::int64_t month = month_index(p.lines[b].ts_ns);
                    std::size_t e = b + 1;
                    while (e < p.keep &&
                           (!p.lines[e].is_record || month_index(p.lines[e].ts_ns) == month))
                        ++e;
                    round[month].push_back({&p, b, e});
                    pos[i] = e;
                }
                if (round.empty()) break;
                for (const auto& [month, runs] : round) {
                    const Partition& target = partition_for(
                        c, runs.front().part->lines[runs.front().begin].ts_ns, partitions, fresh);
                    c.copy_in("COPY " + target.target +
                              " (log_id, seq, ts_ns, event, canonical, sig, line) FROM STDIN");
                    copy_buffer.clear();
                    for (const Run& run : runs) {
                        for (std::size_t k = run.begin; k < run.end; ++k) {
                            const PendingLine& line = run.part->lines[k];
                            if (!line.is_record) continue;
                            append_copy_row(copy_buffer, run.part->member->log_id_field, line);
                            if (copy_buffer.size() >= copy_chunk) {
                                c.put_copy_data(copy_buffer.data(), copy_buffer.size());
                                copy_buffer.clear();
                            }
                        }
                    }
                    if (!copy_buffer.empty())
                        c.put_copy_data(copy_buffer.data(), copy_buffer.size());
                    c.end_copy("COPY audit_records");
                }
            }
            for (const Part* p : parts) {
                for (std::size_t k = 0; k < p->keep; ++k) {
                    if (p->lines[k].is_record) continue;
                    c.exec(insert_checkpoint_sql,
                           checkpoint_params(p->member->log_id, p->lines[k]));
                }
            }
            c.command("COMMIT");
            partitions.insert(fresh.begin(), fresh.end());
        } catch (...) {
            // Whatever failed (a refusal, or formatting), the connection must leave the
            // transaction: the process's other writers use it next. A lost one is dropped.
            bool lost = false;
            try {
                throw;
            } catch (const pg::DbError& e) {
                lost = e.connection_lost();
            } catch (...) {
            }
            if (!lost) {
                try {
                    c.command("ROLLBACK");
                } catch (const pg::DbError& r) {
                    if (r.connection_lost()) throw;  // the shared connection is dropped
                }
            }
            throw;
        }
    }

    /// How much of each part goes into one transaction: at most max_batch_lines lines and
    /// max_batch_bytes bytes in all (the flushing sink's), the first part (the flushing sink's
    /// own) at least one line.
    static void choose_keep(const std::vector<Part*>& parts, const PostgresAuditSinkOptions& o) {
        std::size_t lines = 0, bytes = 0;
        const std::size_t max_lines = std::max<std::size_t>(o.max_batch_lines, 1);
        for (Part* p : parts) {
            p->keep = 0;
            while (p->keep < p->lines.size() && lines < max_lines &&
                   (lines == 0 || bytes + p->lines[p->keep].line.size() <= o.max_batch_bytes)) {
                bytes += p->lines[p->keep].line.size();
                ++lines;
                ++p->keep;
            }
        }
    }

    /// Reads back, on a new connection, what the parts that need it hold already. A part whose
    /// stored lines differ from its own is refused (its error); a lost connection throws.
    static void reconcile_parts(pg::Connection& c, std::vector<Part*>& parts) {
        for (Part* p : parts) {
            if (!p->reconcile) continue;
            try {
                reconcile_pending(c, p->member->log_id, p->lines);
                p->reconcile = false;
            } catch (const pg::DbError& e) {
                if (e.connection_lost()) throw;
                p->error = std::current_exception();
                p->refused = true;
            } catch (const Error&) {  // what the database holds differs: left out, as refused
                p->error = std::current_exception();
                p->refused = true;
            }
        }
        parts.erase(std::remove_if(parts.begin(), parts.end(),
                                   [](const Part* p) { return p->error != nullptr; }),
                    parts.end());
    }

    /// The database refused the part's lines: its error names its log (the server's message
    /// may not).
    static void refuse(Part& p, const pg::DbError& e) {
        p.refused = true;
        p.error = std::make_exception_ptr(pg::DbError(
            e.sqlstate(), false, "postgres audit sink " + p.member->log_id + ": " + e.what()));
    }

    /// Stores the parts (outside `mutex`, with `writing` set): one transaction for all, retried
    /// after a lost connection (reconnecting and reading back first) as often as the flushing
    /// sink's options say. When the database refuses the transaction (not a lost connection),
    /// every log is tried again in a transaction of its own, so one log's refused lines keep
    /// only that log from committing.
    void write(std::vector<Part>& all, const PostgresAuditSinkOptions& o) {
        std::vector<Part*> active;
        for (Part& p : all) active.push_back(&p);
        std::exception_ptr last;
        for (int attempt = 0; attempt <= o.reconnect_attempts; ++attempt) {
            if (attempt > 0) std::this_thread::sleep_for(o.reconnect_delay);
            try {
                writer.with([&](pg::Connection& c) {
                    reconcile_parts(c, active);
                    choose_keep(active, o);
                    if (!active.empty()) transaction(c, active);
                });
                for (Part* p : active) p->committed = true;
                return;
            } catch (const pg::DbError& e) {
                if (e.connection_lost()) {
                    // Whether the COMMIT happened is unknown: read back on the next connection.
                    // Nothing is reported durable meanwhile.
                    for (Part* p : active) p->reconcile = true;
                    last = std::current_exception();
                    continue;
                }
                if (active.size() == 1) {
                    refuse(*active.front(), e);
                    return;
                }
            } catch (...) {
                for (Part* p : active) p->error = std::current_exception();
                return;
            }
            // Refused: each log alone.
            for (Part* p : active) {
                std::vector<Part*> one{p};
                try {
                    writer.with([&](pg::Connection& c) {
                        choose_keep(one, o);
                        transaction(c, one);
                    });
                    p->committed = true;
                } catch (const pg::DbError& e) {
                    if (e.connection_lost()) {
                        p->error = std::current_exception();
                        p->reconcile = true;
                    } else {
                        refuse(*p, e);
                    }
                } catch (...) {
                    p->error = std::current_exception();
                }
            }
            return;
        }
        for (Part* p : active) p->error = last;
    }

    /// Takes (under `mutex`) the lines of one group commit: the flushing member's first, then
    /// every other member's that has some, round robin, within one transaction's bounds. A
    /// member that must read back first gives all its lines (what a lost commit stored may be
    /// any prefix of them).
    void take(Member& own, const PostgresAuditSinkOptions& o, std::vector<Part>& parts) {
        const std::size_t max_lines = std::max<std::size_t>(o.max_batch_lines, 1);
        std::size_t lines = 0, bytes = 0;
        auto take_from = [&](Member& m) {
            if (m.pending.empty() || m.in_flight) return;
            Part p;
            p.member = &m;
            p.reconcile = m.need_reconcile;
            while (!m.pending.empty() &&
                   (p.reconcile ||
                    (lines < max_lines &&
                     (lines == 0 || bytes + m.pending.front().line.size() <= o.max_batch_bytes)))) {
                bytes += m.pending.front().line.size();
                p.taken_bytes += m.pending.front().line.size();
                ++lines;
                p.lines.push_back(std::move(m.pending.front()));
                m.pending.pop_front();
            }
            if (p.lines.empty()) return;
            p.taken_lines = p.lines.size();
            m.in_flight = true;
            parts.push_back(std::move(p));
        };
        take_from(own);
        if (own.refused) return;  // alone, until the database takes its lines
        const std::size_t n = members.size();
        for (std::size_t k = 0; k < n && lines < max_lines; ++k) {
            Member& m = *members[(next_member + k) % n];
            if (&m != &own && !m.refused) take_from(m);
        }
        if (n != 0) next_member = (next_member + 1) % n;
    }

    /// Gives back (under `mutex`) what a group commit did not store, in front of what was
    /// appended meanwhile, and notes each member's outcome.
    void give_back(std::vector<Part>& parts) {
        for (Part& p : parts) {
            Member& m = *p.member;
            if (p.committed) p.lines.erase(p.lines.begin(), p.lines.begin() + p.keep);
            std::size_t left_bytes = 0;
            for (const PendingLine& l : p.lines) left_bytes += l.line.size();
            m.lines -= p.taken_lines - p.lines.size();
            m.bytes -= p.taken_bytes - left_bytes;
            m.pending.insert(m.pending.begin(), std::make_move_iterator(p.lines.begin()),
                             std::make_move_iterator(p.lines.end()));
            m.in_flight = false;
            m.need_reconcile = p.reconcile;
            if (p.committed) {
                m.refused = false;
                m.error = nullptr;
            } else {
                m.refused = p.refused;
                m.error = p.error;
            }
        }
    }

    /// Returns once every line `own` holds is committed (by this call's group commits or other
    /// sinks'), or throws why a group commit carrying its lines failed (they stay pending).
    void flush(Member& own, const PostgresAuditSinkOptions& o) {
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            if (own.lines == 0) {
                own.error = nullptr;
                return;
            }
            if (own.error) std::rethrow_exception(std::exchange(own.error, nullptr));
            if (writing) {
                idle.wait(lock);
                continue;
            }
            writing = true;
            std::vector<Part> parts;
            try {
                take(own, o, parts);
                lock.unlock();
                write(parts, o);
            } catch (...) {  // only what copying may throw (bad_alloc): nothing committed
                for (Part& p : parts)
                    if (!p.committed) p.error = std::current_exception();
                if (parts.empty()) own.error = std::current_exception();
            }
            if (!lock.owns_lock()) lock.lock();
            give_back(parts);
            writing = false;
            idle.notify_all();
        }
    }
};

}  // namespace postgres_detail

struct PostgresAuditSink::Impl {
    std::string conninfo;
    PostgresAuditSinkOptions options;
    std::unique_ptr<pg::Connection> conn;
    bool need_reconcile = false;
    std::deque<PendingLine> pending;               ///< in log order; the front is the oldest
    std::size_t pending_bytes = 0;                 ///< sum of pending lines' sizes
    std::map<std::int64_t, Partition> partitions;  ///< months whose partition exists (committed)
    std::string copy_buffer;
    std::string log_id_field;  ///< options.log_id escaped for COPY
    /// On a runtime: the runtime's sinks, and this one's share of them (the members above from
    /// `conn` to `copy_buffer` are then unused).
    std::shared_ptr<postgres_detail::AuditSinkGroup> group;
    postgres_detail::AuditSinkGroup::Member member;

    void connect() {
        conn.reset();
        conn = std::make_unique<pg::Connection>(conninfo, "kakunin-audit-sink", options.io_timeout);
        conn->prepare("kk_insert_checkpoint", insert_checkpoint_sql, 7);
        need_reconcile = true;
    }

    void ensure_connected() {
        if (!conn || !conn->ok()) connect();
    }

    void rollback_quietly() {
        if (!conn || !conn->ok()) return;
        try {
            conn->command("ROLLBACK");
        } catch (const Error&) {
            conn.reset();  // the next flush reconnects and reconciles
        }
    }

    void reconcile() {
        pending_bytes = reconcile_pending(*conn, options.log_id, pending);
        need_reconcile = false;
    }

    /// One COPY of pending[begin, end) (records only) into `target`.
    void copy_records(const std::string& target, std::size_t begin, std::size_t end) {
        conn->copy_in("COPY " + target +
                      " (log_id, seq, ts_ns, event, canonical, sig, line) FROM STDIN");
        copy_buffer.clear();
        for (std::size_t i = begin; i < end; ++i) {
            const PendingLine& p = pending[i];
            if (!p.is_record) continue;
            append_copy_row(copy_buffer, log_id_field, p);
            if (copy_buffer.size() >= copy_chunk) {
                conn->put_copy_data(copy_buffer.data(), copy_buffer.size());
                copy_buffer.clear();
            }
        }
        if (!copy_buffer.empty()) conn->put_copy_data(copy_buffer.data(), copy_buffer.size());
        conn->end_copy("COPY audit_records");
    }

    /// Stores pending[0, end) in one transaction.
    void write_batch(std::size_t end) {
        conn->command("BEGIN");
        // Records in seq order, one COPY per run of records of the same month. Each COPY names
        // the month's partition (no routing through the parent), whose own statement trigger
        // checks that the run continues the log without gap.
        std::map<std::int64_t, Partition> fresh;
        std::size_t i = 0;
        while (i < end) {
            if (!pending[i].is_record) {
                ++i;
                continue;
            }
            const std::int64_t month = month_index(pending[i].ts_ns);
            const std::string target =
                partition_for(*conn, pending[i].ts_ns, partitions, fresh).target;
            std::size_t j = i + 1;
            while (j < end && (!pending[j].is_record || month_index(pending[j].ts_ns) == month)) {
                ++j;
            }
            copy_records(target, i, j);
            i = j;
        }
        for (std::size_t k = 0; k < end; ++k) {
            const PendingLine& p = pending[k];
            if (p.is_record) continue;
            conn->exec_prepared("kk_insert_checkpoint", checkpoint_params(options.log_id, p));
        }
        conn->command("COMMIT");
        partitions.insert(fresh.begin(), fresh.end());
    }

    /// Stores everything pending, in seq order, in transactions of at most max_batch_lines lines
    /// and max_batch_bytes bytes (one line at least), so that a backlog after an outage is not
    /// one huge transaction. What each transaction committed leaves `pending` at once: a later
    /// failure retries only the rest.
    void write_pending() {
        const std::size_t max_lines = std::max<std::size_t>(options.max_batch_lines, 1);
        while (!pending.empty()) {
            std::size_t end = 0;
            std::size_t bytes = 0;
            while (end < pending.size() && end < max_lines &&
                   (end == 0 || bytes + pending[end].line.size() <= options.max_batch_bytes)) {
                bytes += pending[end].line.size();
                ++end;
            }
            write_batch(end);
            pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(end));
            pending_bytes -= bytes;
        }
    }

    /// Uncommitted lines and bytes (the caller holds the sink's lock in standalone mode).
    std::size_t uncommitted_lines() {
        if (!group) return pending.size();
        std::lock_guard<std::mutex> lock(group->mutex);
        return member.lines;
    }
    std::size_t uncommitted_bytes() {
        if (!group) return pending_bytes;
        std::lock_guard<std::mutex> lock(group->mutex);
        return member.bytes;
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
    append_copy_field(m_impl->log_id_field, m_impl->options.log_id);
    m_impl->connect();
    m_impl->need_reconcile = false;
}

PostgresAuditSink::PostgresAuditSink(PostgresRuntime& runtime, PostgresAuditSinkOptions options)
    : m_impl(std::make_unique<Impl>()) {
    if (options.log_id.empty()) {
        throw Error(ErrorCategory::invalid_input, "postgres audit sink: empty log_id");
    }
    Impl& d = *m_impl;
    d.options = std::move(options);
    append_copy_field(d.log_id_field, d.options.log_id);
    postgres_detail::RuntimeCore& core = postgres_detail::core(runtime);
    {
        std::lock_guard<std::mutex> lock(core.audit_group_mutex);
        if (!core.audit_group)
            core.audit_group = std::make_shared<postgres_detail::AuditSinkGroup>(core.writer);
        d.group = core.audit_group;
    }
    d.member.log_id = d.options.log_id;
    d.member.log_id_field = d.log_id_field;
    std::lock_guard<std::mutex> lock(d.group->mutex);
    d.group->members.push_back(&d.member);
}

PostgresAuditSink::~PostgresAuditSink() {
    Impl& d = *m_impl;
    if (!d.group) return;
    auto& g = *d.group;
    std::unique_lock<std::mutex> lock(g.mutex);
    // Another sink's group commit may hold this one's lines: wait until it gives them back.
    g.idle.wait(lock, [&] { return !d.member.in_flight; });
    g.members.erase(std::remove(g.members.begin(), g.members.end(), &d.member), g.members.end());
}

std::string PostgresAuditSink::name() const { return "postgres:" + m_impl->options.log_id; }

std::size_t PostgresAuditSink::pending_lines() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_impl->uncommitted_lines();
}

std::size_t PostgresAuditSink::pending_bytes() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_impl->uncommitted_bytes();
}

void PostgresAuditSink::do_append(const std::string_view* lines, std::size_t count) {
    Impl& d = *m_impl;
    std::vector<PendingLine> batch;
    batch.reserve(count);
    std::size_t batch_bytes = 0;
    audit_detail::ParsedLine parsed;
    std::string error;
    for (std::size_t i = 0; i < count; ++i) {
        if (!audit_detail::parse_line(lines[i], parsed, error)) {
            throw Error(ErrorCategory::invalid_input, "postgres audit sink " + d.options.log_id +
                                                          ": line " + std::to_string(i + 1) +
                                                          " of the batch: " + error);
        }
        PendingLine p;
        const std::string_view line = lines[i];
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
            // The canonical text is the line without its `sig` member (the last but one).
            p.sig_at = line.size();
            if (!r.sig.empty()) {
                const std::string member = ",\"sig\":\"" + r.sig + "\"";
                p.sig_at = line.rfind(member);
                p.sig_size = member.size();
            }
            const bool spans_ok =
                p.sig_at != std::string_view::npos &&
                line.size() - p.sig_size == parsed.canonical.size() &&
                line.substr(0, p.sig_at) == parsed.canonical.substr(0, p.sig_at) &&
                line.substr(p.sig_at + p.sig_size) == parsed.canonical.substr(p.sig_at);
            if (!spans_ok) {
                throw Error(ErrorCategory::invalid_input,
                            "postgres audit sink " + d.options.log_id + ": line " +
                                std::to_string(i + 1) +
                                " of the batch: its canonical text is not the line without sig");
            }
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
        p.line = std::string(line);
        batch_bytes += p.line.size();
        batch.push_back(std::move(p));
    }
    // Bounded: lines wait here only while the database is away. Past the bound, store the
    // backlog first; if that fails the batch is refused (the writer keeps it, and the trail holds
    // back and fails closed), and nothing already taken is dropped. A batch larger than the
    // bound is taken when nothing is pending, so the writer can always make progress.
    const std::size_t held_lines = d.uncommitted_lines();
    const std::size_t held_bytes = d.uncommitted_bytes();
    if (held_lines != 0 && (held_lines + batch.size() > d.options.max_pending_lines ||
                            held_bytes + batch_bytes > d.options.max_pending_bytes)) {
        try {
            do_flush();
        } catch (const Error& e) {
            throw Error(e.category(),
                        "postgres audit sink " + d.options.log_id + ": " +
                            std::to_string(d.uncommitted_lines()) + " lines (" +
                            std::to_string(d.uncommitted_bytes()) +
                            " bytes) wait for the database, the most it holds: " + e.what());
        }
    }
    if (d.group) {
        std::lock_guard<std::mutex> lock(d.group->mutex);
        for (auto& p : batch) d.member.pending.push_back(std::move(p));
        d.member.lines += batch.size();
        d.member.bytes += batch_bytes;
        return;
    }
    for (auto& p : batch) d.pending.push_back(std::move(p));
    d.pending_bytes += batch_bytes;
}

void PostgresAuditSink::do_flush() {
    Impl& d = *m_impl;
    if (d.group) return d.group->flush(d.member, d.options);
    if (d.pending.empty()) return;
    std::exception_ptr last;
    for (int attempt = 0; attempt <= d.options.reconnect_attempts; ++attempt) {
        if (attempt > 0) std::this_thread::sleep_for(d.options.reconnect_delay);
        try {
            d.ensure_connected();
            if (d.need_reconcile) d.reconcile();
            d.write_pending();
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
    if (d.group) {
        // In pages, each read on the shared connection and `fn` called outside it, so that a
        // long log does not keep the process's other writers waiting (nor `fn` hold it).
        using Rows = std::vector<std::pair<std::int64_t, std::string>>;
        auto read = [&](const char* sql, const pg::Params& params) {
            return d.group->writer.with([&](pg::Connection& c) {
                pg::Result r = c.exec(sql, params);
                Rows rows;
                rows.reserve(static_cast<std::size_t>(PQntuples(r.get())));
                for (int i = 0; i < PQntuples(r.get()); ++i)
                    rows.emplace_back(pg::to_i64(pg::value(r.get(), i, 0)),
                                      std::string(pg::value(r.get(), i, 1)));
                return rows;
            });
        };
        const Rows cps = read(
            "SELECT size, line FROM kakunin_audit.audit_checkpoints WHERE log_id = $1 ORDER BY "
            "size",
            {d.options.log_id});
        constexpr std::size_t page = 8192;
        std::size_t next_cp = 0;
        std::int64_t from = 0;
        for (;;) {
            const Rows records = read(
                "SELECT seq, line FROM kakunin_audit.audit_records WHERE log_id = $1 AND seq >= $2 "
                "ORDER BY seq LIMIT 8192",
                {d.options.log_id, std::to_string(from)});
            for (const auto& [seq, line] : records) {
                while (next_cp < cps.size() && cps[next_cp].first <= seq) fn(cps[next_cp++].second);
                fn(line);
            }
            if (records.size() < page) break;
            from = records.back().first + 1;
        }
        while (next_cp < cps.size()) fn(cps[next_cp++].second);
        return;
    }
    d.ensure_connected();
    pg::Result cps = d.conn->exec(
        "SELECT size, line FROM kakunin_audit.audit_checkpoints WHERE log_id = $1 ORDER BY size",
        {d.options.log_id});
    const int n_cps = PQntuples(cps.get());
    int next_cp = 0;
    try {
        d.conn->send_single_row(
            "SELECT seq, line FROM kakunin_audit.audit_records WHERE log_id = $1 ORDER BY seq",
            {d.options.log_id});
        while (pg::Result r = d.conn->next_row("read audit_records")) {
            const PGresult* raw = r.get();
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
