// Private: what a CredentialFeed keeps to hand a new subscriber as history (revocation.hpp):
// per issuer its newest CRLs, per agent and key its newest certificates, newest first. A few,
// not one: nothing a feed holds is verified, so a forged row claiming to be newer must not
// push the genuine newest out of what a Guard starting now is given.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "kakunin/revocation.hpp"

namespace kakunin::detail {

class CredentialHistory {
public:
    /// How many of each issuer's CRLs, and of each agent key's certificates, are kept.
    static constexpr std::size_t depth = 4;

    /// Keeps `crl` among its issuer's newest (by thisUpdate, then CRL number; a later one of
    /// equal standing first). False: the same CRL is held already.
    bool add(const CertificateRevocationList& crl, const CredentialUpdate& update);
    /// The same for a certificate, among its agent's and key's (by notBefore).
    bool add(const AgentCertificate& certificate, const CredentialUpdate& update);
    /// Hands everything held to `listener` as history: CRLs first (a renewed certificate is
    /// checked against the CRL in force), newest first within each issuer and agent key.
    void replay(CredentialListener& listener) const;

private:
    template <class T>
    struct Held {
        T item;
        CredentialUpdate update;
    };
    std::map<std::string, std::vector<Held<CertificateRevocationList>>> m_crls;  ///< by issuer
    std::map<std::string, std::vector<Held<AgentCertificate>>> m_certificates;   ///< agent, key
};

}  // namespace kakunin::detail
