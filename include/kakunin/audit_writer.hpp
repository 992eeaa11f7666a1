// kakunin/audit_writer.hpp — turns events into the records of one log: assigns seq, takes the
// time from a Clock, hashes into the Merkle tree, optionally signs each record, emits signed
// checkpoints, and hands batches of lines to an AuditSink.
//
//   kakunin::FileAuditSink sink("state/audit/agent-7.jsonl");
//   kakunin::AuditSigner signer{kms, kms.find_key("agent:agent-7"), agent_cert_fp};
//   kakunin::AuditLogWriter log(sink, clock, signer, {"agent-7"});
//   log.append(kakunin::audit_event::order_allowed, R"({"decision":"allow"})");
//   log.flush();                       // durable from here on
//   log.close();                       // final checkpoint
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kakunin/audit_merkle.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/clock.hpp"

namespace kakunin {

struct AuditWriterOptions {
    std::string log_id;   ///< required; one log per agent (DESIGN §5)
    std::string agent;    ///< defaults to log_id
    std::string cert_fp;  ///< the agent certificate's fingerprint; defaults to the record
                          ///< signer's key_fp, else to the checkpoint signer's
    /// A checkpoint after every this many records (0: only checkpoint() and close()).
    std::uint64_t checkpoint_every = 1000;
    /// A checkpoint once this much time has passed since the last one, when records are
    /// uncovered (0: off): on the monotonic clock, or on the writer's Clock if that runs faster
    /// (simulated time), so a backwards step of the Clock never postpones one. Checked by
    /// append() and maybe_checkpoint().
    TimeNs checkpoint_interval_ns = 0;
    /// Called at open with each record the sink already holds, in order (the audit trail's
    /// journal learns from it which of its entries the log holds).
    std::function<void(const AuditRecord& record)> on_existing_record;
};

/// Single-threaded by design: one thread (the Guard's background audit thread) owns the writer;
/// wrap it in a queue to feed it from several threads. Not copyable.
///
/// Durability: append() only queues lines; flush() hands them to the sink and makes them durable,
/// and durable_size() says how many records are. If the sink throws, the queued lines stay queued
/// and flush() may be retried; lines the sink accepted are never handed to it twice.
class AuditLogWriter {
public:
    /// Opens the log on `sink`: replays the lines it already holds (seq and the tree continue
    /// from them; a line that does not verify structurally throws kakunin::Error invalid_input,
    /// because continuing would hide the damage), and if the sink cut a torn tail, records
    /// `log.truncated_tail` and flushes it before returning. `checkpoint_signer` signs
    /// checkpoints; `record_signer`, when given, signs every record (its key_fp must equal the
    /// records' cert_fp). The sink, clock and the signers' Kms must outlive the writer.
    AuditLogWriter(AuditSink& sink, const Clock& clock, AuditSigner checkpoint_signer,
                   AuditWriterOptions options,
                   std::optional<AuditSigner> record_signer = std::nullopt);
    ~AuditLogWriter();
    AuditLogWriter(const AuditLogWriter&) = delete;
    AuditLogWriter& operator=(const AuditLogWriter&) = delete;

    /// Builds the next record and queues its line; returns its seq. Queues a checkpoint when
    /// `checkpoint_every` records have accumulated since the last one. Throws kakunin::Error
    /// (invalid_input) for an unknown event or a payload that is not a canonicalisable JSON
    /// object (nothing is queued then), (invalid_state) after close(), or what the Kms throws
    /// (when signing the record, nothing is queued; when signing a due checkpoint, the record
    /// stays queued as seq size()-1 and the checkpoint is retried on the next append).
    std::uint64_t append(std::string_view event, std::string_view payload_json);
    /// Queues a checkpoint if one is due (records uncovered and `checkpoint_every` or
    /// `checkpoint_interval_ns` reached); returns whether it did. For the owning thread to call
    /// when idle, so that time-based checkpoints happen without new records. Throws what the
    /// Kms throws.
    bool maybe_checkpoint();
    /// Hands queued lines to the sink and flushes it. Throws what the sink throws.
    void flush();
    /// The first half of flush(): hands queued lines to the sink (AuditSink::append) without
    /// flushing it, so that a writer serving many logs can hand every log's lines over before
    /// the first flush (one group commit, or every file written before the first fdatasync).
    /// Throws what the sink throws (the lines stay queued).
    void hand_over();
    /// Queues a checkpoint over every record so far (unless the last one already covers them),
    /// then flushes. Returns the latest checkpoint. Throws kakunin::Error (invalid_state) on an
    /// empty log.
    AuditCheckpoint checkpoint();
    /// Final checkpoint and flush; further appends throw. Idempotent.
    void close();
    /// Continues from the lines another writer appended to the sink since this one last read
    /// or wrote it: writers that take turns on one log under a lock (FileAuditSink with
    /// Lock::per_hold, held by the caller; the CA log). The lines are checked as at open (seq and
    /// tree continue from them, on_existing_record sees each record); if the sink cut a torn
    /// tail meanwhile, `log.truncated_tail` is recorded and flushed. Returns how many lines were
    /// read. Throws kakunin::Error (invalid_state) while lines are queued or after close(), and
    /// (invalid_input) as the constructor does for a line that does not verify structurally.
    std::uint64_t catch_up();

    const std::string& log_id() const noexcept;
    /// Records appended (the next seq).
    std::uint64_t size() const noexcept;
    /// Records that the sink has made durable.
    std::uint64_t durable_size() const noexcept;
    /// Size of the last checkpoint queued (0 if none).
    std::uint64_t checkpointed_size() const noexcept;
    /// Lines queued and not yet handed to the sink.
    std::size_t pending_lines() const noexcept;
    const std::optional<AuditCheckpoint>& last_checkpoint() const noexcept;
    /// Merkle root over every record appended so far. The writer keeps only the tree's right
    /// edge (O(log n) memory however long the log grows); inclusion and consistency proofs come
    /// from a MerkleTree rebuilt from the log, e.g. AuditLogVerifier::tree().
    MerkleHash root() const;
    /// What the sink repaired at open (the writer recorded it as log.truncated_tail).
    const AuditSinkRecovery& recovery() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
