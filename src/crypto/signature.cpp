#include "crypto/signature.hpp"

#include <botan/ber_dec.h>
#include <botan/bigint.h>
#include <botan/der_enc.h>
#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/pubkey.h>
#include <botan/x509_key.h>

#include <memory>

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

}  // namespace

std::optional<KeyAlgorithm> spki_algorithm(const std::vector<std::uint8_t>& spki_der) noexcept {
    try {
        const auto key = load_spki(spki_der);
        return key ? algorithm_of(*key) : std::nullopt;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool verify_signature(const std::vector<std::uint8_t>& spki_der, const std::uint8_t* message,
                      std::size_t message_size, const std::uint8_t* signature,
                      std::size_t signature_size) noexcept {
    try {
        const auto key = load_spki(spki_der);
        if (!key) return false;
        const auto algorithm = algorithm_of(*key);
        if (!algorithm) return false;
        if (*algorithm == KeyAlgorithm::ed25519) {
            if (signature_size != 64) return false;
            Botan::PK_Verifier verifier(*key, "Pure");
            return verifier.verify_message(message, message_size, signature, signature_size);
        }
        Botan::PK_Verifier verifier(*key, "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
        return verifier.verify_message(message, message_size, signature, signature_size);
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
