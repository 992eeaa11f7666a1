// Private to src/postgres: the parts of a PostgresRuntime its components use.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "kakunin/postgres_runtime.hpp"
#include "postgres/listener.hpp"
#include "postgres/pg.hpp"

namespace kakunin::pg {

/// One connection taken in turn: with() runs a function on it, connecting first when there is
/// none. A lost connection is dropped (the next with() reconnects) and its DbError rethrown;
/// callers that can repeat their work safely retry once.
class SharedConnection {
public:
    SharedConnection(std::string conninfo, std::string application_name,
                     std::chrono::milliseconds io_timeout)
        : m_conninfo(std::move(conninfo)),
          m_application_name(std::move(application_name)),
          m_io_timeout(io_timeout) {}

    template <class F>
    auto with(F&& fn) -> decltype(fn(std::declval<Connection&>())) {
        std::lock_guard<std::mutex> lock(m_mutex);
        try {
            if (!m_conn || !m_conn->ok()) {
                m_conn.reset();
                m_conn = std::make_unique<Connection>(m_conninfo, m_application_name.c_str(),
                                                      m_io_timeout);
                ++m_connects;
            }
            return fn(*m_conn);
        } catch (const DbError& e) {
            if (e.connection_lost()) m_conn.reset();
            throw;
        }
    }

    std::uint64_t connects() const noexcept {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_connects;
    }

private:
    std::string m_conninfo;
    std::string m_application_name;
    std::chrono::milliseconds m_io_timeout;
    mutable std::mutex m_mutex;
    std::unique_ptr<Connection> m_conn;
    std::uint64_t m_connects = 0;
};

}  // namespace kakunin::pg

namespace kakunin::postgres_detail {

struct AuditSinkGroup;  // src/postgres/audit_sink.cpp

struct RuntimeCore {
    std::string conninfo;
    PostgresRuntimeOptions options;
    pg::Listener listener;
    pg::SharedConnection writer;

    RuntimeCore(std::string ci, PostgresRuntimeOptions o)
        : conninfo(ci),
          options(o),
          listener(ci, o.application_name + "-listen",
                   pg::ListenerOptions{o.reconnect_delay, o.io_timeout, o.check_interval,
                                       o.error_handler}),
          writer(ci, o.application_name + "-write", o.io_timeout) {}

    /// The audit sinks made on this runtime, which commit together (src/postgres/audit_sink.cpp):
    /// made with the first one.
    std::mutex audit_group_mutex;
    std::shared_ptr<AuditSinkGroup> audit_group;
};

}  // namespace kakunin::postgres_detail
