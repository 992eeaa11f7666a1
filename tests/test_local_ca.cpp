// LocalCa's lifecycle: state persisted in a directory and read back by a new process, CRL
// freshness, simulation certificates, concurrency, and the same CA on a real SoftHSM2 token.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <thread>

#include "kakunin/pkcs11_kms.hpp"
#include "pkcs11_test_support.hpp"
#include "x509_test_support.hpp"

using namespace kakunin;
using kakunin::test::TestPki;

namespace {

bool file_exists(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

struct Passphrase {
    Passphrase() { ::setenv(SoftwareKms::passphrase_variable, "local-ca-test-passphrase", 1); }
    ~Passphrase() { ::unsetenv(SoftwareKms::passphrase_variable); }
};

}  // namespace

TEST_CASE("LocalCa persists its state and a new process reads it back", "[local_ca]") {
    Passphrase pass;
    const std::string state = test::make_temp_dir("ca-state");
    ManualClock clock(utc(2024, 3, 4, 9, 0, 0));
    const Scope scope = parse_scope_json(test::seed_scope_json);
    std::string serial_kept, serial_revoked;
    std::vector<std::uint8_t> agent_spki;
    {
        std::shared_ptr<Kms> kms = SoftwareKms::open(state + "/keys");
        LocalCaOptions opts;
        opts.state_dir = state;
        CaInitOptions init;
        init.algorithm = KeyAlgorithm::ecdsa_p256;
        auto ca = LocalCa::init(kms, clock, opts, init);
        CHECK_THROWS_AS(LocalCa::init(kms, clock, opts, init), Error);  // already a CA there
        ca->register_agent({"agent-7", "Desk 3", "BTC market making", clock.now_ns(), "Jane Roe"});
        CHECK_THROWS_AS(ca->register_agent({"agent-7", "x", "y", 0, "z"}), Error);
        CHECK_THROWS_AS(ca->register_agent({"../etc", "x", "y", 0, "z"}), Error);
        // Issuing before any approval is refused.
        agent_spki =
            kms->public_key(kms->create_key("agent:agent-7", KeyAlgorithm::ed25519)).spki_der;
        try {
            ca->issue_for_agent("agent-7", agent_spki);
            FAIL("issued without an approval");
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::unauthorised);
        }
        ca->record_approval(approve_scope(*kms, "agent-7", "Jane Doe", scope, clock.now_ns()),
                            scope);
        serial_kept = ca->issue_for_agent("agent-7", agent_spki).serial();
        clock.advance(std::chrono::minutes(5));
        serial_revoked = ca->issue_for_agent("agent-7", agent_spki).serial();
        ca->revoke(serial_revoked, "cessationOfOperation");
    }
    for (const char* f : {"ca.pem", "crl.pem", "ca.json", "revocations.json",
                          "registrations/agent-7.json", "approvals/agent-7.json"})
        CHECK(file_exists(state + "/" + f));
    CHECK(file_exists(state + "/certs/" + serial_kept + ".pem"));

    clock.advance(std::chrono::minutes(1));
    std::shared_ptr<Kms> kms = SoftwareKms::open(state + "/keys");
    LocalCaOptions opts;
    opts.state_dir = state;
    auto ca = LocalCa::open(kms, clock, opts);
    REQUIRE(ca->registration("agent-7"));
    CHECK(ca->registration("agent-7")->purpose == "BTC market making");
    const auto approved = ca->approved_scope("agent-7");
    REQUIRE(approved);
    CHECK(to_json(approved->scope) == to_json(scope));
    CHECK(approved->approval.approver == "Jane Doe");
    CHECK(ca->issued_certificates("agent-7").size() == 2);
    CHECK(ca->is_revoked(serial_revoked));
    CHECK_FALSE(ca->is_revoked(serial_kept));
    REQUIRE(ca->revocations().size() == 1);
    CHECK(ca->revocations()[0].reason == "cessationOfOperation");

    // What the CLI's `cert verify --dir` does: files only.
    const TrustAnchor anchor = TrustAnchor::load_file(state + "/ca.pem");
    const auto crl = CertificateRevocationList::load_file(state + "/crl.pem");
    CHECK(crl.lists(serial_revoked));
    const auto kept = AgentCertificate::load_file(state + "/certs/" + serial_kept + ".pem");
    const auto gone = AgentCertificate::load_file(state + "/certs/" + serial_revoked + ".pem");
    CHECK(verify_certificate(kept, anchor, &crl, clock.now_ns()).ok());
    CHECK(verify_certificate(gone, anchor, &crl, clock.now_ns()).status ==
          CertificateStatus::revoked);

    // Renewal under the existing approval needs no new approval; the revocation list carries on.
    const AgentCertificate renewed = ca->issue_for_agent("agent-7", agent_spki);
    CHECK(verify_certificate(renewed, anchor, &crl, clock.now_ns()).ok());
    ca->revoke(serial_kept, "superseded");
    const auto crl2 = ca->current_crl();
    CHECK(crl2.lists(serial_kept));
    CHECK(crl2.lists(serial_revoked));

    // A CA opened with a Kms that does not hold its key is refused.
    auto other = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    CHECK_THROWS_AS(LocalCa::open(other, clock, opts), Error);
    LocalCaOptions empty;
    empty.state_dir = test::make_temp_dir("no-ca");
    try {
        LocalCa::open(kms, clock, empty);
        FAIL("opened an empty directory");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::not_found);
    }
}

TEST_CASE("LocalCa CRLs are short-lived and reissued from the Clock", "[local_ca]") {
    TestPki pki;
    const auto first = pki.ca->current_crl();
    CHECK(first.this_update() == pki.clock.now_ns());
    CHECK(first.next_update() == pki.clock.now_ns() + 3600'000'000'000LL);
    pki.clock.advance(std::chrono::minutes(10));
    CHECK(pki.ca->current_crl().der() == first.der());  // still fresh
    pki.clock.advance(std::chrono::minutes(25));
    const auto second = pki.ca->current_crl();
    CHECK(second.this_update() == pki.clock.now_ns());
    CHECK(second.der() != first.der());
    const auto forced = pki.ca->issue_crl();
    CHECK(forced.this_update() == pki.clock.now_ns());
}

TEST_CASE("simulation certificates are marked in their subject", "[local_ca]") {
    TestPki pki;
    const auto approved = pki.ca->approved_scope(pki.agent_id);
    REQUIRE(approved);
    IssueRequest req;
    req.agent_id = pki.agent_id;
    req.scope = approved->scope;
    req.approval = approved->approval;
    req.public_key = pki.agent_spki;
    req.simulation = true;
    req.validity = std::chrono::hours(24 * 30);
    const AgentCertificate sim = pki.ca->issue(req);
    CHECK(sim.is_simulation());
    CHECK(sim.subject().find("simulation") != std::string::npos);
    CHECK(sim.not_after() - sim.not_before() == 30LL * 24 * 3600 * 1'000'000'000);
    CHECK(pki.verify(sim).ok());
}

TEST_CASE("LocalCa issues and revokes from several threads", "[local_ca]") {
    TestPki pki;
    std::vector<std::string> serials[4];
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 5; ++i) {
                const AgentCertificate c = pki.issue();
                serials[t].push_back(c.serial());
                if (i % 2 == 0) pki.ca->revoke(c.serial(), "superseded");
                (void)pki.ca->current_crl();
            }
        });
    for (auto& t : threads) t.join();
    CHECK(pki.ca->issued_certificates().size() == 20);
    CHECK(pki.ca->revocations().size() == 12);
    const auto crl = pki.ca->issue_crl();
    CHECK(crl.revoked_serials().size() == 12);
    for (const auto& list : serials)
        for (std::size_t i = 0; i < list.size(); ++i) CHECK(crl.lists(list[i]) == (i % 2 == 0));
}

TEST_CASE("LocalCa signs through a real SoftHSM2 token", "[local_ca][pkcs11]") {
    auto& hsm = kakunin_test::SoftHsm::instance();
    const std::string token = hsm.new_token("local-ca");
    std::shared_ptr<Kms> kms = Pkcs11Kms::open(hsm.module(), token, kakunin_test::k_user_pin);
    ManualClock clock(utc(2024, 5, 6, 8, 0, 0));
    CaInitOptions init;
    init.algorithm = KeyAlgorithm::ecdsa_p256;
    auto ca = LocalCa::init(kms, clock, {}, init);
    const Scope scope = parse_scope_json(test::seed_scope_json);
    ca->register_agent({"agent-hsm", "Desk 1", "token test", clock.now_ns(), "Jane Roe"});
    ca->record_approval(approve_scope(*kms, "agent-hsm", "Jane Doe", scope, clock.now_ns(),
                                      KeyAlgorithm::ecdsa_p256),
                        scope);
    const KeyHandle agent = kms->create_key("agent:agent-hsm", KeyAlgorithm::ecdsa_p256);
    const auto spki = kms->public_key(agent).spki_der;
    const AgentCertificate cert = ca->issue_for_agent("agent-hsm", spki);
    const auto crl = ca->current_crl();
    VerifyOptions opts;
    opts.expected_public_key = spki;
    CHECK(verify_certificate(cert, ca->trust_anchor(), &crl, clock.now_ns(), opts).ok());

    const std::string dir = test::make_temp_dir("hsm-openssl");
    test::write_file(dir + "/ca.pem", ca->trust_anchor().pem());
    test::write_file(dir + "/agent.pem", cert.pem());
    test::write_file(dir + "/crl.pem", crl.pem());
    std::string out;
    CHECK(test::run("openssl verify -attime " +
                        std::to_string(clock.now_ns() / 1'000'000'000 + 60) +
                        " -ignore_critical -crl_check -CAfile " + dir + "/ca.pem -CRLfile " + dir +
                        "/crl.pem " + dir + "/agent.pem",
                    &out) == 0);
    INFO(out);
    ca->revoke(cert.serial(), "keyCompromise");
    const auto crl2 = ca->current_crl();
    CHECK(verify_certificate(cert, ca->trust_anchor(), &crl2, clock.now_ns()).status ==
          CertificateStatus::revoked);
}
