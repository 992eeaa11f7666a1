// kakunin/shared_threads.hpp — the background threads the Guards of one process share
// (docs/operations.md, "Many Guards in one process").
//
//   auto threads = std::make_shared<kakunin::SharedThreads>();
//   kakunin::GuardOptions options;
//   options.threads = threads;  // every Guard given it: four threads in all, not three each
//   std::vector<std::unique_ptr<kakunin::Guard>> guards;  // 50 of them: 4 threads, not 150
//
// Without it each Guard starts three threads of its own: its audit writer, the writer's
// watchdog and its incident thread. With it:
// - one thread writes every Guard's audit records. Each round it first hands every due trail's
//   new lines to its sink, then makes each sink durable, so sinks that share a connection
//   (PostgresAuditSink on one PostgresRuntime) commit every Guard's lines in one group commit,
//   and file sinks write every log before the first fdatasync;
// - one thread is every trail's watchdog: it refuses a Guard's orders (audit_unavailable) once
//   a record has waited longer than `sink_failure_grace`, whatever the writer is doing. It never
//   calls a sink or an error handler, so a sink that hangs, holding the shared writer, or a
//   handler that blocks, still gets every Guard on it refused after its grace, and allowed
//   again once the sink returns;
// - one thread hands the watchdog's messages ("refusing orders with audit_unavailable", "records
//   are durable again") to each trail's error handler;
// - one thread handles every Guard's incidents (escalation, the dead man's switch, automatic
//   revocation, notices): a CA slow to revoke delays the other Guards' incident passes (never
//   their checks).
// check() is unchanged: it never waits for any of them. Error handlers and Notifiers given to
// these Guards run on the shared threads and must not block for long, nor destroy a Guard on
// them (a shared thread cannot wait for itself).
//
// Thread-safe. Outlives every Guard and AuditTrail given it (their options hold a shared_ptr,
// so that is the default).
#pragma once

#include <cstddef>
#include <memory>

namespace kakunin {

class SharedThreads;

namespace detail {
class TaskThread;
TaskThread& audit_writer_thread(SharedThreads& threads);
TaskThread& watchdog_thread(SharedThreads& threads);
TaskThread& reporter_thread(SharedThreads& threads);
TaskThread& incident_thread(SharedThreads& threads);
}  // namespace detail

class SharedThreads {
public:
    /// Starts the four threads ("kakunin-audit", "kakunin-watch", "kakunin-report",
    /// "kakunin-incident" in top -H). Throws std::system_error if the system cannot start one.
    SharedThreads();
    /// Stops the threads. Every trail and Guard using them must be gone already.
    ~SharedThreads();
    SharedThreads(const SharedThreads&) = delete;
    SharedThreads& operator=(const SharedThreads&) = delete;

    /// Audit trails whose records the writer thread writes now (each also on the watchdog).
    std::size_t audit_trails() const noexcept;
    /// Incident desks the incident thread serves now.
    std::size_t incident_desks() const noexcept;

private:
    friend detail::TaskThread& detail::audit_writer_thread(SharedThreads&);
    friend detail::TaskThread& detail::watchdog_thread(SharedThreads&);
    friend detail::TaskThread& detail::reporter_thread(SharedThreads&);
    friend detail::TaskThread& detail::incident_thread(SharedThreads&);
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
