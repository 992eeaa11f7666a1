// kakunin/shared_threads.hpp — the background threads the Guards of one process share
// (docs/operations.md, "Many Guards in one process").
//
//   auto threads = std::make_shared<kakunin::SharedThreads>();
//   kakunin::GuardOptions options;
//   options.threads = threads;  // every Guard given it: one audit writer, one incident thread
//   std::vector<std::unique_ptr<kakunin::Guard>> guards;  // 50 of them: 52 threads, not 150
//
// Without it each Guard starts its own audit-writer and incident threads. With it:
// - one thread writes every Guard's audit records. Each round it first hands every due trail's
//   new lines to its sink, then makes each sink durable, so sinks that share a connection
//   (PostgresAuditSink on one PostgresRuntime) commit every Guard's lines in one group commit,
//   and file sinks write every log before the first fdatasync;
// - one thread handles every Guard's incidents (escalation, automatic revocation, notices).
// Each audit trail keeps its own watchdog thread: if a sink hangs, the shared writer waits with
// it, and every watchdog refuses orders for its own Guard after `sink_failure_grace`, whatever
// the writer is doing. Likewise a CA slow to revoke delays the other Guards' incident handling
// (not their checks). check() is unchanged: it never waits for either thread.
//
// Thread-safe. Outlives every Guard and AuditTrail given it (the Guard's options hold a
// shared_ptr, so that is the default).
#pragma once

#include <cstddef>
#include <memory>

namespace kakunin {

class SharedThreads;

namespace detail {
class TaskThread;
TaskThread& audit_writer_thread(SharedThreads& threads);
TaskThread& incident_thread(SharedThreads& threads);
}  // namespace detail

class SharedThreads {
public:
    /// Starts both threads (named "kakunin-audit" and "kakunin-incident"). Throws
    /// std::system_error if the system cannot start a thread.
    SharedThreads();
    /// Stops the threads. Every trail and Guard using them must be gone already.
    ~SharedThreads();
    SharedThreads(const SharedThreads&) = delete;
    SharedThreads& operator=(const SharedThreads&) = delete;

    /// Audit trails whose records the writer thread writes now.
    std::size_t audit_trails() const noexcept;
    /// Incident desks the incident thread serves now.
    std::size_t incident_desks() const noexcept;

private:
    friend detail::TaskThread& detail::audit_writer_thread(SharedThreads&);
    friend detail::TaskThread& detail::incident_thread(SharedThreads&);
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
