// The order lifecycle through the Guard (docs/lifecycle.md): amends, cancels and execution reports
// feed working orders, positions and exposure; every halt hands the working ids to the cancel
// callback; the dead man's switch; reduce-only mode. The engine's own boundaries are in
// test_lifecycle and test_lifecycle_differential; here is what the Guard adds.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kakunin/audit_sink.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

using namespace kakunin;

namespace {

/// The seed scope (BTC_EUR, ETH_EUR, SOL_EUR on exchange_a/b, collar 500 bps, 50 orders/s,
/// 5,000,000 EUR a day) with every lifecycle limit.
const std::string k_limits = R"("limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "400000.00"},
    "max_position": {"BTC_EUR": {"long": "5", "short": "3"}},
    "max_open_orders": 4,
    "max_working_notional": {"currency": "EUR", "amount": "200000.00"},
    "max_messages_per_second": 20,
    "max_daily_loss": {"currency": "EUR", "amount": "1000.00"}
  })";

Scope lifecycle_scope() {
    return parse_scope_json(test::seed_with(R"("limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"}
  })",
                                            k_limits));
}

Order order(const std::string& id, Side side, const char* quantity, const char* price) {
    Order o = test::good_order();
    o.client_order_id = id;
    o.side = side;
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal(price);
    o.reference_price = o.price;
    return o;
}
Order buy(const std::string& id, const char* q, const char* p = "40000") {
    return order(id, Side::buy, q, p);
}
Order sell(const std::string& id, const char* q, const char* p = "40000") {
    return order(id, Side::sell, q, p);
}

ExecutionReport report(ExecutionType type, std::string_view id, const char* q = "0",
                       const char* p = "0") {
    ExecutionReport e;
    e.type = type;
    e.client_order_id = id;
    e.quantity = parse_decimal(q);
    e.price = parse_decimal(p);
    return e;
}
ExecutionReport fill(std::string_view id, const char* q, const char* p = "40000") {
    return report(ExecutionType::fill, id, q, p);
}
ExecutionReport mark(const char* instrument, const char* price) {
    ExecutionReport e = report(ExecutionType::mark, "", "0", price);
    e.instrument = instrument;
    return e;
}

std::string position(const Guard& g, const std::string& instrument) {
    for (const auto& p : g.lifecycle_state().positions)
        if (p.instrument == instrument) return p.position;
    return "?";
}

/// A Guard on simulated time, incidents driven by the test, recording cancel lists.
struct Desk {
    ManualClock clock{test::monday(12)};
    std::mutex mutex;
    std::vector<CancelAll> cancels;
    Guard guard;
    explicit Desk(Scope scope = lifecycle_scope(), std::chrono::milliseconds heartbeat = {})
        : guard(scope, clock, options(heartbeat)) {}
    GuardOptions options(std::chrono::milliseconds heartbeat) {
        GuardOptions o;
        o.observe = false;
        o.incident_thread = false;
        o.heartbeat_timeout = heartbeat;
        o.on_cancel_all = [this](const CancelAll& c) {
            std::lock_guard<std::mutex> lock(mutex);
            cancels.push_back(c);
        };
        return o;
    }
    Decision at(TimeNs t, const Order& o) {
        clock.set(t);
        return guard.check(o);
    }
};

}  // namespace

TEST_CASE("every lifecycle reason is reachable through the Guard", "[guard][lifecycle]") {
    std::set<ReasonCode> seen;
    auto note = [&](const Decision& d) {
        for (ReasonCode r : d.reasons) seen.insert(r);
    };
    {
        Desk f;
        note(f.guard.check(buy("", "1")));     // order_id_missing
        note(f.guard.check(buy("big", "6")));  // max_position_exceeded (long 5)
        REQUIRE(f.guard.check(buy("a", "1")).allowed());
        note(f.guard.check(buy("a", "1")));            // duplicate_order_id
        note(f.guard.check(sell("x", "1", "39900")));  // self_trade against a at 40000
        note(f.guard.cancel(Cancel{"nope"}));          // unknown_order_id
        note(f.guard.amend(Amend{"nope", parse_decimal("2"), std::nullopt}));
        REQUIRE(f.guard.check(buy("b", "1")).allowed());
        REQUIRE(f.guard.check(buy("c", "1")).allowed());
        REQUIRE(f.guard.check(buy("d", "1")).allowed());
        note(f.guard.check(order("e", Side::buy, "1", "10")));  // max_open_orders_exceeded (4)
    }
    {
        Desk f;
        // 4 x 1 BTC at 40,000 = 160,000 working; d amended to 2 makes 200,000 (at the limit),
        // to 2.1 makes 204,000 > 200,000.
        for (const char* id : {"a", "b", "c", "d"}) REQUIRE(f.guard.check(buy(id, "1")).allowed());
        note(f.guard.amend(Amend{"d", parse_decimal("2.1"), std::nullopt}));
        CHECK(f.guard.amend(Amend{"d", parse_decimal("2"), std::nullopt}).allowed());
    }
    {
        Desk f;
        for (int i = 0; i < 20; ++i) f.guard.cancel(Cancel{"none"});  // 20 messages in a second
        note(f.guard.check(buy("a", "1")));                           // message_rate_exceeded
    }
    {
        Desk f;
        REQUIRE(f.guard.check(buy("a", "1")).allowed());
        f.guard.on_execution(fill("a", "1", "40000"));
        const ExecutionResult r = f.guard.on_execution(mark("BTC_EUR", "38999"));  // loss 1,001
        CHECK(r.reduce_only_entered);
        note(f.guard.check(buy("b", "1")));  // daily_loss_limit_reached and reduce_only
    }
    for (int code = 305; code <= 314; ++code) {
        INFO(code);
        CHECK(seen.count(static_cast<ReasonCode>(code)) == 1);
    }
}

TEST_CASE("lifecycle ids: required with lifecycle limits, optional without", "[guard][lifecycle]") {
    ManualClock clock{test::monday(12)};
    Guard plain(parse_scope_json(test::seed_scope_json), clock);
    Order o = test::good_order();
    o.client_order_id = "";
    CHECK(plain.check(o).allowed());
    CHECK(plain.check(o).allowed());  // no tracking: ids are not compared
    CHECK(plain.working_orders().empty());
    Guard tracked(lifecycle_scope(), clock);
    CHECK(tracked.check(o).reasons.contains(ReasonCode::order_id_missing));
    const std::string too_long(max_order_id_length + 1, 'x'), longest(max_order_id_length, 'x');
    o.client_order_id = too_long;  // Order's text fields are views: the strings must outlive it
    CHECK(tracked.check(o).reasons.contains(ReasonCode::order_id_missing));
    o.client_order_id = longest;
    CHECK(tracked.check(o).allowed());
}

TEST_CASE("worst-case position: working buys count before they fill, partial fills move it",
          "[guard][lifecycle]") {
    Desk f;
    REQUIRE(f.guard.check(buy("a", "3")).allowed());
    REQUIRE(f.guard.check(buy("b", "2")).allowed());  // 3 + 2 = 5: at the limit, allowed
    CHECK(f.guard.check(buy("c", "0.1")).reasons.contains(ReasonCode::max_position_exceeded));
    // A partial fill of a moves 1 from working into the position: the worst case stays 5.
    CHECK(f.guard.on_execution(fill("a", "1")).applied);
    CHECK(position(f.guard, "BTC_EUR") == "1");
    CHECK(f.guard.check(buy("c", "0.1")).reasons.contains(ReasonCode::max_position_exceeded));
    // The rest of a is cancelled at the venue: 2 working released.
    CHECK(f.guard.on_execution(report(ExecutionType::cancelled, "a")).order_closed);
    CHECK(f.guard.check(buy("c", "2")).allowed());  // 1 + 2 (b) + 2 = 5
    // Sells: short 3 from a long 1 position: 1 - 4 = -3 passes, 1 - 4.1 does not.
    Desk g;
    REQUIRE(g.guard.check(buy("a", "1")).allowed());
    g.guard.on_execution(fill("a", "1"));
    CHECK(g.guard.check(sell("s", "4", "40100")).allowed());
    const Decision d = g.guard.check(sell("t", "0.1", "40100"));
    CHECK(d.reasons.contains(ReasonCode::max_position_exceeded));
    ReasonSet only;
    only.add(ReasonCode::max_position_exceeded);
    CHECK(d.reasons.bits() == only.bits());  // nothing else: the position alone refuses it
}

TEST_CASE("amends up count at once, amends down only when the venue acknowledges",
          "[guard][lifecycle]") {
    Desk f;
    REQUIRE(f.guard.check(buy("a", "2")).allowed());
    REQUIRE(f.guard.amend(Amend{"a", parse_decimal("4"), std::nullopt}).allowed());  // up: 4
    CHECK(f.guard.check(buy("b", "1.5")).reasons.contains(ReasonCode::max_position_exceeded));
    REQUIRE(f.guard.amend(Amend{"a", parse_decimal("1"), std::nullopt}).allowed());  // down
    // Until acknowledged, the larger of both stays reserved.
    CHECK(f.guard.check(buy("b", "1.5")).reasons.contains(ReasonCode::max_position_exceeded));
    f.guard.on_execution(report(ExecutionType::ack, "a"));  // the new order
    f.guard.on_execution(report(ExecutionType::ack, "a"));  // the first amend
    CHECK(f.guard.check(buy("b", "1.5")).reasons.contains(ReasonCode::max_position_exceeded));
    f.guard.on_execution(report(ExecutionType::ack, "a"));  // the second: 1 reserved now
    CHECK(f.guard.check(buy("b", "1.5")).allowed());
    // An amend below what has filled is invalid; the scope still judges the new terms.
    f.guard.on_execution(fill("a", "0.5"));
    CHECK(f.guard.amend(Amend{"a", parse_decimal("0.5"), std::nullopt})
              .reasons.contains(ReasonCode::invalid_quantity));
    CHECK(f.guard.amend(Amend{"b", parse_decimal("11"), std::nullopt})
              .reasons.contains(ReasonCode::max_order_quantity_exceeded));
    Amend far{"b", std::nullopt, parse_decimal("50000"), parse_decimal("40000")};
    CHECK(f.guard.amend(far).reasons.contains(ReasonCode::price_collar_breached));
    Amend no_reference{"b", std::nullopt, parse_decimal("40100")};
    CHECK(f.guard.amend(no_reference).reasons.contains(ReasonCode::reference_price_missing));
    // A halt refuses amends; cancels still pass.
    f.guard.halt("drill", "J. Doe");
    CHECK(f.guard.amend(Amend{"b", parse_decimal("1"), std::nullopt})
              .reasons.contains(ReasonCode::halted));
    CHECK(f.guard.cancel(Cancel{"b"}).allowed());
}

TEST_CASE(
    "a cancel race: a fill after the cancel request still applies, the exposure stays "
    "until the venue confirms",
    "[guard][lifecycle]") {
    Desk f;
    REQUIRE(f.guard.check(buy("a", "5")).allowed());
    REQUIRE(f.guard.cancel(Cancel{"a"}).allowed());
    // The cancel request releases nothing: a buy is still refused for the position.
    CHECK(f.guard.check(buy("b", "1")).reasons.contains(ReasonCode::max_position_exceeded));
    CHECK(f.guard.working_orders() == std::vector<std::string>{"a"});
    // The venue filled 2 before it took the cancel.
    CHECK(f.guard.on_execution(fill("a", "2")).applied);
    CHECK(f.guard.on_execution(report(ExecutionType::cancelled, "a")).order_closed);
    CHECK(position(f.guard, "BTC_EUR") == "2");
    CHECK(f.guard.working_orders().empty());
    CHECK(f.guard.check(buy("b", "3")).allowed());  // 2 + 3 = 5
    // A second cancelled for the same id is unknown and changes nothing.
    const ExecutionResult again = f.guard.on_execution(report(ExecutionType::cancelled, "a"));
    CHECK(again.unknown_order);
    CHECK_FALSE(again.applied);
}

TEST_CASE("a fill for an unknown id moves the position and reaches the error handler",
          "[guard][lifecycle]") {
    Desk f;
    std::vector<std::string> messages;
    f.guard.set_error_handler([&](std::string_view m) { messages.emplace_back(m); });
    ExecutionReport e = fill("ghost", "1.5", "40000");
    e.instrument = "BTC_EUR";
    e.side = Side::sell;
    const ExecutionResult r = f.guard.on_execution(e);
    CHECK(r.applied);
    CHECK(r.unknown_order);
    CHECK(position(f.guard, "BTC_EUR") == "-1.5");
    REQUIRE(messages.size() == 1);
    CHECK(messages[0].find("not working") != std::string::npos);
}

TEST_CASE(
    "max_daily_notional is exposure: a market maker quoting 20 times per fill keeps "
    "quoting all day",
    "[guard][lifecycle]") {
    // The issue's case: with cancels confirmed, a quote that never fills uses no daily room.
    Scope scope = lifecycle_scope();
    scope.limits.max_position.clear();
    scope.limits.max_daily_loss.reset();
    scope.limits.max_messages_per_second.reset();
    scope.limits.max_orders_per_second.reset();
    Desk f(scope);
    int allowed = 0, n = 0;
    for (int fills = 0; fills < 40; ++fills) {
        for (int q = 0; q < 20; ++q) {
            const std::string id = "q" + std::to_string(n++);
            f.clock.advance(std::chrono::milliseconds(200));
            if (f.guard.check(order(id, q % 2 ? Side::sell : Side::buy, "0.1", "40000")).allowed())
                ++allowed;
            if (q < 19) {
                f.guard.cancel(Cancel{id});
                f.guard.on_execution(report(ExecutionType::cancelled, id));
            } else {
                f.guard.on_execution(fill(id, "0.1"));  // 4,000 EUR filled
            }
        }
    }
    CHECK(allowed == 800);  // 40 fills x 4,000 = 160,000 of 400,000: never refused
    CHECK(f.guard.lifecycle_state().filled_today == "160000");
    // Without executions the Guard counts as before: every allowed order stays working.
    Desk g(scope);
    int before = 0;
    for (int i = 0; i < 200; ++i)
        if (g.guard.check(order("w" + std::to_string(i), Side::buy, "0.1", "40000")).allowed())
            ++before;
    CHECK(before == 4);  // max_open_orders 4 holds first
}

TEST_CASE("reduce-only: only reducing orders pass, a named person lifts it, both recorded",
          "[guard][lifecycle]") {
    Desk f;
    CHECK_THROWS_WITH(f.guard.reduce_only("desk", ""), Catch::Contains("required"));
    CHECK_THROWS_WITH(f.guard.lift_reduce_only("J. Doe"), Catch::Contains("not in force"));
    REQUIRE(f.guard.check(buy("a", "2")).allowed());
    f.guard.on_execution(fill("a", "2"));
    f.guard.reduce_only("end of day", "J. Doe");
    CHECK(f.guard.reduce_only_in_force());
    CHECK(f.guard.check(buy("b", "1")).reasons.contains(ReasonCode::reduce_only));
    CHECK(f.guard.check(sell("c", "2.5", "40000")).reasons.contains(ReasonCode::reduce_only));
    CHECK(f.guard.check(sell("d", "2", "40000")).allowed());  // back to flat: reduces
    CHECK(f.guard.cancel(Cancel{"d"}).allowed());
    f.guard.on_execution(report(ExecutionType::cancelled, "d"));
    CHECK_THROWS_WITH(f.guard.lift_reduce_only(""), Catch::Contains("named"));
    f.guard.lift_reduce_only("J. Doe");
    CHECK_FALSE(f.guard.reduce_only_in_force());
    CHECK(f.guard.check(buy("e", "1")).allowed());
    ManualClock clock;
    Guard plain(parse_scope_json(test::seed_scope_json), clock);
    CHECK_THROWS_WITH(plain.reduce_only("x", "J. Doe"), Catch::Contains("tracks no positions"));
}

TEST_CASE(
    "a halt hands every working id to the cancel callback, which may cancel and halt "
    "again",
    "[guard][lifecycle][kill]") {
    ManualClock clock{test::monday(12)};
    std::vector<CancelAll> got;
    Guard* self = nullptr;
    GuardOptions o;
    o.observe = false;
    o.incident_thread = false;
    o.on_cancel_all = [&](const CancelAll& c) {
        got.push_back(c);
        for (const std::string& id : c.order_ids) CHECK(self->cancel(Cancel{id}).allowed());
        if (got.size() == 1) self->halt("again, from the callback", "strategy");  // no deadlock
    };
    Guard guard(lifecycle_scope(), clock, o);
    self = &guard;
    for (const char* id : {"a", "b", "c"}) REQUIRE(guard.check(buy(id, "1")).allowed());
    guard.on_execution(fill("b", "1"));  // b is done: not working
    const std::string halt_id = guard.halt("kill switch", "J. Doe");
    REQUIRE(got.size() == 2);
    CHECK(got[0].order_ids == std::vector<std::string>{"a", "c"});
    CHECK(got[0].halt_id == halt_id);
    CHECK(got[0].by == "J. Doe");
    CHECK(got[0].reason == "kill switch");
    CHECK(got[1].reason == "again, from the callback");
    CHECK(got[1].order_ids == std::vector<std::string>{"a", "c"});  // still working
    // The venue confirms; then nothing works.
    guard.on_execution(report(ExecutionType::cancelled, "a"));
    guard.on_execution(report(ExecutionType::cancelled, "c"));
    CHECK(guard.working_orders().empty());
}

TEST_CASE("the dead man's switch halts and cancels when no heartbeat comes in time",
          "[guard][lifecycle][kill]") {
    Desk f(lifecycle_scope(), std::chrono::milliseconds(500));
    REQUIRE(f.guard.check(buy("a", "1")).allowed());
    f.clock.advance(std::chrono::milliseconds(400));
    f.guard.heartbeat();
    f.clock.advance(std::chrono::milliseconds(400));  // 400 ms after the heartbeat: fine
    f.guard.process_incidents();
    CHECK_FALSE(f.guard.halted());
    REQUIRE(f.guard.check(buy("b", "1")).allowed());
    f.clock.advance(std::chrono::milliseconds(101));  // 501 ms: lapsed
    f.guard.process_incidents();
    CHECK(f.guard.halted());
    REQUIRE(f.cancels.size() == 1);
    CHECK(f.cancels[0].order_ids == std::vector<std::string>{"a", "b"});
    CHECK(f.cancels[0].reason.find("dead man's switch") != std::string::npos);
    CHECK(f.guard.check(buy("c", "1")).reasons.contains(ReasonCode::halted));
    // A person resumes; the switch starts again from then.
    f.guard.resume("J. Doe");
    CHECK(f.guard.check(buy("c", "1")).allowed());
    // A lapse seen first by check() halts in that call; the desk records it and cancels.
    f.clock.advance(std::chrono::milliseconds(600));
    CHECK(f.guard.check(buy("d", "1")).reasons.contains(ReasonCode::halted));
    f.guard.process_incidents();
    REQUIRE(f.cancels.size() == 2);
    CHECK(f.cancels[1].order_ids == std::vector<std::string>{"a", "b", "c"});
    const auto halt = f.guard.current_halt();
    REQUIRE(halt);
    CHECK(halt->reason.find("dead man's switch") != std::string::npos);
}

TEST_CASE("the dead man's switch fires on the incident thread while nothing is checked",
          "[guard][lifecycle][kill]") {
    SystemClock clock;
    Scope scope = lifecycle_scope();
    scope.trading_hours = {TradingWindow{0x7f, 0, 1440}};
    std::atomic<int> calls{0};
    std::vector<std::string> ids;
    std::mutex mutex;
    GuardOptions o;
    o.observe = false;
    o.heartbeat_timeout = std::chrono::milliseconds(100);
    o.on_cancel_all = [&](const CancelAll& c) {
        std::lock_guard<std::mutex> lock(mutex);
        ids = c.order_ids;
        ++calls;
    };
    Guard guard(scope, clock, o);
    REQUIRE(guard.check(buy("a", "1")).allowed());
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (calls.load() == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(calls.load() == 1);
    CHECK(guard.halted());
    std::lock_guard<std::mutex> lock(mutex);
    CHECK(ids == std::vector<std::string>{"a"});
}

TEST_CASE(
    "no order is allowed after a halt returns, and the cancel callback got every working "
    "id, with four threads checking",
    "[guard][lifecycle][kill]") {
    ManualClock clock{test::monday(12)};
    Scope scope = parse_scope_json(test::seed_scope_json);
    scope.limits = PreTradeLimits{};
    GuardOptions o;
    o.observe = false;
    o.incident_thread = false;
    o.working_order_capacity = Scope::max_open_orders_limit;  // tracking without lifecycle limits
    std::vector<std::string> cancelled;
    o.on_cancel_all = [&](const CancelAll& c) { cancelled = c.order_ids; };
    Guard guard(scope, clock, o);
    std::atomic<bool> halt_returned{false}, stop{false};
    std::atomic<long> violations{0}, after_checks{0}, allowed_total{0};
    std::vector<std::vector<std::string>> allowed(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            Order o = test::good_order();
            for (long i = 0; !stop.load(); ++i) {
                const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
                o.client_order_id = id;
                const bool after = halt_returned.load();
                const Decision d = guard.check(o);
                if (after) {
                    ++after_checks;
                    if (d.allowed()) ++violations;
                } else if (d.allowed()) {
                    allowed[static_cast<std::size_t>(t)].push_back(id);
                    ++allowed_total;
                }
            }
        });
    }
    while (allowed_total.load() < 5000) std::this_thread::yield();
    guard.halt("race test", "tester");
    const std::vector<std::string> at_return = cancelled;
    halt_returned.store(true);
    while (after_checks.load() < 20000) std::this_thread::yield();
    stop.store(true);
    for (auto& th : threads) th.join();
    CHECK(violations.load() == 0);
    std::set<std::string> every(at_return.begin(), at_return.end());
    std::size_t allowed_count = 0, missing = 0;
    for (const auto& list : allowed)
        for (const auto& id : list) {
            ++allowed_count;
            if (!every.count(id)) ++missing;
        }
    CHECK(missing == 0);
    CHECK(at_return.size() == allowed_count);
    CHECK(allowed_count >= 5000);
}

TEST_CASE("a revocation from the feed cancels what works, off the feed's thread",
          "[guard][lifecycle][kill]") {
    TestAuthority authority;
    Scope scope = lifecycle_scope();
    std::mutex mutex;
    std::vector<CancelAll> got;
    std::thread::id delivered_on;
    GuardOptions o;
    o.observe = false;
    o.on_cancel_all = [&](const CancelAll& c) {
        std::lock_guard<std::mutex> lock(mutex);
        got.push_back(c);
        delivered_on = std::this_thread::get_id();
    };
    GuardCredentials credentials = authority.credentials_for(scope);
    credentials.revocation_feed = authority.revocation_feed();
    auto guard = std::make_unique<Guard>(credentials, authority.clock(), o);
    REQUIRE(guard->check(buy("a", "1")).allowed());
    // The feed calls its listeners under its own lock, on the revoking thread: the cancel list
    // must not be handed over there (a callback touching the feed would deadlock).
    authority.revoke(*guard->certificate(), "keyCompromise: leaked");
    CHECK(guard->halted());
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (!got.empty() || std::chrono::steady_clock::now() > until) break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::lock_guard<std::mutex> lock(mutex);
    REQUIRE(got.size() == 1);
    CHECK(got[0].order_ids == std::vector<std::string>{"a"});
    CHECK(got[0].by == "revocation feed");
    CHECK(delivered_on != std::this_thread::get_id());
}

TEST_CASE(
    "a renewed certificate with new limits keeps the working orders and positions, and one "
    "that changes the instruments of tracked orders is refused",
    "[guard][lifecycle][rotate]") {
    TestAuthority authority;
    auto guard = authority.guard_for(lifecycle_scope());
    REQUIRE(guard->check(buy("a", "2")).allowed());
    guard->on_execution(fill("a", "1"));
    const AgentCertificate first = *guard->certificate();
    const std::string agent = first.agent_id();
    const auto key =
        authority.kms()->public_key(authority.kms()->find_key("agent:" + agent)).spki_der;
    auto approve_and_issue = [&](const Scope& s) {
        authority.ca().record_approval(
            approve_scope(*authority.kms(), agent, "Second Officer", s, authority.clock().now_ns()),
            s);
        authority.clock().advance(std::chrono::seconds(1));
        return authority.ca().issue_for_agent(agent, key);
    };
    // A tighter position limit: long 3. Position 1 + working 1 (the rest of a) = 2.
    Scope tighter = lifecycle_scope();
    tighter.limits.max_position = {{"BTC_EUR", {parse_decimal("3"), parse_decimal("3")}}};
    guard->rotate(approve_and_issue(tighter));
    CHECK(guard->working_orders() == std::vector<std::string>{"a"});
    CHECK(position(*guard, "BTC_EUR") == "1");
    CHECK(guard->check(buy("b", "1")).allowed());  // 1 + 1 + 1 = 3
    CHECK(guard->check(buy("c", "0.5")).reasons.contains(ReasonCode::max_position_exceeded));
    // Without ETH_EUR: the tracked orders are kept by instrument, so this is refused.
    Scope narrower = tighter;
    narrower.instruments = {"BTC_EUR", "SOL_EUR"};
    narrower.limits.max_order_quantity = {{"BTC_EUR", parse_decimal("10")}};
    const AgentCertificate next = approve_and_issue(narrower);
    CHECK_THROWS_WITH(guard->rotate(next), Catch::Contains("instruments"));
    CHECK(guard->certificate()->serial() != next.serial());
    CHECK(guard->working_orders() == std::vector<std::string>{"a", "b"});
}

TEST_CASE("the audit log holds every request, every report and the cancel list, and verifies",
          "[guard][lifecycle][audit]") {
    TestAuthority authority;
    const std::string path =
        (std::filesystem::temp_directory_path() / "kakunin-guard-lifecycle.jsonl").string();
    std::filesystem::remove(path);
    std::filesystem::remove(path + ".started");
    std::filesystem::remove(path + ".journal");
    GuardCredentials creds = authority.credentials_for(lifecycle_scope());
    const AgentCertificate cert = creds.certificate;
    std::string halt_id;
    {
        GuardOptions options;
        options.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(path)};
        options.on_cancel_all = [](const CancelAll&) {};
        Guard guard(creds, authority.clock(), options);
        REQUIRE(guard.check(buy("a", "1")).allowed());
        REQUIRE(guard.check(buy("b", "1")).allowed());
        CHECK(guard.amend(Amend{"a", parse_decimal("2"), std::nullopt}).allowed());
        CHECK_FALSE(guard.cancel(Cancel{"zz"}).allowed());
        guard.on_execution(report(ExecutionType::ack, "a"));
        guard.on_execution(fill("a", "0.5", "40000"));
        CHECK(guard.cancel(Cancel{"b"}).allowed());
        guard.on_execution(report(ExecutionType::cancelled, "b"));
        guard.reduce_only("risk review", "J. Doe");
        guard.lift_reduce_only("J. Doe");
        halt_id = guard.halt("end of day", "J. Doe");
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    }
    AuditCertificates certs;
    certs.add_der(cert.der());
    AuditVerifyOptions vo;
    vo.require_record_signatures = true;
    const AuditVerifyResult r = verify_audit_log_file(path, certs, vo);
    INFO(r.message);
    CHECK(r.ok);
    std::ifstream in(path);
    std::vector<std::string> events;
    std::string cancel_all;
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        if (j.value("kind", "") != "record") continue;
        events.push_back(j["event"]);
        if (j["event"] == "guard.cancel_all") cancel_all = j["payload"].dump();
    }
    const std::vector<std::string> expected = {"order.allowed",     "order.allowed",
                                               "amend.allowed",     "cancel.rejected",
                                               "execution.ack",     "execution.fill",
                                               "cancel.allowed",    "execution.cancelled",
                                               "guard.reduce_only", "guard.reduce_only_lifted",
                                               "guard.halted",      "guard.cancel_all"};
    CHECK(events == expected);
    CHECK(cancel_all.find("\"order_ids\":[\"a\"]") != std::string::npos);
    CHECK(cancel_all.find(halt_id) != std::string::npos);
}

TEST_CASE("an automatic halt on an anomaly cancels what works", "[guard][lifecycle][kill]") {
    // Seven days of small BTC_EUR buys from eu-west-1, approved; then SOL_EUR from another
    // region: an instrument and a region never seen score over the revocation level.
    const TimeNs day = 86'400'000'000'000LL;
    const TimeNs begin = test::monday(0) - 7 * day;
    Scope scope = lifecycle_scope();
    scope.trading_hours = {TradingWindow{0x7f, 0, 1440}};
    scope.limits.max_orders_per_second.reset();
    scope.limits.max_messages_per_second.reset();
    BaselineBuilder builder(scope, "agent");
    builder.start(begin);
    int n = 0;
    for (TimeNs t = begin; t < begin + 7 * day; t += 120'000'000'000LL)
        builder.observe(buy("l" + std::to_string(n++), n % 2 ? "0.05" : "0.15"), t);
    const Baseline baseline = builder.finalize(begin + 7 * day);
    auto kms = SoftwareKms::in_memory();
    GuardOptions o;
    o.incident_thread = false;
    o.baseline =
        ApprovedBaseline{baseline, approve_baseline(*kms, baseline, "C. Officer", test::monday(9))};
    std::vector<CancelAll> got;
    o.on_cancel_all = [&](const CancelAll& c) { got.push_back(c); };
    ManualClock clock{test::monday(10)};
    Guard guard(scope, clock, o);
    REQUIRE(guard.check(buy("a", "0.05")).allowed());
    const std::string odd_id = "odd";  // outlives the order, whose id is a view
    Order odd = buy(odd_id, "0.05");
    odd.instrument = "SOL_EUR";
    odd.region = "eu-central-1";
    const Decision d = guard.check(odd);
    REQUIRE(d.reasons.contains(ReasonCode::anomaly_revocation));
    CHECK(got.empty());  // handed over by the desk, not in check()
    guard.process_incidents();
    REQUIRE(got.size() == 1);
    CHECK(got[0].order_ids == std::vector<std::string>{"a"});
    CHECK(got[0].by == "kakunin");
}

TEST_CASE("a lapse seen by check() is recorded before a person lifts it, even without the desk",
          "[guard][lifecycle][kill]") {
    Desk f(lifecycle_scope(), std::chrono::milliseconds(100));
    REQUIRE(f.guard.check(buy("a", "1")).allowed());
    f.clock.advance(std::chrono::milliseconds(200));
    CHECK(f.guard.check(buy("b", "1")).reasons.contains(ReasonCode::halted));
    f.guard.resume("J. Doe");  // no process_incidents() in between
    const std::vector<GuardEvent> events = f.guard.events();
    REQUIRE(events.size() == 2);
    CHECK(events[0].kind == GuardEvent::Kind::halted);
    CHECK(events[0].reason.find("dead man's switch") != std::string::npos);
    CHECK(events[1].kind == GuardEvent::Kind::resumed);
    CHECK(events[1].halt_id == events[0].halt_id);
    REQUIRE(f.cancels.size() == 1);
    CHECK(f.cancels[0].order_ids == std::vector<std::string>{"a"});
}

TEST_CASE("GuardCounters count check() calls only, and reports without tracking are said once",
          "[guard][lifecycle]") {
    Desk f;
    REQUIRE(f.guard.check(buy("a", "1")).allowed());
    f.guard.amend(Amend{"a", parse_decimal("2"), std::nullopt});
    f.guard.cancel(Cancel{"a"});
    f.guard.cancel(Cancel{"zz"});
    const GuardCounters c = f.guard.counters();
    CHECK(c.checks == 1);
    CHECK(c.allowed == 1);
    CHECK(c.rejected == 0);
    ManualClock clock{test::monday(12)};
    Guard plain(parse_scope_json(test::seed_scope_json), clock);
    std::vector<std::string> messages;
    plain.set_error_handler([&](std::string_view m) { messages.emplace_back(m); });
    for (int i = 0; i < 3; ++i) CHECK_FALSE(plain.on_execution(fill("x", "1")).applied);
    REQUIRE(messages.size() == 1);
    CHECK(messages[0].find("without lifecycle tracking") != std::string::npos);
}

TEST_CASE("a clock stepping back neither blinds nor resets the dead man's switch",
          "[guard][lifecycle][kill]") {
    Desk f(lifecycle_scope(), std::chrono::milliseconds(500));
    f.clock.advance(std::chrono::seconds(10));
    f.guard.heartbeat();
    REQUIRE(f.guard.check(buy("a", "1")).allowed());
    f.clock.advance(std::chrono::seconds(-9));  // NTP steps the clock back 9 s
    f.guard.heartbeat();                        // the strategy's last sign of life
    f.clock.advance(std::chrono::milliseconds(400));
    f.guard.process_incidents();
    CHECK_FALSE(f.guard.halted());
    f.clock.advance(std::chrono::milliseconds(200));  // 600 ms of clock since that heartbeat
    f.guard.process_incidents();
    CHECK(f.guard.halted());
    REQUIRE(f.cancels.size() == 1);
    CHECK(f.cancels[0].order_ids == std::vector<std::string>{"a"});
}

TEST_CASE("a cancel list holds the orders working when the halt took effect, none placed after",
          "[guard][lifecycle][kill]") {
    Desk f(lifecycle_scope(), std::chrono::milliseconds(100));
    REQUIRE(f.guard.check(buy("a", "1")).allowed());
    f.clock.advance(std::chrono::milliseconds(200));
    CHECK(f.guard.check(buy("b", "1")).reasons.contains(ReasonCode::halted));  // lapse seen here
    f.guard.resume("J. Doe");  // records the lapse first, then lifts it
    REQUIRE(f.guard.check(buy("c", "1")).allowed());
    f.guard.process_incidents();
    REQUIRE(f.cancels.size() == 1);
    CHECK(f.cancels[0].order_ids == std::vector<std::string>{"a"});
    CHECK_FALSE(f.guard.halted());
}

TEST_CASE("an error handler may look at the Guard when the audit queue is full",
          "[guard][lifecycle][audit]") {
    TestAuthority authority;
    // A sink that blocks until released: the queue of 8 fills with records.
    struct Gate {
        std::mutex m;
        std::condition_variable cv;
        bool open = false;
        bool entered = false;  // the writer is inside the sink, holding its batch
    };
    auto gate = std::make_shared<Gate>();
    struct BlockingSink final : LockingAuditSink {
        std::shared_ptr<Gate> gate;
        explicit BlockingSink(std::shared_ptr<Gate> g) : gate(std::move(g)) {}
        std::string name() const override { return "blocking"; }
        void do_append(const std::string_view*, std::size_t) override {
            std::unique_lock<std::mutex> lock(gate->m);
            gate->entered = true;
            gate->cv.notify_all();
            gate->cv.wait(lock, [&] { return gate->open; });
        }
        void do_flush() override {}
    };
    GuardOptions options;
    options.audit = AuditTrailOptions{std::make_shared<BlockingSink>(gate)};
    options.audit->queue_capacity = 8;
    options.audit->reserve = 2;
    options.audit->state_reserve = 1;  // one entry for state changes: the second finds it full
    options.audit->record_signatures = false;
    Guard guard(authority.credentials_for(lifecycle_scope()), authority.clock(), options);
    std::atomic<int> looked{0};
    guard.set_error_handler([&](std::string_view) {
        (void)guard.reduce_only_in_force();  // takes the hot lock: must not be held here
        ++looked;
    });
    guard.check(buy("", "1"));  // rejected (no id): the writer takes it and blocks in the sink
    {
        std::unique_lock<std::mutex> lock(gate->m);
        REQUIRE(gate->cv.wait_for(lock, std::chrono::seconds(10), [&] { return gate->entered; }));
    }
    for (int i = 0; i < 40; ++i) guard.check(buy("", "1"));  // rejected: fill the queue
    std::atomic<bool> done{false};
    std::thread t([&] {
        guard.reduce_only("risk review", "J. Doe");  // takes the state reserve's one entry
        guard.lift_reduce_only("J. Doe");            // the queue is full: reported
        guard.reduce_only("risk review", "J. Doe");
        done = true;
    });
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const bool finished = done.load();
    {
        std::lock_guard<std::mutex> lock(gate->m);
        gate->open = true;
    }
    gate->cv.notify_all();
    if (!finished) {
        FAIL_CHECK("reduce_only() did not return: the error handler ran under the hot lock");
        std::_Exit(3);  // the thread is stuck for good
    }
    t.join();
    CHECK(looked.load() >= 1);
}
