// The behaviour command line end to end: replay with observation, automatic and human baseline
// approval, the incidents a replay reports, and the signed human steps in the CA log.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/replay.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace kakunin;

namespace {

using test::quote;
using test::Run;
using test::slurp;
using test::write_file;

const test::Cli cli{"behaviour"};

const char* const scope = R"({"version":1,
 "max_transaction":{"currency":"EUR","amount":"50000000.00"},
 "instruments":["BTC_EUR","ETH_EUR","SOL_EUR"],"counterparties":["exchange_a"],
 "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri","Sat","Sun"],"from":"00:00","to":"24:00"}],
 "regions":["eu-west-1","eu-central-1"],"limits":{"max_orders_per_second":50}})";

const TimeNs minute = 60'000'000'000LL, hour = 60 * minute, day = 24 * hour;
const TimeNs t0 = utc(2024, 1, 8, 0, 0, 0);

/// `days` of an order every 3 minutes 06:00-22:00 (BTC 2 of 3, ETH 1 of 3, eu-west-1), then
/// the extra rows.
std::string orders_csv(int days, const std::vector<std::string>& extra = {}) {
    std::string csv = "ts,instrument,counterparty,side,quantity,price,region\n";
    unsigned n = 0;
    for (TimeNs t = t0; t < t0 + days * day; t += 3 * minute) {
        const auto h = floor_mod(t, day) / hour;
        if (h < 6 || h >= 22) continue;
        csv += format_timestamp(t) + (n % 3 == 2 ? ",ETH_EUR" : ",BTC_EUR") + ",exchange_a,BUY,0." +
               std::to_string(1 + n % 9) + ",40000,eu-west-1\n";
        ++n;
    }
    for (const auto& row : extra) csv += row + "\n";
    return csv;
}

void set_up(const test::TempDir& d) {
    write_file(d / "scope.json", scope);
    cli.ok(d, "ca init --dir state");
    cli.ok(d, "agent register --dir state --agent agent-7 --owner Desk --purpose 'market making'");
    cli.ok(d,
           "scope approve --dir state --agent agent-7 --scope scope.json --approver 'A. Officer'");
}

std::vector<json> lines_of(const std::string& path) {
    std::vector<json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(json::parse(line));
    return out;
}

}  // namespace

TEST_CASE("replay learns, approves automatically, warns, revokes and reports it", "[cli]") {
    test::TempDir d("kakunin-cli-behaviour");
    set_up(d);
    const std::string warn_row = format_timestamp(t0 + 11 * day + 10 * hour + 1) +
                                 ",BTC_EUR,exchange_a,BUY,0.2,40000,eu-central-1";
    const std::string revoke_row = format_timestamp(t0 + 11 * day + 12 * hour + 1) +
                                   ",SOL_EUR,exchange_a,BUY,1000,400,eu-west-1";
    const std::string after_row = format_timestamp(t0 + 11 * day + 12 * hour + 2) +
                                  ",BTC_EUR,exchange_a,BUY,0.2,40000,eu-west-1";
    std::string csv = orders_csv(11) + warn_row + "\n" + revoke_row + "\n" + after_row + "\n";
    write_file(d / "orders.csv", csv);
    const Run r =
        cli.ok(d, "replay --dir state --agent agent-7 --orders orders.csv --observe-until " +
                      format_timestamp(t0 + 8 * day) +
                      " --auto-approve-baseline --json --decisions-out decisions.jsonl");
    const json s = json::parse(r.out);
    CHECK(s["revocations"] == 1);
    CHECK(s["warnings"] == 1);
    CHECK(s["first_revocation_ts_ns"] == t0 + 11 * day + 12 * hour + 1);
    CHECK(s["baseline"]["enforced"] == true);
    CHECK(s["baseline"]["automatic"] == true);
    CHECK(s["max_score_ppm"].get<std::uint32_t>() >= 850'000);
    REQUIRE(s["incidents"].size() == 2);
    CHECK(s["incidents"][1]["state"] == "revoked");

    const auto decisions = lines_of(d / "decisions.jsonl");
    REQUIRE(decisions.size() >= 3);
    const json& warned = decisions[decisions.size() - 3];
    CHECK(warned["decision"] == "warn");
    CHECK(warned["components_ppm"]["origin"].get<std::uint32_t>() >= 750'000);
    CHECK(decisions[decisions.size() - 2]["decision"] == "reject");
    CHECK(decisions[decisions.size() - 2]["reasons"][0] == "anomaly_revocation");
    CHECK(decisions.back()["decision"] == "reject");
    // Nothing warned while learning or in the normal days that followed.
    for (std::size_t i = 0; i + 3 < decisions.size(); ++i)
        CHECK(decisions[i]["decision"] == "allow");

    // The automatic approval is marked as such and verifies.
    const std::string path = d / s["baseline"]["path"].get<std::string>();
    const Baseline b = parse_baseline_json(slurp(path));
    const BaselineApproval a = baseline_approval_from_json(slurp(path + ".approval.json"));
    CHECK(a.automatic);
    CHECK(check_baseline_approval(a, b).empty());

    // The replay's audit log holds the incident records and verifies offline.
    const std::string log = s["audit_log"];
    cli.ok(d, "audit verify --log " + quote(log) + " --certs " + quote(log + ".certs"));
    std::map<std::string, int> events;
    for (const json& rec : lines_of(d / log))
        if (rec["kind"] == "record") ++events[rec["event"]];
    CHECK(events["baseline.approved"] == 1);
    CHECK(events["incident.opened"] == 2);
    CHECK(events["incident.revoked"] == 1);
    CHECK(events["incident.replacement_requested"] == 1);
    CHECK(events["order.warned"] == 1);
}

TEST_CASE("observation shorter than the policy minimum is refused", "[cli]") {
    test::TempDir d("kakunin-cli-behaviour");
    set_up(d);
    write_file(d / "orders.csv", orders_csv(9));
    const Run r = cli.run(d,
                          "replay --dir state --agent agent-7 --orders orders.csv "
                          "--observe-until " +
                              format_timestamp(t0 + 5 * day));
    CHECK(r.code != 0);
    CHECK_THAT(r.err, Catch::Contains("at least 7 days"));
    const Run s = cli.run(d, "replay --scope scope.json --orders orders.csv --observe-until " +
                                 format_timestamp(t0 + 8 * day));
    CHECK(s.code != 0);
    CHECK_THAT(s.err, Catch::Contains("--observe-until needs --dir"));
}

TEST_CASE("a named officer approves a learned baseline, later replays enforce it", "[cli]") {
    test::TempDir d("kakunin-cli-behaviour");
    set_up(d);
    write_file(d / "learn.csv", orders_csv(8));
    const Run learn =
        cli.ok(d, "replay --dir state --agent agent-7 --orders learn.csv --observe-until " +
                      format_timestamp(t0 + 8 * day) + " --baseline-out learned.json");
    CHECK_THAT(learn.out, Catch::Contains("NOT enforced"));

    // Bad files are refused with the member, and nothing is stored.
    std::string text = slurp(d / "learned.json");
    write_file(d / "bad.json", std::string(text).replace(text.find("\"orders\""), 8, "\"0rders\""));
    const Run bad = cli.run(d,
                            "baseline approve --dir state --agent agent-7 --baseline bad.json "
                            "--approver 'C. Officer'");
    CHECK(bad.code != 0);
    CHECK_THAT(bad.err, Catch::Contains("0rders: unknown member"));
    const Run other = cli.run(d,
                              "baseline approve --dir state --agent agent-8 --baseline "
                              "learned.json --approver 'C. Officer'");
    CHECK(other.code != 0);
    CHECK_FALSE(fs::exists(d / "state/baselines/agent-7/1.json"));

    const Run approved =
        cli.ok(d,
               "baseline approve --dir state --agent agent-7 --baseline learned.json "
               "--approver 'C. Officer' --json");
    const json a = json::parse(approved.out);
    CHECK(a["approver"] == "C. Officer");
    CHECK(a["version"] == 1);
    CHECK(a["automatic"] == false);
    CHECK(fs::exists(d / "state/baselines/agent-7/1.approval.json"));

    // The CA's log has the approval, signed; it verifies.
    bool found = false;
    for (const json& rec : lines_of(d / "state/audit/ca.jsonl"))
        if (rec["kind"] == "record" && rec["event"] == "baseline.approved") {
            found = true;
            CHECK(rec["payload"]["approver"] == "C. Officer");
        }
    CHECK(found);

    // A later span is replayed with the approved baseline: an unseen region warns.
    write_file(d / "later.csv", orders_csv(1) + format_timestamp(t0 + day + 10 * hour) +
                                    ",BTC_EUR,exchange_a,BUY,0.2,40000,eu-central-1\n");
    const json s = json::parse(cli.ok(d,
                                      "replay --dir state --agent agent-7 --orders later.csv "
                                      "--json --audit-out later.jsonl")
                                   .out);
    CHECK(s["baseline"]["from_state"] == true);
    CHECK(s["baseline"]["approved_by"] == "C. Officer");
    CHECK(s["warned_orders"] == 1);
    CHECK(s["warnings"] == 1);
}

TEST_CASE("incident steps and re-enables need the agent's log to check them against", "[cli]") {
    // Taken, signed and delivered once the agent's log shows what they apply to:
    // tests/test_human_steps.cpp. Without it nothing is recorded.
    test::TempDir d("kakunin-cli-behaviour");
    set_up(d);
    const std::string ca_log = slurp(d / "state/audit/ca.jsonl");
    for (const std::string& step :
         {std::string("incident ack --dir state --agent agent-7 --incident inc-1 --by 'On Call' "
                      "--note seen"),
          std::string("incident resolve --dir state --agent agent-7 --incident inc-1 --by 'On "
                      "Call' --note ok"),
          std::string("incident review --dir state --agent agent-7 --incident inc-1 --by 'R. "
                      "Reviewer' --root-cause 'bad news feed'"),
          std::string("agent reenable --dir state --agent agent-7 "
                      "--halt halt-agent-7-20240108T130000Z-0123456789abcdef-1 --by 'D. Head' "
                      "--reason 'feed fixed' --out reenable.json")}) {
        const Run r = cli.run(d, step);
        CHECK(r.code != 0);
        CHECK_THAT(r.err, Catch::Contains("no audit log of agent 'agent-7'"));
    }
    CHECK_FALSE(fs::exists(d / "reenable.json"));
    CHECK(slurp(d / "state/audit/ca.jsonl") == ca_log);
    const Run unknown =
        cli.run(d, "incident ack --dir state --agent nobody --incident inc-1 --by X --note y");
    CHECK(unknown.code != 0);
    CHECK_THAT(unknown.err, Catch::Contains("not registered"));
}

TEST_CASE(
    "a replay appended to a log continues its day: totals and a halt carry over, and a "
    "run back in time is refused",
    "[cli][restart]") {
    test::TempDir d("kakunin-cli-behaviour");
    write_file(d / "scope.json", R"({"version":1,
 "max_transaction":{"currency":"EUR","amount":"50000000.00"},
 "instruments":["BTC_EUR"],"counterparties":["exchange_a"],
 "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri","Sat","Sun"],"from":"00:00","to":"24:00"}],
 "regions":["eu-west-1"],
 "limits":{"max_orders_per_second":50,"max_daily_notional":{"currency":"EUR","amount":"100000.00"}}})");
    cli.ok(d, "ca init --dir state");
    cli.ok(d, "agent register --dir state --agent agent-8 --owner Desk --purpose test");
    cli.ok(d,
           "scope approve --dir state --agent agent-8 --scope scope.json --approver 'A. Officer'");
    const std::string head = "ts,instrument,counterparty,side,quantity,price,region\n";
    write_file(d / "morning.csv",
               head +
                   "2024-01-08T10:00:00Z,BTC_EUR,exchange_a,BUY,1,40000,eu-west-1\n"
                   "2024-01-08T10:01:00Z,BTC_EUR,exchange_a,BUY,1,40000,eu-west-1\n");
    write_file(d / "noon.csv",
               head +
                   "2024-01-08T11:00:00Z,BTC_EUR,exchange_a,BUY,1,40000,eu-west-1\n"
                   "2024-01-08T11:01:00Z,BTC_EUR,exchange_a,BUY,0.5,40000,eu-west-1\n");
    const std::string replay = "replay --dir state --agent agent-8 --audit-out day.jsonl --json ";
    CHECK(json::parse(cli.ok(d, replay + "--orders morning.csv").out).at("allowed") == 2);
    // 80,000 of the day's 100,000 are used: 40,000 more is refused, 20,000 fits exactly.
    const json noon =
        json::parse(cli.ok(d, replay + "--orders noon.csv --decisions-out noon.out").out);
    CHECK(noon.at("allowed") == 1);
    const auto decisions = lines_of(d / "noon.out");
    REQUIRE(decisions.size() == 2);
    CHECK(decisions[0].at("reasons") == json::array({"daily_notional_exceeded"}));
    CHECK(decisions[1].at("decision") == "allow");

    // A run that ends halted: the next run of the day is refused, halted.
    write_file(d / "halt.csv",
               "ts,type,order_id,instrument,counterparty,side,quantity,price,region\n"
               "2024-01-08T12:00:00Z,cancel,none,BTC_EUR,exchange_a,BUY,,,eu-west-1\n");
    cli.ok(d, replay + "--events halt.csv --halt-at 2024-01-08T12:00:30Z");
    write_file(d / "late.csv",
               head + "2024-01-08T13:00:00Z,BTC_EUR,exchange_a,SELL,0.001,40000,eu-west-1\n");
    const json late =
        json::parse(cli.ok(d, replay + "--orders late.csv --decisions-out late.out").out);
    CHECK(late.at("allowed") == 0);
    const auto refused = lines_of(d / "late.out");
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].at("reasons").dump().find("halted") != std::string::npos);

    // Appending the morning again would put the log's day out of order: refused, nothing written.
    const std::string before = slurp(d / "day.jsonl");
    const Run back = cli.run(d, replay + "--orders morning.csv");
    CHECK(back.code != 0);
    CHECK(back.err.find("cannot go back in time") != std::string::npos);
    CHECK(slurp(d / "day.jsonl") == before);
    cli.ok(d, "audit verify --log day.jsonl --certs day.jsonl.certs");
}
