// The events CSV (an order lifecycle), its replay through a Guard, and `kakunin replay --events`
// end to end.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_test_support.hpp"
#include "kakunin/replay.hpp"
#include "pkcs11_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using namespace kakunin;
using json = nlohmann::json;
using kakunin_test::read_text;
using kakunin_test::shell_quote;
using kakunin_test::write_text;
namespace fs = std::filesystem;

namespace {

std::vector<ReplayEvent> parse_events(const std::string& text) {
    std::istringstream in(text);
    return read_events_csv(in, "events.csv");
}

std::string events_error(const std::string& text) {
    try {
        parse_events(text);
    } catch (const Error& e) {
        return e.what();
    }
    FAIL("accepted: " << text);
    return {};
}

const std::string events_header =
    "ts,type,order_id,instrument,counterparty,side,quantity,price,region\n";

/// A new order inside the seed scope at 07:00:00 (Monday 2024-01-08).
const std::string placed =
    "2024-01-08T07:00:00Z,new,q-1,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n";

/// The seed scope with a position limit of 3 BTC either way and a daily loss limit (so that the
/// day's profit and loss is tracked).
std::string market_maker_scope() {
    return test::seed_with("\"price_collar_bps\": 500",
                           "\"max_position\": {\"BTC_EUR\": {\"long\": \"3\", \"short\": "
                           "\"3\"}},\n    \"max_daily_loss\": {\"currency\": \"EUR\", "
                           "\"amount\": \"1000.00\"},\n    \"price_collar_bps\": 500");
}

/// A market maker's morning on BTC_EUR: a bid and an ask, both acknowledged, the bid moved up
/// and filled in part, the ask amended up, a cancel of the bid that a fill overtakes (the
/// venue's cancelled then finds nothing working), a bid the position limit refuses and a
/// smaller one it allows, amended down, a fill of the ask, a cancel of an unknown id. With
/// --halt-at 07:00:10 the kill switch cancels b-3 and s-1; after it a new bid is refused, the
/// cancel of s-1 passes and the venue confirms it.
const std::string market_maker_events =
    "ts,type,order_id,instrument,counterparty,side,quantity,price,region\n"
    "2024-01-08T07:00:00Z,mark,,BTC_EUR,,,,40000.00,\n"                             // 2
    "2024-01-08T07:00:01Z,new,b-1,BTC_EUR,exchange_a,BUY,1,39990.00,eu-west-1\n"    // 3
    "2024-01-08T07:00:01Z,new,s-1,BTC_EUR,exchange_a,SELL,1,40010.00,eu-west-1\n"   // 4
    "2024-01-08T07:00:01.5Z,ack,b-1,,,,,,\n"                                        // 5
    "2024-01-08T07:00:01.5Z,ack,s-1,,,,,,\n"                                        // 6
    "2024-01-08T07:00:02Z,amend,b-1,,,,,39995.00,\n"                                // 7
    "2024-01-08T07:00:02.5Z,ack,b-1,,,,,,\n"                                        // 8
    "2024-01-08T07:00:03Z,fill,b-1,,,,0.4,39995.00,\n"                              // 9
    "2024-01-08T07:00:04Z,amend,s-1,,,,2,,\n"                                       // 10
    "2024-01-08T07:00:05Z,cancel,b-1,,,,,,\n"                                       // 11
    "2024-01-08T07:00:05.1Z,fill,b-1,,,,0.6,39995.00,\n"                            // 12
    "2024-01-08T07:00:05.2Z,cancelled,b-1,,,,,,\n"                                  // 13
    "2024-01-08T07:00:06Z,new,b-2,BTC_EUR,exchange_a,BUY,2.5,39990.00,eu-west-1\n"  // 14
    "2024-01-08T07:00:06Z,new,b-3,BTC_EUR,exchange_a,BUY,2,39990.00,eu-west-1\n"    // 15
    "2024-01-08T07:00:06.5Z,ack,b-3,,,,,,\n"                                        // 16
    "2024-01-08T07:00:07Z,fill,s-1,,,,0.5,40010.00,\n"                              // 17
    "2024-01-08T07:00:08Z,cancel,x-9,,,,,,\n"                                       // 18
    "2024-01-08T07:00:09Z,amend,b-3,,,,1.5,,\n"                                     // 19
    "2024-01-08T07:00:09.5Z,ack,b-3,,,,,,\n"                                        // 20
    "2024-01-08T07:00:11Z,new,b-5,BTC_EUR,exchange_a,BUY,0.1,39990.00,eu-west-1\n"  // 21
    "2024-01-08T07:00:12Z,cancel,s-1,,,,,,\n"                                       // 22
    "2024-01-08T07:00:12.5Z,cancelled,s-1,,,,,,\n";                                 // 23

/// Net position per instrument from the fills of an events file, computed apart from the Guard:
/// whole units of 10^-8, formatted with trailing zeros trimmed.
std::map<std::string, std::string> positions_from_fills(const std::vector<ReplayEvent>& events) {
    std::map<std::string, long long> units;
    for (const ReplayEvent& e : events) {
        if (e.type != EventType::fill) continue;
        long long q = e.quantity->units;
        for (int k = e.quantity->scale; k < 8; ++k) q *= 10;
        units[e.instrument] += *e.side == Side::buy ? q : -q;
    }
    std::map<std::string, std::string> out;
    for (const auto& [instrument, u] : units) {
        const long long whole = u / 100000000, frac = std::llabs(u % 100000000);
        std::string text = (u < 0 && whole == 0 ? "-" : "") + std::to_string(whole);
        if (frac != 0) {
            std::string f = std::to_string(frac);
            f.insert(0, 8 - f.size(), '0');
            while (f.back() == '0') f.pop_back();
            text += "." + f;
        }
        out[instrument] = text;
    }
    return out;
}

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-replay-events") {}
};

using test::Run;

/// The kakunin program run in `dir` under env(1) with `env` (VAR=value words), stdout and
/// stderr apart.
Run cli(const std::string& args, const TempDir& dir, const std::string& env = "") {
    return test::run_in(dir, "env " + env + " " + shell_quote(KAKUNIN_CLI_PATH) + " " + args);
}

void require_ok(const Run& r) {
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    REQUIRE(r.code == 0);
}

/// A failure with one line on stderr containing `fragment`.
void require_error(const Run& r, const std::string& fragment) {
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.rfind("kakunin: ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_THAT(r.err, Catch::Contains(fragment));
}

}  // namespace

TEST_CASE("events CSV: columns by name, every type, and what a row takes from its order") {
    const auto events = parse_events(
        "region,price,quantity,side,counterparty,instrument,order_id,type,ts,reasoning,"
        "reference_price\r\n"
        "eu-west-1,40000.00,1,BUY,exchange_a,BTC_EUR,q-1,new,2024-01-08T07:00:00Z,\"quote, "
        "bid\",39990\r\n"
        ",,,,,,q-1,ack,2024-01-08T07:00:00.5Z,,\n"
        "\n"
        ",40010.00,2,,,,q-1,amend,1704697201000,,\n"
        ",,0.25,,,,q-1,amend,2024-01-08T07:00:01Z,,\n"
        ",40005.5,0.5,,,,q-1,fill,2024-01-08T07:00:02Z,,\n"
        ",,,,,,q-1,cancel,2024-01-08T07:00:03Z,,\n"
        ",,,,,,q-1,cancelled,2024-01-08T07:00:03Z,,\n"
        ",,,,,,q-2,reject,2024-01-08T07:00:04Z,,\n"
        ",,,,,,q-3,expired,2024-01-08T07:00:04Z,,\n"
        ",41000,,,,ETH_EUR,,mark,2024-01-08T07:00:05Z,,\n"
        ",2000,3,SELL,,ETH_EUR,x-9,fill,2024-01-08T07:00:06Z,,\n");
    REQUIRE(events.size() == 11);
    const ReplayEvent& n = events[0];
    CHECK(n.line == 2);
    CHECK(n.type == EventType::new_order);
    CHECK(std::string(to_string(n.type)) == "new");
    CHECK(n.order_id == "q-1");
    CHECK(n.reasoning == "quote, bid");
    CHECK(to_string(*n.reference_price) == "39990");
    const Order o = n.order();
    CHECK(o.client_order_id == "q-1");
    CHECK(o.side == Side::buy);
    CHECK(to_string(o.quantity) == "1");
    CHECK(to_string(o.price) == "40000.00");
    CHECK(events[1].type == EventType::ack);
    CHECK(events[1].ts_ns == utc(2024, 1, 8, 7) + 500'000'000);
    // Line 4 is blank: the amend is line 5, with its order's instrument, venue and region.
    const ReplayEvent& a = events[2];
    CHECK(a.line == 5);
    CHECK(a.ts_ns == utc(2024, 1, 8, 7, 0, 1));
    CHECK(a.instrument == "BTC_EUR");
    CHECK(a.counterparty == "exchange_a");
    CHECK(a.region == "eu-west-1");
    CHECK(to_string(*a.amend().quantity) == "2");
    CHECK(to_string(*a.amend().price) == "40010.00");
    CHECK(a.amend().client_order_id == "q-1");
    // Either value may be left unchanged.
    CHECK(to_string(*events[3].amend().quantity) == "0.25");
    CHECK_FALSE(events[3].amend().price.has_value());
    // The fill takes the order's instrument and side.
    const ExecutionReport f = events[4].report();
    CHECK(f.type == ExecutionType::fill);
    CHECK(f.client_order_id == "q-1");
    CHECK(f.instrument == "BTC_EUR");
    CHECK(f.side == Side::buy);
    CHECK(to_string(f.quantity) == "0.5");
    CHECK(to_string(f.price) == "40005.5");
    CHECK(events[5].cancel().client_order_id == "q-1");
    CHECK(events[6].report().type == ExecutionType::cancelled);
    CHECK(events[7].report().type == ExecutionType::reject);
    CHECK(events[8].report().type == ExecutionType::expired);
    const ExecutionReport m = events[9].report();
    CHECK(m.type == ExecutionType::mark);
    CHECK(m.instrument == "ETH_EUR");
    CHECK(to_string(m.price) == "41000");
    // A fill of an order the file never placed names its instrument and side itself.
    const ExecutionReport u = events[10].report();
    CHECK(u.client_order_id == "x-9");
    CHECK(u.instrument == "ETH_EUR");
    CHECK(u.side == Side::sell);
    CHECK(is_request(EventType::cancel));
    CHECK_FALSE(is_request(EventType::ack));
}

TEST_CASE("events CSV: a bad row names file, line, column and problem") {
    const std::string h = events_header;
    CHECK_THAT(events_error(""), Catch::Contains("events.csv:1: empty file"));
    CHECK_THAT(events_error("ts,type,order_id,instrument,counterparty,side,quantity,price\n"),
               Catch::Contains("events.csv:1: missing column 'region' (header: "
                               "ts,type,order_id,instrument,counterparty,side,quantity,price,"
                               "region)"));
    CHECK_THAT(events_error("ts,instrument,counterparty,side,quantity,price,region\n"),
               Catch::Contains("events.csv:1: missing column 'type'"));
    CHECK_THAT(events_error(h.substr(0, h.size() - 1) + ",client_order_id\n"),
               Catch::Contains("events.csv:1: unknown column 'client_order_id'"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,ack,q-1\n"),
               Catch::Contains("events.csv:3: expected 9 fields, found 3"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,modify,q-1,BTC_EUR,exchange_a,BUY,1,1,"
                                "eu-west-1\n"),
               Catch::Contains("events.csv:2: type: 'modify' is not one of new, amend, cancel, "
                               "ack, reject, fill, cancelled, expired, mark"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,,q-1,BTC_EUR,exchange_a,BUY,1,1,eu-west-1\n"),
               Catch::Contains("events.csv:2: type: empty (one of new, amend"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,new,,BTC_EUR,exchange_a,BUY,1,1,eu-west-1\n"),
               Catch::Contains("events.csv:2: order_id: empty: a new row needs the order's id"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,amend,,,,,2,,\n"),
               Catch::Contains("events.csv:3: order_id: empty: an amend row needs the order's id"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,cancel,,,,,,,\n"),
               Catch::Contains("events.csv:3: order_id: empty: a cancel row needs the order's id"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,ack,,,,,,,\n"),
               Catch::Contains("events.csv:3: order_id: empty: an ack row needs the order's id"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,new,q-1,BTC_EUR,exchange_a,BUY,1e3,1,"
                                "eu-west-1\n"),
               Catch::Contains("events.csv:2: quantity: '1e3' is not a decimal number"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,amend,q-1,,,,,4O000,\n"),
               Catch::Contains("events.csv:3: price: '4O000' is not a decimal number"));
    CHECK_THAT(events_error("reference_price," + h + "x," + placed),
               Catch::Contains("events.csv:2: reference_price: 'x' is not a decimal number"));
    // A malformed cell is refused whatever the row's type reads.
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,cancel,q-1,,,,lots,,\n"),
               Catch::Contains("events.csv:3: quantity: 'lots' is not a decimal number"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,new,q-1,BTC_EUR,exchange_a,HOLD,1,1,"
                                "eu-west-1\n"),
               Catch::Contains("events.csv:2: side: 'HOLD' is neither BUY nor SELL"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,new,q-1,BTC_EUR,exchange_a,,1,1,eu-west-1\n"),
               Catch::Contains("events.csv:2: side: empty: a new row needs BUY or SELL"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,new,q-1,,exchange_a,BUY,1,1,eu-west-1\n"),
               Catch::Contains("events.csv:2: instrument: empty: a new row needs the instrument"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,new,q-1,BTC_EUR,exchange_a,BUY,,1,"
                                "eu-west-1\n"),
               Catch::Contains("events.csv:2: quantity: empty: a new row needs the quantity"));
    CHECK_THAT(events_error(h + "yesterday,new,q-1,BTC_EUR,exchange_a,BUY,1,1,eu-west-1\n"),
               Catch::Contains("events.csv:2: ts: 'yesterday' is not a timestamp"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T06:59:59Z,cancel,q-1,,,,,,\n"),
               Catch::Contains("events.csv:3: ts: rows must be in time order"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,amend,q-1,,,,,,\n"),
               Catch::Contains("events.csv:3: quantity: empty, and so is price: an amend row "
                               "needs the new quantity, the new price or both"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,fill,q-1,,,,,40000,\n"),
               Catch::Contains("events.csv:3: quantity: empty: a fill row needs the fill's "
                               "quantity"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,fill,q-1,,,,0,40000,\n"),
               Catch::Contains("events.csv:3: quantity: '0' is not positive"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,fill,q-1,,,,1,-1,\n"),
               Catch::Contains("events.csv:3: price: '-1' is not positive"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:01Z,fill,x-1,,,SELL,1,40000,\n"),
               Catch::Contains("events.csv:2: instrument: empty: a fill of order 'x-1', which no "
                               "earlier new row placed, needs the instrument"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:01Z,fill,x-1,BTC_EUR,,,1,40000,\n"),
               Catch::Contains("events.csv:2: side: empty: a fill of order 'x-1', which no "
                               "earlier new row placed, needs BUY or SELL"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,fill,q-1,,,SELL,1,40000,\n"),
               Catch::Contains("events.csv:3: side: 'SELL' but order 'q-1' (line 2) is a BUY"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,amend,q-1,ETH_EUR,,,2,,\n"),
               Catch::Contains("events.csv:3: instrument: 'ETH_EUR' but order 'q-1' (line 2) "
                               "has 'BTC_EUR'"));
    CHECK_THAT(events_error(h + placed + "2024-01-08T07:00:01Z,cancel,q-1,,exchange_b,,,,\n"),
               Catch::Contains("events.csv:3: counterparty: 'exchange_b' but order 'q-1'"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:01Z,mark,,,,,,40000,\n"),
               Catch::Contains("events.csv:2: instrument: empty: a mark row needs the "
                               "instrument"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:01Z,mark,,BTC_EUR,,,,,\n"),
               Catch::Contains("events.csv:2: price: empty: a mark row needs the mark price"));
    CHECK_THAT(events_error(h + "2024-01-08T07:00:00Z,\"new,q-1,BTC_EUR,exchange_a,BUY,1,1,"
                                "eu-west-1\n"),
               Catch::Contains("events.csv:2: malformed quoting"));
    CHECK_THROWS_AS(load_events_csv("/nonexistent/events.csv"), Error);
}

TEST_CASE(
    "events replay: a market maker's quotes, amends, fills, a cancel race, a position "
    "limit and the kill switch") {
    const Scope scope = parse_scope_json(market_maker_scope());
    const auto events = parse_events(market_maker_events);
    std::vector<std::pair<const ReplayEvent*, Decision>> decided;
    EventReplayOptions options;
    options.halt_at = utc(2024, 1, 8, 7, 0, 10);
    const EventReplaySummary s = replay_events(
        scope, events,
        [&](const ReplayEvent& e, const Decision& d) { decided.emplace_back(&e, d); }, options);

    // One decision per request, in the file's order; reports get none.
    REQUIRE(decided.size() == 11);
    std::map<std::size_t, Decision> by_line;
    for (const auto& [e, d] : decided) {
        CHECK(is_request(e->type));
        by_line[e->line] = d;
    }
    for (std::size_t line : {3, 4, 7, 10, 11, 15, 19, 22}) {
        INFO("line " << line);
        CHECK(by_line.at(line).allowed());
    }
    // 1 BTC long (b-1 filled) + 2.5 > 3: refused; + 2 = 3 is at the limit.
    CHECK_FALSE(by_line.at(14).allowed());
    CHECK(by_line.at(14).reasons.contains(ReasonCode::max_position_exceeded));
    CHECK(by_line.at(18).reasons.contains(ReasonCode::unknown_order_id));
    // After the halt a new order is refused; a cancel is not.
    CHECK_FALSE(by_line.at(21).allowed());
    CHECK(by_line.at(21).reasons.contains(ReasonCode::halted));

    CHECK(s.new_orders.allowed == 3);
    CHECK(s.new_orders.rejected == 2);
    CHECK(s.amends.allowed == 3);
    CHECK(s.amends.rejected == 0);
    CHECK(s.cancels.allowed == 2);
    CHECK(s.cancels.rejected == 1);
    CHECK(s.decisions.orders == 11);
    CHECK(s.decisions.rejected_orders == 3);
    CHECK(s.decisions.rejected.at("max_position_exceeded") == 1);
    CHECK(s.reports.received == 11);
    // The venue's cancelled for b-1 came after its last fill closed it.
    CHECK(s.reports.unknown == 1);
    CHECK(s.reports.applied == 10);

    // The kill switch at 07:00:10 handed over the two orders working then.
    REQUIRE(s.halted_at_ns.has_value());
    CHECK(*s.halted_at_ns == utc(2024, 1, 8, 7, 0, 10));
    CHECK(s.cancel_on_halt == std::vector<std::string>{"b-3", "s-1"});

    // Position: the fills' sum (0.4 + 0.6 bought, 0.5 sold); b-3 still works (1.5 at 39990).
    const auto expected = positions_from_fills(events);
    CHECK(expected.at("BTC_EUR") == "0.5");
    std::map<std::string, std::string> positions;
    for (const auto& p : s.state.positions) positions[p.instrument] = p.position;
    CHECK(positions.at("BTC_EUR") == expected.at("BTC_EUR"));
    CHECK(positions.at("ETH_EUR") == "0");
    CHECK(s.state.working_orders == std::vector<std::string>{"b-3"});
    CHECK(s.state.filled_today == "60000");
    CHECK(s.state.working_notional == "59985");
    // Realised 0.5 x (40010 - 39995), and the 0.5 left marked at the latest fill, 40010.
    CHECK(s.state.daily_pnl == "15");
    CHECK_FALSE(s.state.reduce_only);

    const json state = json::parse(lifecycle_state_json(s.state));
    CHECK(state.at("positions").at("BTC_EUR") == "0.5");
    CHECK(state.at("positions").at("SOL_EUR") == "0");
    CHECK(state.at("working_orders") == json::array({"b-3"}));
    CHECK(state.at("daily").at("filled_today") == "60000");
    CHECK(state.at("daily").at("working_notional") == "59985");
    CHECK(state.at("daily").at("reduce_only") == false);
    CHECK(state.at("daily").at("daily_pnl") == "15");

    const json summary = json::parse(event_summary_json(s));
    CHECK(summary.at("requests").at("new") == json{{"allowed", 3}, {"rejected", 2}});
    CHECK(summary.at("requests").at("cancel") == json{{"allowed", 2}, {"rejected", 1}});
    CHECK(summary.at("reports").at("unknown") == 1);
    CHECK(summary.at("cancel_on_halt") == json::array({"b-3", "s-1"}));
    const json line = json::parse(event_decision_json(*decided[2].first, decided[2].second));
    CHECK(line.at("line") == 7);
    CHECK(line.at("type") == "amend");
    CHECK(line.at("order_id") == "b-1");
    CHECK(line.at("decision") == "allow");
}

TEST_CASE(
    "events replay: --halt-at after the last row halts at the end, before the first row "
    "at the start") {
    const Scope scope = parse_scope_json(market_maker_scope());
    const auto events = parse_events(market_maker_events);
    EventReplayOptions late;
    late.halt_at = utc(2024, 1, 8, 8);
    const EventReplaySummary at_end = replay_events(scope, events, {}, late);
    REQUIRE(at_end.halted_at_ns.has_value());
    CHECK(*at_end.halted_at_ns == utc(2024, 1, 8, 8));
    // Everything ran unhalted: b-5 was allowed too, and b-3 and b-5 were working at the end.
    CHECK(at_end.new_orders.allowed == 4);
    CHECK(at_end.cancel_on_halt == std::vector<std::string>{"b-3", "b-5"});

    EventReplayOptions early;
    early.halt_at = utc(2024, 1, 8, 6);
    const EventReplaySummary at_start = replay_events(scope, events, {}, early);
    CHECK(at_start.cancel_on_halt.empty());
    CHECK(at_start.new_orders.allowed == 0);
    CHECK(at_start.new_orders.rejected == 5);

    const EventReplaySummary unhalted = replay_events(scope, events);
    CHECK_FALSE(unhalted.halted_at_ns.has_value());
    CHECK(unhalted.cancel_on_halt.empty());
    CHECK_FALSE(json::parse(event_summary_json(unhalted)).contains("cancel_on_halt"));
}

TEST_CASE("kakunin replay --events: decisions per request, the halt's cancels, the final state") {
    TempDir dir;
    write_text(dir / "scope.json", market_maker_scope());
    write_text(dir / "events.csv", market_maker_events);
    const Run r =
        cli("replay --scope scope.json --events events.csv --decisions-out d.jsonl "
            "--state-out state.json --halt-at 2024-01-08T07:00:10Z --json",
            dir);
    require_ok(r);
    const json summary = json::parse(r.out);
    CHECK(summary.at("orders") == 11);
    CHECK(summary.at("rejected").at("max_position_exceeded") == 1);
    CHECK(summary.at("rejected").at("unknown_order_id") == 1);
    CHECK(summary.at("requests").at("new") == json{{"allowed", 3}, {"rejected", 2}});
    CHECK(summary.at("requests").at("amend") == json{{"allowed", 3}, {"rejected", 0}});
    CHECK(summary.at("reports").at("received") == 11);
    CHECK(summary.at("reports").at("unknown") == 1);
    CHECK(summary.at("halted_at_ns") == utc(2024, 1, 8, 7, 0, 10));
    CHECK(summary.at("cancel_on_halt") == json::array({"b-3", "s-1"}));

    // One line per request, naming its line, type and id.
    std::istringstream lines(read_text(dir / "d.jsonl"));
    std::vector<json> decisions;
    for (std::string l; std::getline(lines, l);) decisions.push_back(json::parse(l));
    REQUIRE(decisions.size() == 11);
    const std::vector<std::pair<int, std::string>> requests = {
        {3, "new"},  {4, "new"},     {7, "amend"},  {10, "amend"}, {11, "cancel"}, {14, "new"},
        {15, "new"}, {18, "cancel"}, {19, "amend"}, {21, "new"},   {22, "cancel"}};
    for (std::size_t i = 0; i < decisions.size(); ++i) {
        INFO("decision " << i);
        CHECK(decisions[i].at("line") == requests[i].first);
        CHECK(decisions[i].at("type") == requests[i].second);
        CHECK(decisions[i].contains("reasons"));
    }
    CHECK(decisions[5].at("order_id") == "b-2");
    CHECK(decisions[5].at("decision") == "reject");
    CHECK(decisions[5].at("reasons") == json::array({"max_position_exceeded"}));

    // The final position is the fills' sum.
    const json state = json::parse(read_text(dir / "state.json"));
    const auto expected = positions_from_fills(parse_events(market_maker_events));
    CHECK(state.at("positions").at("BTC_EUR") == expected.at("BTC_EUR"));
    CHECK(state.at("working_orders") == json::array({"b-3"}));
    CHECK(state.at("daily").at("filled_today") == "60000");

    // The table says the same.
    const Run table =
        cli("replay --scope scope.json --events events.csv --halt-at "
            "2024-01-08T07:00:10Z",
            dir);
    require_ok(table);
    CHECK_THAT(table.out, Catch::Contains("requests  11"));
    CHECK_THAT(table.out, Catch::Contains("max_position_exceeded"));
    CHECK_THAT(table.out, Catch::Contains("cancel_on_halt: 2 order(s) b-3 s-1"));
    CHECK_THAT(table.out, Catch::Contains("unknown order: 1"));
}

TEST_CASE(
    "kakunin replay --events: a bad row names file, line and column, and nothing is "
    "written") {
    TempDir dir;
    write_text(dir / "scope.json", market_maker_scope());
    const std::string args =
        "replay --scope scope.json --events events.csv --decisions-out "
        "d.jsonl --state-out state.json";
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"2024-01-08T07:00:01Z,modify,b-1,BTC_EUR,exchange_a,BUY,1,39990.00,eu-west-1\n",
         "events.csv:3: type: 'modify' is not one of new, amend"},
        {"2024-01-08T07:00:01Z,cancel,,,,,,,\n",
         "events.csv:3: order_id: empty: a cancel row needs the order's id"},
        {"2024-01-08T07:00:01Z,new,b-1,BTC_EUR,exchange_a,BUY,1,39.990.00,eu-west-1\n",
         "events.csv:3: price: '39.990.00' is not a decimal number"},
        {"2024-01-08T07:00:01Z,new,b-1,BTC_EUR,exchange_a,buy,1,39990.00,eu-west-1\n",
         "events.csv:3: side: 'buy' is neither BUY nor SELL"},
        {"2024-01-08T06:00:00Z,new,b-1,BTC_EUR,exchange_a,BUY,1,39990.00,eu-west-1\n",
         "events.csv:3: ts: rows must be in time order"},
        {"2024-01-08T07:00:01Z,fill,z-1,BTC_EUR,,,1,39990.00,\n",
         "events.csv:3: side: empty: a fill of order 'z-1'"},
    };
    for (const auto& [row, message] : bad) {
        INFO(row);
        write_text(dir / "events.csv",
                   "ts,type,order_id,instrument,counterparty,side,quantity,price,region\n"
                   "2024-01-08T07:00:00Z,mark,,BTC_EUR,,,,40000.00,\n" +
                       row);
        require_error(cli(args, dir), message);
        CHECK_FALSE(fs::exists(dir / "d.jsonl"));
        CHECK_FALSE(fs::exists(dir / "state.json"));
    }

    write_text(dir / "events.csv", market_maker_events);
    write_text(dir / "orders.csv", "ts,instrument,counterparty,side,quantity,price,region\n");
    require_error(cli("replay --scope scope.json --events events.csv --orders orders.csv", dir),
                  "give either --orders orders.csv or --events events.csv (exactly one)");
    require_error(cli("replay --scope scope.json", dir),
                  "give either --orders orders.csv or --events events.csv (exactly one)");
    require_error(cli("replay --scope scope.json --orders orders.csv --halt-at "
                      "2024-01-08T07:00:10Z",
                      dir),
                  "--halt-at needs --events FILE");
    require_error(cli("replay --scope scope.json --orders orders.csv --state-out s.json", dir),
                  "--state-out needs --events FILE");
    require_error(cli("replay --scope scope.json --events events.csv --halt-at 10:00", dir),
                  "--halt-at: '10:00' is not a timestamp");
    // Outputs go through the one output check: never through a link.
    fs::create_symlink(dir / "elsewhere.json", dir / "link.json");
    require_error(cli("replay --scope scope.json --events events.csv --state-out link.json", dir),
                  "link.json");
    CHECK_FALSE(fs::exists(dir / "elsewhere.json"));
}

TEST_CASE(
    "kakunin replay --dir --agent --events: the same lifecycle on a simulation certificate, "
    "its audit log verified") {
    TempDir dir;
    const std::string env = "KAKUNIN_KMS_PASSPHRASE=" + shell_quote("replay events passphrase");
    write_text(dir / "scope.json", market_maker_scope());
    write_text(dir / "events.csv", market_maker_events);
    require_ok(cli("ca init --dir state", dir, env));
    require_ok(
        cli("agent register --dir state --agent agent-7 --owner 'Desk 3' --purpose 'BTC "
            "market making' --by 'Jane Roe'",
            dir, env));
    require_ok(
        cli("scope approve --dir state --agent agent-7 --scope scope.json --approver 'Jane "
            "Doe'",
            dir, env));
    const Run sim =
        cli("replay --dir state --agent agent-7 --events events.csv --halt-at "
            "2024-01-08T07:00:10Z --state-out sim-state.json --json",
            dir, env);
    require_ok(sim);
    json summary = json::parse(sim.out);
    CHECK(summary.at("certificate").at("simulation") == true);
    CHECK(summary.at("cancel_on_halt") == json::array({"b-3", "s-1"}));
    const std::string log = summary.at("audit_log").get<std::string>();

    // The limits alone decide the same for the same scope.
    const Run limits =
        cli("replay --scope scope.json --events events.csv --halt-at "
            "2024-01-08T07:00:10Z --state-out state.json --json",
            dir);
    require_ok(limits);
    for (const char* member : {"certificate", "audit_log", "incidents"}) summary.erase(member);
    CHECK(json::parse(limits.out) == summary);
    CHECK(json::parse(read_text(dir / "sim-state.json")) ==
          json::parse(read_text(dir / "state.json")));

    const Run verified =
        cli("audit verify --log " + shell_quote(log) + " --certs " + shell_quote(log + ".certs"),
            dir, env);
    require_ok(verified);
}

TEST_CASE(
    "events replay on a Guard of one's own: a lapsed dead man's switch cancels what "
    "works, without --halt-at") {
    const Scope scope = parse_scope_json(market_maker_scope());
    const auto events = parse_events(
        "ts,type,order_id,instrument,counterparty,side,quantity,price,region\n"
        "2024-01-08T07:00:00Z,mark,,BTC_EUR,,,,40000.00,\n"
        "2024-01-08T07:00:00.1Z,new,b-1,BTC_EUR,exchange_a,BUY,1,39990.00,eu-west-1\n"
        "2024-01-08T07:00:00.2Z,ack,b-1,,,,,,\n"
        "2024-01-08T07:00:05Z,fill,b-1,,,,0.25,39990.00,\n"
        "2024-01-08T07:00:06Z,new,b-2,BTC_EUR,exchange_a,BUY,1,39990.00,eu-west-1\n");
    ManualClock clock(events.front().ts_ns);
    std::vector<std::string> told;
    GuardOptions options;
    options.observe = false;
    options.incident_thread = false;
    options.heartbeat_timeout = std::chrono::seconds(2);
    options.on_cancel_all = [&](const CancelAll& c) {
        told.insert(told.end(), c.order_ids.begin(), c.order_ids.end());
    };
    EventReplay replay;
    replay.attach(options);
    Guard guard(scope, clock, options);
    replay.after_row = [&] { guard.process_incidents(); };
    replay.run(guard, clock, events.cbegin(), events.cend());
    replay.finish(guard, clock);
    const EventReplaySummary& s = replay.summary();
    // The strategy's own callback still hears of it.
    CHECK(told == std::vector<std::string>{"b-1"});
    CHECK(s.cancel_on_halt == std::vector<std::string>{"b-1"});
    CHECK_FALSE(s.halted_at_ns.has_value());
    CHECK(s.new_orders.allowed == 1);
    CHECK(s.new_orders.rejected == 1);
    CHECK(s.decisions.rejected.at("halted") == 1);
    const json summary = json::parse(event_summary_json(s));
    CHECK(summary.at("cancel_on_halt") == json::array({"b-1"}));
    CHECK_FALSE(summary.contains("halted_at_ns"));
    CHECK(s.state.working_orders == std::vector<std::string>{"b-1"});
    CHECK(s.state.positions.front().position == "0.25");
}
