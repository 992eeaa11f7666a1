// Guard::check() against the seed scope: every limit at and around its boundary, every reason
// code, the kill switch, and halt() racing check() from four threads.
#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "kakunin/guard.hpp"
#include "support.hpp"

using namespace kakunin;
using test::good_order;
using test::monday;

namespace {

struct Fixture {
    ManualClock clock{monday(12)};
    Scope scope = parse_scope_json(test::seed_scope_json);
    Guard guard{scope, clock};

    Decision at(TimeNs t, const Order& o) {
        clock.set(t);
        return guard.check(o);
    }
};

Order with(Order o, const char* quantity, const char* price) {
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal(price);
    o.reference_price = o.price;
    return o;
}

std::set<ReasonCode> reasons(const Decision& d) { return {d.reasons.begin(), d.reasons.end()}; }

}  // namespace

TEST_CASE("an order inside every limit is allowed with no reasons") {
    Fixture f;
    const Decision d = f.at(monday(12), good_order());
    CHECK(d.verdict == Verdict::allow);
    CHECK(d.reasons.empty());
    CHECK(d.ts_ns == monday(12));
}

TEST_CASE("trading hours: from is inclusive, to is exclusive, weekends closed") {
    Fixture f;
    auto verdict_at = [&](TimeNs t) {
        f.clock.set(t);
        const Decision d = f.guard.check(good_order());
        return d.allowed()
                   ? "allow"
                   : (d.reasons.contains(ReasonCode::outside_trading_hours) ? "hours" : "other");
    };
    CHECK(std::string(verdict_at(monday(6, 59, 59))) == "hours");
    CHECK(std::string(verdict_at(monday(7, 0, 0))) == "allow");
    CHECK(std::string(verdict_at(monday(19, 59, 59))) == "allow");
    CHECK(std::string(verdict_at(monday(20, 0, 0))) == "hours");
    CHECK(std::string(verdict_at(monday(20, 0, 0) - 1)) == "allow");  // 19:59:59.999999999
    // Friday 2024-01-12 evening to Monday 2024-01-15 morning.
    CHECK(std::string(verdict_at(utc(2024, 1, 12, 19, 59, 59))) == "allow");
    CHECK(std::string(verdict_at(utc(2024, 1, 12, 20, 0, 0))) == "hours");
    CHECK(std::string(verdict_at(utc(2024, 1, 13, 12, 0, 0))) == "hours");
    CHECK(std::string(verdict_at(utc(2024, 1, 14, 23, 59, 59))) == "hours");
    CHECK(std::string(verdict_at(utc(2024, 1, 15, 6, 59, 59))) == "hours");
    CHECK(std::string(verdict_at(utc(2024, 1, 15, 7, 0, 0))) == "allow");
}

TEST_CASE("a 24:00 window covers the last second of the day and not the next day") {
    ManualClock clock(utc(2024, 1, 13, 0, 0, 0));  // Saturday
    Scope scope = parse_scope_json(
        test::seed_with("{\"days\": [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\"], \"from\": "
                        "\"07:00\", \"to\": \"20:00\"}",
                        "{\"days\": [\"Sat\"], \"from\": \"00:00\", \"to\": \"24:00\"}"));
    Guard guard(scope, clock);
    CHECK(guard.check(good_order()).allowed());
    clock.set(utc(2024, 1, 13, 23, 59, 59));
    CHECK(guard.check(good_order()).allowed());
    clock.set(utc(2024, 1, 14, 0, 0, 0));
    CHECK(guard.check(good_order()).reasons.contains(ReasonCode::outside_trading_hours));
    clock.set(utc(2024, 1, 12, 23, 59, 59));
    CHECK(guard.check(good_order()).reasons.contains(ReasonCode::outside_trading_hours));
}

TEST_CASE("max transaction: exactly the limit passes, one minor unit over fails") {
    Fixture f;
    CHECK(f.at(monday(12), with(good_order(), "5", "100000.00")).allowed());
    const Decision over = f.at(monday(12, 0, 1), with(good_order(), "5.00000001", "100000.00"));
    CHECK(reasons(over) == std::set<ReasonCode>{ReasonCode::max_transaction_exceeded});
    Order eth = with(good_order(), "100", "5000.01");  // 500001.00
    eth.instrument = "ETH_EUR";
    CHECK(reasons(f.at(monday(12, 0, 2), eth)) ==
          std::set<ReasonCode>{ReasonCode::max_transaction_exceeded});
    Order sol = with(good_order(), "1", "500000.01");
    sol.instrument = "SOL_EUR";
    CHECK(reasons(f.at(monday(12, 0, 3), sol)) ==
          std::set<ReasonCode>{ReasonCode::max_transaction_exceeded});
    sol = with(good_order(), "1", "500000.00");
    sol.instrument = "SOL_EUR";
    CHECK(f.at(monday(12, 0, 4), sol).allowed());
}

TEST_CASE("max order quantity per instrument, and none where the scope sets none") {
    Fixture f;
    CHECK(f.at(monday(12), with(good_order(), "10", "100.00")).allowed());
    CHECK(reasons(f.at(monday(12), with(good_order(), "10.00000001", "100.00"))) ==
          std::set<ReasonCode>{ReasonCode::max_order_quantity_exceeded});
    Order sol = with(good_order(), "1000", "100.00");
    sol.instrument = "SOL_EUR";
    CHECK(f.at(monday(12), sol).allowed());
}

TEST_CASE("price collar of 500 bps against the reference price, both directions") {
    Fixture f;
    auto collar = [&](const char* price, const char* ref) {
        Order o = with(good_order(), "1", price);
        o.reference_price = parse_decimal(ref);
        return f.at(monday(12), o);
    };
    CHECK(collar("105.00", "100.00").allowed());
    CHECK(collar("95.00", "100.00").allowed());
    CHECK(collar("105", "100.0000").allowed());
    CHECK(reasons(collar("105.01", "100.00")) ==
          std::set<ReasonCode>{ReasonCode::price_collar_breached});
    CHECK(reasons(collar("94.99", "100.00")) ==
          std::set<ReasonCode>{ReasonCode::price_collar_breached});
    CHECK(reasons(collar("105.0000000000000001", "100")) ==
          std::set<ReasonCode>{ReasonCode::price_collar_breached});
    Order none = good_order();
    none.reference_price.reset();
    CHECK(reasons(f.at(monday(12), none)) ==
          std::set<ReasonCode>{ReasonCode::reference_price_missing});
    CHECK(reasons(collar("100.00", "0")) ==
          std::set<ReasonCode>{ReasonCode::invalid_reference_price});
    CHECK(reasons(collar("100.00", "-100")) ==
          std::set<ReasonCode>{ReasonCode::invalid_reference_price});
}

TEST_CASE("message rate: 50 in a sliding second, rejected messages count too") {
    Fixture f;
    const TimeNs t0 = monday(12);
    for (int i = 0; i < 50; ++i) REQUIRE(f.at(t0, good_order()).allowed());
    CHECK(reasons(f.at(t0 + 999'999'999, good_order())) ==
          std::set<ReasonCode>{ReasonCode::order_rate_exceeded});
    // One second after the first 50 they leave the window; the rejected one is still inside.
    CHECK(f.at(t0 + 1'000'000'000, good_order()).allowed());
    for (int i = 0; i < 48; ++i) REQUIRE(f.at(t0 + 1'000'000'000, good_order()).allowed());
    CHECK(f.at(t0 + 1'000'000'000, good_order()).reasons.contains(ReasonCode::order_rate_exceeded));
}

TEST_CASE("daily notional: allowed orders count per UTC day, rejected ones do not") {
    Fixture f;
    const Order max_order = with(good_order(), "5", "100000.00");  // 500000.00
    TimeNs t = monday(8);
    for (int i = 0; i < 10; ++i, t += 2'000'000'000) REQUIRE(f.at(t, max_order).allowed());
    CHECK(reasons(f.at(t, with(good_order(), "0.00000001", "100000.00"))) ==
          std::set<ReasonCode>{ReasonCode::daily_notional_exceeded});
    // A rejected order (wrong venue) that would also breach the day's total reports both.
    Order wrong = max_order;
    wrong.counterparty = "exchange_z";
    CHECK(reasons(f.at(t + 1, wrong)) == std::set<ReasonCode>{ReasonCode::counterparty_not_allowed,
                                                              ReasonCode::daily_notional_exceeded});
    // The next UTC day starts from zero.
    CHECK(f.at(utc(2024, 1, 9, 7, 0, 0), max_order).allowed());
}

TEST_CASE("daily notional counts exactly up to the limit") {
    ManualClock clock(monday(12));
    Guard guard(parse_scope_json(test::seed_with("\"5000000.00\"", "\"1000.00\"")), clock);
    Order o = with(good_order(), "0.01", "40000.00");  // 400.00
    CHECK(guard.check(o).allowed());
    CHECK(guard.check(o).allowed());              // 800.00
    o = with(good_order(), "0.005", "40000.00");  // 200.00 -> 1000.00 exactly
    CHECK(guard.check(o).allowed());
    o = with(good_order(), "0.00000001", "1.00");  // 0.00000001 over
    CHECK(reasons(guard.check(o)) == std::set<ReasonCode>{ReasonCode::daily_notional_exceeded});
}

TEST_CASE("other currencies, instruments, venues and regions are rejected with their own reasons") {
    Fixture f;
    Order o = good_order();
    o.instrument = "BTC_USD";
    CHECK(reasons(f.at(monday(12), o)) ==
          std::set<ReasonCode>{ReasonCode::instrument_not_allowed, ReasonCode::currency_mismatch});
    o = good_order();
    o.instrument = "ADA_EUR";
    CHECK(reasons(f.at(monday(12), o)) == std::set<ReasonCode>{ReasonCode::instrument_not_allowed});
    o = good_order();
    o.counterparty = "exchange_c";
    CHECK(reasons(f.at(monday(12), o)) ==
          std::set<ReasonCode>{ReasonCode::counterparty_not_allowed});
    o = good_order();
    o.region = "us-east-1";
    CHECK(reasons(f.at(monday(12), o)) == std::set<ReasonCode>{ReasonCode::region_not_allowed});
    o = good_order();
    o.region = "";
    CHECK(reasons(f.at(monday(12), o)) == std::set<ReasonCode>{ReasonCode::region_not_allowed});
}

TEST_CASE("malformed orders are rejected with a reason, never allowed") {
    Fixture f;
    Order o = with(good_order(), "0", "40000.00");
    CHECK(reasons(f.at(monday(12), o)) == std::set<ReasonCode>{ReasonCode::invalid_quantity});
    o = with(good_order(), "-1", "40000.00");
    CHECK(reasons(f.at(monday(12), o)) == std::set<ReasonCode>{ReasonCode::invalid_quantity});
    o = with(good_order(), "1", "0");
    CHECK(reasons(f.at(monday(12), o)).count(ReasonCode::invalid_price) == 1);
    o = with(good_order(), "1", "-40000.00");
    CHECK(reasons(f.at(monday(12), o)).count(ReasonCode::invalid_price) == 1);
    o = good_order();
    o.instrument = "BTCEUR";
    CHECK(reasons(f.at(monday(12), o)) ==
          std::set<ReasonCode>{ReasonCode::invalid_instrument, ReasonCode::instrument_not_allowed});
    o = good_order();
    o.instrument = "";
    CHECK_FALSE(f.at(monday(12), o).allowed());
    // quantity x price = (2^63-1)^2 does not fit the day's running total at 18 decimals.
    o = with(good_order(), "9223372036854775807", "9223372036854775807");
    CHECK(reasons(f.at(monday(12), o)) ==
          std::set<ReasonCode>{ReasonCode::max_transaction_exceeded,
                               ReasonCode::max_order_quantity_exceeded,
                               ReasonCode::notional_overflow});
}

TEST_CASE("the kill switch rejects everything at once and resume records who") {
    Fixture f;
    f.guard.halt("desk kill switch", "J. Doe");
    CHECK(f.guard.halted());
    CHECK(reasons(f.at(monday(12), good_order())) == std::set<ReasonCode>{ReasonCode::halted});
    CHECK_THROWS_AS(f.guard.resume(""), Error);
    f.clock.set(monday(13));
    f.guard.resume("A. Officer");
    CHECK_FALSE(f.guard.halted());
    CHECK(f.at(monday(13), good_order()).allowed());
    try {
        f.guard.resume("A. Officer");
        FAIL("resume of a running guard accepted");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_state);
    }
    const auto history = f.guard.events();
    REQUIRE(history.size() == 2);
    CHECK(history[0].kind == GuardEvent::Kind::halted);
    CHECK(history[0].by == "J. Doe");
    CHECK(history[0].reason == "desk kill switch");
    CHECK(history[0].at_ns == monday(12));
    CHECK(history[1].kind == GuardEvent::Kind::resumed);
    CHECK(history[1].by == "A. Officer");
    CHECK(history[1].at_ns == monday(13));
    const GuardCounters c = f.guard.counters();
    CHECK(c.checks == 2);
    CHECK(c.allowed == 1);
    CHECK(c.rejected == 1);
}

TEST_CASE("every reason code is produced by some order") {
    Fixture f;
    std::set<ReasonCode> seen;
    auto note = [&](const Decision& d) { seen.insert(d.reasons.begin(), d.reasons.end()); };
    Order o = good_order();
    o.instrument = "BTC_USD";
    note(f.at(monday(12), o));  // instrument, currency
    o = good_order();
    o.counterparty = "x";
    note(f.at(monday(12), o));
    o = good_order();
    o.region = "x";
    note(f.at(monday(12), o));
    note(f.at(monday(12), with(good_order(), "9223372036854775807", "9223372036854775807")));
    note(f.at(monday(12), with(good_order(), "1", "105.01")));  // collar needs a ref below
    o = with(good_order(), "1", "105.01");
    o.reference_price = parse_decimal("100");
    note(f.at(monday(12), o));
    o = good_order();
    o.reference_price.reset();
    note(f.at(monday(12), o));
    o = good_order();
    o.reference_price = parse_decimal("0");
    note(f.at(monday(12), o));
    o = with(good_order(), "0", "1");
    note(f.at(monday(12), o));
    o = with(good_order(), "1", "0");
    note(f.at(monday(12), o));
    o = good_order();
    o.instrument = "BTCEUR";
    note(f.at(monday(12), o));
    o = good_order();
    const std::string long_id(max_order_field_length + 1, 'x');
    o.client_order_id = long_id;
    note(f.at(monday(12), o));
    for (int i = 0; i < 60; ++i) note(f.at(monday(14), good_order()));  // rate
    for (int i = 0; i < 12; ++i) note(f.at(monday(15, i), with(good_order(), "5", "100000.00")));
    // Last: a Guard's rate window and daily total never go back with the clock.
    note(f.at(monday(21), good_order()));  // hours
    f.guard.halt("test", "tester");
    note(f.at(monday(16), good_order()));
    for (ReasonCode r : all_reason_codes) {
        // Credentials (6xx), behaviour (5xx) and the audit trail are covered in their own
        // test programs (test_guard_certificate, test_behaviour, test_audit_trail).
        if (static_cast<int>(r) >= 500 || r == ReasonCode::audit_unavailable) continue;
        // The lifecycle codes (305-314) need a scope with lifecycle limits: each is reached
        // through the Guard in test_guard_lifecycle ("every lifecycle reason ...").
        if (static_cast<int>(r) >= 305 && static_cast<int>(r) <= 314) continue;
        // The firm-wide codes (315, 316) need a FirmLimitSource: test_firm_limits reaches both.
        if (r == ReasonCode::firm_limit_exceeded || r == ReasonCode::firm_lease_expired) continue;
        INFO(to_string(r));
        CHECK(seen.count(r) == 1);
    }
}

TEST_CASE("reason codes have names and stable numbers in their ranges") {
    std::set<std::string> names;
    for (ReasonCode r : all_reason_codes) {
        CHECK(std::string(to_string(r)) != "unknown");
        names.insert(to_string(r));
        const auto n = static_cast<int>(r);
        CHECK(n >= 100);
        CHECK(n < 700);
    }
    CHECK(names.size() == all_reason_codes.size());
    CHECK(static_cast<int>(ReasonCode::halted) == 100);
    CHECK(static_cast<int>(ReasonCode::instrument_not_allowed) == 200);
    CHECK(static_cast<int>(ReasonCode::max_order_quantity_exceeded) == 300);
    CHECK(static_cast<int>(ReasonCode::invalid_quantity) == 400);
}

TEST_CASE("an invalid scope refuses to build a Guard") {
    ManualClock clock;
    Scope s = parse_scope_json(test::seed_scope_json);
    s.regions.clear();
    CHECK_THROWS_WITH(Guard(s, clock), Catch::Contains("regions"));
}

TEST_CASE("no order is allowed after halt() returns, with four threads checking") {
    ManualClock clock(monday(12));
    // No rate or daily limit here, so everything before the halt is allowed.
    Scope scope = parse_scope_json(test::seed_scope_json);
    scope.limits = PreTradeLimits{};
    Guard guard(scope, clock);
    std::atomic<bool> halt_returned{false};
    std::atomic<bool> stop{false};
    std::atomic<long> allowed_before{0}, violations{0}, after_checks{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            const Order o = good_order();
            while (!stop.load()) {
                const bool after = halt_returned.load();  // read before the check begins
                const Decision d = guard.check(o);
                if (after) {
                    ++after_checks;
                    if (d.allowed()) ++violations;
                } else if (d.allowed()) {
                    ++allowed_before;
                }
            }
        });
    }
    while (allowed_before.load() < 10000) std::this_thread::yield();
    guard.halt("race test", "tester");
    halt_returned.store(true);
    while (after_checks.load() < 40000) std::this_thread::yield();
    stop.store(true);
    for (auto& th : threads) th.join();
    CHECK(violations.load() == 0);
    CHECK(allowed_before.load() >= 10000);
    const GuardCounters c = guard.counters();
    CHECK(c.checks == c.allowed + c.rejected);
    CHECK(c.rejected >= 40000);
}

TEST_CASE("a scope setting lifecycle limits is enforced by the Guard") {
    ManualClock clock{monday(12)};
    Scope scope = parse_scope_json(test::seed_scope_json);
    scope.limits.max_open_orders = 1;
    Guard guard(scope, clock);
    Order o = good_order();
    o.client_order_id = "first";
    CHECK(guard.check(o).allowed());
    o.client_order_id = "second";
    const Decision d = guard.check(o);
    CHECK(d.reasons.contains(ReasonCode::max_open_orders_exceeded));
    CHECK(d.verdict == Verdict::reject);
    CHECK(guard.working_orders() == std::vector<std::string>{"first"});
}
