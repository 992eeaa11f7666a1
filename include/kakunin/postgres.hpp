// kakunin/postgres.hpp — PostgreSQL as the production store (DESIGN §5): the write-once audit
// schema, an AuditSink over it, revocations pushed to every process with LISTEN/NOTIFY, and a
// BaselineStore. libpq stays in src/; connections are given as libpq conninfo strings.
//
//   kakunin::init_audit_database("host=/run/pg dbname=kakunin user=postgres", {});  // once
//   kakunin::PostgresAuditSink sink("host=/run/pg dbname=kakunin user=kakunin_app", {"agent-7"});
//   kakunin::AuditLogWriter log(sink, clock, signer, {"agent-7"});
//   kakunin::PostgresAuditSink shared(runtime, {"agent-8"});  // the logs of a process commit
//                                                             // together on one connection
//   auto feed = std::make_shared<kakunin::PostgresRevocationFeed>(conninfo);
//   credentials.revocation_feed = feed;           // the Guard halts on a revocation from anywhere
//   kakunin::publish_revocation(conninfo, {serial, "agent-7", "anomaly score 0.91", now});
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/audit_sink.hpp"
#include "kakunin/baseline_store.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/human_steps.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "kakunin/revocation.hpp"

namespace kakunin {

/// The schema every PostgreSQL backend uses (fixed: the event trigger and docs name it).
inline constexpr const char* audit_schema = "kakunin_audit";

struct AuditDbOptions {
    /// NOLOGIN role that owns the schema, tables and functions.
    std::string owner_role = "kakunin_owner";
    /// Role the application connects as (column-level INSERT and SELECT only).
    std::string app_role = "kakunin_app";
    /// Create the application role WITH LOGIN (set its password or authentication separately).
    bool app_login = true;
};

/// Creates the audit schema (docs/postgres.md): owner and application roles (when missing),
/// tables, append-only triggers set ENABLE ALWAYS, the seq check, monthly partitions for this
/// month and the next, the retention functions, and, when the connected user is a superuser,
/// the event triggers that refuse DDL on the schema. Runs in one transaction. On a database that
/// already has the schema it only (re)creates the roles and grants the application role.
/// Role names must be plain lowercase identifiers. Throws kakunin::Error (invalid_input,
/// database).
void init_audit_database(const std::string& conninfo, const AuditDbOptions& options = {});

struct PostgresAuditSinkOptions {
    std::string log_id;  ///< required: the sink stores and replays this one log
    /// How many times flush() reconnects after a lost connection before it throws.
    int reconnect_attempts = 2;
    /// Wait before each reconnect.
    std::chrono::milliseconds reconnect_delay{100};
    /// The longest wait for the server at a time (sending, or for the next result; connecting:
    /// at least 2 s). Past it flush() gives the connection up as lost, so a backend that stops
    /// answering (a hung host, SIGSTOP) cannot block the writer for good. Zero: no deadline.
    std::chrono::milliseconds io_timeout{10000};
    /// The most lines, and bytes of lines, the sink holds uncommitted (they pile up only while
    /// the database is away). An append() past either bound first tries to store the backlog and
    /// throws kakunin::Error (database) if it cannot: the writer keeps the refused lines, the
    /// trail stops taking orders' records from its queue and fails closed (audit_unavailable),
    /// and no line the sink took is dropped. A single append larger than the bound is taken
    /// when nothing is pending.
    std::size_t max_pending_lines = 16384;
    std::size_t max_pending_bytes = 32u << 20;
    /// The most lines, and bytes of lines, one transaction of flush() stores: a backlog goes in
    /// several transactions, in seq order, each committed before the next begins.
    std::size_t max_batch_lines = 4096;
    std::size_t max_batch_bytes = 8u << 20;
};

/// AuditSink over the kakunin_audit tables, connected as the application role. append() keeps
/// the lines in memory (bounded: max_pending_lines, max_pending_bytes); flush() stores all of
/// them, in transactions of at most max_batch_lines (records by COPY straight into the month's
/// partition, the canonical bytes verbatim as text; each transaction's checkpoints after its
/// records) and returns once the last is committed.
/// After a lost connection (server restart) it reconnects and first reads what the database
/// already holds, so a commit whose acknowledgement was lost is neither duplicated nor reported
/// durable before it is known to be committed. for_each_line() replays the committed lines of
/// the log in seq order, each checkpoint after the records it covers. Every line must belong to
/// `log_id`. Errors throw kakunin::Error (database, invalid_input); the lines then stay pending.
///
/// On a PostgresRuntime (docs/postgres.md, "One connection for every log of a process"), the
/// sinks of the runtime store through its one write connection and commit together: a flush
/// stores the pending lines of every sink of the runtime that has some, in one transaction (one
/// COPY per month's partition, all logs; at most the flushing sink's max_batch_lines and
/// max_batch_bytes in all, its own lines first), and returns once its own lines are committed;
/// a flush whose lines another sink's flush is storing waits for that commit instead of
/// writing them again. Every guarantee above holds per log. When a commit carrying a sink's
/// lines fails, its lines stay pending and its next flush throws why (the flushing sink's
/// flush throws at once). When the database refuses the transaction (not a lost connection:
/// say, a log another process continued), each log is tried again in a transaction of its
/// own: the logs it accepts commit, and the refused log's lines are left out of the other
/// sinks' transactions (its own flush stores them alone) until the database takes them.
/// `reconnect_attempts` and `reconnect_delay` are the flushing sink's; `io_timeout` is the
/// runtime's.
class PostgresAuditSink final : public LockingAuditSink {
public:
    PostgresAuditSink(std::string conninfo, PostgresAuditSinkOptions options);
    /// A sink of the runtime's group: it connects at its first use (a server that is away is
    /// reported by flush() and for_each_line(), not here). The runtime outlives it.
    PostgresAuditSink(PostgresRuntime& runtime, PostgresAuditSinkOptions options);
    ~PostgresAuditSink() override;
    PostgresAuditSink(const PostgresAuditSink&) = delete;
    PostgresAuditSink& operator=(const PostgresAuditSink&) = delete;

    /// "postgres:" + log_id (never the conninfo, which may hold a password).
    std::string name() const override;
    /// Lines appended and not yet committed, and their bytes.
    std::size_t pending_lines() const;
    std::size_t pending_bytes() const;

protected:
    void do_append(const std::string_view* lines, std::size_t count) override;
    void do_flush() override;
    void do_for_each_line(const std::function<void(std::string_view)>& fn) override;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

/// The log_ids that have records in the database, sorted (for `audit verify --postgres` and the
/// export: open a PostgresAuditSink per log and verify its for_each_line()). Throws
/// kakunin::Error (database).
std::vector<std::string> postgres_audit_log_ids(const std::string& conninfo);

/// Inserts a revocation into kakunin_audit.revocations (which NOTIFYs every listening process)
/// and returns its sequence number. Opens a connection per call; use PostgresRevocationPublisher
/// to keep one. Throws kakunin::Error (database, invalid_input for a serial that is not
/// lowercase hex).
std::uint64_t publish_revocation(const std::string& conninfo, const Revocation& revocation);

/// Keeps one connection for publishing revocations. Thread-safe (calls are serialised).
class PostgresRevocationPublisher {
public:
    explicit PostgresRevocationPublisher(std::string conninfo);
    ~PostgresRevocationPublisher();
    PostgresRevocationPublisher(const PostgresRevocationPublisher&) = delete;
    PostgresRevocationPublisher& operator=(const PostgresRevocationPublisher&) = delete;
    /// As publish_revocation(); reconnects once if the connection was lost.
    std::uint64_t publish(const Revocation& revocation);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

struct PostgresRevocationFeedOptions {
    /// Wait between reconnect attempts.
    std::chrono::milliseconds reconnect_delay{200};
    /// Revocations with a sequence number above this are delivered; 0: the whole history, so a
    /// Guard whose certificate was revoked before the feed started halts too.
    std::uint64_t start_after_seq = 0;
    /// Told about connection failures (rate: at most once per reconnect attempt). Must not
    /// throw; called on the feed's thread.
    std::function<void(std::string_view)> error_handler = {};
    /// The longest wait for the server at a time (connecting: at least 2 s); past it the feed
    /// gives the connection up and reconnects.
    std::chrono::milliseconds io_timeout{10000};
    /// How often a quiet feed catches up anyway: a backend that stopped answering sends no
    /// notifications and no error, so only a query with a deadline finds it out. Zero: never.
    std::chrono::milliseconds check_interval{5000};
};

/// RevocationFeed over LISTEN/NOTIFY. A background thread LISTENs on kakunin_revocations and
/// delivers each revocation (once per serial) to every subscriber (on that thread; listeners must
/// not block). After a lost connection, and every check_interval, it catches up on everything
/// committed since its previous catch-up, whatever the order of the sequence numbers (a lower
/// seq may commit after a higher one). subscribe() first delivers, synchronously, every
/// revocation the feed has already seen. After unsubscribe() returns the listener is not called
/// again.
class PostgresRevocationFeed final : public RevocationFeed {
public:
    /// Standalone: the feed's own LISTEN connection and thread.
    explicit PostgresRevocationFeed(std::string conninfo,
                                    PostgresRevocationFeedOptions options = {});
    /// A channel of the runtime's LISTEN connection (PostgresRuntime::revocation_feed() makes
    /// the process's one); the connection settings of `options` are the runtime's.
    PostgresRevocationFeed(PostgresRuntime& runtime, PostgresRevocationFeedOptions options);
    ~PostgresRevocationFeed() override;
    PostgresRevocationFeed(const PostgresRevocationFeed&) = delete;
    PostgresRevocationFeed& operator=(const PostgresRevocationFeed&) = delete;

    void subscribe(RevocationListener* listener) override;
    void unsubscribe(RevocationListener* listener) noexcept override;

    /// Waits until the feed is listening and has caught up; false on timeout.
    bool wait_until_listening(std::chrono::milliseconds timeout);
    /// Highest sequence number received so far (lower ones may still arrive: seqs commit out
    /// of order).
    std::uint64_t last_seq() const;
    /// How many times the feed's LISTEN connection (the runtime's, when shared) has connected.
    std::uint64_t connections() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

/// BaselineStore over kakunin_audit.baselines and baseline_approvals (append-only tables; the
/// database checks each baseline's SHA-256). Thread-safe: one connection, calls serialised,
/// reconnects once after a lost connection.
class PostgresBaselineStore final : public BaselineStore {
public:
    explicit PostgresBaselineStore(std::string conninfo);
    ~PostgresBaselineStore() override;
    PostgresBaselineStore(const PostgresBaselineStore&) = delete;
    PostgresBaselineStore& operator=(const PostgresBaselineStore&) = delete;

    StoredBaseline put_baseline(std::string_view agent_id, std::string_view json) override;
    std::optional<StoredBaseline> get_baseline(std::string_view agent_id,
                                               std::uint64_t version = 0) override;
    void put_approval(const BaselineApproval& approval) override;
    std::optional<BaselineApproval> get_approval(std::string_view agent_id,
                                                 std::uint64_t version) override;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

/// Inserts a human step into kakunin_audit.human_steps (which NOTIFYs kakunin_human_steps) and
/// returns its sequence number: what `kakunin incident ack ... --postgres` does after recording
/// the step in the CA log. Throws kakunin::Error (database, invalid_input).
std::uint64_t publish_human_step(const std::string& conninfo, const HumanStep& step);

struct PostgresHumanStepFeedOptions {
    std::chrono::milliseconds reconnect_delay{200};
    /// Told about connection failures and rows that do not parse (skipped). Must not throw;
    /// called on the feed's thread.
    std::function<void(std::string_view)> error_handler = {};
    std::chrono::milliseconds io_timeout{10000};
    /// How often a quiet feed catches up anyway (a backend that stopped answering). Zero: never.
    std::chrono::milliseconds check_interval{5000};
};

/// HumanStepFeed over LISTEN/NOTIFY on kakunin_audit.human_steps, shaped like
/// PostgresRevocationFeed: a background thread LISTENs, catches up on every commit since its
/// previous catch-up, and delivers each step once (by seq) to every subscriber, on that thread.
/// subscribe() first delivers, synchronously, the steps the feed has seen (history = true);
/// call wait_until_listening() first to have the whole table as history.
class PostgresHumanStepFeed final : public HumanStepFeed {
public:
    /// Standalone: the feed's own LISTEN connection and thread.
    explicit PostgresHumanStepFeed(std::string conninfo, PostgresHumanStepFeedOptions options = {});
    /// A channel of the runtime's LISTEN connection (PostgresRuntime::human_step_feed()).
    PostgresHumanStepFeed(PostgresRuntime& runtime, PostgresHumanStepFeedOptions options);
    ~PostgresHumanStepFeed() override;
    PostgresHumanStepFeed(const PostgresHumanStepFeed&) = delete;
    PostgresHumanStepFeed& operator=(const PostgresHumanStepFeed&) = delete;

    void subscribe(HumanStepListener* listener) override;
    void unsubscribe(HumanStepListener* listener) noexcept override;

    /// Waits until the feed is listening and has caught up; false on timeout.
    bool wait_until_listening(std::chrono::milliseconds timeout);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
