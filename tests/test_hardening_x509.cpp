// Hardening of X.509 decoding and revocation: a CRL is authenticated before anything is read from
// it (a forged CRL listing the serial neither revokes nor halts), and certificate and CRL times
// outside what TimeNs holds (before 1970, after 2262) neither crash nor wrap.
#include <catch2/catch.hpp>

#include <botan/der_enc.h>
#include <botan/x509_ca.h>
#include <botan/x509_ext.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "crypto/encoding.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/replay.hpp"
#include "x509_test_support.hpp"

using namespace kakunin;
using kakunin::test::TestPki;

namespace {

constexpr TimeNs time_max = std::numeric_limits<TimeNs>::max();

/// X.509 times as RFC 5280 wants them: UTCTime 1950..2049, GeneralizedTime otherwise.
Botan::X509_Time x509_time(const std::string& generalized) {
    const unsigned year = static_cast<unsigned>(std::stoul(generalized.substr(0, 4)));
    if (year >= 1950 && year < 2050)
        return Botan::X509_Time(generalized.substr(2), Botan::UTC_TIME);
    return Botan::X509_Time(generalized, Botan::GENERALIZED_TIME);
}

/// An agent certificate like the CA's own, signed with the CA key of `pki`, with raw validity
/// times (which the builder refuses to issue when it cannot represent them).
AgentCertificate forge_with_times(TestPki& pki, const Botan::X509_Time& not_before,
                                  const Botan::X509_Time& not_after) {
    namespace CE = Botan::Cert_Extension;
    kms_botan::KmsPrivateKey key(*pki.kms, pki.kms->find_key("ca"));
    Botan::System_RNG rng;
    Botan::AlgorithmIdentifier sig_algo;
    auto signer = kms_botan::x509_signer(key, rng, sig_algo);
    const TrustAnchor anchor = pki.anchor();
    const Botan::X509_Certificate& ca = *anchor.impl().cert;
    Botan::Extensions ext;
    ext.add(new CE::Basic_Constraints(false), true);
    ext.add(new CE::Key_Usage(Botan::DIGITAL_SIGNATURE), true);
    ext.add(new CE::Subject_Key_ID(pki.agent_spki, "SHA-256"), false);
    ext.add(new CE::Authority_Key_ID(ca.subject_key_id()), false);
    ext.add(new x509::RawExtension(Botan::OID::from_string(scope_extension_oid()),
                                   encode_scope_extension(pki.scope), "Kakunin.Scope"),
            true);
    const auto cert = Botan::X509_CA::make_cert(
        signer.get(), rng, x509::random_serial(rng), sig_algo, pki.agent_spki, not_before,
        not_after, ca.subject_dn(), x509::agent_dn(pki.agent_id, false), ext);
    return AgentCertificate::from_der(cert.BER_encode());
}

struct CrlEntry {
    std::string serial_hex;
    Botan::X509_Time date;
};

/// A v2 CRL in `issuer`'s name, with a CRL number and an AKI, signed by the key labelled
/// "ca" in `kms` (the issuer's own key, or another one for a forgery).
CertificateRevocationList forge_crl(Kms& kms, const Botan::X509_Certificate& issuer,
                                    const Botan::X509_Time& this_update,
                                    const Botan::X509_Time& next_update,
                                    const std::vector<CrlEntry>& entries) {
    namespace CE = Botan::Cert_Extension;
    kms_botan::KmsPrivateKey key(kms, kms.find_key("ca"));
    Botan::System_RNG rng;
    Botan::AlgorithmIdentifier sig_algo;
    auto signer = kms_botan::x509_signer(key, rng, sig_algo);
    Botan::DER_Encoder revoked;
    revoked.start_cons(Botan::SEQUENCE);
    for (const auto& e : entries) {
        const auto bytes = crypto::from_hex(e.serial_hex, "serial");
        Botan::Extensions entry_ext;
        entry_ext.add(new CE::CRL_ReasonCode(Botan::KEY_COMPROMISE));
        revoked.start_cons(Botan::SEQUENCE)
            .encode(Botan::BigInt(bytes.data(), bytes.size()))
            .encode(e.date)
            .start_cons(Botan::SEQUENCE)
            .encode(entry_ext)
            .end_cons()
            .end_cons();
    }
    revoked.end_cons();
    Botan::Extensions ext;
    ext.add(new CE::Authority_Key_ID(issuer.subject_key_id()), false);
    ext.add(new CE::CRL_Number(7), false);
    Botan::DER_Encoder tbs;
    tbs.start_cons(Botan::SEQUENCE)
        .encode(static_cast<std::size_t>(1))
        .encode(sig_algo)
        .encode(issuer.subject_dn())
        .encode(this_update)
        .encode(next_update);
    if (!entries.empty()) tbs.raw_bytes(revoked.get_contents());
    tbs.start_explicit(0).start_cons(Botan::SEQUENCE).encode(ext).end_cons().end_explicit();
    tbs.end_cons();
    const auto der =
        Botan::X509_Object::make_signed(signer.get(), rng, sig_algo, tbs.get_contents());
    return CertificateRevocationList::from_der(der);
}

/// The pki's CRL window around its clock: an hour back, a day ahead.
Botan::X509_Time hours_from_now(const TestPki& pki, int hours) {
    return Botan::X509_Time(x509::to_time_point(pki.clock.now_ns() + hours * 3600'000'000'000LL));
}

/// The message of the kakunin::Error that `f` throws ("" if none; another exception fails).
template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        FAIL("not a kakunin::Error: " << e.what());
    }
    return "";
}

GuardCredentials credentials(TestPki& pki, const AgentCertificate& cert,
                             const CertificateRevocationList& crl) {
    return GuardCredentials{cert, pki.anchor(), crl, pki.kms, pki.agent_key};
}

}  // namespace

TEST_CASE("a CRL signed by another key is crl_invalid even when it lists the serial",
          "[hardening][x509][crl]") {
    TestPki pki;
    // Same CA name, another key: the forger's CRL carries the right issuer name and a CRL
    // number, only its signature does not verify against the trust anchor.
    TestPki forger(KeyAlgorithm::ed25519, "Kakunin Test CA");
    REQUIRE(forger.anchor().subject() == pki.anchor().subject());
    const AgentCertificate cert = pki.issue();
    const CertificateRevocationList forged =
        forge_crl(*forger.kms, *pki.anchor().impl().cert, hours_from_now(pki, -1),
                  hours_from_now(pki, 24), {{cert.serial(), hours_from_now(pki, -1)}});
    REQUIRE(forged.lists(cert.serial()));

    const CertificateCheck r = verify_certificate(cert, pki.anchor(), &forged, pki.clock.now_ns());
    INFO(r.detail);
    CHECK(r.status == CertificateStatus::crl_invalid);

    // The same CRL signed by the real CA key revokes: the check is the signature, not the list.
    const CertificateRevocationList genuine =
        forge_crl(*pki.kms, *pki.anchor().impl().cert, hours_from_now(pki, -1),
                  hours_from_now(pki, 24), {{cert.serial(), hours_from_now(pki, -1)}});
    CHECK(verify_certificate(cert, pki.anchor(), &genuine, pki.clock.now_ns()).status ==
          CertificateStatus::revoked);

    // A Guard refuses to start on the forged CRL, for that reason.
    try {
        Guard g(credentials(pki, cert, forged), pki.clock);
        FAIL("the Guard started on a forged CRL");
    } catch (const Error& e) {
        CHECK_THAT(e.what(), Catch::Contains("crl_invalid"));
        CHECK_THAT(e.what(), !Catch::Contains(": revoked:"));
    }
}

TEST_CASE("update_crl refuses a forged CRL listing the serial and the Guard stays as it was",
          "[hardening][x509][crl][guard]") {
    TestPki pki;
    TestPki forger(KeyAlgorithm::ed25519, "Kakunin Test CA");
    const AgentCertificate cert = pki.issue();
    Guard guard(credentials(pki, cert, pki.ca->current_crl()), pki.clock);
    REQUIRE(guard.check(test::good_order()).allowed());
    const auto events_before = guard.events().size();

    const CertificateRevocationList forged =
        forge_crl(*forger.kms, *pki.anchor().impl().cert, hours_from_now(pki, -1),
                  hours_from_now(pki, 24), {{cert.serial(), hours_from_now(pki, -1)}});
    try {
        guard.update_crl(forged);
        FAIL("update_crl took a forged CRL");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::unauthorised);
        CHECK_THAT(e.what(), Catch::Contains("crl_invalid"));
    }
    CHECK_FALSE(guard.halted());
    CHECK_FALSE(guard.revoked());
    CHECK(guard.events().size() == events_before);
    const Decision d = guard.check(test::good_order());
    CHECK(d.allowed());
    CHECK_FALSE(d.reasons.contains(ReasonCode::certificate_revoked));
    CHECK_FALSE(d.reasons.contains(ReasonCode::halted));
    // The old CRL (an hour's validity) is still the one in force, not the forged one (a day).
    pki.clock.advance(std::chrono::hours(2));
    CHECK(guard.check(test::good_order()).reasons.contains(ReasonCode::revocation_status_stale));
    pki.clock.advance(std::chrono::hours(-2));

    // The genuine CA's revocation still halts it.
    pki.ca->revoke(cert.serial(), "keyCompromise");
    guard.update_crl(pki.ca->current_crl());
    CHECK(guard.halted());
    CHECK(guard.check(test::good_order()).reasons.contains(ReasonCode::certificate_revoked));
}

TEST_CASE("a 1950 notBefore and a 2300 notAfter are read without crashing or wrapping",
          "[hardening][x509][time]") {
    TestPki pki;
    const AgentCertificate cert =
        forge_with_times(pki, x509_time("19500101000000Z"), x509_time("23000101000000Z"));
    // 1950 is within TimeNs (negative); 2300 is not: it saturates to "beyond any clock".
    CHECK(cert.not_before() == utc(1950, 1, 1));
    CHECK(cert.not_after() == time_max);
    CHECK(format_timestamp(cert.not_before()) == "1950-01-01T00:00:00Z");
    CHECK(verify_certificate(cert, pki.anchor(), nullptr, pki.clock.now_ns(),
                             [] {
                                 VerifyOptions o;
                                 o.require_crl = false;
                                 return o;
                             }())
              .ok());

    // A Guard starts on it (it is valid now) and does not think it expired in 1715.
    Guard guard(credentials(pki, cert, pki.ca->current_crl()), pki.clock);
    const Decision d = guard.check(test::good_order());
    CHECK(d.allowed());
    CHECK_FALSE(d.reasons.contains(ReasonCode::certificate_expired));
    CHECK_FALSE(d.reasons.contains(ReasonCode::certificate_not_yet_valid));
}

TEST_CASE("a certificate that ended in 1960 is expired and one from 2300 on is not yet valid",
          "[hardening][x509][time]") {
    TestPki pki;
    const AgentCertificate old =
        forge_with_times(pki, x509_time("19500101000000Z"), x509_time("19600101000000Z"));
    CHECK(old.not_after() == utc(1960, 1, 1));
    const CertificateRevocationList crl = pki.ca->current_crl();
    CHECK(verify_certificate(old, pki.anchor(), &crl, pki.clock.now_ns()).status ==
          CertificateStatus::expired);
    CHECK_THROWS_AS(Guard(credentials(pki, old, crl), pki.clock), Error);

    const AgentCertificate future =
        forge_with_times(pki, x509_time("23000101000000Z"), x509_time("24000101000000Z"));
    CHECK(future.not_before() == time_max);
    CHECK(future.not_after() == time_max);
    CHECK(verify_certificate(future, pki.anchor(), &crl, pki.clock.now_ns()).status ==
          CertificateStatus::not_yet_valid);
    CHECK_THROWS_AS(Guard(credentials(pki, future, crl), pki.clock), Error);
}

TEST_CASE("CRL times from 1950 and to 2300 neither crash nor wrap",
          "[hardening][x509][time][crl]") {
    TestPki pki;
    const AgentCertificate cert = pki.issue();
    const CertificateRevocationList crl =
        forge_crl(*pki.kms, *pki.anchor().impl().cert, x509_time("19500101000000Z"),
                  x509_time("23000101000000Z"), {});
    CHECK(crl.this_update() == utc(1950, 1, 1));
    CHECK(crl.next_update() == time_max);
    CHECK(verify_certificate(cert, pki.anchor(), &crl, pki.clock.now_ns()).ok());
    // nextUpdate 2300 is never stale (it wrapped to 1715 and made every order stale).
    Guard guard(credentials(pki, cert, crl), pki.clock);
    const Decision d = guard.check(test::good_order());
    CHECK(d.allowed());
    CHECK_FALSE(d.reasons.contains(ReasonCode::revocation_status_stale));

    // A revocation dated 1950 still revokes.
    const CertificateRevocationList listing =
        forge_crl(*pki.kms, *pki.anchor().impl().cert, x509_time("19500101000000Z"),
                  x509_time("23000101000000Z"), {{cert.serial(), x509_time("19500101000000Z")}});
    CHECK(verify_certificate(cert, pki.anchor(), &listing, pki.clock.now_ns()).status ==
          CertificateStatus::revoked);
    guard.update_crl(listing);
    CHECK(guard.halted());
    CHECK(guard.revoked());
}

TEST_CASE("the builder refuses validity times it cannot represent and names the field",
          "[hardening][x509][time]") {
    TestPki pki;
    x509::LeafTemplate t = pki.leaf_template();
    t.not_before = utc(1940, 1, 1);  // would need a GeneralizedTime Botan does not choose
    CHECK_THAT(error_of([&] { pki.forge(t); }), Catch::Contains("notBefore"));
    t.not_before = utc(1970, 1, 1) - 1'000'000'000;
    CHECK_THAT(error_of([&] { pki.forge(t); }), Catch::Contains("notBefore"));
    t = pki.leaf_template();
    t.not_after = -1;
    CHECK_THAT(error_of([&] { pki.forge(t); }), Catch::Contains("notAfter"));
    // What it does issue reads back exactly.
    t = pki.leaf_template();
    t.not_before = utc(1970, 1, 1);
    t.not_after = utc(2262, 4, 11);
    const AgentCertificate c = pki.forge(t);
    CHECK(c.not_before() == utc(1970, 1, 1));
    CHECK(c.not_after() == utc(2262, 4, 11));
}

TEST_CASE("cert inspect prints a 1950 to 2300 certificate instead of crashing",
          "[hardening][x509][time][cli]") {
    TestPki pki;
    const AgentCertificate cert =
        forge_with_times(pki, x509_time("19500101000000Z"), x509_time("23000101000000Z"));
    const std::string dir = test::make_temp_dir("hardening-x509");
    test::write_file(dir + "/old.pem", cert.pem());
    std::string out;
    const int rc = test::run(
        std::string("'") + KAKUNIN_CLI_PATH + "' cert inspect '" + dir + "/old.pem'", &out);
    INFO(out);
    REQUIRE(rc == 0);
    const auto j = nlohmann::json::parse(out);
    CHECK(j.at("not_before_ns").get<TimeNs>() == utc(1950, 1, 1));
    CHECK(j.at("not_after_ns").get<TimeNs>() == time_max);
    CHECK(j.at("not_before").get<std::string>() == "1950-01-01T00:00:00Z");
}
