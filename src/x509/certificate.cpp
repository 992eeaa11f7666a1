// AgentCertificate, TrustAnchor, CertificateRevocationList and the chain validator built from
// Botan's PKIX:: building blocks (x509_path_validate would refuse the critical scope extension).
#include <botan/ber_dec.h>
#include <botan/certstor.h>
#include <botan/data_src.h>
#include <botan/pem.h>
#include <botan/pk_keys.h>
#include <botan/x509_ext.h>
#include <botan/x509path.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <sstream>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "kakunin/ca.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin {
namespace {

using CertPtr = std::shared_ptr<const Botan::X509_Certificate>;

[[noreturn]] void bad(const std::string& what, const std::string& why) {
    throw Error(ErrorCategory::invalid_input, what + ": " + why);
}

std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, "cannot read " + path);
    std::stringstream buf;
    buf << in.rdbuf();
    const std::string s = buf.str();
    return std::vector<std::uint8_t>(s.begin(), s.end());
}

bool looks_like_pem(const std::vector<std::uint8_t>& bytes) {
    static const std::string marker = "-----BEGIN ";
    return std::search(bytes.begin(), bytes.end(), marker.begin(), marker.end()) != bytes.end();
}

/// Exactly one PEM block with `label`, nothing but whitespace around it.
std::vector<std::uint8_t> pem_decode(std::string_view pem, const std::string& label,
                                     const std::string& what) {
    const std::string begin = "-----BEGIN " + label + "-----";
    const std::string end = "-----END " + label + "-----";
    const auto b = pem.find(begin);
    const auto e = pem.find(end);
    if (b == std::string_view::npos || e == std::string_view::npos || e < b)
        bad(what, "no PEM block '" + label + "'");
    auto blank = [](std::string_view s) {
        return std::all_of(s.begin(), s.end(),
                           [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
    };
    if (!blank(pem.substr(0, b)) || !blank(pem.substr(e + end.size())))
        bad(what, "expected exactly one PEM block '" + label + "'");
    try {
        Botan::DataSource_Memory src(reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size());
        const auto der = Botan::PEM_Code::decode_check_label(src, label);
        return std::vector<std::uint8_t>(der.begin(), der.end());
    } catch (const std::exception& ex) {
        bad(what, std::string("bad PEM (") + ex.what() + ")");
    }
}

std::string pem_encode(const std::vector<std::uint8_t>& der, const std::string& label) {
    return Botan::PEM_Code::encode(der.data(), der.size(), label);
}

/// Parses DER and insists that it re-encodes to the same bytes (no trailing data, DER outer
/// structure).
CertPtr parse_certificate(const std::vector<std::uint8_t>& der, const std::string& what) {
    CertPtr cert;
    try {
        cert = std::make_shared<const Botan::X509_Certificate>(der);
    } catch (const std::exception& ex) {
        bad(what, std::string("not an X.509 certificate (") + ex.what() + ")");
    }
    if (cert->BER_encode() != der) bad(what, "trailing bytes or non-DER encoding");
    return cert;
}

std::string dn_string(const Botan::X509_DN& dn) {
    std::ostringstream os;
    os << dn;
    return os.str();
}

std::shared_ptr<AgentCertificate::Impl> agent_impl(const std::vector<std::uint8_t>& der,
                                                   std::string_view oid_arc) {
    auto impl = std::make_shared<AgentCertificate::Impl>();
    impl->scope_oid = scope_extension_oid(oid_arc);
    impl->cert = parse_certificate(der, "agent certificate");
    impl->der = der;
    const Botan::OID oid = Botan::OID::from_string(impl->scope_oid);
    const Botan::Extensions& ext = impl->cert->v3_extensions();
    impl->scope_present = ext.extension_set(oid);
    if (!impl->scope_present) {
        impl->scope_error = "no scope extension " + impl->scope_oid;
        return impl;
    }
    impl->scope_critical = ext.critical_extension_set(oid);
    try {
        impl->scope = decode_scope_extension(ext.get_extension_bits(oid));
    } catch (const Error& e) {
        impl->scope_error = e.what();
    }
    return impl;
}

}  // namespace

const char* to_string(CertificateStatus s) noexcept {
    switch (s) {
        case CertificateStatus::valid: return "valid";
        case CertificateStatus::malformed: return "malformed";
        case CertificateStatus::wrong_ca: return "wrong_ca";
        case CertificateStatus::bad_signature: return "bad_signature";
        case CertificateStatus::invalid_chain: return "invalid_chain";
        case CertificateStatus::weak_algorithm: return "weak_algorithm";
        case CertificateStatus::not_yet_valid: return "not_yet_valid";
        case CertificateStatus::expired: return "expired";
        case CertificateStatus::unknown_critical_extension: return "unknown_critical_extension";
        case CertificateStatus::no_scope: return "no_scope";
        case CertificateStatus::scope_not_critical: return "scope_not_critical";
        case CertificateStatus::scope_invalid: return "scope_invalid";
        case CertificateStatus::not_end_entity: return "not_end_entity";
        case CertificateStatus::key_usage: return "key_usage";
        case CertificateStatus::revoked: return "revoked";
        case CertificateStatus::crl_missing: return "crl_missing";
        case CertificateStatus::crl_expired: return "crl_expired";
        case CertificateStatus::crl_not_yet_valid: return "crl_not_yet_valid";
        case CertificateStatus::crl_invalid: return "crl_invalid";
        case CertificateStatus::key_mismatch: return "key_mismatch";
    }
    return "unknown";
}

// ---- TrustAnchor ------------------------------------------------------------------------------

TrustAnchor TrustAnchor::from_der(const std::vector<std::uint8_t>& der) {
    auto impl = std::make_shared<Impl>();
    impl->cert = parse_certificate(der, "trust anchor");
    impl->der = der;
    if (!impl->cert->is_CA_cert()) bad("trust anchor", "not a CA certificate");
    return TrustAnchor(std::move(impl));
}
TrustAnchor TrustAnchor::from_pem(std::string_view pem) {
    return from_der(pem_decode(pem, "CERTIFICATE", "trust anchor"));
}
TrustAnchor TrustAnchor::load_file(const std::string& path) {
    const auto bytes = read_file(path);
    try {
        return looks_like_pem(bytes)
                   ? from_pem(std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                               bytes.size()))
                   : from_der(bytes);
    } catch (const Error& e) {
        throw Error(e.category(), path + ": " + e.what());
    }
}
const std::vector<std::uint8_t>& TrustAnchor::der() const noexcept { return m_impl->der; }
std::string TrustAnchor::pem() const { return pem_encode(m_impl->der, "CERTIFICATE"); }
std::string TrustAnchor::fingerprint() const { return crypto::fingerprint(m_impl->der); }
std::string TrustAnchor::subject() const { return dn_string(m_impl->cert->subject_dn()); }
std::vector<std::uint8_t> TrustAnchor::public_key() const {
    return m_impl->cert->subject_public_key_info();
}

// ---- CertificateRevocationList ----------------------------------------------------------------

CertificateRevocationList CertificateRevocationList::from_der(
    const std::vector<std::uint8_t>& der) {
    auto impl = std::make_shared<Impl>();
    try {
        impl->crl = std::make_shared<const Botan::X509_CRL>(der);
    } catch (const std::exception& ex) {
        bad("CRL", std::string("not an X.509 CRL (") + ex.what() + ")");
    }
    if (impl->crl->BER_encode() != der) bad("CRL", "trailing bytes or non-DER encoding");
    impl->der = der;
    return CertificateRevocationList(std::move(impl));
}
CertificateRevocationList CertificateRevocationList::from_pem(std::string_view pem) {
    return from_der(pem_decode(pem, "X509 CRL", "CRL"));
}
CertificateRevocationList CertificateRevocationList::load_file(const std::string& path) {
    const auto bytes = read_file(path);
    try {
        return looks_like_pem(bytes)
                   ? from_pem(std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                               bytes.size()))
                   : from_der(bytes);
    } catch (const Error& e) {
        throw Error(e.category(), path + ": " + e.what());
    }
}
const std::vector<std::uint8_t>& CertificateRevocationList::der() const noexcept {
    return m_impl->der;
}
std::string CertificateRevocationList::pem() const { return pem_encode(m_impl->der, "X509 CRL"); }
TimeNs CertificateRevocationList::this_update() const noexcept {
    return x509::to_time_ns(m_impl->crl->this_update());
}
TimeNs CertificateRevocationList::next_update() const noexcept {
    return x509::to_time_ns(m_impl->crl->next_update());
}
std::uint64_t CertificateRevocationList::number() const noexcept {
    try {
        return m_impl->crl->crl_number();
    } catch (...) {
        return 0;
    }
}
std::string CertificateRevocationList::issuer() const {
    return dn_string(m_impl->crl->issuer_dn());
}
std::vector<std::string> CertificateRevocationList::revoked_serials() const {
    std::vector<std::string> out;
    for (const auto& entry : m_impl->crl->get_revoked())
        if (entry.reason_code() != Botan::REMOVE_FROM_CRL)
            out.push_back(crypto::to_hex(entry.serial_number()));
    return out;
}
std::string canonical_serial(std::string_view hex) {
    std::string out;
    for (char c : hex) {
        if (out.empty() && c == '0') continue;
        out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return out.empty() ? "0" : out;
}

bool CertificateRevocationList::lists(std::string_view serial_hex) const {
    const std::string want = canonical_serial(serial_hex);
    for (const std::string& listed : revoked_serials())
        if (canonical_serial(listed) == want) return true;
    return false;
}

bool CertificateRevocationList::lists_for_compromise(std::string_view serial_hex) const {
    const std::string want = canonical_serial(serial_hex);
    for (const auto& entry : m_impl->crl->get_revoked()) {
        const auto code = entry.reason_code();
        if (code != Botan::KEY_COMPROMISE && code != Botan::CA_COMPROMISE) continue;
        if (canonical_serial(crypto::to_hex(entry.serial_number())) == want) return true;
    }
    return false;
}

// ---- AgentCertificate -------------------------------------------------------------------------

AgentCertificate AgentCertificate::from_der(const std::vector<std::uint8_t>& der,
                                            std::string_view oid_arc) {
    return AgentCertificate(agent_impl(der, oid_arc));
}
AgentCertificate AgentCertificate::from_pem(std::string_view pem, std::string_view oid_arc) {
    return from_der(pem_decode(pem, "CERTIFICATE", "agent certificate"), oid_arc);
}
AgentCertificate AgentCertificate::load_file(const std::string& path, std::string_view oid_arc) {
    const auto bytes = read_file(path);
    try {
        return looks_like_pem(bytes)
                   ? from_pem(std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                               bytes.size()),
                              oid_arc)
                   : from_der(bytes, oid_arc);
    } catch (const Error& e) {
        throw Error(e.category(), path + ": " + e.what());
    }
}
const std::vector<std::uint8_t>& AgentCertificate::der() const noexcept { return m_impl->der; }
std::string AgentCertificate::pem() const { return pem_encode(m_impl->der, "CERTIFICATE"); }
std::string AgentCertificate::fingerprint() const { return crypto::fingerprint(m_impl->der); }
std::string AgentCertificate::serial() const {
    return crypto::to_hex(m_impl->cert->serial_number());
}
TimeNs AgentCertificate::not_before() const noexcept {
    return x509::to_time_ns(m_impl->cert->not_before());
}
TimeNs AgentCertificate::not_after() const noexcept {
    return x509::to_time_ns(m_impl->cert->not_after());
}
std::string AgentCertificate::agent_id() const {
    const auto cn = m_impl->cert->subject_info("X520.CommonName");
    return cn.size() == 1 ? cn.front() : std::string();
}
std::string AgentCertificate::subject() const { return dn_string(m_impl->cert->subject_dn()); }
std::string AgentCertificate::issuer() const { return dn_string(m_impl->cert->issuer_dn()); }
bool AgentCertificate::is_simulation() const {
    const auto ou = m_impl->cert->subject_info("X520.OrganizationalUnit");
    return std::find(ou.begin(), ou.end(), "simulation") != ou.end();
}
std::vector<std::uint8_t> AgentCertificate::public_key() const {
    return m_impl->cert->subject_public_key_info();
}
const std::string& AgentCertificate::scope_oid() const noexcept { return m_impl->scope_oid; }
bool AgentCertificate::has_scope() const noexcept { return m_impl->scope.has_value(); }
bool AgentCertificate::scope_critical() const noexcept { return m_impl->scope_critical; }
const Scope& AgentCertificate::scope() const {
    if (!m_impl->scope) throw Error(ErrorCategory::invalid_input, m_impl->scope_error);
    return *m_impl->scope;
}
const std::string& AgentCertificate::scope_error() const noexcept { return m_impl->scope_error; }

// ---- validation -------------------------------------------------------------------------------

namespace x509 {
namespace {

/// Most fundamental first: the reported reason is the first of these that applies. A CRL that
/// fails authentication is never read (so it cannot revoke), and crl_invalid comes before
/// revoked all the same.
constexpr std::array<CertificateStatus, 19> precedence = {
    CertificateStatus::malformed,      CertificateStatus::wrong_ca,
    CertificateStatus::bad_signature,  CertificateStatus::weak_algorithm,
    CertificateStatus::invalid_chain,  CertificateStatus::unknown_critical_extension,
    CertificateStatus::not_end_entity, CertificateStatus::key_usage,
    CertificateStatus::no_scope,       CertificateStatus::scope_not_critical,
    CertificateStatus::scope_invalid,  CertificateStatus::not_yet_valid,
    CertificateStatus::expired,        CertificateStatus::crl_invalid,
    CertificateStatus::revoked,        CertificateStatus::crl_not_yet_valid,
    CertificateStatus::crl_expired,    CertificateStatus::crl_missing,
    CertificateStatus::key_mismatch,
};

struct Findings {
    std::vector<CertificateCheck> all;
    void add(CertificateStatus s, std::string detail) { all.push_back({s, std::move(detail)}); }
    CertificateCheck verdict() const {
        for (CertificateStatus s : precedence)
            for (const auto& f : all)
                if (f.status == s) return f;
        return {CertificateStatus::valid, "valid"};
    }
};

std::optional<CertificateStatus> map_code(Botan::Certificate_Status_Code c) {
    using C = Botan::Certificate_Status_Code;
    switch (c) {
        case C::CERT_ISSUER_NOT_FOUND:
        case C::CANNOT_ESTABLISH_TRUST:
        case C::CHAIN_LACKS_TRUST_ROOT:
        case C::CHAIN_NAME_MISMATCH: return CertificateStatus::wrong_ca;
        case C::SIGNATURE_ERROR:
        case C::CERT_PUBKEY_INVALID:
        case C::SIGNATURE_ALGO_UNKNOWN:
        case C::SIGNATURE_ALGO_BAD_PARAMS: return CertificateStatus::bad_signature;
        case C::SIGNATURE_METHOD_TOO_WEAK:
        case C::UNTRUSTED_HASH: return CertificateStatus::weak_algorithm;
        case C::CERT_NOT_YET_VALID: return CertificateStatus::not_yet_valid;
        case C::CERT_HAS_EXPIRED: return CertificateStatus::expired;
        case C::CRL_NOT_YET_VALID: return CertificateStatus::crl_not_yet_valid;
        case C::CRL_HAS_EXPIRED: return CertificateStatus::crl_expired;
        case C::CRL_BAD_SIGNATURE:
        case C::CA_CERT_NOT_FOR_CRL_ISSUER: return CertificateStatus::crl_invalid;
        case C::NO_REVOCATION_DATA: return CertificateStatus::crl_missing;
        case C::CERT_IS_REVOKED: return CertificateStatus::revoked;
        case C::UNKNOWN_CRITICAL_EXTENSION: return CertificateStatus::unknown_critical_extension;
        case C::CERT_SERIAL_NEGATIVE:
        case C::DN_TOO_LONG:
        case C::EXT_IN_V1_V2_CERT:
        case C::V2_IDENTIFIERS_IN_V1_CERT:
        case C::DUPLICATE_CERT_EXTENSION:
        case C::DUPLICATE_CERT_POLICY: return CertificateStatus::malformed;
        case C::POLICY_ERROR:
        case C::INVALID_USAGE:
        case C::CERT_CHAIN_TOO_LONG:
        case C::CA_CERT_NOT_FOR_CERT_ISSUER:
        case C::NAME_CONSTRAINT_ERROR:
        case C::CERT_NAME_NOMATCH:
        case C::CERT_CHAIN_LOOP:
        case C::NO_MATCHING_CRLDP: return CertificateStatus::invalid_chain;
        default: break;
    }
    if (static_cast<int>(c) >= static_cast<int>(C::FIRST_ERROR_STATUS))
        return CertificateStatus::invalid_chain;
    return std::nullopt;  // informational (OK, VALID_CRL_CHECKED, OCSP warnings)
}

const Botan::OID& oid_of(const char* name) {
    thread_local std::map<std::string, Botan::OID> cache;
    auto it = cache.find(name);
    if (it == cache.end()) it = cache.emplace(name, Botan::OID::from_string(name)).first;
    return it->second;
}

/// True if `bits` is a SEQUENCE SIZE (1..MAX) OF elements accepted by `each`, nothing after it.
template <class F>
bool sequence_of(const std::vector<std::uint8_t>& bits, F each) {
    try {
        Botan::BER_Decoder top(bits);
        Botan::BER_Object seq = top.get_next_object();
        if (!seq.is_a(Botan::SEQUENCE, Botan::CONSTRUCTED) || top.more_items()) return false;
        Botan::BER_Decoder items(seq);
        std::size_t n = 0;
        while (items.more_items()) {
            if (!each(items.get_next_object())) return false;
            ++n;
        }
        return n > 0;
    } catch (const std::exception&) {
        return false;
    }
}

/// A GeneralName whose iPAddress, if any, is 4 or 16 octets.
bool general_name_ok(const Botan::BER_Object& o) {
    if ((o.get_class() & Botan::CONTEXT_SPECIFIC) == 0) return false;
    if (o.type() == Botan::ASN1_Tag(7)) return o.length() == 4 || o.length() == 16;
    return true;
}

/// RFC 1034 preferred name syntax as modified by RFC 1123: LDH labels of 1..63, no wildcard,
/// and a last label that is not all digits (an IP address is not a DNS name).
bool dns_name_ok(const std::uint8_t* p, std::size_t n) {
    if (n == 0 || n > 253) return false;
    std::size_t label = 0;
    bool all_digits = true;
    for (std::size_t i = 0; i <= n; ++i) {
        if (i == n || p[i] == '.') {
            if (label == 0 || label > 63 || p[i - 1] == '-' || p[i - label] == '-') return false;
            if (i == n && all_digits) return false;
            label = 0;
            all_digits = true;
            continue;
        }
        const char c = static_cast<char>(p[i]);
        const bool digit = c >= '0' && c <= '9';
        if (!(digit || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
        all_digits = all_digits && digit;
        ++label;
    }
    return true;
}

/// A leftmost "*." label (RFC 6125 wildcard) on an otherwise valid name.
bool is_wildcard(const Botan::BER_Object& o) {
    return o.type() == Botan::ASN1_Tag(2) && o.length() > 2 && o.bits()[0] == '*' &&
           o.bits()[1] == '.';
}

bool san_entry_ok(const Botan::BER_Object& o) {
    if (!general_name_ok(o)) return false;
    if (is_wildcard(o)) return dns_name_ok(o.bits() + 2, o.length() - 2);
    if (o.type() == Botan::ASN1_Tag(2)) return dns_name_ok(o.bits(), o.length());
    return true;
}

/// True if the SAN holds a wildcard dNSName.
bool san_has_wildcard(const std::vector<std::uint8_t>& bits) {
    bool found = false;
    (void)sequence_of(bits, [&](const Botan::BER_Object& o) {
        found = found || is_wildcard(o);
        return true;
    });
    return found;
}

/// True if the name constraints hold a dNSName subtree.
bool constrains_dns(const std::vector<std::uint8_t>& bits) {
    try {
        Botan::BER_Decoder top(bits);
        Botan::BER_Decoder trees(top.get_next_object());
        while (trees.more_items()) {
            Botan::BER_Decoder subtrees(trees.get_next_object());
            while (subtrees.more_items()) {
                Botan::BER_Decoder st(subtrees.get_next_object());
                if (st.get_next_object().type() == Botan::ASN1_Tag(2)) return true;
            }
        }
    } catch (const std::exception&) {
        return true;
    }
    return false;
}

/// Name constraints: a dNSName base must be a DNS name (no leading period, which RFC 5280
/// allows for URIs only) or empty.
bool name_constraints_ok(const std::vector<std::uint8_t>& bits) {
    try {
        Botan::BER_Decoder top(bits);
        Botan::BER_Object seq = top.get_next_object();
        if (!seq.is_a(Botan::SEQUENCE, Botan::CONSTRUCTED) || top.more_items()) return false;
        Botan::BER_Decoder trees(seq);
        while (trees.more_items()) {
            Botan::BER_Object list = trees.get_next_object();
            Botan::BER_Decoder subtrees(list);
            while (subtrees.more_items()) {
                Botan::BER_Object subtree = subtrees.get_next_object();
                if (!subtree.is_a(Botan::SEQUENCE, Botan::CONSTRUCTED)) return false;
                Botan::BER_Decoder st(subtree);
                const Botan::BER_Object base = st.get_next_object();
                if (base.type() == Botan::ASN1_Tag(2) && base.length() > 0 &&
                    !dns_name_ok(base.bits(), base.length()))
                    return false;
            }
        }
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

/// Public keys accepted in a path: EC keys on a named curve only, RSA moduli whole bytes.
bool public_key_ok(const Botan::X509_Certificate& c, std::string& why) {
    try {
        const Botan::AlgorithmIdentifier alg = c.subject_public_key_algo();
        const std::string oid = alg.get_oid().to_string();
        if (oid == "1.2.840.10045.2.1") {
            Botan::BER_Decoder params(alg.get_parameters());
            const Botan::BER_Object named = params.get_next_object();
            if (!named.is_a(Botan::OBJECT_ID, Botan::UNIVERSAL) || params.more_items()) {
                why = "EC key with explicit curve parameters";
                return false;
            }
        } else if (oid == "1.2.840.113549.1.1.1") {
            const std::unique_ptr<Botan::Public_Key> key(c.subject_public_key());
            if (key->key_length() % 8 != 0 || key->key_length() < 2048) {
                why = "RSA modulus of " + std::to_string(key->key_length()) + " bits";
                return false;
            }
        }
        return true;
    } catch (const std::exception& e) {
        why = std::string("unreadable public key (") + e.what() + ")";
        return false;
    }
}

/// Signature algorithms accepted anywhere in a path: Ed25519, ECDSA and RSA PKCS#1 v1.5 with
/// SHA-2.
bool signature_algorithm_ok(const Botan::X509_Certificate& c) {
    static const std::array<const char*, 7> allowed = {
        "1.3.101.112",          "1.2.840.10045.4.3.2",   "1.2.840.10045.4.3.3",
        "1.2.840.10045.4.3.4",  "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12",
        "1.2.840.113549.1.1.13"};
    const std::string oid = c.signature_algorithm().get_oid().to_string();
    return std::find(allowed.begin(), allowed.end(), oid) != allowed.end();
}

/// RFC 5280 structure rules Botan does not enforce, for every certificate in the path.
void check_profile(const Botan::X509_Certificate& c, bool is_leaf, bool is_anchor,
                   const std::string& who, Findings& f) {
    if (c.x509_version() != 3)
        f.add(CertificateStatus::malformed, who + ": not an X.509 v3 certificate");
    // A self-signed trust anchor is trusted by configuration, whatever its serial.
    if (!(is_anchor && c.is_self_signed())) {
        const std::vector<std::uint8_t> serial = c.serial_number();
        if (c.is_serial_negative())
            f.add(CertificateStatus::malformed, who + ": negative serial number");
        if (std::all_of(serial.begin(), serial.end(), [](std::uint8_t b) { return b == 0; }))
            f.add(CertificateStatus::malformed, who + ": serial number is zero");
        if (serial.size() > 20)
            f.add(CertificateStatus::malformed, who + ": serial number over 20 octets");
    }
    if (c.subject_dn().empty()) f.add(CertificateStatus::malformed, who + ": empty subject name");
    if (c.issuer_dn().empty()) f.add(CertificateStatus::malformed, who + ": empty issuer name");

    const Botan::Extensions& ext = c.v3_extensions();
    const auto& aki = oid_of("X509v3.AuthorityKeyIdentifier");
    const auto& ski = oid_of("X509v3.SubjectKeyIdentifier");
    const auto& bc = oid_of("X509v3.BasicConstraints");
    if (ext.critical_extension_set(aki))
        f.add(CertificateStatus::malformed, who + ": authority key identifier marked critical");
    if (ext.critical_extension_set(ski))
        f.add(CertificateStatus::malformed, who + ": subject key identifier marked critical");
    const bool self_signed = c.is_self_signed();
    if (!(is_anchor && self_signed) && c.authority_key_id().empty())
        f.add(CertificateStatus::malformed, who + ": no authority key identifier");
    // A trust anchor is trusted by configuration; its self-signature is not relied upon.
    if (!(is_anchor && c.is_self_signed()) && !signature_algorithm_ok(c))
        f.add(CertificateStatus::weak_algorithm, who + ": signature algorithm " +
                                                     c.signature_algorithm().get_oid().to_string() +
                                                     " not accepted");
    if (ext.extension_set(aki)) {
        // keyIdentifier only: [0] present, no authorityCertIssuer [1] or serial [2].
        const bool key_id_only = sequence_of(ext.get_extension_bits(aki), [](const auto& o) {
            return o.is_a(0, Botan::CONTEXT_SPECIFIC) && o.length() > 0;
        });
        if (!key_id_only)
            f.add(CertificateStatus::malformed,
                  who + ": authority key identifier must hold a keyIdentifier only");
    }
    const auto& san = oid_of("X509v3.SubjectAlternativeName");
    if (ext.extension_set(san) && !sequence_of(ext.get_extension_bits(san), san_entry_ok))
        f.add(CertificateStatus::malformed, who + ": malformed subject alternative name");
    const Botan::OID aia = Botan::OID::from_string("1.3.6.1.5.5.7.1.1");
    if (ext.extension_set(aia)) {
        if (ext.critical_extension_set(aia))
            f.add(CertificateStatus::malformed, who + ": authority information access is critical");
        const bool aia_ok = sequence_of(ext.get_extension_bits(aia), [](const auto& o) {
            if (!o.is_a(Botan::SEQUENCE, Botan::CONSTRUCTED)) return false;
            Botan::BER_Decoder d(o);
            const Botan::BER_Object method = d.get_next_object();
            const Botan::BER_Object location = d.get_next_object();
            return method.is_a(Botan::OBJECT_ID, Botan::UNIVERSAL) && location.is_set() &&
                   general_name_ok(location) && !d.more_items();
        });
        if (!aia_ok)
            f.add(CertificateStatus::malformed, who + ": malformed authority information access");
    }
    const auto& nc = oid_of("X509v3.NameConstraints");
    if (ext.extension_set(nc) && !ext.critical_extension_set(nc))
        f.add(CertificateStatus::invalid_chain, who + ": name constraints not critical");
    if (ext.extension_set(nc) && !name_constraints_ok(ext.get_extension_bits(nc)))
        f.add(CertificateStatus::invalid_chain, who + ": malformed name constraints");
    const Botan::OID policy_constraints = Botan::OID::from_string("2.5.29.36");
    if (ext.extension_set(policy_constraints) && !ext.critical_extension_set(policy_constraints))
        f.add(CertificateStatus::invalid_chain, who + ": policy constraints not critical");
    std::string key_problem;
    if (!public_key_ok(c, key_problem))
        f.add(CertificateStatus::weak_algorithm, who + ": " + key_problem);
    if (is_leaf && ext.extension_set(nc))
        f.add(CertificateStatus::not_end_entity, who + ": name constraints in an end entity");
    if (is_leaf) {
        const auto* bce = ext.get_extension_object_as<Botan::Cert_Extension::Basic_Constraints>(bc);
        if (bce != nullptr && bce->get_is_ca())
            f.add(CertificateStatus::not_end_entity, who + ": basic constraints say CA");
    }
    if (!is_leaf) {
        if (c.subject_key_id().empty())
            f.add(CertificateStatus::malformed,
                  who + ": CA certificate without a subject key identifier");
        if (!c.is_CA_cert())
            f.add(CertificateStatus::invalid_chain, who + ": not a CA certificate");
        else if (!ext.critical_extension_set(bc))
            f.add(CertificateStatus::invalid_chain, who + ": basic constraints not critical");
        if (!(c.constraints() & Botan::KEY_CERT_SIGN) || c.constraints() == Botan::NO_CONSTRAINTS)
            f.add(CertificateStatus::invalid_chain, who + ": key usage lacks keyCertSign");
    }
}

}  // namespace

CertificateCheck validate_chain(const CertPtr& leaf, const std::vector<CertPtr>& intermediates,
                                const std::vector<CertPtr>& anchors,
                                const std::shared_ptr<const Botan::X509_CRL>& leaf_crl,
                                std::chrono::system_clock::time_point at,
                                const ChainPolicy& policy) {
    try {
        Findings f;
        Botan::Certificate_Store_In_Memory store;
        for (const auto& a : anchors) store.add_certificate(a);
        std::vector<CertPtr> path;
        const Botan::Certificate_Status_Code built =
            Botan::PKIX::build_certificate_path(path, {&store}, leaf, intermediates);
        if (built != Botan::Certificate_Status_Code::OK) {
            const auto s = map_code(built).value_or(CertificateStatus::wrong_ca);
            return {s == CertificateStatus::invalid_chain ? s : CertificateStatus::wrong_ca,
                    std::string("no path to the trust anchor: ") + Botan::to_string(built)};
        }
        if (path.size() < 2)
            return {CertificateStatus::wrong_ca, "the certificate is itself a trust anchor"};
        if (path.size() > policy.max_path_length)
            f.add(CertificateStatus::invalid_chain,
                  "path of " + std::to_string(path.size()) + " certificates is too long");

        Botan::Path_Validation_Restrictions restrictions;
        Botan::CertificatePathStatusCodes status = Botan::PKIX::check_chain(
            path, at, "", Botan::Usage_Type::UNSPECIFIED, restrictions.minimum_key_strength(),
            restrictions.trusted_hashes());

        // The CRL is authenticated before anything is read from it: its issuer's name, that
        // issuer's cRLSign and the signature under the issuer's key. One that fails is not
        // looked at (a forged CRL listing the serial must neither revoke nor vouch for it).
        std::vector<std::shared_ptr<const Botan::X509_CRL>> crls(path.size());
        bool crl_authentic = false;
        if (leaf_crl) {
            const std::size_t findings_before = f.all.size();
            const Botan::X509_Certificate& issuer = *path[1];
            if (!(leaf_crl->issuer_dn() == issuer.subject_dn()))
                f.add(CertificateStatus::crl_invalid, "the CRL was issued by " +
                                                          dn_string(leaf_crl->issuer_dn()) +
                                                          ", not by the certificate's issuer");
            else if (!issuer.allowed_usage(Botan::CRL_SIGN))
                f.add(CertificateStatus::crl_invalid,
                      "the certificate's issuer may not sign CRLs (no cRLSign)");
            else if (const std::unique_ptr<const Botan::Public_Key> key(
                         issuer.subject_public_key());
                     !leaf_crl->check_signature(*key))
                f.add(CertificateStatus::crl_invalid,
                      "the CRL's signature does not verify under the issuer's key");
            if (!leaf_crl->next_update().time_is_set())
                f.add(CertificateStatus::crl_invalid, "the CRL has no nextUpdate");
            // RFC 5280 5.2.3: conforming CRLs carry a non-critical CRL number.
            const Botan::OID crl_number = Botan::OID::from_string("2.5.29.20");
            if (!leaf_crl->extensions().extension_set(crl_number))
                f.add(CertificateStatus::crl_invalid, "the CRL has no CRL number");
            else if (leaf_crl->extensions().critical_extension_set(crl_number))
                f.add(CertificateStatus::crl_invalid, "the CRL number is marked critical");
            crl_authentic = f.all.size() == findings_before;
            if (crl_authentic) crls[0] = leaf_crl;
        }
        if (leaf_crl || policy.require_crl) {
            const Botan::CertificatePathStatusCodes crl_status =
                crl_authentic ? Botan::PKIX::check_crl(path, crls, at)
                              : Botan::CertificatePathStatusCodes(path.size());
            Botan::PKIX::merge_revocation_status(status, crl_status, {}, policy.require_crl, false);
        }

        for (std::size_t i = 0; i < path.size(); ++i) {
            const std::string who =
                i == 0
                    ? "agent certificate"
                    : (i + 1 == path.size() ? "trust anchor" : "intermediate " + std::to_string(i));
            for (auto code : status.at(i)) {
                // Unknown critical extensions are judged below, where Kakunin's own is known.
                if (code == Botan::Certificate_Status_Code::UNKNOWN_CRITICAL_EXTENSION) continue;
                if (auto s = map_code(code)) f.add(*s, who + ": " + Botan::to_string(code));
            }
            const Botan::X509_Certificate& c = *path[i];
            check_profile(c, i == 0, i + 1 == path.size(), who, f);
            const Botan::Extensions& ext = c.v3_extensions();
            for (const Botan::OID& oid : ext.get_extension_oids()) {
                if (!ext.critical_extension_set(oid)) continue;
                const Botan::Certificate_Extension* obj = ext.get_extension_object(oid);
                const bool unknown = obj == nullptr || obj->oid_name().empty();
                if (!unknown) continue;
                if (i == 0 && oid.to_string() == policy.scope_oid) continue;
                f.add(CertificateStatus::unknown_critical_extension,
                      who + ": unknown critical extension " + oid.to_string());
            }
        }

        // RFC 5280 and RFC 9525 leave open how DNS name constraints apply to a wildcard
        // (CVE-2025-61727): refuse the combination rather than guess.
        const auto& san_oid = oid_of("X509v3.SubjectAlternativeName");
        const auto& nc_oid = oid_of("X509v3.NameConstraints");
        if (leaf->v3_extensions().extension_set(san_oid) &&
            san_has_wildcard(leaf->v3_extensions().get_extension_bits(san_oid)))
            for (std::size_t i = 1; i < path.size(); ++i)
                if (path[i]->v3_extensions().extension_set(nc_oid) &&
                    constrains_dns(path[i]->v3_extensions().get_extension_bits(nc_oid))) {
                    f.add(CertificateStatus::invalid_chain,
                          "wildcard name under DNS name constraints");
                    break;
                }

        const Botan::X509_Certificate& c = *leaf;
        if (c.is_CA_cert())
            f.add(CertificateStatus::not_end_entity, "the agent certificate is a CA certificate");
        if (policy.require_leaf_key_usage && (c.constraints() == Botan::NO_CONSTRAINTS ||
                                              !(c.constraints() & Botan::DIGITAL_SIGNATURE)))
            f.add(CertificateStatus::key_usage, "key usage lacks digitalSignature");
        if (c.constraints() & (Botan::KEY_CERT_SIGN | Botan::CRL_SIGN))
            f.add(CertificateStatus::not_end_entity, "key usage allows certificate or CRL signing");
        if (!crypto::spki_algorithm(c.subject_public_key_info()))
            f.add(CertificateStatus::weak_algorithm,
                  "agent key is " + c.subject_public_key_algo().get_oid().to_formatted_string() +
                      ", not Ed25519 or ECDSA P-256");
        if (policy.require_scope) {
            // The agent id names audit logs and state files: exactly one valid CN.
            const auto cn = c.subject_info("X520.CommonName");
            try {
                if (cn.size() != 1) throw Error(ErrorCategory::invalid_input, "not one CN");
                validate_agent_id(cn.front());
            } catch (const Error&) {
                f.add(CertificateStatus::malformed, "the subject does not name one agent id (CN=" +
                                                        (cn.empty() ? std::string() : cn.front()) +
                                                        ")");
            }
            const Botan::OID oid = Botan::OID::from_string(policy.scope_oid);
            const Botan::Extensions& ext = c.v3_extensions();
            if (!ext.extension_set(oid)) {
                f.add(CertificateStatus::no_scope, "no scope extension " + policy.scope_oid);
            } else {
                if (!ext.critical_extension_set(oid))
                    f.add(CertificateStatus::scope_not_critical,
                          "the scope extension is not marked critical");
                try {
                    (void)decode_scope_extension(ext.get_extension_bits(oid));
                } catch (const Error& e) {
                    f.add(CertificateStatus::scope_invalid, e.what());
                }
            }
        }
        return f.verdict();
    } catch (const std::exception& e) {
        return {CertificateStatus::malformed, std::string("validation failed: ") + e.what()};
    }
}

}  // namespace x509

CertificateCheck verify_certificate(const AgentCertificate& cert, const TrustAnchor& anchor,
                                    const CertificateRevocationList* crl, TimeNs at,
                                    const VerifyOptions& options) {
    std::vector<CertPtr> intermediates;
    for (const auto& der : options.intermediates_der) {
        try {
            intermediates.push_back(parse_certificate(der, "intermediate certificate"));
        } catch (const Error& e) {
            return {CertificateStatus::malformed, e.what()};
        }
    }
    x509::ChainPolicy policy;
    policy.scope_oid = cert.scope_oid();
    policy.require_crl = options.require_crl;
    CertificateCheck r = x509::validate_chain(cert.impl().cert, intermediates, {anchor.impl().cert},
                                              crl != nullptr ? crl->impl().crl : nullptr,
                                              x509::to_time_point(at), policy);
    if (r.ok() && !options.expected_public_key.empty() &&
        options.expected_public_key != cert.public_key())
        return {CertificateStatus::key_mismatch,
                "the certificate's public key is not the agent's Kms key"};
    return r;
}

CertificateCheck verify_certificate(const std::vector<std::uint8_t>& encoded,
                                    const TrustAnchor& anchor, const CertificateRevocationList* crl,
                                    TimeNs at, const VerifyOptions& options,
                                    std::string_view oid_arc) {
    std::optional<AgentCertificate> cert;
    try {
        cert = looks_like_pem(encoded)
                   ? AgentCertificate::from_pem(
                         std::string_view(reinterpret_cast<const char*>(encoded.data()),
                                          encoded.size()),
                         oid_arc)
                   : AgentCertificate::from_der(encoded, oid_arc);
    } catch (const std::exception& e) {
        return {CertificateStatus::malformed, e.what()};
    }
    return verify_certificate(*cert, anchor, crl, at, options);
}

}  // namespace kakunin
