// kakunin/revocation.hpp — pushing revocations, CRLs and renewed certificates into running
// Guards. A Guard subscribed to a revocation feed halts before its next check when its
// certificate's serial is published; one subscribed to a credential feed takes up each new CRL
// (update_crl) and each renewal of its own certificate (rotate) without a restart.
//
//   auto feed = std::make_shared<kakunin::InProcessRevocationFeed>();
//   credentials.revocation_feed = feed;                  // the Guard subscribes itself
//   feed->publish({serial, "agent-7", "anomaly score 0.91", clock.now_ns()});
//   auto creds = std::make_shared<kakunin::InProcessCredentialFeed>();
//   credentials.credential_feed = creds;
//   creds->publish_crl(ca.issue_crl());                  // every Guard of the CA takes it up
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kakunin/ca.hpp"

namespace kakunin {

/// Receives revocations. Called on the publisher's thread; must not block and must not throw.
class RevocationListener {
public:
    virtual ~RevocationListener() = default;
    virtual void on_revocation(const Revocation& revocation) noexcept = 0;
};

/// A source of revocations (in-process, PostgreSQL LISTEN/NOTIFY, ...).
/// Threading: subscribe/unsubscribe may be called from any thread; after unsubscribe() returns,
/// the listener is not called again.
class RevocationFeed {
public:
    virtual ~RevocationFeed() = default;
    virtual void subscribe(RevocationListener* listener) = 0;
    virtual void unsubscribe(RevocationListener* listener) noexcept = 0;
};

/// Delivers publish() synchronously to every subscriber: when publish() returns, every
/// subscribed Guard of that certificate is halted.
class InProcessRevocationFeed final : public RevocationFeed {
public:
    void subscribe(RevocationListener* listener) override {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_listeners.push_back(listener);
    }
    void unsubscribe(RevocationListener* listener) noexcept override {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_listeners.erase(std::remove(m_listeners.begin(), m_listeners.end(), listener),
                          m_listeners.end());
    }
    void publish(const Revocation& revocation) {
        std::lock_guard<std::mutex> lock(m_mutex);
        for (RevocationListener* l : m_listeners) l->on_revocation(revocation);
    }

private:
    std::mutex m_mutex;
    std::vector<RevocationListener*> m_listeners;
};

/// Where a CRL or certificate handed to a CredentialListener came from.
struct CredentialUpdate {
    std::uint64_t seq = 0;  ///< the feed's sequence number (0: published in-process)
    std::string source;     ///< for reports, e.g. "postgres credential 42"
    /// Published before the listener subscribed: subscribe() hands it over as history.
    bool history = false;
};

/// Receives the CRLs and certificates a CA publishes (every issuer's, every agent's: the
/// listener picks its own). Called on the feed's thread (for PostgreSQL, the LISTEN thread),
/// one call at a time; off every Guard's hot path, so it may verify what it gets, but it must
/// not throw and must not subscribe or unsubscribe from inside a call.
class CredentialListener {
public:
    virtual ~CredentialListener() = default;
    virtual void on_crl(const CertificateRevocationList& crl,
                        const CredentialUpdate& update) noexcept = 0;
    virtual void on_certificate(const AgentCertificate& certificate,
                                const CredentialUpdate& update) noexcept = 0;
};

/// A source of published CRLs and certificates (in-process, PostgreSQL LISTEN/NOTIFY, ...).
/// subscribe() first hands over, synchronously and marked as history, what the feed holds: the
/// newest CRLs of each issuer, then the newest certificates of each agent and key, newest first
/// (a listener takes the first one that is newer than its own and passes over the older ones);
/// then each new one as it is published. Nothing a feed delivers is trusted: the listener
/// verifies it. Threading: subscribe/unsubscribe from any thread; after unsubscribe() returns,
/// the listener is not called again.
class CredentialFeed {
public:
    virtual ~CredentialFeed() = default;
    virtual void subscribe(CredentialListener* listener) = 0;
    virtual void unsubscribe(CredentialListener* listener) noexcept = 0;
};

/// Delivers publish_crl() and publish_certificate() synchronously to every subscriber (when
/// they return, every subscribed Guard has taken up, or refused and reported, what was
/// published) and keeps the newest of each issuer and of each agent's key as history.
/// Thread-safe.
class InProcessCredentialFeed final : public CredentialFeed {
public:
    InProcessCredentialFeed();
    ~InProcessCredentialFeed() override;
    InProcessCredentialFeed(const InProcessCredentialFeed&) = delete;
    InProcessCredentialFeed& operator=(const InProcessCredentialFeed&) = delete;

    void subscribe(CredentialListener* listener) override;
    void unsubscribe(CredentialListener* listener) noexcept override;
    void publish_crl(const CertificateRevocationList& crl);
    void publish_certificate(const AgentCertificate& certificate);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
