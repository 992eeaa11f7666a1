// The scope extension: round trip, OID arcs, and strict decoding of hostile DER.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "kakunin/scope_extension.hpp"
#include "support.hpp"

using namespace kakunin;

namespace {

Scope seed() { return parse_scope_json(test::seed_scope_json); }

Scope minimal_scope() {
    Scope s;
    s.max_transaction = Money{Currency::parse("USD"), parse_decimal("1000")};
    s.instruments = {"BTC_USD"};
    s.counterparties = {"venue_1"};
    s.trading_hours = {TradingWindow{0x7f, 0, 1440}};
    s.regions = {"us-east-1"};
    validate(s);
    return s;
}

std::size_t find_bytes(const std::vector<std::uint8_t>& hay, std::vector<std::uint8_t> needle) {
    for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i)
        if (std::equal(needle.begin(), needle.end(), hay.begin() + static_cast<std::ptrdiff_t>(i)))
            return i;
    FAIL("byte pattern not found");
    return 0;
}

std::string decode_error(const std::vector<std::uint8_t>& der) {
    try {
        (void)decode_scope_extension(der);
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_input);
        return e.what();
    }
    FAIL("decoding succeeded");
    return "";
}

}  // namespace

TEST_CASE("scope extension OIDs sit under a configurable arc", "[scope_extension]") {
    CHECK(scope_extension_oid() == "1.3.6.1.4.1.32473.1.1");
    CHECK(scope_extension_oid("1.3.6.1.4.1.99999.7") == "1.3.6.1.4.1.99999.7.1");
    for (const char* bad : {"", "1", "3.1", "1..2", "1.2.", "a.b", "1.02", ".1.2"})
        CHECK_THROWS_AS(scope_extension_oid(bad), Error);
}

TEST_CASE("scope extension round trip keeps every member", "[scope_extension]") {
    for (const Scope& s : {seed(), minimal_scope()}) {
        const auto der = encode_scope_extension(s);
        const Scope back = decode_scope_extension(der);
        CHECK(to_json(back) == to_json(s));
        // Deterministic: the same scope has one encoding.
        CHECK(encode_scope_extension(back) == der);
    }
    Scope partial = minimal_scope();
    partial.limits.max_orders_per_second = 7;
    CHECK(to_json(decode_scope_extension(encode_scope_extension(partial))) == to_json(partial));
    partial.limits.max_daily_notional = Money{Currency::parse("USD"), parse_decimal("0.000001")};
    CHECK(to_json(decode_scope_extension(encode_scope_extension(partial))) == to_json(partial));
}

TEST_CASE("scope extension money is amount and exponent, RFC 3739 style", "[scope_extension]") {
    // max_transaction 500000.00 EUR = SEQUENCE { "EUR", 50000000, -2 }
    const auto der = encode_scope_extension(seed());
    const std::vector<std::uint8_t> money = {0x30, 0x0e, 0x13, 0x03, 'E',  'U',  'R',  0x02,
                                             0x04, 0x02, 0xfa, 0xf0, 0x80, 0x02, 0x01, 0xfe};
    CHECK(find_bytes(der, money) > 0);
}

TEST_CASE("scope extension is parsed by an independent ASN.1 reader", "[scope_extension]") {
    const auto der = encode_scope_extension(seed());
    const std::string path = "scope_extension_test.der";
    {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(der.data()),
                  static_cast<std::streamsize>(der.size()));
    }
    const std::string cmd = "openssl asn1parse -inform DER -in " + path + " > scope_asn1.txt 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream in("scope_asn1.txt");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.find("UTF8STRING        :BTC_EUR") != std::string::npos);
    CHECK(text.find("PRINTABLESTRING   :EUR") != std::string::npos);
    std::remove(path.c_str());
    std::remove("scope_asn1.txt");
}

TEST_CASE("scope extension decoding is strict", "[scope_extension]") {
    const auto good = encode_scope_extension(seed());

    SECTION("a trailing byte is refused") {
        auto der = good;
        der.push_back(0x00);
        CHECK(decode_error(der).find("trailing") != std::string::npos);
    }
    SECTION("another version is refused, naming the field") {
        auto der = good;
        const std::size_t at = find_bytes(der, {0x02, 0x01, 0x01});
        der[at + 2] = 0x02;
        const std::string msg = decode_error(der);
        CHECK(msg.find("version") != std::string::npos);
        CHECK(msg.find("unsupported version 2") != std::string::npos);
    }
    SECTION("a wrong string type is refused, naming the field") {
        auto der = good;
        const std::size_t at = find_bytes(der, {0x0c, 0x07, 'B', 'T', 'C', '_', 'E', 'U', 'R'});
        der[at] = 0x13;  // PrintableString instead of UTF8String
        CHECK(decode_error(der).find("instruments[0]") != std::string::npos);
    }
    SECTION("a wrong currency type is refused") {
        auto der = good;
        const std::size_t at = find_bytes(der, {0x13, 0x03, 'E', 'U', 'R'});
        der[at] = 0x0c;
        CHECK(decode_error(der).find("maxTransaction.currency") != std::string::npos);
    }
    SECTION("an exponent out of range is refused") {
        auto der = good;
        const std::size_t at = find_bytes(der, {0x02, 0x01, 0xfe});  // exponent -2
        der[at + 2] = 0x01;                                          // +1
        CHECK(decode_error(der).find("maxTransaction.exponent") != std::string::npos);
    }
    SECTION("a non-minimal INTEGER is refused") {
        // version encoded as 02 02 00 01: rebuild the outer length by hand (short form).
        auto der =
            minimal_scope().instruments.empty() ? good : encode_scope_extension(minimal_scope());
        REQUIRE(der[0] == 0x30);
        REQUIRE(der[1] < 0x7f);
        std::vector<std::uint8_t> bad = {
            0x30, static_cast<std::uint8_t>(der[1] + 1), 0x02, 0x02, 0x00, 0x01};
        bad.insert(bad.end(), der.begin() + 5, der.end());
        CHECK(decode_error(bad).find("not minimally encoded") != std::string::npos);
    }
    SECTION("a non-DER length is refused") {
        auto der = encode_scope_extension(minimal_scope());
        REQUIRE(der[1] < 0x80);
        std::vector<std::uint8_t> bad = {0x30, 0x81, der[1]};
        bad.insert(bad.end(), der.begin() + 2, der.end());
        CHECK(decode_error(bad).find("not the DER encoding") != std::string::npos);
    }
    SECTION("every truncation is refused") {
        for (std::size_t n = 0; n < good.size(); ++n) {
            const std::vector<std::uint8_t> cut(good.begin(),
                                                good.begin() + static_cast<std::ptrdiff_t>(n));
            CHECK_THROWS_AS(decode_scope_extension(cut), Error);
        }
    }
    SECTION("an empty limits element is refused") {
        auto der = encode_scope_extension(minimal_scope());
        REQUIRE(der[1] < 0x7e);
        der[1] = static_cast<std::uint8_t>(der[1] + 2);
        der.push_back(0xa0);
        der.push_back(0x00);
        CHECK(decode_error(der).find("limits") != std::string::npos);
    }
    SECTION("garbage and every single-byte change give an Error or a valid scope") {
        CHECK_THROWS_AS(decode_scope_extension(std::vector<std::uint8_t>{}), Error);
        CHECK_THROWS_AS(decode_scope_extension(std::vector<std::uint8_t>{0xff, 0xff, 0xff}), Error);
        std::size_t refused = 0, accepted = 0;
        for (std::size_t i = 0; i < good.size(); ++i) {
            for (std::uint8_t x : {0x01, 0x80, 0xff}) {
                auto der = good;
                der[i] = static_cast<std::uint8_t>(der[i] ^ x);
                try {
                    const Scope s = decode_scope_extension(der);
                    validate(s);  // whatever decodes is a valid scope
                    ++accepted;
                } catch (const Error& e) {
                    CHECK(e.category() == ErrorCategory::invalid_input);
                    ++refused;
                }
            }
        }
        CHECK(refused > accepted);
    }
}

TEST_CASE("encoding refuses an invalid scope", "[scope_extension]") {
    Scope s = minimal_scope();
    s.instruments = {"BTCUSD"};
    CHECK_THROWS_AS(encode_scope_extension(s), Error);
}
