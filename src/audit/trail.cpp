// AuditTrail: the background writer behind the Guard's bounded queue.
#include "kakunin/audit_trail.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "audit/canonical_scan.hpp"
#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "io/durable_file.hpp"
#include "journal.hpp"
#include "json.hpp"
#include "kakunin/audit_writer.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/shared_threads.hpp"
#include "runtime/task_thread.hpp"

namespace kakunin {
namespace {

/// The writer stamps each record with the time of the event it records (the decision's
/// clock reading), and checkpoints made while idle with the Guard's clock.
class EventClock final : public Clock {
public:
    explicit EventClock(const Clock& base) : m_base(base) {}
    TimeNs now_ns() const noexcept override { return m_event != 0 ? m_event : m_base.now_ns(); }
    void set(TimeNs t) noexcept { m_event = t; }
    void clear() noexcept { m_event = 0; }

private:
    const Clock& m_base;
    TimeNs m_event = 0;  // only the writer thread reads and writes it
};

std::string dump_replacing(const nlohmann::json& p) {
    // Invalid UTF-8 from the agent or the venue must not make the record unwritable: replace,
    // keep the rest.
    return p.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string order_payload(const detail::AuditEntry& e) {
    nlohmann::json order;
    order["client_order_id"] = std::string(e.field(0));
    order["instrument"] = std::string(e.field(1));
    order["counterparty"] = std::string(e.field(2));
    order["region"] = std::string(e.field(3));
    order["side"] = to_string(e.side);
    order["quantity"] = to_string(e.quantity);
    order["price"] = to_string(e.price);
    if (e.has_reference) order["reference_price"] = to_string(e.reference_price);
    nlohmann::json p;
    p["order"] = std::move(order);
    p["decision"] = to_string(e.decision.verdict);
    p["reasons"] = nlohmann::json::array();
    for (ReasonCode r : e.decision.reasons) p["reasons"].push_back(to_string(r));
    p["score_ppm"] = e.decision.score_ppm;
    p["components_ppm"] = nlohmann::json::object();
    for (std::size_t i = 0; i < score_component_count; ++i)
        p["components_ppm"][component_name(i)] = e.decision.components_ppm[i];
    p["reasoning"] = std::string(e.field(4));
    if (e.reasoning_length > e.length[4]) p["reasoning_truncated_from"] = e.reasoning_length;
    return dump_replacing(p);
}

std::string state_payload(const detail::AuditEntry& e) {
    nlohmann::json p;
    p["by"] = std::string(e.field(1));
    p["reason"] = std::string(e.field(2));
    return dump_replacing(p);
}

/// "decision" and "reasons", as an order decision's payload has them.
void add_decision(nlohmann::json& p, const Decision& d) {
    p["decision"] = to_string(d.verdict);
    p["reasons"] = nlohmann::json::array();
    for (ReasonCode r : d.reasons) p["reasons"].push_back(to_string(r));
}

/// The id field of an amend or cancel entry, with the length it had when longer than stored.
nlohmann::json request_target(const detail::AuditEntry& e) {
    nlohmann::json t;
    t["client_order_id"] = std::string(e.field(0));
    if (e.reasoning_length > e.length[0]) t["client_order_id_truncated_from"] = e.reasoning_length;
    return t;
}

std::string amend_payload(const detail::AuditEntry& e) {
    nlohmann::json amend = request_target(e);
    if (e.has_quantity) amend["quantity"] = to_string(e.quantity);
    if (e.has_price) amend["price"] = to_string(e.price);
    if (e.has_reference) amend["reference_price"] = to_string(e.reference_price);
    nlohmann::json p;
    p["amend"] = std::move(amend);
    add_decision(p, e.decision);
    return dump_replacing(p);
}

std::string cancel_payload(const detail::AuditEntry& e) {
    nlohmann::json p;
    p["cancel"] = request_target(e);
    add_decision(p, e.decision);
    return dump_replacing(p);
}

std::string_view execution_event(ExecutionType t) {
    switch (t) {
        case ExecutionType::ack: return audit_event::execution_ack;
        case ExecutionType::reject: return audit_event::execution_reject;
        case ExecutionType::fill: return audit_event::execution_fill;
        case ExecutionType::cancelled: return audit_event::execution_cancelled;
        case ExecutionType::expired: return audit_event::execution_expired;
        case ExecutionType::mark: return audit_event::execution_mark;
    }
    return {};  // a type outside the enum (a cast): see execution_payload
}

bool known_type(ExecutionType t) { return !execution_event(t).empty(); }

std::string execution_payload(const detail::AuditEntry& e) {
    nlohmann::json p;
    const bool mark = e.exec_type == ExecutionType::mark;
    // Fields: instrument, client_order_id (docs/audit-format.md §2.1).
    p["instrument"] = std::string(e.field(0));
    if (e.instrument_length > e.length[0]) p["instrument_truncated_from"] = e.instrument_length;
    if (!mark) {
        p["client_order_id"] = std::string(e.field(2));
        if (e.reasoning_length > e.length[2])
            p["client_order_id_truncated_from"] = e.reasoning_length;
        p["side"] = to_string(e.side);
    }
    if (e.has_quantity) p["quantity"] = to_string(e.quantity);
    if (e.has_price) p["price"] = to_string(e.price);
    p["applied"] = e.result.applied;
    p["unknown_order"] = e.result.unknown_order;
    p["order_closed"] = e.result.order_closed;
    p["reduce_only_entered"] = e.result.reduce_only_entered;
    if (e.length[1] != 0) p["problem"] = std::string(e.field(1));
    if (!known_type(e.exec_type))  // recorded, never dropped, and said to be what it is
        p["problem"] = "execution report of unknown type " +
                       std::to_string(static_cast<unsigned>(e.exec_type)) + " (recorded as ack)";
    return dump_replacing(p);
}

/// The event and payload of a lifecycle entry (amend, cancel, execution).
std::pair<std::string_view, std::string> lifecycle_record(const detail::AuditEntry& e) {
    switch (e.kind) {
        case detail::AuditEntry::Kind::amend:
            return {e.decision.allowed() ? audit_event::amend_allowed : audit_event::amend_rejected,
                    amend_payload(e)};
        case detail::AuditEntry::Kind::cancel:
            return {
                e.decision.allowed() ? audit_event::cancel_allowed : audit_event::cancel_rejected,
                cancel_payload(e)};
        default:
            return {
                known_type(e.exec_type) ? execution_event(e.exec_type) : audit_event::execution_ack,
                execution_payload(e)};
    }
}

std::string_view order_event(Verdict v) {
    switch (v) {
        case Verdict::allow: return audit_event::order_allowed;
        case Verdict::warn: return audit_event::order_warned;
        case Verdict::reject: return audit_event::order_rejected;
    }
    return audit_event::order_rejected;
}

/// The record an entry makes: its event and payload. A JSON event's `parts` entries (the entry
/// itself is part 0) give their pieces of the payload in order.
template <class PartAt>
std::pair<std::string_view, std::string> record_of(const detail::AuditEntry& e, PartAt part_at) {
    switch (e.kind) {
        case detail::AuditEntry::Kind::order:
            return {order_event(e.decision.verdict), order_payload(e)};
        case detail::AuditEntry::Kind::state: return {e.field(0), state_payload(e)};
        case detail::AuditEntry::Kind::json: {
            std::string payload;
            payload.reserve(e.reasoning_length);
            for (std::uint32_t k = 0; k < e.parts; ++k) payload.append(part_at(k).field(1));
            return {e.field(0), std::move(payload)};
        }
        default: return lifecycle_record(e);
    }
}

/// Records the trail's writer makes of its own, from no entry: the rest of a log's records
/// are its entries', in order (how the journal's recovery knows which entries the log holds).
bool made_by_writer(std::string_view event) {
    return event == audit_event::log_truncated_tail || event == audit_event::log_recovered ||
           event == audit_event::log_gap || event == audit_event::log_accepted ||
           event == audit_event::audit_unrecorded_rejections;
}

}  // namespace

namespace {

std::int64_t steady_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t to_ns(std::chrono::milliseconds d) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

}  // namespace

struct AuditTrail::Impl {
    Impl(AuditTrailOptions o, const Clock& c, std::shared_ptr<Kms> k, KeyHandle key,
         std::string agent, std::string fp, std::function<void(const OpenedRecord&)> on_record)
        : options(std::move(o)), clock(c), event_clock(c), kms(std::move(k)) {
        if (!options.sink) throw Error(ErrorCategory::invalid_input, "audit trail: no sink");
        if (options.log_id.empty()) options.log_id = agent;
        AuditWriterOptions w;
        w.log_id = options.log_id;
        w.agent = agent;
        w.cert_fp = fp;
        w.checkpoint_every = options.checkpoint_every;
        w.checkpoint_interval_ns = to_ns(options.checkpoint_interval);
        AuditSigner signer{*kms, key, fp};
        std::optional<AuditSigner> record_signer;
        if (options.record_signatures) record_signer = signer;
        where = "audit trail " + options.log_id + " (sink " + options.sink->name() + "): ";
        const std::size_t capacity = std::max<std::size_t>(options.queue_capacity, 16);
        // Beside the journal (where there would be one): the note of a shutdown's loss.
        const std::string place =
            options.journal_path.empty() ? options.sink->journal_path() : options.journal_path;
        if (!place.empty()) {
            constexpr std::string_view suffix = ".journal";
            const bool named =
                place.size() > suffix.size() &&
                place.compare(place.size() - suffix.size(), suffix.size(), suffix) == 0;
            gap_path = (named ? place.substr(0, place.size() - suffix.size()) : place) + ".gap";
        }
        if (options.journal) {
            if (options.journal_path.empty()) options.journal_path = options.sink->journal_path();
            if (!options.journal_path.empty())
                journal = std::make_unique<audit_detail::Journal>(options.journal_path,
                                                                  options.log_id, capacity);
        }
        // What the log already holds after the journal's watermark: its entries' records.
        const audit_detail::Journal::Mark mark = journal ? journal->mark() : Mark{};
        std::uint64_t existing = 0;
        std::vector<Held> held;
        std::uint64_t held_count = 0;
        LastEntry last_entry;  // the log's last record that came from an entry
        // The last records as found (a sliding window): those no checkpoint covers are checked
        // once the writer has read the log (check_found_log).
        std::deque<Found> window;
        std::uint64_t found = 0;
        {
            w.on_existing_record = [&](const AuditRecord& r) {
                ++found;
                window.push_back({r.seq, r.canonical, r.sig});
                if (window.size() > max_checked_tail) window.pop_front();
                if (on_record) {
                    OpenedRecord opened;
                    opened.seq = r.seq;
                    opened.ts_ns = r.ts_ns;
                    opened.event = r.event;
                    opened.cert_fp = audit_detail::record_cert_fp(r.canonical);
                    opened.payload = audit_detail::record_payload_text(r.canonical);
                    opened.canonical = r.canonical;
                    opened.sig = r.sig;
                    on_record(opened);
                }
                if (!journal) return;
                ++existing;
                if (made_by_writer(r.event)) return;
                last_entry.present = true;
                last_entry.seq = r.seq;
                last_entry.ts_ns = r.ts_ns;
                last_entry.event.assign(r.event);
                last_entry.payload.assign(audit_detail::record_payload_text(r.canonical));
                if (r.seq < mark.records) return;
                if (held.size() < capacity) held.push_back({r.seq, r.event, r.ts_ns});
                ++held_count;
            };
        }
        writer =
            std::make_unique<AuditLogWriter>(*options.sink, event_clock, signer, w, record_signer);
        const std::uint64_t covered = writer->checkpointed_size();
        const std::optional<AuditCheckpoint> last_checkpoint = writer->last_checkpoint();
        if (journal) recover(mark, existing, last_entry, held, held_count, capacity, fp, on_record);
        check_found_log(found, covered, last_checkpoint, window, kms->public_key(key).spki_der, fp);
        record_gap();
    }

    /// A record as the trail found it (check_found_log).
    struct Found {
        std::uint64_t seq;
        std::string canonical, sig;
    };
    /// The longest uncovered tail checked record by record; a longer one is refused.
    static constexpr std::size_t max_checked_tail = 65536;

    /// The log as found must verify before anything is added (docs/restart.md): its last
    /// checkpoint's signature, where it is this agent's key's, and every record no checkpoint
    /// covers: signed by this agent's key, or confirmed by the journal (the records after its
    /// watermark, which recover() compared with its entries). Otherwise the trail does not open,
    /// unless an operator accepts the log (`accept_unverified_log`): then `log.accepted` records
    /// who, why and what was wrong.
    void check_found_log(std::uint64_t found, std::uint64_t covered,
                         const std::optional<AuditCheckpoint>& checkpoint,
                         const std::deque<Found>& window,
                         const std::vector<std::uint8_t>& public_key, std::string_view fp) {
        std::vector<std::string> problems;
        if (checkpoint &&
            !crypto::verify_signature(public_key, checkpoint->signed_text(), checkpoint->sig)) {
            // Another certificate's key (a replacement agent continuing the log) cannot be
            // checked here; `kakunin audit verify` checks it against the certificates.
            if (checkpoint->key_fp == fp)
                problems.push_back("the last checkpoint (size " + std::to_string(checkpoint->size) +
                                   ") does not verify under this agent's key");
        }
        std::uint64_t unsigned_records = 0, first_bad = 0;
        if (found > covered) {
            if (found - covered > window.size()) {
                problems.push_back(std::to_string(found - covered) +
                                   " records after the last checkpoint: too many to check one "
                                   "by one");
            } else {
                for (const Found& f : window) {
                    if (f.seq < covered || (f.seq >= confirmed_from && f.seq < confirmed_to))
                        continue;
                    bool ok = false;
                    try {
                        ok = !f.sig.empty() &&
                             crypto::verify_signature(public_key, f.canonical,
                                                      crypto::base64_decode(f.sig, "sig"));
                    } catch (const std::exception&) {
                    }
                    if (!ok && unsigned_records++ == 0) first_bad = f.seq;
                }
            }
        }
        if (unsigned_records != 0)
            problems.push_back(std::to_string(unsigned_records) + " record(s) from seq " +
                               std::to_string(first_bad) +
                               " are covered by no checkpoint and carry no signature of this "
                               "agent's key (an unsigned log cut off by a crash, or lines "
                               "added by something else)");
        if (problems.empty()) return;
        std::string all;
        for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
        if (!options.accept_unverified_log)
            throw Error(ErrorCategory::unauthorised,
                        where + "the log as found does not verify: " + all +
                            ". Check it (kakunin audit verify); to continue it anyway a named "
                            "operator must accept it (AuditTrailOptions::accept_unverified_log, "
                            "recorded as log.accepted)");
        nlohmann::json p;
        p["by"] = options.accept_unverified_log->by;
        p["reason"] = options.accept_unverified_log->reason;
        p["problems"] = problems;
        writer->append(audit_event::log_accepted, dump_replacing(p));
        writer->flush();
    }

    /// A trail that stopped with records its sink had not made durable, and no journal to keep
    /// them, left a note (gap_path): the log says so now (`log.gap`), durably, before anything
    /// else; then the note goes. Throws (the trail does not open) for a note of another log.
    void record_gap() {
        if (gap_path.empty()) return;
        std::ifstream in(gap_path, std::ios::binary);
        if (!in) return;
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const nlohmann::json note = audit_detail::parse_strict(text, "audit gap note " + gap_path);
        const auto log = note.find("log_id");
        if (log == note.end() || !log->is_string() || *log != options.log_id)
            throw Error(ErrorCategory::invalid_state, "audit gap note " + gap_path +
                                                          " is not of log " + options.log_id +
                                                          ": move it aside to open the log");
        nlohmann::json p;
        for (const char* member :
             {"count", "unrecorded_rejections", "noted_at_ns", "last_error", "sink"})
            if (note.contains(member)) p[member] = note[member];
        p["note"] = gap_path;
        writer->append(audit_event::log_gap, p.dump());
        writer->flush();
        if (std::remove(gap_path.c_str()) == 0) io::sync_parent_directory(gap_path);
    }

    /// At shutdown, `lost` records not durable and no journal: noted for the next trail.
    bool note_gap(std::uint64_t lost, std::uint64_t uncounted) noexcept {
        if (gap_path.empty() || journal) return false;
        try {
            nlohmann::json note;
            note["log_id"] = options.log_id;
            note["count"] = lost;
            note["unrecorded_rejections"] = uncounted;
            note["noted_at_ns"] = clock.now_ns();
            note["last_error"] = get_last_error();
            note["sink"] = options.sink->name();
            io::write_durable(gap_path, dump_replacing(note) + "\n");
            return true;
        } catch (...) {
            return false;
        }
    }

    using Mark = audit_detail::Journal::Mark;
    /// A record of the log after the journal's watermark that came from an entry.
    struct Held {
        std::uint64_t seq;
        std::string event;
        TimeNs ts_ns;
    };

    /// The log's last record that came from an entry, as found at open.
    struct LastEntry {
        bool present = false;
        std::uint64_t seq = 0;
        TimeNs ts_ns = 0;
        std::string event, payload;
    };

    /// The journal's entries from `found` grouped into records (a JSON event's parts make one):
    /// the index of each record's first entry.
    static std::vector<std::size_t> record_starts(const audit_detail::Journal::Found& found) {
        std::vector<std::size_t> starts;
        for (std::size_t i = 0; i < found.entries.size();) {
            starts.push_back(i);
            const detail::AuditEntry& e = found.entries[i];
            i += e.kind == detail::AuditEntry::Kind::json ? e.parts : 1;
        }
        return starts;
    }

    /// Appends the record of the entries starting at found.entries[start], at the time its
    /// event happened, and hands it to `on_record`. Returns its seq.
    std::uint64_t record_entry(const audit_detail::Journal::Found& found, std::size_t start,
                               std::string_view fp,
                               const std::function<void(const OpenedRecord&)>& on_record) {
        const detail::AuditEntry& e = found.entries[start];
        const auto rec = record_of(e, [&](std::uint32_t k) -> const detail::AuditEntry& {
            return found.entries[start + k];
        });
        event_clock.set(e.ts_ns);
        const std::uint64_t seq = writer->append(rec.first, rec.second);
        event_clock.clear();
        if (on_record) {
            OpenedRecord o;
            o.seq = seq;
            o.ts_ns = e.ts_ns;
            o.event = rec.first;
            o.cert_fp = fp;
            o.payload = rec.second;
            o.recovered = true;
            on_record(o);
        }
        return seq;
    }

    /// The log holds fewer records than the journal's watermark says were durable: the storage
    /// lost records it had confirmed (a kernel's last commit before a filesystem error, a
    /// database failing over to a replica that lagged), or someone cut the log. The journal's
    /// slots at and before the watermark keep their entries until reused; when they still hold
    /// the log's last entry-made record (the same event, payload and time) and every entry after
    /// it, those entries' records are appended again, in order, at the times their events
    /// happened. Returns how many; throws (the trail does not open, nothing is written) when
    /// the journal cannot give them all back. Never guesses: only an exact match restores.
    std::uint64_t restore_lost(Mark mark, std::uint64_t existing, const LastEntry& last,
                               std::string_view fp,
                               const std::function<void(const OpenedRecord&)>& on_record) {
        const std::string at = "audit journal " + journal->path() + ": the log held " +
                               std::to_string(mark.records) + " records durably and now holds " +
                               std::to_string(existing) + ": ";
        const std::string advice =
            ". If the log was replaced on purpose, remove the journal too (the entries it holds "
            "are then not recorded)";
        if (!last.present)
            throw Error(ErrorCategory::invalid_state,
                        at +
                            "it was cut or replaced, and holds no record of the journal's "
                            "entries to continue from" +
                            advice);
        const std::uint64_t from =
            mark.jseq > journal->capacity() ? mark.jseq - journal->capacity() : 0;
        const audit_detail::Journal::Found found = journal->scan(from);
        const std::vector<std::size_t> starts = record_starts(found);
        // The records at or before the watermark, the last ending with its entry.
        std::size_t n = 0;
        while (n < starts.size() && found.jseqs[starts[n]] <= mark.jseq) ++n;
        const std::size_t end =
            n == 0 ? 0 : (n < starts.size() ? starts[n] : found.entries.size()) - 1;
        if (n == 0 || found.jseqs[end] != mark.jseq)
            throw Error(ErrorCategory::invalid_state,
                        at + "the journal no longer holds entry " + std::to_string(mark.jseq) +
                            " (the watermark's), so the lost records cannot be restored; nothing "
                            "was recorded" +
                            advice);
        // The log's last entry-made record is `after_last` records before the watermark's, less
        // the records the writer makes itself among the lost ones (it has no entry): its entry
        // is one of the last after_last + 1 groups up to the watermark. The journal must still
        // reach back that far, and exactly one of them may match: records alike in every byte
        // (a simulated clock) could otherwise be taken for one another, dropping decisions or
        // recording one twice.
        const std::uint64_t after_last = mark.records - 1 - last.seq;
        const std::string which = "the log's last record (seq " + std::to_string(last.seq) + ", " +
                                  last.event + " at " + std::to_string(last.ts_ns) + " ns)";
        if (n - 1 < after_last)
            throw Error(ErrorCategory::invalid_state,
                        at + "the journal no longer reaches back to the entry of " + which +
                            ", so the records after it cannot be restored; nothing was "
                            "recorded" +
                            advice);
        const std::size_t lower = n - 1 - after_last;
        std::optional<std::size_t> match;
        std::size_t matches = 0;
        for (std::size_t g = lower; g < n; ++g) {
            const detail::AuditEntry& e = found.entries[starts[g]];
            const auto rec = record_of(e, [&](std::uint32_t k) -> const detail::AuditEntry& {
                return found.entries[starts[g] + k];
            });
            if (rec.first != last.event || (e.ts_ns != 0 && e.ts_ns != last.ts_ns)) continue;
            const std::string payload = audit_detail::is_canonical_json(rec.second)
                                            ? rec.second
                                            : canonical_json(rec.second);
            if (payload != last.payload) continue;
            if (matches++ == 0) match = g;
        }
        if (!match)
            throw Error(ErrorCategory::invalid_state,
                        at + "the journal no longer holds the entry of " + which +
                            ", so the records after it cannot be restored; nothing was "
                            "recorded" +
                            advice);
        if (matches > 1)
            throw Error(ErrorCategory::invalid_state,
                        at + std::to_string(matches) + " of the journal's last entries are " +
                            which +
                            " byte for byte, so which records the log lost cannot be "
                            "told; nothing was recorded" +
                            advice);
        // Every entry from the match to the watermark, with no number missing.
        for (std::size_t i = starts[*match]; i < end; ++i)
            if (found.jseqs[i + 1] != found.jseqs[i] + 1)
                throw Error(
                    ErrorCategory::invalid_state,
                    at + "the journal no longer holds entry " + std::to_string(found.jseqs[i] + 1) +
                        " of those after the log's last record; nothing was recorded" + advice);
        std::uint64_t restored = 0;
        for (std::size_t g = *match + 1; g < n; ++g) {
            record_entry(found, starts[g], fp, on_record);
            ++restored;
        }
        return restored;
    }

    /// Records, in order, the journal's entries the log does not hold (a process that died
    /// before its writer made them durable), then `log.recovered`; makes them durable and moves
    /// the watermark past them. Throws (the trail does not open) when the log and the journal
    /// disagree: never guesses. A log shorter than the watermark first gets back what the
    /// journal still holds of its lost records (restore_lost).
    void recover(Mark mark, std::uint64_t existing, const LastEntry& last,
                 const std::vector<Held>& held, std::uint64_t held_count, std::size_t capacity,
                 std::string_view fp, const std::function<void(const OpenedRecord&)>& on_record) {
        const std::string at = "audit journal " + journal->path() + ": ";
        std::uint64_t restored = 0;
        if (existing < mark.records) {
            restored = restore_lost(mark, existing, last, fp, on_record);
            report(where + "the log held " + std::to_string(mark.records) +
                   " records durably and now holds " + std::to_string(existing) +
                   ": the storage lost records it had confirmed; " + std::to_string(restored) +
                   " restored from the journal " + journal->path() + " (log.recovered)");
        }
        const audit_detail::Journal::Found found = journal->scan(mark.jseq);
        const std::vector<std::size_t> starts = record_starts(found);
        // The first `held_count` of them are in the log already; those it shows must be the
        // same events at the same times, or something else has written the log.
        const std::size_t compare = std::min<std::size_t>(held.size(), starts.size());
        for (std::size_t g = 0; g < compare; ++g) {
            const detail::AuditEntry& e = found.entries[starts[g]];
            const auto rec = record_of(e, [&](std::uint32_t k) -> const detail::AuditEntry& {
                return found.entries[starts[g] + k];
            });
            if (rec.first != held[g].event || (e.ts_ns != 0 && e.ts_ns != held[g].ts_ns))
                throw Error(ErrorCategory::invalid_state,
                            at + "the log's record seq " + std::to_string(held[g].seq) + " (" +
                                held[g].event + " at " + std::to_string(held[g].ts_ns) +
                                " ns) is not the journal's entry " +
                                std::to_string(found.jseqs[starts[g]]) + " (" +
                                std::string(rec.first) + " at " + std::to_string(e.ts_ns) +
                                " ns): something else has written the log since; nothing was "
                                "recorded. Move the journal aside to open the log without it");
        }
        // The records just compared are this journal's entries: confirmed without a signature.
        confirmed_from = mark.records;
        confirmed_to = compare > 0 ? held[compare - 1].seq + 1 : mark.records;
        std::uint64_t count = 0, first = 0, last_jseq = 0;
        for (std::size_t g = held_count; g < starts.size(); ++g) {
            record_entry(found, starts[g], fp, on_record);
            if (count++ == 0) first = found.jseqs[starts[g]];
            last_jseq = found.jseqs[starts[g]];
        }
        if (count != 0 || restored != 0 || existing < mark.records || found.damaged != 0 ||
            found.missing != 0) {
            nlohmann::json p;
            p["count"] = count;
            p["first_entry"] = first;
            p["last_entry"] = last_jseq;
            if (existing < mark.records) {
                // The storage lost records it had confirmed; `restored` came back from the
                // journal (the rest, if any, were the writer's own: they have no entry).
                p["lost_records"] = mark.records - existing;
                p["restored"] = restored;
            }
            p["already_in_log"] = std::min<std::uint64_t>(held_count, starts.size());
            p["damaged_slots"] = found.damaged;
            p["missing_entries"] = found.missing;
            p["journal"] = journal->path();
            writer->append(audit_event::log_recovered, p.dump());
        }
        if (writer->pending_lines() > 0) writer->flush();  // the trail opens only once durable
        const std::uint64_t newest = std::max(mark.jseq, found.last_jseq);
        journal->set_mark({newest, writer->size()});
        journal->sync();  // were it lost, the records just made would show the entries as held
        if (journal->capacity() != capacity) journal->reshape(capacity);
        next_jseq = newest + 1;
        recovered = count + restored;
    }

    /// One message to the error handler at a time; a throwing handler is ignored.
    void report(const std::string& message, bool fallback_to_stderr = false) noexcept {
        try {
            std::lock_guard<std::mutex> lock(report_mutex);
            if (options.error_handler)
                options.error_handler(message);
            else if (fallback_to_stderr)
                std::cerr << "kakunin: " << message << std::endl;
        } catch (...) {
        }
    }
    // The last error has a mutex of its own, never held while a handler runs: the watchdog
    // reads it, and must not wait for a handler that blocks.
    void set_last_error(const std::string& what) {
        std::lock_guard<std::mutex> lock(last_error_mutex);
        last_error = what;
    }
    std::string get_last_error() const {
        std::lock_guard<std::mutex> lock(last_error_mutex);
        return last_error;
    }

    AuditTrailOptions options;
    const Clock& clock;
    EventClock event_clock;
    std::shared_ptr<Kms> kms;
    std::unique_ptr<AuditLogWriter> writer;
    std::unique_ptr<audit_detail::Journal> journal;  ///< null: no journal
    std::uint64_t next_jseq = 1;  ///< the first sequence number this trail's entries take
    std::uint64_t recovered = 0;  ///< entries recovered from the journal at open
    std::string where;            ///< "audit trail LOG (sink NAME): ", for messages
    std::string gap_path;         ///< where a shutdown's loss is noted; "" for none
    /// Records of the log as found that recover() compared with the journal's entries.
    std::uint64_t confirmed_from = 0, confirmed_to = 0;
    std::atomic<std::uint64_t> durable_entries{0};  ///< queue entries whose records are durable
    std::atomic<std::uint64_t> sink_failures{0};
    /// Monotonic time (ns) of the first failure of the current outage; 0 while the sink works.
    std::atomic<std::int64_t> failing_since{0};
    /// Monotonic time (ns) the watchdog saw the oldest entry not yet durable queued; 0: none.
    std::atomic<std::int64_t> pending_since{0};
    mutable std::mutex report_mutex;  ///< serialises error_handler calls
    mutable std::mutex last_error_mutex;
    std::string last_error;  ///< guarded by last_error_mutex
    /// A shared watchdog's messages, waiting for the SharedThreads reporter (never handed to the
    /// error handler on the watchdog's thread, where a handler that blocks would stop every
    /// trail's watchdog).
    std::mutex posted_mutex;
    std::vector<std::string> posted;  ///< guarded by posted_mutex
    mutable std::mutex wait_mutex;
    mutable std::condition_variable durable_changed;
    std::mutex watch_mutex;
    std::condition_variable watch_wake;
    bool watch_stop = false;   ///< guarded by watch_mutex
    bool writer_done = false;  ///< guarded by watch_mutex

    /// The watchdog's samples of the queue's head (its thread only: the trail's own, or the
    /// SharedThreads watchdog). An entry is at least as old as the first sample that saw it.
    struct WatchState {
        struct Sample {
            std::uint64_t head;
            std::int64_t at;
        };
        static constexpr std::size_t capacity = 1024;
        Sample ring[capacity];
        std::size_t first = 0, count = 0;
        std::uint64_t seen_head = 0;
    } watch_state;

    /// The writer's state between its rounds (the writer's thread only: the trail's own, or
    /// the SharedThreads writer).
    struct WriterState {
        std::uint64_t appended_entries = 0;  ///< entries whose records the writer has queued
        std::uint64_t in_queue = 0;  ///< of those, the ones still in the queue (not durable yet)
        std::uint64_t appended_jseq = 0;  ///< the journal number of the last appended
        std::chrono::steady_clock::time_point last_journal_sync;
        std::uint64_t synced_head = 0;  ///< entries pushed when the journal was last synced
        bool journal_sync_failed = false;
        /// Since when entries have been waiting to become durable (unset while none is).
        std::chrono::steady_clock::time_point waiting_since{};
        std::chrono::steady_clock::time_point stop_requested{};
        /// Unrecorded rejections: how many are in the log, when the last record was made, and
        /// the Guard-clock time of the last look that found none new (the period starts there).
        std::uint64_t unrecorded_logged = 0;
        std::chrono::steady_clock::time_point unrecorded_recorded_at;
        TimeNs unrecorded_quiet_at = 0;
        std::chrono::milliseconds backoff{0};  ///< the next retry's pause; 0 while the sink works
        std::uint64_t outage_failures = 0;     ///< failed writes in the current outage
        std::string reported_error;     ///< the sink's message last given to the error handler
        std::uint64_t taken_early = 0;  ///< entries prepare_round() appended this round
        bool handed_over = false;       ///< prepare_round() gave the sink lines to flush
        bool done = false;              ///< closed, or gave up at the shutdown deadline
    } ws;
};

struct AuditTrail::WriterTask final : detail::TaskThread::Task {
    WriterTask(AuditTrail& t, std::shared_ptr<SharedThreads> s)
        : trail(t), shared(std::move(s)), thread(detail::audit_writer_thread(*shared)) {}
    void prepare() noexcept override { trail.prepare_round(); }
    std::chrono::microseconds run() noexcept override {
        const std::int64_t next = trail.write_round();
        return next < 0 ? idle : std::chrono::microseconds(next);
    }
    AuditTrail& trail;
    std::shared_ptr<SharedThreads> shared;  ///< kept alive while the trail uses it
    detail::TaskThread& thread;
};

struct AuditTrail::WatchTask final : detail::TaskThread::Task {
    WatchTask(AuditTrail& t, std::shared_ptr<SharedThreads> s)
        : trail(t), shared(std::move(s)), thread(detail::watchdog_thread(*shared)) {}
    std::chrono::microseconds run() noexcept override {
        trail.watch_once();
        return trail.watch_tick();
    }
    AuditTrail& trail;
    std::shared_ptr<SharedThreads> shared;  ///< kept alive while the trail uses it
    detail::TaskThread& thread;
};

struct AuditTrail::ReportTask final : detail::TaskThread::Task {
    ReportTask(AuditTrail& t, std::shared_ptr<SharedThreads> s)
        : trail(t), shared(std::move(s)), thread(detail::reporter_thread(*shared)) {}
    std::chrono::microseconds run() noexcept override {
        trail.deliver_posted();
        return idle;  // until the watchdog posts again
    }
    AuditTrail& trail;
    std::shared_ptr<SharedThreads> shared;
    detail::TaskThread& thread;
};

void AuditTrail::post_report(std::string message) noexcept {
    if (!m_report_task) return m_impl->report(message);
    try {
        std::lock_guard<std::mutex> lock(m_impl->posted_mutex);
        m_impl->posted.push_back(std::move(message));
    } catch (...) {
        return;  // no memory for a message: the flags are what fail closed
    }
    m_report_task->thread.wake(*m_report_task);
}

void AuditTrail::deliver_posted() noexcept {
    std::vector<std::string> batch;
    {
        std::lock_guard<std::mutex> lock(m_impl->posted_mutex);
        batch.swap(m_impl->posted);
    }
    for (const std::string& m : batch) m_impl->report(m);
}

AuditTrail::AuditTrail(AuditTrailOptions options, const Clock& clock, std::shared_ptr<Kms> kms,
                       KeyHandle key, std::string agent_id, std::string cert_fp,
                       std::function<void(const OpenedRecord&)> on_record)
    : m_impl(std::make_unique<Impl>(std::move(options), clock, std::move(kms), std::move(key),
                                    std::move(agent_id), std::move(cert_fp), std::move(on_record))),
      m_queue(std::max<std::size_t>(m_impl->options.queue_capacity, 16),
              m_impl->journal ? m_impl->journal->slots() : nullptr),
      m_journaled(m_impl->journal != nullptr),
      m_next_jseq(m_impl->next_jseq),
      m_state_reserve(
          std::clamp<std::size_t>(m_impl->options.state_reserve, 1, m_queue.capacity() / 4)),
      m_order_limit(m_queue.capacity() - m_state_reserve),
      m_reserve(std::min(m_impl->options.reserve, m_order_limit / 2)),
      m_block_when_full(m_impl->options.block_when_full) {
    Impl::WriterState& ws = m_impl->ws;
    ws.appended_jseq = m_impl->next_jseq - 1;
    ws.last_journal_sync = ws.unrecorded_recorded_at = std::chrono::steady_clock::now();
    ws.unrecorded_quiet_at = clock.now_ns();
    if (m_impl->options.threads) {
        m_task = std::make_unique<WriterTask>(*this, m_impl->options.threads);
        m_task->thread.add(*m_task);
    } else {
        m_thread = std::thread([this] { run(); });
    }
    try {
        if (m_impl->options.threads) {
            m_report_task = std::make_unique<ReportTask>(*this, m_impl->options.threads);
            m_report_task->thread.add(*m_report_task);
            m_watch_task = std::make_unique<WatchTask>(*this, m_impl->options.threads);
            m_watch_task->thread.add(*m_watch_task);
        } else {
            m_watchdog = std::thread([this] { watch(); });
        }
    } catch (...) {
        stop_writer();
        if (m_report_task) m_report_task->thread.remove(*m_report_task);
        throw;
    }
}

void AuditTrail::stop_writer() noexcept {
    m_stop.store(true, std::memory_order_release);
    if (m_thread.joinable()) m_thread.join();
    if (!m_task) return;
    m_task->thread.wake(*m_task);
    {
        std::unique_lock<std::mutex> lock(m_impl->watch_mutex);
        m_impl->watch_wake.wait(lock, [&] { return m_impl->writer_done; });
    }
    m_task->thread.remove(*m_task);
    m_task.reset();
}

AuditTrail::~AuditTrail() {
    m_stop.store(true, std::memory_order_release);
    if (m_task) m_task->thread.wake(*m_task);  // a shared writer: this trail's round now
    {
        // A sink hung inside a call holds the writer past any deadline: say so, then wait.
        std::unique_lock<std::mutex> lock(m_impl->watch_mutex);
        const auto patience = m_impl->options.shutdown_deadline + std::chrono::seconds(1);
        if (!m_impl->watch_wake.wait_for(lock, patience, [&] { return m_impl->writer_done; })) {
            lock.unlock();
            const std::uint64_t pending =
                m_queue.pushed() - m_impl->durable_entries.load(std::memory_order_acquire);
            try {
                m_impl->report(m_impl->where +
                                   (m_task ? std::string("the shared audit writer (this trail's "
                                                         "sink or another trail's) has not "
                                                         "returned for ")
                                           : std::string("the sink has not returned for ")) +
                                   std::to_string(patience.count()) + " ms of the shutdown; " +
                                   std::to_string(pending) +
                                   " queued record(s) not durable; waiting for it",
                               true);
            } catch (...) {
            }
        }
    }
    stop_writer();
    {
        std::lock_guard<std::mutex> lock(m_impl->watch_mutex);
        m_impl->watch_stop = true;
    }
    m_impl->watch_wake.notify_all();
    if (m_watchdog.joinable()) m_watchdog.join();
    if (m_watch_task) m_watch_task->thread.remove(*m_watch_task);
    if (m_report_task) {
        m_report_task->thread.remove(*m_report_task);
        deliver_posted();  // what the watchdog said last, on this thread
    }
}

bool AuditTrail::push_event(TimeNs at, std::string_view event,
                            std::string_view payload_json) noexcept {
    // Part 0 holds the event name and the first piece; every later part a piece of its own.
    constexpr std::size_t room = detail::AuditEntry::text_capacity;
    const std::size_t head = std::min(event.size(), max_order_field_length);
    const std::size_t first = room - head;
    const std::size_t rest = payload_json.size() > first ? payload_json.size() - first : 0;
    const std::size_t parts = 1 + (rest + room - 1) / room;
    if (parts > m_queue.capacity() / 2) return false;  // never more than half the queue
    const std::size_t limit = m_queue.capacity() - (parts - 1);
    if (!has_room(limit) && !(m_block_when_full && wait_for_room(limit))) return false;
    std::size_t offset = 0;
    for (std::size_t k = 0; k < parts; ++k) {
        detail::AuditEntry* e = claim_below(m_queue.capacity());
        if (e == nullptr) return false;  // cannot happen: the room was there and only we push
        e->kind = detail::AuditEntry::Kind::json;
        e->ts_ns = at;
        e->part = static_cast<std::uint32_t>(k);
        e->parts = static_cast<std::uint32_t>(parts);
        e->reasoning_length = static_cast<std::uint32_t>(payload_json.size());
        const std::size_t piece = std::min(payload_json.size() - offset, k == 0 ? first : room);
        const std::string_view fields[2] = {k == 0 ? event.substr(0, head) : std::string_view(),
                                            payload_json.substr(offset, piece)};
        e->set_text(fields, 2);
        offset += piece;
        publish();
    }
    return true;
}

const std::string& AuditTrail::log_id() const noexcept { return m_impl->options.log_id; }

AuditTrailCounters AuditTrail::counters() const noexcept {
    AuditTrailCounters c;
    c.queued = m_queue.pushed();
    c.durable = m_impl->durable_entries.load(std::memory_order_acquire);
    c.unrecorded_rejections = m_unrecorded.load(std::memory_order_relaxed);
    c.unrecorded_reports = m_unrecorded_reports.load(std::memory_order_relaxed);
    c.sink_failures = m_impl->sink_failures.load(std::memory_order_relaxed);
    c.healthy = m_healthy.load(std::memory_order_relaxed);
    c.recovered = m_impl->recovered;
    c.queue_depth = m_queue.size();
    const std::int64_t since = m_impl->pending_since.load(std::memory_order_relaxed);
    if (since != 0 && c.durable < c.queued)
        c.durable_lag_ns = std::max<std::int64_t>(steady_ns() - since, 0);
    return c;
}

bool AuditTrail::wait_durable(std::chrono::milliseconds timeout) const {
    const std::uint64_t target = m_queue.pushed();
    std::unique_lock<std::mutex> lock(m_impl->wait_mutex);
    return m_impl->durable_changed.wait_for(lock, timeout, [&] {
        return m_impl->durable_entries.load(std::memory_order_acquire) >= target;
    });
}

bool AuditTrail::wait_for_room(std::size_t limit) const noexcept {
    // Backtests and replays only: the caller (check(), with the Guard's hot lock held) spins,
    // then sleeps briefly, until the writer pops. It gives up, failing closed as live mode does,
    // when the sink is down or nothing has been popped for the grace: never forever.
    const std::int64_t patience = to_ns(m_impl->options.sink_failure_grace);
    std::uint64_t popped = m_queue.popped();
    std::int64_t progress_at = steady_ns();
    for (unsigned spin = 0; m_queue.size() >= limit; ++spin) {
        if (m_sink_down.load(std::memory_order_relaxed) || m_stop.load(std::memory_order_acquire))
            return false;
        const std::int64_t now = steady_ns();
        const std::uint64_t p = m_queue.popped();
        if (p != popped) {
            popped = p;
            progress_at = now;
        } else if (now - progress_at >= patience) {
            return false;
        }
        if (spin < 64)
            std::this_thread::yield();
        else
            std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return true;
}

// The watchdog keeps m_healthy, so that check() reads a flag instead of a clock. It measures, on
// the monotonic clock, how long the oldest entry not yet durable has been queued: it samples the
// queue's head every tick, and an entry is at least as old as the first sample that saw it. The
// writer cannot do this itself: a hung sink holds it inside flush(), which neither returns nor
// throws.
std::chrono::milliseconds AuditTrail::watch_tick() const noexcept {
    return std::clamp(m_impl->options.sink_failure_grace / 20, std::chrono::milliseconds(1),
                      std::chrono::milliseconds(20));
}

void AuditTrail::watch() noexcept {
    Impl& im = *m_impl;
    const auto tick = watch_tick();
    std::unique_lock<std::mutex> lock(im.watch_mutex);
    while (!im.watch_wake.wait_for(lock, tick, [&] { return im.watch_stop; })) {
        lock.unlock();
        watch_once();
        lock.lock();
    }
}

void AuditTrail::watch_once() noexcept {
    Impl& im = *m_impl;
    Impl::WatchState& w = im.watch_state;
    constexpr std::size_t capacity = Impl::WatchState::capacity;
    const std::int64_t grace = to_ns(im.options.sink_failure_grace);
    const std::int64_t now = steady_ns();
    const std::uint64_t head = m_queue.pushed();
    const std::uint64_t durable = im.durable_entries.load(std::memory_order_acquire);
    if (head > w.seen_head) {
        if (w.count < capacity) {
            w.ring[(w.first + w.count) % capacity] = {head, now};
            ++w.count;
        } else {
            // Full: the newest sample takes the newer entries too, which only makes them older
            // than they are (fails closed sooner, never later).
            w.ring[(w.first + w.count - 1) % capacity].head = head;
        }
        w.seen_head = head;
    }
    while (w.count > 0 && w.ring[w.first].head <= durable) {
        w.first = (w.first + 1) % capacity;
        --w.count;
    }
    im.pending_since.store(w.count > 0 ? std::max<std::int64_t>(w.ring[w.first].at, 1) : 0,
                           std::memory_order_relaxed);
    const std::int64_t oldest_age = w.count > 0 ? now - w.ring[w.first].at : 0;
    const std::int64_t failing_since = im.failing_since.load(std::memory_order_acquire);
    const std::int64_t failing_for = failing_since != 0 ? now - failing_since : 0;
    const bool stale = w.count > 0 && oldest_age >= grace;
    const bool failing = failing_since != 0 && failing_for >= grace;
    const bool healthy = !stale && !failing;
    m_sink_down.store(failing, std::memory_order_relaxed);
    if (healthy == m_healthy.load(std::memory_order_relaxed)) return;
    m_healthy.store(healthy, std::memory_order_relaxed);
    try {
        if (!healthy) {
            std::string why = stale ? "the oldest record not yet durable was queued " +
                                          std::to_string(oldest_age / 1'000'000) + " ms ago"
                                    : "the sink has failed for " +
                                          std::to_string(failing_for / 1'000'000) + " ms";
            const std::string last = im.get_last_error();
            if (!last.empty()) why += " (last error: " + last + ")";
            post_report(im.where + "refusing orders with audit_unavailable: " + why);
        } else {
            post_report(im.where + "records are durable again; orders are accepted");
        }
    } catch (...) {
    }
}

// ---- the writer: rounds, on the trail's own thread (run()) or on a SharedThreads writer ----

void AuditTrail::run() noexcept {
    for (;;) {
        const bool stopping = m_stop.load(std::memory_order_acquire);
        const std::int64_t next = write_round();
        if (next < 0) return;
        // The pause is cut short by a stop request that arrives meanwhile.
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(next);
        for (;;) {
            const auto now = std::chrono::steady_clock::now();
            if (now >= until || (!stopping && m_stop.load(std::memory_order_acquire))) break;
            std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
                until - now, std::chrono::milliseconds(5)));
        }
    }
}

std::uint64_t AuditTrail::take_entries() noexcept {
    Impl& im = *m_impl;
    Impl::WriterState& ws = im.ws;
    // While the sink is failing, hold entries in the queue rather than in memory.
    if (im.writer->pending_lines() > im.options.batch_max) return 0;
    // Entries stay in the queue (the journal's slots) until their records are durable:
    // `in_queue` of them are appended already.
    const std::uint64_t available = m_queue.available() - ws.in_queue;
    const std::uint64_t n = std::min<std::uint64_t>(available, im.options.batch_max);
    std::uint64_t taken = 0;
    while (taken < n) {
        const std::uint64_t at = ws.in_queue + taken;
        detail::AuditEntry& e = m_queue.peek(at)->entry;
        const std::uint64_t parts =
            e.kind == detail::AuditEntry::Kind::json ? std::max<std::uint32_t>(e.parts, 1) : 1;
        if (taken + parts > available) break;  // a JSON event's parts still coming
        const std::uint64_t records_before = im.writer->size();
        bool queued = false;
        try {
            im.event_clock.set(e.ts_ns);
            const auto record = record_of(e, [&](std::uint32_t k) -> const detail::AuditEntry& {
                return m_queue.peek(at + k)->entry;
            });
            im.writer->append(record.first, record.second);
            queued = true;
        } catch (const std::exception& x) {
            // Signing the record failed (nothing queued: retry this entry next round), or
            // signing a checkpoint due after it (the record is queued: do not queue it twice;
            // the checkpoint is retried).
            queued = im.writer->size() > records_before;
            try {
                im.set_last_error(x.what());
            } catch (...) {
            }
        } catch (...) {  // a KMS throwing something else must not end the writer
            queued = im.writer->size() > records_before;
            try {
                im.set_last_error("unknown exception signing a record");
            } catch (...) {
            }
        }
        im.event_clock.clear();
        if (!queued) break;
        ws.appended_jseq = m_queue.peek(at + parts - 1)->jseq.load(std::memory_order_relaxed);
        taken += parts;
        ws.appended_entries += parts;
    }
    ws.in_queue += taken;
    return taken;
}

void AuditTrail::prepare_round() noexcept {
    Impl& im = *m_impl;
    Impl::WriterState& ws = im.ws;
    // Only while the sink works: a failing one is retried by write_round() after its pause.
    if (ws.done || im.failing_since.load(std::memory_order_relaxed) != 0) return;
    ws.taken_early += take_entries();
    if (im.writer->pending_lines() == 0) return;
    try {
        im.writer->hand_over();
        ws.handed_over = true;
    } catch (...) {
        // The lines stay queued; write_round()'s flush hands them over again and reports it.
    }
}

std::int64_t AuditTrail::write_round() noexcept {
    Impl& im = *m_impl;
    Impl::WriterState& ws = im.ws;
    if (ws.done) return -1;
    // The writer is done (however it ends): the destructor waits for this.
    auto finish = [&]() -> std::int64_t {
        ws.done = true;
        {
            std::lock_guard<std::mutex> lock(im.watch_mutex);
            im.writer_done = true;
        }
        im.watch_wake.notify_all();
        return -1;
    };
    // The records of every appended entry are durable: move the journal's watermark past them,
    // then give their slots back.
    auto made_durable = [&](std::uint64_t entries) {
        if (im.journal) im.journal->set_mark({ws.appended_jseq, im.writer->size()});
        m_queue.pop(ws.in_queue);
        ws.in_queue = 0;
        im.durable_entries.store(entries, std::memory_order_release);
        std::lock_guard<std::mutex> lock(im.wait_mutex);
        im.durable_changed.notify_all();
    };
    // A failing sink is retried after a pause that doubles from the first to the cap, and
    // starts again from the first once a write succeeds. 0 while the sink works.
    constexpr std::chrono::milliseconds first_backoff{5}, max_backoff{1000};
    auto sink_failed = [&](const char* what) {
        im.sink_failures.fetch_add(1, std::memory_order_relaxed);
        ++ws.outage_failures;
        ws.backoff =
            ws.backoff.count() == 0 ? first_backoff : std::min(ws.backoff * 2, max_backoff);
        try {
            im.set_last_error(what);
            const bool first = im.failing_since.load(std::memory_order_relaxed) == 0;
            if (first)
                im.failing_since.store(std::max<std::int64_t>(steady_ns(), 1),
                                       std::memory_order_release);
            // The sink's own message, when the outage starts and whenever it changes (at most
            // once per backoff step).
            if (first || ws.reported_error != what) {
                ws.reported_error = what;
                im.report(im.where + "write failed: " + what +
                          "; records are kept and retried in " +
                          std::to_string(ws.backoff.count()) + " ms");
            }
        } catch (...) {
        }
    };
    auto sink_worked = [&] {
        im.failing_since.store(0, std::memory_order_release);
        if (ws.outage_failures == 0) return;
        try {
            im.report(im.where + "the sink works again after " +
                      std::to_string(ws.outage_failures) +
                      " failed write(s); last error: " + ws.reported_error);
        } catch (...) {
        }
        ws.outage_failures = 0;
        ws.backoff = std::chrono::milliseconds(0);
        ws.reported_error.clear();
    };

    const bool stopping = m_stop.load(std::memory_order_acquire);
    const bool backlog = im.writer->pending_lines() > im.options.batch_max;
    const std::uint64_t taken = std::exchange(ws.taken_early, 0) + take_entries();
    // Rejections the full queue could not take: their count goes into the log, at most once
    // per interval and once more before the final checkpoint.
    const std::uint64_t unrecorded = m_unrecorded.load(std::memory_order_relaxed);
    if (unrecorded == ws.unrecorded_logged) {
        ws.unrecorded_quiet_at = im.clock.now_ns();
    } else if (!backlog &&
               (stopping || std::chrono::steady_clock::now() - ws.unrecorded_recorded_at >=
                                im.options.unrecorded_report_interval)) {
        const TimeNs now = im.clock.now_ns();
        const std::uint64_t records_before = im.writer->size();
        try {
            nlohmann::json p;
            p["count"] = unrecorded - ws.unrecorded_logged;
            p["total"] = unrecorded;
            p["from_ns"] = ws.unrecorded_quiet_at;
            p["to_ns"] = now;
            im.writer->append(audit_event::audit_unrecorded_rejections, p.dump());
        } catch (const std::exception& x) {
            try {
                im.set_last_error(x.what());
            } catch (...) {
            }
        } catch (...) {
        }
        if (im.writer->size() > records_before) {  // queued (a failed checkpoint retries)
            ws.unrecorded_logged = unrecorded;
            ws.unrecorded_recorded_at = std::chrono::steady_clock::now();
            ws.unrecorded_quiet_at = now;
        }
    }
    bool wrote = false;
    try {
        // After a failure, retry even with nothing pending: the lines a failed sink flush took
        // are not durable yet. Lines prepare_round() handed over wait for this flush.
        if (ws.handed_over || im.writer->pending_lines() > 0 || im.writer->maybe_checkpoint() ||
            ws.outage_failures > 0) {
            const std::uint64_t covered = ws.appended_entries;
            ws.handed_over = false;
            im.writer->flush();
            // The recovery message first: whoever waits for durability then finds it.
            sink_worked();
            made_durable(covered);
            wrote = true;
        }
    } catch (const std::exception& x) {
        sink_failed(x.what());
    } catch (...) {
        sink_failed("the sink threw something that is not a std::exception (no message)");
    }
    // What a power loss would keep of the journal: synced once entries have waited an interval
    // without becoming durable in the log (a failing or slow sink), and once per interval while
    // that lasts. A working sink makes entries durable first: no sync then, since a sync
    // write-protects every page it cleans and the next store into each takes a page fault on
    // the hot path. A process crash needs no sync: the kernel has the pages.
    const auto now_steady = std::chrono::steady_clock::now();
    if (m_queue.pushed() == im.durable_entries.load(std::memory_order_relaxed))
        ws.waiting_since = {};
    else if (ws.waiting_since == std::chrono::steady_clock::time_point{})
        ws.waiting_since = now_steady;
    if (im.journal && ws.waiting_since != std::chrono::steady_clock::time_point{} &&
        m_queue.pushed() != ws.synced_head &&
        now_steady - ws.waiting_since >= im.options.journal_sync_interval &&
        now_steady - ws.last_journal_sync >= im.options.journal_sync_interval) {
        ws.synced_head = m_queue.pushed();
        ws.last_journal_sync = now_steady;
        const int err = im.journal->sync();
        if (err != 0 && !ws.journal_sync_failed) {
            try {
                im.report(im.where + "syncing the journal " + im.journal->path() +
                          " failed: " + std::strerror(err) +
                          " (a process crash still loses nothing; a power loss may lose "
                          "entries not yet durable in the log)");
            } catch (...) {
            }
        }
        ws.journal_sync_failed = err != 0;
    }
    if (stopping) {
        if (ws.stop_requested == std::chrono::steady_clock::time_point{})
            ws.stop_requested = std::chrono::steady_clock::now();
        const bool drained = m_queue.empty() && im.writer->pending_lines() == 0 &&
                             m_unrecorded.load(std::memory_order_relaxed) == ws.unrecorded_logged;
        if (drained) {
            try {
                im.writer->close();  // the final checkpoint, durable
                made_durable(ws.appended_entries);
                if (im.journal) im.journal->sync();
                return finish();
            } catch (const std::exception& x) {
                sink_failed(x.what());  // keep trying until the deadline
            } catch (...) {
                sink_failed("the sink threw something that is not a std::exception (no message)");
            }
        }
        // Shutting down on a sink that keeps failing: retry until the deadline, then give up
        // loudly with the count of what was not made durable.
        if (std::chrono::steady_clock::now() - ws.stop_requested >= im.options.shutdown_deadline) {
            const std::uint64_t lost =
                m_queue.pushed() - im.durable_entries.load(std::memory_order_acquire);
            try {
                std::string message = im.where + "shutting down with " + std::to_string(lost) +
                                      " queued record(s) not durable after retrying for " +
                                      std::to_string(im.options.shutdown_deadline.count()) + " ms";
                const std::uint64_t uncounted =
                    m_unrecorded.load(std::memory_order_relaxed) - ws.unrecorded_logged;
                if (uncounted != 0)
                    message += ", and " + std::to_string(uncounted) +
                               " unrecorded rejection(s) not counted in the log";
                if (lost == 0 && uncounted == 0) message += "; the final checkpoint is missing";
                if (lost != 0 && im.journal)
                    message += "; they are kept in the journal " + im.journal->path() +
                               " and recorded when a trail next opens this log";
                else if (lost != 0 && im.note_gap(lost, uncounted))
                    message += "; noted in " + im.gap_path +
                               ": the next trail on this log records the gap (log.gap)";
                const std::string last = im.get_last_error();
                if (!last.empty()) message += " (last error: " + last + ")";
                im.report(message, true);
            } catch (...) {
            }
            return finish();
        }
    }
    using std::chrono::microseconds;
    if (im.failing_since.load(std::memory_order_relaxed) != 0) {
        // Shutting down, the deadline bounds the retries: they keep the first pause.
        if (!stopping) return std::chrono::duration_cast<microseconds>(ws.backoff).count();
        const auto left =
            im.options.shutdown_deadline - (std::chrono::steady_clock::now() - ws.stop_requested);
        return std::max<std::int64_t>(
            0, std::chrono::duration_cast<microseconds>(
                   std::min<std::chrono::steady_clock::duration>(first_backoff, left))
                   .count());
    }
    // check() never signals the writer (no system call on the hot path): an idle writer polls.
    return taken == 0 && !wrote ? 200 : 0;
}

}  // namespace kakunin
