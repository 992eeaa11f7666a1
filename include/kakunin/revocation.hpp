// kakunin/revocation.hpp — pushing revocations into running Guards. A Guard subscribed to a feed
// halts before its next check when its certificate's serial is published.
//
//   auto feed = std::make_shared<kakunin::InProcessRevocationFeed>();
//   credentials.revocation_feed = feed;                  // the Guard subscribes itself
//   feed->publish({serial, "agent-7", "anomaly score 0.91", clock.now_ns()});
#pragma once

#include <algorithm>
#include <mutex>
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

}  // namespace kakunin
