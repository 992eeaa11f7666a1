// Exact decimals: parsing, printing, products and comparisons at the edges of 64 and 128 bits.
#include <catch2/catch.hpp>

#include "kakunin/decimal.hpp"
#include "kakunin/money.hpp"

using namespace kakunin;

TEST_CASE("decimal strings parse to units and scale") {
    auto d = parse_decimal("500000.00");
    CHECK(d.units == 50000000);
    CHECK(d.scale == 2);
    auto sat = parse_decimal("0.00000001");
    CHECK(sat.units == 1);
    CHECK(sat.scale == 8);
    CHECK(parse_decimal("-12.5").units == -125);
    CHECK(parse_decimal("9223372036854775807").units == INT64_MAX);
    CHECK(parse_decimal("0.000000000000000001").scale == 18);
    CHECK(to_string(parse_decimal("500000.00")) == "500000.00");
    CHECK(to_string(parse_decimal("0.00000001")) == "0.00000001");
    CHECK(to_string(parse_decimal("-0.5")) == "-0.5");
    CHECK(to_string(parse_decimal("7")) == "7");
}

TEST_CASE("malformed and overflowing decimal strings are refused") {
    for (const char* bad : {"", "-", ".5", "5.", "1e5", "+5", " 5", "5 ", "1,000", "0x10", "1..2",
                            "9223372036854775808", "92233720368547758.08", "0.0000000000000000001",
                            "NaN", "--1", "1-"}) {
        INFO(bad);
        CHECK_FALSE(try_parse_decimal(bad).has_value());
        CHECK_THROWS_AS(parse_decimal(bad), Error);
    }
}

TEST_CASE("notional is exact: 5 x 100000.00 equals the limit, one unit more exceeds it") {
    const Decimal limit = parse_decimal("500000.00");
    CHECK(compare(multiply(parse_decimal("5"), parse_decimal("100000.00")), limit) == 0);
    CHECK(compare(multiply(parse_decimal("5.00000001"), parse_decimal("100000.00")), limit) > 0);
    CHECK(compare(multiply(parse_decimal("4.99999999"), parse_decimal("100000.00")), limit) < 0);
    CHECK(to_string(multiply(parse_decimal("5.00000001"), parse_decimal("100000.00"))) ==
          "500000.0010000000");
}

TEST_CASE("comparison across scales is exact even where rescaling overflows") {
    CHECK(compare(parse_decimal("1.0"), parse_decimal("1.000000000000000000")) == 0);
    CHECK(compare(parse_decimal("1"), parse_decimal("0.999999999999999999")) > 0);
    CHECK(compare(parse_decimal("-1"), parse_decimal("0.000000000000000001")) < 0);
    // 2^126-ish at scale 0 against a limit at scale 36 would overflow when scaled up.
    const Wide huge =
        multiply(parse_decimal("9223372036854775807"), parse_decimal("9223372036854775807"));
    const Wide tiny_scale =
        multiply(parse_decimal("0.000000000000000001"), parse_decimal("0.000000000000000001"));
    CHECK(compare(huge, tiny_scale) > 0);
    CHECK(compare(tiny_scale, huge) < 0);
    CHECK(compare(huge, parse_decimal("9223372036854775807")) > 0);
}

TEST_CASE("rescale_ceil rounds a dropped remainder up and reports overflow") {
    int128 out = 0;
    REQUIRE(rescale_ceil(Wide{1, 20}, 18, out));
    CHECK(out == 1);  // 1e-20 counts as 1e-18: totals never under-count
    REQUIRE(rescale_ceil(Wide{100, 20}, 18, out));
    CHECK(out == 1);
    REQUIRE(rescale_ceil(Wide{5, 0}, 18, out));
    CHECK(out == static_cast<int128>(5) * 1000000000000000000LL);
    const Wide huge =
        multiply(parse_decimal("9223372036854775807"), parse_decimal("9223372036854775807"));
    CHECK_FALSE(rescale_ceil(huge, 18, out));
}

TEST_CASE("currencies are ISO 4217 codes") {
    CHECK(is_iso4217("EUR"));
    CHECK(is_iso4217("USD"));
    CHECK(is_iso4217("JPY"));
    CHECK_FALSE(is_iso4217("USDT"));
    CHECK_FALSE(is_iso4217("BTC"));
    CHECK_FALSE(is_iso4217("eur"));
    CHECK_FALSE(is_iso4217("XXX"));
    CHECK_FALSE(is_iso4217(""));
    CHECK_THROWS_WITH(Currency::parse("ABC"), Catch::Contains("ISO 4217"));
    CHECK(Currency::parse("EUR").code() == "EUR");
    CHECK(Currency::parse("EUR") == Currency::parse("EUR"));
    CHECK(Currency::parse("EUR").packed() == Currency::pack("EUR"));
    CHECK(Currency::parse("EUR") != Currency::parse("USD"));
}
