// Private to src/audit: signature verification with one public key (Ed25519 or ECDSA P-256 with
// SHA-256 and DER signatures). The verifier, verify_audit_signature() and the Wycheproof test all
// go through SignatureChecker::verify.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <botan/pk_keys.h>
#include <botan/pubkey.h>

#include "kakunin/kms.hpp"

namespace kakunin::audit_detail {

class SignatureChecker {
public:
    /// Takes a loaded public key; throws kakunin::Error (crypto) unless it is Ed25519 or ECDSA
    /// on P-256.
    explicit SignatureChecker(std::unique_ptr<Botan::Public_Key> key);
    /// From a DER SubjectPublicKeyInfo; throws kakunin::Error (invalid_input / crypto).
    static SignatureChecker from_spki(const std::vector<std::uint8_t>& spki_der);

    KeyAlgorithm algorithm() const noexcept { return m_algorithm; }
    /// True only for a valid signature. Never throws for malformed signatures.
    bool verify(const std::uint8_t* message, std::size_t size, const std::uint8_t* sig,
                std::size_t sig_size) const;

private:
    std::unique_ptr<Botan::Public_Key> m_key;
    std::unique_ptr<Botan::PK_Verifier> m_verifier;
    KeyAlgorithm m_algorithm = KeyAlgorithm::ed25519;
};

}  // namespace kakunin::audit_detail
