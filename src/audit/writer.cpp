// AuditLogWriter: events -> canonical records -> Merkle tree -> signatures -> sink.
#include "kakunin/audit_writer.hpp"

#include <chrono>
#include <vector>

#include "audit/canonical_scan.hpp"
#include "audit/json.hpp"
#include "kakunin/error.hpp"

namespace kakunin {

struct AuditLogWriter::Impl {
    Impl(AuditSink& s, const Clock& c, AuditSigner cs, AuditWriterOptions o,
         std::optional<AuditSigner> rs)
        : sink(s),
          clock(c),
          checkpoint_signer(std::move(cs)),
          record_signer(std::move(rs)),
          options(std::move(o)) {}

    AuditSink& sink;
    const Clock& clock;
    AuditSigner checkpoint_signer;
    std::optional<AuditSigner> record_signer;
    AuditWriterOptions options;
    audit_detail::RecordTemplate tmpl;

    MerkleFrontier tree;
    std::uint64_t durable = 0;
    std::uint64_t appended = 0;
    std::optional<AuditCheckpoint> last_checkpoint;
    TimeNs last_checkpoint_time = 0;  ///< of the last checkpoint, or when the writer opened
    /// The same moment on the monotonic clock: a step of the injected clock (NTP, an operator,
    /// a restored VM) must not postpone the next time-based checkpoint.
    std::chrono::steady_clock::time_point last_checkpoint_steady = std::chrono::steady_clock::now();
    AuditSinkRecovery recovery;
    bool closed = false;
    std::uint64_t lines_seen = 0;  ///< lines of the sink this writer has read or handed to it

    // Queued lines live back to back in one buffer; `ends[i]` is where line i ends and
    // `seq_after[i]` the record count once line i is stored (for durable_size).
    std::string pending;
    std::vector<std::size_t> ends;
    std::vector<std::uint64_t> seq_after;
    std::vector<std::string_view> views;
    std::string scratch;

    void queue_line_end() {
        ends.push_back(pending.size());
        seq_after.push_back(tree.size());
    }

    void queue_checkpoint() {
        const std::uint64_t n = tree.size();
        AuditCheckpoint c = sign_audit_checkpoint(checkpoint_signer, options.log_id, n, tree.root(),
                                                  clock.now_ns());
        pending += c.line();
        queue_line_end();
        last_checkpoint_time = c.ts_ns;
        last_checkpoint_steady = std::chrono::steady_clock::now();
        last_checkpoint = std::move(c);
    }

    std::uint64_t checkpointed() const { return last_checkpoint ? last_checkpoint->size : 0; }

    bool checkpoint_due() const {
        const std::uint64_t uncovered = tree.size() - checkpointed();
        if (uncovered == 0) return false;
        if (options.checkpoint_every != 0 && uncovered >= options.checkpoint_every) return true;
        if (options.checkpoint_interval_ns <= 0) return false;
        // Due when the interval has passed on the monotonic clock, or on the injected clock
        // (a backtest's simulated time runs faster than real time); a backwards step of the
        // injected clock therefore never delays a checkpoint beyond the real interval.
        const auto elapsed = std::chrono::steady_clock::now() - last_checkpoint_steady;
        return std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count() >=
                   options.checkpoint_interval_ns ||
               clock.now_ns() - last_checkpoint_time >= options.checkpoint_interval_ns;
    }

    /// Continues the tree from the lines the sink holds after the first `lines_seen`.
    std::uint64_t replay() {
        std::uint64_t line_no = lines_seen;
        audit_detail::ParsedLine parsed;
        std::string error;
        sink.for_each_line_from(lines_seen, [&](std::string_view line) {
            ++line_no;
            auto fail = [&](const std::string& what) {
                throw Error(
                    ErrorCategory::invalid_input,
                    "audit log " + sink.name() + " line " + std::to_string(line_no) + ": " + what);
            };
            if (!audit_detail::parse_line(line, parsed, error)) fail(error);
            if (parsed.kind == audit_detail::LineKind::record) {
                const AuditRecord& r = parsed.record;
                if (r.log_id != options.log_id) {
                    fail("record of log \"" + r.log_id + "\" in log \"" + options.log_id + "\"");
                }
                if (r.seq != tree.size()) {
                    fail("seq " + std::to_string(r.seq) + " where " + std::to_string(tree.size()) +
                         " was expected");
                }
                tree.append(merkle_leaf_hash(parsed.canonical));
                if (options.on_existing_record) {
                    // parse_line leaves the record's own copy of its canonical bytes stale.
                    parsed.record.canonical.assign(parsed.canonical);
                    options.on_existing_record(r);
                }
            } else {
                const AuditCheckpoint& c = parsed.checkpoint;
                if (c.log_id != options.log_id) {
                    fail("checkpoint of log \"" + c.log_id + "\" in log \"" + options.log_id +
                         "\"");
                }
                // The writer puts each checkpoint right after the records it covers.
                if (c.size != tree.size() || c.root != tree.root()) {
                    fail("checkpoint at size " + std::to_string(c.size) +
                         " does not match the records before it");
                }
                last_checkpoint = c;
            }
        });
        durable = tree.size();
        appended = durable;
        const std::uint64_t read = line_no - lines_seen;
        lines_seen = line_no;
        return read;
    }

    /// Records what the sink cut (a torn tail) and makes it durable.
    void record_recovery(AuditLogWriter& writer) {
        audit_detail::json payload = {{"cut_offset", recovery.cut_offset},
                                      {"cut_bytes", recovery.cut_bytes},
                                      {"reason", recovery.reason},
                                      {"sink", sink.name()}};
        writer.append(audit_event::log_truncated_tail, payload.dump());
        writer.flush();
    }
};

AuditLogWriter::AuditLogWriter(AuditSink& sink, const Clock& clock, AuditSigner checkpoint_signer,
                               AuditWriterOptions options, std::optional<AuditSigner> record_signer)
    : m_impl(std::make_unique<Impl>(sink, clock, std::move(checkpoint_signer), std::move(options),
                                    std::move(record_signer))) {
    Impl& d = *m_impl;
    if (d.options.log_id.empty()) {
        throw Error(ErrorCategory::invalid_input, "audit writer: empty log_id");
    }
    if (d.options.agent.empty()) d.options.agent = d.options.log_id;
    if (d.options.cert_fp.empty()) {
        d.options.cert_fp = d.record_signer ? d.record_signer->key_fp : d.checkpoint_signer.key_fp;
    }
    if (d.record_signer && d.record_signer->key_fp != d.options.cert_fp) {
        throw Error(ErrorCategory::invalid_input,
                    "audit writer: record signer " + d.record_signer->key_fp +
                        " does not match the records' cert_fp " + d.options.cert_fp);
    }
    d.tmpl =
        audit_detail::make_record_template(d.options.log_id, d.options.agent, d.options.cert_fp);
    d.replay();
    d.last_checkpoint_time = d.clock.now_ns();
    d.last_checkpoint_steady = std::chrono::steady_clock::now();
    d.recovery = sink.recovery();
    if (d.recovery.tail_cut) d.record_recovery(*this);
}

std::uint64_t AuditLogWriter::catch_up() {
    Impl& d = *m_impl;
    if (d.closed) throw Error(ErrorCategory::invalid_state, "audit writer: log is closed");
    if (!d.ends.empty())
        throw Error(ErrorCategory::invalid_state,
                    "audit writer: cannot continue from other writers' lines while " +
                        std::to_string(d.ends.size()) + " of its own are queued");
    const std::uint64_t read = d.replay();
    // A cut made since the last one this writer recorded (another writer's torn last line).
    const AuditSinkRecovery now = d.sink.recovery();
    if (now.tail_cut && (!d.recovery.tail_cut || now.cut_offset != d.recovery.cut_offset ||
                         now.cut_bytes != d.recovery.cut_bytes)) {
        d.recovery = now;
        d.record_recovery(*this);
    }
    return read;
}

AuditLogWriter::~AuditLogWriter() = default;

std::uint64_t AuditLogWriter::append(std::string_view event, std::string_view payload_json) {
    Impl& d = *m_impl;
    if (d.closed) throw Error(ErrorCategory::invalid_state, "audit writer: log is closed");
    if (!is_valid_audit_event(event)) {
        throw Error(ErrorCategory::invalid_input,
                    "audit record: unknown event \"" + std::string(event) + "\"");
    }
    // Payloads that are already canonical (the usual case: built by Kakunin) are used as they
    // are; anything else is canonicalised, or refused with the member that prevents it.
    std::string converted;
    std::string_view payload = payload_json;
    if (!audit_detail::is_canonical_json(payload_json)) {
        converted = canonical_json(payload_json);
        payload = converted;
    }
    if (payload.empty() || payload.front() != '{') {
        throw Error(ErrorCategory::invalid_input, "payload: not a JSON object");
    }
    const std::uint64_t seq = d.tree.size();
    d.scratch.clear();
    audit_detail::build_record_text(d.tmpl, event, payload, seq, d.clock.now_ns(), d.scratch);
    if (d.record_signer) {
        const std::vector<std::uint8_t> sig =
            d.record_signer->kms.get().sign(d.record_signer->key, d.scratch);
        d.pending += audit_detail::record_line(d.scratch, base64_encode(sig.data(), sig.size()));
    } else {
        d.pending += d.scratch;
    }
    d.tree.append(merkle_leaf_hash(d.scratch));
    d.queue_line_end();
    if (d.checkpoint_due()) d.queue_checkpoint();
    return seq;
}

bool AuditLogWriter::maybe_checkpoint() {
    Impl& d = *m_impl;
    if (d.closed || !d.checkpoint_due()) return false;
    d.queue_checkpoint();
    return true;
}

void AuditLogWriter::flush() {
    hand_over();
    m_impl->sink.flush();
    m_impl->durable = m_impl->appended;
}

void AuditLogWriter::hand_over() {
    Impl& d = *m_impl;
    if (!d.ends.empty()) {
        d.views.clear();
        std::size_t begin = 0;
        for (std::size_t end : d.ends) {
            d.views.emplace_back(d.pending.data() + begin, end - begin);
            begin = end;
        }
        d.sink.append(d.views.data(), d.views.size());
        // Handed over: a failing flush below must not make a retry append them twice.
        d.appended = d.seq_after.back();
        d.lines_seen += d.views.size();
        d.pending.clear();
        d.ends.clear();
        d.seq_after.clear();
    }
}

AuditCheckpoint AuditLogWriter::checkpoint() {
    Impl& d = *m_impl;
    if (d.tree.size() == 0) {
        throw Error(ErrorCategory::invalid_state, "audit writer: no records to checkpoint");
    }
    if (d.checkpointed() != d.tree.size()) d.queue_checkpoint();
    flush();
    return *d.last_checkpoint;
}

void AuditLogWriter::close() {
    Impl& d = *m_impl;
    if (d.closed) return;
    if (d.tree.size() != 0 && d.checkpointed() != d.tree.size()) d.queue_checkpoint();
    flush();
    d.closed = true;
}

const std::string& AuditLogWriter::log_id() const noexcept { return m_impl->options.log_id; }
std::uint64_t AuditLogWriter::size() const noexcept { return m_impl->tree.size(); }
std::uint64_t AuditLogWriter::durable_size() const noexcept { return m_impl->durable; }
std::uint64_t AuditLogWriter::checkpointed_size() const noexcept { return m_impl->checkpointed(); }
std::size_t AuditLogWriter::pending_lines() const noexcept { return m_impl->ends.size(); }
const std::optional<AuditCheckpoint>& AuditLogWriter::last_checkpoint() const noexcept {
    return m_impl->last_checkpoint;
}
MerkleHash AuditLogWriter::root() const { return m_impl->tree.root(); }
const AuditSinkRecovery& AuditLogWriter::recovery() const noexcept { return m_impl->recovery; }

}  // namespace kakunin
