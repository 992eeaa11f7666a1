// The incident timeline of an export: the records of the agent's log and of the CA's log that
// tell what happened to the agent and who decided — warnings, incidents, escalations,
// revocations, halts and the cancels they requested, reduce-only mode, re-enables, approvals,
// reviews — ordered by time. Derived only from the
// package's records, so verification re-derives it and compares.
#include <algorithm>

#include "export/export_internal.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::export_detail {
namespace {

std::string str(const json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<std::uint64_t> uint_member(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned()) {
        if (it != j.end() && it->is_number_integer() && it->get<std::int64_t>() >= 0)
            return static_cast<std::uint64_t>(it->get<std::int64_t>());
        return std::nullopt;
    }
    return it->get<std::uint64_t>();
}

bool flag(const json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_boolean() && it->get<bool>();
}

/// Events of the agent's log that belong on the timeline (orders only when they warned or
/// triggered a revocation). The trigger is named by its reason, anomaly_revocation, not by a
/// score: the thresholds are the approved baseline's policy, and an order rejected for another
/// reason (halted, revoked) may score high without triggering anything. Amend and cancel
/// requests are like orders and execution reports are routine: neither is listed, except the
/// report that put the Guard in reduce-only mode and a fill for an order the Guard did not know
/// (a position moved by an order it never checked).
bool agent_event_on_timeline(const std::string& event, const json& payload) {
    if (event == "order.warned") return true;
    if (event.rfind("execution.", 0) == 0)
        return flag(payload, "reduce_only_entered") ||
               (event == "execution.fill" && flag(payload, "unknown_order"));
    if (event == "guard.cancel_all" || event == "guard.reduce_only" ||
        event == "guard.reduce_only_lifted")
        return true;
    if (event == "order.rejected") {
        const auto reasons = payload.find("reasons");
        if (reasons == payload.end() || !reasons->is_array()) return false;
        return std::find(reasons->begin(), reasons->end(), json("anomaly_revocation")) !=
               reasons->end();
    }
    return event.rfind("incident.", 0) == 0 || event == "guard.halted" ||
           event == "guard.resumed" || event == "guard.rotated" || event == "certificate.revoked" ||
           event == "log.truncated_tail" || event == "log.recovered" || event == "log.gap" ||
           event == "log.accepted" || event == "review.signed" || event == "baseline.approved";
}

std::string order_text(const json& order) {
    if (!order.is_object()) return "";
    std::string s = str(order, "side") + " " + str(order, "quantity") + " " +
                    str(order, "instrument") + " @ " + str(order, "price");
    if (!str(order, "counterparty").empty()) s += " on " + str(order, "counterparty");
    if (!str(order, "region").empty()) s += " from " + str(order, "region");
    if (!str(order, "client_order_id").empty()) s += " (" + str(order, "client_order_id") + ")";
    return s;
}

std::string detail_of(const std::string& event, const json& p) {
    std::string d;
    auto add = [&](const std::string& part) {
        if (part.empty()) return;
        if (!d.empty()) d += "; ";
        d += part;
    };
    if (event.rfind("order.", 0) == 0) {
        add(order_text(p.value("order", json::object())));
        const auto reasons = p.find("reasons");
        if (reasons != p.end() && reasons->is_array() && !reasons->empty()) {
            std::string r = "reasons: ";
            for (std::size_t i = 0; i < reasons->size(); ++i)
                if ((*reasons)[i].is_string())
                    r += (i ? ", " : "") + (*reasons)[i].get<std::string>();
            add(r);
        }
        return d;
    }
    if (event.rfind("execution.", 0) == 0) {
        std::string r = event.substr(10);
        if (!str(p, "side").empty()) r += " " + str(p, "side");
        if (!str(p, "quantity").empty()) r += " " + str(p, "quantity");
        r += " " + str(p, "instrument");
        if (!str(p, "price").empty()) r += " @ " + str(p, "price");
        if (!str(p, "client_order_id").empty()) r += " (" + str(p, "client_order_id") + ")";
        add(r);
        if (flag(p, "unknown_order")) add("not a working order of the Guard");
        if (flag(p, "reduce_only_entered")) add("reduce-only mode entered");
        add(str(p, "problem"));
        return d;
    }
    if (event == "guard.cancel_all") {
        const auto ids = p.find("order_ids");
        const std::size_t n = ids != p.end() && ids->is_array() ? ids->size() : 0;
        std::string r = "cancel of " + std::to_string(n) + " working order(s) requested";
        constexpr std::size_t shown = 10;  // all of them are in the record
        for (std::size_t i = 0; i < n && i < shown; ++i)
            if ((*ids)[i].is_string()) r += (i ? ", " : ": ") + (*ids)[i].get<std::string>();
        if (n > shown) r += " and " + std::to_string(n - shown) + " more (in the record)";
        add(r);
        if (!str(p, "halt").empty()) add("halt " + str(p, "halt"));
        add(str(p, "reason"));
        return d;
    }
    if (event == "incident.opened") {
        const json trigger = p.value("trigger", json::object());
        add("trigger: " + order_text(trigger.is_object() ? trigger.value("order", json::object())
                                                         : json::object()));
        if (const auto w = uint_member(p, "window_ms"))
            add("investigation window " + std::to_string(*w / 1000) + " s");
        return d;
    }
    if (event == "incident.escalated") add("action: " + str(p, "action"));
    if (event == "incident.revoked" || event == "certificate.revoked" ||
        event == "certificate.issued")
        if (!str(p, "serial").empty()) add("certificate " + str(p, "serial"));
    if (event == "incident.replacement_requested")
        add("replacement requested for certificate " + str(p, "replacement_for_serial"));
    if (event == "review.signed") {
        add("root cause: " + str(p, "root_cause"));
        if (!str(p, "signature").empty()) add("signed (" + str(p, "algorithm") + ")");
    }
    if (event == "guard.resumed" && !str(p, "signature").empty())
        add("signed (" + str(p, "algorithm") + ")");
    if (event == "baseline.approved") {
        if (const auto v = uint_member(p, "version")) add("baseline version " + std::to_string(*v));
        if (p.contains("automatic") && p["automatic"].is_boolean() && p["automatic"].get<bool>())
            add("automatic approval (replay)");
    }
    if (event == "scope.approved" && !str(p, "scope_sha256").empty())
        add("scope sha256:" + str(p, "scope_sha256"));
    if (event == "agent.registered") {
        const json r = p.value("registration", json::object());
        if (r.is_object()) {
            add("owner: " + str(r, "owner"));
            add("purpose: " + str(r, "purpose"));
        }
    }
    if (event == "log.truncated_tail") add("torn last line cut: " + str(p, "reason"));
    if (event == "log.recovered" && p.is_object()) {
        const auto n = [&](const char* k) {
            const auto it = p.find(k);
            return it != p.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
        };
        add("the process had stopped; " + std::to_string(n("count")) +
            " decision(s) and event(s) recovered from its journal");
        if (n("damaged_slots") + n("missing_entries") != 0)
            add(std::to_string(n("damaged_slots")) + " damaged and " +
                std::to_string(n("missing_entries")) + " missing journal entries");
    }
    if (event == "log.gap" && p.is_object()) {
        const auto it = p.find("count");
        add("the process had stopped with " +
            std::to_string(it != p.end() && it->is_number_unsigned() ? it->get<std::uint64_t>()
                                                                     : 0) +
            " record(s) its sink had not made durable and no journal to keep them: they are "
            "missing from the log");
    }
    add(str(p, "reason"));
    add(str(p, "note"));
    return d;
}

std::string who_of(const json& p, bool agent_log) {
    for (const char* key : {"by", "reviewer", "approver", "created_by"}) {
        const std::string s = str(p, key);
        if (!s.empty()) return s;
    }
    // The CA's own records carry the human record they act on (scope.approved, agent.registered).
    for (const auto& [member, key] : {std::pair<const char*, const char*>{"approval", "approver"},
                                      {"registration", "created_by"}}) {
        const auto it = p.find(member);
        if (it != p.end() && it->is_object() && !str(*it, key).empty()) return str(*it, key);
    }
    return agent_log ? "kakunin (automatic)" : "CA";
}

void add_entries(std::vector<json>& out, const std::vector<LogLine>& lines, bool agent_log,
                 const std::string& agent, std::optional<TimeNs> from, std::optional<TimeNs> to) {
    for (const LogLine& line : lines) {
        const json& r = line.value;
        if (!line.is_record()) continue;
        const std::string event = str(r, "event");
        const json payload = r.value("payload", json::object());
        if (!payload.is_object()) continue;
        const auto ts_it = r.find("ts_ns");
        if (ts_it == r.end() || !ts_it->is_number_integer()) continue;
        const TimeNs ts = ts_it->get<TimeNs>();
        if ((from && ts < *from) || (to && ts > *to)) continue;
        if (agent_log) {
            if (!agent_event_on_timeline(event, payload)) continue;
        } else {
            const std::string concerns =
                !str(payload, "agent").empty() ? str(payload, "agent") : str(r, "agent");
            if (concerns != agent) continue;
        }
        json e;
        e["ts_ns"] = ts;
        e["time"] = format_timestamp(ts);
        e["log"] = agent_log ? "agent" : "ca";
        e["log_id"] = str(r, "log_id");
        e["seq"] = r.value("seq", json());
        e["event"] = event;
        e["who"] = who_of(payload, agent_log);
        if (!str(payload, "incident").empty()) e["incident"] = str(payload, "incident");
        const json* scored = &payload;
        if (!payload.contains("score_ppm") && payload.contains("trigger") &&
            payload["trigger"].is_object())
            scored = &payload["trigger"];
        if (const auto s = uint_member(*scored, "score_ppm")) e["score_ppm"] = *s;
        if (scored->contains("components_ppm") && (*scored)["components_ppm"].is_object())
            e["components_ppm"] = (*scored)["components_ppm"];
        e["detail"] = detail_of(event, payload);
        out.push_back(std::move(e));
    }
}

}  // namespace

json build_timeline(const std::string& agent, const std::vector<LogLine>& extract,
                    const std::vector<LogLine>& ca_log, std::optional<TimeNs> from,
                    std::optional<TimeNs> to) {
    std::vector<json> entries;
    add_entries(entries, extract, true, agent, from, to);
    add_entries(entries, ca_log, false, agent, from, to);
    std::stable_sort(entries.begin(), entries.end(), [](const json& a, const json& b) {
        const TimeNs ta = a["ts_ns"].get<TimeNs>(), tb = b["ts_ns"].get<TimeNs>();
        if (ta != tb) return ta < tb;
        return a["log"].get<std::string>() < b["log"].get<std::string>();
    });
    json out = json::array();
    for (auto& e : entries) out.push_back(std::move(e));
    return out;
}

}  // namespace kakunin::export_detail
