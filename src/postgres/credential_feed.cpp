// CRLs and certificates through PostgreSQL (postgres_credentials.hpp): the CA inserts into
// kakunin_audit.published_crls / published_certificates, whose triggers NOTIFY
// kakunin_credentials; PostgresCredentialFeed LISTENs, catches up on what committed since its
// last snapshot (as the revocation feed does), and delivers each row once, by seq.
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "crypto/encoding.hpp"
#include "guard/credential_history.hpp"
#include "kakunin/postgres_credentials.hpp"
#include "postgres/listener.hpp"
#include "postgres/pg.hpp"
#include "postgres/runtime_core.hpp"

namespace kakunin {

namespace {

constexpr const char* insert_crl_sql =
    "INSERT INTO kakunin_audit.published_crls (issuer, crl_number, this_update_ns, "
    "next_update_ns, der) VALUES ($1, $2, $3, $4, pg_catalog.decode($5, 'hex')) "
    "ON CONFLICT ((pg_catalog.sha256(der))) DO NOTHING RETURNING seq";
constexpr const char* find_crl_sql =
    "SELECT seq FROM kakunin_audit.published_crls "
    "WHERE pg_catalog.sha256(der) = pg_catalog.sha256(pg_catalog.decode($1, 'hex'))";
constexpr const char* insert_certificate_sql =
    "INSERT INTO kakunin_audit.published_certificates (agent_id, serial, public_key_sha256, "
    "not_before_ns, not_after_ns, der) VALUES ($1, $2, $3, $4, $5, pg_catalog.decode($6, 'hex')) "
    "ON CONFLICT ((pg_catalog.sha256(der))) DO NOTHING RETURNING seq";
constexpr const char* find_certificate_sql =
    "SELECT seq FROM kakunin_audit.published_certificates "
    "WHERE pg_catalog.sha256(der) = pg_catalog.sha256(pg_catalog.decode($1, 'hex'))";

// Both tables read as one channel, each row as (kind, seq, issuer or agent, CRL number or
// serial, key hash or NULL, thisUpdate or notBefore, nextUpdate or notAfter, DER as hex), after
// the snapshot the statement reads under (one statement: the same snapshot for all).
//
// Everything committed since the snapshot $1, as the revocation feed's catch-up.
constexpr const char* catch_up_sql = R"sql(
SELECT s.snap::text, c.kind, c.seq, c.a, c.b, c.k, c.t1, c.t2, pg_catalog.encode(c.der, 'hex')
FROM (SELECT pg_catalog.pg_current_snapshot() AS snap) s
LEFT JOIN (
    SELECT 'crl'::text AS kind, seq, issuer AS a, crl_number::text AS b, NULL::text AS k,
           this_update_ns AS t1, next_update_ns AS t2, der, xact
      FROM kakunin_audit.published_crls
    UNION ALL
    SELECT 'certificate', seq, agent_id, serial, public_key_sha256, not_before_ns, not_after_ns,
           der, xact
      FROM kakunin_audit.published_certificates
) c ON c.xact >= pg_catalog.pg_snapshot_xmin($1::pg_snapshot)
   AND NOT pg_catalog.pg_visible_in_snapshot(c.xact, $1::pg_snapshot)
ORDER BY c.seq
)sql";

// The first catch-up: only the $1 newest of each issuer's CRLs and of each agent key's
// certificates (the history a Guard starting now is given), not every row ever published.
constexpr const char* first_catch_up_sql = R"sql(
SELECT s.snap::text, c.kind, c.seq, c.a, c.b, c.k, c.t1, c.t2, pg_catalog.encode(c.der, 'hex')
FROM (SELECT pg_catalog.pg_current_snapshot() AS snap) s
LEFT JOIN (
    SELECT 'crl'::text AS kind, seq, issuer AS a, crl_number::text AS b, NULL::text AS k,
           this_update_ns AS t1, next_update_ns AS t2, der
      FROM (SELECT seq, issuer, crl_number, this_update_ns, next_update_ns, der,
                   row_number() OVER (PARTITION BY issuer
                                      ORDER BY this_update_ns DESC, crl_number DESC, seq DESC) AS n
              FROM kakunin_audit.published_crls) r
     WHERE n <= $1
    UNION ALL
    SELECT 'certificate', seq, agent_id, serial, public_key_sha256, not_before_ns, not_after_ns,
           der
      FROM (SELECT seq, agent_id, serial, public_key_sha256, not_before_ns, not_after_ns, der,
                   row_number() OVER (PARTITION BY agent_id, public_key_sha256
                                      ORDER BY not_before_ns DESC, seq DESC) AS n
              FROM kakunin_audit.published_certificates) r
     WHERE n <= $1
) c ON true
ORDER BY c.seq
)sql";

std::string hex_of(const std::vector<std::uint8_t>& der) { return crypto::to_hex(der); }

std::uint64_t first_seq(const pg::Result& r) {
    return static_cast<std::uint64_t>(pg::to_i64(pg::value(r.get(), 0, 0)));
}

/// One INSERT (its own transaction: the row and its NOTIFY become visible at COMMIT); when the
/// same DER is stored already, its seq.
PublishedCredential insert_or_find(pg::Connection& c, const char* insert_sql,
                                   const pg::Params& params, const char* find_sql,
                                   const std::string& der_hex) {
    pg::Result r = c.exec(insert_sql, params);
    if (PQntuples(r.get()) == 1) return {first_seq(r), false};
    pg::Result found = c.exec(find_sql, {der_hex});
    if (PQntuples(found.get()) != 1)
        throw Error(ErrorCategory::database,
                    "publishing: the row was neither stored nor found (a concurrent publisher's "
                    "transaction rolled back?): publish again");
    return {first_seq(found), true};
}

PublishedCredential insert_crl(pg::Connection& c, const CertificateRevocationList& crl) {
    const std::string der = hex_of(crl.der());
    return insert_or_find(
        c, insert_crl_sql,
        {crl.issuer(), std::to_string(crl.number()), std::to_string(crl.this_update()),
         std::to_string(crl.next_update()), der},
        find_crl_sql, der);
}

PublishedCredential insert_certificate(pg::Connection& c, const AgentCertificate& cert) {
    if (cert.agent_id().empty())
        throw Error(ErrorCategory::invalid_input,
                    "publishing certificate serial " + cert.serial() + ": it names no agent");
    const std::string der = hex_of(cert.der());
    return insert_or_find(
        c, insert_certificate_sql,
        {cert.agent_id(), cert.serial(), crypto::to_hex(crypto::sha256(cert.public_key())),
         std::to_string(cert.not_before()), std::to_string(cert.not_after()), der},
        find_certificate_sql, der);
}

constexpr const char* publisher_name = "kakunin-credential-publisher";

}  // namespace

PublishedCredential publish_crl(const std::string& conninfo, const CertificateRevocationList& crl) {
    pg::Connection c(conninfo, publisher_name);
    return insert_crl(c, crl);
}

PublishedCredential publish_certificate(const std::string& conninfo,
                                        const AgentCertificate& certificate) {
    pg::Connection c(conninfo, publisher_name);
    return insert_certificate(c, certificate);
}

struct PostgresCredentialPublisher::Impl {
    std::string conninfo;
    std::mutex mutex;
    std::unique_ptr<pg::Connection> conn;

    template <class F>
    PublishedCredential with(F&& fn) {
        std::lock_guard<std::mutex> lock(mutex);
        for (int attempt = 0;; ++attempt) {
            try {
                if (!conn || !conn->ok())
                    conn = std::make_unique<pg::Connection>(conninfo, publisher_name);
                return fn(*conn);
            } catch (const pg::DbError& e) {
                conn.reset();
                if (!e.connection_lost() || attempt >= 1) throw;
            }
        }
    }
};

PostgresCredentialPublisher::PostgresCredentialPublisher(std::string conninfo)
    : m_impl(std::make_unique<Impl>()) {
    m_impl->conninfo = std::move(conninfo);
    m_impl->conn = std::make_unique<pg::Connection>(m_impl->conninfo, publisher_name);
}

PostgresCredentialPublisher::~PostgresCredentialPublisher() = default;

PublishedCredential PostgresCredentialPublisher::publish(const CertificateRevocationList& crl) {
    return m_impl->with([&](pg::Connection& c) { return insert_crl(c, crl); });
}

PublishedCredential PostgresCredentialPublisher::publish(const AgentCertificate& certificate) {
    return m_impl->with([&](pg::Connection& c) { return insert_certificate(c, certificate); });
}

// ---- PostgresCredentialFeed ------------------------------------------------------------------

struct PostgresCredentialFeed::Impl {
    PostgresCredentialFeedOptions options;

    std::mutex mutex;  ///< listeners, history, delivered; held while delivering
    std::condition_variable changed;
    std::vector<CredentialListener*> listeners;
    detail::CredentialHistory history;
    std::unordered_set<std::uint64_t> delivered;

    std::optional<std::string> snapshot;  ///< listener thread only; none before the first

    pg::FeedChannel channel;

    void report(const std::string& message) {
        if (!options.error_handler) return;
        try {
            options.error_handler(message);
        } catch (...) {
        }
    }

    /// One row: parsed, its columns checked against what its DER says, kept as history and
    /// delivered. `first`: it came with the first catch-up, so it is history to everyone.
    void deliver(const PGresult* res, int i, bool first) {
        const std::uint64_t seq = static_cast<std::uint64_t>(pg::to_i64(pg::value(res, i, 2)));
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (delivered.count(seq) != 0) return;
        }
        const std::string_view kind = pg::value(res, i, 1);
        const std::string_view a = pg::value(res, i, 3), b = pg::value(res, i, 4),
                               k = pg::value(res, i, 5);
        const std::int64_t t1 = pg::to_i64(pg::value(res, i, 6)),
                           t2 = pg::to_i64(pg::value(res, i, 7));
        const CredentialUpdate update{seq, "postgres credential " + std::to_string(seq), first};
        std::optional<CertificateRevocationList> crl;
        std::optional<AgentCertificate> cert;
        std::string mismatch;
        try {
            const std::vector<std::uint8_t> der = crypto::from_hex(pg::value(res, i, 8), "der");
            if (kind == "crl") {
                crl = CertificateRevocationList::from_der(der);
                if (crl->issuer() != a)
                    mismatch = "issuer";
                else if (std::to_string(crl->number()) != b)
                    mismatch = "crl_number";
                else if (crl->this_update() != t1)
                    mismatch = "this_update_ns";
                else if (crl->next_update() != t2)
                    mismatch = "next_update_ns";
            } else {
                cert = AgentCertificate::from_der(der);
                if (cert->agent_id() != a)
                    mismatch = "agent_id";
                else if (cert->serial() != b)
                    mismatch = "serial";
                else if (crypto::to_hex(crypto::sha256(cert->public_key())) != k)
                    mismatch = "public_key_sha256";
                else if (cert->not_before() != t1)
                    mismatch = "not_before_ns";
                else if (cert->not_after() != t2)
                    mismatch = "not_after_ns";
            }
        } catch (const std::exception& e) {
            mismatch = std::string("der (") + e.what() + ")";
        }
        std::lock_guard<std::mutex> lock(mutex);
        if (!delivered.insert(seq).second) return;
        if (!mismatch.empty()) {
            report("credential feed: row " + std::to_string(seq) + " (" + std::string(kind) +
                   ") skipped: its " + mismatch + " is not what its DER holds");
            return;
        }
        if (crl) {
            history.add(*crl, update);
            for (CredentialListener* l : listeners) l->on_crl(*crl, update);
        } else {
            history.add(*cert, update);
            for (CredentialListener* l : listeners) l->on_certificate(*cert, update);
        }
        changed.notify_all();
    }

    void catch_up(pg::Connection& c) {
        const bool first = !snapshot;
        pg::Result r =
            first ? c.exec(first_catch_up_sql, {std::to_string(detail::CredentialHistory::depth)})
                  : c.exec(catch_up_sql, {snapshot});
        const PGresult* res = r.get();
        for (int i = 0; i < PQntuples(res); ++i) {
            if (pg::is_null(res, i, 2)) continue;  // nothing new: the snapshot row alone
            deliver(res, i, first);
        }
        if (PQntuples(res) > 0) snapshot = std::string(pg::value(res, 0, 0));
    }

    void start(pg::Listener& l, std::unique_ptr<pg::Listener> own = {}) {
        // The notification carries the seq and kind only: any one means a catch-up.
        channel.open(l,
                     {"kakunin_credentials", [](const char*) { return true; },
                      [this](pg::Connection& c) { catch_up(c); }},
                     std::move(own));
    }
};

PostgresCredentialFeed::PostgresCredentialFeed(std::string conninfo,
                                               PostgresCredentialFeedOptions options)
    : m_impl(std::make_unique<Impl>()) {
    Impl& d = *m_impl;
    d.options = std::move(options);
    auto own = pg::FeedChannel::own(std::move(conninfo), "kakunin-credential-feed", d.options);
    pg::Listener& listener = *own;
    d.start(listener, std::move(own));
}

PostgresCredentialFeed::PostgresCredentialFeed(PostgresRuntime& runtime,
                                               PostgresCredentialFeedOptions options)
    : m_impl(std::make_unique<Impl>()) {
    m_impl->options = std::move(options);
    m_impl->start(postgres_detail::core(runtime).listener);
}

PostgresCredentialFeed::~PostgresCredentialFeed() { m_impl->channel.close(); }

void PostgresCredentialFeed::subscribe(CredentialListener* listener) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    m_impl->listeners.reserve(m_impl->listeners.size() + 1);
    m_impl->history.replay(*listener);
    m_impl->listeners.push_back(listener);
}

void PostgresCredentialFeed::unsubscribe(CredentialListener* listener) noexcept {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto& l = m_impl->listeners;
    l.erase(std::remove(l.begin(), l.end(), listener), l.end());
}

bool PostgresCredentialFeed::wait_until_listening(std::chrono::milliseconds timeout) {
    return m_impl->channel.wait_until_listening(timeout);
}

std::uint64_t PostgresCredentialFeed::delivered() const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->delivered.size();
}

std::uint64_t PostgresCredentialFeed::connections() const { return m_impl->channel.connections(); }

}  // namespace kakunin
