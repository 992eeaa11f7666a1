// PostgresRuntime: the connections the Guards of a process share (postgres_runtime.hpp).
#include "kakunin/postgres_runtime.hpp"

#include <mutex>

#include "kakunin/postgres.hpp"
#include "kakunin/postgres_credentials.hpp"
#include "postgres/runtime_core.hpp"

namespace kakunin {

struct PostgresRuntime::Impl {
    postgres_detail::RuntimeCore core;
    std::mutex mutex;  ///< the feeds below
    std::shared_ptr<PostgresRevocationFeed> revocations;
    std::shared_ptr<PostgresHumanStepFeed> human_steps;
    std::shared_ptr<PostgresCredentialFeed> credentials;

    Impl(std::string conninfo, PostgresRuntimeOptions options)
        : core(std::move(conninfo), std::move(options)) {}
};

namespace postgres_detail {
RuntimeCore& core(PostgresRuntime& runtime) { return runtime.m_impl->core; }
}  // namespace postgres_detail

PostgresRuntime::PostgresRuntime(std::string conninfo, PostgresRuntimeOptions options)
    : m_impl(std::make_unique<Impl>(std::move(conninfo), std::move(options))) {}

PostgresRuntime::~PostgresRuntime() {
    // The feeds are channels of the listener: they go first.
    m_impl->revocations.reset();
    m_impl->human_steps.reset();
    m_impl->credentials.reset();
}

const std::string& PostgresRuntime::conninfo() const noexcept { return m_impl->core.conninfo; }

std::shared_ptr<PostgresRevocationFeed> PostgresRuntime::revocation_feed() {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    if (!m_impl->revocations) {
        PostgresRevocationFeedOptions o;
        o.error_handler = m_impl->core.options.error_handler;
        m_impl->revocations = std::make_shared<PostgresRevocationFeed>(*this, std::move(o));
    }
    return m_impl->revocations;
}

std::shared_ptr<PostgresHumanStepFeed> PostgresRuntime::human_step_feed() {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    if (!m_impl->human_steps) {
        PostgresHumanStepFeedOptions o;
        o.error_handler = m_impl->core.options.error_handler;
        m_impl->human_steps = std::make_shared<PostgresHumanStepFeed>(*this, std::move(o));
    }
    return m_impl->human_steps;
}

std::uint64_t PostgresRuntime::listen_connections() const noexcept {
    return m_impl->core.listener.connections();
}

std::uint64_t PostgresRuntime::write_connections() const noexcept {
    return m_impl->core.writer.connects();
}

std::shared_ptr<PostgresCredentialFeed> PostgresRuntime::credential_feed() {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    if (!m_impl->credentials) {
        PostgresCredentialFeedOptions o;
        o.error_handler = m_impl->core.options.error_handler;
        m_impl->credentials = std::make_shared<PostgresCredentialFeed>(*this, std::move(o));
    }
    return m_impl->credentials;
}

}  // namespace kakunin
