#include "kms/kms_botan_key.hpp"

#include <botan/data_src.h>
#include <botan/pk_ops.h>
#include <botan/x509_key.h>
#include <botan/x509_obj.h>

#include "crypto/signature.hpp"

namespace kakunin::kms_botan {
namespace {

/// Collects the message and asks the Kms to sign it. Botan's PK_Signer formats ECDSA output as
/// DER from the raw r||s an operation returns, so the Kms's DER is converted back to raw here.
class KmsSignatureOp final : public Botan::PK_Ops::Signature {
public:
    KmsSignatureOp(Kms& kms, const KeyHandle& handle) : m_kms(kms), m_handle(handle) {}

    void update(const std::uint8_t msg[], size_t msg_len) override {
        m_message.insert(m_message.end(), msg, msg + msg_len);
    }

    Botan::secure_vector<std::uint8_t> sign(Botan::RandomNumberGenerator&) override {
        std::vector<std::uint8_t> message;
        message.swap(m_message);
        std::vector<std::uint8_t> sig = m_kms.sign(m_handle, message);
        if (m_handle.algorithm == KeyAlgorithm::ecdsa_p256)
            sig = crypto::ecdsa_der_to_raw(sig, 32);
        else if (sig.size() != 64)
            throw Error(ErrorCategory::kms, "Kms returned an Ed25519 signature of " +
                                                std::to_string(sig.size()) + " bytes");
        return Botan::secure_vector<std::uint8_t>(sig.begin(), sig.end());
    }

    size_t signature_length() const override { return 64; }

private:
    Kms& m_kms;
    KeyHandle m_handle;
    std::vector<std::uint8_t> m_message;
};

}  // namespace

KmsPrivateKey::KmsPrivateKey(Kms& kms, KeyHandle handle)
    : m_kms(kms), m_handle(std::move(handle)), m_info(kms.public_key(m_handle)) {
    Botan::DataSource_Memory src(m_info.spki_der);
    m_public.reset(Botan::X509::load_key(src));
    const auto algorithm = crypto::spki_algorithm(m_info.spki_der);
    if (!m_public || !algorithm || *algorithm != m_handle.algorithm ||
        m_info.algorithm != m_handle.algorithm)
        throw Error(ErrorCategory::crypto, "key '" + m_handle.label +
                                               "': the Kms's public key does not match the "
                                               "handle's algorithm " +
                                               to_string(m_handle.algorithm));
}

std::string KmsPrivateKey::algo_name() const { return m_public->algo_name(); }
size_t KmsPrivateKey::estimated_strength() const { return m_public->estimated_strength(); }
size_t KmsPrivateKey::key_length() const { return m_public->key_length(); }
Botan::OID KmsPrivateKey::get_oid() const { return m_public->get_oid(); }
bool KmsPrivateKey::check_key(Botan::RandomNumberGenerator& rng, bool strong) const {
    return m_public->check_key(rng, strong);
}
Botan::AlgorithmIdentifier KmsPrivateKey::algorithm_identifier() const {
    return m_public->algorithm_identifier();
}
std::vector<std::uint8_t> KmsPrivateKey::public_key_bits() const {
    return m_public->public_key_bits();
}
size_t KmsPrivateKey::message_parts() const { return m_public->message_parts(); }
size_t KmsPrivateKey::message_part_size() const { return m_public->message_part_size(); }

Botan::secure_vector<std::uint8_t> KmsPrivateKey::private_key_bits() const {
    throw Error(ErrorCategory::kms, "key '" + m_handle.label + "' is not extractable from the Kms");
}

std::unique_ptr<Botan::PK_Ops::Verification> KmsPrivateKey::create_verification_op(
    const std::string& params, const std::string& provider) const {
    return m_public->create_verification_op(params, provider);
}

std::unique_ptr<Botan::PK_Ops::Signature> KmsPrivateKey::create_signature_op(
    Botan::RandomNumberGenerator&, const std::string& params, const std::string&) const {
    // The Kms signs pure Ed25519 or ECDSA over SHA-256 only; refuse anything else rather than
    // produce a signature whose AlgorithmIdentifier would lie.
    const bool ok = m_handle.algorithm == KeyAlgorithm::ed25519
                        ? (params == "Pure" || params.empty())
                        : (params == "EMSA1(SHA-256)" || params == "EMSA1(SHA-2(256))");
    if (!ok)
        throw Error(ErrorCategory::crypto, "key '" + m_handle.label + "' (" +
                                               to_string(m_handle.algorithm) +
                                               ") cannot sign with '" + params + "'");
    return std::make_unique<KmsSignatureOp>(m_kms, m_handle);
}

std::unique_ptr<Botan::PK_Signer> x509_signer(const KmsPrivateKey& key,
                                              Botan::RandomNumberGenerator& rng,
                                              Botan::AlgorithmIdentifier& sig_algo) {
    return Botan::X509_Object::choose_sig_format(sig_algo, key, rng, "SHA-256", "");
}

}  // namespace kakunin::kms_botan
