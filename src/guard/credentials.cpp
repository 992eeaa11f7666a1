// The Guard's side of GuardCredentials::credential_feed: a CRL or certificate the CA published
// is taken up through update_crl() and rotate(), which verify and record it as if called here.
// What they refuse is reported; what is not this Guard's (another CA's CRL, another agent's
// certificate) and history older than what it holds are passed over quietly.
#include <algorithm>

#include "kakunin/guard.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/revocation.hpp"

namespace kakunin {

namespace {

std::string from(const CredentialUpdate& update) {
    return update.source.empty() ? std::string() : " (" + update.source + ")";
}

}  // namespace

void Guard::on_crl(const CertificateRevocationList& crl, const CredentialUpdate& update) noexcept {
    try {
        const std::string what = "credential feed: CRL number " + std::to_string(crl.number()) +
                                 " of " + format_timestamp(crl.this_update()) + from(update);
        try {
            {
                std::lock_guard<std::mutex> admin(m_admin);
                if (!m_certificate || !m_crl) return;
                // Another CA's CRL is not this Guard's to take up.
                if (crl.issuer() != m_certificate->issuer()) return;
                if (crl.der() == m_crl->der()) return;  // in force already
                // History older than what the Guard holds (it started from a newer file, or
                // took a newer one first): passed over. A live older one is refused below.
                const bool older =
                    crl.this_update() < m_crl->this_update() ||
                    (crl.this_update() == m_crl->this_update() && crl.number() <= m_crl->number());
                if (older && update.history) return;
            }
            update_crl(crl);
        } catch (const std::exception& e) {
            report(what + " not taken up: " + e.what());
        }
    } catch (...) {
        report("credential feed: out of memory taking up a CRL");
    }
}

void Guard::on_certificate(const AgentCertificate& certificate,
                           const CredentialUpdate& update) noexcept {
    try {
        const std::string what = "credential feed: certificate serial " + certificate.serial() +
                                 " of agent '" + certificate.agent_id() + "'" + from(update);
        try {
            std::optional<AgentCertificate> renewed;
            {
                std::lock_guard<std::mutex> admin(m_admin);
                if (!m_certificate) return;
                if (certificate.agent_id() != m_certificate->agent_id()) return;  // not ours
                const std::string serial = canonical_serial(certificate.serial());
                if (serial == canonical_serial(m_certificate->serial())) return;  // in force
                // Older than the one in force, or held before: history passes it over; live,
                // rotate() refuses it (rotation never goes back).
                const bool older = certificate.not_before() < m_certificate->not_before() ||
                                   std::find(m_held_serials.begin(), m_held_serials.end(),
                                             serial) != m_held_serials.end();
                if (older && update.history) return;
                if (certificate.public_key() != m_kms->public_key(m_key).spki_der) {
                    if (update.history) return;  // e.g. a key the agent had before this one
                    report(what + " not taken up: it certifies another key than this Guard's");
                    return;
                }
                // Read the scope under the Guard's OID arc (its CA's): the scope OID is the
                // arc + ".1" (scope_extension.hpp).
                const std::string& oid = m_certificate->scope_oid();
                if (certificate.scope_oid() != oid)
                    renewed = AgentCertificate::from_der(certificate.der(),
                                                         oid.substr(0, oid.rfind('.')));
            }
            rotate(renewed ? *renewed : certificate);
        } catch (const std::exception& e) {
            report(what + " not taken up: " + e.what());
        }
    } catch (...) {
        report("credential feed: out of memory taking up a certificate");
    }
}

}  // namespace kakunin
