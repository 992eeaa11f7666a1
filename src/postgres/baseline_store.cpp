// PostgresBaselineStore: versioned baselines and their approvals in append-only tables.
#include <mutex>

#include "kakunin/postgres.hpp"
#include "postgres/pg.hpp"

namespace kakunin {

struct PostgresBaselineStore::Impl {
    std::string conninfo;
    std::mutex mutex;
    std::unique_ptr<pg::Connection> conn;

    // Runs `fn` on a live connection, reconnecting once if the connection was lost.
    template <typename Fn>
    auto with_connection(Fn&& fn) {
        std::lock_guard<std::mutex> lock(mutex);
        for (int attempt = 0;; ++attempt) {
            try {
                if (!conn || !conn->ok())
                    conn = std::make_unique<pg::Connection>(conninfo, "kakunin-baseline-store");
                return fn(*conn);
            } catch (const pg::DbError& e) {
                if (!e.connection_lost() || attempt >= 1) throw;
                conn.reset();
            }
        }
    }
};

namespace {

void check_agent(std::string_view agent_id) {
    if (agent_id.empty())
        throw Error(ErrorCategory::invalid_input, "baseline store: empty agent id");
}

StoredBaseline baseline_from(const PGresult* r, int row) {
    StoredBaseline b;
    b.agent_id = std::string(pg::value(r, row, 0));
    b.version = static_cast<std::uint64_t>(pg::to_i64(pg::value(r, row, 1)));
    b.json = std::string(pg::value(r, row, 2));
    b.sha256_hex = std::string(pg::value(r, row, 3));
    return b;
}

}  // namespace

PostgresBaselineStore::PostgresBaselineStore(std::string conninfo)
    : m_impl(std::make_unique<Impl>()) {
    m_impl->conninfo = std::move(conninfo);
    m_impl->conn = std::make_unique<pg::Connection>(m_impl->conninfo, "kakunin-baseline-store");
}

PostgresBaselineStore::~PostgresBaselineStore() = default;

StoredBaseline PostgresBaselineStore::put_baseline(std::string_view agent_id,
                                                   std::string_view json) {
    check_agent(agent_id);
    return m_impl->with_connection([&](pg::Connection& c) {
        // The next version; a concurrent put for the same agent loses on the primary key and
        // is retried.
        for (int attempt = 0;; ++attempt) {
            try {
                pg::Result r = c.exec(
                    "INSERT INTO kakunin_audit.baselines (agent_id, version, json, sha256) "
                    "SELECT $1, coalesce(max(version), 0) + 1, $2, "
                    "encode(sha256(convert_to($2, 'UTF8')), 'hex') "
                    "FROM kakunin_audit.baselines WHERE agent_id = $1 "
                    "RETURNING agent_id, version, json, sha256",
                    {std::string(agent_id), std::string(json)});
                return baseline_from(r.get(), 0);
            } catch (const pg::DbError& e) {
                if (e.sqlstate() != "23505" || attempt >= 5) throw;
            }
        }
    });
}

std::optional<StoredBaseline> PostgresBaselineStore::get_baseline(std::string_view agent_id,
                                                                  std::uint64_t version) {
    check_agent(agent_id);
    return m_impl->with_connection([&](pg::Connection& c) -> std::optional<StoredBaseline> {
        pg::Result r =
            version == 0
                ? c.exec(
                      "SELECT agent_id, version, json, sha256 FROM kakunin_audit.baselines "
                      "WHERE agent_id = $1 ORDER BY version DESC LIMIT 1",
                      {std::string(agent_id)})
                : c.exec(
                      "SELECT agent_id, version, json, sha256 FROM kakunin_audit.baselines "
                      "WHERE agent_id = $1 AND version = $2",
                      {std::string(agent_id), std::to_string(version)});
        if (PQntuples(r.get()) == 0) return std::nullopt;
        return baseline_from(r.get(), 0);
    });
}

void PostgresBaselineStore::put_approval(const BaselineApproval& a) {
    check_agent(a.agent_id);
    if (a.approver.empty() || a.signature.empty() || a.version == 0) {
        throw Error(ErrorCategory::invalid_input,
                    "baseline approval: approver, signature and version are required");
    }
    m_impl->with_connection([&](pg::Connection& c) {
        try {
            c.exec(
                "INSERT INTO kakunin_audit.baseline_approvals (agent_id, version, approver, "
                "approved_at, signature, baseline_sha256, algorithm, approver_public_key, "
                "automatic) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                {a.agent_id, std::to_string(a.version), a.approver, std::to_string(a.approved_at),
                 a.signature, a.baseline_sha256, a.algorithm, a.approver_public_key,
                 a.automatic ? "true" : "false"});
        } catch (const pg::DbError& e) {
            if (e.sqlstate() == "23503") {
                throw Error(ErrorCategory::not_found, "baseline approval: agent " + a.agent_id +
                                                          " has no baseline version " +
                                                          std::to_string(a.version));
            }
            throw;
        }
        return 0;
    });
}

std::optional<BaselineApproval> PostgresBaselineStore::get_approval(std::string_view agent_id,
                                                                    std::uint64_t version) {
    check_agent(agent_id);
    return m_impl->with_connection([&](pg::Connection& c) -> std::optional<BaselineApproval> {
        pg::Result r = c.exec(
            "SELECT agent_id, version, approver, approved_at, signature, baseline_sha256, "
            "algorithm, approver_public_key, automatic "
            "FROM kakunin_audit.baseline_approvals WHERE agent_id = $1 AND version = $2 "
            "ORDER BY recorded_at, approver LIMIT 1",
            {std::string(agent_id), std::to_string(version)});
        if (PQntuples(r.get()) == 0) return std::nullopt;
        BaselineApproval a;
        a.agent_id = std::string(pg::value(r.get(), 0, 0));
        a.version = static_cast<std::uint64_t>(pg::to_i64(pg::value(r.get(), 0, 1)));
        a.approver = std::string(pg::value(r.get(), 0, 2));
        a.approved_at = pg::to_i64(pg::value(r.get(), 0, 3));
        a.signature = std::string(pg::value(r.get(), 0, 4));
        a.baseline_sha256 = std::string(pg::value(r.get(), 0, 5));
        a.algorithm = std::string(pg::value(r.get(), 0, 6));
        a.approver_public_key = std::string(pg::value(r.get(), 0, 7));
        a.automatic = pg::value(r.get(), 0, 8) == std::string_view("t");
        return a;
    });
}

}  // namespace kakunin
