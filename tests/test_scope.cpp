// Scope JSON (DESIGN §3): the seed scope, canonical printing, and every kind of bad input named.
#include <catch2/catch.hpp>

#include "kakunin/scope.hpp"
#include "support.hpp"

using namespace kakunin;

TEST_CASE("the seed scope parses with every member") {
    const Scope s = parse_scope_json(test::seed_scope_json);
    CHECK(s.version == 1);
    CHECK(s.max_transaction.currency.code() == "EUR");
    CHECK(to_string(s.max_transaction.amount) == "500000.00");
    CHECK(s.instruments == std::vector<std::string>{"BTC_EUR", "ETH_EUR", "SOL_EUR"});
    CHECK(s.counterparties == std::vector<std::string>{"exchange_a", "exchange_b"});
    CHECK(s.regions == std::vector<std::string>{"eu-west-1", "eu-central-1"});
    REQUIRE(s.trading_hours.size() == 1);
    CHECK(s.trading_hours[0].days == 0x1f);
    CHECK(s.trading_hours[0].from_minute == 420);
    CHECK(s.trading_hours[0].to_minute == 1200);
    REQUIRE(s.limits.max_order_quantity.size() == 2);
    CHECK(s.limits.max_order_quantity[0].first == "BTC_EUR");
    CHECK(to_string(s.limits.max_order_quantity[1].second) == "150");
    CHECK(*s.limits.price_collar_bps == 500);
    CHECK(*s.limits.max_orders_per_second == 50);
    CHECK(to_string(s.limits.max_daily_notional->amount) == "5000000.00");
}

TEST_CASE("canonical JSON is sorted, compact and round-trips") {
    const Scope s = parse_scope_json(test::seed_scope_json);
    const std::string canonical = to_json(s);
    CHECK(canonical.find(' ') == std::string::npos);
    CHECK(canonical.rfind("{\"counterparties\":", 0) == 0);
    CHECK(to_json(parse_scope_json(canonical)) == canonical);
    CHECK(to_json(parse_scope_json(to_pretty_json(s))) == canonical);
}

TEST_CASE("limits are optional, and 24:00 ends the day") {
    const Scope s =
        parse_scope_json(R"({"version":1,"max_transaction":{"currency":"USD","amount":"10"},
      "instruments":["BTC_USD"],"counterparties":["x"],"regions":["r"],
      "trading_hours":[{"days":["Sat","Sun"],"from":"00:00","to":"24:00"}]})");
    CHECK(s.limits.empty());
    CHECK(s.trading_hours[0].to_minute == 1440);
    CHECK(to_json(s).find("limits") == std::string::npos);
}

namespace {
std::string error_of(const std::string& text) {
    try {
        parse_scope_json(text);
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_input);
        return e.what();
    }
    FAIL("accepted: " << text);
    return {};
}
}  // namespace

TEST_CASE("bad scopes are refused with the member named") {
    using test::seed_with;
    struct Case {
        std::string text;
        std::string expected;
    } cases[] = {
        {seed_with("\"version\": 1", "\"version\": 2"), "version: unsupported version 2"},
        {seed_with("\"version\": 1", "\"version\": 1, \"colour\": \"red\""),
         "colour: unknown member"},
        {seed_with("\"version\": 1", "\"version\": 1, \"version\": 1"),
         "version: duplicate member"},
        {seed_with("\"BTC_EUR\": \"10\"", "\"BTC_EUR\": \"10\", \"BTC_EUR\": \"11\""),
         "limits.max_order_quantity.BTC_EUR: duplicate member"},
        {seed_with("\"500000.00\"", "500000.00"),
         "max_transaction.amount: must be a decimal string"},
        {seed_with("\"500000.00\"", "\"-500000.00\""),
         "max_transaction.amount: must be greater than zero"},
        {seed_with("\"500000.00\"", "\"0\""), "max_transaction.amount: must be greater than zero"},
        {seed_with("\"500000.00\"", "\"99999999999999999999\""),
         "max_transaction.amount: '99999999999999999999' is not a decimal"},
        {seed_with("\"500000.00\"", "\"5e5\""), "max_transaction.amount: '5e5' is not a decimal"},
        {seed_with("\"currency\": \"EUR\", \"amount\": \"500000.00\"",
                   "\"currency\": \"EUX\", \"amount\": \"500000.00\""),
         "max_transaction.currency: 'EUX' is not an ISO 4217 code"},
        {seed_with("[\"BTC_EUR\", \"ETH_EUR\", \"SOL_EUR\"]", "[]"),
         "instruments: must list at least one entry"},
        {seed_with("[\"exchange_a\", \"exchange_b\"]", "[]"),
         "counterparties: must list at least one entry"},
        {seed_with("[\"eu-west-1\", \"eu-central-1\"]", "[]"),
         "regions: must list at least one entry"},
        {seed_with("\"SOL_EUR\"]", "\"SOL_EUR\", \"BTC_EUR\"]"),
         "instruments[3]: duplicate 'BTC_EUR'"},
        {seed_with("\"SOL_EUR\"]", "\"SOLEUR\"]"), "instruments[2]: 'SOLEUR' is not BASE_QUOTE"},
        {seed_with("\"SOL_EUR\"]", "\"SOL_USD\"]"), "instruments[2]: 'SOL_USD' is quoted in USD"},
        {seed_with("\"SOL_EUR\"]", "7]"), "instruments[2]: must be a string"},
        {seed_with("\"eu-central-1\"]", "\"eu central\"]"),
         "regions[1]: 'eu central' is not an identifier"},
        {seed_with("[{\"days\": [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\"], \"from\": "
                   "\"07:00\", \"to\": \"20:00\"}]",
                   "[]"),
         "trading_hours: must list at least one window"},
        {seed_with("\"Fri\"]", "\"Fri\", \"Fry\"]"),
         "trading_hours[0].days[5]: 'Fry' is not one of"},
        {seed_with("\"Fri\"]", "\"Fri\", \"Mon\"]"), "trading_hours[0].days[5]: duplicate day"},
        {seed_with("\"07:00\"", "\"7:00\""), "trading_hours[0].from: '7:00' is not HH:MM"},
        {seed_with("\"07:00\"", "\"24:00\""),
         "trading_hours[0].from: '24:00' is not a time of day"},
        {seed_with("\"20:00\"", "\"24:01\""), "trading_hours[0].to: '24:01' is not a time of day"},
        {seed_with("\"20:00\"", "\"06:00\""), "trading_hours[0].to: must be after 'from'"},
        {seed_with("\"20:00\"", "\"07:00\""), "trading_hours[0].to: must be after 'from'"},
        {seed_with("\"BTC_EUR\": \"10\"", "\"ADA_EUR\": \"10\""),
         "limits.max_order_quantity.ADA_EUR: instrument is not in 'instruments'"},
        {seed_with("\"BTC_EUR\": \"10\"", "\"BTC_EUR\": \"-10\""),
         "limits.max_order_quantity.BTC_EUR: must be greater than zero"},
        {seed_with("\"price_collar_bps\": 500", "\"price_collar_bps\": 0"),
         "limits.price_collar_bps: must be from 1"},
        {seed_with("\"price_collar_bps\": 500", "\"price_collar_bps\": -5"),
         "limits.price_collar_bps: must not be negative"},
        {seed_with("\"price_collar_bps\": 500", "\"price_collar_bps\": 5.5"),
         "limits.price_collar_bps: must be a whole number"},
        {seed_with("\"max_orders_per_second\": 50", "\"max_orders_per_second\": 0"),
         "limits.max_orders_per_second: must be from 1"},
        {seed_with("\"max_orders_per_second\": 50", "\"max_orders_per_second\": 99999999999"),
         "limits.max_orders_per_second: too large"},
        {seed_with("{\"currency\": \"EUR\", \"amount\": \"5000000.00\"}",
                   "{\"currency\": \"USD\", \"amount\": \"5000000.00\"}"),
         "limits.max_daily_notional.currency: must equal the max_transaction currency EUR"},
        {seed_with("\"price_collar_bps\": 500", "\"price_collar\": 500"),
         "limits.price_collar: unknown member"},
        {seed_with("\"regions\"", "\"region\""), "region: unknown member"},
        {"[1, 2]", "scope: must be an object"},
        {"{\"version\": 1}", "max_transaction: missing"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        CHECK_THAT(error_of(c.text), Catch::Contains(c.expected));
    }
}

TEST_CASE("JSON syntax errors name the line and column") {
    const std::string text = "{\n  \"version\": 1,\n  \"max_transaction\" {}\n}";
    CHECK_THAT(error_of(text), Catch::Contains("line 3, column"));
    // Found by fuzz_scope_json: a number too large for any type is an error, not a crash.
    CHECK_THAT(error_of("-114E06333"), Catch::Contains("scope JSON: number overflow"));
    CHECK_THAT(error_of("{\"version\": 1e999999}"), Catch::Contains("scope JSON"));
    CHECK_THAT(error_of("{\"version\": \"\xff\"}"), Catch::Contains("scope JSON"));
}

TEST_CASE("a scope built in code is validated as strictly as JSON") {
    Scope s = parse_scope_json(test::seed_scope_json);
    s.instruments.push_back("BTC_EUR");
    CHECK_THROWS_WITH(validate(s), Catch::Contains("instruments[3]: duplicate"));
    s = parse_scope_json(test::seed_scope_json);
    s.max_transaction.currency = Currency{};
    CHECK_THROWS_WITH(validate(s), Catch::Contains("max_transaction.currency"));
}

TEST_CASE("load_scope_file names the file") {
    CHECK_THROWS_WITH(load_scope_file("/nonexistent/scope.json"),
                      Catch::Contains("/nonexistent/scope.json: cannot open"));
}
