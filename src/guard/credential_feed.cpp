// CredentialHistory (credential_history.hpp) and InProcessCredentialFeed (revocation.hpp).
#include <algorithm>
#include <mutex>
#include <vector>

#include "crypto/encoding.hpp"
#include "guard/credential_history.hpp"
#include "kakunin/revocation.hpp"

namespace kakunin {

namespace detail {

namespace {

/// Inserts `held` before the first entry it is at least as new as; keeps `depth`. False when
/// the same DER is there already.
template <class Held, class Newer>
bool insert_newest(std::vector<Held>& list, Held held, Newer at_least_as_new) {
    for (const Held& h : list)
        if (h.item.der() == held.item.der()) return false;
    auto at = std::find_if(list.begin(), list.end(),
                           [&](const Held& h) { return at_least_as_new(held.item, h.item); });
    list.insert(at, std::move(held));
    while (list.size() > CredentialHistory::depth) list.pop_back();
    return true;
}

}  // namespace

bool CredentialHistory::add(const CertificateRevocationList& crl, const CredentialUpdate& update) {
    CredentialUpdate u = update;
    u.history = true;
    return insert_newest(
        m_crls[crl.issuer()], Held<CertificateRevocationList>{crl, std::move(u)},
        [](const CertificateRevocationList& a, const CertificateRevocationList& b) {
            return a.this_update() > b.this_update() ||
                   (a.this_update() == b.this_update() && a.number() >= b.number());
        });
}

bool CredentialHistory::add(const AgentCertificate& certificate, const CredentialUpdate& update) {
    CredentialUpdate u = update;
    u.history = true;
    const std::string key =
        certificate.agent_id() + '\n' + crypto::to_hex(certificate.public_key());
    return insert_newest(m_certificates[key], Held<AgentCertificate>{certificate, std::move(u)},
                         [](const AgentCertificate& a, const AgentCertificate& b) {
                             return a.not_before() >= b.not_before();
                         });
}

void CredentialHistory::replay(CredentialListener& listener) const {
    for (const auto& [issuer, list] : m_crls)
        for (const auto& h : list) listener.on_crl(h.item, h.update);
    for (const auto& [key, list] : m_certificates)
        for (const auto& h : list) listener.on_certificate(h.item, h.update);
}

}  // namespace detail

struct InProcessCredentialFeed::Impl {
    std::mutex mutex;  ///< everything below; held while delivering
    std::vector<CredentialListener*> listeners;
    detail::CredentialHistory history;
};

InProcessCredentialFeed::InProcessCredentialFeed() : m_impl(std::make_unique<Impl>()) {}
InProcessCredentialFeed::~InProcessCredentialFeed() = default;

void InProcessCredentialFeed::subscribe(CredentialListener* listener) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    m_impl->listeners.reserve(m_impl->listeners.size() + 1);
    m_impl->history.replay(*listener);
    m_impl->listeners.push_back(listener);
}

void InProcessCredentialFeed::unsubscribe(CredentialListener* listener) noexcept {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto& l = m_impl->listeners;
    l.erase(std::remove(l.begin(), l.end(), listener), l.end());
}

void InProcessCredentialFeed::publish_crl(const CertificateRevocationList& crl) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    const CredentialUpdate update{0, "in-process credential feed", false};
    m_impl->history.add(crl, update);
    for (CredentialListener* l : m_impl->listeners) l->on_crl(crl, update);
}

void InProcessCredentialFeed::publish_certificate(const AgentCertificate& certificate) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    const CredentialUpdate update{0, "in-process credential feed", false};
    m_impl->history.add(certificate, update);
    for (CredentialListener* l : m_impl->listeners) l->on_certificate(certificate, update);
}

}  // namespace kakunin
