// Wycheproof vectors for the signature check the audit verifier uses (verify_audit_signature:
// ECDSA P-256 with SHA-256 and DER signatures, and Ed25519). Every "valid" vector must verify,
// every "invalid" one must not; "acceptable" ones may go either way and are counted.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "kakunin/audit_verify.hpp"
#include "kakunin/error.hpp"

namespace {

const std::string kDataDir = KAKUNIN_SOURCE_DIR "/../shared/data/wycheproof";

std::vector<std::uint8_t> unhex(const std::string& hex) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return out;
}

struct Tally {
    int valid = 0, invalid = 0, acceptable = 0, acceptable_accepted = 0, mismatches = 0;
};

// Returns false (after a warning) when the vector file is absent.
bool run_file(const std::string& file, kakunin::KeyAlgorithm algorithm, Tally& tally) {
    const std::string path = kDataDir + "/" + file;
    if (!std::filesystem::exists(path)) {
        WARN("Wycheproof data not found at " << path
                                             << ": signature vectors NOT checked (provide "
                                                "../shared/data/wycheproof to run them)");
        return false;
    }
    std::ifstream in(path);
    const nlohmann::json doc = nlohmann::json::parse(in);
    for (const auto& group : doc.at("testGroups")) {
        kakunin::PublicKeyInfo key{algorithm, unhex(group.at("publicKeyDer").get<std::string>())};
        for (const auto& t : group.at("tests")) {
            const auto msg = unhex(t.at("msg").get<std::string>());
            const auto sig = unhex(t.at("sig").get<std::string>());
            const std::string result = t.at("result").get<std::string>();
            const bool ok = kakunin::verify_audit_signature(key, msg.data(), msg.size(), sig.data(),
                                                            sig.size());
            if (result == "acceptable") {
                ++tally.acceptable;
                tally.acceptable_accepted += ok ? 1 : 0;
                continue;
            }
            const bool expected = result == "valid";
            (expected ? tally.valid : tally.invalid) += 1;
            if (ok != expected) {
                ++tally.mismatches;
                FAIL_CHECK(file << " tcId " << t.at("tcId").get<int>() << " ("
                                << t.at("comment").get<std::string>() << "): expected " << result
                                << ", got " << (ok ? "valid" : "invalid"));
            }
        }
    }
    return true;
}

}  // namespace

TEST_CASE("wycheproof: ECDSA P-256 SHA-256 DER signatures", "[audit][wycheproof]") {
    Tally tally;
    if (!run_file("ecdsa_secp256r1_sha256_test.json", kakunin::KeyAlgorithm::ecdsa_p256, tally))
        return;
    std::cout << "wycheproof ecdsa p-256: " << tally.valid << " valid, " << tally.invalid
              << " invalid, " << tally.acceptable << " acceptable (" << tally.acceptable_accepted
              << " accepted)\n";
    CHECK(tally.mismatches == 0);
    CHECK(tally.valid > 0);
    CHECK(tally.invalid > 100);
}

TEST_CASE("wycheproof: Ed25519 signatures", "[audit][wycheproof]") {
    Tally tally;
    if (!run_file("ed25519_test.json", kakunin::KeyAlgorithm::ed25519, tally)) return;
    std::cout << "wycheproof ed25519: " << tally.valid << " valid, " << tally.invalid
              << " invalid, " << tally.acceptable << " acceptable (" << tally.acceptable_accepted
              << " accepted)\n";
    CHECK(tally.mismatches == 0);
    CHECK(tally.valid > 0);
    CHECK(tally.invalid > 50);
}
