// kakunin/postgres_runtime.hpp — what the Guards of one process share on PostgreSQL
// (docs/operations.md): a process with 50 Guards holds two connections, not 53.
//
//   kakunin::PostgresRuntime pg("host=/run/pg dbname=kakunin user=kakunin_app");
//   credentials.revocation_feed = pg.revocation_feed();  // one LISTEN for every Guard
//   options.human_steps = pg.human_step_feed();
//
// The runtime holds one LISTEN connection, on which every feed of the process runs (each
// feed is a channel of it), and one connection for writes, which the process's components
// take in turn (audit batches, firm-limit leases, fleet state). Each reconnects on its own
// after a lost connection. Nothing on a Guard's hot path waits for either.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace kakunin {

class PostgresRevocationFeed;
class PostgresHumanStepFeed;
class PostgresCredentialFeed;
class PostgresRuntime;

namespace postgres_detail {
struct RuntimeCore;
RuntimeCore& core(PostgresRuntime& runtime);
}  // namespace postgres_detail

struct PostgresRuntimeOptions {
    /// What pg_stat_activity shows for the two connections ("-listen" and "-write" appended),
    /// unless the conninfo sets application_name.
    std::string application_name = "kakunin";
    /// Wait between reconnect attempts.
    std::chrono::milliseconds reconnect_delay{200};
    /// The longest wait for the server at a time (connecting: at least 2 s).
    std::chrono::milliseconds io_timeout{10000};
    /// How often the feeds catch up even when nothing was notified. Zero: never.
    std::chrono::milliseconds check_interval{5000};
    /// Told about connection failures and rows the feeds skip. Must not throw; called on the
    /// runtime's threads.
    std::function<void(std::string_view)> error_handler = {};
};

/// Thread-safe. Outlives everything made from it (feeds, sinks, leases): destroy those first.
class PostgresRuntime {
public:
    /// Starts the LISTEN connection's thread; the write connection opens at first use.
    /// Neither failing to connect throws here: the feeds retry, writes report their errors.
    explicit PostgresRuntime(std::string conninfo, PostgresRuntimeOptions options = {});
    ~PostgresRuntime();
    PostgresRuntime(const PostgresRuntime&) = delete;
    PostgresRuntime& operator=(const PostgresRuntime&) = delete;

    /// The conninfo it was made with (may hold a password: never log it).
    const std::string& conninfo() const noexcept;

    /// The process's revocation feed (made at the first call, then the same one): a channel
    /// of the shared LISTEN connection.
    std::shared_ptr<PostgresRevocationFeed> revocation_feed();
    /// The process's human step feed, likewise.
    std::shared_ptr<PostgresHumanStepFeed> human_step_feed();

    /// How many times the LISTEN connection, and the write connection, have connected.
    std::uint64_t listen_connections() const noexcept;
    std::uint64_t write_connections() const noexcept;

    /// The process's feed of published CRLs and certificates (postgres_credentials.hpp),
    /// likewise a channel of the shared LISTEN connection.
    std::shared_ptr<PostgresCredentialFeed> credential_feed();

private:
    friend postgres_detail::RuntimeCore& postgres_detail::core(PostgresRuntime&);
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
