// Private: the Botan objects behind the public certificate types, the extension used for the
// scope (and, in tests, for forged extensions), certificate builders and the chain validator.
#pragma once

#include <botan/asn1_time.h>
#include <botan/bigint.h>
#include <botan/pkix_types.h>
#include <botan/rng.h>
#include <botan/x509_crl.h>
#include <botan/x509cert.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kakunin/certificate.hpp"

namespace kakunin {

struct TrustAnchor::Impl {
    std::shared_ptr<const Botan::X509_Certificate> cert;
    std::vector<std::uint8_t> der;
};

struct CertificateRevocationList::Impl {
    std::shared_ptr<const Botan::X509_CRL> crl;
    std::vector<std::uint8_t> der;
};

struct AgentCertificate::Impl {
    std::shared_ptr<const Botan::X509_Certificate> cert;
    std::vector<std::uint8_t> der;
    std::string scope_oid;
    std::optional<Scope> scope;
    bool scope_present = false;
    bool scope_critical = false;
    std::string scope_error;
};

namespace x509 {

inline std::chrono::system_clock::time_point to_time_point(TimeNs t) {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(t)));
}

/// An X509_Time as TimeNs (0 if unset): exact from 1677-09-21 to 2262-04-11, saturated to the
/// lowest or highest TimeNs outside (earlier or later than any clock reading). Never throws.
TimeNs to_time_ns(const Botan::X509_Time& t) noexcept;

/// The X509_Time to issue for `t` (whole seconds). Throws kakunin::Error (invalid_input) naming
/// `field` for a time before 1970-01-01T00:00:00Z, which no clock reads.
Botan::X509_Time to_x509_time(TimeNs t, const char* field);

/// An extension with a fixed OID and DER value (Botan decodes unknown OIDs to
/// Cert_Extension::Unknown_Extension, which cannot be built with bytes).
class RawExtension final : public Botan::Certificate_Extension {
public:
    RawExtension(Botan::OID oid, std::vector<std::uint8_t> value, std::string name)
        : m_oid(std::move(oid)), m_value(std::move(value)), m_name(std::move(name)) {}
    Botan::OID oid_of() const override { return m_oid; }
    std::string oid_name() const override { return m_name; }
    Botan::Certificate_Extension* copy() const override {
        return new RawExtension(m_oid, m_value, m_name);
    }
    void contents_to(Botan::Data_Store&, Botan::Data_Store&) const override {}

private:
    std::vector<std::uint8_t> encode_inner() const override { return m_value; }
    void decode_inner(const std::vector<std::uint8_t>& in) override { m_value = in; }

    Botan::OID m_oid;
    std::vector<std::uint8_t> m_value;
    std::string m_name;
};

struct ExtraExtension {
    std::string oid;
    std::vector<std::uint8_t> value;
    bool critical = true;
};

/// Everything an agent certificate carries. The CA fills it from an approved scope; tests fill
/// it to forge certificates signed by a real CA key.
struct LeafTemplate {
    std::vector<std::uint8_t> subject_public_key;  ///< SPKI DER
    std::string agent_id;
    bool simulation = false;
    TimeNs not_before = 0;
    TimeNs not_after = 0;
    Botan::BigInt serial;  ///< 0: random
    std::string scope_oid;
    std::optional<std::vector<std::uint8_t>> scope_der;  ///< nullopt: no scope extension
    bool scope_critical = true;
    std::vector<ExtraExtension> extra;
};

/// 16 random bytes, positive, top byte non-zero (fixed length, never zero or negative).
Botan::BigInt random_serial(Botan::RandomNumberGenerator& rng);

/// Lowercase hex of a serial's magnitude bytes.
std::string serial_hex(const Botan::BigInt& serial);

/// Subject DN of agent certificates: CN=<agent id>, O=Kakunin agent[, OU=simulation].
Botan::X509_DN agent_dn(const std::string& agent_id, bool simulation);

/// A v3 agent certificate signed through `signer` by the CA `ca_cert`: critical Basic
/// Constraints (CA=false), critical Key Usage (digitalSignature), SKI, AKI, the scope
/// extension, then `extra`. Built with X509_CA::make_cert; nothing comes from a request.
Botan::X509_Certificate make_agent_certificate(Botan::PK_Signer& signer,
                                               const Botan::AlgorithmIdentifier& sig_algo,
                                               const Botan::X509_Certificate& ca_cert,
                                               const LeafTemplate& leaf,
                                               Botan::RandomNumberGenerator& rng);

/// A self-signed CA certificate: critical Basic Constraints (CA, pathlen 0), critical Key
/// Usage (keyCertSign, cRLSign, digitalSignature), SKI.
Botan::X509_Certificate make_ca_certificate(Botan::PK_Signer& signer,
                                            const Botan::AlgorithmIdentifier& sig_algo,
                                            const std::vector<std::uint8_t>& ca_spki,
                                            const Botan::X509_DN& subject, TimeNs not_before,
                                            TimeNs not_after, Botan::RandomNumberGenerator& rng);

struct ChainPolicy {
    std::string scope_oid;      ///< the one unknown critical extension accepted (leaf only)
    bool require_scope = true;  ///< Kakunin agent profile: scope extension mandatory
    bool require_crl = true;
    bool require_leaf_key_usage = true;  ///< leaf must carry Key Usage with digitalSignature
    std::size_t max_path_length = 8;     ///< certificates in the path, anchor included
};

/// The validator behind verify_certificate, also run over the x509-limbo suite.
CertificateCheck validate_chain(
    const std::shared_ptr<const Botan::X509_Certificate>& leaf,
    const std::vector<std::shared_ptr<const Botan::X509_Certificate>>& intermediates,
    const std::vector<std::shared_ptr<const Botan::X509_Certificate>>& anchors,
    const std::shared_ptr<const Botan::X509_CRL>& leaf_crl,
    std::chrono::system_clock::time_point at, const ChainPolicy& policy);

}  // namespace x509
}  // namespace kakunin
