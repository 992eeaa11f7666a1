// What a scrape reads from one Guard: only what it already keeps (docs/metrics.md).
#include "metrics/guard_metrics.hpp"

#include <array>
#include <cstddef>
#include <vector>

#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"

namespace kakunin::metrics_detail {

namespace {

constexpr IncidentState incident_states[] = {IncidentState::open, IncidentState::acknowledged,
                                             IncidentState::resolved, IncidentState::revoked,
                                             IncidentState::reviewed};
constexpr const char* guard_states[] = {"trading", "reduce_only", "halted", "revoked"};

double seconds(std::int64_t ns) noexcept { return static_cast<double>(ns) / 1e9; }
double as_double(std::uint64_t n) noexcept { return static_cast<double>(n); }

MetricLabels with(const MetricLabels& base, const char* name, std::string value) {
    MetricLabels l = base;
    l.emplace_back(name, std::move(value));
    return l;
}

}  // namespace

void write_guard(FamilyWriter& w, const Guard& guard, const std::string& agent, bool certified) {
    const MetricLabels a{{"agent", agent}};

    // Decisions: GuardCounters (one copy under the hot lock: checks = allowed + rejected).
    const GuardCounters c = guard.counters();
    w.counter("kakunin_checks_total", "Orders checked (Guard::check calls).", a,
              as_double(c.checks));
    w.counter("kakunin_checks_allowed_total", "Checked orders allowed (verdict allow or warn).", a,
              as_double(c.allowed));
    w.counter("kakunin_checks_rejected_total", "Checked orders rejected.", a,
              as_double(c.rejected));
    for (ReasonCode r : all_reason_codes) {
        if (r == ReasonCode::anomaly_warning) continue;  // a warning allows: never a rejection
        w.counter("kakunin_rejections_total",
                  "Rejected checks by reason; a rejection with several reasons counts under each.",
                  with(a, "reason", to_string(r)), as_double(c.rejected_for(r)));
    }

    // Latency: the sampled histogram (one check in LatencySampler::sample_every).
    const CheckLatency l = guard.check_latency();
    std::vector<double> bounds;
    for (std::int64_t b : CheckLatency::bounds_ns) bounds.push_back(seconds(b));
    w.histogram("kakunin_check_duration_seconds",
                "Duration of check() calls, one call in 64 sampled (count: sampled calls).", a,
                bounds, std::vector<std::uint64_t>(l.counts.begin(), l.counts.end()),
                seconds(static_cast<std::int64_t>(l.sum_ns)));

    // State: one of trading, reduce_only, halted, revoked (the first that applies from the end).
    const bool revoked = guard.revoked();
    const bool halted = guard.halted();
    const bool reduce_only = guard.reduce_only_in_force();
    const char* state = revoked       ? "revoked"
                        : halted      ? "halted"
                        : reduce_only ? "reduce_only"
                                      : "trading";
    for (const char* s : guard_states)
        w.gauge(
            "kakunin_guard_state",
            "1 for the Guard's state (trading, reduce_only, halted, revoked), 0 for the others.",
            with(a, "state", s), std::string_view(s) == state ? 1.0 : 0.0);

    // Incidents by state.
    std::array<std::uint64_t, std::size(incident_states)> by_state{};
    for (const Incident& i : guard.incidents()) {
        const auto s = static_cast<std::size_t>(i.state);
        if (s < by_state.size()) ++by_state[s];
    }
    for (IncidentState s : incident_states)
        w.gauge("kakunin_incidents", "Incidents of the Guard in each state.",
                with(a, "state", to_string(s)), as_double(by_state[static_cast<std::size_t>(s)]));

    // Certificate: its notAfter, and the time left by the Guard's own clock.
    if (certified) {
        if (const auto cert = guard.certificate()) {
            const TimeNs not_after = cert->not_after();
            w.gauge("kakunin_certificate_expiry_timestamp_seconds",
                    "The agent certificate's notAfter (Unix time).", a, seconds(not_after));
            w.gauge("kakunin_certificate_time_to_expiry_seconds",
                    "Seconds until the agent certificate's notAfter by the Guard's clock "
                    "(negative once expired).",
                    a, seconds(not_after - guard.clock().now_ns()));
        }
    }

    // Audit trail.
    if (const AuditTrail* trail = guard.audit()) {
        const AuditTrailCounters t = trail->counters();
        w.gauge("kakunin_audit_queue_depth", "Audit entries queued that the writer has not taken.",
                a, as_double(t.queue_depth));
        w.gauge("kakunin_audit_pending_records", "Audit entries queued and not yet durable.", a,
                as_double(t.queued >= t.durable ? t.queued - t.durable : 0));
        w.gauge("kakunin_audit_durable_lag_seconds",
                "How long the oldest audit entry not yet durable has waited (0: none waits).", a,
                seconds(t.durable_lag_ns));
        w.counter("kakunin_audit_queued_records_total", "Audit entries handed to the trail.", a,
                  as_double(t.queued));
        w.counter("kakunin_audit_durable_records_total", "Audit entries made durable by the sink.",
                  a, as_double(t.durable));
        w.counter("kakunin_audit_sink_failures_total", "Failed durable writes (each retried).", a,
                  as_double(t.sink_failures));
        w.counter("kakunin_audit_unrecorded_total",
                  "Entries the full audit queue could not take: rejected orders (kind rejection), "
                  "execution reports and allowed cancels (kind report).",
                  with(a, "kind", "rejection"), as_double(t.unrecorded_rejections));
        w.counter("kakunin_audit_unrecorded_total",
                  "Entries the full audit queue could not take: rejected orders (kind rejection), "
                  "execution reports and allowed cancels (kind report).",
                  with(a, "kind", "report"), as_double(t.unrecorded_reports));
        w.gauge(
            "kakunin_audit_healthy",
            "1 while the audit trail accepts orders, 0 while it refuses them (audit_unavailable).",
            a, t.healthy ? 1.0 : 0.0);
    }
}

}  // namespace kakunin::metrics_detail
