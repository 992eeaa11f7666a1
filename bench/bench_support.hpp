// Shared by the benchmarks: a global allocation counter (operator new is replaced in
// bench_main.cpp), the typical scope of DESIGN §7 with its order flow and a baseline learned
// from it, so that every check benchmark measures the same Guard work.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <string>

#include "kakunin/baseline.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/guard.hpp"

namespace kakunin::bench {

/// Heap allocations made by this process so far (all threads).
std::uint64_t allocation_count() noexcept;

/// A file name of this run's own in the temporary directory.
inline std::string temp_path(const char* name) {
    return "/tmp/kakunin-bench-" + std::to_string(getpid()) + "-" + name;
}

/// The typical scope of DESIGN §7: 3 instruments, 2 counterparties, 5 windows, every RTS 6 limit.
inline constexpr const char* typical_scope = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a", "exchange_b"],
  "trading_hours": [{"days": ["Mon"], "from": "07:00", "to": "20:00"},
                    {"days": ["Tue"], "from": "07:00", "to": "20:00"},
                    {"days": ["Wed"], "from": "07:00", "to": "20:00"},
                    {"days": ["Thu"], "from": "07:00", "to": "20:00"},
                    {"days": ["Fri"], "from": "07:00", "to": "20:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"}
  }
})";

/// The benchmarks' order: 0.001 ETH_EUR at 2500.12 on exchange_b (allowed), or on exchange_z,
/// which the typical scope does not name (rejected).
inline Order typical_order(bool allowed) {
    Order o;
    o.client_order_id = "bench-1";
    o.instrument = "ETH_EUR";
    o.counterparty = allowed ? "exchange_b" : "exchange_z";
    o.side = Side::buy;
    o.quantity = Decimal{1, 3};    // 0.001
    o.price = Decimal{250012, 2};  // 2500.12
    o.reference_price = Decimal{250000, 2};
    o.region = "eu-central-1";
    return o;
}

/// The typical flow's times: 100 ms apart through a Monday 07:00-20:00 UTC session, then the
/// same a week later. Every reading stays inside the typical scope's hours, its message rate
/// (10/s) and its daily notional.
class SessionSteps {
public:
    static constexpr TimeNs step_ns = 100'000'000;
    static constexpr TimeNs per_session = 13 * 3600 * 10;
    static constexpr TimeNs week_ns = 7 * 86'400'000'000'000;

    explicit SessionSteps(TimeNs first_session = utc(2024, 1, 8, 7, 0, 0)) noexcept
        : m_session(first_session) {}
    /// The next reading.
    TimeNs next() noexcept {
        if (++m_step == per_session) {
            m_step = 0;
            m_session += week_ns;
        }
        return m_session + m_step * step_ns;
    }
    /// What next() will return, without moving.
    TimeNs peek() const noexcept {
        return m_step + 1 == per_session ? m_session + week_ns : m_session + (m_step + 1) * step_ns;
    }

private:
    TimeNs m_session;
    TimeNs m_step = 0;
};

/// A Clock on SessionSteps: each reading is the next step (one thread only).
class StepClock final : public Clock {
public:
    TimeNs now_ns() const noexcept override { return m_steps.next(); }

private:
    mutable SessionSteps m_steps;
};

/// A baseline of `agent` learned from one session of the typical flow (the order at 10/s),
/// observed until a week after it began.
inline Baseline typical_baseline(const std::string& agent) {
    const Scope scope = parse_scope_json(typical_scope);
    SessionSteps steps;
    BaselineBuilder builder(scope, agent);
    const Order o = typical_order(true);
    builder.start(steps.peek());
    TimeNs t = 0;
    for (TimeNs i = 0; i < SessionSteps::per_session; ++i) builder.observe(o, t = steps.next());
    return builder.finalize(t + SessionSteps::week_ns);
}

}  // namespace kakunin::bench
