// Certificate builders: every extension is built here from what the CA decided; nothing is
// copied from a request (X509_CA::sign_request would copy a request's extensions).
#include <botan/x509_ca.h>
#include <botan/x509_ext.h>

#include "crypto/encoding.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin::x509 {

TimeNs to_time_ns(const Botan::X509_Time& t) {
    if (!t.time_is_set()) return 0;
    return static_cast<TimeNs>(t.time_since_epoch()) * 1'000'000'000;
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
                                     Botan::X509_Time(to_time_point(leaf.not_before)),
                                     Botan::X509_Time(to_time_point(leaf.not_after)),
                                     ca_cert.subject_dn(), agent_dn(leaf.agent_id, leaf.simulation),
                                     ext);
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
                                     Botan::X509_Time(to_time_point(not_before)),
                                     Botan::X509_Time(to_time_point(not_after)), subject, subject,
                                     ext);
}

}  // namespace kakunin::x509
