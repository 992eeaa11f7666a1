// Behaviour and incidents, the Guard's side: scoring setup, its incident desk
// (incident_desk.cpp handles warnings, escalations, the automatic revocation and replacement
// requests), the human steps, and the signed statements.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "guard/incident_desk.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/replay.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

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

// ---- the Guard's side: its incident desk, the baseline, the human steps ----

std::string Guard::new_id(std::string_view prefix, TimeNs at, std::uint64_t n) const {
    return std::string(prefix) + "-" + (m_agent_id.empty() ? std::string() : m_agent_id + "-") +
           compact_time(at) + "-" + m_instance + "-" + std::to_string(n);
}

void Guard::make_desk(const std::string& agent_id) {
    detail::IncidentDesk::Options o;
    o.agent_id = agent_id;
    o.notifier = m_options.notifier;
    o.authority = m_options.authority;
    o.on_replacement_request = m_options.on_replacement_request;
    o.thread = m_options.incident_thread;
    o.shared = m_options.threads;
    detail::IncidentDesk::Hooks h;
    h.audit = [this](TimeNs at, std::string_view event, std::string payload) {
        audit_event(at, event, std::move(payload));
    };
    h.report = [this](std::string_view message) { report(message); };
    h.new_id = [this](std::string_view prefix, TimeNs at, std::uint64_t n) {
        return new_id(prefix, at, n);
    };
    h.latest_time = [this] {
        const TimeNs now = m_clock.now_ns();
        std::lock_guard<detail::SpinLock> lock(m_lock);
        return std::max(now, m_latest_ns);
    };
    h.record_automatic_halt = [this](TimeNs at, std::string reason) {
        std::lock_guard<std::mutex> admin(m_admin);
        std::string serial = m_certificate ? m_certificate->serial() : std::string();
        // check() recorded the halt in the same call; this record gives it its id (what a
        // signed re-enable names, and what a restart restores).
        record({GuardEvent::Kind::halted, at, "kakunin", std::move(reason)});
        return serial;
    };
    h.halt_for_escalation = [this](TimeNs at, std::string reason) {
        std::lock_guard<std::mutex> admin(m_admin);
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            m_halted.store(true, std::memory_order_release);
            m_auto_halted = true;
        }
        record({GuardEvent::Kind::halted, at, "kakunin", std::move(reason)});
    };
    // Periodic work beyond the escalations, at the end of every pass: the dead man's switch
    // (start_heartbeat() starts the thread when a timeout is set), then the cancel lists of the
    // halts made in the pass (automatic, escalation, heartbeat), with no Guard lock held.
    h.tick = [this](TimeNs) {
        poll_heartbeat();
        deliver_cancels();
    };
    m_desk = std::make_unique<detail::IncidentDesk>(m_clock, std::move(o), std::move(h));
}

void Guard::setup_behaviour(const std::string& agent_id) {
    announce_behaviour(setup_behaviour_quiet(agent_id));
}

std::string Guard::setup_behaviour_quiet(const std::string& agent_id) {
    m_agent_id = agent_id;
    make_desk(agent_id);
    if (m_options.baseline) return install_baseline(*m_options.baseline);
    if (m_options.observe) {
        m_builder = std::make_unique<BaselineBuilder>(
            m_scope, agent_id.empty() ? "agent" : agent_id, m_options.observation_policy);
        m_builder->start(m_clock.now_ns());
    }
    return {};
}

void Guard::announce_behaviour(const std::string& baseline_payload) {
    if (!baseline_payload.empty()) {
        audit_event(m_clock.now_ns(), audit_event::baseline_approved, baseline_payload);
        m_desk->start();
    }
    // Halts, revocations and incident steps are notified from the incident thread.
    if (m_options.notifier) m_desk->start();
}

void Guard::push_anomaly(const Order& o, const Decision& d) noexcept { m_desk->push_anomaly(o, d); }

void Guard::enforce_baseline(const ApprovedBaseline& ab) {
    announce_behaviour(install_baseline(ab));
}

std::string Guard::install_baseline(const ApprovedBaseline& ab) {
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
    m_desk->enforce(scorer->policy());  // the ring exists before check() can push
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        old_scorer = std::move(m_scorer);
        m_scorer = std::move(scorer);
        old_builder = std::move(m_builder);
    }
    json p = json::parse(to_json(ab.approval));
    p["enforced_from_ns"] = m_clock.now_ns();
    return dump(p);
}

void Guard::audit_event(TimeNs at, std::string_view event, std::string payload) noexcept {
    if (!m_audit) return;
    bool queued = false;
    try {
        std::lock_guard<detail::SpinLock> lock(m_lock);  // one producer at a time
        queued = m_audit->push_event(at, event, payload);
    } catch (...) {
        report("out of memory queueing a record");
        return;
    }
    // Reported with the hot lock released: a handler may look at the Guard.
    if (!queued) report("audit queue full: a record could not be queued");
}

void Guard::process_incidents() { m_desk->process(); }

bool Guard::wait_incidents(std::chrono::milliseconds timeout) { return m_desk->wait(timeout); }

std::vector<Incident> Guard::incidents() const { return m_desk->incidents(); }

void Guard::require_person(std::string_view person, std::string_view key) const {
    if (!m_options.person_key_check) return;
    const std::string why = m_options.person_key_check(person, key);
    if (!why.empty())
        throw Error(ErrorCategory::unauthorised, std::string(person) + "'s key refused: " + why);
}

void Guard::acknowledge_incident(std::string_view id, std::string_view by, std::string_view note) {
    if (by.empty())
        throw Error(ErrorCategory::invalid_input, "acknowledge: the person must be named");
    m_desk->acknowledge(id, by, note);
}

void Guard::resolve_incident(std::string_view id, std::string_view by, std::string_view note) {
    if (by.empty()) throw Error(ErrorCategory::invalid_input, "resolve: the person must be named");
    m_desk->resolve(id, by, note);
}

void Guard::review_incident(const IncidentReview& review) {
    const std::string problem = check_incident_review(review);
    if (!problem.empty()) throw Error(ErrorCategory::unauthorised, "review refused: " + problem);
    if (review.agent_id != m_agent_id)
        throw Error(ErrorCategory::invalid_input, "review: it is for agent " + review.agent_id);
    require_person(review.reviewer, review.public_key);
    m_desk->review(review);
}

void Guard::reenable(const Reenable& st) {
    const std::string problem = check_reenable(st);
    if (!problem.empty()) throw Error(ErrorCategory::unauthorised, "re-enable refused: " + problem);
    if (st.agent_id != m_agent_id)
        throw Error(ErrorCategory::invalid_input, "re-enable: it is for agent " + st.agent_id);
    require_person(st.by, st.public_key);
    const TimeNs now = m_clock.now_ns();
    {
        std::lock_guard<std::mutex> admin(m_admin);
        poll_heartbeat_locked();  // a lapse check() saw is recorded as the halt in force first
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
            rearm_heartbeat_locked();  // in the same step: no check() sees the old heartbeat
        }
        lift_halt(st.by);
        m_events.push_back({GuardEvent::Kind::resumed, now, st.by, st.reason, st.halt_id});
        audit_event(now, audit_event::guard_resumed, to_json(st));
    }
    deliver_cancels();
}

std::optional<BaselineBuilder> Guard::observation() const {
    if (!m_builder) return std::nullopt;
    std::lock_guard<detail::SpinLock> lock(m_lock);
    return *m_builder;
}

}  // namespace kakunin
