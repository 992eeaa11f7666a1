// The order lifecycle engine (detail::OrderLimits, docs/lifecycle.md) at every boundary of every
// new limit, and the scope members that configure it: JSON, the certificate extension (the
// encoding of a scope without them unchanged), a real certificate and `kakunin cert inspect`.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "cli_test_support.hpp"
#include "kakunin/detail/order_limits.hpp"
#include "kakunin/scope_extension.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

#include "allocation_counter.hpp"

using namespace kakunin;
using detail::OrderLimits;
using json = nlohmann::json;

namespace {

/// The seed scope with `limits` replaced.
std::string scope_with_limits(const std::string& limits) {
    return test::seed_with(R"("limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"}
  })",
                           "\"limits\": " + limits);
}

Scope lifecycle_scope(const std::string& limits) {
    return parse_scope_json(scope_with_limits(limits));
}

int128 units(const char* d) { return OrderLimits::to_units(parse_decimal(d)); }

std::string names(ReasonSet r) {
    std::string s;
    for (ReasonCode c : r) s += std::string(to_string(c)) + " ";
    return s;
}

/// An engine and the requests and reports of a test, on a clock the test moves.
struct Desk {
    explicit Desk(const std::string& limits, std::size_t capacity = 0)
        : limits(lifecycle_scope(limits), capacity) {}

    ReasonSet send(std::string_view id, Side side, const char* qty, const char* price,
                   std::string_view instrument = "BTC_EUR", std::string_view venue = "exchange_a") {
        Order o;
        o.client_order_id = id;
        o.instrument = instrument;
        o.counterparty = venue;
        o.side = side;
        o.quantity = parse_decimal(qty);
        o.price = parse_decimal(price);
        OrderLimits::NewPlan plan;
        const ReasonSet r = limits.evaluate_new(o, now, plan);
        limits.count_message(now);
        if (r.empty()) limits.commit_new(o, plan, now);
        return r;
    }
    ReasonSet amend(std::string_view id, std::optional<const char*> qty,
                    std::optional<const char*> price) {
        Amend a;
        a.client_order_id = id;
        if (qty) a.quantity = parse_decimal(*qty);
        if (price) a.price = parse_decimal(*price);
        OrderLimits::AmendPlan plan;
        const ReasonSet r = limits.evaluate_amend(a, now, plan);
        limits.count_message(now);
        if (r.empty()) limits.commit_amend(plan, now);
        return r;
    }
    ReasonSet cancel(std::string_view id) {
        const ReasonSet r = limits.evaluate_cancel(Cancel{id});
        limits.count_message(now);
        if (r.empty()) limits.commit_cancel(Cancel{id});
        return r;
    }
    ExecutionResult report(ExecutionType type, std::string_view id, const char* qty = "0",
                           const char* price = "0", std::string_view instrument = "BTC_EUR",
                           Side side = Side::buy) {
        ExecutionReport e;
        e.type = type;
        e.client_order_id = id;
        e.instrument = instrument;
        e.side = side;
        e.quantity = parse_decimal(qty);
        e.price = parse_decimal(price);
        return limits.apply(e, now);
    }
    ExecutionResult fill(std::string_view id, const char* qty, const char* price) {
        return report(ExecutionType::fill, id, qty, price);
    }
    ExecutionResult mark(const char* price, std::string_view instrument = "BTC_EUR") {
        return report(ExecutionType::mark, "", "0", price, instrument);
    }
    int128 position(std::string_view instrument = "BTC_EUR") const {
        return limits.position(limits.instrument_index(instrument));
    }

    OrderLimits limits;
    TimeNs now = test::monday(12);
};

bool only(ReasonSet r, ReasonCode c) { return r.size() == 1 && r.contains(c); }

}  // namespace

// ---- reason codes --------------------------------------------------------------------------

TEST_CASE("lifecycle reason codes are named exactly and numbered in the 3xx range", "[lifecycle]") {
    const std::vector<std::pair<ReasonCode, std::string>> expected = {
        {ReasonCode::max_position_exceeded, "max_position_exceeded"},
        {ReasonCode::max_open_orders_exceeded, "max_open_orders_exceeded"},
        {ReasonCode::max_working_notional_exceeded, "max_working_notional_exceeded"},
        {ReasonCode::message_rate_exceeded, "message_rate_exceeded"},
        {ReasonCode::daily_loss_limit_reached, "daily_loss_limit_reached"},
        {ReasonCode::reduce_only, "reduce_only"},
        {ReasonCode::duplicate_order_id, "duplicate_order_id"},
        {ReasonCode::unknown_order_id, "unknown_order_id"},
        {ReasonCode::self_trade, "self_trade"},
        {ReasonCode::order_id_missing, "order_id_missing"},
    };
    for (const auto& [code, name] : expected) {
        CHECK(to_string(code) == name);
        CHECK(static_cast<int>(code) / 100 == 3);
        CHECK(ReasonSet::index_of(code) >= 0);
    }
    for (std::size_t i = 1; i < all_reason_codes.size(); ++i)
        CHECK(static_cast<int>(all_reason_codes[i - 1]) < static_cast<int>(all_reason_codes[i]));
}

// ---- the scope members ---------------------------------------------------------------------

const char* const k_all_lifecycle = R"({
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"},
    "max_position": {"BTC_EUR": {"long": "10", "short": "2.5"}, "ETH_EUR": {"long": "0", "short": "100"}},
    "max_open_orders": 20,
    "max_working_notional": {"currency": "EUR", "amount": "750000.00"},
    "max_messages_per_second": 30,
    "max_daily_loss": {"currency": "EUR", "amount": "25000.00"}
  })";

TEST_CASE("scope JSON carries the lifecycle limits and prints them canonically", "[lifecycle]") {
    const Scope s = lifecycle_scope(k_all_lifecycle);
    const PreTradeLimits& l = s.limits;
    REQUIRE(l.max_position.size() == 2);
    CHECK(l.max_position[0].first == "BTC_EUR");
    CHECK(to_string(l.max_position[0].second.max_long) == "10");
    CHECK(to_string(l.max_position[0].second.max_short) == "2.5");
    CHECK(to_string(l.max_position[1].second.max_long) == "0");
    CHECK(l.max_open_orders == 20u);
    CHECK(to_string(l.max_working_notional->amount) == "750000.00");
    CHECK(l.max_messages_per_second == 30u);
    CHECK(to_string(l.max_daily_loss->amount) == "25000.00");
    CHECK(l.has_lifecycle_limits());
    CHECK_FALSE(parse_scope_json(test::seed_scope_json).limits.has_lifecycle_limits());

    const std::string canonical = to_json(s);
    CHECK(to_json(parse_scope_json(canonical)) == canonical);
    CHECK(to_json(parse_scope_json(to_pretty_json(s))) == canonical);
    const json j = json::parse(canonical).at("limits");
    CHECK(j.at("max_position").at("BTC_EUR") == json({{"long", "10"}, {"short", "2.5"}}));
    CHECK(j.at("max_open_orders") == 20);
    CHECK(j.at("max_messages_per_second") == 30);
    CHECK(j.at("max_daily_loss") == json({{"currency", "EUR"}, {"amount", "25000.00"}}));
    CHECK(j.at("max_working_notional").at("amount") == "750000.00");
    // Only lifecycle limits: "limits" is not empty.
    const Scope alone = lifecycle_scope(R"({"max_open_orders": 1})");
    CHECK_FALSE(alone.limits.empty());
    CHECK(json::parse(to_json(alone)).at("limits") == json({{"max_open_orders", 1}}));
}

TEST_CASE("bad lifecycle limits are refused with the member named", "[lifecycle]") {
    auto error = [](const std::string& limits) {
        try {
            (void)lifecycle_scope(limits);
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::invalid_input);
            return std::string(e.what());
        }
        FAIL("accepted: " << limits);
        return std::string();
    };
    CHECK_THAT(
        error(R"({"max_position": {"ADA_EUR": {"long": "1", "short": "1"}}})"),
        Catch::Contains("limits.max_position.ADA_EUR") && Catch::Contains("not in 'instruments'"));
    CHECK_THAT(error(R"({"max_position": {"BTC_EUR": {"long": "-1", "short": "1"}}})"),
               Catch::Contains("limits.max_position.BTC_EUR.long"));
    CHECK_THAT(error(R"({"max_position": {"BTC_EUR": {"long": "1"}}})"),
               Catch::Contains("limits.max_position.BTC_EUR.short: missing"));
    CHECK_THAT(error(R"({"max_position": {"BTC_EUR": {"long": "1", "short": "1", "x": "1"}}})"),
               Catch::Contains("limits.max_position.BTC_EUR.x: unknown member"));
    CHECK_THAT(error(R"({"max_position": {"BTC_EUR": {"long": 1, "short": "1"}}})"),
               Catch::Contains("limits.max_position.BTC_EUR.long: must be a decimal string"));
    CHECK_THAT(error(R"({"max_position": []})"),
               Catch::Contains("limits.max_position: must be an object"));
    CHECK_THAT(error(R"({"max_open_orders": 0})"), Catch::Contains("limits.max_open_orders"));
    CHECK_THAT(error(R"({"max_open_orders": 100001})"),
               Catch::Contains("limits.max_open_orders: must be from 1 to 100000"));
    CHECK_THAT(error(R"({"max_messages_per_second": 0})"),
               Catch::Contains("limits.max_messages_per_second"));
    CHECK_THAT(error(R"({"max_messages_per_second": "5"})"),
               Catch::Contains("limits.max_messages_per_second: must be a whole number"));
    CHECK_THAT(error(R"({"max_working_notional": {"currency": "USD", "amount": "1"}})"),
               Catch::Contains("limits.max_working_notional.currency"));
    CHECK_THAT(error(R"({"max_daily_loss": {"currency": "EUR", "amount": "0"}})"),
               Catch::Contains("limits.max_daily_loss.amount"));
    CHECK_THAT(error(R"({"max_daily_los": {"currency": "EUR", "amount": "1"}})"),
               Catch::Contains("limits.max_daily_los: unknown member"));

    Scope coded = parse_scope_json(test::seed_scope_json);
    coded.limits.max_position = {{"SOL_EUR", {parse_decimal("1"), parse_decimal("1")}},
                                 {"BTC_EUR", {parse_decimal("1"), parse_decimal("1")}}};
    CHECK_THROWS_WITH(validate(coded), Catch::Contains("duplicate or unsorted"));
}

TEST_CASE("a scope without lifecycle limits encodes byte for byte as before", "[lifecycle]") {
    // The seed scope's extension, as encoded before the lifecycle members existed.
    const std::string golden =
        "3081b6020101300e1303455552020402faf0800201fe301b0c074254435f4555520c074554485f4555520c"
        "07534f4c5f45555230180c0a65786368616e67655f610c0a65786368616e67655f62300d300b02011f0202"
        "01a4020204b030190c0965752d776573742d310c0c65752d63656e7472616c2d31a040a02730110c074254"
        "435f455552300602010a02010030120c074554485f455552300702020096020100810201f4820132a30e13"
        "0345555202041dcd65000201fe";
    std::string hex;
    for (std::uint8_t b : encode_scope_extension(parse_scope_json(test::seed_scope_json))) {
        static const char* digits = "0123456789abcdef";
        hex += digits[b >> 4];
        hex += digits[b & 15];
    }
    CHECK(hex == golden);
}

TEST_CASE("the certificate extension round-trips the lifecycle limits", "[lifecycle]") {
    const Scope s = lifecycle_scope(k_all_lifecycle);
    const auto der = encode_scope_extension(s);
    CHECK(to_json(decode_scope_extension(der)) == to_json(s));
    CHECK(der.size() > encode_scope_extension(parse_scope_json(test::seed_scope_json)).size());
    for (const char* one :
         {R"({"max_open_orders": 7})", R"({"max_messages_per_second": 1000000})",
          R"({"max_daily_loss": {"currency": "EUR", "amount": "0.000000000000000001"}})",
          R"({"max_working_notional": {"currency": "EUR", "amount": "9223372036854775807"}})",
          R"({"max_position": {"SOL_EUR": {"long": "0", "short": "0"}}})"}) {
        const Scope partial = lifecycle_scope(one);
        INFO(one);
        CHECK(to_json(decode_scope_extension(encode_scope_extension(partial))) == to_json(partial));
    }
    // Strict: [5] maxOpenOrders out of range, named.
    Scope seven = lifecycle_scope(R"({"max_open_orders": 7})");
    auto bad = encode_scope_extension(seven);
    bool patched = false;
    for (std::size_t i = 0; i + 2 < bad.size(); ++i)
        if (bad[i] == 0x85 && bad[i + 1] == 0x01 && bad[i + 2] == 0x07) {
            bad[i + 2] = 0x00;
            patched = true;
        }
    REQUIRE(patched);
    CHECK_THROWS_WITH(decode_scope_extension(bad), Catch::Contains("limits.maxOpenOrders"));

    // Inside a real certificate.
    TestAuthority authority;
    const GuardCredentials c = authority.credentials_for(s);
    CHECK(to_json(c.certificate.scope()) == to_json(s));
}

TEST_CASE("kakunin cert inspect prints the lifecycle limits", "[lifecycle][cli]") {
    test::TempDir dir("kakunin-lifecycle");
    const test::Cli cli{"lifecycle-test"};
    const std::string scope_text = scope_with_limits(k_all_lifecycle);
    test::write_file(dir / "scope.json", scope_text);
    cli.ok(dir, "ca init --dir state");
    cli.ok(dir,
           "agent register --dir state --agent agent-7 --owner 'Desk 3' --purpose 'BTC making' "
           "--by 'Jane Roe'");
    cli.ok(dir,
           "scope approve --dir state --agent agent-7 --scope scope.json --approver 'Jane Doe'");
    cli.ok(dir, "cert issue --dir state --agent agent-7 --out agent.pem");
    const json inspected = json::parse(cli.ok(dir, "cert inspect agent.pem").out);
    CHECK(inspected.at("scope") == json::parse(to_json(parse_scope_json(scope_text))));
    CHECK(inspected.at("scope").at("limits").at("max_open_orders") == 20);
}

// ---- the engine: ids, capacity -------------------------------------------------------------

TEST_CASE("lifecycle: a new order needs a usable id when lifecycle limits are set", "[lifecycle]") {
    Desk d(R"({"max_open_orders": 5})");
    CHECK(only(d.send("", Side::buy, "1", "100"), ReasonCode::order_id_missing));
    const std::string longest(max_order_id_length, 'x');
    CHECK(only(d.send(longest + "y", Side::buy, "1", "100"), ReasonCode::order_id_missing));
    CHECK(d.send(longest, Side::buy, "1", "100").empty());
    CHECK(d.limits.working_order(longest).has_value());

    // Without lifecycle limits nothing is tracked: ids are optional and may repeat.
    OrderLimits plain(parse_scope_json(test::seed_scope_json));
    CHECK_FALSE(plain.tracking());
    Order o = test::good_order();
    o.client_order_id = "";
    OrderLimits::NewPlan plan;
    CHECK(plain.evaluate_new(o, test::monday(12), plan).empty());
}

TEST_CASE("lifecycle: duplicate ids are refused while the order works", "[lifecycle]") {
    Desk d(R"({"max_open_orders": 5})");
    CHECK(d.send("a", Side::buy, "1", "100").empty());
    CHECK(only(d.send("a", Side::sell, "1", "200"), ReasonCode::duplicate_order_id));
    CHECK(d.report(ExecutionType::cancelled, "a").order_closed);
    CHECK(d.send("a", Side::buy, "1", "100").empty());  // a finished id may be used again
}

TEST_CASE("lifecycle: max_open_orders at its boundary, and capacity from the options",
          "[lifecycle]") {
    Desk d(R"({"max_open_orders": 3})");
    CHECK(d.send("1", Side::buy, "1", "100").empty());
    CHECK(d.send("2", Side::buy, "1", "100").empty());
    CHECK(d.send("3", Side::buy, "1", "100").empty());  // 3 working: at the limit
    CHECK(only(d.send("4", Side::buy, "1", "100"), ReasonCode::max_open_orders_exceeded));
    d.cancel("2");  // a cancel request releases nothing
    CHECK(only(d.send("4", Side::buy, "1", "100"), ReasonCode::max_open_orders_exceeded));
    d.report(ExecutionType::expired, "2");
    CHECK(d.send("4", Side::buy, "1", "100").empty());
    CHECK(d.limits.working_count() == 3);

    // No max_open_orders: the table holds the capacity given, and over it is a rejection.
    Desk c(R"({"max_messages_per_second": 1000})", 2);
    CHECK(c.limits.capacity() == 2);
    CHECK(c.send("x", Side::buy, "1", "100").empty());
    CHECK(c.send("y", Side::buy, "1", "100").empty());
    CHECK(only(c.send("z", Side::buy, "1", "100"), ReasonCode::max_open_orders_exceeded));
    CHECK(Desk(R"({"max_messages_per_second": 1000})").limits.capacity() ==
          default_working_order_capacity);
}

// ---- positions -----------------------------------------------------------------------------

TEST_CASE("lifecycle: max_position is checked worst case on each side", "[lifecycle]") {
    Desk d(R"({"max_position": {"BTC_EUR": {"long": "10", "short": "2.5"}}})");
    CHECK(d.send("b1", Side::buy, "4", "100").empty());
    CHECK(d.send("b2", Side::buy, "6", "100").empty());  // 0 + 4 + 6 = 10: at the limit
    CHECK(only(d.send("b3", Side::buy, "0.000000000000000001", "100"),
               ReasonCode::max_position_exceeded));
    // A fill moves quantity from working to the position: the worst case is unchanged.
    d.fill("b1", "4", "100");
    CHECK(d.position() == units("4"));
    CHECK(d.limits.working_buy(0) == units("6"));
    CHECK(only(d.send("b3", Side::buy, "0.000000000000000001", "100"),
               ReasonCode::max_position_exceeded));
    // Sells are checked against the short side only: 4 - 0 - 6.5 = -2.5 is at the limit.
    CHECK(d.send("s1", Side::sell, "6.5", "101").empty());
    CHECK(only(d.send("s2", Side::sell, "0.000000000000000001", "101"),
               ReasonCode::max_position_exceeded));
    // Releasing working buys does not help the short side; releasing working sells does.
    d.report(ExecutionType::cancelled, "b2");
    CHECK(only(d.send("s2", Side::sell, "0.1", "101"), ReasonCode::max_position_exceeded));
    CHECK(d.send("b4", Side::buy, "6", "100").empty());
    d.report(ExecutionType::reject, "s1");
    CHECK(d.send("s2", Side::sell, "6.5", "101").empty());
    // Another instrument has no limit.
    CHECK(d.send("e1", Side::buy, "1000", "1", "ETH_EUR").empty());

    Desk zero(R"({"max_position": {"BTC_EUR": {"long": "0", "short": "1"}}})");
    CHECK(only(zero.send("b", Side::buy, "0.001", "100"), ReasonCode::max_position_exceeded));
    CHECK(zero.send("s", Side::sell, "1", "100").empty());
}

TEST_CASE("lifecycle: partial fills, complete fills and over-fills", "[lifecycle]") {
    Desk d(R"({"max_working_notional": {"currency": "EUR", "amount": "1000.00"}})");
    CHECK(d.send("a", Side::buy, "10", "100").empty());  // 1000.00 working: at the limit
    CHECK(d.limits.working_notional() == units("1000"));
    ExecutionResult r = d.fill("a", "2.5", "99");
    CHECK(r.applied);
    CHECK_FALSE(r.order_closed);
    CHECK(d.position() == units("2.5"));
    CHECK(d.limits.working_order("a")->filled == units("2.5"));
    CHECK(d.limits.working_notional() == units("750"));  // 7.5 left at the order's price
    CHECK(d.limits.working_buy(0) == units("7.5"));
    CHECK(d.fill("a", "7.5", "100").order_closed);
    CHECK(d.limits.working_count() == 0);
    CHECK(d.limits.working_notional() == 0);
    CHECK(d.limits.working_buy(0) == 0);
    CHECK(d.position() == units("10"));

    CHECK(d.send("b", Side::sell, "1", "100").empty());
    r = d.fill("b", "3", "100");  // the venue filled more than was asked: a fact
    CHECK(r.order_closed);
    CHECK(d.position() == units("7"));
    CHECK(d.limits.working_sell(0) == 0);
}

// ---- notional ------------------------------------------------------------------------------

TEST_CASE("lifecycle: max_working_notional at its boundary", "[lifecycle]") {
    Desk d(R"({"max_working_notional": {"currency": "EUR", "amount": "1000.00"}})");
    CHECK(d.send("a", Side::buy, "3", "100").empty());
    CHECK(d.send("b", Side::sell, "1", "699.9999999999999999", "ETH_EUR").empty());
    // 999.9999999999999999 working: room for 10^-16 and no more.
    CHECK(only(d.send("c", Side::buy, "0.000000000000001", "1", "SOL_EUR"),
               ReasonCode::max_working_notional_exceeded));
    CHECK(d.send("c", Side::buy, "0.0000000000000001", "1", "SOL_EUR").empty());
    CHECK(d.limits.working_notional() == units("1000"));
    CHECK(only(d.send("d", Side::buy, "0.000000000000000001", "1", "SOL_EUR"),
               ReasonCode::max_working_notional_exceeded));
    d.cancel("a");
    CHECK_FALSE(d.send("d", Side::buy, "0.000000000000000001", "1", "SOL_EUR").empty());
    d.report(ExecutionType::cancelled, "a");
    CHECK(d.send("d", Side::buy, "3", "100").empty());
}

TEST_CASE("lifecycle: max_daily_notional is filled today plus working", "[lifecycle]") {
    Desk d(R"({"max_daily_notional": {"currency": "EUR", "amount": "1000.00"},
               "max_open_orders": 10})");
    CHECK(d.send("a", Side::buy, "6", "100").empty());
    CHECK(only(d.send("b", Side::buy, "4.01", "100"), ReasonCode::daily_notional_exceeded));
    CHECK(d.send("b", Side::buy, "4", "100").empty());  // 600 + 400 = 1000
    d.fill("a", "6", "101");                            // filled 606, working 400
    CHECK(d.limits.filled_today(d.now) == units("606"));
    const char* b = "exchange_b";  // sells on another venue: no self-trade with the buys
    CHECK(only(d.send("c", Side::sell, "0.01", "1", "BTC_EUR", b),
               ReasonCode::daily_notional_exceeded));
    d.report(ExecutionType::cancelled, "b");  // 606 filled, nothing working
    CHECK(d.send("c", Side::sell, "3.94", "100", "BTC_EUR", b).empty());  // 606 + 394 = 1000
    CHECK(only(d.send("e", Side::sell, "0.000000000000000001", "1", "BTC_EUR", b),
               ReasonCode::daily_notional_exceeded));
    // Next UTC day: the filled part resets, the working order still counts.
    d.now += 86'400'000'000'000;
    CHECK(d.limits.filled_today(d.now) == 0);
    CHECK(d.send("e", Side::sell, "6.06", "100", "BTC_EUR", b).empty());
    CHECK(only(d.send("f", Side::sell, "0.000000000000000001", "1", "BTC_EUR", b),
               ReasonCode::daily_notional_exceeded));
    // A clock stepping back to the previous day resets nothing.
    d.now -= 86'400'000'000'000;
    d.fill("c", "1", "100");
    d.now += 86'400'000'000'000;
    CHECK(d.limits.filled_today(d.now) == units("100"));
}

TEST_CASE("lifecycle: without tracking max_daily_notional counts the day's allowed orders",
          "[lifecycle]") {
    OrderLimits plain(parse_scope_json(test::seed_with("5000000.00", "1000.00")));
    REQUIRE_FALSE(plain.tracking());
    Order o = test::good_order();
    o.quantity = parse_decimal("0.01");
    o.price = parse_decimal("40000.00");  // 400 each
    TimeNs t = test::monday(12);
    auto send = [&] {
        OrderLimits::NewPlan plan;
        const ReasonSet r = plain.evaluate_new(o, t, plan);
        if (r.empty()) plain.commit_new(o, plan, t);
        return r;
    };
    CHECK(send().empty());
    CHECK(send().empty());
    CHECK(only(send(), ReasonCode::daily_notional_exceeded));  // 1200 > 1000
    ExecutionReport fill{ExecutionType::fill, "c-1", "BTC_EUR", Side::buy, o.quantity, o.price};
    CHECK_FALSE(plain.apply(fill, t).applied);  // reports change nothing without tracking
    CHECK(only(send(), ReasonCode::daily_notional_exceeded));
    t += 86'400'000'000'000;
    CHECK(send().empty());
}

// ---- message rate --------------------------------------------------------------------------

TEST_CASE("lifecycle: max_messages_per_second counts new, amend and cancel requests",
          "[lifecycle]") {
    Desk d(R"({"max_messages_per_second": 3})");
    const TimeNs start = d.now;
    CHECK(d.send("a", Side::buy, "1", "100").empty());
    d.now += 100'000'000;
    CHECK(d.amend("a", "2", std::nullopt).empty());
    d.now += 100'000'000;
    CHECK(d.cancel("zz").contains(ReasonCode::unknown_order_id));  // refused, still counted
    d.now += 100'000'000;
    CHECK(only(d.send("b", Side::buy, "1", "100"), ReasonCode::message_rate_exceeded));
    CHECK(only(d.amend("a", "3", std::nullopt), ReasonCode::message_rate_exceeded));
    CHECK(d.cancel("a").empty());  // a cancel is never refused for the rate
    d.now = start + 999'999'999;
    CHECK(only(d.send("b", Side::buy, "1", "100"), ReasonCode::message_rate_exceeded));
    // The third-latest request (at +0.3 s) is a second old: room again.
    d.now = start + 1'300'000'000;
    CHECK(d.send("b", Side::buy, "1", "100").empty());
}

// ---- amends --------------------------------------------------------------------------------

TEST_CASE("lifecycle: an amend up reserves at once, an amend down only on the ack", "[lifecycle]") {
    Desk d(R"({"max_position": {"BTC_EUR": {"long": "10", "short": "10"}},
               "max_working_notional": {"currency": "EUR", "amount": "2000.00"}})");
    CHECK(d.send("a", Side::buy, "5", "100").empty());
    CHECK(d.report(ExecutionType::ack, "a").applied);
    CHECK(d.amend("a", "10", std::nullopt).empty());  // up to the position limit
    CHECK(d.limits.working_buy(0) == units("10"));
    CHECK(d.limits.working_notional() == units("1000"));
    CHECK(only(d.send("b", Side::buy, "0.001", "100"), ReasonCode::max_position_exceeded));
    CHECK(d.report(ExecutionType::ack, "a").applied);

    CHECK(d.amend("a", "4", std::nullopt).empty());  // down: the 10 stay reserved
    CHECK(d.limits.working_buy(0) == units("10"));
    CHECK(only(d.send("b", Side::buy, "0.001", "100"), ReasonCode::max_position_exceeded));
    CHECK(d.amend("a", std::nullopt, "150").empty());  // price up: 10 x 150 reserved
    CHECK(d.limits.working_notional() == units("1500"));
    CHECK(only(d.amend("a", std::nullopt, "201"), ReasonCode::max_working_notional_exceeded));
    CHECK(d.report(ExecutionType::ack, "a").applied);  // the amend down: still one pending
    CHECK(d.limits.working_buy(0) == units("10"));
    CHECK(d.report(ExecutionType::ack, "a").applied);  // every amend acknowledged: 4 x 150
    CHECK(d.limits.working_buy(0) == units("4"));
    CHECK(d.limits.working_notional() == units("600"));
    CHECK(d.send("b", Side::buy, "6", "100").empty());

    // The new quantity is the total: it must stay above what has filled.
    d.fill("a", "3", "150");
    CHECK(only(d.amend("a", "3", std::nullopt), ReasonCode::invalid_quantity));
    CHECK(only(d.amend("a", "0", std::nullopt), ReasonCode::invalid_quantity));
    CHECK(only(d.amend("a", std::nullopt, "-1"), ReasonCode::invalid_price));
    CHECK(d.amend("a", "3.5", std::nullopt).empty());
    CHECK(d.report(ExecutionType::ack, "a").applied);
    CHECK(d.limits.working_buy(0) == units("6.5"));  // 0.5 of a + 6 of b
    CHECK(only(d.amend("nope", "1", std::nullopt), ReasonCode::unknown_order_id));
}

TEST_CASE("lifecycle: an amend sent before the order's ack waits for both acks", "[lifecycle]") {
    Desk d(R"({"max_open_orders": 5})");
    CHECK(d.send("a", Side::sell, "5", "100").empty());
    CHECK(d.amend("a", "2", std::nullopt).empty());
    d.report(ExecutionType::ack, "a");  // the new order's ack
    CHECK(d.limits.working_sell(0) == units("5"));
    d.report(ExecutionType::ack, "a");  // the amend's
    CHECK(d.limits.working_sell(0) == units("2"));
    CHECK_FALSE(d.report(ExecutionType::ack, "a").applied);  // nothing outstanding
    // A fill under the old terms while an amend down is pending keeps the order working.
    CHECK(d.amend("a", "1", std::nullopt).empty());
    CHECK_FALSE(d.fill("a", "1.5", "100").order_closed);
    CHECK(d.limits.working_sell(0) == units("0.5"));
    CHECK(d.report(ExecutionType::ack, "a").order_closed);  // 1.5 filled >= 1: done
    CHECK(d.limits.working_sell(0) == 0);
    CHECK(d.limits.working_count() == 0);
}

// ---- cancels and unknown ids ---------------------------------------------------------------

TEST_CASE("lifecycle: a fill after a cancel request still applies", "[lifecycle]") {
    Desk d(R"({"max_open_orders": 5})");
    CHECK(d.send("a", Side::buy, "2", "100").empty());
    CHECK(d.cancel("a").empty());
    CHECK(d.limits.working_order("a")->cancel_pending);
    CHECK(d.limits.working_buy(0) == units("2"));  // released only when the venue confirms
    CHECK(d.fill("a", "0.5", "100").applied);
    CHECK(d.position() == units("0.5"));
    CHECK(d.report(ExecutionType::cancelled, "a").order_closed);
    CHECK(d.limits.working_buy(0) == 0);

    // Fully filled before the cancel reached the venue: the cancelled report is ignored.
    CHECK(d.send("b", Side::buy, "1", "100").empty());
    CHECK(d.cancel("b").empty());
    CHECK(d.fill("b", "1", "100").order_closed);
    const ExecutionResult late = d.report(ExecutionType::cancelled, "b");
    CHECK_FALSE(late.applied);
    CHECK(late.unknown_order);
    CHECK(late.problem == nullptr);
    CHECK(d.position() == units("1.5"));
    CHECK(only(d.cancel("b"), ReasonCode::unknown_order_id));
}

TEST_CASE("lifecycle: a fill for an unknown id moves the position and is reported", "[lifecycle]") {
    Desk d(R"({"max_position": {"BTC_EUR": {"long": "1", "short": "1"}}})");
    ExecutionResult r =
        d.report(ExecutionType::fill, "ghost", "0.75", "100", "BTC_EUR", Side::sell);
    CHECK(r.applied);
    CHECK(r.unknown_order);
    REQUIRE(r.problem != nullptr);
    CHECK(std::string(r.problem).find("not working") != std::string::npos);
    CHECK(d.position() == -units("0.75"));
    CHECK(only(d.send("s", Side::sell, "0.26", "100"), ReasonCode::max_position_exceeded));
    CHECK(d.send("s", Side::sell, "0.25", "100").empty());
    for (ExecutionType t : {ExecutionType::ack, ExecutionType::reject, ExecutionType::cancelled,
                            ExecutionType::expired}) {
        r = d.report(t, "ghost");
        CHECK_FALSE(r.applied);
        CHECK(r.unknown_order);
    }
    // A fill that cannot be applied loses a fact: reduce-only, and the reason says why.
    r = d.report(ExecutionType::fill, "ghost", "1", "100", "ADA_EUR");
    CHECK_FALSE(r.applied);
    CHECK(r.reduce_only_entered);
    CHECK(d.limits.reduce_only());
    CHECK(std::string(r.problem).find("not in the scope") != std::string::npos);
}

// ---- self-trade ----------------------------------------------------------------------------

TEST_CASE("lifecycle: an order crossing the agent's own working order is self_trade",
          "[lifecycle]") {
    Desk d(R"({"max_open_orders": 10})");
    CHECK(d.send("s", Side::sell, "1", "100.50").empty());
    CHECK(d.send("s2", Side::sell, "1", "101").empty());
    CHECK(only(d.send("b", Side::buy, "1", "100.50"), ReasonCode::self_trade));  // touches
    CHECK(only(d.send("b", Side::buy, "1", "200"), ReasonCode::self_trade));
    CHECK(d.send("b", Side::buy, "1", "100.49").empty());
    CHECK(d.send("c", Side::buy, "1", "200", "BTC_EUR", "exchange_b").empty());  // other venue
    CHECK(d.send("e", Side::buy, "1", "200", "ETH_EUR").empty());                // other instrument
    CHECK(only(d.send("t", Side::sell, "1", "100.49"), ReasonCode::self_trade));
    CHECK(d.send("t", Side::sell, "1", "100.495").empty());
    // An amend to a crossing price is refused; once the sell is gone the buy may move up.
    CHECK(only(d.amend("b", std::nullopt, "100.50"), ReasonCode::self_trade));
    d.report(ExecutionType::cancelled, "s");
    CHECK(only(d.amend("b", std::nullopt, "100.495"), ReasonCode::self_trade));  // t at 100.495
    CHECK(d.amend("b", std::nullopt, "100.494").empty());
    // Until the venue acknowledges, a sell amended from 101 up to 102 may still trade at 101.
    CHECK(d.send("p", Side::sell, "1", "101", "SOL_EUR").empty());
    CHECK(d.amend("p", std::nullopt, "102").empty());
    CHECK(only(d.send("x", Side::buy, "1", "101", "SOL_EUR"), ReasonCode::self_trade));
    d.report(ExecutionType::ack, "p");  // the new order's ack
    d.report(ExecutionType::ack, "p");  // the amend's: now only 102 works
    CHECK(d.send("x", Side::buy, "1", "101", "SOL_EUR").empty());
    CHECK(only(d.send("y", Side::buy, "1", "102", "SOL_EUR"), ReasonCode::self_trade));
}

// ---- reduce-only and daily loss ------------------------------------------------------------

TEST_CASE("lifecycle: reduce-only passes only orders that reduce, worst case", "[lifecycle]") {
    Desk d(R"({"max_open_orders": 10})");
    CHECK(d.send("b", Side::buy, "3", "100").empty());
    d.fill("b", "3", "100");
    d.limits.set_reduce_only(true);
    CHECK(only(d.send("b2", Side::buy, "0.1", "100"), ReasonCode::reduce_only));
    CHECK(only(d.send("s1", Side::sell, "3.1", "100"), ReasonCode::reduce_only));  // would flip
    CHECK(d.send("s1", Side::sell, "2", "100").empty());
    CHECK(only(d.send("s2", Side::sell, "1.1", "100"), ReasonCode::reduce_only));  // 3-2-1.1 < 0
    CHECK(d.send("s2", Side::sell, "1", "100").empty());
    CHECK(only(d.amend("s2", "1.5", std::nullopt), ReasonCode::reduce_only));
    CHECK(d.amend("s2", "0.5", std::nullopt).empty());
    CHECK(d.cancel("s1").empty());
    d.limits.set_reduce_only(false);
    CHECK(d.send("b2", Side::buy, "0.1", "99").empty());

    Desk flat(R"({"max_open_orders": 10})");
    flat.limits.set_reduce_only(true);
    CHECK(only(flat.send("b", Side::buy, "1", "100"), ReasonCode::reduce_only));
    CHECK(only(flat.send("s", Side::sell, "1", "100"), ReasonCode::reduce_only));
}

TEST_CASE("lifecycle: reaching max_daily_loss puts the engine in reduce-only mode", "[lifecycle]") {
    Desk d(R"({"max_daily_loss": {"currency": "EUR", "amount": "10.00"}})");
    CHECK(d.send("b", Side::buy, "2", "100").empty());
    d.fill("b", "2", "100");
    CHECK(d.limits.daily_pnl(d.now) == 0);
    ExecutionResult r = d.mark("95.0000000000000001");  // 2 x -4.999...: loss just under 10
    CHECK(r.applied);
    CHECK_FALSE(r.reduce_only_entered);
    CHECK(d.limits.daily_pnl(d.now) == -units("9.9999999999999998"));
    CHECK(d.send("b2", Side::buy, "0.1", "95").empty());
    r = d.mark("95");  // -200 + 2 x 95 = -10.00: reached (b2 is not filled)
    CHECK(d.limits.daily_pnl(d.now) == -units("10"));
    CHECK(r.reduce_only_entered);
    CHECK(d.limits.reduce_only());
    const ReasonSet refused = d.send("b3", Side::buy, "0.1", "95");
    CHECK(refused.size() == 2);
    CHECK(refused.contains(ReasonCode::reduce_only));
    CHECK(refused.contains(ReasonCode::daily_loss_limit_reached));
    CHECK(d.send("s", Side::sell, "1", "96").empty());  // reduces
    // Realised (1 sold at 96 against an average cost of 100) plus unrealised (1 at 96): the
    // sum does not depend on the split: cash -200 + 96 and position 1 x 96, pnl -8.
    d.fill("s", "1", "96");
    CHECK(d.limits.daily_pnl(d.now) == -units("8"));
    CHECK(d.limits.reduce_only());  // only a person lifts it
    // The next UTC day starts at zero: the carried 1 re-based at 96.
    d.now += 86'400'000'000'000;
    CHECK(d.limits.daily_pnl(d.now) == 0);
    CHECK(only(d.send("b4", Side::buy, "0.1", "95"), ReasonCode::reduce_only));
    d.mark("90");
    CHECK(d.limits.daily_pnl(d.now) == -units("6"));
    d.limits.set_reduce_only(false);
    CHECK(d.send("b4", Side::buy, "0.1", "95").empty());
    // A clock stepping back a day resets nothing: the mark counts on the later day.
    d.now -= 86'400'000'000'000;
    d.mark("80");
    CHECK(d.limits.daily_pnl(d.now + 86'400'000'000'000) == -units("16"));
}

// ---- the kill switch, allocation, noexcept -------------------------------------------------

TEST_CASE("lifecycle: every working id can be listed without allocating", "[lifecycle]") {
    Desk d(R"({"max_open_orders": 100})");
    for (int i = 0; i < 50; ++i) d.send("o-" + std::to_string(i), Side::buy, "1", "1");
    d.report(ExecutionType::cancelled, "o-7");
    std::set<std::string> expected;
    for (int i = 0; i < 50; ++i)
        if (i != 7) expected.insert("o-" + std::to_string(i));
    std::vector<std::string> seen;
    seen.reserve(64);
    char buffer[64 * 64];
    std::size_t used = 0, count = 0;
    const std::uint64_t before = t_allocations;
    d.limits.for_each_working([&](std::string_view id) {
        std::memcpy(buffer + used, id.data(), id.size());
        used += id.size();
        buffer[used++] = '\n';
        ++count;
    });
    CHECK(t_allocations == before);
    std::string all(buffer, used);
    for (std::size_t pos = 0; pos < all.size();) {
        const auto end = all.find('\n', pos);
        seen.push_back(all.substr(pos, end - pos));
        pos = end + 1;
    }
    CHECK(count == 49);
    CHECK(std::set<std::string>(seen.begin(), seen.end()) == expected);
}

TEST_CASE("lifecycle: requests and reports allocate nothing", "[lifecycle]") {
    static_assert(noexcept(std::declval<OrderLimits&>().apply(ExecutionReport{}, 0)));
    static_assert(noexcept(std::declval<const OrderLimits&>().evaluate_new(
        Order{}, 0, std::declval<OrderLimits::NewPlan&>())));
    Desk d(R"({"max_position": {"ETH_EUR": {"long": "1000", "short": "1000"}},
               "max_open_orders": 50, "max_messages_per_second": 1000,
               "max_working_notional": {"currency": "EUR", "amount": "1000000.00"},
               "max_daily_notional": {"currency": "EUR", "amount": "1000000.00"},
               "max_daily_loss": {"currency": "EUR", "amount": "1000000.00"}})");
    std::vector<std::string> ids;
    for (int i = 0; i < 2000; ++i) ids.push_back("id-" + std::to_string(i));
    const std::uint64_t before = t_allocations;
    int allowed = 0;
    for (int i = 0; i < 2000; ++i) {
        d.now += 50'000'000;
        const std::string& id = ids[static_cast<std::size_t>(i)];
        allowed +=
            d.send(id, i % 2 ? Side::sell : Side::buy, "0.01", i % 2 ? "101" : "99", "ETH_EUR")
                .empty();
        d.amend(id, "0.02", std::nullopt);
        d.report(ExecutionType::ack, id);
        d.fill(id, "0.005", "100");
        d.mark("100", "ETH_EUR");
        if (i % 3 == 0) d.cancel(id);
        d.report(ExecutionType::cancelled, id);
    }
    CHECK(t_allocations == before);
    CHECK(allowed == 2000);
}
