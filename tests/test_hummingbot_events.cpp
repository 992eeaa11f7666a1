// The lifecycle of a real bot (issue 11): bench/hummingbot_events.py turns a live Hummingbot
// market maker's orders, status changes and fills into the events CSV of `kakunin replay
// --events`, with the final position summed from the fills and a scope sized from the bot's
// configuration. Here the converter's self-test runs (no data needed), then its output goes
// through a Guard's lifecycle API event by event (check, on_execution, halt), and what the Guard
// ends with is compared with what the converter computed on its own. The data live outside the
// repository (../shared/data/hummingbot-edg-mm/EDG-BTC); without them the test says so (WARN).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../bench/hummingbot_orders.hpp"
#include "cli_test_support.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/scope.hpp"

using namespace kakunin;
using nlohmann::json;

namespace {

const std::string converter = KAKUNIN_SOURCE_DIR "/bench/hummingbot_events.py";
const std::string lifecycle_data = KAKUNIN_SOURCE_DIR "/../shared/data/hummingbot-edg-mm/EDG-BTC";

bool have_python() { return std::system("python3 -c 'import sqlite3, gzip, decimal'") == 0; }

using test::slurp;

/// One row of events.csv, by the header's names.
struct Row {
    std::size_t line = 0;
    TimeNs ts_ns = 0;
    std::map<std::string, std::string> cell;
    const std::string& operator[](const std::string& k) const { return cell.at(k); }
};

std::vector<Row> read_events(const std::string& path) {
    std::istringstream in(slurp(path));
    std::string line;
    REQUIRE(std::getline(in, line));
    const auto header = evaluation::detail::split_csv(line, path + ":1");
    std::vector<Row> rows;
    std::size_t n = 1;
    while (std::getline(in, line)) {
        ++n;
        const auto f = evaluation::detail::split_csv(line, path + ":" + std::to_string(n));
        REQUIRE(f.size() == header.size());
        Row r;
        r.line = n;
        for (std::size_t i = 0; i < f.size(); ++i) r.cell[header[i]] = f[i];
        r.ts_ns = parse_timestamp(r["ts"]);
        rows.push_back(std::move(r));
    }
    return rows;
}

struct Run {
    std::uint64_t requests = 0;
    std::map<std::string, std::vector<std::string>> rejected;  ///< id -> reasons
    std::vector<std::string> cancelled_at_halt;
    bool halt_called = false;
    std::uint64_t allowed_after_halt = 0, requests_after_halt = 0;
    LifecycleState end;
};

/// Feeds every row to a limits-only Guard on the rows' own times, as `replay --scope --events`
/// does; pulls the kill switch at `halt_at` (0: never).
Run replay(const Scope& scope, const std::vector<Row>& rows, TimeNs halt_at) {
    ManualClock clock(rows.front().ts_ns);
    Run run;
    GuardOptions options;
    options.observe = false;
    options.incident_thread = false;
    options.on_cancel_all = [&run](const CancelAll& c) {
        run.halt_called = true;
        run.cancelled_at_halt = c.order_ids;
    };
    Guard guard(scope, clock, options);
    bool halted = false;
    for (const Row& r : rows) {
        clock.set(r.ts_ns);
        if (halt_at != 0 && !halted && r.ts_ns >= halt_at) {
            clock.set(halt_at);
            guard.halt("evaluation: kill switch in the busiest hour", "Evaluation");
            halted = true;
            clock.set(r.ts_ns);
        }
        const std::string& type = r["type"];
        const Side side = r["side"] == "SELL" ? Side::sell : Side::buy;
        if (type == "new") {
            Order o;
            o.client_order_id = r["order_id"];
            o.instrument = r["instrument"];
            o.counterparty = r["counterparty"];
            o.side = side;
            o.quantity = parse_decimal(r["quantity"]);
            o.price = parse_decimal(r["price"]);
            o.region = r["region"];
            const Decision d = guard.check(o);
            ++run.requests;
            if (halted) ++run.requests_after_halt;
            if (d.allowed()) {
                if (halted) ++run.allowed_after_halt;
            } else {
                auto& reasons = run.rejected[r["order_id"]];
                for (ReasonCode c : d.reasons) reasons.emplace_back(to_string(c));
            }
            continue;
        }
        REQUIRE((type == "ack" || type == "fill" || type == "cancelled"));
        ExecutionReport e;
        e.type = type == "ack"    ? ExecutionType::ack
                 : type == "fill" ? ExecutionType::fill
                                  : ExecutionType::cancelled;
        e.client_order_id = r["order_id"];
        e.instrument = r["instrument"];
        e.side = side;
        if (type == "fill") {
            e.quantity = parse_decimal(r["quantity"]);
            e.price = parse_decimal(r["price"]);
        }
        const ExecutionResult result = guard.on_execution(e);
        INFO("line " << r.line);
        // A report that cannot be applied would lose a fact; reduce-only would follow.
        CHECK_FALSE(result.reduce_only_entered);
        if (type == "fill") CHECK(result.applied);
    }
    run.end = guard.lifecycle_state();
    return run;
}

}  // namespace

TEST_CASE("the lifecycle converter's self-test passes", "[hummingbot_events]") {
    if (!have_python()) {
        WARN("python3 with sqlite3 not found: bench/hummingbot_events.py was NOT tested");
        return;
    }
    CHECK(std::system(("python3 " + converter + " self-test >/dev/null").c_str()) == 0);
}

TEST_CASE(
    "a real market maker's lifecycle through the Guard: no rejection but the bot's own "
    "crossings, the position of the fills, every working order cancelled at the halt",
    "[hummingbot_events][slow]") {
    if (!std::filesystem::exists(lifecycle_data + "/conf_pure_mm_3.sqlite.gz")) {
        WARN("Hummingbot database not found at "
             << lifecycle_data
             << "/conf_pure_mm_3.sqlite.gz: the lifecycle evaluation on a real bot was NOT run");
        return;
    }
    if (!have_python()) {
        WARN("python3 with sqlite3 not found: the lifecycle evaluation was NOT run");
        return;
    }
    test::TempDir out("kakunin-hb");
    REQUIRE(std::system(("python3 " + converter + " convert --data " + lifecycle_data + " --out " +
                         out.path().string() + " 2>/dev/null")
                            .c_str()) == 0);
    const json facts = json::parse(slurp(out / "facts.json"));
    const json positions = json::parse(slurp(out / "positions.json"));
    const Scope scope = parse_scope_json(slurp(out / "scope.json"));
    const auto rows = read_events(out / "events.csv");
    REQUIRE(rows.size() > 10'000);  // 3,200 orders, 8,914 status changes
    const std::set<std::string> crossing(facts.at("self_crossing_orders").begin(),
                                         facts.at("self_crossing_orders").end());
    const std::string instrument = facts.at("instrument").get<std::string>();
    const std::string fills_position = positions.at(instrument).get<std::string>();

    SECTION("to the end") {
        const Run run = replay(scope, rows, 0);
        CHECK(run.requests == facts.at("requests").get<std::uint64_t>());
        // Every rejection is one the data force: a new order at the price of the bot's own
        // working order of the other side (both prices from fills), refused for self_trade only.
        std::set<std::string> rejected;
        for (const auto& [id, reasons] : run.rejected) {
            INFO(id);
            CHECK(reasons == std::vector<std::string>{"self_trade"});
            rejected.insert(id);
        }
        CHECK(rejected == crossing);
        REQUIRE(run.end.positions.size() == 1);
        CHECK(run.end.positions[0].instrument == instrument);
        CHECK(run.end.positions[0].position == fills_position);
        CHECK(run.end.working_orders.empty());
        CHECK_FALSE(run.end.reduce_only);
        CHECK_FALSE(run.halt_called);
    }
    SECTION("through kakunin replay --events, compared as scripts/evaluate compares") {
        const std::string cli = KAKUNIN_CLI_PATH;
        if (cli.empty() || !std::filesystem::exists(cli)) {
            WARN("the kakunin program is not built (-DKAKUNIN_BUILD_CLI=ON): replay NOT run");
            return;
        }
        const std::string o = out.path().string();
        const std::string replay_args =
            cli + " replay --scope " + o + "/scope.json --events " + o + "/events.csv --json";
        REQUIRE(std::system((replay_args + " --decisions-out " + o + "/d.jsonl --state-out " + o +
                             "/s.json >" + o + "/summary.json")
                                .c_str()) == 0);
        REQUIRE(std::system((replay_args + " --halt-at " + facts.at("halt_at").get<std::string>() +
                             " --decisions-out " + o + "/hd.jsonl --state-out " + o + "/hs.json >" +
                             o + "/halt-summary.json")
                                .c_str()) == 0);
        const json state = json::parse(slurp(o + "/s.json"));
        CHECK(state.at("positions").at(instrument).get<std::string>() == fills_position);
        const json halt = json::parse(slurp(o + "/halt-summary.json"));
        CHECK(halt.at("cancel_on_halt") == facts.at("working_at_halt"));
        // Every goal of the comparison (exit 0; 3 when one is not met).
        CHECK(std::system(("python3 " + converter + " compare --out " + o + " --summary " + o +
                           "/summary.json --state " + o + "/s.json --decisions " + o +
                           "/d.jsonl --halt-summary " + o + "/halt-summary.json --halt-decisions " +
                           o + "/hd.jsonl --halt-state " + o + "/hs.json >/dev/null")
                              .c_str()) == 0);
    }
    SECTION("with the kill switch pulled in the busiest hour") {
        const TimeNs halt_at = parse_timestamp(facts.at("halt_at").get<std::string>());
        const Run run = replay(scope, rows, halt_at);
        REQUIRE(run.halt_called);
        const auto expected = facts.at("working_at_halt").get<std::vector<std::string>>();
        CHECK(!expected.empty());
        CHECK(run.cancelled_at_halt == expected);
        CHECK(run.requests_after_halt > 0);
        CHECK(run.allowed_after_halt == 0);
        for (const auto& [id, reasons] : run.rejected) {
            INFO(id);
            const bool forced = crossing.count(id) != 0;
            const bool halt = std::find(reasons.begin(), reasons.end(), "halted") != reasons.end();
            CHECK((forced || halt));
        }
        // Fills are facts: they still move the position after the halt.
        REQUIRE(run.end.positions.size() == 1);
        CHECK(run.end.positions[0].position == fills_position);
        CHECK(run.end.working_orders.empty());
    }
}
