// kakunin/postgres_firm_limits.hpp — firm-wide budgets kept in PostgreSQL (docs/operations.md).
//
//   kakunin::PostgresRuntime pg(conninfo);
//   auto firm = std::make_shared<kakunin::PostgresFirmLimits>(pg,
//       kakunin::PostgresFirmLimitsOptions{{"firm-daily", "desk-a-open-orders"}});
//   options.firm_limits = firm;          // each Guard of the desk takes a lease of both
//
// A budget is set by a named person (`kakunin firm budget set`, recorded in the CA log). Each
// Guard's leases are topped up by one background thread over the runtime's write connection,
// all of the process's leases in one statement. Nothing on the hot path waits for it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/firm_limits.hpp"
#include "kakunin/postgres_runtime.hpp"

namespace kakunin {

struct PostgresFirmLimitsOptions {
    /// The budgets every Guard attached here shares (set with `kakunin firm budget set`).
    std::vector<std::string> budgets;
    /// How long a lease is good for without a renewal. A process that dies (or loses the
    /// database) holds its leases this long; its Guards stop consuming them at the same time.
    std::chrono::milliseconds lease_ttl{3000};
    /// A lease is renewed when this much of its life is left (and whenever it runs low).
    std::chrono::milliseconds renew_before{2000};
    /// How often the thread looks at the leases (cheap: a few atomic loads per lease).
    std::chrono::milliseconds poll_interval{2};
    /// Told about failed refills (at most once per failure streak) and recoveries. Must not
    /// throw; called on the thread.
    std::function<void(std::string_view)> error_handler = {};
};

/// A budget as a named person sets it. Amounts in the budget's unit: money in 10^-6 of
/// `currency` (firm_money_scale), orders as counts.
struct FirmBudget {
    std::string id;  ///< a-z, 0-9, then also . _ -; at most 64
    FirmBudgetKind kind = FirmBudgetKind::daily_notional;
    std::string currency;  ///< money budgets: the instruments' quote currency; else empty
    std::int64_t amount = 0;
    std::int64_t chunk = 0;  ///< how much a Guard's lease grows by at a time
    std::string set_by, reason;
    TimeNs set_at_ns = 0;
};

/// Sets a budget (kakunin_audit.firm_budget_steps, in force at once for new grants; leases
/// already out stay). In one transaction: the step is checked by the database, then `record`
/// is called (e.g. LocalCa::record_event; it returns the record's seq, stored with the step),
/// then it commits. Throws kakunin::Error (invalid_input, database) and records nothing when
/// the database refuses the step.
std::uint64_t set_firm_budget(const std::string& conninfo, const FirmBudget& budget,
                              const std::function<std::uint64_t()>& record);

/// A person judged that the orders behind a held budget's orphaned leases (leases whose Guard
/// stopped renewing while it held working orders) no longer work: their reservation returns.
/// `record` is called first (e.g. LocalCa::record_event), then the leases go, in one
/// transaction. Returns how many leases were released. Throws kakunin::Error.
std::size_t release_firm_orphans(const std::string& conninfo, const std::string& budget_id,
                                 const std::function<std::uint64_t()>& record);

/// A budget now: what the day has spent, what live leases hold.
struct FirmBudgetState {
    FirmBudget budget;
    std::int64_t spent = 0;   ///< daily_notional: consumed today by Guards that stopped
    std::int64_t leased = 0;  ///< granted to live leases (minus, for a day, their earlier part)
    std::size_t leases = 0;
    std::size_t orphaned = 0;  ///< held budgets: leases kept after their Guard stopped renewing
    std::string day;           ///< the UTC day the budget counts (YYYY-MM-DD)
};
std::vector<FirmBudgetState> firm_budget_states(const std::string& conninfo);

/// A lease's figures, for operators and metrics.
struct FirmLeaseLevel {
    std::string budget_id;
    std::string agent_id;
    FirmBudgetKind kind = FirmBudgetKind::daily_notional;
    std::int64_t consumed = 0, granted = 0, acked = 0, slice = 0;
    TimeNs expires_ns = 0;  ///< the Guard's clock; 0: not in force
};

/// FirmLimitSource over kakunin_audit.firm_budgets and firm_leases. Thread-safe. The runtime
/// must outlive it; it must outlive the Guards attached to it.
class PostgresFirmLimits final : public FirmLimitSource {
public:
    /// Reads the budgets (kind, currency, chunk): throws kakunin::Error (invalid_input for a
    /// budget that is not set, database when PostgreSQL cannot be reached) and starts the thread.
    PostgresFirmLimits(PostgresRuntime& runtime, PostgresFirmLimitsOptions options);
    ~PostgresFirmLimits() override;
    PostgresFirmLimits(const PostgresFirmLimits&) = delete;
    PostgresFirmLimits& operator=(const PostgresFirmLimits&) = delete;

    bool holds_working_orders() const noexcept override;
    std::vector<std::shared_ptr<FirmLease>> attach(std::string_view agent_id,
                                                   const Clock& clock) override;
    void detach(const std::vector<std::shared_ptr<FirmLease>>& leases) noexcept override;

    /// Waits until every attached lease has been granted once; false on timeout.
    bool wait_granted(std::chrono::milliseconds timeout) const;
    /// Every attached lease, now.
    std::vector<FirmLeaseLevel> levels() const;
    /// Round-trip times of the refill statements (microseconds), the latest 4096.
    std::vector<double> refill_latencies_us() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
