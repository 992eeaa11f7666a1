// Private: a Botan Private_Key whose signing goes through a kakunin::Kms, so that Botan's X509_CA
// signs certificates and CRLs while the key stays inside the Kms (software, PKCS#11 or remote).
//
//   KmsPrivateKey key(kms, kms.find_key("ca"));
//   Botan::X509_CA ca(ca_cert, key, "SHA-256", rng);
#pragma once

#include <botan/pk_keys.h>
#include <botan/pubkey.h>

#include <memory>
#include <string>

#include "kakunin/kms.hpp"

namespace kakunin::kms_botan {

/// Threading: as thread-safe as the Kms underneath; one object may serve several signers.
/// private_key_bits() throws: the key is not extractable.
class KmsPrivateKey final : public Botan::Private_Key {
public:
    /// Reads the public key from the Kms. Throws kakunin::Error (crypto) if the Kms reports an
    /// algorithm that does not match its SPKI.
    KmsPrivateKey(Kms& kms, KeyHandle handle);

    std::string algo_name() const override;
    size_t estimated_strength() const override;
    size_t key_length() const override;
    Botan::OID get_oid() const override;
    bool check_key(Botan::RandomNumberGenerator& rng, bool strong) const override;
    Botan::AlgorithmIdentifier algorithm_identifier() const override;
    std::vector<std::uint8_t> public_key_bits() const override;
    size_t message_parts() const override;
    size_t message_part_size() const override;
    Botan::secure_vector<std::uint8_t> private_key_bits() const override;

    std::unique_ptr<Botan::PK_Ops::Verification> create_verification_op(
        const std::string& params, const std::string& provider) const override;
    std::unique_ptr<Botan::PK_Ops::Signature> create_signature_op(
        Botan::RandomNumberGenerator& rng, const std::string& params,
        const std::string& provider) const override;

    const KeyHandle& handle() const noexcept { return m_handle; }
    const PublicKeyInfo& public_info() const noexcept { return m_info; }
    const Botan::Public_Key& public_key() const noexcept { return *m_public; }

private:
    Kms& m_kms;
    KeyHandle m_handle;
    PublicKeyInfo m_info;
    std::unique_ptr<Botan::Public_Key> m_public;
};

/// A PK_Signer for X.509 objects (SHA-256 for ECDSA, pure Ed25519) and the matching signature
/// AlgorithmIdentifier, for X509_CA::make_cert and X509_Object::make_signed.
std::unique_ptr<Botan::PK_Signer> x509_signer(const KmsPrivateKey& key,
                                              Botan::RandomNumberGenerator& rng,
                                              Botan::AlgorithmIdentifier& sig_algo);

}  // namespace kakunin::kms_botan
