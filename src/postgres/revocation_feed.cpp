// Revocations through PostgreSQL: an INSERT into kakunin_audit.revocations NOTIFYs
// kakunin_revocations; PostgresRevocationFeed LISTENs, delivers by serial, and catches up on
// what committed since its last snapshot.
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "kakunin/postgres.hpp"
#include "postgres/listener.hpp"
#include "postgres/pg.hpp"
#include "postgres/runtime_core.hpp"

namespace kakunin {

namespace {

constexpr const char* insert_revocation_sql =
    "INSERT INTO kakunin_audit.revocations (serial, agent_id, reason, revoked_at) "
    "VALUES ($1, $2, $3, $4) RETURNING seq";

void check_serial(const std::string& serial) {
    const bool ok = !serial.empty() && std::all_of(serial.begin(), serial.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
    if (!ok) {
        throw Error(ErrorCategory::invalid_input,
                    "revocation: serial \"" + serial + "\" is not lowercase hex");
    }
}

/// One round trip, in its own transaction: the row and its NOTIFY (sent by the row's trigger)
/// become visible together at COMMIT, after the WAL flush, so no Guard acts on a revocation that
/// a crash could still undo. `prepared`: the statement was prepared on `c` as kk_insert_revocation.
std::uint64_t insert_revocation(pg::Connection& c, const Revocation& r, bool prepared = false) {
    check_serial(r.serial);
    const pg::Params params{r.serial, r.agent_id, r.reason, std::to_string(r.revoked_at)};
    pg::Result res = prepared ? c.exec_prepared("kk_insert_revocation", params)
                              : c.exec(insert_revocation_sql, params);
    return static_cast<std::uint64_t>(pg::to_i64(pg::value(res.get(), 0, 0)));
}

std::unique_ptr<pg::Connection> publisher_connection(const std::string& conninfo) {
    auto c = std::make_unique<pg::Connection>(conninfo, "kakunin-revocation-publisher");
    c->prepare("kk_insert_revocation", insert_revocation_sql, 4);
    return c;
}

}  // namespace

std::uint64_t publish_revocation(const std::string& conninfo, const Revocation& revocation) {
    pg::Connection c(conninfo, "kakunin-revocation-publisher");
    return insert_revocation(c, revocation);
}

struct PostgresRevocationPublisher::Impl {
    std::string conninfo;
    std::mutex mutex;
    std::unique_ptr<pg::Connection> conn;
};

PostgresRevocationPublisher::PostgresRevocationPublisher(std::string conninfo)
    : m_impl(std::make_unique<Impl>()) {
    m_impl->conninfo = std::move(conninfo);
    m_impl->conn = publisher_connection(m_impl->conninfo);
}

PostgresRevocationPublisher::~PostgresRevocationPublisher() = default;

std::uint64_t PostgresRevocationPublisher::publish(const Revocation& revocation) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    for (int attempt = 0;; ++attempt) {
        try {
            if (!m_impl->conn || !m_impl->conn->ok()) {
                m_impl->conn = publisher_connection(m_impl->conninfo);
            }
            // A lost connection before the INSERT's result leaves it unknown whether it
            // happened; publishing twice is harmless (a Guard halts once), missing one is not.
            return insert_revocation(*m_impl->conn, revocation, /*prepared=*/true);
        } catch (const pg::DbError& e) {
            m_impl->conn.reset();
            if (!e.connection_lost() || attempt >= 1) throw;
        }
    }
}

// ---- PostgresRevocationFeed ------------------------------------------------------------------

// Everything committed since `$2` (the snapshot of the previous catch-up; NULL: everything),
// with the snapshot this statement reads under (one statement: the same snapshot for both). A
// bigserial is taken before COMMIT, so seqs commit out of order: a window on seq would skip a
// lower seq that commits after a higher one; a window of snapshots skips nothing.
constexpr const char* catch_up_sql =
    "SELECT s.snap::text, r.seq, r.serial, r.agent_id, r.reason, r.revoked_at "
    "FROM (SELECT pg_catalog.pg_current_snapshot() AS snap) s "
    "LEFT JOIN kakunin_audit.revocations r ON r.seq > $1 AND ($2::pg_snapshot IS NULL OR "
    "(r.xact >= pg_catalog.pg_snapshot_xmin($2::pg_snapshot) AND "
    "NOT pg_catalog.pg_visible_in_snapshot(r.xact, $2::pg_snapshot))) "
    "ORDER BY r.seq";

struct PostgresRevocationFeed::Impl {
    PostgresRevocationFeedOptions options;

    std::mutex mutex;  ///< listeners, seen, delivered, last_seq
    std::condition_variable changed;
    std::vector<RevocationListener*> listeners;
    std::vector<Revocation> seen;
    std::unordered_set<std::string> delivered;  ///< serials in `seen`
    std::uint64_t last_seq = 0;

    /// Listener thread only: the snapshot of the last catch-up. Every revocation visible in it
    /// has been delivered; kept across reconnects.
    std::optional<std::string> snapshot;

    pg::FeedChannel channel;

    // By identity, not by seq order: a NOTIFY and a catch-up may both bring a revocation (and a
    // publisher's retry may store it twice); delivering it twice would be harmless, missing one
    // is not, so only a serial already delivered is skipped.
    void deliver(std::uint64_t seq, Revocation r) {
        if (seq <= options.start_after_seq) return;
        std::lock_guard<std::mutex> lock(mutex);
        last_seq = std::max(last_seq, seq);
        if (!delivered.insert(r.serial).second) return;
        for (RevocationListener* l : listeners) l->on_revocation(r);
        seen.push_back(std::move(r));
        changed.notify_all();
    }

    void catch_up(pg::Connection& c) {
        pg::Result r = c.exec(catch_up_sql, {std::to_string(options.start_after_seq), snapshot});
        const PGresult* res = r.get();
        for (int i = 0; i < PQntuples(res); ++i) {
            if (pg::is_null(res, i, 1)) continue;  // nothing new: the snapshot row alone
            Revocation rev;
            rev.serial = std::string(pg::value(res, i, 2));
            rev.agent_id = std::string(pg::value(res, i, 3));
            rev.reason = std::string(pg::value(res, i, 4));
            rev.revoked_at = pg::to_i64(pg::value(res, i, 5));
            deliver(static_cast<std::uint64_t>(pg::to_i64(pg::value(res, i, 1))), std::move(rev));
        }
        if (PQntuples(res) > 0) snapshot = std::string(pg::value(res, 0, 0));
    }

    // Delivers a notification that carries the whole row. Returns true when a catch-up is needed
    // instead (a notification with the seq only, or one it cannot read).
    bool handle_notification(const char* payload) {
        const auto j = nlohmann::json::parse(payload, nullptr, false);
        if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned()) return true;
        const std::uint64_t seq = j["seq"].get<std::uint64_t>();
        if (!j.contains("serial") || !j.contains("agent_id") || !j.contains("reason") ||
            !j.contains("revoked_at")) {
            return true;
        }
        if (!j["serial"].is_string() || !j["agent_id"].is_string() || !j["reason"].is_string() ||
            !j["revoked_at"].is_number_integer()) {
            return true;
        }
        Revocation r;
        r.serial = j["serial"].get<std::string>();
        r.agent_id = j["agent_id"].get<std::string>();
        r.reason = j["reason"].get<std::string>();
        r.revoked_at = j["revoked_at"].get<std::int64_t>();
        deliver(seq, std::move(r));
        return false;
    }

    void start(pg::Listener& l, std::unique_ptr<pg::Listener> own = {}) {
        last_seq = options.start_after_seq;
        channel.open(l,
                     {"kakunin_revocations",
                      [this](const char* payload) { return handle_notification(payload); },
                      [this](pg::Connection& c) { catch_up(c); }},
                     std::move(own));
    }
};

PostgresRevocationFeed::PostgresRevocationFeed(std::string conninfo,
                                               PostgresRevocationFeedOptions options)
    : m_impl(std::make_unique<Impl>()) {
    Impl& d = *m_impl;
    d.options = std::move(options);
    auto own = pg::FeedChannel::own(std::move(conninfo), "kakunin-revocation-feed", d.options);
    pg::Listener& listener = *own;
    d.start(listener, std::move(own));
}

PostgresRevocationFeed::PostgresRevocationFeed(PostgresRuntime& runtime,
                                               PostgresRevocationFeedOptions options)
    : m_impl(std::make_unique<Impl>()) {
    m_impl->options = std::move(options);
    m_impl->start(postgres_detail::core(runtime).listener);
}

PostgresRevocationFeed::~PostgresRevocationFeed() { m_impl->channel.close(); }

void PostgresRevocationFeed::subscribe(RevocationListener* listener) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    for (const Revocation& r : m_impl->seen) listener->on_revocation(r);
    m_impl->listeners.push_back(listener);
}

void PostgresRevocationFeed::unsubscribe(RevocationListener* listener) noexcept {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto& l = m_impl->listeners;
    l.erase(std::remove(l.begin(), l.end(), listener), l.end());
}

bool PostgresRevocationFeed::wait_until_listening(std::chrono::milliseconds timeout) {
    return m_impl->channel.wait_until_listening(timeout);
}

std::uint64_t PostgresRevocationFeed::last_seq() const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->last_seq;
}

std::uint64_t PostgresRevocationFeed::connections() const { return m_impl->channel.connections(); }

}  // namespace kakunin
