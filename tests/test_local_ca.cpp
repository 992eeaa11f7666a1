// LocalCa's lifecycle: state persisted in a directory and read back by a new process, CRL
// freshness, simulation certificates, concurrency, and the same CA on a real SoftHSM2 token.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>
#include <sstream>

#include "crypto/encoding.hpp"
#include "kakunin/audit_verify.hpp"
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
    // The CA log took every act of the four threads, one after the other, and verifies.
    AuditCertificates certs;
    certs.add_der(pki.anchor().der());
    const std::vector<std::string> lines = pki.ca->audit_log_lines();
    const AuditVerifyResult v = verify_audit_lines(lines, certs);
    INFO(v.message);
    CHECK(v.ok);
    auto count = [&](const std::string& event) {
        return std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
            return l.find("\"event\":\"" + event + "\"") != std::string::npos;
        });
    };
    CHECK(count("certificate.issued") == 20);
    CHECK(count("certificate.revoked") == 12);
    CHECK(count("crl.issued") == 1 + 12 + 1);  // init, each revocation, issue_crl()
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

    // The CA log is signed on the token too (ECDSA P-256), every record and checkpoint.
    AuditCertificates certs;
    certs.add_der(ca->trust_anchor().der());
    const AuditVerifyResult v = verify_audit_lines(ca->audit_log_lines(), certs);
    INFO(v.message);
    CHECK(v.ok);
    CHECK(v.records == 7);  // ca, crl, agent, scope, certificate, revocation, crl
    CHECK(v.signed_records == v.records);
}

// ---- the CA log ------------------------------------------------------------------------------

namespace {

/// A Kms that signs through another one but fails, on request, for messages that start with a
/// given prefix: how a token or a remote KMS failing in the middle of an operation looks.
class FailingKms final : public Kms {
public:
    explicit FailingKms(std::shared_ptr<Kms> inner) : m_inner(std::move(inner)) {}
    KeyHandle create_key(std::string_view l, KeyAlgorithm a) override {
        return m_inner->create_key(l, a);
    }
    KeyHandle find_key(std::string_view l) override { return m_inner->find_key(l); }
    std::vector<std::uint8_t> sign(const KeyHandle& key, const std::uint8_t* message,
                                   std::size_t size) override {
        const std::string_view text(reinterpret_cast<const char*>(message), size);
        if (!fail_prefix.empty() && text.substr(0, fail_prefix.size()) == fail_prefix)
            throw Error(ErrorCategory::kms, "test KMS: refusing to sign");
        return m_inner->sign(key, message, size);
    }
    PublicKeyInfo public_key(const KeyHandle& key) override { return m_inner->public_key(key); }
    using Kms::sign;

    std::string fail_prefix;  ///< empty: never fail

private:
    std::shared_ptr<Kms> m_inner;
};

using json = nlohmann::json;

std::vector<json> records_of(const std::vector<std::string>& lines) {
    std::vector<json> out;
    for (const auto& l : lines) {
        json j = json::parse(l);
        if (j.at("kind") == "record") out.push_back(std::move(j));
    }
    return out;
}

std::vector<std::string> file_lines(const std::string& path) {
    std::vector<std::string> out;
    std::istringstream in(test::read_file(path));
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

std::vector<std::string> events_of(const std::vector<json>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) out.push_back(r.at("event").get<std::string>());
    return out;
}

AuditCertificates certificates_of(const TrustAnchor& anchor) {
    AuditCertificates certs;
    certs.add_der(anchor.der());
    return certs;
}

}  // namespace

TEST_CASE("LocalCa writes every act to its signed CA log and the log continues across open()",
          "[local_ca][audit]") {
    Passphrase pass;
    const std::string state = test::make_temp_dir("ca-log");
    ManualClock clock(utc(2024, 3, 4, 9, 0, 0));
    const Scope scope = parse_scope_json(test::seed_scope_json);
    LocalCaOptions opts;
    opts.state_dir = state;
    const std::string log = state + "/audit/ca.jsonl";
    std::string serial;
    {
        std::shared_ptr<Kms> kms = SoftwareKms::open(state + "/keys");
        CaInitOptions init;
        init.algorithm = KeyAlgorithm::ecdsa_p256;
        auto ca = LocalCa::init(kms, clock, opts, init);
        CHECK(ca->audit_log_path() == log);
        // Durable and checkpointed after init already: the file verifies as a closed log.
        const AuditCertificates certs = certificates_of(ca->trust_anchor());
        AuditVerifyResult v = verify_audit_log_file(log, certs);
        INFO(v.message);
        CHECK(v.ok);
        CHECK(v.records == 2);

        const AgentRegistration reg{"agent-7", "Desk 3", "BTC market making", clock.now_ns(),
                                    "Jane Roe"};
        ca->register_agent(reg);
        const ScopeApproval approval =
            approve_scope(*kms, "agent-7", "Jane Doe", scope, clock.now_ns());
        ca->record_approval(approval, scope);
        const auto spki =
            kms->public_key(kms->create_key("agent:agent-7", KeyAlgorithm::ed25519)).spki_der;
        const AgentCertificate cert = ca->issue_for_agent("agent-7", spki);
        serial = cert.serial();
        clock.advance(std::chrono::minutes(1));
        ca->revoke(serial, "keyCompromise: anomaly score 0.91");
        ca->revoke(serial, "again");  // a no-op, and no record
        CHECK(ca->record_event(audit_event::baseline_approved,
                               R"({"agent":"agent-7","approver":"Jane Doe","version":1})") == 7);

        // Every operation ended with a checkpoint: the log is closed at every step.
        v = verify_audit_log_file(log, certs);
        INFO(v.message);
        REQUIRE(v.ok);
        CHECK(v.records == 8);
        CHECK(v.signed_records == 8);  // every record carries the CA key's signature
        CHECK(v.checkpoints == 6);     // init, register, approve, issue, revoke, record_event
        CHECK(v.covered == 8);

        const std::vector<json> recs = records_of(file_lines(log));
        CHECK(events_of(recs) ==
              std::vector<std::string>{"ca.initialised", "crl.issued", "agent.registered",
                                       "scope.approved", "certificate.issued",
                                       "certificate.revoked", "crl.issued", "baseline.approved"});
        for (const auto& r : recs) {
            CHECK(r.at("log_id") == "ca");
            CHECK(r.at("agent") == "ca");
            CHECK(r.at("cert_fp") == ca->trust_anchor().fingerprint());
        }
        // What each record carries.
        const json& created = recs.at(0).at("payload");
        CHECK(created.at("fingerprint") == ca->trust_anchor().fingerprint());
        CHECK(base64_decode(created.at("certificate").get<std::string>()) ==
              ca->trust_anchor().der());
        CHECK(created.at("algorithm") == "ecdsa-p256");
        const json& registered = recs.at(2).at("payload");
        CHECK(registered.at("agent") == "agent-7");
        CHECK(registered.at("registration") == json::parse(to_json(reg)));
        const json& approved = recs.at(3).at("payload");
        CHECK(approved.at("approval") == json::parse(to_json(approval)));
        CHECK(approved.at("approval").at("approver") == "Jane Doe");
        // The scope in the record hashes (canonical bytes) to the approved hash.
        CHECK(crypto::sha256_hex(approved.at("scope").dump()) == approval.scope_sha256);
        CHECK(approved.at("scope_sha256") == approval.scope_sha256);
        const json& issued = recs.at(4).at("payload");
        CHECK(issued.at("serial") == serial);
        CHECK(issued.at("agent") == "agent-7");
        CHECK(issued.at("fingerprint") == cert.fingerprint());
        CHECK(base64_decode(issued.at("certificate").get<std::string>()) == cert.der());
        CHECK(issued.at("not_after_ns") == cert.not_after());
        CHECK(issued.at("scope_sha256") == approval.scope_sha256);
        CHECK(issued.at("simulation") == false);
        CHECK(issued.at("approved_by") == "Jane Doe");
        const json& revoked = recs.at(5).at("payload");
        CHECK(revoked.at("serial") == serial);
        CHECK(revoked.at("reason") == "keyCompromise: anomaly score 0.91");
        CHECK(revoked.at("reason_code") == "keyCompromise");
        CHECK(revoked.at("revoked_at_ns") == clock.now_ns());
        const json& crl = recs.at(6).at("payload");
        CHECK(crl.at("revoked_serials") == json::array({serial}));
        CHECK(base64_decode(crl.at("crl").get<std::string>()) ==
              CertificateRevocationList::load_file(state + "/crl.pem").der());

        // A second LocalCa on the same state directory (another process, the command line)
        // takes turns with this one under the log's lock, one operation at a time: it opens and
        // acts on the same state (test_ca_sharing.cpp has the rest).
        auto second = LocalCa::open(kms, clock, opts);
        CHECK(second->is_revoked(serial));
        CHECK(second->audit_log_lines() == ca->audit_log_lines());
    }
    // A new process continues the same log.
    std::shared_ptr<Kms> kms = SoftwareKms::open(state + "/keys");
    clock.advance(std::chrono::hours(1));
    auto ca = LocalCa::open(kms, clock, opts);
    (void)ca->current_crl();  // past half its lifetime: a new CRL, recorded
    ca->register_agent({"agent-8", "Desk 4", "ETH arbitrage", clock.now_ns(), "Jane Roe"});
    const AuditVerifyResult v = verify_audit_log_file(log, certificates_of(ca->trust_anchor()));
    INFO(v.message);
    REQUIRE(v.ok);
    CHECK(v.records == 10);
    const std::vector<json> recs = records_of(file_lines(log));
    CHECK(recs.at(8).at("event") == "crl.issued");
    CHECK(recs.at(8).at("seq") == 8);
    CHECK(recs.at(9).at("event") == "agent.registered");
    CHECK(ca->audit_log_lines() == file_lines(log));

    // A byte changed in a record is caught, naming its seq.
    std::string text = test::read_file(log);
    const auto at = text.find("\"owner\":\"Desk 3\"");
    REQUIRE(at != std::string::npos);
    text.replace(at, 16, "\"owner\":\"Desk 5\"");
    const std::string altered = test::make_temp_dir("ca-log-altered") + "/ca.jsonl";
    test::write_file(altered, text);
    const AuditVerifyResult bad =
        verify_audit_log_file(altered, certificates_of(ca->trust_anchor()));
    CHECK_FALSE(bad.ok);
    CHECK(bad.problem == AuditProblem::bad_record_signature);
    CHECK(bad.first_bad_seq == 2);
}

TEST_CASE("LocalCa::record_event refuses what does not belong in the CA log", "[local_ca][audit]") {
    TestPki pki;
    const std::size_t before = pki.ca->audit_log_lines().size();
    auto refused = [&](std::string_view event, std::string_view payload) {
        try {
            pki.ca->record_event(event, payload);
            FAIL("recorded " << event << " " << payload);
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::invalid_input);
        }
    };
    refused("baseline.approvd", R"({"agent":"agent-7"})");  // unknown event
    refused("", R"({"agent":"agent-7"})");
    // The CA's own acts come from its operations only.
    for (std::string_view own :
         {audit_event::ca_initialised, audit_event::agent_registered, audit_event::scope_approved,
          audit_event::certificate_issued, audit_event::certificate_revoked,
          audit_event::crl_issued, audit_event::log_truncated_tail, audit_event::order_allowed})
        refused(own, R"({"agent":"agent-7"})");
    refused(audit_event::review_signed, "[1,2]");                  // not an object
    refused(audit_event::review_signed, R"({"score":0.5})");       // a float
    refused(audit_event::review_signed, R"({"agent":"agent-7")");  // malformed
    refused(audit_event::review_signed, "{\"a\":1,\"a\":2}");      // duplicate member
    CHECK(pki.ca->audit_log_lines().size() == before);

    // Human sign-offs go in, canonicalised, and the in-memory log verifies.
    CHECK(pki.ca->audit_log_path().empty());
    const std::uint64_t seq =
        pki.ca->record_event(audit_event::review_signed,
                             R"({"reviewer": "Jane Doe", "incident": 3, "agent": "agent-7"})");
    pki.ca->record_event("incident.closed", R"({"incident":3})");
    pki.ca->record_event(audit_event::guard_resumed, R"({"agent":"agent-7","by":"Jane Doe"})");
    const std::vector<std::string> lines = pki.ca->audit_log_lines();
    const std::vector<json> recs = records_of(lines);
    REQUIRE(recs.size() == seq + 3);
    CHECK(recs.at(seq).at("payload") ==
          json::parse(R"({"agent":"agent-7","incident":3,"reviewer":"Jane Doe"})"));
    CHECK(lines.at(lines.size() - 6)
              .find(R"("payload":{"agent":"agent-7","incident":3,"reviewer":"Jane Doe"})") !=
          std::string::npos);
    const AuditVerifyResult v = verify_audit_lines(lines, certificates_of(pki.anchor()));
    INFO(v.message);
    CHECK(v.ok);
    CHECK(v.records == recs.size());
    CHECK(v.signed_records == recs.size());
}

TEST_CASE("A CA operation whose log record cannot be made durable fails and changes nothing",
          "[local_ca][audit]") {
    Passphrase pass;
    const std::string state = test::make_temp_dir("ca-log-fail");
    ManualClock clock(utc(2024, 3, 4, 9, 0, 0));
    const Scope scope = parse_scope_json(test::seed_scope_json);
    LocalCaOptions opts;
    opts.state_dir = state;
    std::shared_ptr<Kms> software = SoftwareKms::open(state + "/keys");
    std::vector<std::uint8_t> spki;
    {
        auto kms = std::make_shared<FailingKms>(software);
        auto ca = LocalCa::init(kms, clock, opts);
        ca->register_agent({"agent-7", "Desk 3", "BTC market making", clock.now_ns(), "Jane Roe"});
        ca->record_approval(approve_scope(*kms, "agent-7", "Jane Doe", scope, clock.now_ns()),
                            scope);
        spki = kms->public_key(kms->create_key("agent:agent-7", KeyAlgorithm::ed25519)).spki_der;

        // The record's signature fails: nothing was queued, the certificate exists nowhere.
        kms->fail_prefix = R"({"agent":"ca")";
        CHECK_THROWS_AS(ca->issue_for_agent("agent-7", spki), Error);
        CHECK(ca->issued_certificates().empty());
        CHECK(std::filesystem::is_empty(state + "/certs"));
        CHECK_THROWS_AS(ca->register_agent({"agent-8", "o", "p", clock.now_ns(), "b"}), Error);
        CHECK_FALSE(ca->registration("agent-8"));
        CHECK_FALSE(file_exists(state + "/registrations/agent-8.json"));
        // The CA carries on once the KMS does.
        kms->fail_prefix.clear();
        const AgentCertificate first = ca->issue_for_agent("agent-7", spki);

        // The checkpoint's signature fails after the record was queued: the operation fails,
        // the log's state is unknown, and the CA takes no more records until it is reopened.
        kms->fail_prefix = "kakunin-checkpoint/v1";
        CHECK_THROWS_AS(ca->revoke(first.serial(), "superseded"), Error);
        CHECK_FALSE(ca->is_revoked(first.serial()));
        CHECK_FALSE(CertificateRevocationList::load_file(state + "/crl.pem").lists(first.serial()));
        kms->fail_prefix.clear();
        try {
            ca->revoke(first.serial(), "superseded");
            FAIL("revoked through a log in an unknown state");
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::invalid_state);
            CHECK_THAT(e.what(), Catch::Contains("until the CA is opened again"));
        }
    }
    // Reopened: the log holds no trace of the failed revocation and verifies; the CA works.
    auto ca = LocalCa::open(software, clock, opts);
    const std::string log = state + "/audit/ca.jsonl";
    const AuditVerifyResult v = verify_audit_log_file(log, certificates_of(ca->trust_anchor()));
    INFO(v.message);
    REQUIRE(v.ok);
    CHECK(events_of(records_of(file_lines(log))) ==
          std::vector<std::string>{"ca.initialised", "crl.issued", "agent.registered",
                                   "scope.approved", "certificate.issued"});
    REQUIRE(ca->issued_certificates().size() == 1);
    ca->revoke(ca->issued_certificates()[0].serial(), "superseded");
    CHECK(events_of(records_of(file_lines(log))).back() == "crl.issued");
    CHECK(verify_audit_log_file(log, certificates_of(ca->trust_anchor())).ok);
}
