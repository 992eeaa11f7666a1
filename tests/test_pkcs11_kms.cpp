// Pkcs11Kms against a real SoftHSM2 token created by the test in a temporary directory. Each
// signature is checked by Botan and by the openssl command-line program, independently of the
// token that made it.
#include <botan/auto_rng.h>
#include <botan/ber_dec.h>
#include <botan/bigint.h>
#include <botan/pem.h>
#include <botan/pubkey.h>
#include <botan/x509_key.h>
#include <botan/x509self.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kakunin/pkcs11_kms.hpp"
#include "kms/kms_botan_key.hpp"
#include "pkcs11_test_support.hpp"

using kakunin::ErrorCategory;
using kakunin::KeyAlgorithm;
using kakunin::KeyHandle;
using kakunin::Pkcs11Kms;
using namespace kakunin_test;

// SoftHSM2 2.6.1 leaks a small OpenSSL ASN1 string in C_SignInit with an EdDSA key, inside the
// module. In this test program only the SoftHSM2 module uses OpenSSL's libcrypto (Kakunin and
// Botan do not), so LeakSanitizer (scripts/test's sanitizer run) ignores allocations made there.
extern "C" const char* __lsan_default_suppressions() { return "leak:libcrypto.so\n"; }

namespace {

std::vector<std::uint8_t> bytes_of(const std::string& s) {
    return std::vector<std::uint8_t>(s.begin(), s.end());
}

bool botan_verifies(const std::vector<std::uint8_t>& spki, KeyAlgorithm algorithm,
                    const std::vector<std::uint8_t>& message,
                    const std::vector<std::uint8_t>& signature) {
    std::unique_ptr<Botan::Public_Key> key(Botan::X509::load_key(spki));
    if (algorithm == KeyAlgorithm::ecdsa_p256) {
        REQUIRE(key->algo_name() == "ECDSA");
        Botan::PK_Verifier verifier(*key, "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
        return verifier.verify_message(message, signature);
    }
    REQUIRE(key->algo_name() == "Ed25519");
    Botan::PK_Verifier verifier(*key, "Pure");
    return verifier.verify_message(message, signature);
}

/// Verifies with the openssl program from the SPKI written out as PEM.
CommandResult openssl_verify(const std::vector<std::uint8_t>& spki, KeyAlgorithm algorithm,
                             const std::vector<std::uint8_t>& message,
                             const std::vector<std::uint8_t>& signature) {
    if (!on_path("openssl")) FAIL("the openssl program is not installed: run scripts/test");
    const auto dir = SoftHsm::instance().dir();
    write_text(dir / "pub.pem", Botan::PEM_Code::encode(spki, "PUBLIC KEY"));
    write_bytes(dir / "msg.bin", message);
    write_bytes(dir / "sig.bin", signature);
    const std::string pub = shell_quote((dir / "pub.pem").string());
    const std::string msg = shell_quote((dir / "msg.bin").string());
    const std::string sig = shell_quote((dir / "sig.bin").string());
    if (algorithm == KeyAlgorithm::ecdsa_p256)
        return run_command("openssl dgst -sha256 -verify " + pub + " -signature " + sig + " " + msg,
                           dir);
    return run_command(
        "openssl pkeyutl -verify -pubin -inkey " + pub + " -rawin -in " + msg + " -sigfile " + sig,
        dir);
}

/// The DER ECDSA-Sig-Value must be exactly SEQUENCE { INTEGER r, INTEGER s } and nothing else.
void require_strict_ecdsa_der(const std::vector<std::uint8_t>& signature) {
    Botan::BigInt r;
    Botan::BigInt s;
    Botan::BER_Decoder(signature)
        .start_cons(Botan::SEQUENCE)
        .decode(r)
        .decode(s)
        .end_cons()
        .verify_end();
    REQUIRE(r > 0);
    REQUIRE(s > 0);
    REQUIRE(r.bits() <= 256);
    REQUIRE(s.bits() <= 256);
}

template <typename F>
std::string error_of(F&& f, ErrorCategory* category = nullptr) {
    try {
        f();
    } catch (const kakunin::Error& e) {
        if (category != nullptr) *category = e.category();
        return e.what();
    }
    FAIL("expected a kakunin::Error");
    return {};
}

void check_key_round_trip(Pkcs11Kms& kms, KeyAlgorithm algorithm, const std::string& label) {
    const KeyHandle key = kms.create_key(label, algorithm);
    CHECK(key.label == label);
    CHECK(key.algorithm == algorithm);
    CHECK(key.id.size() == 32);  // 16 random bytes, hex

    const kakunin::PublicKeyInfo pub = kms.public_key(key);
    CHECK(pub.algorithm == algorithm);
    REQUIRE(!pub.spki_der.empty());

    const auto message = bytes_of("kakunin-checkpoint/v1\nagent-7\n42\n" + label + "\n");
    const auto signature = kms.sign(key, message);
    if (algorithm == KeyAlgorithm::ecdsa_p256) {
        require_strict_ecdsa_der(signature);
    } else {
        CHECK(signature.size() == 64);
    }
    CHECK(botan_verifies(pub.spki_der, algorithm, message, signature));

    const CommandResult ok = openssl_verify(pub.spki_der, algorithm, message, signature);
    INFO("openssl: " << ok.output);
    CHECK(ok.exit_code == 0);
    CHECK(ok.output.find("Verified") != std::string::npos);
    CHECK(ok.output.find("Failure") == std::string::npos);

    auto tampered = message;
    tampered[0] ^= 0x01;
    CHECK_FALSE(botan_verifies(pub.spki_der, algorithm, tampered, signature));
    const CommandResult bad = openssl_verify(pub.spki_der, algorithm, tampered, signature);
    CHECK(bad.exit_code != 0);
}

}  // namespace

TEST_CASE("Pkcs11Kms: ECDSA P-256 key made on the token signs and Botan and openssl verify it",
          "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("ecdsa");
    Pkcs11Kms kms(hsm.module(), token, k_user_pin);
    CHECK(kms.token_label() == token);
    CHECK(kms.module_path() == hsm.module());
    REQUIRE(kms.supports(KeyAlgorithm::ecdsa_p256));
    check_key_round_trip(kms, KeyAlgorithm::ecdsa_p256, "ca");

    SECTION("the SPKI is a P-256 key") {
        const auto key = kms.find_key("ca");
        std::unique_ptr<Botan::Public_Key> pk(Botan::X509::load_key(kms.public_key(key).spki_der));
        CHECK(pk->algo_name() == "ECDSA");
        CHECK(pk->key_length() == 256);
    }
    SECTION("two signatures of the same message differ (randomised ECDSA) and both verify") {
        const auto key = kms.find_key("ca");
        const auto m = bytes_of("order 1");
        const auto a = kms.sign(key, m);
        const auto b = kms.sign(key, m);
        CHECK(a != b);
        const auto spki = kms.public_key(key).spki_der;
        CHECK(botan_verifies(spki, KeyAlgorithm::ecdsa_p256, m, a));
        CHECK(botan_verifies(spki, KeyAlgorithm::ecdsa_p256, m, b));
    }
    SECTION("an empty message signs too") {
        const auto key = kms.find_key("ca");
        const std::vector<std::uint8_t> empty;
        const auto sig = kms.sign(key, empty);
        CHECK(botan_verifies(kms.public_key(key).spki_der, KeyAlgorithm::ecdsa_p256, empty, sig));
    }
}

TEST_CASE("Pkcs11Kms: the private key is sensitive and CKA_VALUE cannot be read", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("sensitive");
    {
        Pkcs11Kms kms(hsm.module(), token, k_user_pin);
        const auto key = kms.create_key("agent:agent-7", KeyAlgorithm::ecdsa_p256);
        const kakunin::Pkcs11KeyProtection p = kms.key_protection(key);
        CHECK(p.token);
        CHECK(p.private_object);
        CHECK(p.sensitive);
        CHECK_FALSE(p.extractable);
        CHECK(p.always_sensitive);
        CHECK(p.never_extractable);
        CHECK_FALSE(p.value_readable);

        // A second, raw session while Pkcs11Kms holds the module.
        const RawKeyView live =
            raw_inspect_private_key(hsm.module(), token, k_user_pin, "agent:agent-7");
        REQUIRE(live.found);
        CHECK(live.value_rv == CKR_ATTRIBUTE_SENSITIVE);
        CHECK(live.value_len == CK_UNAVAILABLE_INFORMATION);
        // Pkcs11Kms still works after the raw session closed.
        CHECK(!kms.sign(key, std::string("still signing")).empty());
    }
    // And from a fresh process-level initialisation of the module, Pkcs11Kms gone.
    const RawKeyView raw =
        raw_inspect_private_key(hsm.module(), token, k_user_pin, "agent:agent-7");
    REQUIRE(raw.found);
    CHECK(raw.sensitive == CK_TRUE);
    CHECK(raw.extractable == CK_FALSE);
    CHECK(raw.token == CK_TRUE);
    CHECK(raw.private_object == CK_TRUE);
    CHECK(raw.value_rv == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(raw.value_len == CK_UNAVAILABLE_INFORMATION);
}

TEST_CASE("Pkcs11Kms: a wrong PIN is refused with CKR_PIN_INCORRECT", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("pin");

    SECTION("no other session logged in") {
        ErrorCategory category = ErrorCategory::io;
        const std::string what =
            error_of([&] { Pkcs11Kms kms(hsm.module(), token, "wrong-pin"); }, &category);
        CHECK(what.find("C_Login: CKR_PIN_INCORRECT") != std::string::npos);
        CHECK(category == ErrorCategory::unauthorised);
    }
    SECTION("while another instance is logged in to the same token (login state is shared)") {
        Pkcs11Kms good(hsm.module(), token, k_user_pin);
        const auto key = good.create_key("approver:Jane Doe", KeyAlgorithm::ecdsa_p256);
        const std::string what =
            error_of([&] { Pkcs11Kms bad(hsm.module(), token, "not-the-pin"); });
        CHECK(what.find("C_Login: CKR_PIN_INCORRECT") != std::string::npos);
        // The good instance logs in again by itself and keeps signing.
        const auto m = bytes_of("approval");
        const auto sig = good.sign(key, m);
        CHECK(botan_verifies(good.public_key(key).spki_der, KeyAlgorithm::ecdsa_p256, m, sig));
        // A second instance with the right PIN is accepted.
        Pkcs11Kms second(hsm.module(), token, k_user_pin);
        CHECK(second.find_key("approver:Jane Doe").id == key.id);
    }
}

TEST_CASE("Pkcs11Kms: unknown token label and unknown module are clear errors", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("present");

    ErrorCategory category = ErrorCategory::io;
    std::string what =
        error_of([&] { Pkcs11Kms kms(hsm.module(), "no-such-token", k_user_pin); }, &category);
    CHECK(category == ErrorCategory::kms);
    CHECK(what.find("no PKCS#11 token labelled 'no-such-token'") != std::string::npos);
    CHECK(what.find("'" + token + "'") != std::string::npos);  // lists what is there

    const std::string missing = (hsm.dir() / "no-such-module.so").string();
    what = error_of([&] { Pkcs11Kms kms(missing, token, k_user_pin); }, &category);
    CHECK(category == ErrorCategory::kms);
    CHECK(what.find("cannot load PKCS#11 module '" + missing + "'") != std::string::npos);

    // A shared library that is not a PKCS#11 module.
    what = error_of([&] { Pkcs11Kms kms("libm.so.6", token, k_user_pin); }, &category);
    CHECK(category == ErrorCategory::kms);
    CHECK(what.find("does not export C_GetFunctionList") != std::string::npos);
}

TEST_CASE("Pkcs11Kms: keys persist on the token across instances", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("persist");
    KeyHandle created;
    std::vector<std::uint8_t> spki;
    {
        Pkcs11Kms kms(hsm.module(), token, k_user_pin);
        created = kms.create_key("ca", KeyAlgorithm::ecdsa_p256);
        spki = kms.public_key(created).spki_der;

        ErrorCategory category = ErrorCategory::io;
        const std::string what =
            error_of([&] { kms.create_key("ca", KeyAlgorithm::ecdsa_p256); }, &category);
        CHECK(category == ErrorCategory::invalid_state);
        CHECK(what.find("'ca' already exists") != std::string::npos);
    }
    Pkcs11Kms kms(hsm.module(), token, k_user_pin);
    const KeyHandle found = kms.find_key("ca");
    CHECK(found.label == created.label);
    CHECK(found.id == created.id);
    CHECK(found.algorithm == KeyAlgorithm::ecdsa_p256);
    CHECK(kms.public_key(found).spki_der == spki);
    const auto m = bytes_of("after restart");
    CHECK(botan_verifies(spki, KeyAlgorithm::ecdsa_p256, m, kms.sign(found, m)));
    // A handle saved by the first instance is still good.
    CHECK(botan_verifies(spki, KeyAlgorithm::ecdsa_p256, m, kms.sign(created, m)));

    ErrorCategory category = ErrorCategory::io;
    const std::string what = error_of([&] { kms.find_key("absent"); }, &category);
    CHECK(category == ErrorCategory::not_found);
    CHECK(what.find("'absent'") != std::string::npos);

    // find_or_create_key: finds the existing key, creates a missing one.
    CHECK(kms.find_or_create_key("ca", KeyAlgorithm::ecdsa_p256).id == created.id);
    const KeyHandle fresh = kms.find_or_create_key("agent:agent-9", KeyAlgorithm::ecdsa_p256);
    CHECK(fresh.id != created.id);
    CHECK(kms.find_key("agent:agent-9").id == fresh.id);

    // A handle whose id does not exist on the token is not found, never signed with another key.
    KeyHandle forged = found;
    forged.id = std::string(32, '0');
    error_of([&] { kms.sign(forged, m); }, &category);
    CHECK(category == ErrorCategory::not_found);
}

TEST_CASE("Pkcs11Kms: a lost login or session is restored on the next call", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("relogin");
    Pkcs11Kms kms(hsm.module(), token, k_user_pin);
    const KeyHandle key = kms.create_key("ca", KeyAlgorithm::ecdsa_p256);
    const auto spki = kms.public_key(key).spki_der;
    const auto m = bytes_of("after an interruption");

    RawModule raw(hsm.module());
    SECTION("another user of the module logs out (login state is per process)") {
        const CK_SESSION_HANDLE s = raw.open_session(token);
        CHECK(raw.login(s, k_user_pin) == CKR_USER_ALREADY_LOGGED_IN);
        REQUIRE(raw.f()->C_Logout(s) == CKR_OK);
        CK_SESSION_INFO info{};
        REQUIRE(raw.f()->C_GetSessionInfo(s, &info) == CKR_OK);
        CHECK(info.state == CKS_RO_PUBLIC_SESSION);
        raw.f()->C_CloseSession(s);
        CHECK(botan_verifies(spki, KeyAlgorithm::ecdsa_p256, m, kms.sign(key, m)));
    }
    SECTION("every session on the token is closed under it") {
        REQUIRE(raw.f()->C_CloseAllSessions(raw.slot_of(token)) == CKR_OK);
        CHECK(botan_verifies(spki, KeyAlgorithm::ecdsa_p256, m, kms.sign(key, m)));
        CHECK(kms.find_key("ca").id == key.id);
    }
}

TEST_CASE("Pkcs11Kms: keys made by other tools are refused when ambiguous or exportable",
          "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("foreign");
    {
        RawModule raw(hsm.module());
        const CK_SESSION_HANDLE s = raw.open_session(token, true);
        REQUIRE(raw.login(s, k_user_pin) == CKR_OK);
        raw.generate_p256(s, "exportable", "e1", true, true);
        raw.generate_p256(s, "plain", "p1", false, false);
        raw.generate_p256(s, "twice", "t1", true, false);
        raw.generate_p256(s, "twice", "t2", true, false);
        raw.generate_p256(s, "imported-style", "i1", true, false);
        raw.f()->C_CloseSession(s);
    }
    Pkcs11Kms kms(hsm.module(), token, k_user_pin);
    ErrorCategory category = ErrorCategory::io;

    std::string what = error_of([&] { kms.find_key("exportable"); }, &category);
    CHECK(category == ErrorCategory::kms);
    CHECK(what.find("CKA_EXTRACTABLE=true") != std::string::npos);

    what = error_of([&] { kms.find_key("plain"); }, &category);
    CHECK(category == ErrorCategory::kms);
    CHECK(what.find("CKA_SENSITIVE=false") != std::string::npos);

    // A handle naming the exportable key directly is refused too, before anything is signed.
    const KeyHandle direct{"exportable", "6531", KeyAlgorithm::ecdsa_p256};  // id "e1" in hex
    what = error_of([&] { kms.sign(direct, std::string("m")); }, &category);
    CHECK(category == ErrorCategory::kms);
    CHECK(what.find("not sensitive and non-extractable") != std::string::npos);

    // key_protection reports such a key rather than refusing it.
    const kakunin::Pkcs11KeyProtection p = kms.key_protection(direct);
    CHECK(p.sensitive);
    CHECK(p.extractable);
    CHECK_FALSE(p.never_extractable);

    what = error_of([&] { kms.find_key("twice"); }, &category);
    CHECK(category == ErrorCategory::kms);
    CHECK(what.find("2 private keys are labelled 'twice'") != std::string::npos);
    // Each of the two is still usable through a handle that names its id.
    const KeyHandle t2{"twice", "7432", KeyAlgorithm::ecdsa_p256};
    const auto m = bytes_of("m");
    CHECK(
        botan_verifies(kms.public_key(t2).spki_der, KeyAlgorithm::ecdsa_p256, m, kms.sign(t2, m)));

    // A protected key made by another tool is found and used like Kakunin's own.
    const KeyHandle other = kms.find_key("imported-style");
    CHECK(other.id == "6931");
    CHECK(botan_verifies(kms.public_key(other).spki_der, KeyAlgorithm::ecdsa_p256, m,
                         kms.sign(other, m)));
    // create_key refuses labels that other tools' keys already use.
    error_of([&] { kms.create_key("exportable", KeyAlgorithm::ecdsa_p256); }, &category);
    CHECK(category == ErrorCategory::invalid_state);
}

TEST_CASE("Pkcs11Kms: concurrent signing from 4 threads", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("threads");
    Pkcs11Kms kms(hsm.module(), token, k_user_pin);
    const KeyHandle key = kms.create_key("agent:agent-7", KeyAlgorithm::ecdsa_p256);
    const auto spki = kms.public_key(key).spki_der;

    constexpr int threads = 4;
    constexpr int per_thread = 25;
    std::vector<std::vector<std::vector<std::uint8_t>>> sigs(threads);
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            try {
                for (int i = 0; i < per_thread; ++i) {
                    sigs[t].push_back(
                        kms.sign(key, "record " + std::to_string(t) + "/" + std::to_string(i)));
                    if (i % 10 == 0) (void)kms.public_key(key);
                }
            } catch (...) {
                ++failures;
            }
        });
    }
    for (auto& th : pool) th.join();
    REQUIRE(failures.load() == 0);
    for (int t = 0; t < threads; ++t) {
        REQUIRE(sigs[t].size() == per_thread);
        for (int i = 0; i < per_thread; ++i) {
            const auto m = bytes_of("record " + std::to_string(t) + "/" + std::to_string(i));
            CHECK(botan_verifies(spki, KeyAlgorithm::ecdsa_p256, m, sigs[t][i]));
        }
    }
}

TEST_CASE("Pkcs11Kms: Ed25519 on the token (CKM_EC_EDWARDS_KEY_PAIR_GEN / CKM_EDDSA)", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("ed25519");
    Pkcs11Kms kms(hsm.module(), token, k_user_pin);
    if (kms.supports(KeyAlgorithm::ed25519)) {
        check_key_round_trip(kms, KeyAlgorithm::ed25519, "approver:Jane Doe");
        const auto key = kms.find_key("approver:Jane Doe");
        CHECK(key.algorithm == KeyAlgorithm::ed25519);
        const auto protection = kms.key_protection(key);
        CHECK(protection.sensitive);
        CHECK_FALSE(protection.extractable);
        CHECK_FALSE(protection.value_readable);
        // Ed25519 is deterministic: the same message gives the same signature.
        CHECK(kms.sign(key, std::string("m")) == kms.sign(key, std::string("m")));
        // ECDSA and Ed25519 keys live side by side; each handle keeps its algorithm.
        const auto ec = kms.create_key("ca", KeyAlgorithm::ecdsa_p256);
        CHECK(kms.find_key("ca").algorithm == KeyAlgorithm::ecdsa_p256);
        KeyHandle wrong = ec;
        wrong.algorithm = KeyAlgorithm::ed25519;
        ErrorCategory category = ErrorCategory::io;
        const std::string what = error_of([&] { kms.sign(wrong, std::string("m")); }, &category);
        CHECK(category == ErrorCategory::kms);
        CHECK(what.find("is not ed25519") != std::string::npos);
        (void)kms.public_key(ec);  // cached under the right algorithm
        const std::string pub_what = error_of([&] { kms.public_key(wrong); }, &category);
        CHECK(category == ErrorCategory::kms);
        CHECK(pub_what.find("is not an Ed25519 key") != std::string::npos);
    } else {
        WARN("token does not offer CKM_EC_EDWARDS_KEY_PAIR_GEN/CKM_EDDSA: checking the error");
        ErrorCategory category = ErrorCategory::io;
        const std::string what =
            error_of([&] { kms.create_key("approver", KeyAlgorithm::ed25519); }, &category);
        CHECK(category == ErrorCategory::kms);
        CHECK(what.find("CKM_EC_EDWARDS_KEY_PAIR_GEN") != std::string::npos);
    }
}

TEST_CASE("Pkcs11Kms: Botan's X.509 code signs a certificate with a key on the token", "[pkcs11]") {
    auto& hsm = SoftHsm::instance();
    const std::string token = hsm.new_token("x509");
    Pkcs11Kms kms(hsm.module(), token, k_user_pin);
    std::vector<KeyAlgorithm> algorithms = {KeyAlgorithm::ecdsa_p256};
    if (kms.supports(KeyAlgorithm::ed25519)) algorithms.push_back(KeyAlgorithm::ed25519);
    for (const KeyAlgorithm algorithm : algorithms) {
        INFO("algorithm " << kakunin::to_string(algorithm));
        const KeyHandle key =
            kms.create_key(std::string("ca-") + kakunin::to_string(algorithm), algorithm);
        const kakunin::kms_botan::KmsPrivateKey signer(kms, key);
        Botan::X509_Cert_Options options("Kakunin PKCS#11 test CA/DE/Kakunin");
        options.CA_key(0);
        Botan::AutoSeeded_RNG rng;
        const Botan::X509_Certificate cert =
            Botan::X509::create_self_signed_cert(options, signer, "SHA-256", rng);
        std::unique_ptr<Botan::Public_Key> pub(Botan::X509::load_key(kms.public_key(key).spki_der));
        CHECK(cert.check_signature(*pub));
        CHECK(cert.subject_public_key_info() == kms.public_key(key).spki_der);
        CHECK(cert.is_CA_cert());

        const auto pem = SoftHsm::instance().dir() / "ca.pem";
        write_text(pem, cert.PEM_encode());
        const std::string quoted_pem = shell_quote(pem.string());
        const CommandResult r = run_command(
            "openssl verify -CAfile " + quoted_pem + " " + quoted_pem, SoftHsm::instance().dir());
        INFO("openssl: " << r.output);
        CHECK(r.exit_code == 0);
        CHECK(r.output.find(": OK") != std::string::npos);
    }
}

TEST_CASE("Pkcs11Kms::pin_from_env names KAKUNIN_PKCS11_PIN", "[pkcs11]") {
    const char* saved = std::getenv("KAKUNIN_PKCS11_PIN");
    const std::string old = saved != nullptr ? saved : "";
    ::unsetenv("KAKUNIN_PKCS11_PIN");
    ErrorCategory category = ErrorCategory::io;
    const std::string what = error_of([] { (void)Pkcs11Kms::pin_from_env(); }, &category);
    CHECK(what.find("KAKUNIN_PKCS11_PIN") != std::string::npos);
    CHECK(category == ErrorCategory::unauthorised);
    ::setenv("KAKUNIN_PKCS11_PIN", "", 1);
    CHECK_THROWS_AS(Pkcs11Kms::pin_from_env(), kakunin::Error);
    ::setenv("KAKUNIN_PKCS11_PIN", "4321", 1);
    CHECK(Pkcs11Kms::pin_from_env() == "4321");
    if (saved != nullptr)
        ::setenv("KAKUNIN_PKCS11_PIN", old.c_str(), 1);
    else
        ::unsetenv("KAKUNIN_PKCS11_PIN");
}
