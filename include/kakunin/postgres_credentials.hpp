// kakunin/postgres_credentials.hpp — CRLs and renewed certificates through PostgreSQL
// (docs/postgres.md §11): the CA publishes each one into an append-only table, which NOTIFYs
// kakunin_credentials, and every Guard subscribed to a PostgresCredentialFeed takes it up
// (update_crl, rotate) without a file and without a restart.
//
//   kakunin::publish_crl(conninfo, ca.current_crl());           // kakunin crl --postgres
//   kakunin::publish_certificate(conninfo, renewed);             // kakunin cert renew --postgres
//   kakunin::PostgresRuntime pg(conninfo);                       // in the trading process
//   credentials.credential_feed = pg.credential_feed();          // a channel of its LISTEN
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "kakunin/certificate.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "kakunin/revocation.hpp"

namespace kakunin {

/// What publishing stored: the row's sequence number, and whether the same CRL or certificate
/// (the same DER) was there already (then nothing was stored and nothing notified).
struct PublishedCredential {
    std::uint64_t seq = 0;
    bool already_published = false;
};

/// Inserts the CRL into kakunin_audit.published_crls (which NOTIFYs kakunin_credentials) in
/// one autocommit statement; publishing the same CRL again stores nothing. The database does
/// not verify it: every Guard does. Opens a connection per call; PostgresCredentialPublisher
/// keeps one. Throws kakunin::Error (database).
PublishedCredential publish_crl(const std::string& conninfo, const CertificateRevocationList& crl);
/// The same for an agent certificate, into kakunin_audit.published_certificates. Throws
/// kakunin::Error (database; invalid_input for a certificate without an agent id).
PublishedCredential publish_certificate(const std::string& conninfo,
                                        const AgentCertificate& certificate);

/// Keeps one connection for publishing (a renewal run publishes many certificates).
/// Connects in the constructor (throws kakunin::Error database when it cannot), so a caller
/// can find out before issuing anything. Thread-safe (calls are serialised); a call whose
/// connection was lost is repeated once on a new one (publishing twice stores once).
class PostgresCredentialPublisher {
public:
    explicit PostgresCredentialPublisher(std::string conninfo);
    ~PostgresCredentialPublisher();
    PostgresCredentialPublisher(const PostgresCredentialPublisher&) = delete;
    PostgresCredentialPublisher& operator=(const PostgresCredentialPublisher&) = delete;

    PublishedCredential publish(const CertificateRevocationList& crl);
    PublishedCredential publish(const AgentCertificate& certificate);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

struct PostgresCredentialFeedOptions {
    /// Wait between reconnect attempts.
    std::chrono::milliseconds reconnect_delay{200};
    /// Told about connection failures and rows skipped (not a CRL or certificate, or columns
    /// that disagree with the DER). Must not throw; called on the feed's thread.
    std::function<void(std::string_view)> error_handler = {};
    /// The longest wait for the server at a time (connecting: at least 2 s).
    std::chrono::milliseconds io_timeout{10000};
    /// How often a quiet feed catches up anyway (a backend that stopped answering). Zero: never.
    std::chrono::milliseconds check_interval{5000};
};

/// CredentialFeed over LISTEN/NOTIFY on kakunin_credentials, shaped like
/// PostgresRevocationFeed: a background thread LISTENs, catches up by transaction snapshot
/// after every (re)connect, on every notification and every check_interval, and delivers each
/// row once (by seq) to every subscriber, on that thread. Its first catch-up reads only the
/// newest rows of each issuer and agent key (CredentialHistory: a few, newest first), which are
/// history; so is what subscribe() hands over. Call wait_until_listening() before building
/// Guards to have them take up the newest CRL and certificate before their constructors return.
class PostgresCredentialFeed final : public CredentialFeed {
public:
    /// Standalone: the feed's own LISTEN connection and thread.
    explicit PostgresCredentialFeed(std::string conninfo,
                                    PostgresCredentialFeedOptions options = {});
    /// A channel of the runtime's LISTEN connection (PostgresRuntime::credential_feed()).
    PostgresCredentialFeed(PostgresRuntime& runtime, PostgresCredentialFeedOptions options);
    ~PostgresCredentialFeed() override;
    PostgresCredentialFeed(const PostgresCredentialFeed&) = delete;
    PostgresCredentialFeed& operator=(const PostgresCredentialFeed&) = delete;

    void subscribe(CredentialListener* listener) override;
    void unsubscribe(CredentialListener* listener) noexcept override;

    /// Waits until the feed is listening and has caught up; false on timeout.
    bool wait_until_listening(std::chrono::milliseconds timeout);
    /// Rows received so far, each once (delivered, or skipped and reported).
    std::uint64_t delivered() const;
    /// How many times the feed's LISTEN connection (the runtime's, when shared) has connected.
    std::uint64_t connections() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
