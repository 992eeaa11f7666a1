// Firm-lease levels as a metrics source (metrics.hpp, add_firm_lease_metrics).
#include "kakunin/metrics.hpp"
#include "kakunin/postgres_firm_limits.hpp"

namespace kakunin {

void add_firm_lease_metrics(MetricsExporter& metrics, std::string name,
                            std::shared_ptr<const PostgresFirmLimits> firm) {
    metrics.add_source(std::move(name), [firm = std::move(firm)](MetricWriter& w) {
        const TimeNs now = SystemClock().now_ns();  // firm leases run on real time
        for (const FirmLeaseLevel& l : firm->levels()) {
            const MetricLabels labels{{"agent", l.agent_id}, {"budget", l.budget_id}};
            w.gauge("kakunin_firm_lease_granted",
                    "How far the Guard's lease of the budget reaches (budget units).", labels,
                    static_cast<double>(l.granted));
            w.gauge("kakunin_firm_lease_consumed",
                    "What the Guard has consumed of the budget (spent: its running total; held: "
                    "what it holds now).",
                    labels, static_cast<double>(l.consumed));
            w.gauge("kakunin_firm_lease_acked",
                    "The consumption the budget's keeper last recorded for the lease.", labels,
                    static_cast<double>(l.acked));
            w.gauge("kakunin_firm_lease_seconds_to_expiry",
                    "Seconds until the lease ages out without a renewal (negative: not in force).",
                    labels,
                    l.expires_ns == 0 ? -1.0 : static_cast<double>(l.expires_ns - now) / 1e9);
        }
    });
}

}  // namespace kakunin
