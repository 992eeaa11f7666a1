// TestAuthority: an in-memory LocalCa on an in-memory SoftwareKms with a ManualClock.
#include "kakunin/testing.hpp"

#include <algorithm>

#include "kakunin/software_kms.hpp"

namespace kakunin {

struct TestAuthority::Impl {
    Impl(TimeNs start, std::string prefix) : clock(start), agent_prefix(std::move(prefix)) {
        kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
        ca = LocalCa::init(kms, clock, LocalCaOptions{}, CaInitOptions{});
        feed = std::make_shared<InProcessRevocationFeed>();
    }

    /// Registers agent N, approves the scope, makes the agent's key.
    std::string new_agent(LocalCa& on, const Scope& scope, Kms& approver_kms) {
        const std::string id = agent_prefix + std::to_string(++agents);
        on.register_agent({id, "unit tests", "strategy unit test", clock.now_ns(), officer});
        const ScopeApproval approval =
            approve_scope(approver_kms, id, officer, scope, clock.now_ns());
        on.record_approval(approval, scope);
        kms->create_key("agent:" + id, KeyAlgorithm::ed25519);
        return id;
    }

    GuardCredentials credentials(const AgentCertificate& cert, const std::string& agent) {
        return GuardCredentials{
            cert, ca->trust_anchor(), ca->current_crl(), kms, kms->find_key("agent:" + agent), {},
            feed};
    }

    AgentCertificate issue_at(const std::string& agent, const Scope& scope, TimeNs not_before,
                              std::chrono::seconds validity) {
        IssueRequest request;
        request.agent_id = agent;
        request.scope = scope;
        request.approval = ca->approved_scope(agent)->approval;
        request.public_key = kms->public_key(kms->find_key("agent:" + agent)).spki_der;
        request.not_before = not_before;
        request.validity = validity;
        return ca->issue(request);
    }

    ManualClock clock;
    std::shared_ptr<Kms> kms;
    std::unique_ptr<LocalCa> ca;
    std::shared_ptr<InProcessRevocationFeed> feed;
    std::string agent_prefix;
    int agents = 0;
};

TestAuthority::TestAuthority(TimeNs start) : TestAuthority(start, "test-agent-") {}
TestAuthority::TestAuthority(TimeNs start, std::string agent_prefix)
    : m_impl(std::make_unique<Impl>(start, std::move(agent_prefix))) {}
TestAuthority::~TestAuthority() = default;

ManualClock& TestAuthority::clock() noexcept { return m_impl->clock; }
LocalCa& TestAuthority::ca() noexcept { return *m_impl->ca; }
std::shared_ptr<Kms> TestAuthority::kms() const noexcept { return m_impl->kms; }
std::shared_ptr<InProcessRevocationFeed> TestAuthority::revocation_feed() const noexcept {
    return m_impl->feed;
}

GuardCredentials TestAuthority::credentials_for(const Scope& scope, std::chrono::seconds validity) {
    const std::string agent = m_impl->new_agent(*m_impl->ca, scope, *m_impl->kms);
    const AgentCertificate cert = m_impl->ca->issue_for_agent(
        agent, m_impl->kms->public_key(m_impl->kms->find_key("agent:" + agent)).spki_der, validity);
    return m_impl->credentials(cert, agent);
}

std::unique_ptr<Guard> TestAuthority::guard_for(const Scope& scope) {
    return std::make_unique<Guard>(credentials_for(scope), m_impl->clock);
}

std::unique_ptr<Guard> TestAuthority::guard_for(std::string_view scope_json) {
    return guard_for(parse_scope_json(scope_json));
}

GuardCredentials TestAuthority::expired(const Scope& scope) {
    const std::string agent = m_impl->new_agent(*m_impl->ca, scope, *m_impl->kms);
    const TimeNs now = m_impl->clock.now_ns();
    return m_impl->credentials(
        m_impl->issue_at(agent, scope, now - 3'600'000'000'000 * 3, std::chrono::hours(2)), agent);
}

GuardCredentials TestAuthority::not_yet_valid(const Scope& scope) {
    const std::string agent = m_impl->new_agent(*m_impl->ca, scope, *m_impl->kms);
    const TimeNs now = m_impl->clock.now_ns();
    return m_impl->credentials(
        m_impl->issue_at(agent, scope, now + 3'600'000'000'000, std::chrono::hours(24)), agent);
}

GuardCredentials TestAuthority::revoked(const Scope& scope) {
    GuardCredentials c = credentials_for(scope);
    m_impl->ca->revoke(c.certificate.serial(), "test: revoked on purpose");
    c.crl = m_impl->ca->current_crl();
    return c;
}

GuardCredentials TestAuthority::wrong_ca(const Scope& scope) {
    // Another CA with its own key, in its own Kms; the agent's key is ours, so only the issuer
    // is wrong.
    std::shared_ptr<Kms> other_kms(SoftwareKms::in_memory());
    CaInitOptions init;
    init.name = "Some Other CA";
    auto other = LocalCa::init(other_kms, m_impl->clock, LocalCaOptions{}, init);
    const std::string agent = m_impl->new_agent(*other, scope, *other_kms);
    const AgentCertificate cert = other->issue_for_agent(
        agent, m_impl->kms->public_key(m_impl->kms->find_key("agent:" + agent)).spki_der);
    return m_impl->credentials(cert, agent);
}

GuardCredentials TestAuthority::tampered(const Scope& scope) {
    GuardCredentials c = credentials_for(scope);
    std::vector<std::uint8_t> der = c.certificate.der();
    // Change the first letter of the first instrument inside the scope extension: still a
    // well-formed scope, but no longer what the CA signed.
    const std::string& needle = scope.instruments.front();
    auto it = std::search(der.begin(), der.end(), needle.begin(), needle.end());
    if (it == der.end())
        throw Error(ErrorCategory::invalid_state, "tampered: instrument not found in the DER");
    *it = static_cast<std::uint8_t>(*it == 'Z' ? 'Y' : *it + 1);
    c.certificate = AgentCertificate::from_der(der);
    return c;
}

GuardCredentials TestAuthority::key_mismatch(const Scope& scope) {
    GuardCredentials c = credentials_for(scope);
    c.key = m_impl->kms->create_key("agent:someone-else-" + std::to_string(++m_impl->agents),
                                    KeyAlgorithm::ed25519);
    return c;
}

AgentCertificate TestAuthority::renew(const AgentCertificate& cert) {
    const std::string agent = cert.agent_id();
    return m_impl->ca->issue_for_agent(
        agent, m_impl->kms->public_key(m_impl->kms->find_key("agent:" + agent)).spki_der);
}

void TestAuthority::revoke(const AgentCertificate& cert, std::string_view reason) {
    m_impl->ca->revoke(cert.serial(), reason);
    m_impl->feed->publish(
        Revocation{cert.serial(), cert.agent_id(), std::string(reason), m_impl->clock.now_ns()});
}

}  // namespace kakunin
