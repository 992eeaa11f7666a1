#include "crypto/signature.hpp"

#include <botan/asn1_oid.h>
#include <botan/ber_dec.h>
#include <botan/bigint.h>
#include <botan/data_src.h>
#include <botan/der_enc.h>
#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/pubkey.h>
#include <botan/x509_key.h>

#include <memory>

#include "kakunin/error.hpp"

namespace kakunin::crypto {
namespace {

std::unique_ptr<Botan::Public_Key> load_spki(const std::vector<std::uint8_t>& spki_der) {
    Botan::DataSource_Memory src(spki_der);
    return std::unique_ptr<Botan::Public_Key>(Botan::X509::load_key(src));
}

std::optional<KeyAlgorithm> algorithm_of(const Botan::Public_Key& key) {
    if (key.algo_name() == "Ed25519") return KeyAlgorithm::ed25519;
    if (key.algo_name() == "ECDSA") {
        const auto* ec = dynamic_cast<const Botan::ECDSA_PublicKey*>(&key);
        if (ec != nullptr && ec->domain() == Botan::EC_Group("secp256r1"))
            return KeyAlgorithm::ecdsa_p256;
    }
    return std::nullopt;
}

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

std::optional<KeyAlgorithm> spki_algorithm(const std::vector<std::uint8_t>& spki_der) noexcept {
    try {
        const auto key = load_spki(spki_der);
        return key ? algorithm_of(*key) : std::nullopt;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

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

SignatureChecker::SignatureChecker(SignatureChecker&&) noexcept = default;
SignatureChecker& SignatureChecker::operator=(SignatureChecker&&) noexcept = default;
SignatureChecker::~SignatureChecker() = default;

bool SignatureChecker::verify(const std::uint8_t* message, std::size_t size,
                              const std::uint8_t* sig, std::size_t sig_size) const noexcept {
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

bool verify_signature(const std::vector<std::uint8_t>& spki_der, const std::uint8_t* message,
                      std::size_t message_size, const std::uint8_t* signature,
                      std::size_t signature_size) noexcept {
    try {
        return SignatureChecker::from_spki(spki_der).verify(message, message_size, signature,
                                                            signature_size);
    } catch (const std::exception&) {
        return false;
    }
}

std::vector<std::uint8_t> ecdsa_der_to_raw(const std::vector<std::uint8_t>& der,
                                           std::size_t part_size) {
    try {
        Botan::BigInt r, s;
        Botan::BER_Decoder(der)
            .start_cons(Botan::SEQUENCE)
            .decode(r)
            .decode(s)
            .end_cons()
            .verify_end();
        if (r.is_negative() || s.is_negative() || r.bytes() > part_size || s.bytes() > part_size)
            throw Error(ErrorCategory::crypto, "ECDSA signature: r or s out of range");
        std::vector<std::uint8_t> raw(2 * part_size);
        r.binary_encode(raw.data() + part_size - r.bytes());
        s.binary_encode(raw.data() + 2 * part_size - s.bytes());
        return raw;
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(
            ErrorCategory::crypto,
            std::string("ECDSA signature: malformed DER ECDSA-Sig-Value (") + e.what() + ")");
    }
}

std::vector<std::uint8_t> ecdsa_raw_to_der(const std::vector<std::uint8_t>& raw) {
    if (raw.empty() || raw.size() % 2 != 0)
        throw Error(ErrorCategory::crypto, "ECDSA signature: raw r||s of odd length");
    const std::size_t half = raw.size() / 2;
    const Botan::BigInt r(raw.data(), half), s(raw.data() + half, half);
    std::vector<std::uint8_t> der;
    Botan::DER_Encoder(der).start_cons(Botan::SEQUENCE).encode(r).encode(s).end_cons();
    return der;
}

}  // namespace kakunin::crypto
