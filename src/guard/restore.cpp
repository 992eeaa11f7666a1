// A restart: the Guard's state rebuilt from its own audit log (docs/restart.md). The log is the
// Guard's journal: every decision, report and state change is in it, in the order the Guard
// made them, so the records are put through the same engines the hot path uses (rate windows,
// order limits, the scorer's recent history, observation, the incident desk) rather than
// through a second, summary model that could drift from them.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "audit/json.hpp"
#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "guard/incident_desk.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/replay.hpp"

namespace kakunin {

namespace {

using json = nlohmann::json;

bool is(std::string_view event, std::string_view name) { return event == name; }

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

/// A record's member, read for the restart (the record names what is wrong).
struct Reader {
    const json& p;
    std::string where;  ///< "audit log record seq N (event)"

    [[noreturn]] void fail(const std::string& member, const char* what) const {
        throw Error(ErrorCategory::invalid_input,
                    "restart from the log: " + where + ": " + member + ": " + what);
    }
    const json& object(const char* member) const {
        auto it = p.find(member);
        if (it == p.end() || !it->is_object()) fail(member, "missing or not an object");
        return *it;
    }
    std::string_view text(const json& j, const char* member) const {
        auto it = j.find(member);
        if (it == j.end() || !it->is_string()) fail(member, "missing or not a string");
        return it->get_ref<const std::string&>();
    }
    std::string_view text_or(const json& j, const char* member) const {
        auto it = j.find(member);
        return it != j.end() && it->is_string()
                   ? std::string_view(it->get_ref<const std::string&>())
                   : std::string_view();
    }
    Decimal decimal(const json& j, const char* member) const {
        const auto d = try_parse_decimal(text(j, member));
        if (!d) fail(member, "not a decimal");
        return *d;
    }
    std::optional<Decimal> optional_decimal(const json& j, const char* member) const {
        if (j.find(member) == j.end()) return std::nullopt;
        return decimal(j, member);
    }
    Side side(const json& j) const {
        const std::string_view s = text(j, "side");
        if (s == "BUY") return Side::buy;
        if (s == "SELL") return Side::sell;
        fail("side", "neither BUY nor SELL");
    }
    bool flag(const char* member) const {
        auto it = p.find(member);
        return it != p.end() && it->is_boolean() && it->get<bool>();
    }
    bool has(const char* member) const { return p.find(member) != p.end(); }
};

/// The order of an order.* record (its views point into the payload).
Order order_of(const Reader& r) {
    const json& j = r.object("order");
    Order o;
    o.client_order_id = r.text(j, "client_order_id");
    o.instrument = r.text(j, "instrument");
    o.counterparty = r.text(j, "counterparty");
    o.region = r.text(j, "region");
    o.side = r.side(j);
    o.quantity = r.decimal(j, "quantity");
    o.price = r.decimal(j, "price");
    o.reference_price = r.optional_decimal(j, "reference_price");
    return o;
}

std::optional<ExecutionType> execution_type(std::string_view event) {
    if (event == audit_event::execution_ack) return ExecutionType::ack;
    if (event == audit_event::execution_reject) return ExecutionType::reject;
    if (event == audit_event::execution_fill) return ExecutionType::fill;
    if (event == audit_event::execution_cancelled) return ExecutionType::cancelled;
    if (event == audit_event::execution_expired) return ExecutionType::expired;
    if (event == audit_event::execution_mark) return ExecutionType::mark;
    return std::nullopt;
}

}  // namespace

void Guard::restore_record(const OpenedRecord& r) {
    Restore& st = *m_restore;
    // True when the record was made with the key this Guard holds now: under its certificate,
    // or signed by its key. A keyCompromise revocation of another key (a replacement agent with
    // a new key continuing the log) does not bind this one. An unsigned record of another
    // certificate cannot tell: taken as this key's (fail closed; record signatures are the
    // default).
    auto same_key = [&] {
        if (r.recovered || r.cert_fp == st.fingerprint || r.sig.empty()) return true;
        try {
            return crypto::verify_signature(st.public_key, r.canonical,
                                            crypto::base64_decode(r.sig, "sig"));
        } catch (const std::exception&) {
            return false;
        }
    };
    const std::string_view event = r.event;
    if (st.first) {
        st.first = false;
        // Observation counts from the log's first record: the 7-14 days survive restarts.
        if (m_builder) {
            m_builder = std::make_unique<BaselineBuilder>(
                m_scope, m_agent_id.empty() ? "agent" : m_agent_id, m_options.observation_policy);
            m_builder->start(r.ts_ns);
        }
    }
    const bool order = starts_with(event, "order.");
    const bool request = order || starts_with(event, "amend.") || starts_with(event, "cancel.");
    const auto exec = execution_type(event);
    // Hot records carry the time of their own call, in the order the hot lock took them: the
    // forward-only time the engines saw is their running maximum.
    if (request || exec) st.latest = std::max(st.latest, r.ts_ns);
    const TimeNs t = st.latest;
    const bool allowed =
        is(event, audit_event::order_allowed) || is(event, audit_event::order_warned) ||
        is(event, audit_event::amend_allowed) || is(event, audit_event::cancel_allowed);
    // Rejected requests change nothing but the rate windows (and, scored, the scorer's recent
    // history): their payload is read only when it is needed.
    if (request && !allowed && !(order && m_scorer && st.scored)) {
        if (order) m_order_rate.count(t);
        m_limits->count_message(t);
        return;
    }
    const bool state = starts_with(event, "guard.") || is(event, audit_event::certificate_revoked);
    const bool incident = starts_with(event, "incident.") || is(event, audit_event::review_signed);
    if (!request && !exec && !state && !incident && !is(event, audit_event::baseline_approved))
        return;

    const std::string where =
        "audit log record seq " + std::to_string(r.seq) + " (" + std::string(event) + ")";
    const json p = audit_detail::parse_strict(r.payload, where + " payload");
    const Reader in{p, where};

    if (order) {
        const Order o = order_of(in);
        int instrument, counterparty;
        (void)m_authority->compiled.evaluate(o, r.ts_ns, instrument, counterparty);
        m_order_rate.count(t);
        detail::OrderLimits::NewPlan plan;
        (void)m_limits->evaluate_new(o, instrument, counterparty, t, plan);
        m_limits->count_message(t);
        if (m_scorer && st.scored) {
            Decision scratch;
            m_scorer->score(o, t, scratch);
        }
        if (allowed) {
            m_limits->commit_new(o, plan, t);
            if (m_builder) m_builder->observe(o, t);
        }
        // What check() handed to the incident desk: a score at the warning level, not halted,
        // not the revocation (handle_anomaly counts it on the incident being worked on) —
        // allowed with a warning, or rejected for another reason.
        if (m_scorer && st.scored) {
            const auto score = p.find("score_ppm");
            const auto reasons = p.find("reasons");
            auto has = [&](const char* reason) {
                return reasons != p.end() && reasons->is_array() &&
                       std::find(reasons->begin(), reasons->end(), reason) != reasons->end();
            };
            if (score != p.end() && score->is_number_unsigned() &&
                score->get<std::uint32_t>() >= m_scorer->policy().warn_ppm && !has("halted") &&
                !has("anomaly_revocation"))
                m_desk->restore(audit_event::order_warned, r.ts_ns, p);
        }
        return;
    }
    if (starts_with(event, "amend.")) {
        const json& j = in.object("amend");
        Amend a;
        a.client_order_id = in.text(j, "client_order_id");
        a.quantity = in.optional_decimal(j, "quantity");
        a.price = in.optional_decimal(j, "price");
        a.reference_price = in.optional_decimal(j, "reference_price");
        detail::OrderLimits::AmendPlan plan;
        (void)m_limits->evaluate_amend(a, t, plan);
        m_limits->count_message(t);
        m_limits->commit_amend(plan, t);
        return;
    }
    if (starts_with(event, "cancel.")) {
        Cancel c;
        c.client_order_id = in.text(in.object("cancel"), "client_order_id");
        m_limits->count_message(t);
        m_limits->commit_cancel(c);
        return;
    }
    if (exec) {
        ExecutionReport e;
        e.type = *exec;
        e.instrument = in.text(p, "instrument");
        if (e.type != ExecutionType::mark) {
            e.client_order_id = in.text(p, "client_order_id");
            e.side = in.side(p);
        }
        if (in.has("quantity")) e.quantity = in.decimal(p, "quantity");
        if (in.has("price")) e.price = in.decimal(p, "price");
        (void)m_limits->apply(e, t);
        return;
    }
    if (incident) {
        // The Guard's own revocation (after check() halted at the revocation level) is for
        // keyCompromise: every certificate of this key stays refused.
        if (is(event, "incident.revoked") && same_key()) m_revoked = m_key_compromised = true;
        m_desk->restore(event, r.ts_ns, p);
        return;
    }
    if (is(event, audit_event::baseline_approved)) {
        // Scoring began here; observation, if this Guard observes, learns from here on.
        st.scored = true;
        if (m_builder) {
            m_builder = std::make_unique<BaselineBuilder>(
                m_scope, m_agent_id.empty() ? "agent" : m_agent_id, m_options.observation_policy);
            m_builder->start(r.ts_ns);
        }
        return;
    }

    // ---- state changes ----
    const std::string by(in.text_or(p, "by")), reason(in.text_or(p, "reason"));
    if (is(event, audit_event::guard_reduce_only)) {
        if (m_limits->tracking()) m_limits->set_reduce_only(true);
        m_restored_reduce_only_ns = std::max(m_restored_reduce_only_ns, r.ts_ns);
    } else if (is(event, audit_event::guard_reduce_only_lifted)) {
        m_limits->set_reduce_only(false);
    } else if (is(event, audit_event::guard_cancel_all)) {
        st.cancelled.emplace_back(in.text_or(p, "halt"));
    } else if (is(event, audit_event::guard_halted) ||
               is(event, audit_event::certificate_revoked)) {
        const bool revocation = is(event, audit_event::certificate_revoked);
        const std::string id(in.text_or(p, "halt"));
        // Automatic: said by the record (since this version); before, the Guard's own halts
        // for an anomaly or an escalation said "automatic halt" (the heartbeat's did not).
        const bool automatic = in.has("automatic")
                                   ? in.flag("automatic")
                                   : by == "kakunin" && starts_with(reason, "automatic halt");
        const std::string in_force(in.text_or(p, "in_force"));
        m_halted.store(true, std::memory_order_relaxed);
        if (automatic) m_auto_halted = true;
        if (reason == revocation_halt_reason && same_key()) m_revoked = m_key_compromised = true;
        if (revocation) {
            // A revocation of the certificate in force now, or of this key for keyCompromise
            // (every certificate of the key is then refused), holds after the restart.
            const bool compromise = in.flag("key_compromised") && same_key();
            if (compromise) m_key_compromised = true;
            if (compromise || r.cert_fp == st.fingerprint) m_revoked = true;
        }
        const GuardEvent e{revocation ? GuardEvent::Kind::revoked : GuardEvent::Kind::halted,
                           r.ts_ns, by, reason, id};
        if (!in_force.empty() && m_halt && m_halt->halt_id == in_force) {
            // Made while an automatic halt was in force: that one stays the halt to lift.
            m_past_halts.push_back({id, "made while the automatic halt " + in_force +
                                            " was in force: only a re-enable of that one "
                                            "lifts both"});
        } else if (m_halt && m_halt->halt_id.empty()) {
            // check() records its automatic halt in the same call, without an id; the desk's
            // record of the same halt with its id follows (unless the process died first).
            if (!id.empty()) m_halt = e;
        } else {
            if (m_halt)
                m_past_halts.push_back(
                    {m_halt->halt_id, "superseded by halt " + id + " before it was lifted"});
            m_halt = e;
        }
        m_events.push_back(e);
    } else if (is(event, audit_event::guard_resumed)) {
        // resume() records by/reason/halt; reenable() the signed statement (halt_id).
        std::string id(in.text_or(p, "halt"));
        if (id.empty()) id = std::string(in.text_or(p, "halt_id"));
        const std::string who = by;
        m_halted.store(false, std::memory_order_relaxed);
        m_auto_halted = false;
        if (m_halt) {
            m_past_halts.push_back(
                {m_halt->halt_id, "lifted at " + format_timestamp(r.ts_ns) + " by " + who});
            m_halt.reset();
        }
        m_events.push_back({GuardEvent::Kind::resumed, r.ts_ns, who, reason, id});
    } else if (is(event, audit_event::guard_rotated)) {
        m_events.push_back({GuardEvent::Kind::rotated, r.ts_ns, by, reason});
        // A rotation gives a new certificate: a revocation of the old one (not for
        // keyCompromise) no longer stops the Guard; the halt stays until a person lifts it.
        if (!m_key_compromised) m_revoked = false;
    } else if (is(event, audit_event::guard_crl_updated)) {
        m_events.push_back({GuardEvent::Kind::crl_updated, r.ts_ns, by, reason});
    }
}

void Guard::finish_restore() {
    Restore& st = *m_restore;
    if (st.latest != INT64_MIN) m_latest_ns = m_last_ns = st.latest;
    if (m_halted.load(std::memory_order_relaxed) && m_halt) {
        if (m_halt->halt_id.empty()) {
            // check() halted and recorded it, and the process died before the halt had its id:
            // it gets one now, recorded, so a signed re-enable can name it.
            GuardEvent e = *m_halt;
            m_halt.reset();
            e.reason = "restored from the log after a restart: " + e.reason;
            std::lock_guard<std::mutex> admin(m_admin);
            record(std::move(e));
        } else if (m_limits->working_count() > 0 &&
                   std::find(st.cancelled.begin(), st.cancelled.end(), m_halt->halt_id) ==
                       st.cancelled.end()) {
            // The halt's cancel list never reached the trading system (the process died first):
            // hand it over now, as the halt would have.
            queue_cancel_list(*m_halt);
        }
    }
    m_restore.reset();
}

}  // namespace kakunin
