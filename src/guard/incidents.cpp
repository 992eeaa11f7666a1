// Behaviour and incidents: scoring setup, the incident handler (warnings, escalations,
// automatic revocation, replacement requests), human steps, and the signed statements.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/replay.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json components_json(const std::array<std::uint32_t, score_component_count>& c) {
    json j = json::object();
    for (std::size_t i = 0; i < score_component_count; ++i) j[component_name(i)] = c[i];
    return j;
}

json order_json(const detail::AuditEntry& e) {
    json o = {{"client_order_id", std::string(e.field(0))},
              {"instrument", std::string(e.field(1))},
              {"counterparty", std::string(e.field(2))},
              {"region", std::string(e.field(3))},
              {"side", to_string(e.side)},
              {"quantity", to_string(e.quantity)},
              {"price", to_string(e.price)}};
    if (e.has_reference) o["reference_price"] = to_string(e.reference_price);
    return o;
}

/// "0.81" from 810000 ppm: for human summaries only.
std::string score_text(std::uint32_t ppm) {
    char buf[16];
    const std::uint32_t hundredths = (ppm + 5'000) / 10'000;  // rounded, as printf would
    std::snprintf(buf, sizeof buf, "%u.%02u", hundredths / 100, hundredths % 100);
    return buf;
}

/// The components worth naming in a summary: those at or above 0.10, largest first.
std::string explain(const std::array<std::uint32_t, score_component_count>& c) {
    std::array<std::size_t, score_component_count> order{};
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return c[a] > c[b]; });
    std::string out;
    for (std::size_t i : order) {
        if (c[i] < 100'000) break;
        out += (out.empty() ? "" : ", ") + std::string(component_name(i)) + " " + score_text(c[i]);
    }
    return out.empty() ? "no single component stands out" : out;
}

std::string compact_time(TimeNs t) {
    std::string s = format_timestamp(t), out;
    for (char c : s) {
        if (c == '.' || c == 'Z') break;
        if (c != '-' && c != ':') out += c;
    }
    return out + "Z";
}

template <class Statement>
void sign_statement(Kms& kms, std::string_view person, KeyAlgorithm algorithm, Statement& st,
                    std::string (*text)(const Statement&)) {
    const KeyHandle key = kms.find_or_create_key(approver_key_label(person), algorithm);
    const PublicKeyInfo info = kms.public_key(key);
    st.algorithm = to_string(info.algorithm);
    st.public_key = crypto::base64_encode(info.spki_der);
    st.signature = crypto::base64_encode(kms.sign(key, text(st)));
}

template <class Statement>
std::string check_statement(const Statement& st, std::string (*text)(const Statement&)) noexcept {
    try {
        const auto key = crypto::base64_decode(st.public_key, "public_key");
        const auto alg = crypto::spki_algorithm(key);
        if (!alg || to_string(*alg) != st.algorithm)
            return "the signer's key is not a " + st.algorithm + " key";
        const auto sig = crypto::base64_decode(st.signature, "signature");
        if (!crypto::verify_signature(key, text(st), sig)) return "the signature does not verify";
        return {};
    } catch (const std::exception& e) {
        return std::string("malformed statement: ") + e.what();
    }
}

json parse_object(std::string_view text, const char* what) {
    json j;
    try {
        j = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": " + e.what());
    }
    if (!j.is_object())
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": not a JSON object");
    return j;
}

std::string str(const json& j, const char* key, const char* what) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        throw Error(ErrorCategory::invalid_input,
                    std::string(what) + "." + key + ": missing or not a string");
    return it->get<std::string>();
}

TimeNs num(const json& j, const char* key, const char* what) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer())
        throw Error(ErrorCategory::invalid_input,
                    std::string(what) + "." + key + ": missing or not an integer");
    return it->get<TimeNs>();
}

}  // namespace

const char* to_string(IncidentState s) noexcept {
    switch (s) {
        case IncidentState::open: return "open";
        case IncidentState::acknowledged: return "acknowledged";
        case IncidentState::resolved: return "resolved";
        case IncidentState::revoked: return "revoked";
        case IncidentState::reviewed: return "reviewed";
    }
    return "unknown";
}

std::string incident_review_text(const IncidentReview& r) {
    return "kakunin-incident-review/v1\n" + r.agent_id + "\n" + r.incident_id + "\n" + r.reviewer +
           "\n" + std::to_string(r.signed_at_ns) + "\n" + r.root_cause + "\n";
}

std::string reenable_text(const Reenable& r) {
    return "kakunin-reenable/v2\n" + r.agent_id + "\n" + r.halt_id + "\n" + r.by + "\n" +
           std::to_string(r.signed_at_ns) + "\n" + r.reason + "\n";
}

IncidentReview sign_incident_review(Kms& kms, std::string_view agent_id,
                                    std::string_view incident_id, std::string_view reviewer,
                                    std::string_view root_cause, TimeNs at,
                                    KeyAlgorithm algorithm) {
    if (reviewer.empty() || root_cause.empty() || incident_id.empty())
        throw Error(ErrorCategory::invalid_input,
                    "incident review: the incident, the reviewer and the root cause are required");
    validate_agent_id(agent_id);
    IncidentReview r{std::string(agent_id),
                     std::string(incident_id),
                     std::string(reviewer),
                     std::string(root_cause),
                     at,
                     {},
                     {},
                     {}};
    sign_statement(kms, reviewer, algorithm, r, &incident_review_text);
    return r;
}

Reenable sign_reenable(Kms& kms, std::string_view agent_id, std::string_view halt_id,
                       std::string_view by, std::string_view reason, TimeNs at,
                       KeyAlgorithm algorithm) {
    if (halt_id.empty() || by.empty() || reason.empty())
        throw Error(ErrorCategory::invalid_input,
                    "re-enable: the halt, the person and the reason are required");
    validate_agent_id(agent_id);
    Reenable r{std::string(agent_id),
               std::string(halt_id),
               std::string(by),
               std::string(reason),
               at,
               {},
               {},
               {}};
    sign_statement(kms, by, algorithm, r, &reenable_text);
    return r;
}

std::string check_incident_review(const IncidentReview& r) noexcept {
    if (r.reviewer.empty() || r.root_cause.empty())
        return "the reviewer and root cause are required";
    return check_statement(r, &incident_review_text);
}

std::string check_reenable(const Reenable& r) noexcept {
    if (r.halt_id.empty())
        return "it names no halt (a kakunin-reenable/v1 statement lifts nothing)";
    if (r.by.empty() || r.reason.empty()) return "the person and the reason are required";
    return check_statement(r, &reenable_text);
}

std::string to_json(const IncidentReview& r) {
    return dump({{"agent", r.agent_id},
                 {"incident", r.incident_id},
                 {"reviewer", r.reviewer},
                 {"root_cause", r.root_cause},
                 {"signed_at_ns", r.signed_at_ns},
                 {"algorithm", r.algorithm},
                 {"public_key", r.public_key},
                 {"signature", r.signature}});
}

std::string to_json(const Reenable& r) {
    return dump({{"agent", r.agent_id},
                 {"halt", r.halt_id},
                 {"by", r.by},
                 {"reason", r.reason},
                 {"signed_at_ns", r.signed_at_ns},
                 {"algorithm", r.algorithm},
                 {"public_key", r.public_key},
                 {"signature", r.signature}});
}

IncidentReview incident_review_from_json(std::string_view text) {
    const char* what = "incident review";
    const json j = parse_object(text, what);
    return {str(j, "agent", what),      str(j, "incident", what),     str(j, "reviewer", what),
            str(j, "root_cause", what), num(j, "signed_at_ns", what), str(j, "algorithm", what),
            str(j, "public_key", what), str(j, "signature", what)};
}

Reenable reenable_from_json(std::string_view text) {
    const char* what = "re-enable";
    const json j = parse_object(text, what);
    return {str(j, "agent", what),      str(j, "halt", what),         str(j, "by", what),
            str(j, "reason", what),     num(j, "signed_at_ns", what), str(j, "algorithm", what),
            str(j, "public_key", what), str(j, "signature", what)};
}

std::string to_json(const Incident& i) {
    json history = json::array();
    for (const auto& t : i.history)
        history.push_back(
            {{"state", to_string(t.state)}, {"at_ns", t.at_ns}, {"by", t.by}, {"note", t.note}});
    json trigger =
        i.trigger_order_json.empty() ? json::object() : json::parse(i.trigger_order_json);
    return dump({{"incident", i.id},
                 {"agent", i.agent_id},
                 {"opened_at_ns", i.opened_at_ns},
                 {"deadline_ns", i.deadline_ns},
                 {"score_ppm", i.score_ppm},
                 {"components_ppm", components_json(i.components_ppm)},
                 {"trigger_order", trigger},
                 {"state", to_string(i.state)},
                 {"escalated", i.escalated},
                 {"warnings", i.warnings},
                 {"last_warning_ns", i.last_warning_ns},
                 {"history", history}});
}

// ---- the Guard's side ----

std::string Guard::new_id(std::string_view prefix, TimeNs at, std::uint64_t n) const {
    return std::string(prefix) + "-" + (m_agent_id.empty() ? std::string() : m_agent_id + "-") +
           compact_time(at) + "-" + m_instance + "-" + std::to_string(n);
}

void Guard::setup_behaviour(const std::string& agent_id) {
    m_agent_id = agent_id;
    if (m_options.baseline) {
        enforce_baseline(*m_options.baseline);
    } else if (m_options.observe) {
        m_builder = std::make_unique<BaselineBuilder>(
            m_scope, agent_id.empty() ? "agent" : agent_id, m_options.observation_policy);
        m_builder->start(m_clock.now_ns());
    }
    // Halts, revocations and incident steps are notified from the incident thread.
    if (m_options.notifier) start_incident_thread();
}

void Guard::start_incident_thread() {
    if (m_options.incident_thread && !m_incident_thread.joinable())
        m_incident_thread = std::thread([this] { incident_loop(); });
}

void Guard::enforce_baseline(const ApprovedBaseline& ab) {
    const std::string problem = check_baseline_approval(ab.approval, ab.baseline);
    if (!problem.empty()) throw Error(ErrorCategory::unauthorised, "baseline refused: " + problem);
    if (!m_agent_id.empty() && ab.baseline.agent_id != m_agent_id)
        throw Error(ErrorCategory::unauthorised,
                    "baseline refused: it is agent '" + ab.baseline.agent_id +
                        "'s, the certificate is '" + m_agent_id + "'s");
    if (m_options.person_key_check) {
        const std::string why =
            m_options.person_key_check(ab.approval.approver, ab.approval.approver_public_key);
        if (!why.empty())
            throw Error(ErrorCategory::unauthorised,
                        "baseline refused: approver " + ab.approval.approver + ": " + why);
    }
    auto scorer = std::make_unique<detail::AnomalyScorer>(ab.baseline);
    std::unique_ptr<detail::AnomalyScorer> old_scorer;
    std::unique_ptr<BaselineBuilder> old_builder;
    {
        std::lock_guard<std::mutex> incidents(m_incident_mutex);
        if (m_anomalies.empty()) m_anomalies.resize(256);  // before check() can push
        std::lock_guard<detail::SpinLock> lock(m_lock);
        old_scorer = std::move(m_scorer);
        m_scorer = std::move(scorer);
        old_builder = std::move(m_builder);
    }
    json p = json::parse(to_json(ab.approval));
    p["enforced_from_ns"] = m_clock.now_ns();
    audit_event(m_clock.now_ns(), audit_event::baseline_approved, dump(p));
    start_incident_thread();
}

void Guard::audit_event(TimeNs at, std::string_view event, std::string payload) noexcept {
    if (!m_audit) return;
    try {
        std::lock_guard<detail::SpinLock> lock(m_lock);  // one producer at a time
        if (!m_audit->push_event(at, event, std::move(payload)))
            report("audit queue full: an incident record could not be queued");
    } catch (...) {
        report("out of memory queueing an incident record");
    }
}

void Guard::notify(int kind, const Incident* incident, TimeNs at, std::string summary,
                   std::string details_json) noexcept {
    if (!m_options.notifier) return;
    try {
        Notification n;
        n.kind = static_cast<Notification::Kind>(kind);
        n.agent_id = m_agent_id;
        n.at_ns = at;
        n.summary = std::move(summary);
        n.details_json = std::move(details_json);
        if (incident != nullptr) {
            n.incident_id = incident->id;
            n.score_ppm = incident->score_ppm;
            n.components_ppm = incident->components_ppm;
            n.details_json = dump({{"state", to_string(incident->state)},
                                   {"deadline_ns", incident->deadline_ns},
                                   {"trigger_order", json::parse(incident->trigger_order_json)}});
        }
        {
            std::lock_guard<std::mutex> lock(m_notes_mutex);
            m_notes.push_back(std::move(n));
        }
        m_notes_queued.fetch_add(1, std::memory_order_release);
        m_wake.notify_all();
    } catch (...) {
        report("notifier: could not build a notification");
    }
}

void Guard::deliver_notifications() noexcept {
    if (!m_options.notifier) return;
    std::vector<Notification> batch;
    {
        std::lock_guard<std::mutex> lock(m_notes_mutex);
        batch.swap(m_notes);
    }
    for (const Notification& n : batch) m_options.notifier->notify(n);
    m_notes_delivered.fetch_add(batch.size(), std::memory_order_release);
}

void Guard::handle_anomaly(const detail::AuditEntry& e) {
    const Decision& d = e.decision;
    const bool revocation = d.reasons.contains(ReasonCode::anomaly_revocation);
    const ScoringPolicy& policy = m_scorer->policy();
    // A warning belongs to the incident still being worked on: open or acknowledged, with a
    // warning within the last investigation window. Later warnings open a new incident, so a
    // forgotten incident neither swallows new anomalies nor hides how many there were.
    const TimeNs window = static_cast<TimeNs>(policy.investigation_window_s) * 1'000'000'000;
    Incident* active = nullptr;
    for (auto& i : m_incidents)
        if ((i.state == IncidentState::open || i.state == IncidentState::acknowledged) &&
            d.ts_ns - i.last_warning_ns < window)
            active = &i;
    if (active != nullptr && !revocation) {
        ++active->warnings;
        active->last_warning_ns = d.ts_ns;
        return;
    }
    if (active == nullptr) {
        Incident inc;
        inc.agent_id = m_agent_id;
        inc.opened_at_ns = d.ts_ns;
        inc.id = new_id("inc", d.ts_ns, m_incidents.size() + 1);
        inc.deadline_ns =
            d.ts_ns + static_cast<TimeNs>(policy.investigation_window_s) * 1'000'000'000;
        inc.score_ppm = d.score_ppm;
        inc.components_ppm = d.components_ppm;
        inc.trigger_order_json = dump(order_json(e));
        inc.warnings = revocation ? 0 : 1;
        inc.last_warning_ns = d.ts_ns;
        inc.history.push_back(
            {IncidentState::open, d.ts_ns, "kakunin",
             "anomaly score " + score_text(d.score_ppm) + ": " + explain(d.components_ppm)});
        m_incidents.push_back(std::move(inc));
        active = &m_incidents.back();
        audit_event(d.ts_ns, audit_event::incident_opened,
                    dump({{"incident", active->id},
                          {"agent", m_agent_id},
                          {"trigger",
                           {{"order", order_json(e)},
                            {"score_ppm", d.score_ppm},
                            {"components_ppm", components_json(d.components_ppm)}}},
                          {"window_ms", std::uint64_t{policy.investigation_window_s} * 1000}}));
        if (!revocation)
            notify(static_cast<int>(Notification::Kind::warning), active, d.ts_ns,
                   m_agent_id + ": anomaly score " + score_text(d.score_ppm) + " (" +
                       explain(d.components_ppm) + "); incident " + active->id +
                       " opened, acknowledge within " +
                       std::to_string(policy.investigation_window_s) + " s");
    }
    if (!revocation) return;

    // Automatic revocation: the Guard halted in check(); now the certificate, compliance and
    // the replacement.
    std::string serial;
    {
        std::lock_guard<std::mutex> admin(m_admin);
        if (m_certificate) serial = m_certificate->serial();
        // check() halted and audited it; this gives the halt its id, history and notification.
        record({GuardEvent::Kind::halted, d.ts_ns, "kakunin",
                "automatic halt: anomaly score " + score_text(d.score_ppm) + ", incident " +
                    active->id},
               true);
    }
    const std::string reason = "anomaly score " + score_text(d.score_ppm) +
                               " >= " + score_text(policy.revoke_ppm) + " (" +
                               explain(d.components_ppm) + "), incident " + active->id;
    std::string ca_result = "no certificate authority configured";
    if (m_options.authority && !serial.empty()) {
        try {
            m_options.authority->revoke(serial, "keyCompromise: " + reason);
            ca_result = "revoked";
        } catch (const std::exception& x) {
            ca_result = std::string("the CA refused: ") + x.what();
            report("automatic revocation of " + serial + " failed: " + x.what());
        }
    }
    active->state = IncidentState::revoked;
    active->score_ppm = std::max(active->score_ppm, d.score_ppm);
    active->history.push_back(
        {IncidentState::revoked, d.ts_ns, "kakunin", reason + "; CA: " + ca_result});
    audit_event(d.ts_ns, "incident.revoked",
                dump({{"incident", active->id},
                      {"agent", m_agent_id},
                      {"serial", serial},
                      {"reason", reason},
                      {"ca", ca_result},
                      {"order", order_json(e)},
                      {"score_ppm", d.score_ppm},
                      {"components_ppm", components_json(d.components_ppm)}}));
    notify(static_cast<int>(Notification::Kind::revocation), active, d.ts_ns,
           m_agent_id + ": halted and certificate " + serial + " revoked automatically: " + reason);
    ReplacementRequest rr{m_agent_id, active->id, serial, reason, d.ts_ns};
    audit_event(d.ts_ns, "incident.replacement_requested",
                dump({{"incident", active->id},
                      {"agent", m_agent_id},
                      {"replacement_for_serial", serial},
                      {"reason",
                       "a new agent with a new key; its baseline must be approved "
                       "before it enforces"}}));
    if (m_options.on_replacement_request) {
        try {
            m_options.on_replacement_request(rr);
        } catch (...) {
            report("on_replacement_request threw");
        }
    }
}

void Guard::check_deadlines() {
    if (!m_scorer) return;  // set once under m_incident_mutex (held here), never unset
    TimeNs now = m_clock.now_ns();
    {
        // A clock stepping back does not put a deadline off: the latest time checked counts.
        std::lock_guard<detail::SpinLock> lock(m_lock);
        now = std::max(now, m_latest_ns);
    }
    for (auto& i : m_incidents) {
        if (i.state != IncidentState::open || i.escalated || now < i.deadline_ns) continue;
        i.escalated = true;
        const bool halt_it = m_scorer->policy().halt_on_escalation;
        i.history.push_back({i.state, now, "kakunin",
                             std::string("not acknowledged within the investigation window: ") +
                                 (halt_it ? "halted" : "escalated")});
        audit_event(now, "incident.escalated",
                    dump({{"incident", i.id},
                          {"agent", m_agent_id},
                          {"action", halt_it ? "halt" : "notify"}}));
        notify(static_cast<int>(Notification::Kind::escalation), &i, now,
               m_agent_id + ": incident " + i.id + " not acknowledged within " +
                   std::to_string(m_scorer->policy().investigation_window_s) + " s" +
                   (halt_it ? "; the agent is halted" : ""));
        if (halt_it) {
            std::lock_guard<std::mutex> admin(m_admin);
            {
                std::lock_guard<detail::SpinLock> lock(m_lock);
                m_halted.store(true, std::memory_order_release);
                m_auto_halted = true;
            }
            record({GuardEvent::Kind::halted, now, "kakunin",
                    "automatic halt: incident " + i.id + " not acknowledged in time"});
        }
    }
}

void Guard::process_incidents() {
    poll_heartbeat();  // the dead man's switch
    {
        std::lock_guard<std::mutex> lock(m_incident_mutex);
        if (m_scorer) {
            for (;;) {
                const std::uint64_t tail = m_anomaly_tail.load(std::memory_order_relaxed);
                if (tail == m_anomaly_head.load(std::memory_order_acquire)) break;
                handle_anomaly(m_anomalies[tail % m_anomalies.size()]);
                m_anomaly_tail.store(tail + 1, std::memory_order_release);
            }
            check_deadlines();
        }
        deliver_notifications();
    }
    deliver_cancels();  // halts made above (automatic, escalation, heartbeat) cancel what works
}

void Guard::incident_loop() {
    while (!m_stop.load(std::memory_order_acquire)) {
        try {
            process_incidents();
        } catch (const std::exception& e) {
            report(std::string("incident handling failed: ") + e.what());
        }
        std::unique_lock<std::mutex> lock(m_wake_mutex);
        // check() never signals (no syscall on the hot path): a short poll bounds the delay.
        m_wake.wait_for(lock, std::chrono::milliseconds(2));
    }
}

bool Guard::wait_incidents(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const std::uint64_t head = m_anomaly_head.load(std::memory_order_acquire);
        const std::uint64_t notes = m_notes_queued.load(std::memory_order_acquire);
        if (m_anomaly_tail.load(std::memory_order_acquire) == head &&
            m_notes_delivered.load(std::memory_order_acquire) == notes) {
            // The last one may still be in handling: take the lock once to be sure.
            std::lock_guard<std::mutex> lock(m_incident_mutex);
            if (m_anomaly_tail.load(std::memory_order_acquire) == head &&
                m_notes_delivered.load(std::memory_order_acquire) == notes)
                return true;
        }
        if (!m_options.incident_thread) process_incidents();
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

std::vector<Incident> Guard::incidents() const {
    std::lock_guard<std::mutex> lock(m_incident_mutex);
    return m_incidents;
}

void Guard::require_person(std::string_view person, std::string_view key) const {
    if (!m_options.person_key_check) return;
    const std::string why = m_options.person_key_check(person, key);
    if (!why.empty())
        throw Error(ErrorCategory::unauthorised, std::string(person) + "'s key refused: " + why);
}

void Guard::acknowledge_incident(std::string_view id, std::string_view by, std::string_view note) {
    if (by.empty())
        throw Error(ErrorCategory::invalid_input, "acknowledge: the person must be named");
    std::lock_guard<std::mutex> lock(m_incident_mutex);
    for (auto& i : m_incidents) {
        if (i.id != id) continue;
        if (i.state != IncidentState::open)
            throw Error(ErrorCategory::invalid_state,
                        "acknowledge: incident " + i.id + " is " + to_string(i.state));
        const TimeNs now = m_clock.now_ns();
        i.state = IncidentState::acknowledged;
        i.history.push_back({i.state, now, std::string(by), std::string(note)});
        audit_event(now, "incident.acknowledged",
                    dump({{"incident", i.id}, {"agent", m_agent_id}, {"by", by}, {"note", note}}));
        return;
    }
    throw Error(ErrorCategory::not_found, "acknowledge: no incident " + std::string(id));
}

void Guard::resolve_incident(std::string_view id, std::string_view by, std::string_view note) {
    if (by.empty()) throw Error(ErrorCategory::invalid_input, "resolve: the person must be named");
    std::lock_guard<std::mutex> lock(m_incident_mutex);
    for (auto& i : m_incidents) {
        if (i.id != id) continue;
        if (i.state != IncidentState::open && i.state != IncidentState::acknowledged)
            throw Error(ErrorCategory::invalid_state,
                        "resolve: incident " + i.id + " is " + to_string(i.state));
        const TimeNs now = m_clock.now_ns();
        i.state = IncidentState::resolved;
        i.history.push_back({i.state, now, std::string(by), std::string(note)});
        audit_event(now, "incident.resolved",
                    dump({{"incident", i.id}, {"agent", m_agent_id}, {"by", by}, {"note", note}}));
        notify(static_cast<int>(Notification::Kind::incident), &i, now,
               m_agent_id + ": incident " + i.id + " resolved by " + std::string(by) +
                   (note.empty() ? "" : ": " + std::string(note)));
        return;
    }
    throw Error(ErrorCategory::not_found, "resolve: no incident " + std::string(id));
}

void Guard::review_incident(const IncidentReview& review) {
    const std::string problem = check_incident_review(review);
    if (!problem.empty()) throw Error(ErrorCategory::unauthorised, "review refused: " + problem);
    if (review.agent_id != m_agent_id)
        throw Error(ErrorCategory::invalid_input, "review: it is for agent " + review.agent_id);
    require_person(review.reviewer, review.public_key);
    std::lock_guard<std::mutex> lock(m_incident_mutex);
    for (auto& i : m_incidents) {
        if (i.id != review.incident_id) continue;
        if (i.state != IncidentState::revoked)
            throw Error(ErrorCategory::invalid_state,
                        "review: incident " + i.id + " is " + to_string(i.state) + ", not revoked");
        i.state = IncidentState::reviewed;
        i.history.push_back({i.state, review.signed_at_ns, review.reviewer, review.root_cause});
        audit_event(m_clock.now_ns(), audit_event::review_signed, to_json(review));
        notify(static_cast<int>(Notification::Kind::incident), &i, m_clock.now_ns(),
               m_agent_id + ": incident " + i.id + " reviewed by " + review.reviewer +
                   " (signed): " + review.root_cause);
        return;
    }
    throw Error(ErrorCategory::not_found, "review: no incident " + review.incident_id);
}

void Guard::reenable(const Reenable& st) {
    const std::string problem = check_reenable(st);
    if (!problem.empty()) throw Error(ErrorCategory::unauthorised, "re-enable refused: " + problem);
    if (st.agent_id != m_agent_id)
        throw Error(ErrorCategory::invalid_input, "re-enable: it is for agent " + st.agent_id);
    require_person(st.by, st.public_key);
    const TimeNs now = m_clock.now_ns();
    std::lock_guard<std::mutex> admin(m_admin);
    // Bound to one halt: a statement for an earlier halt, one already lifted or another
    // Guard's lifts nothing.
    if (!m_halt || m_halt->halt_id != st.halt_id) {
        for (const PastHalt& past : m_past_halts)
            if (past.id == st.halt_id)
                throw Error(ErrorCategory::unauthorised,
                            "re-enable refused: stale statement: halt " + st.halt_id + " was " +
                                past.fate +
                                (m_halt ? "; the halt in force is " + m_halt->halt_id : ""));
        if (!m_halt)
            throw Error(ErrorCategory::invalid_state, "re-enable: the guard is not halted");
        throw Error(ErrorCategory::unauthorised,
                    "re-enable refused: the statement lifts halt " + st.halt_id +
                        ", not a halt of this guard; the halt in force is " + m_halt->halt_id +
                        " (" + m_halt->reason + ")");
    }
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (!m_halted.load(std::memory_order_relaxed))
            throw Error(ErrorCategory::invalid_state, "re-enable: the guard is not halted");
        if (m_revoked)
            throw Error(ErrorCategory::invalid_state,
                        "re-enable: the certificate is revoked; " +
                            std::string(m_key_compromised
                                            ? "its key was revoked for keyCompromise: a "
                                              "replacement agent with a new key is needed"
                                            : "rotate() to a newly issued certificate first"));
        m_halted.store(false, std::memory_order_release);
        m_auto_halted = false;
    }
    lift_halt(st.by);
    m_events.push_back({GuardEvent::Kind::resumed, now, st.by, st.reason, st.halt_id});
    audit_event(now, audit_event::guard_resumed, to_json(st));
    rearm_heartbeat();
}

std::optional<BaselineBuilder> Guard::observation() const {
    if (!m_builder) return std::nullopt;
    std::lock_guard<detail::SpinLock> lock(m_lock);
    return *m_builder;
}

}  // namespace kakunin
