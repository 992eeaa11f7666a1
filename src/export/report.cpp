// report.html of an export: one self-contained page (inline CSS and SVG, no script, no network)
// for a supervisor or an auditor: the agent, its scope and approvals, the risk score over time
// with the warning and revocation thresholds, the incident timeline, the audit evidence and the
// regulatory mapping. Rendered only from the package's own files, deterministically (integer
// geometry, no clock), so `kakunin export verify` renders it again and compares.
#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "export/export_internal.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::export_detail {
namespace {

using std::string;

string esc(const string& s) { return html_escape(s); }

string str(const json& j, const char* key) {
    if (!j.is_object()) return "";
    const auto it = j.find(key);
    if (it == j.end()) return "";
    if (it->is_string()) return it->get<string>();
    if (it->is_number_integer() || it->is_boolean()) return it->dump();
    return "";
}

std::optional<TimeNs> time_member(const json& j, const char* key) {
    if (!j.is_object()) return std::nullopt;
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<TimeNs>();
}

string when(const json& j, const char* key) {
    const auto t = time_member(j, key);
    return t ? human_time(*t) : "—";
}

/// 0.785 from 785000 ppm (three decimals, truncated; exact for the thresholds).
string score_text(std::uint64_t ppm) {
    const std::uint64_t milli = ppm / 1000;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(milli / 1000),
                  static_cast<unsigned long long>(milli % 1000));
    return buf;
}

string short_hash(const string& h) {
    const string plain = h.rfind("sha256:", 0) == 0 ? h.substr(7) : h;
    return plain.size() > 16 ? plain.substr(0, 16) + "…" : plain;
}

string list_text(const json& arr) {
    if (!arr.is_array() || arr.empty()) return "—";
    string s;
    for (const auto& x : arr) {
        if (!s.empty()) s += ", ";
        s += x.is_string() ? x.get<string>() : x.dump();
    }
    return s;
}

string money_text(const json& m) {
    if (!m.is_object()) return "—";
    return str(m, "amount") + " " + str(m, "currency");
}

constexpr const char* css = R"css(
:root { --ink:#1d2733; --muted:#5b6b7c; --line:#d5dde6; --bg:#f6f8fa; --warn:#d98b00;
        --bad:#c0392b; --ok:#2b7bb9; --good:#2e7d32; }
* { box-sizing: border-box; }
body { font: 14px/1.45 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: var(--ink);
       margin: 0; background: #fff; }
header { background: #17324d; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #c9d6e3; }
main { padding: 8px 32px 32px; max-width: 1240px; }
h2 { font-size: 17px; border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 28px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line);
         overflow-wrap: anywhere; }
table.fixed { table-layout: fixed; }
table.fixed td:nth-child(2) { overflow-wrap: normal; word-break: normal; font-size: 13px; }
th { background: var(--bg); font-weight: 600; }
table.kv th { width: 220px; }
code, .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px;
              overflow-wrap: anywhere; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 130px;
        background: var(--bg); }
.card .n { font-size: 22px; font-weight: 700; }
.card .l { color: var(--muted); font-size: 12px; }
.card.warn .n { color: var(--warn); } .card.bad .n { color: var(--bad); }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; color: #fff; }
.tag.ok { background: var(--good); } .tag.bad { background: var(--bad); }
.tag.warn { background: var(--warn); } .tag.sim { background: #7b5ea7; }
tr.ev-warn td:first-child { border-left: 4px solid var(--warn); }
tr.ev-bad td:first-child { border-left: 4px solid var(--bad); }
tr.ev-human td:first-child { border-left: 4px solid var(--good); }
.muted { color: var(--muted); }
.note { background: #fff8e1; border-left: 4px solid var(--warn); padding: 6px 10px; margin: 6px 0; }
figure { margin: 8px 0; }
figcaption { color: var(--muted); font-size: 12px; }
svg text { font-family: "DejaVu Sans", Arial, sans-serif; }
@media print { header { background: #fff; color: #000; } header p { color: #333; } }
)css";

// ---- chart
// ----------------------------------------------------------------------------------------

struct Point {
    TimeNs ts;
    std::uint64_t score;
    int kind;  // 0 allowed, 1 warned, 2 rejected
};

constexpr std::int64_t chart_w = 960, chart_h = 320;
constexpr std::int64_t left = 64, right = 24, top = 16, bottom = 48;
constexpr std::int64_t plot_w = chart_w - left - right, plot_h = chart_h - top - bottom;
constexpr std::size_t max_points = 1200, slices = 600;

std::int64_t y_of(std::uint64_t ppm) {
    const std::uint64_t p = std::min<std::uint64_t>(ppm, 1'000'000);
    return top + plot_h -
           static_cast<std::int64_t>(p * static_cast<std::uint64_t>(plot_h) / 1'000'000);
}

std::int64_t x_of(TimeNs t, TimeNs t0, TimeNs t1) {
    const int128 num = static_cast<int128>(t - t0) * plot_w;
    return left + static_cast<std::int64_t>(num / (t1 - t0));
}

string tick_time(TimeNs t, TimeNs span) {
    const CivilTime c = civil_from_ns(t);
    char buf[48];
    if (span <= 2LL * 86'400'000'000'000)
        std::snprintf(buf, sizeof buf, "%02u-%02u %02u:%02u", c.month, c.day, c.hour, c.minute);
    else
        std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(c.year), c.month,
                      c.day);
    return buf;
}

/// The thresholds the chart draws: those of the scoring policy inside the latest approved
/// baseline of the package (what the Guard enforced), or DESIGN §4's defaults when the package
/// has no approved baseline, said so in `source`.
struct Thresholds {
    std::uint64_t warn = warn_ppm, revoke = revoke_ppm;
    bool from_baseline = false;
    string source;
};

string chart(const std::vector<Point>& all, TimeNs t0, TimeNs t1, const Thresholds& th,
             string& caption) {
    if (t1 <= t0) t1 = t0 + 1'000'000'000;
    std::vector<Point> pts;
    if (all.size() <= max_points) {
        pts = all;
    } else {
        // Keep the highest score of each time slice: what matters for risk survives.
        std::vector<std::optional<Point>> best(slices);
        for (const Point& p : all) {
            auto i =
                static_cast<std::size_t>(static_cast<int128>(p.ts - t0) * slices / (t1 - t0 + 1));
            i = std::min(i, slices - 1);
            if (!best[i] || p.score > best[i]->score) best[i] = p;
        }
        for (const auto& b : best)
            if (b) pts.push_back(*b);
    }
    std::ostringstream s;
    s << "<svg id=\"score-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << chart_w
      << "\" height=\"" << chart_h << "\" viewBox=\"0 0 " << chart_w << " " << chart_h
      << "\" role=\"img\" aria-label=\"Risk score of each order over time, with the "
      << score_text(th.warn) << " warning and " << score_text(th.revoke)
      << " revocation thresholds\">\n";
    s << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << plot_w << "\" height=\""
      << plot_h << "\" fill=\"#fbfcfd\" stroke=\"#d5dde6\"/>\n";
    for (std::uint64_t v : {0u, 250'000u, 500'000u, 1'000'000u}) {
        const auto y = y_of(v);
        s << "<line class=\"grid\" x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + plot_w
          << "\" y2=\"" << y << "\" stroke=\"#e8edf2\"/>"
          << "<text x=\"" << left - 8 << "\" y=\"" << y + 4
          << "\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6b7c\">" << score_text(v)
          << "</text>\n";
    }
    for (int i = 0; i <= 4; ++i) {
        const TimeNs t = t0 + static_cast<TimeNs>(static_cast<int128>(t1 - t0) * i / 4);
        const auto x = x_of(t, t0, t1);
        s << "<line x1=\"" << x << "\" y1=\"" << top + plot_h << "\" x2=\"" << x << "\" y2=\""
          << top + plot_h + 5 << "\" stroke=\"#5b6b7c\"/>"
          << "<text x=\"" << x << "\" y=\"" << top + plot_h + 20 << "\" font-size=\"11\" "
          << "text-anchor=\""
          << (i == 0   ? "start"
              : i == 4 ? "end"
                       : "middle")
          << "\" fill=\"#5b6b7c\">" << esc(tick_time(t, t1 - t0)) << "</text>\n";
    }
    s << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << chart_h - 6
      << "\" font-size=\"12\" text-anchor=\"middle\" fill=\"#1d2733\">time (UTC)</text>\n"
      << "<text x=\"16\" y=\"" << top + plot_h / 2 << "\" font-size=\"12\" text-anchor=\"middle\" "
      << "fill=\"#1d2733\" transform=\"rotate(-90 16 " << top + plot_h / 2
      << ")\">risk score</text>\n";
    if (pts.size() > 1) {
        s << "<polyline class=\"score-line\" fill=\"none\" stroke=\"#9fb8cf\" stroke-width=\"1\" "
             "points=\"";
        for (std::size_t i = 0; i < pts.size(); ++i)
            s << (i ? " " : "") << x_of(pts[i].ts, t0, t1) << "," << y_of(pts[i].score);
        s << "\"/>\n";
    }
    static const char* colours[] = {"#2b7bb9", "#d98b00", "#c0392b"};
    static const char* kinds[] = {"allowed", "warned", "rejected"};
    s << "<g class=\"score-points\">\n";
    for (const Point& p : pts)
        s << "<circle class=\"" << kinds[p.kind] << "\" cx=\"" << x_of(p.ts, t0, t1) << "\" cy=\""
          << y_of(p.score) << "\" r=\"3\" fill=\"" << colours[p.kind] << "\"/>\n";
    s << "</g>\n";
    const struct {
        std::uint64_t ppm;
        const char* cls;
        const char* colour;
        string label;
    } lines[] = {{th.warn, "threshold threshold-warn", "#d98b00", score_text(th.warn) + " warning"},
                 {th.revoke, "threshold threshold-revoke", "#c0392b",
                  score_text(th.revoke) + " revocation"}};
    for (const auto& line : lines) {
        const auto y = y_of(line.ppm);
        s << "<line class=\"" << line.cls << "\" data-threshold=\"" << score_text(line.ppm)
          << "\" x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + plot_w << "\" y2=\"" << y
          << "\" stroke=\"" << line.colour << "\" stroke-width=\"2\" stroke-dasharray=\"8 5\"/>"
          << "<text x=\"" << left + plot_w - 4 << "\" y=\"" << y - 5
          << "\" font-size=\"11\" text-anchor=\"end\" fill=\"" << line.colour << "\">"
          << esc(line.label) << "</text>\n";
    }
    if (all.empty())
        s << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << top + plot_h / 2
          << "\" font-size=\"14\" text-anchor=\"middle\" fill=\"#5b6b7c\">no orders in the "
             "period</text>\n";
    s << "</svg>\n";
    std::uint64_t counts[3] = {0, 0, 0};
    for (const Point& p : all) ++counts[p.kind];
    caption = std::to_string(all.size()) + " orders: " + std::to_string(counts[0]) +
              " allowed (blue), " + std::to_string(counts[1]) +
              " allowed with a warning (amber), " + std::to_string(counts[2]) + " rejected (red).";
    if (all.size() > max_points)
        caption += " Each dot is the highest score among the orders of one of " +
                   std::to_string(slices) + " equal time slices.";
    caption += " Dashed lines: " + score_text(th.warn) + " opens an incident and notifies; " +
               score_text(th.revoke) + " rejects, halts and revokes. " + th.source;
    return s.str();
}

// ---- sections
// -------------------------------------------------------------------------------------

void row(std::ostringstream& s, const string& k, const string& v_html) {
    s << "<tr><th>" << esc(k) << "</th><td>" << v_html << "</td></tr>\n";
}

string scope_rows(const json& scope) {
    std::ostringstream s;
    s << "<table class=\"kv\" id=\"scope-table\">\n";
    row(s, "Maximum per order (notional)", esc(money_text(scope.value("max_transaction", json()))));
    row(s, "Instruments", esc(list_text(scope.value("instruments", json()))));
    row(s, "Counterparties", esc(list_text(scope.value("counterparties", json()))));
    row(s, "Regions", esc(list_text(scope.value("regions", json()))));
    string hours;
    for (const auto& w : scope.value("trading_hours", json::array())) {
        if (!hours.empty()) hours += "; ";
        hours += list_text(w.value("days", json())) + " " + str(w, "from") + "–" + str(w, "to");
    }
    row(s, "Trading hours (UTC)", esc(hours.empty() ? "—" : hours));
    const json limits = scope.value("limits", json::object());
    string q;
    if (limits.contains("max_order_quantity") && limits["max_order_quantity"].is_object())
        for (auto it = limits["max_order_quantity"].begin();
             it != limits["max_order_quantity"].end(); ++it)
            q += (q.empty() ? "" : ", ") + it.key() + " " +
                 (it->is_string() ? it->get<string>() : it->dump());
    row(s, "Maximum order quantity (RTS 6 Art. 15(1))", esc(q.empty() ? "not set" : q));
    row(s, "Price collar (RTS 6 Art. 15(1))",
        esc(limits.contains("price_collar_bps") ? str(limits, "price_collar_bps") + " bps"
                                                : "not set"));
    row(s, "Maximum messages per second (RTS 6 Art. 15(1))",
        esc(limits.contains("max_orders_per_second") ? str(limits, "max_orders_per_second")
                                                     : "not set"));
    row(s, "Maximum daily notional (RTS 6 Art. 15(4))",
        esc(limits.contains("max_daily_notional") ? money_text(limits["max_daily_notional"])
                                                  : "not set"));
    s << "</table>\n";
    return s.str();
}

std::vector<Point> score_points(const std::vector<LogLine>& extract) {
    std::vector<Point> pts;
    for (const LogLine& l : extract) {
        if (!l.is_record()) continue;
        const string event = str(l.value, "event");
        int kind = -1;
        if (event == "order.allowed") kind = 0;
        if (event == "order.warned") kind = 1;
        if (event == "order.rejected") kind = 2;
        if (kind < 0) continue;
        const json p = l.value.value("payload", json::object());
        const auto ts = time_member(l.value, "ts_ns");
        if (!ts) continue;
        std::uint64_t score = 0;
        if (p.is_object() && p.contains("score_ppm") && p["score_ppm"].is_number_unsigned())
            score = p["score_ppm"].get<std::uint64_t>();
        pts.push_back({*ts, score, kind});
    }
    std::stable_sort(pts.begin(), pts.end(),
                     [](const Point& a, const Point& b) { return a.ts < b.ts; });
    return pts;
}

string row_class(const string& event) {
    if (event == "order.warned" || event == "incident.opened" || event == "incident.escalated")
        return "ev-warn";
    if (event == "order.rejected" || event == "incident.revoked" || event == "guard.halted" ||
        event == "guard.cancel_all" || event == "certificate.revoked" ||
        event == "log.truncated_tail" || event == "log.recovered" || event == "log.gap" ||
        event == "log.accepted")
        return "ev-bad";
    if (event == "guard.reduce_only" || event.rfind("execution.", 0) == 0) return "ev-warn";
    if (event == "guard.resumed" || event == "review.signed" || event == "incident.acknowledged" ||
        event == "incident.resolved" || event == "scope.approved" || event == "baseline.approved" ||
        event == "guard.reduce_only_lifted")
        return "ev-human";
    return "";
}

// ---- derived evidence: thresholds, revocations, incidents, rejections, limit usage
// ----------------

/// `j[key]` when it is an object, else an empty object (never throws).
json object_at(const json& j, const char* key) {
    if (!j.is_object()) return json::object();
    const auto it = j.find(key);
    return it != j.end() && it->is_object() ? *it : json::object();
}

std::optional<std::uint64_t> unsigned_at(const json& j, const char* key) {
    if (!j.is_object()) return std::nullopt;
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    if (it->is_number_unsigned()) return it->get<std::uint64_t>();
    const auto v = it->get<std::int64_t>();
    if (v < 0) return std::nullopt;
    return static_cast<std::uint64_t>(v);
}

bool is_replay_log(const json& manifest) {
    const string id = str(manifest, "log_id");
    return id.size() > 7 && id.compare(id.size() - 7, 7, ".replay") == 0;
}

Thresholds thresholds_of(const PackageView& v) {
    Thresholds t;
    const string defaults = "the default thresholds " + score_text(warn_ppm) + " and " +
                            score_text(revoke_ppm) + " (DESIGN §4)";
    // The baseline the agent's log says was enforced (its approval's hash), else the latest
    // approved version of the package.
    string enforced_sha;
    for (const LogLine& l : v.extract)
        if (l.is_record() && str(l.value, "event") == "baseline.approved")
            enforced_sha = str(object_at(l.value, "payload"), "baseline_sha256");
    const PackageView::BaselineFiles* chosen = nullptr;
    bool enforced = false;  // chosen is the one the log names
    for (const auto& b : v.baselines) {
        if (!b.approval || !b.baseline) continue;
        if (!enforced_sha.empty() && str(*b.approval, "baseline_sha256") == enforced_sha) {
            chosen = &b;
            enforced = true;
            break;
        }
        chosen = &b;  // ascending versions: the latest approved one
    }
    if (chosen == nullptr) {
        t.source = enforced_sha.empty()
                       ? "No approved baseline in the package: orders were not scored against "
                         "approved behaviour; the lines are drawn at " +
                             defaults + "."
                       : "The agent's log records an approved baseline (sha256 " +
                             short_hash(enforced_sha) +
                             ") that is not in this package: the lines are drawn at " + defaults +
                             ", which may differ from the policy that was enforced.";
        return t;
    }
    const json policy = object_at(*chosen->baseline, "policy");
    const auto w = unsigned_at(policy, "warn_ppm");
    const auto r = unsigned_at(policy, "revoke_ppm");
    const string version = std::to_string(chosen->version);
    if (!w || !r || *w > 1'000'000 || *r > 1'000'000) {
        t.source = "Baseline version " + version +
                   " states no readable policy thresholds: the lines are drawn at " + defaults +
                   ".";
        return t;
    }
    t.warn = *w;
    t.revoke = *r;
    t.from_baseline = true;
    t.source = "Thresholds from the scoring policy of baseline version " + version + " (baseline/" +
               version + ".json), approved by " + str(*chosen->approval, "approver") +
               (enforced ? ", the baseline the agent's log shows enforced."
                : enforced_sha.empty()
                    ? " (the latest approved version)."
                    : " (the latest approved version; the baseline the agent's log shows "
                      "enforced, sha256 " +
                          short_hash(enforced_sha) + ", is not in this package).");
    return t;
}

/// What the package says about one certificate's revocation.
struct RevocationStatus {
    bool revoked = false;    ///< the CRL, the CA log or the Guard's records say it was revoked
    bool requested = false;  ///< the Guard asked for it and no CA confirmed it
    bool on_crl = false;
    std::optional<TimeNs> at;
    string reason, ca_result;
    std::vector<string> evidence;
};

std::map<string, RevocationStatus> revocations_of(const PackageView& v) {
    std::map<string, RevocationStatus> out;
    std::map<string, string> serial_of_fp;
    for (const auto& c : v.certificates)
        serial_of_fp[str(c.info, "fingerprint")] = str(c.info, "serial");
    for (const auto& e : v.crl.value("entries", json::array())) {
        RevocationStatus& r = out[str(e, "serial")];
        r.revoked = r.on_crl = true;
        if (const auto t = time_member(e, "revoked_at_ns")) r.at = *t;
        r.evidence.push_back("listed on the CRL");
    }
    for (const LogLine& l : v.ca_log) {
        if (!l.is_record() || str(l.value, "event") != "certificate.revoked") continue;
        const json p = object_at(l.value, "payload");
        RevocationStatus& r = out[str(p, "serial")];
        r.revoked = true;
        if (const auto t = time_member(p, "revoked_at_ns")) r.at = *t;
        if (!str(p, "reason").empty()) r.reason = str(p, "reason");
        r.evidence.push_back("CA log seq " + str(l.value, "seq"));
    }
    for (const LogLine& l : v.extract) {
        if (!l.is_record()) continue;
        const string event = str(l.value, "event");
        const json p = object_at(l.value, "payload");
        const auto ts = time_member(l.value, "ts_ns");
        if (event == "incident.revoked" && !str(p, "serial").empty()) {
            RevocationStatus& r = out[str(p, "serial")];
            if (str(p, "ca") == "revoked") {
                r.revoked = true;
                r.evidence.push_back(
                    "the Guard's automatic revocation, confirmed by its CA "
                    "(agent log seq " +
                    str(l.value, "seq") + ")");
            } else {
                r.requested = true;
                r.ca_result = str(p, "ca");
            }
            if (!r.at && ts) r.at = *ts;
            if (r.reason.empty()) r.reason = str(p, "reason");
        } else if (event == "certificate.revoked") {
            const auto it = serial_of_fp.find(str(l.value, "cert_fp"));
            if (it == serial_of_fp.end()) continue;
            RevocationStatus& r = out[it->second];
            r.revoked = true;
            if (!r.at && ts) r.at = *ts;
            if (r.reason.empty()) r.reason = str(p, "reason");
            r.evidence.push_back("the Guard learned of it (agent log seq " + str(l.value, "seq") +
                                 ")");
        }
    }
    for (const auto& c : v.certificates) {
        const auto it = out.find(str(c.info, "serial"));
        if (it == out.end()) continue;
        const json rv = object_at(c.info, "revocation");
        if (it->second.reason.empty()) it->second.reason = str(rv, "reason");
        if (!it->second.at)
            if (const auto t = time_member(rv, "revoked_at_ns")) it->second.at = *t;
    }
    return out;
}

string status_html(const RevocationStatus* r, bool simulation) {
    string s;
    if (simulation) s = "<span class=\"tag sim\">simulation</span> ";
    if (r != nullptr && r->revoked) {
        s += "<span class=\"tag bad cert-revoked\">revoked</span> " +
             esc(r->at ? human_time(*r->at) : string("(date not in the package)"));
        if (!r->reason.empty()) s += ": " + esc(r->reason);
        string evidence;
        for (const auto& e : r->evidence) evidence += (evidence.empty() ? "" : "; ") + e;
        s += " <span class=\"muted\">(" + esc(evidence) + ")</span>";
        if (!r->on_crl && !simulation)
            s += " <span class=\"tag warn\">not on the package's CRL</span>";
        else if (!r->on_crl)
            s += " <span class=\"muted\">by the throwaway simulation CA: not on the CA's "
                 "CRL</span>";
        return s;
    }
    if (r != nullptr && r->requested) {
        s += "<span class=\"tag bad cert-revocation-requested\">halted, revocation not "
             "confirmed</span> " +
             esc(r->at ? human_time(*r->at) : string()) + ": CA: " + esc(r->ca_result);
        return s;
    }
    return s + "<span class=\"tag ok\">not revoked</span>";
}

/// One incident as the timeline of the period leaves it.
struct IncidentView {
    string id;
    std::optional<TimeNs> opened;
    std::optional<std::uint64_t> score;
    string state = "open";  // open, acknowledged, resolved, closed, revoked, reviewed
    bool escalated = false;
    string last_event, last_who, last_detail;
    TimeNs last_ts = 0;
};

std::vector<IncidentView> incidents_of(const json& timeline) {
    std::vector<IncidentView> out;
    for (const auto& e : timeline) {
        const string id = str(e, "incident");
        const string ev = str(e, "event");
        if (id.empty()) continue;
        if (ev.rfind("incident.", 0) != 0 && ev != "review.signed") continue;
        auto it =
            std::find_if(out.begin(), out.end(), [&](const IncidentView& i) { return i.id == id; });
        if (it == out.end()) {
            out.push_back({});
            it = out.end() - 1;
            it->id = id;
        }
        const auto ts = time_member(e, "ts_ns");
        if (ev == "incident.opened") {
            it->opened = ts;
            it->score = unsigned_at(e, "score_ppm");
            it->state = "open";
        } else if (ev == "incident.escalated") {
            it->escalated = true;
        } else if (ev == "incident.acknowledged") {
            it->state = "acknowledged";
        } else if (ev == "incident.resolved") {
            it->state = "resolved";
        } else if (ev == "incident.closed") {
            it->state = "closed";
        } else if (ev == "incident.revoked") {
            it->state = "revoked";
            if (const auto sc = unsigned_at(e, "score_ppm")) it->score = sc;
        } else if (ev == "review.signed") {
            it->state = "reviewed";
        }
        it->last_event = ev;
        it->last_who = str(e, "who");
        it->last_detail = str(e, "detail");
        it->last_ts = ts.value_or(0);
    }
    return out;
}

string incidents_section(const PackageView& v, std::optional<TimeNs> to) {
    const std::vector<IncidentView> incidents = incidents_of(v.timeline);
    // How the agent's log of the period ends: its last record, and a torn tail cut on reopening
    // (the writing process had stopped).
    std::optional<TimeNs> last_record, process_stopped;
    for (const LogLine& l : v.extract) {
        if (!l.is_record()) continue;
        const auto ts = time_member(l.value, "ts_ns");
        if (!ts) continue;
        last_record = std::max(last_record.value_or(*ts), *ts);
        if (str(l.value, "event") == "log.truncated_tail" ||
            str(l.value, "event") == "log.recovered" || str(l.value, "event") == "log.gap")
            process_stopped = *ts;
    }
    const bool replay = is_replay_log(v.manifest);
    std::ostringstream s;
    s << "<section id=\"incidents\">\n<h2>Incidents at the end of the period</h2>\n"
         "<table id=\"incidents-table\" class=\"fixed\">\n<colgroup><col style=\"width:200px\">"
         "<col style=\"width:120px\"><col style=\"width:64px\"><col style=\"width:300px\"><col>"
         "</colgroup>\n<tr><th>Incident</th><th>Opened</th><th>Score</th>"
         "<th>State at the end of the period</th><th>Last step</th></tr>\n";
    for (const IncidentView& i : incidents) {
        string state;
        string cls;
        if (i.state == "resolved" || i.state == "closed" || i.state == "reviewed") {
            cls = "closed";
            state = "<span class=\"tag ok\">" + esc(i.state) + "</span>";
        } else if (i.state == "revoked") {
            cls = "revoked";
            state =
                "<span class=\"tag bad\">certificate revoked</span> no signed review in the "
                "period";
        } else {
            cls = "unresolved";
            state = "<span class=\"tag warn\">unresolved at the end of the period</span> " +
                    esc(i.state == "acknowledged" ? "acknowledged, never resolved"
                                                  : "never acknowledged") +
                    (i.escalated ? esc("; escalated") : string());
            string ended;
            if (process_stopped && *process_stopped >= i.last_ts)
                ended =
                    "The process that wrote the log stopped: a torn last line was cut when "
                    "the log was reopened at " +
                    human_time(*process_stopped) +
                    "; a restarted Guard does not carry open incidents over.";
            else if (replay && last_record)
                ended = "The replay that wrote this log ended at " + human_time(*last_record) +
                        " (its last record) with this incident open; nobody can act on it in "
                        "that run.";
            else
                ended = "No later step on it in the package up to " +
                        human_time(to.value_or(last_record.value_or(i.last_ts))) + ".";
            state += "<br><span class=\"incident-end\">" + esc(ended) + "</span>";
        }
        s << "<tr class=\"incident-" << cls << "\" data-incident=\"" << esc(i.id) << "\"><td>"
          << "<code>" << esc(i.id) << "</code></td><td>"
          << esc(i.opened ? human_time(*i.opened) : string("before the period")) << "</td><td>"
          << esc(i.score ? score_text(*i.score) : string("—")) << "</td><td>" << state
          << "</td><td>" << esc(i.last_event) << " at " << esc(human_time(i.last_ts)) << " by "
          << esc(i.last_who) << "<br><span class=\"muted\">" << esc(i.last_detail)
          << "</span></td></tr>\n";
    }
    if (incidents.empty()) s << "<tr><td colspan=\"5\">no incident in the period</td></tr>\n";
    s << "</table>\n</section>\n";
    return s.str();
}

string rejections_section(const std::vector<LogLine>& extract) {
    // Per reason: rejected orders, and rejected amend and cancel requests (decided alike).
    std::map<string, std::pair<std::uint64_t, std::uint64_t>> counts;
    std::uint64_t rejected = 0, rejected_requests = 0;
    for (const LogLine& l : extract) {
        if (!l.is_record()) continue;
        const string event = str(l.value, "event");
        const bool order = event == "order.rejected";
        if (!order && event != "amend.rejected" && event != "cancel.rejected") continue;
        ++(order ? rejected : rejected_requests);
        auto count = [&](const string& name) {
            auto& c = counts[name];
            ++(order ? c.first : c.second);
        };
        const json p = object_at(l.value, "payload");
        const auto it = p.find("reasons");
        if (it == p.end() || !it->is_array() || it->empty()) {
            count("(no reason recorded)");
            continue;
        }
        for (const auto& r : *it) count(r.is_string() ? r.get<string>() : r.dump());
    }
    struct Row {
        int code;
        string name;
        std::uint64_t count, requests;
    };
    std::vector<Row> rows;
    for (const auto& [name, n] : counts) {
        int code = -1;
        for (ReasonCode c : all_reason_codes)
            if (name == to_string(c)) code = static_cast<int>(c);
        rows.push_back({code, name, n.first, n.second});
    }
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
        return (a.code < 0 ? 100000 : a.code) < (b.code < 0 ? 100000 : b.code);
    });
    std::ostringstream s;
    s << "<section id=\"rejections\">\n<h2>Rejections by reason</h2>\n<p>" << rejected
      << " rejected orders and " << rejected_requests
      << " rejected amend or cancel requests in the period; a request rejected for several "
         "reasons counts under each.</p>\n<table id=\"rejections-table\">\n<tr><th>Code</th>"
         "<th>Reason</th><th>Rejected orders</th><th>Rejected amends and cancels</th></tr>\n";
    for (const Row& r : rows)
        s << "<tr data-reason=\"" << esc(r.name) << "\"><td>"
          << (r.code < 0 ? string("—") : std::to_string(r.code)) << "</td><td><code>" << esc(r.name)
          << "</code></td><td class=\"count\">" << r.count << "</td><td class=\"requests\">"
          << r.requests << "</td></tr>\n";
    if (rows.empty())
        s << "<tr><td colspan=\"4\">no rejected order or request in the period</td></tr>\n";
    s << "</table>\n</section>\n";
    return s.str();
}

/// A decimal of the records, or nullopt.
std::optional<Decimal> decimal_at(const json& j, const char* key) {
    const string text = str(j, key);
    if (text.empty()) return std::nullopt;
    return try_parse_decimal(text);
}

/// "1234.5" from units at `scale`: trailing zeros dropped, at least two decimals kept.
string amount_text(int128 units, unsigned scale) {
    string t = detail::format_units(units, scale);
    const std::size_t dot = t.find('.');
    if (dot == string::npos) return t + ".00";
    if (t.size() < dot + 3) t.append(dot + 3 - t.size(), '0');
    std::size_t keep = t.size();
    while (keep > dot + 3 && t[keep - 1] == '0') --keep;
    return t.substr(0, keep);
}

string amount_text(const Wide& w) { return amount_text(w.units, w.scale); }

/// used / limit as a percentage with two decimals, exactly (both >= 0, at one scale).
string percent_text(int128 used, int128 limit) {
    if (limit <= 0) return "—";
    while (limit > static_cast<int128>(1'000'000'000'000'000'000LL) * 1'000'000'000'000'000LL) {
        used /= 10;
        limit /= 10;
    }
    const int128 q = std::min<int128>(used / limit, static_cast<int128>(1'000'000'000'000LL));
    const int128 hundredths = q * 10'000 + (used % limit) * 10'000 / limit;
    return amount_text(hundredths, 2) + " %";
}

/// Both at scale 18 (the Guard's day-total units); false when it does not fit.
bool at_scale18(const Wide& w, int128& out) { return rescale_ceil(w, 18, out); }

string limits_section(const json& scope, const std::vector<LogLine>& extract) {
    struct PerInstrument {
        std::uint64_t allowed = 0, rejected = 0;
        std::optional<Wide> max_allowed_notional, max_requested_notional;
        std::optional<Decimal> max_allowed_quantity;
    };
    struct PerDay {
        std::uint64_t allowed = 0;
        int128 total = 0;  // scale 18
        bool overflow = false;
    };
    std::map<string, PerInstrument> instruments;
    std::map<std::int64_t, PerDay> days;
    std::uint64_t unreadable = 0;
    for (const LogLine& l : extract) {
        if (!l.is_record()) continue;
        const string event = str(l.value, "event");
        const bool allowed = event == "order.allowed" || event == "order.warned";
        if (!allowed && event != "order.rejected") continue;
        const json order = object_at(object_at(l.value, "payload"), "order");
        const auto q = decimal_at(order, "quantity");
        const auto p = decimal_at(order, "price");
        const auto ts = time_member(l.value, "ts_ns");
        if (!q || !p || !ts || !q->is_positive() || !p->is_positive()) {
            ++unreadable;
            continue;
        }
        const Wide notional = multiply(*q, *p);
        PerInstrument& i = instruments[str(order, "instrument")];
        if (!i.max_requested_notional || compare(notional, *i.max_requested_notional) > 0)
            i.max_requested_notional = notional;
        if (!allowed) {
            ++i.rejected;
            continue;
        }
        ++i.allowed;
        if (!i.max_allowed_notional || compare(notional, *i.max_allowed_notional) > 0)
            i.max_allowed_notional = notional;
        if (!i.max_allowed_quantity || compare(*q, *i.max_allowed_quantity) > 0)
            i.max_allowed_quantity = *q;
        PerDay& d = days[utc_day(*ts)];
        ++d.allowed;
        int128 units = 0;
        if (!at_scale18(notional, units) || __builtin_add_overflow(d.total, units, &d.total))
            d.overflow = true;
    }
    const json max_tx = object_at(scope, "max_transaction");
    const auto max_tx_amount = decimal_at(max_tx, "amount");
    const string currency = str(max_tx, "currency");
    const json limits = object_at(scope, "limits");
    const json max_qty = object_at(limits, "max_order_quantity");
    const json daily = object_at(limits, "max_daily_notional");
    const auto daily_amount = decimal_at(daily, "amount");

    std::ostringstream s;
    s << "<section id=\"limits\">\n<h2>Limit usage</h2>\n<p class=\"muted\">From the order "
         "records of the period, against the approved scope above; notional is quantity × "
         "price, exactly, in "
      << esc(currency.empty() ? string("the scope's currency") : currency) << ".</p>\n"
      << "<h3>Largest order per instrument</h3>\n<table id=\"instrument-limits\">\n<tr>"
         "<th>Instrument</th><th>Orders allowed / rejected</th><th>Largest allowed "
         "(notional)</th><th>Of max_transaction "
      << esc(max_tx_amount ? amount_text(widen(*max_tx_amount)) : string("—"))
      << "</th><th>Largest requested (notional)</th><th>Largest allowed quantity</th>"
         "<th>max_order_quantity</th></tr>\n";
    for (const auto& [name, i] : instruments) {
        string of_max = "—";
        int128 used = 0, limit = 0;
        if (i.max_allowed_notional && max_tx_amount && at_scale18(*i.max_allowed_notional, used) &&
            at_scale18(widen(*max_tx_amount), limit))
            of_max = percent_text(used, limit);
        const string qty_limit = str(max_qty, name.c_str());
        s << "<tr data-instrument=\"" << esc(name) << "\"><td><code>" << esc(name)
          << "</code></td><td>" << i.allowed << " / " << i.rejected << "</td><td class=\"max-"
          << "notional\">"
          << esc(i.max_allowed_notional ? amount_text(*i.max_allowed_notional) : string("—"))
          << "</td><td class=\"of-max\">" << esc(of_max) << "</td><td>"
          << esc(i.max_requested_notional ? amount_text(*i.max_requested_notional) : string("—"))
          << "</td><td>"
          << esc(i.max_allowed_quantity ? to_string(*i.max_allowed_quantity) : string("—"))
          << "</td><td>" << esc(qty_limit.empty() ? string("not set") : qty_limit)
          << "</td></tr>\n";
    }
    if (instruments.empty()) s << "<tr><td colspan=\"7\">no orders in the period</td></tr>\n";
    s << "</table>\n<h3>Daily notional (UTC days, allowed orders, as the Guard counts "
         "them)</h3>\n";
    int128 daily_limit = 0;
    const bool has_daily = daily_amount && at_scale18(widen(*daily_amount), daily_limit);
    s << "<p>max_daily_notional: "
      << esc(has_daily ? amount_text(widen(*daily_amount)) + " " + str(daily, "currency")
                       : string("not set"))
      << "</p>\n<table id=\"daily-limits\">\n<tr><th>Day</th><th>Orders allowed</th>"
         "<th>Notional allowed</th><th>Of max_daily_notional</th></tr>\n";
    std::optional<std::int64_t> peak;
    for (const auto& [day, d] : days)
        if (!d.overflow && (!peak || d.total > days[*peak].total)) peak = day;
    for (const auto& [day, d] : days) {
        const CivilTime c = civil_from_ns(day * 86'400'000'000'000);
        char date[32];
        std::snprintf(date, sizeof date, "%04lld-%02u-%02u", static_cast<long long>(c.year),
                      c.month, c.day);
        s << "<tr data-day=\"" << date << "\"" << (peak && *peak == day ? " class=\"peak\"" : "")
          << "><td>" << date << (peak && *peak == day ? " (highest)" : "") << "</td><td>"
          << d.allowed << "</td><td class=\"day-notional\">"
          << esc(d.overflow ? string("too large to add up") : amount_text(d.total, 18))
          << "</td><td class=\"of-max\">"
          << esc(has_daily && !d.overflow ? percent_text(d.total, daily_limit) : string("—"))
          << "</td></tr>\n";
    }
    if (days.empty()) s << "<tr><td colspan=\"4\">no allowed orders in the period</td></tr>\n";
    s << "</table>\n";
    if (unreadable > 0)
        s << "<p class=\"note\">" << unreadable
          << " order records have no readable positive quantity and price: not counted.</p>\n";
    s << "<p class=\"muted\">A Guard keeps the day's total in memory: one restarted during a "
         "day started that day's total again at zero.</p>\n</section>\n";
    return s.str();
}

}  // namespace

string render_report(const PackageView& v) {
    const json& m = v.manifest;
    const string agent = str(m, "agent");
    const json period = m.value("period", json::object());
    const json audit = m.value("audit", json::object());
    std::ostringstream s;
    s << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      << "<meta name=\"generator\" content=\"kakunin "
      << esc(str(m.value("generator", json()), "version"))
      << "\">\n<title>Kakunin evidence package: agent " << esc(agent) << "</title>\n<style>" << css
      << "</style>\n</head>\n<body>\n";

    const auto from = time_member(period, "from_ns");
    const auto to = time_member(period, "to_ns");
    s << "<header>\n<h1>Evidence package — agent <code>" << esc(agent) << "</code></h1>\n<p>Period "
      << (from ? esc(human_time(*from)) : "from the first record") << " to "
      << (to ? esc(human_time(*to)) : "the last record") << " · log <code>" << esc(str(m, "log_id"))
      << "</code> (" << esc(str(m, "source")) << ") · generated " << esc(when(m, "generated_at_ns"))
      << " by kakunin " << esc(str(m.value("generator", json()), "version"))
      << "</p>\n</header>\n<main>\n";

    // Summary cards
    const std::vector<Point> points = score_points(v.extract);
    std::uint64_t warned = 0, rejected = 0, max_score = 0;
    for (const Point& p : points) {
        warned += p.kind == 1;
        rejected += p.kind == 2;
        max_score = std::max(max_score, p.score);
    }
    std::uint64_t incidents = 0, halts = 0, revocations = 0, cancel_alls = 0;
    for (const auto& e : v.timeline) {
        const string ev = str(e, "event");
        incidents += ev == "incident.opened";
        halts += ev == "guard.halted";
        cancel_alls += ev == "guard.cancel_all";
    }
    // The lifecycle (docs/lifecycle.md): requests decided like orders, and the venue's reports.
    std::uint64_t requests = 0, reports = 0;
    for (const LogLine& l : v.extract) {
        if (!l.is_record()) continue;
        const string ev = str(l.value, "event");
        requests += ev.rfind("amend.", 0) == 0 || ev.rfind("cancel.", 0) == 0;
        reports += ev.rfind("execution.", 0) == 0;
    }
    const Thresholds thresholds = thresholds_of(v);
    const std::map<string, RevocationStatus> revocation = revocations_of(v);
    for (const auto& c : v.certificates) {
        const auto it = revocation.find(str(c.info, "serial"));
        revocations += it != revocation.end() && it->second.revoked;
    }
    s << "<section id=\"summary\"><div class=\"cards\">\n";
    auto card = [&](const string& n, const string& label, const string& cls = "") {
        s << "<div class=\"card " << cls << "\"><div class=\"n\">" << esc(n)
          << "</div><div class=\"l\">" << esc(label) << "</div></div>\n";
    };
    card(str(audit, "records").empty() ? "0" : str(audit, "records"), "records in the period");
    card(std::to_string(points.size()), "order decisions");
    card(std::to_string(warned), "warnings", warned ? "warn" : "");
    card(std::to_string(rejected), "rejected orders", rejected ? "bad" : "");
    card(std::to_string(requests), "amend and cancel requests");
    card(std::to_string(reports), "execution reports");
    card(score_text(max_score), "highest score",
         max_score >= thresholds.revoke ? "bad"
         : max_score >= thresholds.warn ? "warn"
                                        : "");
    card(std::to_string(incidents), "incidents opened", incidents ? "warn" : "");
    card(std::to_string(halts), "halts", halts ? "bad" : "");
    card(std::to_string(cancel_alls), "cancel-all requests on halts", cancel_alls ? "bad" : "");
    card(std::to_string(revocations), "certificates revoked", revocations ? "bad" : "");
    s << "</div></section>\n";

    const json notes = m.value("notes", json::array());
    for (const auto& n : notes)
        if (n.is_string()) s << "<p class=\"note\">" << esc(n.get<string>()) << "</p>\n";

    // Agent
    const json& r = v.registration;
    s << "<section id=\"agent\">\n<h2>The agent</h2>\n<table class=\"kv\">\n";
    row(s, "Agent", "<code>" + esc(str(r, "agent_id")) + "</code>");
    row(s, "Owner", esc(str(r, "owner")));
    row(s, "Purpose", esc(str(r, "purpose")));
    row(s, "Registered by", esc(str(r, "created_by")) + " on " + esc(when(r, "created_at_ns")));
    row(s, "Certificate authority",
        esc(str(v.ca_certificate, "subject")) + "<br><code>" +
            esc(str(v.ca_certificate, "fingerprint")) + "</code>");
    s << "</table>\n<h3>Certificates</h3>\n<table id=\"certificates\">\n<tr><th>Serial</th><th>"
         "Valid from</th><th>Valid to</th><th>Scope SHA-256</th><th>Status</th></tr>\n";
    const json revoked = v.crl.value("revoked", json::array());
    for (const auto& c : v.certificates) {
        const json& i = c.info;
        const string serial = str(i, "serial");
        const auto rv = revocation.find(serial);
        const string status =
            status_html(rv == revocation.end() ? nullptr : &rv->second,
                        i.contains("simulation") && i["simulation"].is_boolean() &&
                            i["simulation"].get<bool>());
        s << "<tr data-serial=\"" << esc(serial) << "\"><td><code>" << esc(serial)
          << "</code></td><td>" << esc(when(i, "not_before_ns")) << "</td><td>"
          << esc(when(i, "not_after_ns")) << "</td><td><code>"
          << esc(short_hash(str(i, "scope_sha256"))) << "</code></td><td>" << status
          << "</td></tr>\n";
    }
    if (v.certificates.empty()) s << "<tr><td colspan=\"5\">none issued</td></tr>\n";
    s << "</table>\n<p class=\"muted\">CRL issued " << esc(when(v.crl, "this_update_ns"))
      << ", next update " << esc(when(v.crl, "next_update_ns")) << ", " << revoked.size()
      << " serial(s) listed.</p>\n</section>\n";

    // Scope
    json scope;
    if (v.scope_approval && v.scope_approval->contains("scope") &&
        (*v.scope_approval)["scope"].is_string()) {
        try {
            scope = json::parse((*v.scope_approval)["scope"].get<string>());
        } catch (const json::exception&) {
            scope = json();
        }
    } else if (!v.certificates.empty()) {
        scope = v.certificates.back().info.value("scope", json());
    }
    s << "<section id=\"scope\">\n<h2>Approved scope (carried in the certificate)</h2>\n";
    if (scope.is_object())
        s << scope_rows(scope);
    else
        s << "<p class=\"note\">No approved scope in the package.</p>\n";
    s << "</section>\n";

    // Approvals
    s << "<section id=\"approvals\">\n<h2>Human approvals</h2>\n<h3>Scope</h3>\n<table>\n"
         "<tr><th>Approved by</th><th>When</th><th>Scope SHA-256</th><th>Signature</th></tr>\n";
    bool any_scope = false;
    for (const LogLine& l : v.ca_log) {
        if (!l.is_record() || str(l.value, "event") != "scope.approved") continue;
        const json p = l.value.value("payload", json::object());
        if (str(p, "agent") != agent && str(l.value, "agent") != agent) continue;
        any_scope = true;
        const json a = p.value("approval", json::object());
        const string approver =
            !str(p, "approver").empty() ? str(p, "approver") : str(a, "approver");
        const string at = time_member(a, "approved_at_ns")
                              ? when(a, "approved_at_ns")
                              : human_time(l.value.value("ts_ns", TimeNs{0}));
        s << "<tr><td>" << esc(approver) << "</td><td>" << esc(at) << "</td><td><code>"
          << esc(short_hash(str(p, "scope_sha256"))) << "</code></td><td>"
          << esc(str(a, "algorithm")) << ", CA log seq " << esc(str(l.value, "seq"))
          << "</td></tr>\n";
    }
    if (!any_scope && v.scope_approval) {
        const json a = v.scope_approval->value("approval", json::object());
        s << "<tr><td>" << esc(str(a, "approver")) << "</td><td>" << esc(when(a, "approved_at_ns"))
          << "</td><td><code>" << esc(short_hash(str(a, "scope_sha256"))) << "</code></td><td>"
          << esc(str(a, "algorithm")) << " (approvals/scope.json)</td></tr>\n";
        any_scope = true;
    }
    if (!any_scope) s << "<tr><td colspan=\"4\">none</td></tr>\n";
    s << "</table>\n<h3>Behavioural baseline</h3>\n<table id=\"baselines\">\n<tr><th>Version</th>"
         "<th>Observed</th><th>Approved by</th><th>When</th><th>Baseline SHA-256</th></tr>\n";
    for (const auto& b : v.baselines) {
        const json base = b.baseline.value_or(json::object());
        const json a = b.approval.value_or(json::object());
        string by =
            b.approval ? esc(str(a, "approver")) : "<span class=\"tag bad\">not approved</span>";
        if (a.value("automatic", false)) by += " <span class=\"tag sim\">automatic (replay)</span>";
        s << "<tr><td>" << b.version << "</td><td>" << esc(when(base, "observed_from_ns")) << " – "
          << esc(when(base, "observed_to_ns")) << "</td><td>" << by << "</td><td>"
          << esc(when(a, "approved_at_ns")) << "</td><td><code>"
          << esc(short_hash(str(a, "baseline_sha256"))) << "</code></td></tr>\n";
    }
    if (v.baselines.empty())
        s << "<tr><td colspan=\"5\">no baseline in the package: orders were not scored against "
             "approved behaviour (scores are 0)</td></tr>\n";
    s << "</table>\n</section>\n";

    // Chart
    TimeNs t0 = from.value_or(points.empty() ? 0 : points.front().ts);
    TimeNs t1 = to.value_or(points.empty() ? 0 : points.back().ts);
    if (!points.empty()) {
        t0 = std::min(t0, points.front().ts);
        t1 = std::max(t1, points.back().ts);
    }
    string caption;
    const string svg = chart(points, t0, t1, thresholds, caption);
    s << "<section id=\"scores\">\n<h2>Risk score over time</h2>\n<figure>\n"
      << svg << "<figcaption>" << esc(caption) << "</figcaption>\n</figure>\n</section>\n";

    // Timeline
    s << "<section id=\"timeline\">\n<h2>Incident timeline</h2>\n"
         "<table id=\"timeline-table\" class=\"fixed\">\n<colgroup><col style=\"width:112px\">"
         "<col style=\"width:216px\"><col style=\"width:140px\"><col style=\"width:150px\">"
         "<col style=\"width:120px\"><col><col style=\"width:80px\"></colgroup>\n"
         "<tr><th>When (UTC)</th><th>Event</th><th>Who</th><th>Incident</th><th>Score</th>"
         "<th>Detail</th><th>Record</th></tr>\n";
    for (const auto& e : v.timeline) {
        const string ev = str(e, "event");
        string score = "";
        if (e.contains("score_ppm") && e["score_ppm"].is_number_unsigned())
            score = score_text(e["score_ppm"].get<std::uint64_t>());
        string components;
        if (e.contains("components_ppm") && e["components_ppm"].is_object())
            for (auto it = e["components_ppm"].begin(); it != e["components_ppm"].end(); ++it)
                if (it->is_number_unsigned() && it->get<std::uint64_t>() > 0)
                    components += (components.empty() ? "" : ", ") + it.key() + " " +
                                  score_text(it->get<std::uint64_t>());
        s << "<tr class=\"" << row_class(ev) << "\"><td>" << esc(when(e, "ts_ns")) << "</td><td>"
          << esc(ev) << "</td><td>" << esc(str(e, "who")) << "</td><td>" << esc(str(e, "incident"))
          << "</td><td>" << esc(score)
          << (components.empty() ? "" : "<br><span class=\"muted\">" + esc(components) + "</span>")
          << "</td><td>" << esc(str(e, "detail")) << "</td><td class=\"mono\">"
          << esc(str(e, "log")) << " #" << esc(str(e, "seq")) << "</td></tr>\n";
    }
    if (v.timeline.empty())
        s << "<tr><td colspan=\"7\">no warnings, incidents, halts, revocations or sign-offs in "
             "the period</td></tr>\n";
    s << "</table>\n</section>\n";
    s << incidents_section(v, to);
    s << rejections_section(v.extract);
    s << limits_section(scope, v.extract);

    // Audit evidence
    const json cover = audit.value("covering_checkpoint", json::object());
    const json latest = audit.value("latest_checkpoint", json::object());
    s << "<section id=\"audit\">\n<h2>Audit evidence</h2>\n<table class=\"kv\">\n";
    row(s, "Log", "<code>" + esc(str(m, "log_id")) + "</code> from " + esc(str(m, "source")));
    row(s, "Records exported",
        esc(str(audit, "records")) + " (seq " + esc(str(audit, "first_seq")) + " to " +
            esc(str(audit, "last_seq")) + ") of " + esc(str(audit, "log_records")) + " in the log");
    row(s, "Checkpoints in the extract", esc(str(audit, "checkpoints")));
    row(s, "Covering checkpoint",
        cover.empty() ? "—"
                      : "size " + esc(str(cover, "size")) + ", " + esc(when(cover, "ts_ns")) +
                            "<br><code>" + esc(str(cover, "root")) + "</code>");
    row(s, "Latest checkpoint of the log at export",
        latest.empty() ? "—"
                       : "size " + esc(str(latest, "size")) + ", " + esc(when(latest, "ts_ns")) +
                             "<br><code>" + esc(str(latest, "root")) +
                             "</code><br><span class=\"muted\">Keep this outside the firm: a "
                             "later export must extend it (consistency proof).</span>");
    std::uint64_t ca_records = 0;
    for (const LogLine& l : v.ca_log) ca_records += l.is_record();
    row(s, "CA log",
        v.ca_log.empty() ? "not in the package"
                         : std::to_string(ca_records) + " records (whole log)");
    s << "</table>\n</section>\n";

    // Mapping
    s << "<section id=\"mapping\">\n<h2>Regulatory mapping</h2>\n<table>\n<tr><th>Provision</th>"
         "<th>Requirement</th><th>Evidence in this package</th><th>How</th></tr>\n";
    for (const auto& e : m.value("regulatory_mapping", json::array())) {
        const string coverage = str(e, "coverage");
        s << "<tr><td>" << esc(str(e, "instrument")) << ", " << esc(str(e, "provision"))
          << (coverage == "partial" ? "<br><span class=\"tag warn coverage-partial\">partially "
                                      "met</span>"
              : coverage == "none"  ? "<br><span class=\"tag bad coverage-none\">not met</span>"
                                    : "")
          << "</td><td>" << esc(str(e, "requirement")) << "</td><td class=\"mono\">"
          << esc(list_text(e.value("evidence", json()))) << "</td><td>" << esc(str(e, "how"))
          << "</td></tr>\n";
    }
    s << "</table>\n</section>\n";

    // Verification and limits
    s << "<section id=\"verify\">\n<h2>How to verify this package</h2>\n<ol>\n"
         "<li>Obtain the CA certificate independently (not from this package) and run "
         "<code>kakunin export verify DIR --ca ca.pem</code>. It checks the manifest signature, "
         "every file's SHA-256, every certificate's chain to the CA, every record's signature "
         "and inclusion proof, the consistency between checkpoints, the CA log, the approvals, "
         "and that this report and the timeline are what the records produce.</li>\n"
         "<li>Without Kakunin: <code>manifest.sig</code> is a signature by the CA key over "
         "<code>kakunin-export-manifest/v1\\n</code> followed by the hex SHA-256 of "
         "<code>manifest.json</code> and a newline; the audit format and proofs are RFC 9162 "
         "Merkle trees (docs/audit-format.md, docs/export.md).</li>\n</ol>\n"
         "<h3>What this package does not prove</h3>\n<ul>\n"
         "<li>That no records were removed from the end of the log after its latest checkpoint "
         "that someone outside the firm holds: keep the latest checkpoint above, and compare "
         "the next export with it.</li>\n"
         "<li>That the log is complete before the first checkpoint held by an outside party: "
         "the firm holds the signing keys, so it could have rebuilt an earlier history. Anchor "
         "checkpoints outside the firm (send them to the supervisor or a timestamping "
         "service) to close this gap.</li>\n"
         "<li>That the agent sent only the orders it checked: the records cover decisions "
         "made through Kakunin, not orders sent around it.</li>\n</ul>\n</section>\n";
    s << "</main>\n<footer class=\"muted\" style=\"padding:12px 32px\">Generated by kakunin "
      << esc(str(m.value("generator", json()), "version"))
      << " from the package's files only; no script, no network.</footer>\n</body>\n</html>\n";
    return s.str();
}

}  // namespace kakunin::export_detail
