// The Guard on a real certificate: it starts only on valid authority, rejects on expiry,
// stale CRLs and revocation with their own reasons, halts on a pushed revocation, and takes a
// renewed certificate without a restart.
#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

using namespace kakunin;
using test::good_order;

namespace {

const Scope& seed() {
    static const Scope s = parse_scope_json(test::seed_scope_json);
    return s;
}

std::string refusal(TestAuthority& authority, GuardCredentials c) {
    try {
        Guard g(std::move(c), authority.clock());
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::unauthorised);
        return e.what();
    }
    FAIL("the Guard started on bad credentials");
    return {};
}

std::set<ReasonCode> reasons(const Decision& d) { return {d.reasons.begin(), d.reasons.end()}; }

}  // namespace

TEST_CASE("guard_for mints a real certificate and enforces its scope") {
    TestAuthority authority;
    auto guard = authority.guard_for(seed());
    CHECK(guard->check(good_order()).allowed());
    Order o = good_order();
    o.instrument = "ADA_EUR";
    CHECK(reasons(guard->check(o)) == std::set<ReasonCode>{ReasonCode::instrument_not_allowed});
    const auto cert = guard->certificate();
    REQUIRE(cert.has_value());
    CHECK(cert->agent_id().rfind("test-agent-", 0) == 0);
    CHECK(to_json(cert->scope()) == to_json(seed()));
    CHECK(to_json(guard->scope()) == to_json(seed()));
    CHECK(cert->fingerprint().rfind("sha256:", 0) == 0);
    CHECK(cert->not_after() - cert->not_before() == 24LL * 3600 * 1'000'000'000);
}

TEST_CASE("forged or invalid credentials are refused, each with its own reason") {
    TestAuthority authority;
    CHECK_THAT(refusal(authority, authority.expired(seed())), Catch::Contains("expired"));
    CHECK_THAT(refusal(authority, authority.not_yet_valid(seed())),
               Catch::Contains("not_yet_valid"));
    CHECK_THAT(refusal(authority, authority.revoked(seed())), Catch::Contains(": revoked:"));
    CHECK_THAT(refusal(authority, authority.wrong_ca(seed())), Catch::Contains("wrong_ca"));
    CHECK_THAT(refusal(authority, authority.tampered(seed())), Catch::Contains("bad_signature"));
    CHECK_THAT(refusal(authority, authority.key_mismatch(seed())), Catch::Contains("key_mismatch"));
    GuardCredentials no_crl = authority.credentials_for(seed());
    no_crl.crl.reset();
    CHECK_THAT(refusal(authority, no_crl), Catch::Contains("crl_missing"));
    GuardCredentials stale = authority.credentials_for(seed());
    authority.clock().advance(std::chrono::hours(2));  // the CRL lives one hour
    CHECK_THAT(refusal(authority, stale), Catch::Contains("crl_expired"));
}

TEST_CASE("expiry, a stale CRL and time before notBefore reject with their own reasons") {
    TestAuthority authority;
    auto guard = authority.guard_for(seed());
    const auto cert = *guard->certificate();
    CHECK(guard->check(good_order()).allowed());

    authority.clock().set(cert.not_before() - 1'000'000'000);
    CHECK(guard->check(good_order()).reasons.contains(ReasonCode::certificate_not_yet_valid));

    // The CRL from construction is good for an hour.
    authority.clock().set(cert.not_before() + 3'600'000'000'000 + 1'000'000'000);
    const Decision stale = guard->check(good_order());
    CHECK(reasons(stale) == std::set<ReasonCode>{ReasonCode::revocation_status_stale});
    guard->update_crl(authority.ca().issue_crl());
    CHECK(guard->check(good_order()).allowed());

    // notAfter is inclusive to the second; one second later the certificate has expired.
    authority.clock().set(cert.not_after());
    guard->update_crl(authority.ca().issue_crl());
    CHECK_FALSE(guard->check(good_order()).reasons.contains(ReasonCode::certificate_expired));
    authority.clock().set(cert.not_after() + 1'000'000'000);
    CHECK(guard->check(good_order()).reasons.contains(ReasonCode::certificate_expired));
}

TEST_CASE("a pushed revocation halts the Guard before its next check") {
    TestAuthority authority;
    auto guard = authority.guard_for(seed());
    auto other = authority.guard_for(seed());
    const auto cert = *guard->certificate();
    CHECK(guard->check(good_order()).allowed());
    authority.revoke(cert, "anomaly score 0.91");
    CHECK(guard->halted());
    CHECK(guard->revoked());
    CHECK(reasons(guard->check(good_order())) ==
          std::set<ReasonCode>{ReasonCode::certificate_revoked, ReasonCode::halted});
    CHECK(other->check(good_order()).allowed());  // another agent's certificate is untouched
    try {
        guard->resume("A. Officer");
        FAIL("resumed on a revoked certificate");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_state);
    }
    // A newly issued certificate replaces it; trading resumes only when a person says so.
    guard->update_crl(authority.ca().current_crl());
    guard->rotate(authority.renew(cert));
    CHECK_FALSE(guard->revoked());
    CHECK(reasons(guard->check(good_order())) == std::set<ReasonCode>{ReasonCode::halted});
    guard->resume("A. Officer");
    CHECK(guard->check(good_order()).allowed());
    const auto events = guard->events();
    REQUIRE(events.size() >= 4);
    CHECK(events[0].kind == GuardEvent::Kind::revoked);
    CHECK(events[0].reason == "anomaly score 0.91");
    CHECK(events.back().kind == GuardEvent::Kind::resumed);
    CHECK(events.back().by == "A. Officer");
}

TEST_CASE("a CRL that lists the certificate halts the Guard, a forged CRL is refused") {
    TestAuthority authority;
    auto guard = authority.guard_for(seed());
    const auto cert = *guard->certificate();
    authority.ca().revoke(cert.serial(), "compromised");
    guard->update_crl(authority.ca().current_crl());
    CHECK(guard->halted());
    CHECK(guard->check(good_order()).reasons.contains(ReasonCode::certificate_revoked));

    TestAuthority elsewhere;
    auto guard2 = authority.guard_for(seed());
    CHECK_THROWS_AS(guard2->update_crl(elsewhere.ca().current_crl()), Error);
    CHECK(guard2->check(good_order()).allowed());
}

TEST_CASE("rotation swaps in a renewed certificate, a new scope needs a new approval") {
    TestAuthority authority;
    auto guard = authority.guard_for(seed());
    const auto first = *guard->certificate();
    std::vector<std::string> warnings;
    guard->set_error_handler([&](std::string_view m) { warnings.emplace_back(m); });

    // Two hours before expiry the handler hears it once.
    authority.clock().set(first.not_after() - 3'600'000'000'000);
    guard->update_crl(authority.ca().issue_crl());
    CHECK(guard->check(good_order()).allowed());
    CHECK(guard->check(good_order()).allowed());
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Catch::Contains(first.serial()));

    const AgentCertificate renewed = authority.renew(first);
    guard->rotate(renewed);
    CHECK(guard->certificate()->serial() == renewed.serial());
    authority.clock().set(first.not_after() + 1'000'000'000);
    guard->update_crl(authority.ca().issue_crl());
    CHECK(guard->check(good_order()).allowed());

    // Narrower scope: without ETH_EUR. The CA issues it only after a new approval.
    Scope narrower = seed();
    narrower.instruments = {"BTC_EUR", "SOL_EUR"};
    narrower.limits.max_order_quantity = {{"BTC_EUR", parse_decimal("10")}};
    const std::string agent = renewed.agent_id();
    const auto key =
        authority.kms()->public_key(authority.kms()->find_key("agent:" + agent)).spki_der;
    CHECK(to_json(authority.ca().issue_for_agent(agent, key).scope()) == to_json(seed()));
    authority.ca().record_approval(approve_scope(*authority.kms(), agent, "Second Officer",
                                                 narrower, authority.clock().now_ns()),
                                   narrower);
    guard->rotate(authority.ca().issue_for_agent(agent, key));
    Order eth = good_order();
    eth.instrument = "ETH_EUR";
    CHECK(reasons(guard->check(eth)) == std::set<ReasonCode>{ReasonCode::instrument_not_allowed});
    CHECK(guard->check(good_order()).allowed());

    // Another agent's certificate, or an expired one, is refused and the current one stays.
    auto other = authority.guard_for(seed());
    CHECK_THROWS_WITH(guard->rotate(*other->certificate()), Catch::Contains("not '" + agent + "'"));
    CHECK(guard->check(good_order()).allowed());
}

TEST_CASE("checks from four threads while the certificate rotates never see a broken state") {
    TestAuthority authority;
    Scope scope = seed();
    scope.limits = PreTradeLimits{};  // no rate or day limit: every order here is allowed
    auto guard = authority.guard_for(scope);
    const auto cert = *guard->certificate();
    std::atomic<bool> stop{false};
    std::atomic<long> rejected{0}, checks{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            const Order o = good_order();
            while (!stop.load()) {
                if (!guard->check(o).allowed()) ++rejected;
                ++checks;
            }
        });
    for (int i = 0; i < 10; ++i) guard->rotate(authority.renew(cert));
    stop.store(true);
    for (auto& th : threads) th.join();
    CHECK(rejected.load() == 0);
    CHECK(checks.load() > 0);
    CHECK(guard->certificate()->serial() != cert.serial());
}

TEST_CASE("every credential reason code is produced") {
    TestAuthority authority;
    std::set<ReasonCode> seen;
    auto guard = authority.guard_for(seed());
    const auto cert = *guard->certificate();
    auto note = [&](const Decision& d) { seen.insert(d.reasons.begin(), d.reasons.end()); };
    authority.clock().set(cert.not_before() - 1'000'000'000);
    note(guard->check(good_order()));
    authority.clock().set(cert.not_after() + 1'000'000'000);
    note(guard->check(good_order()));
    authority.revoke(cert, "test");
    note(guard->check(good_order()));
    for (ReasonCode r : all_reason_codes) {
        if (static_cast<int>(r) < 600) continue;
        INFO(to_string(r));
        CHECK(seen.count(r) == 1);
    }
}
