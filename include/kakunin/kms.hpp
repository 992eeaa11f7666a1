// kakunin/kms.hpp — where private keys live. Kakunin never holds a CA, agent or approver private
// key in its own memory when a KMS or HSM holds it: it asks the Kms to sign.
//
//   auto kms = kakunin::SoftwareKms::open("state/keys");            // or Pkcs11Kms
//   kakunin::KeyHandle ca = kms->create_key("ca", kakunin::KeyAlgorithm::ed25519);
//   std::vector<std::uint8_t> sig = kms->sign(ca, bytes);
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/error.hpp"

namespace kakunin {

enum class KeyAlgorithm : std::uint8_t {
    ed25519,     ///< signatures are 64 raw bytes (RFC 8032)
    ecdsa_p256,  ///< ECDSA over P-256 with SHA-256; signatures are DER ECDSA-Sig-Value
};

inline const char* to_string(KeyAlgorithm a) noexcept {
    return a == KeyAlgorithm::ed25519 ? "ed25519" : "ecdsa-p256";
}

/// Names a key inside one Kms. The label is the stable name ("ca", "approver:Jane Doe",
/// "agent:agent-7"); the id is whatever the backend needs to find it again.
struct KeyHandle {
    std::string label;
    std::string id;
    KeyAlgorithm algorithm = KeyAlgorithm::ed25519;
};

struct PublicKeyInfo {
    KeyAlgorithm algorithm = KeyAlgorithm::ed25519;
    std::vector<std::uint8_t> spki_der;  ///< SubjectPublicKeyInfo, DER
};

/// Threading: every member may be called from several threads at once; implementations lock as
/// they need. Calls may block (a network KMS, a token). Errors throw kakunin::Error with category
/// kms (backend failure) or not_found (no such key). Never called from Guard::check().
class Kms {
public:
    virtual ~Kms() = default;

    /// Creates a new key under `label`; throws if the label is taken.
    virtual KeyHandle create_key(std::string_view label, KeyAlgorithm algorithm) = 0;
    /// Finds an existing key by label; throws kakunin::Error (not_found) if absent.
    virtual KeyHandle find_key(std::string_view label) = 0;
    /// Signs `message` (not a digest): Ed25519 pure, or ECDSA P-256 over SHA-256(message).
    virtual std::vector<std::uint8_t> sign(const KeyHandle& key, const std::uint8_t* message,
                                           std::size_t size) = 0;
    virtual PublicKeyInfo public_key(const KeyHandle& key) = 0;

    /// The key under `label`, created with `algorithm` if it does not exist yet. Safe when
    /// several callers race to create the same label: all get the one key.
    KeyHandle find_or_create_key(std::string_view label, KeyAlgorithm algorithm) {
        try {
            return find_key(label);
        } catch (const Error& e) {
            if (e.category() != ErrorCategory::not_found) throw;
        }
        try {
            return create_key(label, algorithm);
        } catch (const Error& create_error) {
            // Another thread or process may have created it between the two calls.
            try {
                return find_key(label);
            } catch (const Error&) {
                throw create_error;
            }
        }
    }
    std::vector<std::uint8_t> sign(const KeyHandle& key, const std::vector<std::uint8_t>& m) {
        return sign(key, m.data(), m.size());
    }
    std::vector<std::uint8_t> sign(const KeyHandle& key, std::string_view m) {
        return sign(key, reinterpret_cast<const std::uint8_t*>(m.data()), m.size());
    }
};

}  // namespace kakunin
