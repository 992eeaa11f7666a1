// The orders CSV, timestamps, replay, and the `kakunin replay` command end to end.
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

std::vector<ReplayOrder> parse(const std::string& text) {
    std::istringstream in(text);
    return read_orders_csv(in, "orders.csv");
}

std::string error_of(const std::string& text) {
    try {
        parse(text);
    } catch (const Error& e) {
        return e.what();
    }
    FAIL("accepted: " << text);
    return {};
}

const std::string header = "ts,instrument,counterparty,side,quantity,price,region\n";

struct Run {
    int status;
    std::string out;
};

/// Runs the kakunin program with stderr folded into the output.
Run run_cli(const std::string& args) {
    const std::string cmd = std::string(KAKUNIN_CLI_PATH) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string temp_path(const std::string& name) {
    return std::string("/tmp/kakunin-test-") + std::to_string(getpid()) + "-" + name;
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("timestamps: RFC 3339 UTC and epoch milliseconds") {
    CHECK(parse_timestamp("2024-01-08T07:00:00Z") == utc(2024, 1, 8, 7));
    CHECK(parse_timestamp("2024-01-08T07:00:00.5Z") == utc(2024, 1, 8, 7) + 500'000'000);
    CHECK(parse_timestamp("2024-01-08T07:00:00.000000001+00:00") == utc(2024, 1, 8, 7) + 1);
    CHECK(parse_timestamp("1704697200000") == utc(2024, 1, 8, 7));
    CHECK(parse_timestamp("2024-02-29T00:00:00Z") == utc(2024, 2, 29));
    for (const char* bad : {"2024-01-08T07:00:00", "2024-01-08T07:00:00+01:00",
                            "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-08T24:00:00Z",
                            "2024-01-08 07:00:00Z", "2024-01-08T07:00:00.Z",
                            "2024-01-08T07:00:00.1234567890Z", "", "-5", "1234567890123456"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_timestamp(bad), Error);
    }
    CHECK(format_timestamp(utc(2024, 1, 8, 7)) == "2024-01-08T07:00:00Z");
    CHECK(format_timestamp(utc(2024, 1, 8, 7) + 1) == "2024-01-08T07:00:00.000000001Z");
    CHECK(parse_timestamp(format_timestamp(utc(1999, 12, 31, 23, 59, 59, 999))) ==
          utc(1999, 12, 31, 23, 59, 59, 999));
}

TEST_CASE("orders CSV: columns by name, quoting, optional columns") {
    const auto orders = parse(
        "reasoning,ts,instrument,counterparty,side,quantity,price,region,reference_price\r\n"
        "\"buy the dip, "
        "\"\"carefully\"\"\",2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,0.5,40000.00,eu-west-1,"
        "39990.00\r\n"
        "\r\n"
        ",1704697201000,ETH_EUR,exchange_b,SELL,2,2000,eu-central-1,\n");
    REQUIRE(orders.size() == 2);
    CHECK(orders[0].line == 2);
    CHECK(orders[0].reasoning == "buy the dip, \"carefully\"");
    CHECK(orders[0].side == Side::buy);
    CHECK(to_string(orders[0].quantity) == "0.5");
    CHECK(to_string(*orders[0].reference_price) == "39990.00");
    CHECK(orders[1].line == 4);
    CHECK(orders[1].side == Side::sell);
    CHECK_FALSE(orders[1].reference_price.has_value());
    CHECK(orders[1].ts_ns == utc(2024, 1, 8, 7, 0, 1));
}

TEST_CASE("malformed CSV rows are reported with their line number") {
    const std::string row = "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n";
    CHECK_THAT(error_of(""), Catch::Contains("orders.csv:1: empty file"));
    CHECK_THAT(error_of("ts,instrument\n"),
               Catch::Contains("orders.csv:1: missing column 'counterparty'"));
    CHECK_THAT(error_of(header.substr(0, header.size() - 1) + ",colour\n"),
               Catch::Contains("orders.csv:1: unknown column 'colour'"));
    CHECK_THAT(error_of(header + row + "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00\n"),
               Catch::Contains("orders.csv:3: expected 7 fields, found 6"));
    CHECK_THAT(error_of(header + row +
                        "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,HOLD,1,40000.00,eu-west-1\n"),
               Catch::Contains("orders.csv:3: side: 'HOLD' is neither BUY nor SELL"));
    CHECK_THAT(
        error_of(header + "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1e3,40000.00,eu-west-1\n"),
        Catch::Contains("orders.csv:2: quantity: '1e3' is not a decimal number"));
    CHECK_THAT(
        error_of(header +
                 "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,99999999999999999999,eu-west-1\n"),
        Catch::Contains("orders.csv:2: price:"));
    CHECK_THAT(error_of(header + "yesterday,BTC_EUR,exchange_a,BUY,1,1,eu-west-1\n"),
               Catch::Contains("orders.csv:2: ts: 'yesterday' is not a timestamp"));
    CHECK_THAT(
        error_of(header + row + "2024-01-08T06:00:00Z,BTC_EUR,exchange_a,BUY,1,1,eu-west-1\n"),
        Catch::Contains("orders.csv:3: ts: rows must be in time order"));
    CHECK_THAT(error_of(header + "2024-01-08T07:00:00Z,\"BTC_EUR,exchange_a,BUY,1,1,eu-west-1\n"),
               Catch::Contains("orders.csv:2: malformed quoting"));
    CHECK_THAT(error_of(header + "2024-01-08T07:00:00Z,,exchange_a,BUY,1,1,eu-west-1\n"),
               Catch::Contains("orders.csv:2: instrument: empty"));
}

TEST_CASE("replay runs the scope on the rows' own times and counts reasons") {
    const Scope scope = parse_scope_json(test::seed_scope_json);
    const auto orders = parse(header +
                              "2024-01-08T06:59:59Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"
                              "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"
                              "2024-01-08T07:00:01Z,BTC_EUR,exchange_a,BUY,5,40100.00,eu-west-1\n"
                              "2024-01-08T07:00:02Z,BTC_USD,exchange_a,BUY,1,40100.00,eu-west-1\n");
    std::vector<Decision> decisions;
    const ReplaySummary s = replay_scope(
        scope, orders, [&](const ReplayOrder&, const Decision& d) { decisions.push_back(d); });
    REQUIRE(decisions.size() == 4);
    CHECK(decisions[0].reasons.contains(ReasonCode::outside_trading_hours));
    // Row 2's reference price is row 1's price for the same instrument.
    CHECK(decisions[1].allowed());
    CHECK(decisions[2].allowed());
    CHECK(decisions[3].reasons.contains(ReasonCode::currency_mismatch));
    CHECK(s.orders == 4);
    CHECK(s.allowed == 2);
    CHECK(s.rejected_orders == 2);
    CHECK(s.rejected.at("outside_trading_hours") == 1);
    CHECK(s.rejected.at("instrument_not_allowed") == 1);
    CHECK(decision_json(3, decisions[0]).find("\"decision\":\"reject\"") != std::string::npos);
    CHECK(summary_json(s).find("\"orders\":4") != std::string::npos);
}

TEST_CASE("kakunin replay: decisions out, JSON summary, and clear failures") {
    const std::string scope_path = temp_path("scope.json"), orders_path = temp_path("orders.csv"),
                      decisions_path = temp_path("decisions.jsonl");
    write_file(scope_path, test::seed_scope_json);
    write_file(orders_path,
               header +
                   "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"
                   "2024-01-08T07:00:01Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"
                   "2024-01-08T07:00:02Z,BTC_EUR,exchange_c,BUY,1,40000.00,eu-west-1\n");
    Run r = run_cli("replay --scope " + scope_path + " --orders " + orders_path +
                    " --decisions-out " + decisions_path + " --json");
    CHECK(r.status == 0);
    CHECK_THAT(r.out, Catch::Contains("\"orders\":3"));
    CHECK_THAT(r.out, Catch::Contains("\"allowed\":1"));
    CHECK_THAT(r.out, Catch::Contains("\"counterparty_not_allowed\":1"));
    CHECK_THAT(r.out, Catch::Contains("\"reference_price_missing\":1"));
    std::ifstream in(decisions_path);
    std::string line;
    int lines = 0;
    while (std::getline(in, line)) {
        ++lines;
        CHECK_THAT(line, Catch::Contains("\"line\":" + std::to_string(lines + 1)));
    }
    CHECK(lines == 3);

    r = run_cli("replay --scope " + scope_path + " --orders " + orders_path);
    CHECK(r.status == 0);
    CHECK_THAT(r.out, Catch::Contains("counterparty_not_allowed"));

    write_file(orders_path,
               header + "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,one,40000.00,eu-west-1\n");
    r = run_cli("replay --scope " + scope_path + " --orders " + orders_path);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains(orders_path + ":2: quantity: 'one' is not a decimal number"));

    write_file(scope_path,
               test::seed_with("\"price_collar_bps\": 500", "\"price_collar_bps\": \"500\""));
    r = run_cli("replay --scope " + scope_path + " --orders " + orders_path);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("limits.price_collar_bps: must be a whole number"));

    r = run_cli("replay --scope /nonexistent.json --orders " + orders_path);
    CHECK(r.status != 0);
    r = run_cli("replay --orders " + orders_path);
    CHECK(r.status != 0);
    for (const auto& p : {scope_path, orders_path, decisions_path}) std::remove(p.c_str());
}
