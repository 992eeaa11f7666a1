// SoftwareKms: keys in memory and in encrypted PKCS#8 files, signatures checked independently,
// and the Botan key adapter that lets X509_CA sign through any Kms.
#include <catch2/catch.hpp>

#include <botan/pubkey.h>
#include <botan/system_rng.h>

#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "kakunin/software_kms.hpp"
#include "kms/kms_botan_key.hpp"
#include "x509_test_support.hpp"

using namespace kakunin;

namespace {

std::string temp_dir(const std::string& name) { return test::make_temp_dir(name); }

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct PassphraseGuard {
    explicit PassphraseGuard(const char* value) {
        if (value)
            ::setenv(SoftwareKms::passphrase_variable, value, 1);
        else
            ::unsetenv(SoftwareKms::passphrase_variable);
    }
    ~PassphraseGuard() { ::unsetenv(SoftwareKms::passphrase_variable); }
};

}  // namespace

TEST_CASE("in-memory SoftwareKms signs with Ed25519 and ECDSA P-256", "[software_kms]") {
    auto kms = SoftwareKms::in_memory();
    const std::string message = "kakunin-checkpoint/v1\nagent-7\n3\nabcd\n1\n";
    for (KeyAlgorithm alg : {KeyAlgorithm::ed25519, KeyAlgorithm::ecdsa_p256}) {
        const std::string label = std::string("approver:Jane Doe ") + to_string(alg);
        const KeyHandle key = kms->create_key(label, alg);
        CHECK(key.label == label);
        CHECK(key.algorithm == alg);
        const PublicKeyInfo pub = kms->public_key(key);
        CHECK(pub.algorithm == alg);
        CHECK(crypto::spki_algorithm(pub.spki_der) == alg);
        const auto sig = kms->sign(key, message);
        if (alg == KeyAlgorithm::ed25519) {
            CHECK(sig.size() == 64);
        } else {
            REQUIRE(sig.size() > 8);
            CHECK(sig[0] == 0x30);  // DER ECDSA-Sig-Value
            CHECK(crypto::ecdsa_raw_to_der(crypto::ecdsa_der_to_raw(sig, 32)) == sig);
        }
        CHECK(crypto::verify_signature(pub.spki_der, message, sig));
        CHECK_FALSE(crypto::verify_signature(pub.spki_der, message + "x", sig));
        auto tampered = sig;
        tampered.back() ^= 0x01;
        CHECK_FALSE(crypto::verify_signature(pub.spki_der, message, tampered));

        const KeyHandle found = kms->find_key(label);
        CHECK(found.id == key.id);
        CHECK(kms->find_or_create_key(label, alg).id == key.id);
        try {
            kms->create_key(label, alg);
            FAIL("a taken label was accepted");
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::invalid_state);
        }
    }
    try {
        kms->find_key("nobody");
        FAIL("a missing key was found");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::not_found);
    }
    CHECK_THROWS_AS(kms->create_key("", KeyAlgorithm::ed25519), Error);
    CHECK_THROWS_AS(kms->create_key("a\nb", KeyAlgorithm::ed25519), Error);
    KeyHandle forged{"approver:Jane Doe ed25519", "other-id", KeyAlgorithm::ed25519};
    CHECK_THROWS_AS(kms->sign(forged, message), Error);
}

TEST_CASE("SoftwareKms needs KAKUNIN_KMS_PASSPHRASE for a directory", "[software_kms]") {
    const std::string dir = temp_dir("kms-nopass");
    for (const char* value : {static_cast<const char*>(nullptr), ""}) {
        PassphraseGuard guard(value);
        try {
            SoftwareKms::open(dir);
            FAIL("opened without a passphrase");
        } catch (const Error& e) {
            CHECK(std::string(e.what()).find("KAKUNIN_KMS_PASSPHRASE") != std::string::npos);
        }
    }
}

TEST_CASE("SoftwareKms stores encrypted PKCS#8 keys that survive a restart", "[software_kms]") {
    const std::string dir = temp_dir("kms-files");
    PassphraseGuard guard("correct horse battery staple");
    std::vector<std::uint8_t> ed_pub, ec_pub;
    std::string ec_file;
    {
        auto kms = SoftwareKms::open(dir);
        CHECK(kms->directory() == dir);
        ed_pub = kms->public_key(kms->create_key("ca", KeyAlgorithm::ed25519)).spki_der;
        const KeyHandle ec = kms->create_key("approver:Jane Doe", KeyAlgorithm::ecdsa_p256);
        ec_pub = kms->public_key(ec).spki_der;
        ec_file = dir + "/" + ec.id;
    }
    const std::string pem = slurp(ec_file);
    CHECK(pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") == 0);
    struct stat st;
    REQUIRE(::stat(ec_file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    // An independent PKCS#8 reader decrypts it with the same passphrase.
    const std::string cmd = "openssl pkey -in '" + ec_file +
                            "' -passin env:KAKUNIN_KMS_PASSPHRASE -pubout -outform DER -out '" +
                            dir + "/pub.der' 2>/dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const std::string pub = slurp(dir + "/pub.der");
    CHECK(std::vector<std::uint8_t>(pub.begin(), pub.end()) == ec_pub);

    {
        auto kms = SoftwareKms::open(dir);  // a new process would do the same
        const KeyHandle ed = kms->find_key("ca");
        CHECK(ed.algorithm == KeyAlgorithm::ed25519);
        CHECK(crypto::verify_signature(ed_pub, "hello", kms->sign(ed, "hello")));
        const KeyHandle ec = kms->find_key("approver:Jane Doe");
        CHECK(ec.algorithm == KeyAlgorithm::ecdsa_p256);
        CHECK(crypto::verify_signature(ec_pub, "hello", kms->sign(ec, "hello")));
        CHECK_THROWS_AS(kms->create_key("ca", KeyAlgorithm::ed25519), Error);
    }
    {
        // A plain (unencrypted) key planted in the directory is refused.
        const std::string planted = dir + "/approver%3AMallory.key.pem";
        REQUIRE(std::system(
                    ("openssl genpkey -algorithm ed25519 -out '" + planted + "'").c_str()) == 0);
        auto kms = SoftwareKms::open(dir);
        try {
            kms->find_key("approver:Mallory");
            FAIL("an unencrypted key file was accepted");
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::kms);
            CHECK(std::string(e.what()).find("not an encrypted") != std::string::npos);
        }
    }
    {
        auto kms = SoftwareKms::open(dir, "wrong passphrase");
        try {
            kms->find_key("ca");
            FAIL("decrypted with the wrong passphrase");
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::kms);
        }
    }
}

TEST_CASE("SoftwareKms signs from several threads at once", "[software_kms]") {
    auto kms = SoftwareKms::in_memory();
    const KeyHandle ed = kms->create_key("ed", KeyAlgorithm::ed25519);
    const KeyHandle ec = kms->create_key("ec", KeyAlgorithm::ecdsa_p256);
    const auto ed_pub = kms->public_key(ed).spki_der, ec_pub = kms->public_key(ec).spki_der;
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 25; ++i) {
                const std::string msg = "t" + std::to_string(t) + "-" + std::to_string(i);
                if (crypto::verify_signature(ed_pub, msg, kms->sign(ed, msg))) ++good;
                if (crypto::verify_signature(ec_pub, msg, kms->sign(ec, msg))) ++good;
                kms->find_or_create_key("shared-" + std::to_string(i % 3), KeyAlgorithm::ed25519);
            }
        });
    for (auto& t : threads) t.join();
    CHECK(good == 200);
}

TEST_CASE("the Botan key adapter signs through the Kms in Botan's formats", "[software_kms]") {
    auto kms = SoftwareKms::in_memory();
    Botan::System_RNG rng;
    for (KeyAlgorithm alg : {KeyAlgorithm::ed25519, KeyAlgorithm::ecdsa_p256}) {
        const KeyHandle handle = kms->create_key(to_string(alg), alg);
        kms_botan::KmsPrivateKey key(*kms, handle);
        CHECK(key.algo_name() == (alg == KeyAlgorithm::ed25519 ? "Ed25519" : "ECDSA"));
        CHECK_THROWS_AS(key.private_key_bits(), Error);
        const std::string padding = alg == KeyAlgorithm::ed25519 ? "Pure" : "EMSA1(SHA-256)";
        const auto format = alg == KeyAlgorithm::ed25519 ? Botan::IEEE_1363 : Botan::DER_SEQUENCE;
        Botan::PK_Signer signer(key, rng, padding, format);
        const std::string msg = "to be signed";
        const auto sig =
            signer.sign_message(reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size(), rng);
        // Botan's own verifier accepts it, and so does the SPKI helper used by audit.
        Botan::PK_Verifier verifier(key.public_key(), padding, format);
        CHECK(verifier.verify_message(reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size(),
                                      sig.data(), sig.size()));
        CHECK(crypto::verify_signature(kms->public_key(handle).spki_der, msg,
                                       std::vector<std::uint8_t>(sig.begin(), sig.end())));
        // Asking for another hash is refused rather than mislabelled.
        CHECK_THROWS(Botan::PK_Signer(
            key, rng, alg == KeyAlgorithm::ed25519 ? "Ed25519ph" : "EMSA1(SHA-384)", format));
    }
}
