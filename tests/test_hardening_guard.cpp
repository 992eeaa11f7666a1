// Hardening of the Guard and its incident handling: a signed re-enable lifts only the halt it
// names, rotation never goes back and a compromised key stays refused, a clock stepping back
// never resets or loosens a limit, revocation-feed serials compare canonically, and halts and
// revocations reach the Notifier. Deterministic on ManualClock unless a test says otherwise.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli_test_support.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

using namespace kakunin;
using test::good_order;

namespace {

const TimeNs second_ns = 1'000'000'000LL;
const TimeNs minute_ns = 60 * second_ns;
const TimeNs hour_ns = 60 * minute_ns;
const TimeNs day_ns = 24 * hour_ns;
const TimeNs start = utc(2024, 1, 8, 0, 0, 0);  // a Monday

// Around the clock, every day; limits wide enough that behaviour, not authority, decides.
const char* const open_scope_json = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "50000000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a", "exchange_b"],
  "trading_hours": [{"days": ["Mon","Tue","Wed","Thu","Fri","Sat","Sun"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {"max_orders_per_second": 50}
})";

Scope scope_with_limits(const std::string& limits) {
    std::string s = open_scope_json;
    const std::string from = R"("limits": {"max_orders_per_second": 50})";
    s.replace(s.find(from), from.size(), "\"limits\": " + limits);
    return parse_scope_json(s);
}

Order order(const char* instrument, const char* region, const char* quantity,
            const char* price = "40000") {
    Order o;
    o.client_order_id = "h";
    o.instrument = instrument;
    o.counterparty = "exchange_a";
    o.region = region;
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal(price);
    return o;
}

/// Seven days: an order every 2 minutes from 06:00 to 21:59 UTC, 7 of 10 in BTC_EUR and the
/// rest in ETH_EUR (as tests/test_behaviour.cpp learns it).
BaselineBuilder learn(const std::string& agent) {
    BaselineBuilder b(parse_scope_json(open_scope_json), agent);
    b.start(start);
    unsigned n = 0;
    for (TimeNs t = start; t < start + 7 * day_ns; t += 2 * minute_ns) {
        const auto h = floor_div(floor_mod(t, day_ns), hour_ns);
        if (h < 6 || h >= 22) continue;
        const std::string q = "0." + std::to_string(n % 10) + "5";
        b.observe(order(n % 10 < 7 ? "BTC_EUR" : "ETH_EUR", "eu-west-1", q.c_str()), t);
        ++n;
    }
    return b;
}

/// A Guard on a real certificate enforcing an approved baseline; incidents driven by the test.
struct World {
    TestAuthority authority{start + 7 * day_ns + 10 * hour_ns};  // Monday 10:00, second week
    GuardCredentials credentials = authority.credentials_for(parse_scope_json(open_scope_json));
    std::string agent = credentials.certificate.agent_id();
    Baseline baseline = learn(agent).finalize(start + 7 * day_ns);
    std::shared_ptr<MemoryNotifier> notes = std::make_shared<MemoryNotifier>();

    std::unique_ptr<Guard> guard(ScoringPolicy policy = {}) {
        Baseline b = baseline;
        b.policy = policy;
        GuardOptions o;
        o.baseline = ApprovedBaseline{
            b, approve_baseline(*authority.kms(), b, "C. Officer", authority.clock().now_ns(), 1)};
        o.notifier = notes;
        o.incident_thread = false;
        return std::make_unique<Guard>(credentials, authority.clock(), o);
    }
};

/// An unseen region warns (score 0.80): an incident opens.
Order odd_order() { return order("BTC_EUR", "eu-central-1", "0.5"); }

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}

std::vector<Notification::Kind> kinds(const MemoryNotifier& n) {
    std::vector<Notification::Kind> out;
    for (const auto& x : n.notifications()) out.push_back(x.kind);
    return out;
}

}  // namespace

// ---- item 3: a signed re-enable is bound to the halt it lifts ----

TEST_CASE("a re-enable signed to end a drill does not lift a later automatic halt",
          "[hardening][reenable]") {
    World w;
    ScoringPolicy p;
    p.halt_on_escalation = true;
    p.investigation_window_s = 60;
    auto g = w.guard(p);
    Kms& kms = *w.authority.kms();
    auto now = [&] { return w.authority.clock().now_ns(); };

    const std::string drill_halt = g->halt("fire drill", "M. Rossi");
    REQUIRE(g->current_halt());
    CHECK(g->current_halt()->halt_id == drill_halt);
    const auto drill = sign_reenable(kms, w.agent, drill_halt, "B. Head", "drill over", now());
    g->reenable(drill);
    CHECK_FALSE(g->halted());
    CHECK_FALSE(g->current_halt());

    // An unacknowledged warning escalates into an automatic halt.
    CHECK(g->check(odd_order()).verdict == Verdict::warn);
    g->process_incidents();
    w.authority.clock().advance(std::chrono::seconds(61));
    g->process_incidents();
    REQUIRE(g->halted());
    const std::string auto_halt = g->current_halt()->halt_id;
    CHECK(auto_halt != drill_halt);

    try {
        g->reenable(drill);
        FAIL("the drill's statement lifted the automatic halt");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::unauthorised);
        CHECK_THAT(e.what(), Catch::Contains("stale") && Catch::Contains(drill_halt) &&
                                 Catch::Contains("lifted") && Catch::Contains(auto_halt));
    }
    CHECK(g->halted());
    CHECK(g->check(good_order()).reasons.contains(ReasonCode::halted));

    // Its own statement lifts it, once.
    const auto lift = sign_reenable(kms, w.agent, auto_halt, "B. Head", "region confirmed", now());
    g->reenable(lift);
    CHECK_FALSE(g->halted());
    CHECK(g->events().back().halt_id == auto_halt);
    g->halt("second drill", "M. Rossi");
    CHECK_THROWS_WITH(g->reenable(lift), Catch::Contains("stale") && Catch::Contains(auto_halt));
    CHECK(g->halted());
}

TEST_CASE("a manual halt on top of an automatic one cannot be used to lift it",
          "[hardening][reenable]") {
    World w;
    ScoringPolicy p;
    p.halt_on_escalation = true;
    p.investigation_window_s = 60;
    auto g = w.guard(p);
    Kms& kms = *w.authority.kms();
    auto now = [&] { return w.authority.clock().now_ns(); };
    CHECK(g->check(odd_order()).verdict == Verdict::warn);
    g->process_incidents();
    w.authority.clock().advance(std::chrono::seconds(61));
    g->process_incidents();
    REQUIRE(g->halted());
    const std::string auto_halt = g->current_halt()->halt_id;

    // Anyone may pull the kill switch: that must not turn the automatic halt into a drill.
    const std::string drill = g->halt("drill during the halt", "M. Rossi");
    CHECK(drill != auto_halt);
    CHECK(g->current_halt()->halt_id == auto_halt);
    CHECK_THROWS_WITH(
        g->reenable(sign_reenable(kms, w.agent, drill, "M. Rossi", "drill over", now())),
        Catch::Contains("stale") && Catch::Contains(auto_halt));
    CHECK(g->halted());
    CHECK(g->check(good_order()).reasons.contains(ReasonCode::halted));
    g->reenable(sign_reenable(kms, w.agent, auto_halt, "B. Head", "reviewed", now()));
    CHECK_FALSE(g->halted());
}

TEST_CASE("a re-enable for a superseded halt or another Guard's halt lifts nothing",
          "[hardening][reenable]") {
    TestAuthority authority;
    Kms& kms = *authority.kms();
    const GuardCredentials c = authority.credentials_for(parse_scope_json(test::seed_scope_json));
    const std::string agent = c.certificate.agent_id();
    Guard g(c, authority.clock());
    Guard other_process(c, authority.clock());  // the same agent, the same clock reading

    const std::string first = g.halt("venue outage", "M. Rossi");
    const std::string second = g.halt("risk review", "A. Schmidt");
    const std::string elsewhere = other_process.halt("venue outage", "M. Rossi");
    // Ids are unique even for the same agent, time and count in another Guard or process.
    CHECK(first != second);
    CHECK(elsewhere != first);
    CHECK(first.rfind("halt-" + agent + "-", 0) == 0);

    const TimeNs now = authority.clock().now_ns();
    CHECK_THROWS_WITH(g.reenable(sign_reenable(kms, agent, first, "B. Head", "ok", now)),
                      Catch::Contains("superseded by halt " + second));
    CHECK_THROWS_WITH(g.reenable(sign_reenable(kms, agent, elsewhere, "B. Head", "ok", now)),
                      Catch::Contains("not a halt of this guard"));
    CHECK(g.halted());
    g.reenable(sign_reenable(kms, agent, second, "B. Head", "reviewed", now));
    CHECK_FALSE(g.halted());
    CHECK(other_process.halted());
}

TEST_CASE("a re-enable statement names its halt in the signed text and the JSON",
          "[hardening][reenable]") {
    auto kms = SoftwareKms::in_memory();
    const Reenable r = sign_reenable(*kms, "agent-7", "halt-agent-7-x-1", "B. Head", "fixed", 5);
    CHECK(reenable_text(r) ==
          "kakunin-reenable/v2\nagent-7\nhalt-agent-7-x-1\nB. Head\n5\nfixed\n");
    CHECK(check_reenable(r).empty());
    const Reenable back = reenable_from_json(to_json(r));
    CHECK(back.halt_id == r.halt_id);
    CHECK(check_reenable(back).empty());
    Reenable moved = r;
    moved.halt_id = "halt-agent-7-x-2";  // the signature covers the halt
    CHECK_THAT(check_reenable(moved), Catch::Contains("does not verify"));
    // A v1 statement (no halt) is refused, naming the member.
    nlohmann::json v1 = nlohmann::json::parse(to_json(r));
    v1.erase("halt");
    CHECK_THROWS_WITH(reenable_from_json(v1.dump()), Catch::Contains("re-enable.halt"));
    CHECK_THROWS_AS(sign_reenable(*kms, "agent-7", "", "B. Head", "fixed", 5), Error);
}

// ---- item 8: rotation never goes back; a compromised key stays refused ----

TEST_CASE("after a renewal is revoked for keyCompromise the older certificate is refused",
          "[hardening][rotate]") {
    TestAuthority authority;
    auto guard = authority.guard_for(parse_scope_json(test::seed_scope_json));
    const AgentCertificate first = *guard->certificate();
    authority.clock().advance(std::chrono::minutes(1));
    const AgentCertificate renewal = authority.renew(first);
    guard->rotate(renewal);
    authority.revoke(renewal, "keyCompromise: key found on a public paste site");
    REQUIRE(guard->revoked());

    CHECK_THROWS_WITH(guard->rotate(first), Catch::Contains("key_compromised"));
    CHECK(guard->revoked());
    CHECK(guard->halted());
    CHECK(guard->certificate()->serial() == renewal.serial());
    CHECK(guard->check(good_order()).reasons.contains(ReasonCode::certificate_revoked));
    CHECK_THROWS_WITH(guard->resume("A. Officer"), Catch::Contains("keyCompromise"));
}

TEST_CASE("a newer certificate of a key revoked for keyCompromise is refused too",
          "[hardening][rotate]") {
    TestAuthority authority;
    auto guard = authority.guard_for(parse_scope_json(test::seed_scope_json));
    const AgentCertificate first = *guard->certificate();
    authority.clock().advance(std::chrono::minutes(1));
    const AgentCertificate newer = authority.renew(first);  // issued before the compromise
    authority.revoke(first, "keyCompromise: leaked");
    REQUIRE(guard->revoked());
    CHECK_THROWS_WITH(guard->rotate(newer), Catch::Contains("key_compromised"));
    CHECK(guard->revoked());
    CHECK(guard->certificate()->serial() == first.serial());
    CHECK(guard->check(good_order()).reasons.contains(ReasonCode::certificate_revoked));
}

TEST_CASE("a keyCompromise of a certificate the Guard held before revokes it",
          "[hardening][rotate]") {
    TestAuthority authority;
    auto guard = authority.guard_for(parse_scope_json(test::seed_scope_json));
    const AgentCertificate first = *guard->certificate();
    authority.clock().advance(std::chrono::minutes(1));
    guard->rotate(authority.renew(first));
    CHECK(guard->check(good_order()).allowed());
    // The old certificate superseded: not about the key, the Guard trades on.
    authority.revocation_feed()->publish(
        Revocation{first.serial(), first.agent_id(), "superseded", authority.clock().now_ns()});
    CHECK_FALSE(guard->revoked());
    // The same key compromised: every certificate carrying it, the one in force included.
    authority.revocation_feed()->publish(
        Revocation{first.serial(), first.agent_id(), "keyCompromise", authority.clock().now_ns()});
    CHECK(guard->revoked());
    CHECK(guard->check(good_order()).reasons.contains(ReasonCode::certificate_revoked));
}

TEST_CASE("rotation never goes back to an older or earlier-held certificate",
          "[hardening][rotate]") {
    TestAuthority authority;
    auto guard = authority.guard_for(parse_scope_json(test::seed_scope_json));
    const AgentCertificate first = *guard->certificate();
    CHECK_THROWS_WITH(guard->rotate(first),
                      Catch::Contains("not_newer") && Catch::Contains("in force"));
    authority.clock().advance(std::chrono::minutes(1));
    const AgentCertificate second = authority.renew(first);
    guard->rotate(second);
    CHECK_THROWS_WITH(guard->rotate(first), Catch::Contains("not_newer"));
    CHECK(guard->certificate()->serial() == second.serial());

    // A certificate issued earlier but never held is older all the same.
    auto other = authority.guard_for(parse_scope_json(test::seed_scope_json));
    const AgentCertificate a = *other->certificate();
    authority.clock().advance(std::chrono::minutes(1));
    const AgentCertificate b = authority.renew(a);
    authority.clock().advance(std::chrono::minutes(1));
    const AgentCertificate c = authority.renew(a);
    other->rotate(c);
    CHECK_THROWS_WITH(other->rotate(b),
                      Catch::Contains("not_newer") && Catch::Contains("notBefore"));
    CHECK(other->certificate()->serial() == c.serial());
    CHECK(other->check(good_order()).allowed());
}

// ---- item 9: a clock stepping back never resets or loosens a limit ----

TEST_CASE("a clock stepping back across midnight does not reset the daily total",
          "[hardening][clock]") {
    // 1,000 EUR a day; each order is 400 EUR.
    const Scope scope =
        scope_with_limits(R"({"max_daily_notional": {"currency": "EUR", "amount": "1000.00"}})");
    ManualClock clock(start + day_ns + 10 * second_ns);  // D+1 00:00:10
    Guard g(scope, clock);
    std::vector<std::string> reports;
    g.set_error_handler([&](std::string_view m) { reports.emplace_back(m); });

    const Order o = order("BTC_EUR", "eu-west-1", "0.01");
    int allowed = 0;
    for (int i = 0; i < 8; ++i) {
        // D+1 00:00:10, D 23:59:50, D+1 00:00:11, D 23:59:51, ...
        clock.set(i % 2 == 0 ? start + day_ns + (10 + i) * second_ns
                             : start + day_ns - (10 - i) * second_ns);
        if (g.check(o).allowed()) ++allowed;
    }
    CHECK(allowed == 2);  // 800 EUR of 1,000; the old code allowed all eight (3,200 EUR)
    CHECK(g.counters().rejected == 6);
    // Each of the four steps back is reported once.
    REQUIRE(reports.size() == 4);
    CHECK_THAT(reports[0], Catch::Contains("clock stepped back"));

    // A step back into the previous day and staying there: one report, still no reset.
    clock.set(start + day_ns - hour_ns);
    for (int i = 0; i < 3; ++i) {
        clock.advance(std::chrono::seconds(1));
        CHECK(g.check(o).reasons.contains(ReasonCode::daily_notional_exceeded));
    }
    CHECK(reports.size() == 5);
    // Past the latest time seen, the clock counts again; the next day resets.
    clock.set(start + 2 * day_ns + 10 * second_ns);
    CHECK(g.check(o).allowed());
    CHECK(reports.size() == 5);
}

TEST_CASE("a clock stepping back and forward again does not loosen the rate window",
          "[hardening][clock]") {
    const Scope scope = scope_with_limits(R"({"max_orders_per_second": 2})");
    const TimeNs t = start + 10 * hour_ns;
    ManualClock clock(t);
    Guard g(scope, clock);
    const Order o = good_order();
    int allowed = 0;
    for (int i = 0; i < 2; ++i) allowed += g.check(o).allowed();
    // An hour back for a few orders, then the clock is corrected: all within one real second.
    for (int i = 0; i < 4; ++i) {
        clock.set(t - hour_ns + i * 1'000'000);
        allowed += g.check(o).allowed();
    }
    clock.set(t + 100'000'000);
    for (int i = 0; i < 4; ++i) allowed += g.check(o).allowed();
    CHECK(allowed == 2);
}

/// Every reading one nanosecond later than the last, from any thread.
class TickingClock final : public Clock {
public:
    explicit TickingClock(TimeNs start) : m_next(start) {}
    TimeNs now_ns() const noexcept override { return m_next.fetch_add(1); }

private:
    mutable std::atomic<TimeNs> m_next;
};

TEST_CASE("concurrent checks on a clock that never goes back report no step",
          "[hardening][clock][threads]") {
    TickingClock clock(start + 10 * hour_ns);
    Guard g(scope_with_limits(R"({"max_orders_per_second": 1000000})"), clock);
    std::atomic<int> reports{0};
    g.set_error_handler([&](std::string_view) { reports.fetch_add(1); });
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 20'000; ++i) (void)g.check(good_order());
        });
    for (auto& th : threads) th.join();
    CHECK(g.counters().checks == 80'000);
    CHECK(reports.load() == 0);  // times follow the order of the checks
}

// ---- item 15: revocation-feed serials compare canonically ----

TEST_CASE("a feed revocation with the serial in upper case or with leading zeros halts",
          "[hardening][serial]") {
    TestAuthority authority;
    auto a = authority.guard_for(parse_scope_json(test::seed_scope_json));
    auto b = authority.guard_for(parse_scope_json(test::seed_scope_json));
    const AgentCertificate ca = *a->certificate(), cb = *b->certificate();
    authority.revocation_feed()->publish(
        Revocation{upper(ca.serial()), ca.agent_id(), "keyCompromise", authority.clock().now_ns()});
    authority.revocation_feed()->publish(
        Revocation{"0000" + cb.serial(), cb.agent_id(), "superseded", authority.clock().now_ns()});
    CHECK(a->halted());
    CHECK(a->revoked());
    CHECK(b->halted());
    CHECK(b->revoked());
    CHECK(a->check(good_order()).reasons.contains(ReasonCode::certificate_revoked));
}

// ---- item 18: halts and revocations reach the Notifier, from the background ----

TEST_CASE("a manual halt reaches the Notifier from the incident thread", "[hardening][notify]") {
    TestAuthority authority;
    auto notes = std::make_shared<MemoryNotifier>();
    GuardOptions o;
    o.notifier = notes;
    Guard g(authority.credentials_for(parse_scope_json(test::seed_scope_json)), authority.clock(),
            o);
    const std::string halt = g.halt("desk kill switch", "M. Rossi");
    REQUIRE(notes->wait_for(1, std::chrono::seconds(3)));
    const Notification n = notes->notifications().at(0);
    CHECK(n.kind == Notification::Kind::halt);
    CHECK(nlohmann::json::parse(n.details_json).at("halt") == halt);  // what a re-enable names
    CHECK(n.summary.find("desk kill switch") != std::string::npos);
    CHECK(n.summary.find("M. Rossi") != std::string::npos);
}

TEST_CASE("a feed or CRL revocation sends revocation and halt notifications",
          "[hardening][notify]") {
    TestAuthority authority;
    auto notes = std::make_shared<MemoryNotifier>();
    GuardOptions o;
    o.notifier = notes;
    Guard fed(authority.credentials_for(parse_scope_json(test::seed_scope_json)), authority.clock(),
              o);
    authority.revoke(*fed.certificate(), "keyCompromise: leaked");
    REQUIRE(notes->wait_for(2, std::chrono::seconds(3)));
    CHECK(kinds(*notes) == std::vector<Notification::Kind>{Notification::Kind::revocation,
                                                           Notification::Kind::halt});

    auto crl_notes = std::make_shared<MemoryNotifier>();
    o.notifier = crl_notes;
    GuardCredentials c = authority.credentials_for(parse_scope_json(test::seed_scope_json));
    c.revocation_feed = nullptr;  // the CRL alone tells this Guard
    Guard listed(c, authority.clock(), o);
    authority.ca().revoke(c.certificate.serial(), "superseded");
    listed.update_crl(authority.ca().current_crl());
    REQUIRE(listed.halted());
    REQUIRE(crl_notes->wait_for(2, std::chrono::seconds(3)));
    CHECK(kinds(*crl_notes) == std::vector<Notification::Kind>{Notification::Kind::revocation,
                                                               Notification::Kind::halt});
    CHECK(crl_notes->notifications()[0].summary.find(c.certificate.serial()) != std::string::npos);
}

TEST_CASE("resolving or reviewing an incident sends an incident notification",
          "[hardening][notify]") {
    World w;
    auto g = w.guard();
    CHECK(g->check(odd_order()).verdict == Verdict::warn);
    g->process_incidents();
    const std::string id = g->incidents().at(0).id;
    g->acknowledge_incident(id, "On Call", "looking");
    g->resolve_incident(id, "On Call", "expected");
    g->process_incidents();
    REQUIRE(w.notes->size() == 2);
    const Notification n = w.notes->notifications()[1];
    CHECK(n.kind == Notification::Kind::incident);
    CHECK(n.incident_id == id);
    CHECK(n.summary.find("resolved") != std::string::npos);
}

// ---- item 3 through the command line: `kakunin agent reenable --halt` ----

namespace {

using test::Run;
using test::slurp;

const test::Cli cli{"hardening"};

}  // namespace

TEST_CASE("agent reenable signs a statement bound to the halt named with --halt",
          "[hardening][reenable][cli]") {
    test::TempDir d("kakunin-hardening-guard");
    std::ofstream(d / "scope.json") << test::seed_scope_json;
    cli.ok(d, "ca init --dir state");
    cli.ok(d, "agent register --dir state --agent agent-7 --owner Desk --purpose 'market making'");
    cli.ok(d,
           "scope approve --dir state --agent agent-7 --scope scope.json --approver 'A. Officer'");

    const Run unbound = cli.run(
        d, "agent reenable --dir state --agent agent-7 --by 'D. Head' --reason 'feed fixed'");
    CHECK(unbound.code != 0);
    CHECK_THAT(unbound.err, Catch::Contains("--halt"));
    const Run foreign = cli.run(d,
                                "agent reenable --dir state --agent agent-7 --halt "
                                "halt-agent-8-20240108T130000Z-00ff00ff00ff00ff-1 --by "
                                "'D. Head' --reason 'feed fixed'");
    CHECK(foreign.code != 0);
    CHECK_THAT(foreign.err, Catch::Contains("not a halt of agent 'agent-7'"));

    const std::string halt = "halt-agent-7-20240108T130000Z-00ff00ff00ff00ff-1";
    // The agent's log shows that halt in force: what the command line checks a re-enable against.
    std::ofstream(d / "state/audit/agent-7.jsonl")
        << make_audit_record(0, utc(2024, 1, 8, 13, 0, 0), "agent-7", "agent-7",
                             "sha256:" + std::string(64, '0'), audit_event::guard_halted,
                             R"({"by":"M. Rossi","halt":")" + halt + R"(","reason":"drill"})")
               .line()
        << "\n";
    const Run r = cli.ok(d, "agent reenable --dir state --agent agent-7 --halt " + halt +
                                " --by 'D. Head' --reason 'feed fixed' --out reenable.json");
    CHECK_THAT(r.out, Catch::Contains(halt));
    const Reenable st = reenable_from_json(slurp(d / "reenable.json"));
    CHECK(st.halt_id == halt);
    CHECK(check_reenable(st).empty());
    CHECK(reenable_text(st).rfind("kakunin-reenable/v2\nagent-7\n" + halt + "\n", 0) == 0);
}

TEST_CASE("a CRL listing a held certificate for keyCompromise marks the Guard's key compromised",
          "[hardening][rotate][crl]") {
    TestAuthority authority;
    const Scope scope = parse_scope_json(test::seed_scope_json);
    GuardCredentials creds = authority.credentials_for(scope);  // no revocation feed: CRL only
    Guard guard(creds, authority.clock());
    const AgentCertificate first = *guard.certificate();
    authority.clock().advance(std::chrono::minutes(1));
    const AgentCertificate renewal = authority.renew(first);
    guard.rotate(renewal);
    authority.clock().advance(std::chrono::minutes(1));
    const AgentCertificate spare = authority.renew(first);  // issued before the compromise
    REQUIRE_FALSE(guard.revoked());

    authority.revoke(first, "keyCompromise: leaked");  // the CA lists every certificate of the key
    guard.update_crl(authority.ca().current_crl());
    CHECK(guard.revoked());
    CHECK(guard.halted());
    // The CRL's reason code reached the Guard: the key is refused, not only the serials listed.
    CHECK_THROWS_WITH(guard.rotate(spare), Catch::Contains("key_compromised"));
    CHECK_THROWS_WITH(guard.resume("A. Officer"), Catch::Contains("keyCompromise"));
}
