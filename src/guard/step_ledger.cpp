// The human steps' ledger (step_ledger.hpp): incident states, the halt in force and reduce-only
// mode from an agent's records, and which steps they still allow.
#include "guard/step_ledger.hpp"

#include <algorithm>
#include <cctype>

#include "audit/json.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/error.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::detail {
namespace {

using audit_detail::json;

std::string text_member(const json& p, const char* key, const std::string& where,
                        bool required = true) {
    const auto it = p.find(key);
    if (it == p.end()) {
        if (!required) return {};
        throw Error(ErrorCategory::invalid_input, where + ": payload." + key + ": missing");
    }
    if (!it->is_string())
        throw Error(ErrorCategory::invalid_input, where + ": payload." + key + ": not a string");
    return it->get<std::string>();
}

/// A revocation whose reason speaks of a compromise (keyCompromise, cACompromise, "of this
/// Guard's key is on the CRL for keyCompromise"): no rotation lifts it. Read broadly: the
/// worst that follows is a re-enable refused that the Guard would refuse too.
bool names_compromise(const std::string& reason) {
    std::string lower;
    for (char c : reason)
        lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    return lower.find("compromise") != std::string::npos;
}

std::string when(TimeNs at, const std::string& by) {
    return "at " + format_timestamp(at) + (by.empty() ? "" : " by " + by);
}

}  // namespace

HumanStepLedger::HumanStepLedger(std::string agent_id) : m_agent(std::move(agent_id)) {}

HumanStepLedger::IncidentEntry* HumanStepLedger::find(std::string_view id) {
    for (auto& i : m_incidents)
        if (i.id == id) return &i;
    return nullptr;
}

const HumanStepLedger::IncidentEntry* HumanStepLedger::find(std::string_view id) const {
    for (const auto& i : m_incidents)
        if (i.id == id) return &i;
    return nullptr;
}

std::string HumanStepLedger::key(const HumanStep& s) {
    switch (s.kind) {
        case HumanStep::Kind::acknowledge:
        case HumanStep::Kind::resolve:
            return std::string(to_string(s.kind)) + "\n" + s.target + "\n" + s.by + "\n" + s.note;
        case HumanStep::Kind::review:
            return "review\n" + (s.review ? s.review->signature : std::string());
        case HumanStep::Kind::reenable:
            return "reenable\n" + (s.reenable ? s.reenable->signature : std::string());
        case HumanStep::Kind::lift_reduce_only: return "lift_reduce_only\n" + s.by;
    }
    return {};
}

void HumanStepLedger::add_agent_line(std::string_view line, const std::string& where) {
    audit_detail::ParsedLine parsed;
    std::string error;
    if (!audit_detail::parse_line(line, parsed, error))
        throw Error(ErrorCategory::invalid_input, where + ": " + error);
    if (parsed.kind != audit_detail::LineKind::record) return;
    if (parsed.agent != m_agent)
        throw Error(ErrorCategory::invalid_input,
                    where + ": a record of agent '" + parsed.agent + "', not '" + m_agent + "'");
    const json record = audit_detail::parse_strict(parsed.canonical, where);
    add_agent_record(parsed.record.event, record.at("payload").dump(), parsed.record.ts_ns, where);
}

void HumanStepLedger::add_agent_record(std::string_view event, std::string_view payload_json,
                                       TimeNs ts, const std::string& where) {
    const bool known =
        event == audit_event::incident_opened || event == "incident.acknowledged" ||
        event == "incident.resolved" || event == "incident.escalated" ||
        event == "incident.revoked" || event == audit_event::review_signed ||
        event == audit_event::guard_halted || event == audit_event::guard_resumed ||
        event == audit_event::certificate_revoked || event == audit_event::guard_rotated ||
        event == audit_event::guard_reduce_only || event == audit_event::guard_reduce_only_lifted;
    if (!known) return;
    const json p = audit_detail::parse_strict(payload_json, where + ": payload");
    if (!p.is_object())
        throw Error(ErrorCategory::invalid_input, where + ": payload: not a JSON object");

    if (event == audit_event::incident_opened) {
        IncidentEntry e;
        e.id = text_member(p, "incident", where);
        e.changed_at_ns = ts;
        e.changed_by = "kakunin";
        if (find(e.id) == nullptr) m_incidents.push_back(std::move(e));
        return;
    }
    if (event == "incident.escalated") {
        if (IncidentEntry* i = find(text_member(p, "incident", where))) i->escalated = true;
        return;
    }
    if (event == "incident.revoked") {
        if (IncidentEntry* i = find(text_member(p, "incident", where))) {
            i->state = IncidentState::revoked;
            i->changed_at_ns = ts;
            i->changed_by = "kakunin";
        }
        // The automatic revocation: its key is compromised, no re-enable lifts this halt.
        if (m_halt) m_halt->revoked = m_halt->key_compromised = true;
        return;
    }
    if (event == audit_event::guard_halted || event == audit_event::certificate_revoked) {
        Halt h;
        h.id = text_member(p, "halt", where, false);
        h.by = text_member(p, "by", where, false);
        h.reason = text_member(p, "reason", where, false);
        h.at_ns = ts;
        h.automatic = h.by == "kakunin";
        h.revoked = event == audit_event::certificate_revoked;
        h.key_compromised = h.revoked && names_compromise(h.reason);
        if (m_halt && m_halt->automatic && !h.automatic) {
            // As Guard::halt(): a manual halt on an automatic one never becomes the halt in force.
            if (!h.id.empty())
                m_past_halts[h.id] = "made while the automatic halt " + m_halt->id +
                                     " was in force: only a re-enable of that one lifts both";
            if (h.revoked) m_halt->revoked = true;
            return;
        }
        if (m_halt && !m_halt->id.empty())
            m_past_halts[m_halt->id] = "superseded by halt " + h.id + " before it was lifted";
        if (m_halt && m_halt->key_compromised) h.revoked = h.key_compromised = true;
        m_halt = std::move(h);
        m_halt_pending.clear();
        return;
    }
    if (event == audit_event::guard_rotated) {
        if (m_halt && !m_halt->key_compromised) m_halt->revoked = false;
        return;
    }
    if (event == audit_event::guard_reduce_only) {
        m_reduce_only = true;
        m_reduce_only_pending.clear();
        return;
    }

    // The human steps, as the Guard recorded them.
    HumanStep s;
    s.agent_id = m_agent;
    s.at_ns = ts;
    if (event == "incident.acknowledged" || event == "incident.resolved") {
        s.kind = event == "incident.acknowledged" ? HumanStep::Kind::acknowledge
                                                  : HumanStep::Kind::resolve;
        s.target = text_member(p, "incident", where);
        s.by = text_member(p, "by", where);
        s.note = text_member(p, "note", where, false);
    } else if (event == audit_event::review_signed) {
        s.kind = HumanStep::Kind::review;
        s.review = incident_review_from_json(payload_json);
        s.target = s.review->incident_id;
        s.by = s.review->reviewer;
    } else if (event == audit_event::guard_resumed) {
        // resume() records {by, reason, halt}; reenable() the signed statement.
        s.kind = HumanStep::Kind::reenable;
        s.target = text_member(p, "halt", where, false);
        s.by = text_member(p, "by", where, false);
        if (p.contains("signature")) s.reenable = reenable_from_json(payload_json);
    } else {  // guard.reduce_only_lifted
        s.kind = HumanStep::Kind::lift_reduce_only;
        s.by = text_member(p, "by", where, false);
    }
    ++m_seen[key(s)];
    apply(s, {});
}

void HumanStepLedger::apply(const HumanStep& s, const std::string& pending) {
    switch (s.kind) {
        case HumanStep::Kind::acknowledge:
        case HumanStep::Kind::resolve:
        case HumanStep::Kind::review:
            if (IncidentEntry* i = find(s.target)) {
                i->state = s.kind == HumanStep::Kind::acknowledge ? IncidentState::acknowledged
                           : s.kind == HumanStep::Kind::resolve   ? IncidentState::resolved
                                                                  : IncidentState::reviewed;
                i->changed_at_ns = s.at_ns;
                i->changed_by = s.by;
                i->pending = pending;
            }
            return;
        case HumanStep::Kind::reenable:
            if (m_halt) {
                if (!m_halt->id.empty())
                    m_past_halts[m_halt->id] =
                        "lifted " + when(s.at_ns, s.by) +
                        (pending.empty() ? "" : " (" + pending + ", not yet in the agent's log)");
                m_halt.reset();
                m_halt_pending = pending;
            }
            return;
        case HumanStep::Kind::lift_reduce_only:
            m_reduce_only = false;
            m_reduce_only_pending = pending;
            return;
    }
}

bool HumanStepLedger::add_recorded_step(const HumanStep& step) {
    if (step.agent_id != m_agent) return false;
    const auto it = m_seen.find(key(step));
    if (it != m_seen.end() && it->second > 0) {
        --it->second;  // the Guard applied it: its record is in the agent's log
        return false;
    }
    if (!refusal(step).empty()) return false;  // overtaken: it no longer applies
    apply(step, step.source.empty() ? std::string("recorded") : step.source);
    return true;
}

std::string HumanStepLedger::refusal(const HumanStep& s) const {
    if (s.agent_id != m_agent)
        return "the step is for agent '" + s.agent_id + "', not '" + m_agent + "'";
    const auto pending_note = [](const std::string& pending) {
        return pending.empty() ? std::string()
                               : " (" + pending + ": recorded, not yet in the agent's log)";
    };
    switch (s.kind) {
        case HumanStep::Kind::acknowledge:
        case HumanStep::Kind::resolve:
        case HumanStep::Kind::review: {
            if (s.target.empty()) return "an incident id is required";
            const IncidentEntry* i = find(s.target);
            if (i == nullptr)
                return "no incident '" + s.target + "' in agent '" + m_agent + "'s audit log";
            const bool ok =
                s.kind == HumanStep::Kind::acknowledge ? i->state == IncidentState::open
                : s.kind == HumanStep::Kind::resolve
                    ? (i->state == IncidentState::open || i->state == IncidentState::acknowledged)
                    : i->state == IncidentState::revoked;
            if (ok) return {};
            std::string why = "incident " + i->id + " is " + to_string(i->state);
            if (i->changed_by != "kakunin" || i->state != IncidentState::open)
                why += " (" + when(i->changed_at_ns, i->changed_by) + ")";
            why += pending_note(i->pending);
            if (s.kind == HumanStep::Kind::acknowledge)
                return why + ": only an open one is acknowledged";
            if (s.kind == HumanStep::Kind::resolve)
                return why + ": only an open or acknowledged one is resolved";
            return why + ": only an incident closed by an automatic revocation is reviewed";
        }
        case HumanStep::Kind::reenable: {
            if (s.target.empty()) return "a halt id is required";
            const auto past = m_past_halts.find(s.target);
            if (!m_halt || m_halt->id != s.target) {
                std::string why =
                    past != m_past_halts.end()
                        ? "halt " + s.target + " is not in force: it was " + past->second
                        : "no halt '" + s.target + "' in agent '" + m_agent + "'s audit log";
                if (!m_halt)
                    return why + "; agent '" + m_agent + "' is not halted" +
                           pending_note(m_halt_pending);
                return why + "; the halt in force is " +
                       (m_halt->id.empty()
                            ? std::string("the automatic halt of an anomaly revocation")
                            : m_halt->id) +
                       " (" + m_halt->reason + ")";
            }
            if (m_halt->key_compromised)
                return "halt " + s.target +
                       " revoked the certificate for keyCompromise: no re-enable lifts it; a "
                       "replacement agent with a new key is needed";
            if (m_halt->revoked)
                return "halt " + s.target +
                       " revoked the certificate: rotate the Guard to a newly issued certificate "
                       "first";
            return {};
        }
        case HumanStep::Kind::lift_reduce_only:
            if (!m_reduce_only)
                return "reduce-only mode is not in force for agent '" + m_agent + "'" +
                       pending_note(m_reduce_only_pending);
            return {};
    }
    return "unknown step";
}

}  // namespace kakunin::detail
