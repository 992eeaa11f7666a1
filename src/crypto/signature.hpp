// Private: signature verification against a SubjectPublicKeyInfo, and the conversions between
// ECDSA's DER Ecdsa-Sig-Value and the raw r||s that Botan's signature operations exchange.
// Used by the CA (approvals), the Botan key adapter and audit verification.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "kakunin/kms.hpp"

namespace kakunin::crypto {

/// The Kakunin algorithm of an SPKI: Ed25519, or ECDSA on P-256. nullopt for anything else
/// (other curves, RSA, malformed DER).
std::optional<KeyAlgorithm> spki_algorithm(const std::vector<std::uint8_t>& spki_der) noexcept;

/// True only if `signature` is a valid signature of `message` under the key: Ed25519 (64 raw
/// bytes) or ECDSA P-256 with SHA-256 (DER ECDSA-Sig-Value, canonical). Any malformed input,
/// unsupported key or curve gives false; never throws. Thread-safe.
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
