// kakunin/baseline.hpp — what an agent normally does, learned while it trades under observation,
// approved by a named person, and scored against on every order (DESIGN §4).
//
//   kakunin::BaselineBuilder builder(scope, "agent-7");        // preallocated from the scope
//   builder.observe(order, clock.now_ns());                   // noexcept, no allocation
//   kakunin::Baseline b = builder.finalize(clock.now_ns());   // refused before 7 days
//   kakunin::BaselineApproval a = kakunin::approve_baseline(kms, b, "A. Officer", now);
//   options.baseline = kakunin::ApprovedBaseline{b, a};      // the Guard now scores every order
//
// A Baseline is a versioned JSON document (format "kakunin-baseline/v1"): integers and decimal
// strings only, so its canonical bytes and their SHA-256 are stable; the approval signs that hash.
// The scoring policy (weights, thresholds) travels inside it, so what was approved is exactly what
// is enforced.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/baseline_store.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/string_set.hpp"
#include "kakunin/kms.hpp"
#include "kakunin/order.hpp"
#include "kakunin/scope.hpp"

namespace kakunin {

/// The five components, in the order of Decision::components_ppm.
enum class ScoreComponent : std::uint8_t { size, frequency, concentration, time_of_day, origin };

/// How components become one score, and when the Guard acts. Recorded in the baseline.
struct ScoringPolicy {
    /// Exponent weights of the noisy-OR combination, in ppm of 1 (1'000'000 = full weight).
    std::array<std::uint32_t, score_component_count> weights_ppm{1'000'000, 1'000'000, 1'000'000,
                                                                 1'000'000, 1'000'000};
    std::uint32_t warn_ppm = 750'000;    ///< score at or above: allowed with a warning
    std::uint32_t revoke_ppm = 850'000;  ///< score at or above: rejected, halted, revoked
    /// Component value for an instrument, region or hour never seen in observation.
    std::uint32_t unseen_ppm = 800'000;
    /// Ratios to the baseline's reference at which size / frequency / concentration reach the
    /// warning level on their own (see docs/anomaly-scoring.md): notional vs p99, recent orders
    /// vs mean + 3 sd, recent instrument share vs its baseline share.
    std::uint32_t size_warn_ratio = 10;
    std::uint32_t frequency_warn_ratio = 3;
    std::uint32_t concentration_warn_ratio = 10;
    std::uint32_t short_window_minutes = 10;     ///< the frequency component's shorter window
    std::uint32_t concentration_window = 50;     ///< orders in the recent-share window
    std::uint32_t min_observation_days = 7;      ///< finalising earlier is refused (7..14)
    std::uint32_t investigation_window_s = 300;  ///< an open incident escalates after this
    bool halt_on_escalation = false;             ///< escalate by halting instead of notifying
};

/// Throws kakunin::Error (invalid_input) naming the member when a policy is out of range.
void validate(const ScoringPolicy& policy);

struct InstrumentBaseline {
    std::string instrument;
    std::uint64_t orders = 0;
    std::string notional_p50;  ///< decimal string in the scope's currency
    std::string notional_p99;
};

struct RegionBaseline {
    std::string region;
    std::uint64_t orders = 0;
};

/// A learned, not yet approved or approved, baseline. Mean and spread are in thousandths of an
/// order (integers), quantiles are decimal strings: no floating point in the document.
struct Baseline {
    static constexpr std::string_view format = "kakunin-baseline/v1";
    std::string agent_id;
    std::string currency;  ///< ISO 4217 code of every notional
    TimeNs observed_from_ns = 0;
    TimeNs observed_to_ns = 0;
    std::uint64_t orders = 0;
    std::string notional_p50;  ///< over every instrument
    std::string notional_p99;
    std::uint32_t sketch_relative_error_ppm = 0;  ///< quantiles are within this relative error
    std::vector<InstrumentBaseline> instruments;  ///< traded in observation
    std::vector<RegionBaseline> regions;          ///< seen in observation
    std::uint64_t hourly_mean_milli = 0;          ///< orders per clock hour
    std::uint64_t hourly_sd_milli = 0;
    std::uint64_t short_mean_milli = 0;  ///< orders per short window (policy.short_window_minutes)
    std::uint64_t short_sd_milli = 0;
    std::array<std::uint32_t, 168> hour_of_week_orders{};  ///< Monday 00:00 UTC = 0
    ScoringPolicy policy;
};

/// Canonical JSON (sorted members, no whitespace): what approvals hash. Integers and strings only.
std::string to_json(const Baseline& b);
/// Throws kakunin::Error (invalid_input) naming the member: unknown or missing members, wrong
/// types, a format other than kakunin-baseline/v1, bad decimals, an invalid policy.
Baseline parse_baseline_json(std::string_view json);
/// Lowercase hex SHA-256 of to_json(b).
std::string baseline_sha256_hex(const Baseline& b);

/// The exact bytes an approver signs (UTF-8):
///   "kakunin-baseline-approval/v1\n" agent "\n" version "\n" approver "\n" approved_at_ns "\n"
///   baseline_sha256 "\n"
std::string baseline_approval_text(const BaselineApproval& a);
/// A named person's approval of `b`, signed with their key (label "approver:" + name, created on
/// first use) in `kms`. `version` is the store's version (0 when not stored).
BaselineApproval approve_baseline(Kms& kms, const Baseline& b, std::string_view approver,
                                  TimeNs approved_at, std::uint64_t version = 0,
                                  bool automatic = false,
                                  KeyAlgorithm algorithm = KeyAlgorithm::ed25519);
/// Empty when the approval covers `b` (agent, hash) and its signature verifies under its own
/// public key; otherwise the reason. Never throws.
std::string check_baseline_approval(const BaselineApproval& a, const Baseline& b) noexcept;
std::string to_json(const BaselineApproval& a);
/// Throws kakunin::Error (invalid_input) naming the member.
BaselineApproval baseline_approval_from_json(std::string_view json);

/// A baseline with its approval: what the Guard enforces with.
struct ApprovedBaseline {
    Baseline baseline;
    BaselineApproval approval;
};

namespace detail {

/// Log-bucketed quantile sketch with relative error alpha (DDSketch, Masson, Rim and Lee,
/// VLDB 2019): bucket i holds values in (gamma^(i-1), gamma^i], gamma = (1+alpha)/(1-alpha),
/// and the estimate 2 gamma^i / (gamma + 1) is within alpha of every value in the bucket.
/// Values outside [min_value, max_value] are clamped into the end buckets. Fixed memory.
class QuantileSketch {
public:
    static constexpr double alpha = 0.01;
    static constexpr double min_value = 1e-9;
    static constexpr double max_value = 1e15;

    QuantileSketch();
    void add(double v) noexcept { add_to(bucket(v)); }
    /// The bucket that holds v: the same in every sketch (they share alpha and the range), so
    /// one value added to several sketches takes one logarithm.
    std::size_t bucket(double v) const noexcept { return index(v); }
    /// add() with the bucket already known (from bucket()).
    void add_to(std::size_t bucket) noexcept {
        m_counts[bucket] += 1;
        ++m_total;
    }
    std::uint64_t total() const noexcept { return m_total; }
    /// The q-quantile (0 <= q <= 1) by rank ceil(q * n); 0 when empty.
    double quantile(double q) const noexcept;

private:
    std::size_t index(double v) const noexcept {
        if (!(v > min_value)) return 0;
        if (v >= max_value) return m_counts.size() - 1;
        const double i = std::ceil((std::log(v) - m_log_min) * m_inv_log_gamma);
        const auto k = static_cast<std::size_t>(i < 0 ? 0 : i);
        return k < m_counts.size() ? k : m_counts.size() - 1;
    }
    std::vector<std::uint32_t> m_counts;
    std::uint64_t m_total = 0;
    double m_log_min, m_inv_log_gamma, m_gamma;
};

/// Running mean and variance of counts per fixed time bucket (Welford), with empty buckets
/// between observations counted as zeros.
class BucketRate {
public:
    explicit BucketRate(TimeNs width_ns) : m_width(width_ns) {}
    /// Starts counting at t (before the first add), so that quiet buckets from t on count.
    void begin(TimeNs t) noexcept {
        if (m_bucket == INT64_MIN) m_bucket = floor_div(t, m_width);
    }
    void add(TimeNs t) noexcept {
        // The open bucket's times, [m_open_from, m_open_from + m_width): no division (an order
        // usually falls in the bucket of the one before).
        if (t >= m_open_from &&
            static_cast<std::uint64_t>(t) - static_cast<std::uint64_t>(m_open_from) <
                static_cast<std::uint64_t>(m_width)) {
            ++m_count;
            return;
        }
        const std::int64_t b = floor_div(t, m_width);
        if (m_bucket == INT64_MIN) m_bucket = b;
        if (b > m_bucket) {
            push(static_cast<double>(m_count));
            // Empty buckets in between: zeros (bounded work: a closed form for k zeros).
            push_zeros(static_cast<std::uint64_t>(b - m_bucket - 1));
            m_bucket = b;
            m_count = 0;
        }
        if (b == m_bucket) {
            ++m_count;
            m_open_from = b * m_width;
        }
    }
    /// Mean and standard deviation over closed buckets (the open one is left out).
    double mean() const noexcept { return m_n == 0 ? 0.0 : m_mean; }
    double sd() const noexcept { return m_n < 2 ? 0.0 : std::sqrt(m_m2 / double(m_n - 1)); }
    std::uint64_t buckets() const noexcept { return m_n; }

private:
    void push(double x) noexcept {
        ++m_n;
        const double d = x - m_mean;
        m_mean += d / double(m_n);
        m_m2 += d * (x - m_mean);
    }
    void push_zeros(std::uint64_t k) noexcept {
        if (k == 0) return;
        // Merge a group of k zeros (mean 0, M2 0) with Chan et al.'s parallel formula.
        const double n = double(m_n), kk = double(k), total = n + kk;
        const double d = 0.0 - m_mean;
        m_m2 += d * d * n * kk / total;
        m_mean += d * kk / total;
        m_n += k;
    }
    TimeNs m_width;
    std::int64_t m_bucket = INT64_MIN;
    TimeNs m_open_from = INT64_MAX;  ///< m_bucket's first nanosecond, once an order fell in it
    std::uint64_t m_count = 0;
    std::uint64_t m_n = 0;
    double m_mean = 0.0, m_m2 = 0.0;
};

/// An order's notional as a double (scoring only; limits use exact decimals).
inline double notional_of(const Order& o) noexcept {
    return o.quantity.to_double() * o.price.to_double();
}

}  // namespace detail

/// Accumulates what the agent does, in memory fixed at construction (one sketch per scope
/// instrument, counters per scope region, 168 hour-of-week counters). Orders outside the scope
/// are not behaviour the agent may have and are ignored. Not thread-safe: the Guard calls it
/// under its lock.
class BaselineBuilder {
public:
    BaselineBuilder(const Scope& scope, std::string agent_id, ScoringPolicy policy = {});

    /// Counts one order the Guard allowed. Constant time, no allocation.
    void observe(const Order& o, TimeNs t) noexcept {
        const int i = m_instruments.find(o.instrument);
        if (i < 0) return;
        const int r = m_regions.find(o.region);
        if (m_first == 0 && m_count == 0) m_first = t;
        m_last = t;
        ++m_count;
        const std::size_t bucket = m_overall.bucket(detail::notional_of(o));
        m_overall.add_to(bucket);
        m_per_instrument[static_cast<std::size_t>(i)].add_to(bucket);
        if (r >= 0) ++m_region_orders[static_cast<std::size_t>(r)];
        ++m_hour_of_week[minute_of_week(t) / 60];
        m_hourly.add(t);
        m_short.add(t);
    }

    std::uint64_t orders() const noexcept { return m_count; }
    /// When observation began: the first observed order, or start() if called earlier.
    TimeNs started_at() const noexcept { return m_first; }
    /// Marks the start of observation (the Guard's start), so that quiet days count.
    void start(TimeNs t) noexcept {
        if (m_count != 0) return;
        m_first = t;
        m_hourly.begin(t);
        m_short.begin(t);
    }

    /// The learned baseline up to `now`. Throws kakunin::Error (invalid_state) before
    /// policy.min_observation_days have passed since started_at(), or with no orders.
    Baseline finalize(TimeNs now) const;

private:
    std::string m_agent;
    std::string m_currency;
    ScoringPolicy m_policy;
    detail::StringSet m_instruments, m_regions;
    detail::QuantileSketch m_overall;
    std::vector<detail::QuantileSketch> m_per_instrument;
    std::vector<std::uint64_t> m_region_orders;
    std::array<std::uint32_t, 168> m_hour_of_week{};
    detail::BucketRate m_hourly, m_short;
    TimeNs m_first = 0, m_last = 0;
    std::uint64_t m_count = 0;
};

namespace detail {

/// A Baseline compiled for the hot path, and the sliding state scoring keeps. score() is
/// constant time and allocation-free; not thread-safe (the Guard holds its lock).
class AnomalyScorer {
public:
    explicit AnomalyScorer(const Baseline& b);

    /// Scores one order at time t and updates the recent-activity state with it.
    void score(const Order& o, TimeNs t, Decision& d) noexcept;

    const ScoringPolicy& policy() const noexcept { return m_policy; }

private:
    double size_component(const Order& o, int instrument) const noexcept;
    void advance_minutes(std::int64_t minute) noexcept;

    ScoringPolicy m_policy;
    StringSet m_instruments, m_regions;
    std::vector<double> m_p99;    ///< per baseline instrument (0: use the overall)
    std::vector<double> m_share;  ///< baseline share of orders per instrument
    double m_overall_p99 = 0.0;
    double m_hour_ref = 1.0, m_short_ref = 1.0;  ///< mean + 3 sd, at least 1
    std::array<double, 168> m_time_of_day{};     ///< the component per hour of the week
    double m_weights[score_component_count];
    double m_warn = 0.75;  ///< a component at its warning ratio
    double m_log_size_ratio, m_log_freq_ratio, m_log_conc_ratio;

    // Recent activity: orders per minute over the last hour, recent instruments.
    std::array<std::uint32_t, 60> m_minute_counts{};
    std::int64_t m_minute = INT64_MIN;
    std::uint32_t m_hour_total = 0;
    std::vector<std::int32_t> m_recent;         ///< ring of instrument indices (-1: unseen)
    std::vector<std::uint32_t> m_recent_count;  ///< per instrument, in the ring
    std::size_t m_recent_next = 0, m_recent_filled = 0;
};

/// Maps a ratio to the baseline reference onto [0, 1]: 0 up to 1x, `warn` (0.75 by default) at
/// `ratio` x (log scale), rising to 1 at ratio^2 x. `log_ratio` is ln(ratio).
inline double excess(double x, double log_ratio, double warn) noexcept {
    if (!(x > 1.0)) return 0.0;
    const double l = std::log(x) / log_ratio;  // 1 at the warning ratio, 2 at its square
    const double c = l <= 1.0 ? warn * l : warn + (1.0 - warn) * (l - 1.0);
    return c < 1.0 ? c : 1.0;
}

}  // namespace detail

}  // namespace kakunin
