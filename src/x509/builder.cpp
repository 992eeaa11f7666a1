// Certificate builders: every extension is built here from what the CA decided; nothing is
// copied from a request (X509_CA::sign_request would copy a request's extensions).
#include <botan/x509_ca.h>
#include <botan/x509_ext.h>

#include <cstdio>
#include <limits>

#include "crypto/encoding.hpp"
#include "kakunin/error.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin::x509 {

TimeNs to_time_ns(const Botan::X509_Time& t) noexcept {
    if (!t.time_is_set()) return 0;
    // Botan's time_since_epoch() throws before 1970 and the product by 10^9 overflows after
    // 2262: compute from the calendar fields ("YYYY/MM/DD HH:MM:SS UTC") and saturate.
    try {
        const std::string s = t.readable_string();
        unsigned v[6] = {};
        if (std::sscanf(s.c_str(), "%4u/%2u/%2u %2u:%2u:%2u", &v[0], &v[1], &v[2], &v[3], &v[4],
                        &v[5]) != 6)
            return 0;
        const std::int64_t seconds =
            ((days_from_civil(v[0], v[1], v[2]) * 24 + v[3]) * 60 + v[4]) * 60 + v[5];
        constexpr std::int64_t ns_per_s = 1'000'000'000;
        constexpr TimeNs lowest = std::numeric_limits<TimeNs>::min();
        constexpr TimeNs highest = std::numeric_limits<TimeNs>::max();
        if (seconds > highest / ns_per_s) return highest;
        if (seconds < lowest / ns_per_s) return lowest;
        return seconds * ns_per_s;
    } catch (...) {
        return 0;
    }
}

Botan::X509_Time to_x509_time(TimeNs t, const char* field) {
    // Before 1950 RFC 5280 needs a GeneralizedTime, which Botan does not choose; no clock reads
    // a time before 1970, so nothing is issued for one.
    if (t < 0)
        throw Error(ErrorCategory::invalid_input,
                    std::string(field) + ": " + std::to_string(t) +
                        " ns is before 1970-01-01T00:00:00Z: no certificate or CRL is issued "
                        "for it");
    return Botan::X509_Time(to_time_point(t));
}

Botan::BigInt random_serial(Botan::RandomNumberGenerator& rng) {
    std::vector<std::uint8_t> bytes(16);
    rng.randomize(bytes.data(), bytes.size());
    bytes[0] = static_cast<std::uint8_t>((bytes[0] & 0x7f) | 0x40);
    return Botan::BigInt(bytes.data(), bytes.size());
}

std::string serial_hex(const Botan::BigInt& serial) {
    const std::vector<std::uint8_t> bytes = Botan::BigInt::encode(serial);
    return crypto::to_hex(bytes);
}

Botan::X509_DN agent_dn(const std::string& agent_id, bool simulation) {
    Botan::X509_DN dn;
    dn.add_attribute("X520.CommonName", agent_id);
    dn.add_attribute("X520.Organization", "Kakunin agent");
    if (simulation) dn.add_attribute("X520.OrganizationalUnit", "simulation");
    return dn;
}

Botan::X509_Certificate make_agent_certificate(Botan::PK_Signer& signer,
                                               const Botan::AlgorithmIdentifier& sig_algo,
                                               const Botan::X509_Certificate& ca_cert,
                                               const LeafTemplate& leaf,
                                               Botan::RandomNumberGenerator& rng) {
    namespace CE = Botan::Cert_Extension;
    Botan::Extensions ext;
    ext.add(new CE::Basic_Constraints(false), true);
    ext.add(new CE::Key_Usage(Botan::DIGITAL_SIGNATURE), true);
    ext.add(new CE::Subject_Key_ID(leaf.subject_public_key, "SHA-256"), false);
    ext.add(new CE::Authority_Key_ID(ca_cert.subject_key_id()), false);
    if (leaf.scope_der)
        ext.add(new RawExtension(Botan::OID::from_string(leaf.scope_oid), *leaf.scope_der,
                                 "Kakunin.Scope"),
                leaf.scope_critical);
    for (const auto& e : leaf.extra)
        ext.add(new RawExtension(Botan::OID::from_string(e.oid), e.value, "Kakunin.Extra"),
                e.critical);
    const Botan::BigInt serial = leaf.serial == 0 ? random_serial(rng) : leaf.serial;
    return Botan::X509_CA::make_cert(&signer, rng, serial, sig_algo, leaf.subject_public_key,
                                     to_x509_time(leaf.not_before, "notBefore"),
                                     to_x509_time(leaf.not_after, "notAfter"), ca_cert.subject_dn(),
                                     agent_dn(leaf.agent_id, leaf.simulation), ext);
}

Botan::X509_Certificate make_ca_certificate(Botan::PK_Signer& signer,
                                            const Botan::AlgorithmIdentifier& sig_algo,
                                            const std::vector<std::uint8_t>& ca_spki,
                                            const Botan::X509_DN& subject, TimeNs not_before,
                                            TimeNs not_after, Botan::RandomNumberGenerator& rng) {
    namespace CE = Botan::Cert_Extension;
    Botan::Extensions ext;
    ext.add(new CE::Basic_Constraints(true, 0), true);
    ext.add(new CE::Key_Usage(static_cast<Botan::Key_Constraints>(
                Botan::KEY_CERT_SIGN | Botan::CRL_SIGN | Botan::DIGITAL_SIGNATURE)),
            true);
    ext.add(new CE::Subject_Key_ID(ca_spki, "SHA-256"), false);
    return Botan::X509_CA::make_cert(&signer, rng, random_serial(rng), sig_algo, ca_spki,
                                     to_x509_time(not_before, "notBefore"),
                                     to_x509_time(not_after, "notAfter"), subject, subject, ext);
}

}  // namespace kakunin::x509
