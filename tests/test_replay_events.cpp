// The events CSV (an order lifecycle), its replay through a Guard, and `kakunin replay --events`
// end to end.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "kakunin/replay.hpp"
#include "support.hpp"

using namespace kakunin;

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
