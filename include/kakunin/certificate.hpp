// kakunin/certificate.hpp — an agent's X.509 certificate, its issuer's trust anchor and CRL, and
// validation that returns a verdict value (DESIGN §3: the only unknown critical extension
// accepted is Kakunin's own scope extension; a CRL past nextUpdate fails closed).
//
//   auto cert = kakunin::AgentCertificate::load_file("agent.pem");
//   auto anchor = kakunin::TrustAnchor::load_file("state/ca.pem");
//   auto crl = kakunin::CertificateRevocationList::load_file("state/crl.pem");
//   kakunin::CertificateCheck r = kakunin::verify_certificate(cert, anchor, &crl, clock.now_ns());
//   if (!r.ok()) std::cerr << kakunin::to_string(r.status) << ": " << r.detail << "\n";
//   const kakunin::Scope& scope = cert.scope();
//
// Objects are immutable after parsing and cheap to copy (shared state); every const member is
// safe to call from several threads. Parsing throws kakunin::Error (invalid_input); verification
// never throws for a verdict.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/scope.hpp"
#include "kakunin/scope_extension.hpp"

namespace kakunin {

/// Why a certificate is refused. Numbered in ranges that are never reused:
///   0 valid   1x parsing/structure   2x trust   3x time   4x extensions and scope
///   5x revocation   6x binding to the agent's key
enum class CertificateStatus : std::uint16_t {
    valid = 0,
    malformed = 10,                   ///< not X.509 DER/PEM, or breaks RFC 5280 structure rules
    wrong_ca = 20,                    ///< no path from the certificate to the trust anchor
    bad_signature = 21,               ///< a signature in the path does not verify
    invalid_chain = 22,               ///< an issuer may not issue (not a CA, path length, names)
    weak_algorithm = 23,              ///< key or signature algorithm not accepted
    not_yet_valid = 30,               ///< before notBefore (any certificate in the path)
    expired = 31,                     ///< after notAfter (any certificate in the path)
    unknown_critical_extension = 40,  ///< a critical extension other than Kakunin's scope
    no_scope = 41,                    ///< the agent certificate has no scope extension
    scope_not_critical = 42,          ///< the scope extension is present but not critical
    scope_invalid = 43,               ///< the scope extension does not decode or validate
    not_end_entity = 44,              ///< the agent certificate is a CA certificate
    key_usage = 45,                   ///< the agent certificate lacks digitalSignature
    revoked = 50,                     ///< listed on the issuer's CRL
    crl_missing = 51,                 ///< no CRL given (revocation status unknown)
    crl_expired = 52,                 ///< the CRL is past its nextUpdate
    crl_not_yet_valid = 53,           ///< the CRL's thisUpdate is in the future
    crl_invalid = 54,                 ///< the CRL's signature, issuer or fields are wrong
    key_mismatch = 60,                ///< the certificate's key is not the agent's Kms key
};

const char* to_string(CertificateStatus s) noexcept;

/// A verdict: the one reason that decided it (the most fundamental when several apply) and a
/// human-readable detail.
struct CertificateCheck {
    CertificateStatus status = CertificateStatus::malformed;
    std::string detail;
    bool ok() const noexcept { return status == CertificateStatus::valid; }
};

/// A CA certificate trusted to issue agent certificates (normally STATE/ca.pem).
class TrustAnchor {
public:
    /// Exactly one certificate. Throws kakunin::Error (invalid_input).
    static TrustAnchor from_pem(std::string_view pem);
    static TrustAnchor from_der(const std::vector<std::uint8_t>& der);
    static TrustAnchor load_file(const std::string& path);

    const std::vector<std::uint8_t>& der() const noexcept;
    std::string pem() const;
    std::string fingerprint() const;               ///< "sha256:" + hex over the DER
    std::string subject() const;                   ///< distinguished name, for messages
    std::vector<std::uint8_t> public_key() const;  ///< SubjectPublicKeyInfo DER

    struct Impl;
    const Impl& impl() const noexcept { return *m_impl; }

private:
    explicit TrustAnchor(std::shared_ptr<const Impl> impl) : m_impl(std::move(impl)) {}
    std::shared_ptr<const Impl> m_impl;
};

/// A serial in hex as Kakunin compares serials: lowercase, without leading zeros ("0" for
/// zero). Feeds, CRLs and rotations compare serials in this form.
std::string canonical_serial(std::string_view hex);

/// An X.509 v2 CRL (normally STATE/crl.pem).
class CertificateRevocationList {
public:
    static CertificateRevocationList from_pem(std::string_view pem);
    static CertificateRevocationList from_der(const std::vector<std::uint8_t>& der);
    static CertificateRevocationList load_file(const std::string& path);

    const std::vector<std::uint8_t>& der() const noexcept;
    std::string pem() const;
    /// Exact from 1677 to 2262, saturated to the lowest / highest TimeNs outside.
    TimeNs this_update() const noexcept;
    TimeNs next_update() const noexcept;  ///< 0 if the CRL has none (then it never verifies)
    /// The CRL number extension (0 when absent): a later CRL of the issuer has a higher one.
    std::uint64_t number() const noexcept;
    std::string issuer() const;  ///< the issuer's name, as AgentCertificate::issuer() prints it
    /// Lowercase hex serials listed (as AgentCertificate::serial() prints them).
    std::vector<std::string> revoked_serials() const;
    bool lists(std::string_view serial_hex) const;
    /// True if the CRL lists the serial (hex, any case, leading zeros ignored) with reason
    /// keyCompromise or cACompromise: every certificate of that key is then compromised.
    bool lists_for_compromise(std::string_view serial_hex) const;

    struct Impl;
    const Impl& impl() const noexcept { return *m_impl; }

private:
    explicit CertificateRevocationList(std::shared_ptr<const Impl> impl)
        : m_impl(std::move(impl)) {}
    std::shared_ptr<const Impl> m_impl;
};

/// An agent's certificate with its decoded scope. Parsing checks only that it is an X.509
/// certificate; what it is worth is verify_certificate's answer.
class AgentCertificate {
public:
    /// `oid_arc` selects the scope extension's OID (scope_extension_oid(oid_arc)).
    static AgentCertificate from_pem(std::string_view pem,
                                     std::string_view oid_arc = default_oid_arc);
    static AgentCertificate from_der(const std::vector<std::uint8_t>& der,
                                     std::string_view oid_arc = default_oid_arc);
    /// PEM or DER file.
    static AgentCertificate load_file(const std::string& path,
                                      std::string_view oid_arc = default_oid_arc);

    const std::vector<std::uint8_t>& der() const noexcept;
    std::string pem() const;
    std::string fingerprint() const;  ///< "sha256:" + lowercase hex over the DER
    std::string serial() const;       ///< lowercase hex of the serial number's bytes
    /// Exact from 1677-09-21 to 2262-04-11; outside, the lowest / highest TimeNs (earlier or
    /// later than any clock reading: a notAfter in 2300 never expires, never wraps).
    TimeNs not_before() const noexcept;
    TimeNs not_after() const noexcept;
    std::string agent_id() const;  ///< subject common name
    std::string subject() const;
    std::string issuer() const;
    bool is_simulation() const;  ///< subject OU is "simulation" (replay certificates)
    std::vector<std::uint8_t> public_key() const;  ///< SubjectPublicKeyInfo DER
    const std::string& scope_oid() const noexcept;

    /// The scope extension decoded and validated; false if absent or invalid.
    bool has_scope() const noexcept;
    bool scope_critical() const noexcept;
    /// Throws kakunin::Error (invalid_input) with scope_error() when has_scope() is false.
    const Scope& scope() const;
    /// Why the scope could not be read ("" when has_scope()).
    const std::string& scope_error() const noexcept;

    struct Impl;
    const Impl& impl() const noexcept { return *m_impl; }

private:
    explicit AgentCertificate(std::shared_ptr<const Impl> impl) : m_impl(std::move(impl)) {}
    std::shared_ptr<const Impl> m_impl;
};

struct VerifyOptions {
    /// Untrusted CA certificates (DER) between the anchor and the agent, if any.
    std::vector<std::vector<std::uint8_t>> intermediates_der;
    /// SubjectPublicKeyInfo DER of the agent's Kms key; when set, a different certificate key
    /// gives key_mismatch.
    std::vector<std::uint8_t> expected_public_key;
    /// false accepts an unknown revocation status (offline inspection only; the Guard never
    /// sets it).
    bool require_crl = true;
};

/// Full validation at time `at`: path to `anchor`, signatures, validity of every certificate,
/// Kakunin's profile (end entity, digitalSignature, critical scope extension and no other
/// unknown critical extension), revocation against `crl` (issued by the agent's issuer; null
/// means missing), and the key binding. Never throws.
CertificateCheck verify_certificate(const AgentCertificate& cert, const TrustAnchor& anchor,
                                    const CertificateRevocationList* crl, TimeNs at,
                                    const VerifyOptions& options = {});
/// Same from PEM or DER bytes; unparseable input gives malformed.
CertificateCheck verify_certificate(const std::vector<std::uint8_t>& encoded,
                                    const TrustAnchor& anchor, const CertificateRevocationList* crl,
                                    TimeNs at, const VerifyOptions& options = {},
                                    std::string_view oid_arc = default_oid_arc);

}  // namespace kakunin
