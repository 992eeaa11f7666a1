// Anomaly scoring evaluated on a real bot (issue 5): the converter of Hummingbot trade exports
// (bench/hummingbot_orders.hpp), the time-of-day rule the evaluation led to, and the evaluation
// itself (bench/evaluate.hpp) through the real kakunin program, with the goals asserted. The
// data live outside the repository (../shared/data/hummingbot-edg-mm); without them the
// evaluation says so (WARN) and checks nothing.
#include <catch2/catch.hpp>

#include <filesystem>
#include <iostream>

#include "../bench/evaluate.hpp"
#include "../bench/hummingbot_orders.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/scope.hpp"

using namespace kakunin;
using namespace kakunin::evaluation;

TEST_CASE("prices in E notation become exact decimal strings", "[evaluation]") {
    CHECK(scientific_to_decimal("3E-8") == "0.00000003");
    CHECK(scientific_to_decimal("2.99E-8") == "0.0000000299");
    CHECK(scientific_to_decimal("3.02e-8") == "0.0000000302");
    CHECK(scientific_to_decimal("1.5E+3") == "1500");
    CHECK(scientific_to_decimal("1E0") == "1");
    CHECK(scientific_to_decimal("0.000733") == "0.000733");
    CHECK(scientific_to_decimal("15692.0952") == "15692.0952");
    CHECK(scientific_to_decimal("285714") == "285714");
    CHECK(scientific_to_decimal("0.0700") == "0.07");
    CHECK(scientific_to_decimal("007.5") == "7.5");
    CHECK(scientific_to_decimal("0") == "0");
    for (const char* bad : {"", "E-8", "-1", "1.2.3", "3E", "3E-", "1,5", "abc", "1E99999"})
        CHECK_THROWS_AS(scientific_to_decimal(bad), Error);
}

TEST_CASE("Hummingbot fills become one EUR order per exchange order, in time order",
          "[evaluation]") {
    const std::string header =
        "exchange_trade_id,config_file_path,strategy,market,symbol,base_asset,quote_asset,"
        "timestamp,order_id,trade_type,order_type,price,amount,leverage,trade_fee,position,age\n";
    const std::string fee = "\"{'fee_type': 'AddedToCost', 'percent': '0.0018'}\"";
    const std::string text =
        header +
        // one BTC-quoted order filled at two price levels, one USDT-quoted order, out of order
        "1,c.yml,pure_market_making,kucoin,EDG-BTC,EDG,BTC,1668459733000,SE1,SELL,LIMIT_MAKER,"
        "3.08E-8,83707.1478,1," +
        fee + ",NIL,00:00:00\n" +
        "2,c.yml,pure_market_making,kucoin,EDG-BTC,EDG,BTC,1668459734000,SE1,SELL,LIMIT_MAKER,"
        "3.07E-8,50232.134,1," +
        fee + ",NIL,00:00:01\n" +
        "3,c.yml,pure_market_making,kucoin,EDG-USDT,EDG,USDT,1668459000000,BU2,BUY,LIMIT_MAKER,"
        "0.000562,2824.8587,1," +
        fee + ",NIL,n/a\n";
    const auto fills = parse_hummingbot_trades(text, "t.csv");
    REQUIRE(fills.size() == 3);
    CHECK(fills[0].line == 2);
    CHECK(to_string(fills[0].price) == "0.0000000308");

    const auto orders = orders_from_fills(fills);
    REQUIRE(orders.size() == 2);
    CHECK(orders[0].instrument == "EDG_EUR");  // the earlier order comes first
    CHECK(orders[0].ts_ns == 1668459000000LL * 1'000'000);
    CHECK(to_string(orders[0].price) == "0.0005486806");  // 0.000562 x 0.9763, exactly
    CHECK(orders[1].instrument == "EDGBTC_EUR");
    CHECK(orders[1].side == Side::sell);
    CHECK(to_string(orders[1].quantity) == "133939.2818");  // both fills
    CHECK(to_string(orders[1].price) == "0.0004735475");    // the lower SELL price x 15425
    CHECK(orders[1].counterparty == "kucoin");
    CHECK(orders[1].region == "eu-west-1");

    // The CSV reads back through the replay's own parser.
    std::istringstream csv(orders_csv(orders));
    const auto rows = read_orders_csv(csv, "orders.csv");
    REQUIRE(rows.size() == 2);
    CHECK(rows[1].client_order_id == "SE1");
    CHECK(compare(rows[1].quantity, orders[1].quantity) == 0);

    // Bad rows are refused with the file and line.
    auto broken = [&](const std::string& from, const std::string& to) {
        std::string s = text;
        return s.replace(s.find(from), from.size(), to);
    };
    CHECK_THROWS_WITH(parse_hummingbot_trades(broken("3.07E-8", "3.07F-8"), "t.csv"),
                      Catch::Contains("t.csv:3") && Catch::Contains("3.07F-8"));
    CHECK_THROWS_WITH(
        parse_hummingbot_trades(broken(",SELL,LIMIT_MAKER,3.08E-8", ",HOLD,X,1"), "t.csv"),
        Catch::Contains("t.csv:2") && Catch::Contains("HOLD"));
    CHECK_THROWS_WITH(parse_hummingbot_trades(broken(",timestamp,", ",time,"), "t.csv"),
                      Catch::Contains("'timestamp' missing"));
    CHECK_THROWS_WITH(parse_hummingbot_trades(broken(fee + ",NIL,00:00:00", "\"open"), "t.csv"),
                      Catch::Contains("t.csv:2"));
    std::vector<PairMapping> only_usdt = {default_mappings()[0]};
    CHECK_THROWS_WITH(orders_from_fills(fills, only_usdt), Catch::Contains("EDG-BTC"));
}

namespace {

const char* const around_the_clock = R"({"version":1,
 "max_transaction":{"currency":"EUR","amount":"1000000.00"},
 "instruments":["BTC_EUR"],"counterparties":["x"],
 "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri","Sat","Sun"],"from":"00:00","to":"24:00"}],
 "regions":["eu-west-1"]})";

constexpr TimeNs t0 = utc(2024, 1, 8);  // a Monday

Order btc() {
    Order o;
    o.client_order_id = "o";
    o.instrument = "BTC_EUR";
    o.counterparty = "x";
    o.region = "eu-west-1";
    o.quantity = parse_decimal("0.5");
    o.price = parse_decimal("40000");
    return o;
}

/// An order every 5 minutes for `days`, where `active` says so.
template <class Active>
Baseline learn(unsigned days, Active active) {
    BaselineBuilder b(parse_scope_json(around_the_clock), "agent-1");
    b.start(t0);
    for (TimeNs t = t0; t < t0 + TimeNs(days) * day_ns; t += 5 * minute_ns)
        if (active(t)) b.observe(btc(), t);
    return b.finalize(t0 + TimeNs(days) * day_ns);
}

std::uint32_t time_of_day_at(const Baseline& b, TimeNs t) {
    kakunin::detail::AnomalyScorer scorer(b);
    Decision d;
    scorer.score(btc(), t, d);
    return d.components_ppm[static_cast<std::size_t>(ScoreComponent::time_of_day)];
}

bool weekday(TimeNs t) { return minute_of_week(t) < 5 * 1440; }

}  // namespace

TEST_CASE("time of day: a weekly habit seen twice warns, one quiet hour in one week does not",
          "[evaluation][score]") {
    const TimeNs saturday_10 = t0 + 19 * day_ns + 10 * hour_ns;  // the third week
    SECTION("weekdays only, 14 days: a Saturday order is in an hour never active, seen twice") {
        const Baseline b = learn(14, weekday);
        CHECK(time_of_day_at(b, saturday_10) == 800'000);
        CHECK(time_of_day_at(b, saturday_10 - 5 * day_ns) == 0);  // Monday 10:00
    }
    SECTION("weekdays only, 7 days: one Saturday seen is weak evidence") {
        const Baseline b = learn(7, weekday);
        CHECK(time_of_day_at(b, saturday_10) == 400'000);
    }
    SECTION("an hour of the day never active on any day is strong evidence after 7 days") {
        const Baseline b = learn(7, [](TimeNs t) { return floor_mod(t, day_ns) / hour_ns != 3; });
        CHECK(time_of_day_at(b, t0 + 8 * day_ns + 3 * hour_ns + 1) == 800'000);
    }
    SECTION("a 24/7 agent quiet for one clock hour: nothing when the other week covers it") {
        const TimeNs quiet = t0 + 2 * day_ns + 3 * hour_ns;  // Wednesday 03:00, first week
        auto active = [&](TimeNs t) { return t < quiet || t >= quiet + hour_ns; };
        CHECK(time_of_day_at(learn(14, active), quiet + 14 * day_ns) == 0);
        CHECK(time_of_day_at(learn(10, active), quiet + 14 * day_ns) == 0);
        // Observed once only (8 days: Wednesday 03:00 came once): below the warning level.
        CHECK(time_of_day_at(learn(8, active), quiet + 14 * day_ns) == 400'000);
    }
}

TEST_CASE(
    "evaluation on a real bot: no false revocation, at most one warning a day, every "
    "injected anomaly caught",
    "[evaluation][slow]") {
    const std::string data = KAKUNIN_SOURCE_DIR "/../shared/data/hummingbot-edg-mm";
    if (!std::filesystem::exists(data)) {
        WARN("Hummingbot data not found at "
             << data
             << ": the evaluation on a real bot was NOT run (provide "
                "../shared/data/hummingbot-edg-mm to run it)");
        return;
    }
    const std::string cli = KAKUNIN_CLI_PATH;
    INFO("the evaluation replays through the kakunin program: build with -DKAKUNIN_BUILD_CLI=ON");
    REQUIRE(!cli.empty());

    EvaluationOptions o;
    o.data_dir = data;
    o.cli = cli;
    const EvaluationResult r = evaluate(o);
    const std::string report = markdown(r);
    std::cout << report;
    INFO(report);

    // The data are what the README says they are.
    CHECK(r.fills > 30'000);
    CHECK(r.orders_kept > 10'000);
    CHECK(r.baseline.instruments.count("EDG_EUR") == 1);
    CHECK(r.baseline.instruments.count("EDGBTC_EUR") == 1);
    CHECK(r.baseline.observed_to_ns - r.baseline.observed_from_ns == 14 * day_ns);
    CHECK(r.normal.days > 20);
    CHECK(r.normal.run.enforced_orders > 5'000);

    // False alarms on the bot as it was.
    CHECK(r.normal.run.revocations == 0);
    CHECK(r.normal.warnings_per_day <= 1.0);
    CHECK(r.normal.goal_met);

    // Each injected anomaly, in its own run.
    REQUIRE(r.anomalies.size() == 5);
    for (const AnomalyResult& a : r.anomalies) {
        INFO(a.name << ": " << a.injected << " " << a.note);
        CHECK(a.evaluated);
        if (!a.applicable) {
            // Only the hour, and only because no hour of the week was quiet in observation.
            CHECK(a.id == "hour");
            CHECK(r.baseline.active_hours_of_week == 168);
            continue;
        }
        CHECK(a.caught);
        CHECK(a.verdict != "allow");
    }
    const AnomalyResult& burst = r.anomalies.back();
    REQUIRE(burst.id == "burst");
    REQUIRE(burst.delay_ms.has_value());
    CHECK(*burst.delay_ms <= 10 * 60'000);
    CHECK(r.goals_met);

    // The figures document is complete enough for the README.
    const auto j = figures_json(r);
    CHECK(j.at("normal").at("warning_incidents_per_day").get<double>() <= 1.0);
    CHECK(j.at("anomalies").size() == 5);
}
