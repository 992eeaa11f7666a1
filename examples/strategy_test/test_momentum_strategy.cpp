// How a strategy author unit-tests against the real enforcement path: TestAuthority mints a
// genuine certificate for any scope in one line, on a clock the test controls.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <kakunin/testing.hpp>

#include "momentum_strategy.hpp"

using kakunin::parse_decimal;

static const char* const scope = R"({"version":1,
  "max_transaction":{"currency":"EUR","amount":"50000.00"},
  "instruments":["BTC_EUR"],"counterparties":["exchange_a"],"regions":["eu-west-1"],
  "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri"],"from":"07:00","to":"20:00"}],
  "limits":{"price_collar_bps":200}})";

TEST_CASE("the strategy buys on three rising ticks inside its scope") {
    kakunin::TestAuthority authority;  // Monday 2024-01-08 12:00 UTC
    auto guard = authority.guard_for(scope);
    MomentumStrategy strategy(*guard, "BTC_EUR", parse_decimal("0.5"));
    for (const char* p : {"40000.00", "40010.00", "40020.00", "40030.00"})
        strategy.on_price(parse_decimal(p));
    REQUIRE(strategy.sent.size() == 1);
    CHECK(kakunin::to_string(strategy.sent[0].price) == "40030.00");
}

TEST_CASE("an oversized clip never reaches the venue") {
    kakunin::TestAuthority authority;
    auto guard = authority.guard_for(scope);
    MomentumStrategy strategy(*guard, "BTC_EUR", parse_decimal("2"));  // 2 x 40030 > 50000
    std::optional<kakunin::Decision> d;
    for (const char* p : {"40000.00", "40010.00", "40020.00", "40030.00"})
        d = strategy.on_price(parse_decimal(p));
    REQUIRE(d.has_value());
    CHECK(d->reasons.contains(kakunin::ReasonCode::max_transaction_exceeded));
    CHECK(strategy.sent.empty());
}

TEST_CASE("a price jump past the collar is stopped, and nothing trades after the close") {
    kakunin::TestAuthority authority;
    auto guard = authority.guard_for(scope);
    MomentumStrategy strategy(*guard, "BTC_EUR", parse_decimal("0.1"));
    std::optional<kakunin::Decision> d;
    for (const char* p :
         {"40000.00", "40010.00", "40020.00", "41000.00"})  // +2.4% on the last tick
        d = strategy.on_price(parse_decimal(p));
    CHECK(d->reasons.contains(kakunin::ReasonCode::price_collar_breached));

    authority.clock().set(kakunin::utc(2024, 1, 8, 20, 0, 0));
    for (const char* p : {"41000.00", "41010.00", "41020.00", "41030.00"})
        d = strategy.on_price(parse_decimal(p));
    CHECK(d->reasons.contains(kakunin::ReasonCode::outside_trading_hours));
    CHECK(strategy.sent.empty());
}

TEST_CASE("after the agent's certificate is revoked the strategy cannot trade") {
    kakunin::TestAuthority authority;
    auto guard = authority.guard_for(scope);
    authority.revoke(*guard->certificate(), "test: compliance pulled the agent");
    MomentumStrategy strategy(*guard, "BTC_EUR", parse_decimal("0.1"));
    std::optional<kakunin::Decision> d;
    for (const char* p : {"40000.00", "40010.00", "40020.00", "40030.00"})
        d = strategy.on_price(parse_decimal(p));
    CHECK(d->reasons.contains(kakunin::ReasonCode::certificate_revoked));
    CHECK(strategy.sent.empty());
}
