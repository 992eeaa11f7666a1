// kakunin/testing.hpp — real certificates for strategy unit tests, in one line. A TestAuthority
// is an in-memory CA on a software Kms with a ManualClock; what it mints are genuine X.509
// certificates that go through the same validation and enforcement path as production.
//
//   kakunin::TestAuthority authority;                          // Monday 2024-01-08 12:00 UTC
//   auto guard = authority.guard_for(R"({"version":1, ... })");  // or a kakunin::Scope
//   CHECK(guard->check(order).allowed());
//   authority.clock().advance(std::chrono::hours(25));
//   CHECK(guard->check(order).reasons.contains(kakunin::ReasonCode::certificate_expired));
//   CHECK_THROWS(kakunin::Guard(authority.revoked(scope), authority.clock()));
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "kakunin/ca.hpp"
#include "kakunin/firm_limits.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/revocation.hpp"

namespace kakunin {

/// Threading: one test at a time (not thread-safe itself); the Guards it makes are.
class TestAuthority {
public:
    static constexpr const char* officer = "Test Officer";

    explicit TestAuthority(TimeNs start = utc(2024, 1, 8, 12, 0, 0));
    /// Agents named `agent_prefix` + N ("test-agent-" N by default): distinct ids for several
    /// authorities writing to one database (fleet rows and audit logs are keyed by agent).
    TestAuthority(TimeNs start, std::string agent_prefix);
    ~TestAuthority();
    TestAuthority(const TestAuthority&) = delete;
    TestAuthority& operator=(const TestAuthority&) = delete;

    ManualClock& clock() noexcept;
    LocalCa& ca() noexcept;
    std::shared_ptr<Kms> kms() const noexcept;
    std::shared_ptr<InProcessRevocationFeed> revocation_feed() const noexcept;

    /// Registers a fresh agent, approves `scope` as Test Officer, issues a 24 h certificate and
    /// returns a Guard on it, on this authority's clock and revocation feed.
    std::unique_ptr<Guard> guard_for(const Scope& scope);
    std::unique_ptr<Guard> guard_for(std::string_view scope_json);

    /// A fresh agent's valid credentials: the building block of guard_for().
    GuardCredentials credentials_for(const Scope& scope,
                                     std::chrono::seconds validity = std::chrono::hours(24));

    // Credentials a Guard must refuse, each for its own reason (see CertificateStatus).
    GuardCredentials expired(const Scope& scope);        ///< notAfter an hour ago
    GuardCredentials not_yet_valid(const Scope& scope);  ///< notBefore in an hour
    GuardCredentials revoked(const Scope& scope);        ///< on the CRL given with it
    GuardCredentials wrong_ca(const Scope& scope);       ///< issued by another CA
    GuardCredentials tampered(const Scope& scope);       ///< one byte of the scope altered
    GuardCredentials key_mismatch(const Scope& scope);   ///< another key than the agent's

    /// A renewal of `cert` under the same approval, valid 24 h from now.
    AgentCertificate renew(const AgentCertificate& cert);
    /// Revokes on the CA and pushes the revocation to every Guard from guard_for().
    void revoke(const AgentCertificate& cert, std::string_view reason);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

/// A FirmLimitSource for unit tests and backtests: each attached Guard gets one lease of one
/// budget, granted by hand (no keeper, nothing shared). Not thread-safe itself.
///
///   auto firm = std::make_shared<kakunin::TestFirmLimits>(FirmBudgetKind::daily_notional,
///                                                         "EUR", 1000 * 1000000);
///   options.firm_limits = firm;   Guard guard(scope, clock, options);
///   firm->lease()->grant(250 * 1000000, 0, clock.now_ns() + 1'000'000'000);  // 250 EUR, 1 s
class TestFirmLimits final : public FirmLimitSource {
public:
    TestFirmLimits(FirmBudgetKind kind, std::string currency, std::int64_t slice)
        : m_kind(kind), m_currency(std::move(currency)), m_slice(slice) {}
    bool holds_working_orders() const noexcept override { return firm_budget_held(m_kind); }
    std::vector<std::shared_ptr<FirmLease>> attach(std::string_view, const Clock&) override {
        m_leases.push_back(std::make_shared<FirmLease>(
            "test", m_kind, m_kind == FirmBudgetKind::open_orders ? "" : m_currency, m_slice));
        return {m_leases.back()};
    }
    void detach(const std::vector<std::shared_ptr<FirmLease>>&) noexcept override { ++m_detached; }
    /// The lease of the latest Guard attached (null before any).
    std::shared_ptr<FirmLease> lease() const {
        return m_leases.empty() ? nullptr : m_leases.back();
    }
    int detached() const noexcept { return m_detached; }

private:
    FirmBudgetKind m_kind;
    std::string m_currency;
    std::int64_t m_slice;
    std::vector<std::shared_ptr<FirmLease>> m_leases;
    int m_detached = 0;
};

}  // namespace kakunin
