// Behaviour: the baseline (learning, JSON, approval), each scoring component and threshold, the
// automatic halt, incidents and the signed human steps. Deterministic on ManualClock.
#include <atomic>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "http_test_server.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"
#include "x509_test_support.hpp"

using namespace kakunin;

namespace {

// Around the clock, every day; limits wide enough that behaviour, not authority, decides.
const char* const scope_json = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "50000000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a", "exchange_b"],
  "trading_hours": [{"days": ["Mon","Tue","Wed","Thu","Fri","Sat","Sun"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {"max_orders_per_second": 50}
})";

const TimeNs minute_ns = 60'000'000'000LL;
const TimeNs hour_ns = 60 * minute_ns;
const TimeNs day_ns = 24 * hour_ns;
const TimeNs start = utc(2024, 1, 8, 0, 0, 0);  // a Monday

struct OrderText {
    std::string instrument = "BTC_EUR";
    std::string region = "eu-west-1";
};

Order order(const OrderText& t, const char* quantity, const char* price = "40000") {
    Order o;
    o.client_order_id = "t";
    o.instrument = t.instrument;
    o.counterparty = "exchange_a";
    o.region = t.region;
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal(price);
    return o;
}

/// Seven days: an order every 2 minutes from 06:00 to 21:59 UTC, 7 of 10 in BTC_EUR and the
/// rest in ETH_EUR, sizes cycling 0.1 .. 1.0 BTC-equivalent (notional 4,000 .. 40,000 EUR).
BaselineBuilder learn(const std::string& agent, std::uint32_t days = 7) {
    BaselineBuilder b(parse_scope_json(scope_json), agent);
    b.start(start);
    const OrderText btc, eth{"ETH_EUR", "eu-west-1"};
    unsigned n = 0;
    for (TimeNs t = start; t < start + TimeNs(days) * day_ns; t += 2 * minute_ns) {
        const auto h = floor_div(floor_mod(t, day_ns), hour_ns);
        if (h < 6 || h >= 22) continue;
        const std::string q = "0." + std::to_string(n % 10) + "5";
        if (n % 10 < 7)
            b.observe(order(btc, q.c_str()), t);
        else
            b.observe(order(eth, q.c_str(), "40000"), t);
        ++n;
    }
    return b;
}

struct World {
    explicit World(TimeNs now = start + 7 * day_ns + 10 * hour_ns) : authority(now) {}
    TestAuthority authority;  // Monday 10:00 of the second week by default
    GuardCredentials credentials = authority.credentials_for(parse_scope_json(scope_json));
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
        o.authority = std::shared_ptr<CertificateAuthority>(&authority.ca(), [](auto*) {});
        o.incident_thread = false;
        return std::make_unique<Guard>(credentials, authority.clock(), o);
    }
};

}  // namespace

TEST_CASE("the builder refuses to finalise before the observation minimum", "[baseline]") {
    BaselineBuilder b = learn("agent-1", 6);
    CHECK_THROWS_WITH(b.finalize(start + 6 * day_ns + 23 * hour_ns),
                      Catch::Contains("at least 7 days"));
    ScoringPolicy strict;
    strict.min_observation_days = 14;
    BaselineBuilder c(parse_scope_json(scope_json), "agent-1", strict);
    c.start(start);
    c.observe(order({}, "1"), start);
    CHECK_THROWS_WITH(c.finalize(start + 10 * day_ns), Catch::Contains("at least 14 days"));
    CHECK_NOTHROW(c.finalize(start + 14 * day_ns));
    ScoringPolicy lax;
    lax.min_observation_days = 3;
    CHECK_THROWS_WITH(validate(lax), Catch::Contains("7..14"));
}

TEST_CASE("a learned baseline has the quantiles, rates and hours of what it saw", "[baseline]") {
    const Baseline b = learn("agent-1").finalize(start + 7 * day_ns);
    // 16 active hours x 30 orders x 7 days.
    CHECK(b.orders == 16 * 30 * 7);
    // Sizes 0.05 .. 0.95 BTC at 40,000: p99 is 38,000 within the sketch's 1 %.
    const double p99 = parse_decimal(b.notional_p99).to_double();
    CHECK(p99 == Approx(38000).epsilon(0.011));
    const double p50 = parse_decimal(b.notional_p50).to_double();
    CHECK(p50 == Approx(18000).epsilon(0.011));
    REQUIRE(b.instruments.size() == 2);
    CHECK(b.instruments[0].instrument == "BTC_EUR");
    CHECK(b.instruments[0].orders == 16 * 21 * 7);
    REQUIRE(b.regions.size() == 1);
    CHECK(b.regions[0].region == "eu-west-1");
    // 30 an hour for 16 of 24 hours: mean 20.
    CHECK(b.hourly_mean_milli == 20'000);
    CHECK(b.hourly_sd_milli > 10'000);
    CHECK(b.hour_of_week_orders[10] == 30);  // Monday 10:00
    CHECK(b.hour_of_week_orders[23] == 0);   // Monday 23:00
}

TEST_CASE("baseline JSON round-trips byte for byte and bad documents name the member",
          "[baseline]") {
    const Baseline b = learn("agent-1").finalize(start + 7 * day_ns);
    const std::string text = to_json(b);
    CHECK(to_json(parse_baseline_json(text)) == text);
    CHECK(text.find("e+") == std::string::npos);  // integers and decimal strings only
    CHECK(text.find("e-") == std::string::npos);
    auto broken = [&](const std::string& from, const std::string& to) {
        std::string s = text;
        const auto pos = s.find(from);
        REQUIRE(pos != std::string::npos);
        return s.replace(pos, from.size(), to);
    };
    CHECK_THROWS_WITH(parse_baseline_json(broken("\"orders\":", "\"order\":")),
                      Catch::Contains("order: unknown member"));
    CHECK_THROWS_WITH(parse_baseline_json(broken("kakunin-baseline/v1", "kakunin-baseline/v9")),
                      Catch::Contains("format"));
    CHECK_THROWS_WITH(parse_baseline_json(broken("\"warn_ppm\":750000", "\"warn_ppm\":0.75")),
                      Catch::Contains("policy.warn_ppm"));
    CHECK_THROWS_WITH(parse_baseline_json(broken("\"revoke_ppm\":850000", "\"revoke_ppm\":1")),
                      Catch::Contains("revoke_ppm"));
    CHECK_THROWS_WITH(parse_baseline_json("{\"format\": "), Catch::Contains("baseline"));
}

TEST_CASE("the Guard enforces only an approved baseline whose hash matches", "[baseline]") {
    World w;
    Baseline b = w.baseline;
    auto approval = approve_baseline(*w.authority.kms(), b, "C. Officer", start, 1);
    CHECK(check_baseline_approval(approval, b).empty());

    SECTION("altered after approval") {
        Baseline altered = b;
        altered.notional_p99 = "999999999";
        GuardOptions o;
        o.baseline = ApprovedBaseline{altered, approval};
        CHECK_THROWS_WITH(Guard(w.credentials, w.authority.clock(), o),
                          Catch::Contains("baseline refused") && Catch::Contains("SHA-256"));
    }
    SECTION("a forged signature") {
        approval.signature[5] = approval.signature[5] == 'A' ? 'B' : 'A';
        GuardOptions o;
        o.baseline = ApprovedBaseline{b, approval};
        CHECK_THROWS_WITH(Guard(w.credentials, w.authority.clock(), o),
                          Catch::Contains("signature does not verify"));
    }
    SECTION("another agent's baseline") {
        Baseline other = learn("someone-else").finalize(start + 7 * day_ns);
        GuardOptions o;
        o.baseline = ApprovedBaseline{
            other, approve_baseline(*w.authority.kms(), other, "C. Officer", start, 1)};
        CHECK_THROWS_WITH(Guard(w.credentials, w.authority.clock(), o),
                          Catch::Contains("someone-else"));
    }
    SECTION("an approver the firm does not know") {
        GuardOptions o;
        o.baseline = ApprovedBaseline{b, approval};
        o.person_key_check = [](std::string_view, std::string_view) {
            return std::string("not a registered officer key");
        };
        CHECK_THROWS_WITH(Guard(w.credentials, w.authority.clock(), o),
                          Catch::Contains("not a registered officer key"));
    }
    SECTION("approval JSON round-trips") {
        CHECK(to_json(baseline_approval_from_json(to_json(approval))) == to_json(approval));
        CHECK_THROWS_WITH(baseline_approval_from_json("{\"agent\":\"a\"}"),
                          Catch::Contains("version: missing"));
    }
}

TEST_CASE("normal orders score low and each anomaly warns on its own", "[score]") {
    World w;
    auto g = w.guard();
    const OrderText btc;
    Decision d = g->check(order(btc, "0.5"));
    CHECK(d.verdict == Verdict::allow);
    CHECK(d.score_ppm < 300'000);

    struct Case {
        const char* name;
        OrderText text;
        const char* quantity;
        std::size_t component;
        TimeNs at;
    };
    const TimeNs monday_10 = start + 7 * day_ns + 10 * hour_ns;
    const Case cases[] = {
        {"size 11x the p99", btc, "10.5", 0, monday_10},
        {"an instrument never traded", {"SOL_EUR", "eu-west-1"}, "0.5", 2, monday_10},
        {"a region never seen", {"BTC_EUR", "eu-central-1"}, "0.5", 4, monday_10},
        {"an hour never active", btc, "0.5", 3, start + 7 * day_ns + 23 * hour_ns},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        World fresh(c.at);
        auto guard = fresh.guard();
        const Decision a = guard->check(order(c.text, c.quantity));
        CHECK(a.verdict == Verdict::warn);
        CHECK(a.reasons.contains(ReasonCode::anomaly_warning));
        CHECK(a.score_ppm >= 750'000);
        CHECK(a.score_ppm < 850'000);
        CHECK(a.components_ppm[c.component] >= 750'000);
        for (std::size_t i = 0; i < score_component_count; ++i)
            if (i != c.component && !(c.component == 2 && i == 0))
                CHECK(a.components_ppm[i] < 300'000);
    }
}

TEST_CASE("the size component follows the documented curve", "[score]") {
    const double l10 = std::log(10.0);
    CHECK(detail::excess(1.0, l10, 0.75) == 0.0);
    CHECK(detail::excess(0.5, l10, 0.75) == 0.0);
    CHECK(detail::excess(10.0, l10, 0.75) == Approx(0.75));
    CHECK(detail::excess(100.0, l10, 0.75) == Approx(1.0));
    CHECK(detail::excess(1e6, l10, 0.75) == 1.0);
    CHECK(detail::excess(std::sqrt(10.0), l10, 0.75) == Approx(0.375));
}

TEST_CASE("a burst at 20x the hourly rate warns within 10 minutes", "[score]") {
    World w;
    auto g = w.guard();
    const OrderText btc;
    const TimeNs begin = w.authority.clock().now_ns();
    TimeNs warned_at = -1;
    // Baseline: 30 an hour while active. Burst: 600 an hour = one every 6 s.
    for (int i = 0; i < 200 && warned_at < 0; ++i) {
        w.authority.clock().set(begin + i * 6'000'000'000LL);
        const Decision d = g->check(order(btc, "0.5"));
        if (d.verdict == Verdict::warn) {
            warned_at = d.ts_ns;
            CHECK(d.components_ppm[1] >= 750'000);
        }
        REQUIRE(d.verdict != Verdict::reject);
    }
    REQUIRE(warned_at >= 0);
    CHECK(warned_at - begin <= 10 * minute_ns);
    INFO("warned after " << (warned_at - begin) / 1'000'000'000 << " s");
}

TEST_CASE("one extreme or two strong components revoke and halt in the same call", "[score]") {
    World w;
    auto g = w.guard();
    std::vector<ReplacementRequest> requests;
    const Decision d = g->check(order({"SOL_EUR", "eu-central-1"}, "0.5"));
    CHECK(d.verdict == Verdict::reject);
    CHECK(d.reasons.contains(ReasonCode::anomaly_revocation));
    CHECK(d.score_ppm >= 850'000);
    CHECK(g->halted());
    CHECK(g->revoked());
    // The very next order, even a normal one, is refused.
    const Decision next = g->check(order({}, "0.5"));
    CHECK(next.verdict == Verdict::reject);
    CHECK(next.reasons.contains(ReasonCode::halted));
    CHECK(next.reasons.contains(ReasonCode::certificate_revoked));

    g->process_incidents();
    // The CA revoked the certificate and published it.
    CHECK(w.authority.ca().is_revoked(w.credentials.certificate.serial()));
    const auto incidents = g->incidents();
    REQUIRE(incidents.size() == 1);
    CHECK(incidents[0].state == IncidentState::revoked);
    CHECK(incidents[0].score_ppm == d.score_ppm);
    const auto notes = w.notes->notifications();
    REQUIRE(!notes.empty());
    CHECK(notes.back().kind == Notification::Kind::revocation);
    CHECK(notes.back().summary.find(w.credentials.certificate.serial()) != std::string::npos);
    CHECK_THROWS_WITH(g->resume("Somebody"), Catch::Contains("revoked"));

    // Post-incident review by a named person, signed.
    auto review = sign_incident_review(*w.authority.kms(), w.agent, incidents[0].id, "R. Reviewer",
                                       "prompt injection through a news feed", start);
    auto forged = review;
    forged.root_cause = "nothing happened";
    CHECK_THROWS_WITH(g->review_incident(forged), Catch::Contains("does not verify"));
    g->review_incident(review);
    CHECK(g->incidents()[0].state == IncidentState::reviewed);
}

TEST_CASE("size 100x the p99 alone revokes", "[score]") {
    World w;
    auto g = w.guard();
    const Decision d = g->check(order({}, "100"));
    CHECK(d.components_ppm[0] == 1'000'000);
    CHECK(d.verdict == Verdict::reject);
    CHECK(g->halted());
}

TEST_CASE("no order from any thread is allowed after the revoking call", "[score][threads]") {
    World w;
    auto g = w.guard();
    std::atomic<bool> go{false}, revoked{false};
    std::atomic<int> allowed_after{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            while (!go.load()) std::this_thread::yield();
            for (int i = 0; i < 20'000; ++i) {
                // The clock stands still, so the frequency component may revoke before the
                // big order does: whichever call revokes, nothing is allowed after it returns.
                const bool before = revoked.load();
                const Decision d = g->check(order({}, t == 0 && i == 5'000 ? "100" : "0.5"));
                if (d.reasons.contains(ReasonCode::anomaly_revocation)) revoked.store(true);
                if (before && d.allowed()) allowed_after.fetch_add(1);
            }
        });
    go.store(true);
    for (auto& th : threads) th.join();
    CHECK(revoked.load());
    CHECK(allowed_after.load() == 0);
}

TEST_CASE("a warning opens one incident, unacknowledged it escalates", "[incident]") {
    World w;
    auto g = w.guard();
    const OrderText odd{"BTC_EUR", "eu-central-1"};
    CHECK(g->check(order(odd, "0.5")).verdict == Verdict::warn);
    CHECK(g->check(order(odd, "0.5")).verdict == Verdict::warn);
    g->process_incidents();
    auto incidents = g->incidents();
    REQUIRE(incidents.size() == 1);
    CHECK(incidents[0].warnings == 2);
    CHECK(incidents[0].state == IncidentState::open);
    REQUIRE(w.notes->size() == 1);
    CHECK(w.notes->notifications()[0].kind == Notification::Kind::warning);
    CHECK(w.notes->notifications()[0].incident_id == incidents[0].id);

    w.authority.clock().advance(std::chrono::seconds(299));
    g->process_incidents();
    CHECK(w.notes->size() == 1);
    w.authority.clock().advance(std::chrono::seconds(2));
    g->process_incidents();
    REQUIRE(w.notes->size() == 2);
    CHECK(w.notes->notifications()[1].kind == Notification::Kind::escalation);
    CHECK(g->incidents()[0].escalated);
    CHECK_FALSE(g->halted());  // the default escalation notifies

    g->acknowledge_incident(incidents[0].id, "On Call", "looking");
    g->resolve_incident(incidents[0].id, "On Call", "new region rolled out, expected");
    CHECK(g->incidents()[0].state == IncidentState::resolved);
    CHECK(g->incidents()[0].history.size() == 4);  // opened, escalated, acknowledged, resolved
    CHECK_THROWS_WITH(g->resolve_incident(incidents[0].id, "On Call", ""),
                      Catch::Contains("resolved"));
}

TEST_CASE("acknowledged in time, an incident does not escalate", "[incident]") {
    World w;
    auto g = w.guard();
    CHECK(g->check(order({"BTC_EUR", "eu-central-1"}, "0.5")).verdict == Verdict::warn);
    g->process_incidents();
    g->acknowledge_incident(g->incidents()[0].id, "On Call", "on it");
    w.authority.clock().advance(std::chrono::minutes(10));
    g->process_incidents();
    CHECK_FALSE(g->incidents()[0].escalated);
    CHECK(w.notes->size() == 1);
}

TEST_CASE("escalation can halt, only a signed re-enable lifts an automatic halt", "[incident]") {
    World w;
    ScoringPolicy p;
    p.halt_on_escalation = true;
    p.investigation_window_s = 60;
    auto g = w.guard(p);
    CHECK(g->check(order({"BTC_EUR", "eu-central-1"}, "0.5")).verdict == Verdict::warn);
    g->process_incidents();
    w.authority.clock().advance(std::chrono::seconds(61));
    g->process_incidents();
    CHECK(g->halted());
    CHECK(g->check(order({}, "0.5")).reasons.contains(ReasonCode::halted));
    CHECK_THROWS_WITH(g->resume("Desk Head"), Catch::Contains("signed"));

    auto st = sign_reenable(*w.authority.kms(), w.agent, g->current_halt()->halt_id, "Desk Head",
                            "region confirmed", w.authority.clock().now_ns());
    auto forged = st;
    forged.reason = "whatever";
    CHECK_THROWS_WITH(g->reenable(forged), Catch::Contains("does not verify"));
    auto other = sign_reenable(*w.authority.kms(), "agent-other", st.halt_id, "Desk Head", "x", 0);
    CHECK_THROWS(g->reenable(other));
    g->reenable(st);
    CHECK_FALSE(g->halted());
    CHECK(g->check(order({}, "0.5")).allowed());
}

TEST_CASE("the incident thread handles warnings without the caller", "[incident][threads]") {
    World w;
    Baseline b = w.baseline;
    GuardOptions o;
    o.baseline = ApprovedBaseline{b, approve_baseline(*w.authority.kms(), b, "C. Officer", 0, 1)};
    o.notifier = w.notes;
    Guard g(w.credentials, w.authority.clock(), o);
    CHECK(g.check(order({"BTC_EUR", "eu-central-1"}, "0.5")).verdict == Verdict::warn);
    CHECK(w.notes->wait_for(1, std::chrono::seconds(5)));
    CHECK(g.incidents().size() == 1);
}

TEST_CASE("a Guard without a baseline observes what it allows", "[baseline]") {
    World w;
    Guard g(w.credentials, w.authority.clock());
    REQUIRE(g.observation());
    CHECK_FALSE(g.enforcing_baseline());
    for (int i = 0; i < 10; ++i) CHECK(g.check(order({}, "0.5")).verdict == Verdict::allow);
    CHECK(g.check(order({"XRP_EUR", "eu-west-1"}, "0.5")).verdict == Verdict::reject);
    CHECK(g.observation()->orders() == 10);
    CHECK_THROWS_WITH(g.observation()->finalize(w.authority.clock().now_ns()),
                      Catch::Contains("at least 7 days"));
}

TEST_CASE("FileBaselineStore keeps versions and approvals, append-only", "[baseline]") {
    const std::string dir = test::make_temp_dir("baseline-store");
    FileBaselineStore store(dir);
    const Baseline b = learn("agent-1").finalize(start + 7 * day_ns);
    const StoredBaseline v1 = store.put_baseline("agent-1", to_json(b));
    const StoredBaseline v2 = store.put_baseline("agent-1", to_json(b));
    CHECK(v1.version == 1);
    CHECK(v2.version == 2);
    CHECK(store.get_baseline("agent-1")->version == 2);
    CHECK(store.get_baseline("agent-1", 1)->json == to_json(b));
    CHECK(v1.sha256_hex == baseline_sha256_hex(b));
    CHECK_FALSE(store.get_baseline("agent-2"));
    auto kms = SoftwareKms::in_memory();
    const auto a = approve_baseline(*kms, b, "C. Officer", start, 1);
    store.put_approval(a);
    CHECK_THROWS_WITH(store.put_approval(a), Catch::Contains("already approved"));
    CHECK(store.get_approval("agent-1", 1)->signature == a.signature);
    CHECK_FALSE(store.get_approval("agent-1", 2));
    auto missing = a;
    missing.version = 9;
    CHECK_THROWS_WITH(store.put_approval(missing), Catch::Contains("no version 9"));
}

TEST_CASE("a warning reaches a real webhook within 5 s, and a hung endpoint never slows check()",
          "[incident][webhook]") {
    using namespace std::chrono;
    SECTION("healthy endpoint") {
        kakunin::test::HttpTestServer server;
        World w;
        Baseline b = w.baseline;
        GuardOptions o;
        o.baseline =
            ApprovedBaseline{b, approve_baseline(*w.authority.kms(), b, "C. Officer", 0, 1)};
        WebhookOptions wo;
        wo.url = server.url();
        o.notifier = std::make_shared<WebhookNotifier>(wo);
        Guard g(w.credentials, w.authority.clock(), o);
        const auto sent = steady_clock::now();
        CHECK(g.check(order({"BTC_EUR", "eu-central-1"}, "0.5")).verdict == Verdict::warn);
        REQUIRE(server.wait_for_requests(1, seconds(5)));
        const auto latency = duration_cast<milliseconds>(steady_clock::now() - sent);
        WARN("warning delivered " << latency.count() << " ms after its order (RTS 6 Art. 16: 5 s)");
        CHECK(latency < seconds(5));
        const auto body = nlohmann::json::parse(server.requests()[0].body);
        CHECK(body["kind"] == "warning");
        CHECK(body["agent"] == w.agent);
        CHECK(body["components_ppm"]["origin"].get<std::uint32_t>() >= 750'000);
    }
    SECTION("endpoint that hangs") {
        kakunin::test::HttpTestServer server;
        server.set_delay(seconds(30));
        World w;
        Baseline b = w.baseline;
        GuardOptions o;
        o.baseline =
            ApprovedBaseline{b, approve_baseline(*w.authority.kms(), b, "C. Officer", 0, 1)};
        WebhookOptions wo;
        wo.url = server.url();
        wo.request_timeout = milliseconds(500);
        wo.shutdown_timeout = milliseconds(200);
        o.notifier = std::make_shared<WebhookNotifier>(wo);
        Guard g(w.credentials, w.authority.clock(), o);
        // 40 warning orders; every 4th after a jump past the investigation window, so ten
        // incidents open and ten notifications queue up behind the hung endpoint (the CRL in
        // force lasts an hour: nine jumps of six minutes stay inside it; four orders a window
        // stay inside the learned frequency, so nothing revokes).
        const auto start_time = steady_clock::now();
        for (int i = 0; i < 40; ++i) {
            if (i != 0 && i % 4 == 0) w.authority.clock().advance(minutes(6));
            const Decision d = g.check(order({"BTC_EUR", "eu-central-1"}, "0.5"));
            INFO("order " << i << ": " << to_string(d.verdict) << " score " << d.score_ppm
                          << (d.reasons.empty() ? "" : to_string(*d.reasons.begin())));
            REQUIRE(d.allowed());
        }
        const auto spent = duration_cast<milliseconds>(steady_clock::now() - start_time);
        WARN("40 warning checks against a hung webhook took " << spent.count() << " ms");
        CHECK(spent < milliseconds(200));  // blocking on the endpoint once would take 500 ms
        CHECK(g.wait_incidents(seconds(5)));
        CHECK(g.incidents().size() == 10);
    }
}
