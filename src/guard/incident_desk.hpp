// The Guard's incident desk: what happens after check() saw an anomaly. Anomalies arrive
// through a preallocated ring (the only part check() touches); the desk opens and tracks
// incidents, escalates them when unacknowledged, revokes through the CA after an automatic
// halt, asks for a replacement, and hands notifications to the Notifier, on its own thread or on
// whichever thread calls process().
//
// Private to src/guard: the Guard holds one behind a pointer to an incomplete type, so guard.hpp
// needs neither <thread> nor incident.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kakunin/audit_trail.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/spsc_ring.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/order.hpp"
#include "kakunin/shared_threads.hpp"
#include "runtime/task_thread.hpp"

namespace kakunin {
class CertificateAuthority;
class SharedThreads;
}  // namespace kakunin

namespace kakunin::detail {

class IncidentDesk {
public:
    /// What the desk asks of its Guard. Set once at construction; called from the desk's thread
    /// or from process()'s caller.
    struct Hooks {
        /// Queues an audit record (never throws; reports failures itself).
        std::function<void(TimeNs at, std::string_view event, std::string payload)> audit;
        /// The Guard's error handler (never throws).
        std::function<void(std::string_view message)> report;
        /// "inc-" ids: prefix, time, n as in the Guard's halt ids.
        std::function<std::string(std::string_view prefix, TimeNs at, std::uint64_t n)> new_id;
        /// The Guard's clock, or the latest time check() has seen if that is later: a clock
        /// stepping back puts no deadline off.
        std::function<TimeNs()> latest_time;
        /// check() halted automatically for this anomaly: gives the halt its id, history and
        /// notification (`reason`); returns the serial in force ("" without a certificate).
        std::function<std::string(TimeNs at, std::string reason)> record_automatic_halt;
        /// An unacknowledged incident halts the Guard (ScoringPolicy::halt_on_escalation).
        std::function<void(TimeNs at, std::string reason)> halt_for_escalation;
        /// Periodic deadline work besides the escalations: the place for the heartbeat deadline
        /// (a dead man's switch). Called with latest_time() at the end of every process() pass:
        /// at each wake of the desk's thread, which waits at most 2 ms between passes (so far
        /// more often than every 100 ms of wall time, unless a pass itself is slow: a blocking
        /// revoke() or Notifier delays the next), and on every process() a caller makes (with
        /// GuardOptions::incident_thread off, on simulated time). The thread runs only once
        /// start() was called (the Guard does with a notifier or a baseline). Called holding
        /// only the pass lock (m_process_mutex), not the incident lock; what it throws is
        /// reported and the pass goes on. May be empty.
        std::function<void(TimeNs now)> tick;
    };

    struct Options {
        std::string agent_id;
        std::shared_ptr<Notifier> notifier;               ///< may be null: nothing is notified
        std::shared_ptr<CertificateAuthority> authority;  ///< may be null: nobody revokes
        std::function<void(const ReplacementRequest&)> on_replacement_request;
        bool thread = true;  ///< start() runs a thread; else only process() callers advance
        /// With `thread`: the passes run on this shared incident thread instead of one of the
        /// desk's own.
        std::shared_ptr<SharedThreads> shared;
    };

    IncidentDesk(const Clock& clock, Options options, Hooks hooks);
    /// Stops the thread (without a last pass: the Guard calls stop() and process() first).
    ~IncidentDesk();
    IncidentDesk(const IncidentDesk&) = delete;
    IncidentDesk& operator=(const IncidentDesk&) = delete;

    /// Scoring starts or changes: anomalies are handled under `policy` from now on. The first
    /// call preallocates the anomaly ring; call it before check() can push (it may throw
    /// std::bad_alloc, changing nothing).
    void enforce(const ScoringPolicy& policy);
    /// Starts the thread if Options::thread and not running yet. Idempotent.
    void start();
    /// Stops and joins the thread (idempotent); process() still works afterwards.
    void stop() noexcept;
    /// Makes the thread run a pass now rather than at its next poll (any thread; no lock).
    void wake() noexcept;

    /// Hands an anomaly over (the Guard's hot lock held: one producer; no allocation, no
    /// lock, no system call). Counts and drops it when the ring is full: an incident is open
    /// already, and the audit trail has the order.
    void push_anomaly(const Order& o, const Decision& d) noexcept;

    /// Queues a notification (any thread; never calls the Notifier). Reports, and drops it, if
    /// it cannot be built.
    void notify(Notification::Kind kind, const Incident* incident, TimeNs at, std::string summary,
                std::string details_json = {}) noexcept;

    /// One pass: queued anomalies, due escalations, the tick, then the queued notifications, in
    /// order. Passes are serialised (one consumer of the ring); throws what handling throws (the
    /// anomaly in hand stays queued).
    void process();
    /// Until everything queued so far is handled and delivered (drives process() itself when
    /// there is no thread), or `timeout` passes.
    bool wait(std::chrono::milliseconds timeout);

    /// Restart (docs/restart.md): takes one record of the Guard's log, in order, before the
    /// thread starts: incident.opened, .acknowledged, .resolved, .escalated, .revoked,
    /// review.signed and order.warned (a warning counted on the incident it belongs to) rebuild
    /// the incidents with their states and deadlines; other events are ignored. Throws
    /// kakunin::Error (invalid_input) naming the member for a record it cannot read.
    void restore(std::string_view event, TimeNs at, const nlohmann::json& payload);

    std::vector<Incident> incidents() const;
    void acknowledge(std::string_view id, std::string_view by, std::string_view note);
    void resolve(std::string_view id, std::string_view by, std::string_view note);
    /// The review's signature, agent and person are the Guard's to check first.
    void review(const IncidentReview& review);

private:
    using Ring = SpscRing<AuditEntry>;

    void handle_anomaly(const AuditEntry& e);
    void check_deadlines(TimeNs now);
    void deliver_notifications() noexcept;
    void loop();

    const Clock& m_clock;
    const Options m_options;
    const Hooks m_hooks;

    /// Serialises process() (the ring's single consumer, the Notifier's calls in order). Taken
    /// before m_mutex; held while the CA revokes, so a pass never overtakes another.
    std::mutex m_process_mutex;
    /// Guards the incidents and the policy. Never held while calling the CA, the Notifier or the
    /// replacement callback: people read and acknowledge incidents while those are slow. Taken
    /// before the Guard's admin mutex, never inside its hot lock.
    mutable std::mutex m_mutex;
    std::vector<Incident> m_incidents;
    std::optional<ScoringPolicy> m_policy;

    /// The ring from check(): created by the first enforce(), never replaced.
    std::unique_ptr<Ring> m_ring_storage;
    std::atomic<Ring*> m_anomalies{nullptr};
    std::uint64_t m_anomalies_dropped = 0;  ///< the producer's (under the Guard's hot lock)

    std::mutex m_notes_mutex;  ///< guards m_notes; taken alone
    std::vector<Notification> m_notes;
    std::atomic<std::uint64_t> m_notes_queued{0}, m_notes_delivered{0};

    std::mutex m_wake_mutex;
    std::condition_variable m_wake;
    std::atomic<bool> m_stop{false};
    std::mutex m_thread_mutex;  ///< guards m_thread and m_pass (start() and stop() from any thread)
    std::thread m_thread;
    struct Pass;  ///< the desk's passes on a SharedThreads incident thread
    std::unique_ptr<Pass> m_pass;
    /// For wake(), which takes no lock of the desk's: the pass while it is on the shared
    /// thread (null before start() and from stop() on), and that thread.
    std::atomic<TaskThread::Task*> m_pass_task{nullptr};
    TaskThread* const m_pass_thread =
        m_options.shared ? &incident_thread(*m_options.shared) : nullptr;
};

}  // namespace kakunin::detail
