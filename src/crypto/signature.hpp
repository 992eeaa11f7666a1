// Private: the one signature verifier of Kakunin (SignatureChecker: Ed25519, or ECDSA P-256 with
// SHA-256 and canonical DER signatures; the Wycheproof vectors in tests/test_wycheproof.cpp run
// through it), and the conversions between ECDSA's DER Ecdsa-Sig-Value and the raw r||s that
// Botan's signature operations exchange. Every signature Kakunin checks goes through
// SignatureChecker::verify: audit records and checkpoints, scope and baseline approvals, reviews,
// re-enables, the evidence package's manifest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "kakunin/kms.hpp"

namespace Botan {
class Public_Key;
class PK_Verifier;
}  // namespace Botan

namespace kakunin::crypto {

/// One public key, ready to verify many signatures. Refuses what another library would accept
/// but an encoding check must not: an Ed25519 S at or above the group order (RFC 8032 §5.1.7;
/// Botan 2 does not check it), an ECDSA signature whose DER is not the one canonical encoding.
/// verify() is const and may be called from several threads at once only if the caller
/// serialises them (Botan's PK_Verifier keeps state): give each thread its own checker.
class SignatureChecker {
public:
    /// Takes a loaded public key; throws kakunin::Error (crypto) unless it is Ed25519 or ECDSA
    /// on P-256.
    explicit SignatureChecker(std::unique_ptr<Botan::Public_Key> key);
    /// From a DER SubjectPublicKeyInfo; throws kakunin::Error (invalid_input / crypto).
    static SignatureChecker from_spki(const std::vector<std::uint8_t>& spki_der);
    SignatureChecker(SignatureChecker&&) noexcept;
    SignatureChecker& operator=(SignatureChecker&&) noexcept;
    ~SignatureChecker();

    KeyAlgorithm algorithm() const noexcept { return m_algorithm; }
    /// True only for a valid signature in its canonical encoding. Never throws.
    bool verify(const std::uint8_t* message, std::size_t size, const std::uint8_t* sig,
                std::size_t sig_size) const noexcept;

private:
    std::unique_ptr<Botan::Public_Key> m_key;
    std::unique_ptr<Botan::PK_Verifier> m_verifier;
    KeyAlgorithm m_algorithm = KeyAlgorithm::ed25519;
};

/// The Kakunin algorithm of an SPKI: Ed25519, or ECDSA on P-256. nullopt for anything else
/// (other curves, RSA, malformed DER).
std::optional<KeyAlgorithm> spki_algorithm(const std::vector<std::uint8_t>& spki_der) noexcept;

/// SignatureChecker::from_spki(spki_der).verify(...): true only if `signature` is a valid,
/// canonically encoded signature of `message` under the key. Any malformed input, unsupported
/// key or curve gives false; never throws. Thread-safe.
bool verify_signature(const std::vector<std::uint8_t>& spki_der, const std::uint8_t* message,
                      std::size_t message_size, const std::uint8_t* signature,
                      std::size_t signature_size) noexcept;
inline bool verify_signature(const std::vector<std::uint8_t>& spki_der, std::string_view message,
                             const std::vector<std::uint8_t>& signature) noexcept {
    return verify_signature(spki_der, reinterpret_cast<const std::uint8_t*>(message.data()),
                            message.size(), signature.data(), signature.size());
}
inline bool verify_signature(const std::vector<std::uint8_t>& spki_der,
                             const std::vector<std::uint8_t>& message,
                             const std::vector<std::uint8_t>& signature) noexcept {
    return verify_signature(spki_der, message.data(), message.size(), signature.data(),
                            signature.size());
}

/// DER SEQUENCE { INTEGER r, INTEGER s } -> r||s, each left-padded to `part_size` bytes.
/// Throws kakunin::Error (crypto) if the DER is malformed or a part is too large.
std::vector<std::uint8_t> ecdsa_der_to_raw(const std::vector<std::uint8_t>& der,
                                           std::size_t part_size);
/// r||s (even length) -> DER ECDSA-Sig-Value.
std::vector<std::uint8_t> ecdsa_raw_to_der(const std::vector<std::uint8_t>& raw);

}  // namespace kakunin::crypto
