// The compliance export's report as a user meets it, through the command line: a CA, an agent,
// an officer's baseline with its own thresholds (0.70 warns, 0.90 revokes), then a replay day
// with limit rejections, a warning nobody handles, an automatic revocation of the simulation
// certificate and orders after the halt; exported and verified. The report must show the
// revoked certificate as revoked (date, reason), the unhandled incident as unresolved when the
// run ended, the baseline's thresholds (the defaults only without a baseline, said so), the
// rejections by reason, the limit usage and an honest RTS 6 Art. 12 mapping. And
// `kakunin baseline show` prints the approved baseline, as a table and as JSON.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kakunin/audit.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/export.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/software_kms.hpp"
#include "pg_test_support.hpp"
#include "pkcs11_test_support.hpp"
#include "temp_dir.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;
using kakunin_test::read_text;
using kakunin_test::shell_quote;
using kakunin_test::write_text;
using namespace kakunin;

namespace {

constexpr TimeNs minute = 60'000'000'000LL, hour = 60 * minute, day = 24 * hour;
const TimeNs t0 = utc(2024, 1, 8, 0, 0, 0);  // a Monday
const TimeNs trading_day = t0 + 8 * day;     // Tuesday 2024-01-16, after 8 observed days

const char* const k_scope = R"({"version":1,
 "max_transaction":{"currency":"EUR","amount":"500000.00"},
 "instruments":["BTC_EUR","ETH_EUR","SOL_EUR"],"counterparties":["exchange_a"],
 "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri","Sat","Sun"],"from":"00:00","to":"24:00"}],
 "regions":["eu-west-1","eu-central-1"],
 "limits":{"max_orders_per_second":50,"max_order_quantity":{"BTC_EUR":"0.75"},
           "max_daily_notional":{"currency":"EUR","amount":"8000000.00"}}})";

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-hardening-export") {}
};

kakunin_test::CommandResult cli(const TempDir& d, const std::string& args) {
    return kakunin_test::run_command("cd " + shell_quote(d.path().string()) +
                                         " && KAKUNIN_KMS_PASSPHRASE=hardening " +
                                         shell_quote(KAKUNIN_CLI_PATH) + " " + args,
                                     d.path());
}

std::string ok(const TempDir& d, const std::string& args) {
    const auto r = cli(d, args);
    INFO("kakunin " << args << "\n" << r.output);
    REQUIRE(r.exit_code == 0);
    return r.output;
}

/// Orders every 3 minutes 06:00-22:00 from `from` for `days` days (BTC 2 of 3, ETH 1 of 3,
/// 0.1..0.9, at 40000 EUR, exchange_a, eu-west-1), as (ts, CSV row).
std::vector<std::pair<TimeNs, std::string>> normal_rows(TimeNs from, int days) {
    std::vector<std::pair<TimeNs, std::string>> rows;
    unsigned n = 0;
    for (TimeNs t = from; t < from + days * day; t += 3 * minute) {
        const auto h = floor_mod(t, day) / hour;
        if (h < 6 || h >= 22) continue;
        rows.emplace_back(t, format_timestamp(t) + (n % 3 == 2 ? ",ETH_EUR" : ",BTC_EUR") +
                                 ",exchange_a,BUY,0." + std::to_string(1 + n % 9) +
                                 ",40000,eu-west-1");
        ++n;
    }
    return rows;
}

std::string csv_of(std::vector<std::pair<TimeNs, std::string>> rows) {
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string csv = "ts,instrument,counterparty,side,quantity,price,region\n";
    for (const auto& r : rows) csv += r.second + "\n";
    return csv;
}

std::string row(TimeNs t, const std::string& rest) { return format_timestamp(t) + "," + rest; }

/// The state and the packages, made once through the command line.
struct Scenario {
    TempDir dir;
    json replay;      ///< the trading day's replay --json summary
    json production;  ///< agent-8's production certificate (cert issue --json), revoked
    std::string package = dir / "pkg", plain = dir / "pkg-no-baseline";
    std::string html, plain_html;
    json manifest, timeline;

    Scenario() {
        write_text(dir / "scope.json", k_scope);
        ok(dir, "ca init --dir state");
        for (const char* agent : {"agent-7", "agent-8"}) {
            ok(dir, std::string("agent register --dir state --agent ") + agent +
                        " --owner 'Desk 3' --purpose 'market making' --by 'J. Roe'");
            ok(dir, std::string("scope approve --dir state --agent ") + agent +
                        " --scope scope.json --approver 'A. Officer'");
        }
        // Eight observed days, learned, given the officer's own thresholds, and approved.
        write_text(dir / "learn.csv", csv_of(normal_rows(t0, 8)));
        ok(dir, "replay --dir state --agent agent-7 --orders learn.csv --observe-until " +
                    format_timestamp(trading_day) + " --baseline-out learned.json");
        json learned = json::parse(read_text(dir / "learned.json"));
        learned["policy"]["warn_ppm"] = 700000;
        learned["policy"]["revoke_ppm"] = 900000;
        write_text(dir / "policy.json", learned.dump());
        ok(dir,
           "baseline approve --dir state --agent agent-7 --baseline policy.json --approver "
           "'C. Officer'");

        // The trading day: three orders to a counterparty outside the scope, a warning from a
        // region never used (nobody acknowledges it), a revocation at 12:00:01, and after the
        // halt another such order and the normal flow, all rejected.
        auto rows = normal_rows(trading_day, 1);
        for (int i = 0; i < 3; ++i)
            rows.emplace_back(trading_day + 8 * hour + 30'000'000'000LL + i * minute,
                              row(trading_day + 8 * hour + 30'000'000'000LL + i * minute,
                                  "BTC_EUR,exchange_z,BUY,0.2,40000,eu-west-1"));
        const TimeNs warn_at = trading_day + 10 * hour + 1'000'000'000;
        rows.emplace_back(warn_at, row(warn_at, "BTC_EUR,exchange_a,BUY,0.2,40000,eu-central-1"));
        const TimeNs revoke_at = trading_day + 12 * hour + 1'000'000'000;
        rows.emplace_back(revoke_at, row(revoke_at, "SOL_EUR,exchange_a,BUY,1000,400,eu-west-1"));
        rows.emplace_back(revoke_at + 1'000'000'000, row(revoke_at + 1'000'000'000,
                                                         "SOL_EUR,exchange_a,BUY,1000,400,"
                                                         "eu-west-1"));
        write_text(dir / "day.csv", csv_of(rows));
        replay = json::parse(ok(dir, "replay --dir state --agent agent-7 --orders day.csv --json"));
        REQUIRE(replay["revocations"] == 1);
        REQUIRE(replay["warned_orders"] == 1);

        ok(dir, "export --dir state --agent agent-7 --log-id agent-7.replay --out pkg");
        ok(dir, "export verify pkg --ca state/ca.pem");
        html = read_text(package + "/report.html");
        manifest = json::parse(read_text(package + "/manifest.json"));
        timeline = json::parse(read_text(package + "/timeline.json"));

        // Another agent of the same CA with no baseline at all, and a production certificate
        // that an operator revoked.
        production = json::parse(ok(dir,
                                    "cert issue --dir state --agent agent-8 --out agent-8.pem "
                                    "--json"));
        ok(dir, "cert revoke --dir state --serial " + production["serial"].get<std::string>() +
                    " --reason 'keyCompromise: laptop stolen'");
        ok(dir, "replay --dir state --agent agent-8 --orders day.csv");
        ok(dir, "export --dir state --agent agent-8 --log-id agent-8.replay --out pkg-no-baseline");
        ok(dir, "export verify pkg-no-baseline --ca state/ca.pem");
        plain_html = read_text(plain + "/report.html");
    }

    std::vector<json> records() const {
        std::vector<json> out;
        std::istringstream in(read_text(package + "/audit/extract.jsonl"));
        for (std::string line; std::getline(in, line);) {
            const json j = json::parse(line);
            if (j["kind"] == "record") out.push_back(j);
        }
        return out;
    }
};

Scenario& scenario() {
    static Scenario s;
    return s;
}

/// The table row of `html` holding `marker` (e.g. the serial in its first cell), <tr to </tr>.
std::string row_with(const std::string& html, const std::string& marker) {
    const std::size_t at = html.find(marker);
    INFO("no row with " << marker);
    REQUIRE(at != std::string::npos);
    const std::size_t begin = html.rfind("<tr", at);
    const std::size_t end = html.find("</tr>", at);
    REQUIRE(begin != std::string::npos);
    REQUIRE(end != std::string::npos);
    return html.substr(begin, end - begin);
}

std::string human(TimeNs t) {
    const CivilTime c = civil_from_ns(t);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u %02u:%02u:%02u UTC",
                  static_cast<long long>(c.year), c.month, c.day, c.hour, c.minute, c.second);
    return buf;
}

/// "12.34 %" of used / limit, both exact decimals scaled to 10^-18 (independent of the report).
std::string percent(const Wide& used, const Decimal& limit) {
    int128 u = 0, l = 0;
    REQUIRE(rescale_ceil(used, 18, u));
    REQUIRE(rescale_ceil(widen(limit), 18, l));
    const int128 hundredths = u * 10'000 / l;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld.%02lld %%", static_cast<long long>(hundredths / 100),
                  static_cast<long long>(hundredths % 100));
    return buf;
}

}  // namespace

TEST_CASE(
    "hardening export: a revoked simulation certificate is shown revoked with date and reason",
    "[hardening][export]") {
    Scenario& s = scenario();
    const std::string serial = s.replay["certificate"]["serial"];
    const std::string cert = row_with(s.html, "<td><code>" + serial + "</code></td>");
    INFO(cert);
    CHECK_THAT(cert, Catch::Contains(">revoked</span>"));
    CHECK_THAT(cert, !Catch::Contains("not revoked"));
    CHECK_THAT(cert, Catch::Contains(human(s.replay["first_revocation_ts_ns"].get<TimeNs>())));
    CHECK_THAT(cert, Catch::Contains("anomaly score"));
    CHECK_THAT(cert, Catch::Contains("agent log seq"));
    // The summary counts it beside the halt.
    const std::size_t card = s.html.find("certificates revoked");
    REQUIRE(card != std::string::npos);
    CHECK_THAT(s.html.substr(card - 60, 60), Catch::Contains(">1</div>"));
    // The simulation certificate of the observation replay was never revoked.
    for (const auto& e : fs::directory_iterator(s.package + "/certificates")) {
        const std::string name = e.path().filename().string();
        if (e.path().extension() != ".json") continue;
        const std::string other = name.substr(0, name.size() - 5);
        if (other == serial) continue;
        CHECK_THAT(row_with(s.html, "<td><code>" + other + "</code></td>"),
                   Catch::Contains("not revoked"));
    }
}

TEST_CASE(
    "hardening export: a production certificate revoked at the CA shows the CRL's date and "
    "the CA log's reason",
    "[hardening][export]") {
    Scenario& s = scenario();
    const std::string serial = s.production["serial"];
    std::optional<TimeNs> revoked_at;
    std::string seq;
    std::istringstream in(read_text(s.plain + "/audit/ca.jsonl"));
    for (std::string line; std::getline(in, line);) {
        const json j = json::parse(line);
        if (j["kind"] == "record" && j["event"] == "certificate.revoked" &&
            j["payload"]["serial"] == serial) {
            revoked_at = j["payload"]["revoked_at_ns"].get<TimeNs>();
            seq = std::to_string(j["seq"].get<std::uint64_t>());
        }
    }
    REQUIRE(revoked_at);
    const std::string cert = row_with(s.plain_html, "<td><code>" + serial + "</code></td>");
    INFO(cert);
    CHECK_THAT(cert, Catch::Contains(">revoked</span> " + human(*revoked_at) +
                                     ": keyCompromise: laptop stolen"));
    CHECK_THAT(cert, Catch::Contains("listed on the CRL; CA log seq " + seq));
    CHECK_THAT(cert, !Catch::Contains("not revoked"));
    CHECK_THAT(cert, !Catch::Contains("not on the package"));
}

TEST_CASE("hardening export: a Guard halted with no CA to revoke is not shown as not revoked",
          "[hardening][export]") {
    // A trading process enforcing the approved baseline without a CertificateAuthority: an
    // order over the revocation threshold halts it, and nobody revokes the certificate.
    Scenario& s = scenario();
    TempDir tmp;
    const std::string state = tmp / "state";
    fs::copy(s.dir / "state", state, fs::copy_options::recursive);
    std::shared_ptr<Kms> kms = SoftwareKms::open(state + "/keys", "hardening");
    SystemClock system;
    ManualClock clock(system.now_ns());
    LocalCaOptions o;
    o.state_dir = state;
    auto ca = LocalCa::open(kms, clock, o);
    const KeyHandle key = kms->create_key("agent:agent-7", KeyAlgorithm::ed25519);
    const AgentCertificate cert =
        ca->issue_for_agent("agent-7", kms->public_key(key).spki_der, std::chrono::hours(48));
    FileBaselineStore store(state);
    const auto stored = store.get_baseline("agent-7");
    REQUIRE(stored);
    const auto approval = store.get_approval("agent-7", stored->version);
    REQUIRE(approval);
    GuardOptions options;
    AuditTrailOptions audit{std::make_shared<FileAuditSink>(state + "/audit/agent-7.jsonl")};
    audit.log_id = "agent-7";
    options.audit = audit;
    options.baseline = ApprovedBaseline{parse_baseline_json(stored->json), *approval};
    options.incident_thread = false;
    {
        Guard guard(GuardCredentials{cert, ca->trust_anchor(), ca->current_crl(), kms, key}, clock,
                    options);
        Order big;
        big.instrument = "SOL_EUR";
        big.counterparty = "exchange_a";
        big.region = "eu-west-1";
        big.side = Side::buy;
        big.quantity = parse_decimal("1000");
        big.price = parse_decimal("400");
        big.reference_price = big.price;
        clock.advance(std::chrono::minutes(1));
        const Decision d = guard.check(big);
        REQUIRE(d.reasons.contains(ReasonCode::anomaly_revocation));
        guard.process_incidents();
        REQUIRE(guard.halted());
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    }
    CHECK_FALSE(ca->is_revoked(cert.serial()));
    ExportOptions e;
    e.state_dir = state;
    e.agent = "agent-7";
    e.out_dir = tmp / "pkg";
    export_package(*ca, *kms, e, clock);
    const std::string html = read_text(tmp / "pkg/report.html");
    const std::string r = row_with(html, "<td><code>" + cert.serial() + "</code></td>");
    INFO(r);
    CHECK_THAT(r, Catch::Contains("halted, revocation not confirmed"));
    CHECK_THAT(r, Catch::Contains("no certificate authority configured"));
    CHECK_THAT(r, !Catch::Contains("not revoked"));
}

TEST_CASE("hardening export: the chart draws the approved baseline's thresholds",
          "[hardening][export]") {
    Scenario& s = scenario();
    CHECK_THAT(s.html, Catch::Contains("data-threshold=\"0.700\""));
    CHECK_THAT(s.html, Catch::Contains("data-threshold=\"0.900\""));
    CHECK_THAT(s.html, !Catch::Contains("data-threshold=\"0.750\""));
    CHECK_THAT(s.html, !Catch::Contains("data-threshold=\"0.850\""));
    CHECK_THAT(s.html, Catch::Contains("policy of baseline version 1"));
    CHECK_THAT(s.html, Catch::Contains("approved by C. Officer"));
    SECTION("without a baseline: the defaults, and the report says so") {
        CHECK_THAT(s.plain_html, Catch::Contains("data-threshold=\"0.750\""));
        CHECK_THAT(s.plain_html, Catch::Contains("data-threshold=\"0.850\""));
        CHECK_THAT(s.plain_html, Catch::Contains("No approved baseline in the package"));
        CHECK_THAT(s.plain_html, Catch::Contains("default thresholds 0.750 and 0.850"));
    }
    SECTION("the timeline shows the revocation's trigger, not every high score after the halt") {
        std::vector<json> rejected;
        for (const auto& e : s.timeline)
            if (e["event"] == "order.rejected") rejected.push_back(e);
        REQUIRE(rejected.size() == 1);
        CHECK(rejected[0]["ts_ns"] == s.replay["first_revocation_ts_ns"]);
        CHECK_THAT(rejected[0]["detail"].get<std::string>(), Catch::Contains("anomaly_revocation"));
        // The second large order after the halt also scored above 0.85, and is not a trigger.
        bool later_high = false;
        for (const auto& r : s.records())
            if (r["event"] == "order.rejected" &&
                r["ts_ns"].get<TimeNs>() > s.replay["first_revocation_ts_ns"].get<TimeNs>() &&
                r["payload"]["score_ppm"].get<std::uint64_t>() >= 850000)
                later_high = true;
        CHECK(later_high);
    }
}

TEST_CASE("hardening export: an incident nobody handled is unresolved when the replay ended",
          "[hardening][export]") {
    Scenario& s = scenario();
    std::string warning;
    for (const auto& e : s.timeline)
        if (e["event"] == "incident.opened" && warning.empty()) warning = e["incident"];
    REQUIRE_FALSE(warning.empty());
    const std::string r = row_with(s.html, "data-incident=\"" + warning + "\"");
    INFO(r);
    CHECK_THAT(r, Catch::Contains("incident-unresolved"));
    CHECK_THAT(r, Catch::Contains("unresolved at the end of the period"));
    CHECK_THAT(r, Catch::Contains("never acknowledged"));
    CHECK_THAT(r, Catch::Contains("incident.escalated"));  // its last known step
    TimeNs last = 0;
    for (const auto& rec : s.records()) last = std::max(last, rec["ts_ns"].get<TimeNs>());
    CHECK_THAT(r, Catch::Contains("The replay that wrote this log ended at " + human(last)));
    // The revoked one is not called open, and nothing claims an incident is being handled.
    std::string revoked;
    for (const auto& e : s.timeline)
        if (e["event"] == "incident.revoked") revoked = e["incident"];
    REQUIRE(revoked != warning);
    CHECK_THAT(row_with(s.html, "data-incident=\"" + revoked + "\""),
               Catch::Contains("certificate revoked"));
    CHECK_THAT(s.html, !Catch::Contains("being handled"));
}

TEST_CASE("hardening export: rejections by reason code, name and count", "[hardening][export]") {
    Scenario& s = scenario();
    std::map<std::string, std::uint64_t> expected;
    for (const auto& r : s.records())
        if (r["event"] == "order.rejected")
            for (const auto& reason : r["payload"]["reasons"]) ++expected[reason];
    REQUIRE(expected["counterparty_not_allowed"] == 3);
    REQUIRE(expected["anomaly_revocation"] == 1);
    REQUIRE(expected["max_order_quantity_exceeded"] > 0);  // the 0.8 BTC orders
    REQUIRE(expected["halted"] > 0);
    const std::map<std::string, int> codes = {{"counterparty_not_allowed", 201},
                                              {"max_order_quantity_exceeded", 300},
                                              {"anomaly_revocation", 501},
                                              {"halted", 100},
                                              {"certificate_revoked", 602}};
    for (const auto& [name, count] : expected) {
        const std::string r = row_with(s.html, "data-reason=\"" + name + "\"");
        INFO(r);
        CHECK_THAT(r, Catch::Contains("<td class=\"count\">" + std::to_string(count) + "</td>"));
        const auto code = codes.find(name);
        if (code != codes.end())
            CHECK_THAT(r, Catch::StartsWith("<tr data-reason=\"" + name + "\"><td>" +
                                            std::to_string(code->second) + "</td>"));
    }
}

TEST_CASE("hardening export: limit usage per instrument and per day against the scope",
          "[hardening][export]") {
    Scenario& s = scenario();
    // Independently of the report: the largest allowed BTC order and each day's allowed total.
    std::optional<Wide> btc;
    std::map<std::int64_t, Wide> days;
    for (const auto& r : s.records()) {
        if (r["event"] != "order.allowed" && r["event"] != "order.warned") continue;
        const auto& o = r["payload"]["order"];
        const Wide n = multiply(parse_decimal(o["quantity"].get<std::string>()),
                                parse_decimal(o["price"].get<std::string>()));
        if (o["instrument"] == "BTC_EUR" && (!btc || compare(n, *btc) > 0)) btc = n;
        Wide& d = days[utc_day(r["ts_ns"].get<TimeNs>())];
        int128 a = 0, b = 0;
        REQUIRE(rescale_ceil(d, 18, a));
        REQUIRE(rescale_ceil(n, 18, b));
        d = Wide{a + b, 18};
    }
    REQUIRE(btc);
    CHECK(compare(*btc, parse_decimal("28000")) == 0);  // 0.7 BTC: 0.8 exceeds 0.75
    const std::string instrument = row_with(s.html, "data-instrument=\"BTC_EUR\"");
    INFO(instrument);
    CHECK_THAT(instrument, Catch::Contains("<td class=\"max-notional\">28000.00</td>"));
    CHECK_THAT(instrument, Catch::Contains("<td class=\"of-max\">" +
                                           percent(*btc, parse_decimal("500000.00")) + "</td>"));
    CHECK_THAT(instrument, Catch::Contains("<td>0.75</td>"));  // its max_order_quantity

    std::int64_t peak = days.begin()->first;
    for (const auto& [d, total] : days)
        if (compare(total, days[peak]) > 0) peak = d;
    for (const auto& [d, total] : days) {
        const CivilTime c = civil_from_ns(d * day);
        char date[16];
        std::snprintf(date, sizeof date, "%04lld-%02u-%02u", static_cast<long long>(c.year),
                      c.month, c.day);
        const std::string r = row_with(s.html, std::string("data-day=\"") + date + "\"");
        INFO(r);
        CHECK_THAT(r, Catch::Contains("<td class=\"of-max\">" +
                                      percent(total, parse_decimal("8000000.00")) + "</td>"));
        CHECK((r.find("(highest)") != std::string::npos) == (d == peak));
    }
    CHECK(days.size() == 9);  // eight observed days and the trading day
}

TEST_CASE("hardening export: the RTS 6 Art. 12 mapping says what the records prove",
          "[hardening][export]") {
    // Met since every halt records the working orders handed to the cancel callback
    // (guard.cancel_all); the mapping says what that proves and what it does not.
    Scenario& s = scenario();
    json art12;
    for (const auto& e : s.manifest["regulatory_mapping"])
        if (e["provision"] == "Art. 12") art12 = e;
    REQUIRE(art12.is_object());
    CHECK_FALSE(art12.contains("coverage"));
    const std::string how = art12["how"];
    CHECK_THAT(how, Catch::Contains("halt"));
    CHECK_THAT(how, Catch::Contains("guard.cancel_all"));
    CHECK_THAT(how, Catch::Contains("not that the venue cancelled them"));
    CHECK_THAT(art12["requirement"].get<std::string>(),
               Catch::Contains("cancel any or all unexecuted orders immediately"));
    CHECK_THAT(s.html, Catch::Contains("Art. 12</td>"));
    CHECK_THAT(s.html, !Catch::Contains("partially met</span>"));
}

TEST_CASE("hardening export: the report renders its new sections in headless Chromium",
          "[hardening][export][chromium]") {
    Scenario& s = scenario();
    const std::string chromium = kakunin_test::on_path("chromium")           ? "chromium"
                                 : kakunin_test::on_path("chromium-browser") ? "chromium-browser"
                                                                             : "";
    if (chromium.empty()) FAIL("chromium is not installed: install the Debian package 'chromium'");
    TempDir tmp;
    const auto dom = kakunin_test::run_command(
        chromium + " --headless --no-sandbox --disable-gpu --user-data-dir=" +
            shell_quote(tmp / "profile") + " --dump-dom " +
            shell_quote("file://" + s.package + "/report.html"),
        tmp.path());
    REQUIRE(dom.exit_code == 0);
    for (const char* id :
         {"id=\"incidents-table\"", "id=\"rejections-table\"", "id=\"instrument-limits\"",
          "id=\"daily-limits\"", "class=\"incident-unresolved\"", "data-threshold=\"0.900\""})
        CHECK_THAT(dom.output, Catch::Contains(id));
}

TEST_CASE("kakunin baseline show: the approved baseline as a table and as JSON",
          "[hardening][cli][baseline]") {
    Scenario& s = scenario();
    TempDir& d = s.dir;
    const json baseline = json::parse(read_text(d / "state/baselines/agent-7/1.json"));
    const json approval = json::parse(read_text(d / "state/baselines/agent-7/1.approval.json"));

    const std::string table = ok(d, "baseline show --dir state --agent agent-7");
    INFO(table);
    CHECK_THAT(table, Catch::Contains("baseline version 1 of agent 'agent-7' (approved)"));
    CHECK_THAT(table, Catch::Contains("approved by   C. Officer at " +
                                      format_timestamp(approval["approved_at_ns"].get<TimeNs>())));
    CHECK_THAT(table, Catch::Contains(approval["baseline_sha256"].get<std::string>()));
    CHECK_THAT(table,
               Catch::Contains("observed      2024-01-08T06:00:00Z .. 2024-01-16T00:00:00Z (" +
                               std::to_string(baseline["orders"].get<int>()) + " orders)"));
    CHECK_THAT(table, Catch::Contains("warn 0.700, revoke 0.900, unseen 0.800"));
    CHECK_THAT(table, Catch::Contains("size 1.000 frequency 1.000 concentration 1.000 time_of_day "
                                      "1.000 origin 1.000"));
    for (const auto& i : baseline["instruments"]) {
        CHECK_THAT(table, Catch::Contains(i["instrument"].get<std::string>()));
        CHECK_THAT(table, Catch::Contains(i["notional_p50"].get<std::string>()));
        CHECK_THAT(table, Catch::Contains(i["notional_p99"].get<std::string>()));
    }
    CHECK_THAT(table, Catch::Contains("eu-west-1"));
    CHECK_THAT(table, Catch::Contains("  Tue  ......"));
    CHECK_THAT(table, Catch::Contains("active 06:00-22:00"));

    const json j = json::parse(ok(d, "baseline show --dir state --agent agent-7 --json"));
    CHECK(j["agent"] == "agent-7");
    CHECK(j["version"] == 1);
    CHECK(j["approved"] == true);
    CHECK(j["approval"]["approver"] == "C. Officer");
    CHECK(j["approval"]["approved_at_ns"] == approval["approved_at_ns"]);
    CHECK(j["approval"]["automatic"] == false);
    CHECK(j["baseline_sha256"] == approval["baseline_sha256"]);
    CHECK(j["observed_from_ns"] == baseline["observed_from_ns"]);
    CHECK(j["observed_to_ns"] == baseline["observed_to_ns"]);
    CHECK(j["policy"] == baseline["policy"]);
    CHECK(j["policy"]["warn_ppm"] == 700000);
    CHECK(j["instruments"] == baseline["instruments"]);
    CHECK(j["regions"] == baseline["regions"]);
    CHECK(j["hour_of_week_orders"] == baseline["hour_of_week_orders"]);
    CHECK(j["days"][1]["day"] == "Tue");
    CHECK(j["days"][1]["active_from"] == "06:00");
    CHECK(j["days"][1]["active_to"] == "22:00");

    SECTION("an agent without a baseline is refused in one line") {
        const auto r = cli(d, "baseline show --dir state --agent agent-8");
        CHECK(r.exit_code != 0);
        CHECK_THAT(r.output, Catch::Contains("agent 'agent-8' has no baseline"));
        CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
    }
    SECTION("a newer version nobody approved is not shown as approved") {
        TempDir copy;
        fs::copy(d / "state", copy / "state", fs::copy_options::recursive);
        write_text(copy / "state/baselines/agent-7/2.json",
                   read_text(d / "state/baselines/agent-7/1.json"));
        const std::string latest = ok(copy, "baseline show --dir state --agent agent-7");
        CHECK_THAT(latest, Catch::Contains("baseline version 1 of agent"));
        CHECK_THAT(latest, Catch::Contains("note: version 2 is newer and not approved"));
        const auto r = cli(copy, "baseline show --dir state --agent agent-7 --version 2");
        CHECK(r.exit_code != 0);
        CHECK_THAT(r.output,
                   Catch::Contains("baseline version 2 of agent 'agent-7' is not approved"));
    }
    SECTION("an approval that does not verify is refused") {
        TempDir copy;
        fs::copy(d / "state", copy / "state", fs::copy_options::recursive);
        json forged = approval;
        forged["approver"] = "Someone Else";
        write_text(copy / "state/baselines/agent-7/1.approval.json", forged.dump());
        const auto r = cli(copy, "baseline show --dir state --agent agent-7");
        CHECK(r.exit_code != 0);
        CHECK_THAT(r.output, Catch::Contains("the approval does not verify"));
    }
}

TEST_CASE("kakunin baseline show --postgres: the approved baseline from the PostgreSQL store",
          "[hardening][cli][baseline][postgres]") {
    Scenario& s = scenario();
    test::AuditTestDb db(test::shared_pg_conninfo());
    PostgresBaselineStore store(db.app());
    const std::string text = read_text(s.dir / "state/baselines/agent-7/1.json");
    const StoredBaseline stored = store.put_baseline("agent-7", text);
    const std::string conninfo = shell_quote(db.app());

    const auto unapproved = cli(s.dir, "baseline show --postgres " + conninfo + " --agent agent-7");
    CHECK(unapproved.exit_code != 0);
    CHECK_THAT(unapproved.output, Catch::Contains("has no approved baseline"));

    BaselineApproval approval =
        baseline_approval_from_json(read_text(s.dir / "state/baselines/agent-7/1.approval.json"));
    REQUIRE(approval.version == stored.version);
    store.put_approval(approval);
    const json j =
        json::parse(ok(s.dir, "baseline show --postgres " + conninfo + " --agent agent-7 --json"));
    CHECK(j["version"] == stored.version);
    CHECK(j["approval"]["approver"] == "C. Officer");
    CHECK(j["baseline_sha256"] == approval.baseline_sha256);
    CHECK(j["policy"] == json::parse(text)["policy"]);
    const auto both =
        cli(s.dir, "baseline show --dir state --postgres " + conninfo + " --agent agent-7");
    CHECK(both.exit_code != 0);
    CHECK_THAT(both.output, Catch::Contains("either --dir STATE or --postgres CONNINFO"));
}
