// kakunin/audit_trail.hpp — the Guard's hand-off to its audit log: a preallocated bounded queue
// that check() (and the amend, cancel and execution-report paths) fill without allocating or
// blocking, and a background writer (a thread of its own, or a SharedThreads writer that serves
// many trails) that turns each entry into a record (AuditLogWriter:
// hash, sign, checkpoint) and makes batches durable.
//
//   auto sink = std::make_shared<kakunin::FileAuditSink>("state/audit/agent-7.jsonl");
//   kakunin::GuardOptions options;
//   options.audit = kakunin::AuditTrailOptions{sink};     // per-record signatures on by default
//   kakunin::Guard guard(credentials, clock, options);    // every decision is now recorded
//
// Never drops silently: when the queue nears full, or a record has waited longer than
// `sink_failure_grace` to become durable (the sink failing, or hung and neither returning nor
// throwing), check() rejects orders with `audit_unavailable` (still recording them in the
// reserve), and allows again by itself once the writer catches up. Rejections the full queue
// could not take are counted and the count recorded (`audit.unrecorded_rejections`); what a
// shutdown could not make durable within `shutdown_deadline` is reported to `error_handler`.
// State changes have a reserve of their own (`state_reserve`) that orders never use. Backtests
// and replays set `block_when_full`: check() then waits for room and records everything.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kakunin/audit_sink.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/audit_entry.hpp"
#include "kakunin/detail/spsc_ring.hpp"
#include "kakunin/kms.hpp"
#include "kakunin/lifecycle.hpp"
#include "kakunin/order.hpp"

namespace kakunin {

class SharedThreads;

struct AuditTrailOptions {
    std::shared_ptr<AuditSink> sink;    ///< required
    std::string log_id;                 ///< default: the agent id
    bool record_signatures = true;      ///< per-record signatures by the agent's key (DESIGN §5)
    std::size_t queue_capacity = 4096;  ///< entries, preallocated
    std::size_t reserve = 256;          ///< entries kept for recording rejections when nearly full
    /// Entries kept for state changes (halt, resume, revocation, rotation, CRL update,
    /// reduce-only, cancel lists, incidents): orders, amends, cancels and execution reports never
    /// use them, so a queue full of orders cannot keep a state change out of the log. At least 1,
    /// at most a quarter of the queue.
    std::size_t state_reserve = 64;
    /// Backtests and replays only, never live trading: when the queue has no room, check() (and
    /// every push) blocks the calling thread until the writer makes room, instead of rejecting
    /// with audit_unavailable or leaving a rejection unrecorded, so a simulated day faster than
    /// the writer still records every decision. A record waiting longer than the grace is then
    /// no reason to refuse; a sink that has failed for longer than `sink_failure_grace`, or a
    /// writer that makes no room for that long, still fails closed as in live mode.
    bool block_when_full = false;
    std::size_t batch_max = 4096;  ///< records per durable write
    std::uint64_t checkpoint_every = 1000;
    std::chrono::milliseconds checkpoint_interval{1000};  ///< measured on a monotonic clock
    /// How long a record may wait to become durable, and the sink fail, before check() refuses
    /// orders with audit_unavailable. Measured on a monotonic clock from the moment the oldest
    /// record not yet durable was queued, whatever the sink is doing (failing or hung).
    std::chrono::milliseconds sink_failure_grace{2000};
    /// At shutdown the writer keeps retrying the sink until every queued record is durable, for
    /// at most this long; what is still not durable then is reported to `error_handler`.
    std::chrono::milliseconds shutdown_deadline{10000};
    /// At most one `audit.unrecorded_rejections` record per this interval (and one at shutdown).
    std::chrono::milliseconds unrecorded_report_interval{1000};
    /// Called (from the trail's threads, one call at a time) when the sink starts failing,
    /// when orders start and stop being refused for the audit's sake, and with the count of
    /// records a shutdown could not make durable. Must not throw or block for long. If unset,
    /// the shutdown loss is written to stderr (never silent); the rest is not reported.
    std::function<void(std::string_view message)> error_handler;

    /// At open the log as found must verify (docs/restart.md): the last checkpoint's signature
    /// (when it is this agent's key's) and every record no checkpoint covers (signed by this
    /// agent's key, or confirmed by the journal). Otherwise the trail refuses to open, naming
    /// what is wrong, unless a named operator accepts the log here: then `log.accepted` records
    /// who, why and the problems, before anything else is recorded.
    struct Acceptance {
        std::string by;
        std::string reason;
    };
    std::optional<Acceptance> accept_unverified_log;

    // ---- the write-ahead journal (docs/audit-format.md section 13) ----

    /// Where the journal lives: a memory-mapped file of `queue_capacity` fixed-size slots into
    /// which check() and every push write their entry before returning (no system call, no
    /// allocation). The kernel keeps those pages when the process dies, so an entry the log did
    /// not yet hold is recovered into it, in order, when the next trail opens the same log
    /// (`log.recovered`). Empty: the sink's own (`AuditSink::journal_path()`: a FileAuditSink's
    /// is its path + ".journal"; a PostgreSQL sink has none, so give one).
    std::string journal_path;
    /// false: no journal, even where the sink names one (entries then live only in memory until
    /// they are durable in the log: a process that dies loses them).
    bool journal = true;
    /// Once entries have waited this long without becoming durable in the log (a failing or
    /// slow sink), the writer thread msyncs the journal, and again this often while that lasts:
    /// what a power loss can take from entries the log lacks is at most this window (a process
    /// crash loses none of them). A working sink makes entries durable first, so no sync.
    std::chrono::milliseconds journal_sync_interval{100};

    /// The threads the Guards of one process share (shared_threads.hpp): set, this trail's
    /// records are written by its writer thread, in rounds with every other trail's, instead
    /// of a thread of its own, and its watchdog runs on the shared watchdog thread. Null:
    /// threads of its own.
    std::shared_ptr<SharedThreads> threads;
};

/// Counters, readable from any thread.
struct AuditTrailCounters {
    std::uint64_t queued = 0;   ///< entries handed over by check() and the cold paths
    std::uint64_t durable = 0;  ///< of those, the ones the sink has made durable
    /// Rejected orders, amends and cancels the full queue could not take.
    std::uint64_t unrecorded_rejections = 0;
    /// Execution reports and allowed cancels the full queue could not take (neither is ever
    /// refused, so neither waits for room).
    std::uint64_t unrecorded_reports = 0;
    std::uint64_t sink_failures = 0;  ///< failed durable writes (retried)
    /// Entries this trail found in its journal at open that the log did not hold, and recorded
    /// (with a `log.recovered` record) before anything else.
    std::uint64_t recovered = 0;
    bool healthy = true;  ///< false while orders are refused for the audit's sake
    /// Entries queued that the writer has not taken yet.
    std::uint64_t queue_depth = 0;
    /// How long the oldest entry not yet durable has waited (0 when all are durable), as the
    /// trail's watchdog saw it queued (to within its tick, at most 20 ms).
    std::int64_t durable_lag_ns = 0;
};

/// One record of the log as a trail opens it (AuditTrail's `on_record`): views valid for the
/// call only.
struct OpenedRecord {
    std::uint64_t seq = 0;
    TimeNs ts_ns = 0;
    std::string_view event;
    std::string_view cert_fp;  ///< the certificate that signed it (recovered entries: this trail's)
    std::string_view payload;  ///< the payload object's JSON text
    std::string_view canonical;  ///< the record's canonical bytes (empty for recovered ones)
    std::string_view sig;        ///< its base64 signature, or empty (unsigned, or recovered)
    bool recovered = false;      ///< recorded now, from the write-ahead journal
};

class AuditTrail {
public:
    /// Opens the log (continuing what the sink holds) and starts the writer thread. The agent's
    /// key signs checkpoints (and records, unless disabled); `cert_fp` names it. Throws
    /// kakunin::Error if the sink's content does not continue cleanly.
    /// `on_record`, when set, is called (on this thread, before the constructor returns) with
    /// every record of the log in seq order: those the sink held, then the ones recovered from
    /// the journal as they are recorded (how a Guard restores its state, docs/restart.md). What
    /// it throws fails the construction.
    AuditTrail(AuditTrailOptions options, const Clock& clock, std::shared_ptr<Kms> kms,
               KeyHandle key, std::string agent_id, std::string cert_fp,
               std::function<void(const OpenedRecord&)> on_record = {});
    /// Drains the queue, records the count of unrecorded rejections, writes a final checkpoint
    /// and stops the threads. A failing sink is retried until everything is durable or
    /// `shutdown_deadline` passes; then the number of records lost is reported (error_handler).
    ~AuditTrail();
    AuditTrail(const AuditTrail&) = delete;
    AuditTrail& operator=(const AuditTrail&) = delete;

    // ---- producer side: called with the Guard's hot lock held (one producer at a time) ----

    /// True when an order may be allowed: the queue has room beyond the reserve and the sink
    /// is healthy (no record has waited longer than the grace to become durable; a watchdog
    /// thread keeps the flag, so this reads the producer's own indices and one flag, no clock;
    /// the writer's index only when the queue looked too full by the copy last read).
    /// With `block_when_full` it first waits for that room (blocking the caller), and then
    /// refuses only while the sink has failed for longer than the grace.
    bool accepting() noexcept {
        if (m_block_when_full)
            return wait_for_room(m_order_limit - m_reserve) &&
                   !m_sink_down.load(std::memory_order_relaxed);
        return has_room(m_order_limit - m_reserve) && m_healthy.load(std::memory_order_relaxed);
    }
    /// Queues a decision. Returns false (and counts it) only when the queue is full up to the
    /// state changes' reserve, which can only happen to a rejected order.
    bool push_order(const Order& o, const Decision& d) noexcept {
        detail::AuditEntry* e = claim_below(m_order_limit);
        if (e == nullptr) {
            if (!d.allowed()) m_unrecorded.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        e->kind = detail::AuditEntry::Kind::order;
        e->ts_ns = d.ts_ns;
        e->decision = d;
        e->side = o.side;
        e->quantity = o.quantity;
        e->price = o.price;
        e->has_reference = o.reference_price.has_value();
        if (e->has_reference) e->reference_price = *o.reference_price;
        e->reasoning_length = static_cast<std::uint32_t>(o.reasoning.size());
        const std::string_view fields[5] = {o.client_order_id, o.instrument, o.counterparty,
                                            o.region, o.reasoning};
        e->set_text(fields, 5);
        publish();
        return true;
    }
    /// Queues a state change (halt, resume, revocation, rotation, CRL update, reduce-only). It
    /// may use the state changes' reserve, so orders alone can never make it fail.
    bool push_state(TimeNs at, std::string_view event, std::string_view by,
                    std::string_view reason) noexcept {
        detail::AuditEntry* e = claim_below(m_queue.capacity());
        if (e == nullptr) return false;
        e->kind = detail::AuditEntry::Kind::state;
        e->ts_ns = at;
        const std::string_view fields[3] = {event, by, reason};
        e->set_text(fields, 3);
        e->reasoning_length = static_cast<std::uint32_t>(reason.size());
        publish();
        return true;
    }

    /// Queues an event with a JSON object payload (incidents, approvals, cancel lists). Cold
    /// paths only. The payload takes as many consecutive entries as it needs (about 1,000 bytes
    /// each), all or none; like push_state it may use the state changes' reserve. Returns false
    /// only when the queue has no room for all of them.
    bool push_event(TimeNs at, std::string_view event, std::string_view payload_json) noexcept;

    // ---- producer side: the order lifecycle (docs/lifecycle.md), same contract as push_order:
    // noexcept, allocation-free, called with the Guard's hot lock held ----

    /// Queues an amend request's decision. Returns false (and counts a rejected one as an
    /// unrecorded rejection) only when the queue is full up to the state changes' reserve.
    bool push_amend(const Amend& a, const Decision& d) noexcept {
        detail::AuditEntry* e = claim_below(m_order_limit);
        if (e == nullptr) {
            if (!d.allowed()) m_unrecorded.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        e->kind = detail::AuditEntry::Kind::amend;
        e->ts_ns = d.ts_ns;
        e->decision = d;
        e->has_quantity = a.quantity.has_value();
        e->has_price = a.price.has_value();
        if (e->has_quantity) e->quantity = *a.quantity;
        if (e->has_price) e->price = *a.price;
        // The collar judged a new price against it: kept, so the log can be re-checked.
        e->has_reference = a.reference_price.has_value();
        if (e->has_reference) e->reference_price = *a.reference_price;
        e->reasoning_length = static_cast<std::uint32_t>(a.client_order_id.size());
        const std::string_view fields[1] = {a.client_order_id};
        e->set_text(fields, 1);
        publish();
        return true;
    }
    /// Queues a cancel request's decision; false as for push_amend.
    /// A cancel is never refused, so even an allowed one can meet a full queue: it is counted
    /// with the reports (unrecorded_reports).
    bool push_cancel(const Cancel& c, const Decision& d) noexcept {
        detail::AuditEntry* e = claim_below(m_order_limit);
        if (e == nullptr) {
            (d.allowed() ? m_unrecorded_reports : m_unrecorded)
                .fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        e->kind = detail::AuditEntry::Kind::cancel;
        e->ts_ns = d.ts_ns;
        e->decision = d;
        e->reasoning_length = static_cast<std::uint32_t>(c.client_order_id.size());
        const std::string_view fields[1] = {c.client_order_id};
        e->set_text(fields, 1);
        publish();
        return true;
    }
    /// Queues an execution report as applied at `at`: `instrument` and `side` are the ones that
    /// applied (the working order's when the id is working, else the report's). Returns false,
    /// and counts it (counters().unrecorded_reports), only when the queue is full up to the
    /// state changes' reserve.
    bool push_execution(TimeNs at, const ExecutionReport& r, const ExecutionResult& result,
                        std::string_view instrument, Side side) noexcept {
        detail::AuditEntry* e = claim_below(m_order_limit);
        if (e == nullptr) {
            m_unrecorded_reports.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        e->kind = detail::AuditEntry::Kind::execution;
        e->ts_ns = at;
        e->exec_type = r.type;
        e->result = result;
        e->side = side;
        e->has_quantity = r.type == ExecutionType::fill;
        e->has_price = r.type == ExecutionType::fill || r.type == ExecutionType::mark;
        e->quantity = r.quantity;
        e->price = r.price;
        // The id last: it gets the room an id too long to be working may need.
        e->instrument_length = static_cast<std::uint32_t>(instrument.size());
        e->reasoning_length = static_cast<std::uint32_t>(r.client_order_id.size());
        e->result.problem = nullptr;  // kept as text: the entry holds no address
        const std::string_view fields[3] = {
            instrument, result.problem != nullptr ? result.problem : std::string_view(),
            r.client_order_id};
        e->set_text(fields, 3);
        publish();
        return true;
    }

    // ---- anyone ----
    AuditTrailCounters counters() const noexcept;
    /// Blocks until everything queued so far is durable (or `timeout` passes); true if it is.
    bool wait_durable(std::chrono::milliseconds timeout) const;
    const std::string& log_id() const noexcept;

private:
    struct WriterTask;
    /// The writer's own thread: write_round() until it is done.
    void run() noexcept;
    /// Appends the records of the entries queued since (at most batch_max); how many entries.
    std::uint64_t take_entries() noexcept;
    /// A shared writer's first half of a round: take_entries() and hand the lines to the sink.
    void prepare_round() noexcept;
    /// One writer round (take, record, flush, journal sync, shutdown): microseconds until the
    /// next one, or -1 once the writer is done.
    std::int64_t write_round() noexcept;
    /// Asks the writer to stop and waits until it is done (joined, or off the shared thread).
    void stop_writer() noexcept;
    struct WatchTask;
    /// The watchdog's own thread: watch_once() every watch_tick() until the trail stops.
    void watch() noexcept;
    /// One look at the queue and the sink: keeps m_healthy and m_sink_down.
    void watch_once() noexcept;
    std::chrono::milliseconds watch_tick() const noexcept;
    struct ReportTask;
    /// The watchdog's messages: to the error handler at once on a thread of the trail's own;
    /// with SharedThreads, handed to its reporter thread (deliver_posted()).
    void post_report(std::string message) noexcept;
    void deliver_posted() noexcept;
    /// Fewer than `limit` entries queued (producer side): the writer's index is read only when
    /// the copy last read says otherwise.
    bool has_room(std::size_t limit) noexcept {
        return m_queue.size_seen() < limit || m_queue.size_now() < limit;
    }
    /// A slot while fewer than `limit` entries are queued, else nullptr; with block_when_full
    /// it waits for the writer to make room first (producer side, noexcept, no allocation).
    detail::AuditEntry* claim_below(std::size_t limit) noexcept {
        if (!has_room(limit) && !(m_block_when_full && wait_for_room(limit))) return nullptr;
        m_claimed = m_queue.claim();
        return m_claimed != nullptr ? &m_claimed->entry : nullptr;
    }
    /// Hands the claimed entry to the writer; with a journal, seals its slot first (checksum and
    /// sequence number into the mapped file: what a later process recovers).
    void publish() noexcept {
        if (m_journaled) m_claimed->seal(m_next_jseq++);
        m_queue.publish();
    }
    /// block_when_full: waits until fewer than `limit` entries are queued. False, without
    /// waiting any longer, once the sink has failed for longer than the grace or the writer has
    /// taken nothing from the queue for that long (a hung sink), or the trail is stopping.
    bool wait_for_room(std::size_t limit) const noexcept;

    struct Impl;
    std::unique_ptr<Impl> m_impl;
    /// Filled by the Guard (hot lock held), emptied by the writer thread.
    /// The slots are the journal's mapped file when there is a journal.
    detail::SpscRing<detail::JournalSlot> m_queue;
    detail::JournalSlot* m_claimed = nullptr;  ///< producer side: the slot being filled
    bool m_journaled;
    std::uint64_t m_next_jseq = 1;  ///< producer side: the next slot's sequence number
    std::size_t m_state_reserve;    ///< the last entries of the queue: state changes only
    std::size_t m_order_limit;      ///< capacity - m_state_reserve: where orders must stop
    std::size_t m_reserve;          ///< of m_order_limit, kept for rejections
    bool m_block_when_full;
    std::atomic<bool> m_healthy{true};
    /// The sink has failed for longer than the grace (set by the watchdog).
    std::atomic<bool> m_sink_down{false};
    std::atomic<std::uint64_t> m_unrecorded{0};
    std::atomic<std::uint64_t> m_unrecorded_reports{0};
    std::atomic<bool> m_stop{false};
    std::thread m_thread;                       ///< the writer's own thread (no SharedThreads)
    std::unique_ptr<WriterTask> m_task;         ///< the writer on a SharedThreads thread
    std::thread m_watchdog;                     ///< the watchdog's own thread (no SharedThreads)
    std::unique_ptr<WatchTask> m_watch_task;    ///< the watchdog on a SharedThreads thread
    std::unique_ptr<ReportTask> m_report_task;  ///< delivers its messages (SharedThreads)
};

}  // namespace kakunin
