// report.html of an export: one self-contained page (inline CSS and SVG, no script, no network)
// for a supervisor or an auditor: the agent, its scope and approvals, the risk score over time
// with the warning and revocation thresholds, the incident timeline, the audit evidence and the
// regulatory mapping. Rendered only from the package's own files, deterministically (integer
// geometry, no clock), so `kakunin export verify` renders it again and compares.
#include <algorithm>
#include <sstream>

#include "export/export_internal.hpp"
#include "kakunin/decimal.hpp"
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

string chart(const std::vector<Point>& all, TimeNs t0, TimeNs t1, string& caption) {
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
      << "\" role=\"img\" aria-label=\"Risk score of each order over time, with the 0.75 warning "
         "and 0.85 revocation thresholds\">\n";
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
        const char* label;
    } thresholds[] = {{warn_ppm, "threshold threshold-warn", "#d98b00", "0.75 warning"},
                      {revoke_ppm, "threshold threshold-revoke", "#c0392b", "0.85 revocation"}};
    for (const auto& th : thresholds) {
        const auto y = y_of(th.ppm);
        s << "<line class=\"" << th.cls << "\" data-threshold=\"" << score_text(th.ppm)
          << "\" x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + plot_w << "\" y2=\"" << y
          << "\" stroke=\"" << th.colour << "\" stroke-width=\"2\" stroke-dasharray=\"8 5\"/>"
          << "<text x=\"" << left + plot_w - 4 << "\" y=\"" << y - 5
          << "\" font-size=\"11\" text-anchor=\"end\" fill=\"" << th.colour << "\">" << th.label
          << "</text>\n";
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
    caption +=
        " Dashed lines: 0.75 opens an incident and notifies; 0.85 rejects, halts and "
        "revokes (DESIGN §4).";
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
        event == "certificate.revoked" || event == "log.truncated_tail")
        return "ev-bad";
    if (event == "guard.resumed" || event == "review.signed" || event == "incident.acknowledged" ||
        event == "incident.resolved" || event == "scope.approved" || event == "baseline.approved")
        return "ev-human";
    return "";
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
    std::uint64_t incidents = 0, halts = 0, revocations = 0;
    for (const auto& e : v.timeline) {
        const string ev = str(e, "event");
        incidents += ev == "incident.opened";
        halts += ev == "guard.halted";
    }
    for (const auto& c : v.certificates) revocations += c.info.contains("revocation");
    s << "<section id=\"summary\"><div class=\"cards\">\n";
    auto card = [&](const string& n, const string& label, const string& cls = "") {
        s << "<div class=\"card " << cls << "\"><div class=\"n\">" << esc(n)
          << "</div><div class=\"l\">" << esc(label) << "</div></div>\n";
    };
    card(str(audit, "records").empty() ? "0" : str(audit, "records"), "records in the period");
    card(std::to_string(points.size()), "order decisions");
    card(std::to_string(warned), "warnings", warned ? "warn" : "");
    card(std::to_string(rejected), "rejected orders", rejected ? "bad" : "");
    card(score_text(max_score), "highest score",
         max_score >= revoke_ppm ? "bad"
         : max_score >= warn_ppm ? "warn"
                                 : "");
    card(std::to_string(incidents), "incidents opened", incidents ? "warn" : "");
    card(std::to_string(halts), "halts", halts ? "bad" : "");
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
        string status;
        if (i.value("simulation", false)) status = "<span class=\"tag sim\">simulation</span> ";
        const bool listed =
            std::find(revoked.begin(), revoked.end(), json(serial)) != revoked.end();
        if (listed) {
            status += "<span class=\"tag bad\">revoked</span>";
            const json rv = i.value("revocation", json::object());
            if (!str(rv, "reason").empty())
                status +=
                    " " + esc(str(rv, "reason")) + " (" + esc(when(rv, "revoked_at_ns")) + ")";
        } else {
            status += "<span class=\"tag ok\">not revoked</span>";
        }
        s << "<tr><td><code>" << esc(serial) << "</code></td><td>" << esc(when(i, "not_before_ns"))
          << "</td><td>" << esc(when(i, "not_after_ns")) << "</td><td><code>"
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
    const string svg = chart(points, t0, t1, caption);
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
        s << "<tr><td>" << esc(str(e, "instrument")) << ", " << esc(str(e, "provision"))
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
