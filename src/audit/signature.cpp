// Signature verification for audit records and checkpoints.
#include "audit/signature.hpp"

#include <botan/asn1_oid.h>
#include <botan/data_src.h>
#include <botan/ecdsa.h>
#include <botan/x509_key.h>

#include "kakunin/error.hpp"

namespace kakunin::audit_detail {

namespace {

// ECDSA signatures are integers r, s in [1, n-1]; the DER must be the one canonical encoding.
// Botan decodes the DER and re-encodes it for comparison; the explicit check here keeps that
// guarantee independent of the Botan version.
bool is_canonical_der_ecdsa(const std::uint8_t* sig, std::size_t size) {
    // SEQUENCE { INTEGER r, INTEGER s }, short-form lengths suffice for P-256 (at most 72 bytes).
    if (size < 8 || sig[0] != 0x30 || sig[1] != size - 2) return false;
    std::size_t pos = 2;
    for (int i = 0; i < 2; ++i) {
        if (pos + 2 > size || sig[pos] != 0x02) return false;
        const std::size_t len = sig[pos + 1];
        pos += 2;
        if (len == 0 || len > 33 || pos + len > size) return false;
        if (sig[pos] & 0x80) return false;                                        // negative
        if (len > 1 && sig[pos] == 0x00 && !(sig[pos + 1] & 0x80)) return false;  // padding
        pos += len;
    }
    return pos == size;
}

// RFC 8032 §5.1.7: the S half of an Ed25519 signature must be below the group order L, or the
// same signature has several encodings (malleability). Botan 2 does not check this.
bool ed25519_s_is_canonical(const std::uint8_t* sig) {
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    static constexpr std::uint8_t L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
                                           0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
    const std::uint8_t* s = sig + 32;
    for (int i = 31; i >= 0; --i) {
        if (s[i] != L[i]) return s[i] < L[i];
    }
    return false;  // S == L
}

}  // namespace

SignatureChecker::SignatureChecker(std::unique_ptr<Botan::Public_Key> key) : m_key(std::move(key)) {
    if (!m_key) throw Error(ErrorCategory::crypto, "signature: no public key");
    const std::string algo = m_key->algo_name();
    if (algo == "Ed25519") {
        m_algorithm = KeyAlgorithm::ed25519;
        m_verifier = std::make_unique<Botan::PK_Verifier>(*m_key, "Pure");
    } else if (algo == "ECDSA") {
        const auto& ec = dynamic_cast<const Botan::ECDSA_PublicKey&>(*m_key);
        if (ec.domain().get_curve_oid() != Botan::OID::from_string("secp256r1")) {
            throw Error(ErrorCategory::crypto, "signature: ECDSA key is not on P-256");
        }
        m_algorithm = KeyAlgorithm::ecdsa_p256;
        m_verifier =
            std::make_unique<Botan::PK_Verifier>(*m_key, "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
    } else {
        throw Error(ErrorCategory::crypto,
                    "signature: unsupported key algorithm " + algo + " (Ed25519 or ECDSA P-256)");
    }
}

SignatureChecker SignatureChecker::from_spki(const std::vector<std::uint8_t>& spki_der) {
    std::unique_ptr<Botan::Public_Key> key;
    try {
        Botan::DataSource_Memory src(spki_der.data(), spki_der.size());
        key.reset(Botan::X509::load_key(src));
    } catch (const std::exception& e) {
        throw Error(ErrorCategory::invalid_input,
                    std::string("signature: malformed SubjectPublicKeyInfo: ") + e.what());
    }
    return SignatureChecker(std::move(key));
}

bool SignatureChecker::verify(const std::uint8_t* message, std::size_t size,
                              const std::uint8_t* sig, std::size_t sig_size) const {
    if (m_algorithm == KeyAlgorithm::ed25519 && (sig_size != 64 || !ed25519_s_is_canonical(sig))) {
        return false;
    }
    if (m_algorithm == KeyAlgorithm::ecdsa_p256 && !is_canonical_der_ecdsa(sig, sig_size)) {
        return false;
    }
    try {
        return m_verifier->verify_message(message, size, sig, sig_size);
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace kakunin::audit_detail
