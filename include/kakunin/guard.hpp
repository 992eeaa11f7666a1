// kakunin/guard.hpp — the pre-trade gate. One Guard per agent; check() every order before it
// leaves the process.
//
//   kakunin::SystemClock clock;
//   kakunin::Guard guard(kakunin::GuardCredentials{
//       kakunin::AgentCertificate::load_file("agent.pem"),
//       kakunin::TrustAnchor::load_file("state/ca.pem"),
//       kakunin::CertificateRevocationList::load_file("state/crl.pem"), kms, agent_key}, clock);
//   kakunin::Decision d = guard.check(order);       // noexcept, no allocation
//   if (d.allowed()) venue.send(order);
//   guard.halt("desk kill switch", "J. Doe");       // rejects everything from here on
//
// A Guard built from a Scope alone enforces the limits without a certificate (replay,
// backtests). Thread safety: every member may be called from any threads at once. Once halt()
// has returned, no check() allows an order until resume().
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kakunin/audit_trail.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/detail/compiled_scope.hpp"
#include "kakunin/detail/firm_check.hpp"
#include "kakunin/detail/latency_sampler.hpp"
#include "kakunin/detail/order_limits.hpp"
#include "kakunin/detail/rate_window.hpp"
#include "kakunin/detail/spin_lock.hpp"
#include "kakunin/detail/string_set.hpp"
#include "kakunin/detail/wide_math.hpp"
#include "kakunin/error.hpp"
#include "kakunin/fwd.hpp"
#include "kakunin/human_steps.hpp"
#include "kakunin/kms.hpp"
#include "kakunin/lifecycle.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/order.hpp"
#include "kakunin/revocation.hpp"
#include "kakunin/scope.hpp"

namespace kakunin {

namespace detail {
class IncidentDesk;
}

/// Counters since construction; read with Guard::counters().
struct GuardCounters {
    std::uint64_t checks = 0;
    std::uint64_t allowed = 0;
    std::uint64_t rejected = 0;
    /// Rejected check() calls by reason, indexed as ReasonSet::index_of(code): a rejection
    /// with several reasons counts under each.
    std::array<std::uint64_t, all_reason_codes.size()> rejected_by_reason{};

    std::uint64_t rejected_for(ReasonCode r) const noexcept {
        return rejected_by_reason[static_cast<std::size_t>(ReasonSet::index_of(r))];
    }
};

/// check()'s latency as sampled (Guard::check_latency()): one call in
/// detail::LatencySampler::sample_every is timed, from its entry to its return.
struct CheckLatency {
    /// Upper bounds (inclusive, ns) of the buckets; counts has one more, for the rest.
    static constexpr const auto& bounds_ns = detail::latency_bounds_ns;
    std::array<std::uint64_t, detail::latency_bounds_ns.size() + 1> counts{};  ///< per bucket
    std::uint64_t sum_ns = 0;  ///< of the timed calls

    std::uint64_t count() const noexcept {
        std::uint64_t n = 0;
        for (std::uint64_t c : counts) n += c;
        return n;
    }
};

/// A change of the Guard's state, with who caused it (RTS 6 Art. 12 and 15(3)).
struct GuardEvent {
    enum class Kind { halted, resumed, revoked, rotated, crl_updated };
    Kind kind = Kind::halted;
    TimeNs at_ns = 0;
    std::string by;      ///< a named person, or "kakunin" / the feed for automatic changes
    std::string reason;  ///< why, or the new serial for rotations
    /// halted, revoked: the id of the halt (what a signed re-enable names); resumed: the id of
    /// the halt lifted. Unique across Guards, processes and restarts.
    std::string halt_id = {};
};

const char* to_string(GuardEvent::Kind k) noexcept;

/// What a halt hands to GuardOptions::on_cancel_all: the orders working at that moment, to
/// cancel at the venue (RTS 6 Art. 12: "cancel immediately any or all unexecuted orders").
struct CancelAll {
    std::string halt_id;  ///< the halt (GuardEvent::halt_id)
    std::string reason;
    std::string by;
    TimeNs at_ns = 0;
    std::vector<std::string> order_ids;  ///< sorted
};

/// The lifecycle figures now (Guard::lifecycle_state()); amounts as decimal strings.
struct LifecycleState {
    struct Position {
        std::string instrument;
        std::string position;  ///< net, base units (negative: short)
        std::string working_buy, working_sell;
    };
    std::vector<Position> positions;          ///< every instrument of the scope, in its order
    std::vector<std::string> working_orders;  ///< ids, sorted
    /// Notional filled in the current UTC day (money); kept only when the scope sets
    /// max_daily_notional or max_working_notional ("0" otherwise).
    std::string filled_today;
    /// Remaining notional of working orders (money); kept as filled_today is.
    std::string working_notional;
    /// Realised plus unrealised, the current UTC day (money); kept only with max_daily_loss.
    std::string daily_pnl;
    bool reduce_only = false;
};

/// What a Guard is doing now (Guard::status(); fleet state, docs/operations-fleet.md).
struct GuardStatus {
    enum class State : std::uint8_t { trading, reduce_only, halted, revoked };
    State state = State::trading;
    std::string agent_id;  ///< empty for a limits-only Guard
    /// The halt in force (halted, revoked): its id, who and why; automatic: only a signed
    /// re-enable lifts it.
    std::string halt_id, halt_by, halt_reason;
    bool automatic = false;
    GuardCounters counters;
    std::string serial;  ///< of the certificate in force ("" without one)
    TimeNs not_after_ns = 0;
};

const char* to_string(GuardStatus::State s) noexcept;

/// Everything a Guard needs to enforce an agent's certificate.
struct GuardCredentials {
    AgentCertificate certificate;
    TrustAnchor trust_anchor;
    /// The issuer's current CRL. Required: without it the revocation status is unknown and the
    /// Guard refuses to start. Refresh it with Guard::update_crl() before its nextUpdate.
    std::optional<CertificateRevocationList> crl;
    /// The Kms holding the agent's key; the Guard refuses a certificate for another key.
    std::shared_ptr<Kms> kms;
    KeyHandle key;
    std::vector<std::vector<std::uint8_t>> intermediates_der = {};
    /// Optional: revocations pushed by the CA (in-process, PostgreSQL ...).
    std::shared_ptr<RevocationFeed> revocation_feed = {};
    /// Optional: CRLs and renewed certificates published by the CA (in-process, PostgreSQL
    /// ...). The Guard subscribes at the end of its construction and, on the feed's thread,
    /// takes up each newer CRL of its issuer with update_crl() and each newer certificate of
    /// its agent and key with rotate(); what either refuses (a forged or older CRL, another
    /// key's certificate) goes to the error handler and changes nothing. The newest ones
    /// published before it started are taken up before the constructor returns.
    std::shared_ptr<CredentialFeed> credential_feed = {};
};

struct GuardOptions {
    /// How long before notAfter the error handler hears that the certificate needs renewing.
    std::chrono::seconds expiry_warning{2 * 3600};
    /// Record every decision and state change in a signed Merkle log (DESIGN §5). Needs
    /// credentials (the agent's key signs); a limits-only Guard ignores it.
    std::optional<AuditTrailOptions> audit;

    /// Behaviour (DESIGN §4). With an approved baseline every order is scored: at the policy's
    /// warning level it is allowed with verdict `warn` and an incident opens; at the revocation
    /// level it is rejected and the Guard halts in the same call, then revokes in the
    /// background. The approval must verify and cover the baseline (its SHA-256) and the agent,
    /// or the Guard refuses to start. Without a baseline the Guard observes (see observe).
    std::optional<ApprovedBaseline> baseline;
    /// Without a baseline: learn one (BaselineBuilder over allowed orders; Guard::observation()).
    bool observe = true;
    /// The policy a learned baseline will carry (weights, thresholds, observation minimum).
    ScoringPolicy observation_policy;
    /// Told about warnings, escalations, revocations, halts and closed incidents, from the
    /// incident thread (which runs whenever a notifier is set; docs/notifier.md).
    std::shared_ptr<Notifier> notifier;
    /// Revokes the certificate after an automatic halt (e.g. a LocalCa, or your CA's client).
    /// Without it the Guard still halts and reports that nobody revoked.
    std::shared_ptr<CertificateAuthority> authority;
    /// Asked for a replacement agent after an automatic revocation.
    std::function<void(const ReplacementRequest&)> on_replacement_request;
    /// Decides whether a signed statement's key belongs to the named person (e.g. the key
    /// labelled "approver:" + name in the firm's Kms). Empty string: yes; otherwise why not.
    /// Without it any valid signature is accepted and the key is recorded for the auditor.
    std::function<std::string(std::string_view person, std::string_view public_key_base64)>
        person_key_check;
    /// Working orders tracked when the scope sets lifecycle limits but no max_open_orders
    /// (0: default_working_order_capacity), or, set without lifecycle limits, tracking anyway.
    /// Preallocated; over capacity a new order is rejected (max_open_orders_exceeded).
    std::size_t working_order_capacity = 0;
    /// Every halt (manual, automatic, revocation feed, CRL, escalation, heartbeat) hands the
    /// ids of the working orders here, once the halt is in force, from the thread that halted
    /// (never with a Guard lock held: it may call cancel()). It must not throw; halt() returns
    /// after it did. Each call is recorded as guard.cancel_all.
    std::function<void(const CancelAll&)> on_cancel_all;
    /// The dead man's switch: with a timeout set, no heartbeat() within it halts the Guard and
    /// cancels every working order (cancel-on-disconnect). Starts at construction; needs the
    /// incident thread, or process_incidents() called, to fire while no order is checked.
    std::chrono::milliseconds heartbeat_timeout{0};
    /// With an audit trail: rebuild the state from the log at construction (docs/restart.md):
    /// halt and reduce-only mode with who and why, revocation, the day's totals, the rate
    /// windows, working orders and positions, the scorer's recent history, observation, and
    /// incidents with their deadlines. Off: the Guard starts afresh (and the log says nothing
    /// of what was in force; for tests and tools only).
    bool restore = true;
    /// Run incident handling on a background thread (default). Off: the caller drives it with
    /// Guard::process_incidents() (replays on simulated time do, for deterministic results).
    bool incident_thread = true;
    /// The threads the Guards of one process share (shared_threads.hpp): set, this Guard's
    /// audit records are written by its audit-writer thread (unless `audit->threads` names
    /// another) and its incidents handled on its incident thread, instead of threads of the
    /// Guard's own. The audit trail's watchdog stays the Guard's own.
    std::shared_ptr<SharedThreads> threads;
    /// People's steps taken elsewhere (kakunin incident ack|resolve|review, agent reenable,
    /// agent lift-reduce-only): e.g. a FileHumanStepFeed on the CA's state directory. The Guard
    /// subscribes at the end of its construction (the steps already recorded are applied
    /// before the constructor returns) and applies each step of its agent through
    /// acknowledge_incident(), resolve_incident(), review_incident(), reenable() and
    /// lift_reduce_only(), which record it; a step that no longer applies is skipped, any other
    /// failure goes to the error handler. Needs credentials (the agent); a limits-only Guard
    /// ignores it.
    std::shared_ptr<HumanStepFeed> human_steps;
    /// Desk and firm budgets shared with other Guards (kakunin/firm_limits.hpp, e.g. a
    /// PostgresFirmLimits): the Guard takes a lease of each at construction and gives back
    /// what it did not use when it is destroyed. Every new order and every amend that adds to a
    /// budget must fit in its lease (firm_limit_exceeded) while the lease is in force
    /// (firm_lease_expired). With a held budget (working_notional, open_orders) working orders and
    /// their notional are tracked (the default capacity applies when nothing sets one).
    std::shared_ptr<FirmLimitSource> firm_limits;
};

/// Receives warnings and backend failures. Called at most once per event, possibly from the
/// thread calling check(): must not block and must not throw.
using GuardErrorHandler = std::function<void(std::string_view message)>;

class Guard final : public RevocationListener,
                    private HumanStepListener,
                    private CredentialListener {
public:
    /// The reason check() records for the halt it makes at the revocation level (a restart
    /// reads it back: that halt revoked the certificate for keyCompromise).
    static constexpr std::string_view revocation_halt_reason =
        "automatic halt: anomaly score over the revocation threshold";

    /// Limits only: validates and compiles the scope; throws kakunin::Error (invalid_input) if
    /// it is invalid. The clock is borrowed and must outlive the Guard.
    Guard(const Scope& scope, const Clock& clock);
    /// Limits plus behaviour without a certificate (backtests): `options.baseline` scores, and
    /// observe learns; audit, authority and person checks need credentials and are ignored.
    Guard(const Scope& scope, const Clock& clock, GuardOptions options);

    /// Validates the certificate at the clock's time (chain to the anchor, signatures,
    /// validity, the CRL, Kakunin's critical scope extension, and that the Kms key is the
    /// certificate's key), then enforces its scope. Throws kakunin::Error (unauthorised) naming
    /// the reason if anything is wrong: the Guard never starts on doubtful authority.
    Guard(GuardCredentials credentials, const Clock& clock, GuardOptions options = {});

    ~Guard() override;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

    /// Decides on one order. Never throws, never allocates, reads the clock once. Every reason
    /// that applies is reported. Stateful limits (order and message rates, daily notional, the
    /// lifecycle limits) are updated atomically with the verdict, so concurrent callers see one
    /// consistent order of checks. With lifecycle limits in the scope (docs/lifecycle.md) the
    /// order needs a client_order_id, and once allowed it is working until the venue reports
    /// that it stopped (on_execution).
    Decision check(const Order& order) noexcept {
        const std::int64_t timed_from =
            m_check_latency.tick() ? detail::LatencySampler::now_ns() : 0;
        Decision d;
        AfterLock after;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            // 1. gate: the time, the authority in force, halt and the audit trail
            const TimeNs t = gate(d, after);
            // 2. scope: what the certificate allows, order by order
            int instrument, counterparty;
            d.reasons.merge(
                m_authority->compiled.evaluate(order, d.ts_ns, instrument, counterparty));
            // 3. limits: the stateful ones, counted for every order checked
            if (m_order_rate.exceeded(t)) d.reasons.add(ReasonCode::order_rate_exceeded);
            m_order_rate.count(t);
            detail::OrderLimits::NewPlan plan;
            d.reasons.merge(m_limits->evaluate_new(order, instrument, counterparty, t, plan));
            m_limits->count_message(t);
            detail::FirmCheck::Plan firm;
            if (m_firm.any())
                d.reasons.merge(m_firm.evaluate(
                    quote_of(order.instrument),
                    plan.notional != 0 ? plan.notional : detail::FirmCheck::notional_of(order),
                    m_limits->working_notional(), m_limits->working_count(), 1, t, firm));
            // 4. score: behaviour against the approved baseline (may halt in this call)
            const bool revoke_now = score(order, t, d);
            // 5. decide: the verdict, and what an allowed order commits
            if (decide(d)) {
                m_limits->commit_new(order, plan, t);
                if (m_firm.any()) commit_firm(firm);
                if (m_builder) m_builder->observe(order, t);
            }
            // 6. hand-off: the audit record and the incident desk
            if (m_audit) m_audit->push_order(order, d);
            hand_off_anomaly(order, d, revoke_now);
        }
        after.deliver(*this);
        if (timed_from != 0) m_check_latency.record(detail::LatencySampler::now_ns() - timed_from);
        return d;
    }

    /// Decides on an amend of a working order (its new total quantity and/or price), like
    /// check(): noexcept, no allocation, every reason. Refused for what it adds to a limit, for
    /// a halt, revocation or the certificate's times, and for the scope's order-size, money,
    /// collar and trading-hours limits on its new terms; unknown_order_id if the id is not
    /// working. Counts toward max_messages_per_second. Not scored (scoring judges new orders).
    Decision amend(const Amend& a) noexcept {
        Decision d;
        AfterLock after;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            const TimeNs t = gate(d, after);
            detail::OrderLimits::AmendPlan plan;
            d.reasons.merge(m_limits->evaluate_amend(a, t, plan));
            detail::FirmCheck::Plan firm;
            if (plan.order >= 0) {
                const auto w = m_limits->working_order(a.client_order_id);
                d.reasons.merge(m_authority->compiled.evaluate_amend(
                    w->instrument, detail::decimal_of_units(plan.latest_quantity, 18),
                    plan.latest_price, a.reference_price, a.price.has_value(), d.ts_ns));
                if (m_firm.any()) {
                    const int128 added = m_limits->tracks_notional()
                                             ? plan.notional - w->reserved_notional
                                             : detail::FirmCheck::amend_notional(
                                                   plan.reserved_quantity, plan.price_high,
                                                   w->reserved_quantity, w->latest_price);
                    d.reasons.merge(m_firm.evaluate(
                        m_authority->compiled.instrument_name(w->instrument), added > 0 ? added : 0,
                        m_limits->working_notional(), m_limits->working_count(), 0, t, firm));
                }
            }
            m_limits->count_message(t);
            if (decide(d, false)) {
                m_limits->commit_amend(plan, t);
                if (m_firm.any()) commit_firm(firm);
            }
            if (m_audit) m_audit->push_amend(a, d);
        }
        after.deliver(*this);
        return d;
    }

    /// Decides on a cancel request: never refused for limits, halt or revocation (cancelling
    /// is what a halt asks for); only an id that is not working is (unknown_order_id). The
    /// order keeps its exposure until the venue reports it cancelled. Counts as a message.
    Decision cancel(const Cancel& c) noexcept {
        Decision d;
        AfterLock after;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            const TimeNs t = advance_time(d.ts_ns, after);
            d.reasons = m_limits->evaluate_cancel(c);
            m_limits->count_message(t);
            if (decide(d, false)) m_limits->commit_cancel(c);
            if (m_audit) m_audit->push_cancel(c, d);
        }
        after.deliver(*this);
        return d;
    }

    /// Applies a venue report (ack, reject, fill, cancelled, expired, mark): noexcept, no
    /// allocation. Fills are facts: a fill for an id that is not working still moves the
    /// position, and the error handler hears of it. A fill or mark that takes the day's loss to
    /// max_daily_loss puts the Guard in reduce-only mode (recorded). Every report is recorded.
    ExecutionResult on_execution(const ExecutionReport& e) noexcept {
        ExecutionResult r;
        AfterLock after;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            TimeNs ts = 0;
            const TimeNs t = advance_time(ts, after);
            const auto w = e.type == ExecutionType::mark
                               ? std::nullopt
                               : m_limits->working_order(e.client_order_id);
            r = m_limits->apply(e, t);
            if (m_firm.any()) hold_firm();
            if (m_audit) {
                const std::string_view instrument =
                    w ? m_authority->compiled.instrument_name(w->instrument) : e.instrument;
                m_audit->push_execution(ts, e, r, instrument, w ? w->side : e.side);
                if (r.reduce_only_entered)
                    m_audit->push_state(
                        ts, "guard.reduce_only", "kakunin",
                        r.problem != nullptr ? r.problem : "daily loss reached max_daily_loss");
            }
            after.problem = r.problem;
            if (!m_limits->tracking()) {  // said once: the Guard tracks nothing to apply it to
                if (m_untracked_report_said) after.problem = nullptr;
                m_untracked_report_said = true;
            }
            after.reduce_only_entered = r.reduce_only_entered;
        }
        after.deliver(*this);
        return r;
    }

    /// Reduce-only mode (docs/lifecycle.md): from the moment this returns only orders that
    /// reduce the position pass, and cancels. Recorded with who and why. Entered automatically
    /// when the day's loss reaches max_daily_loss. Throws kakunin::Error (invalid_input) if
    /// `by` or `reason` is empty, invalid_state if the scope has no lifecycle tracking.
    void reduce_only(std::string_view reason, std::string_view by);
    /// Lifts reduce-only mode; a named person decides. Throws kakunin::Error (invalid_input)
    /// for an empty `by`, invalid_state if the mode is not in force. Recorded.
    void lift_reduce_only(std::string_view by);
    bool reduce_only_in_force() const noexcept {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        return m_limits->reduce_only();
    }

    /// The dead man's switch (GuardOptions::heartbeat_timeout): the strategy says it is alive.
    /// With no heartbeat() within the timeout the Guard halts and cancels every working order
    /// (cancel-on-disconnect). noexcept, no allocation.
    void heartbeat() noexcept {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        const TimeNs now = m_clock.now_ns();
        heartbeat_observe(now);
        m_since_heartbeat_ns = 0;
        m_last_heartbeat_ns = now;
    }

    /// The ids of the orders working now (sorted).
    std::vector<std::string> working_orders() const;
    /// Positions, working orders and the day's figures now (decimal strings, trailing zeros
    /// trimmed), e.g. for `kakunin replay --state-out`.
    LifecycleState lifecycle_state() const;

    /// Kill switch (RTS 6 Art. 12): from the moment this returns, every check() rejects with
    /// `halted`. `by` names the person or system; both strings are kept. Returns the halt's id
    /// (also in events(), the audit record and the `halt` notification), which a signed
    /// re-enable must name. A halt while halted supersedes the earlier one.
    std::string halt(std::string_view reason, std::string_view by);

    /// Re-enables a Guard halted by a person (RTS 6 Art. 15(3): a designated person decides).
    /// Throws kakunin::Error: invalid_input if `by` is empty; invalid_state if the Guard is not
    /// halted, its certificate is revoked (rotate() to a new certificate first; never after a
    /// keyCompromise), or a halt since the last re-enable was automatic (that needs reenable(),
    /// a signed statement).
    void resume(std::string_view by);

    /// Re-enables after any halt, on a named person's signed statement (sign_reenable) naming
    /// the halt in force (current_halt()). Throws kakunin::Error: unauthorised if the signature
    /// or the person's key is refused, or the statement names another halt (an earlier one,
    /// one already lifted, or one of another Guard: stale or reused statements lift nothing);
    /// invalid_state as resume().
    void reenable(const Reenable& statement);

    /// The halt in force (kind halted or revoked, with its id), or nullopt when running.
    std::optional<GuardEvent> current_halt() const;

    // ---- behaviour and incidents (Incident, IncidentReview: include kakunin/incident.hpp) ----

    /// Every incident so far, oldest first.
    std::vector<Incident> incidents() const;
    /// A person has seen the incident and is on it (stops the escalation timer).
    void acknowledge_incident(std::string_view incident_id, std::string_view by,
                              std::string_view note);
    /// Closes an open or acknowledged incident.
    void resolve_incident(std::string_view incident_id, std::string_view by, std::string_view note);
    /// Signs off the root cause of a revocation incident (revoked -> reviewed).
    void review_incident(const IncidentReview& review);
    /// Handles queued anomalies and due escalations now (on the caller's thread); with
    /// GuardOptions::incident_thread off this is how incidents advance. Returns when done.
    void process_incidents();
    /// Waits until the incident thread has handled everything queued (tests, shutdown).
    bool wait_incidents(std::chrono::milliseconds timeout);

    /// What observation has learned so far (a copy); nullopt when the Guard enforces a
    /// baseline or does not observe.
    std::optional<BaselineBuilder> observation() const;
    /// Starts scoring against an approved baseline without a restart (after observation):
    /// validated exactly as GuardOptions::baseline at construction (throws kakunin::Error
    /// unauthorised and changes nothing if it is refused); observation stops. Recorded as
    /// baseline.approved in the audit trail.
    void enforce_baseline(const ApprovedBaseline& approved);
    /// True when orders are scored against an approved baseline.
    bool enforcing_baseline() const noexcept {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        return m_scorer != nullptr;
    }

    /// Swaps in a renewed certificate for the same agent without a restart. It is validated
    /// first exactly as at construction; check() sees the old or the new authority, never a mix.
    /// Rotation never goes back: the certificate must be newer than the one in force (a
    /// notBefore not earlier, and a serial this Guard has never held). Once a certificate
    /// carrying this Guard's key was revoked for keyCompromise (or the Guard revoked it
    /// automatically), every rotation is refused and the Guard stays revoked. Throws
    /// kakunin::Error (unauthorised / invalid_input) and keeps the old one on failure.
    void rotate(const AgentCertificate& renewed);

    /// Takes a newer CRL from the issuer. If it lists the certificate, the Guard halts as
    /// revoked. Throws kakunin::Error (unauthorised) and keeps the old CRL if it does not verify,
    /// or if it is older than the one in force (an earlier thisUpdate, or the same and a lower
    /// CRL number): the revocation status never goes back.
    void update_crl(const CertificateRevocationList& crl);

    /// RevocationListener: a pushed revocation of this certificate halts the Guard before its
    /// next check; so does a keyCompromise revocation of any certificate this Guard held before
    /// (they all carry its key). Serials compare canonically (hex case, leading zeros).
    void on_revocation(const Revocation& revocation) noexcept override;

    /// Also told, once per step, when the clock steps back: limits then keep the latest time
    /// seen until the clock passes it again (nothing resets or loosens).
    void set_error_handler(GuardErrorHandler handler);

    bool halted() const noexcept { return m_halted.load(std::memory_order_acquire); }
    bool revoked() const noexcept;

    /// Every halt, resume, revocation, rotation and CRL update so far, oldest first.
    std::vector<GuardEvent> events() const;

    GuardCounters counters() const noexcept {
        GuardCounters c;
        std::lock_guard<detail::SpinLock> lock(m_lock);
        c.checks = m_counters.checks;
        c.allowed = m_counters.allowed;
        c.rejected = m_counters.rejected;
        c.rejected_by_reason = m_rejected_by_reason;
        return c;
    }
    /// check()'s sampled latency histogram (from any thread; no lock).
    CheckLatency check_latency() const noexcept {
        CheckLatency l;
        m_check_latency.read(l.counts, l.sum_ns);
        return l;
    }
    /// The clock the Guard reads (e.g. to judge the certificate's time to expiry as it does).
    const Clock& clock() const noexcept { return m_clock; }

    /// The state, the halt in force, the counters and the certificate, read together under
    /// the Guard's locks (allocates: off the hot path).
    GuardStatus status() const;

    /// Lifts the halt in force only if it is `halt_id` (a person's manual halt, e.g. the fleet
    /// halt): `by` names the person, `reason` is recorded with the resume. Returns false and
    /// changes nothing when another halt is in force (a later halt, an automatic one or a
    /// revocation) or none is. Throws kakunin::Error (invalid_input) for an empty `by`.
    bool resume_halt(std::string_view halt_id, std::string_view by, std::string_view reason);

    /// The audit trail, or null when the Guard records nothing.
    const AuditTrail* audit() const noexcept { return m_audit.get(); }

    /// The scope in force (a copy: rotate() may replace it).
    Scope scope() const;
    /// The certificate in force; empty for a limits-only Guard.
    std::optional<AgentCertificate> certificate() const;

private:
    /// What a hot call found that must be handled after the spin lock is released: reports to
    /// the error handler, and a lapsed heartbeat for the desk. Handling allocates nothing.
    struct AfterLock {
        bool stepped = false;  ///< the clock stepped back in this call (from stepped_from)
        TimeNs stepped_from = 0, stepped_to = 0;
        bool warn_expiry = false;
        bool heartbeat_lapsed = false;
        bool reduce_only_entered = false;
        const char* problem = nullptr;     ///< an execution report's problem (static text)
        const char* unrecorded = nullptr;  ///< a state change the full queue could not take
        void deliver(Guard& g) noexcept {
            if (stepped) g.report_clock_step(stepped_from, stepped_to);
            if (warn_expiry) g.report_expiry();
            if (problem != nullptr) g.report(problem);
            if (unrecorded != nullptr) g.report(unrecorded);
            if (reduce_only_entered && problem == nullptr)
                g.report("reduce-only mode entered: the day's loss reached max_daily_loss");
            if (heartbeat_lapsed) g.wake_desk();
        }
    };

    /// Reads the clock (hot lock held). Time-keyed state (rate windows, daily totals, scoring,
    /// expiry) never goes back: after a backward step it keeps the latest time seen until the
    /// clock passes it again. Writes the call's own time to `ts`; returns the forward-only time.
    TimeNs advance_time(TimeNs& ts, AfterLock& after) noexcept {
        ts = m_clock.now_ns();  // read under the lock: concurrent calls' times follow their order
        if (ts < m_last_ns) {   // a step back: reported once, however far it went
            after.stepped = true;
            after.stepped_from = m_last_ns;
            after.stepped_to = ts;
        }
        m_last_ns = ts;
        if (ts > m_latest_ns) m_latest_ns = ts;
        const TimeNs t = m_latest_ns;
        heartbeat_observe(ts);
        if (m_heartbeat_ns > 0 && m_since_heartbeat_ns > m_heartbeat_ns &&
            !m_halted.load(std::memory_order_relaxed)) {
            // The dead man's switch: halted in this call; the desk records it and cancels.
            m_halted.store(true, std::memory_order_release);
            m_heartbeat_lapsed = true;
            after.heartbeat_lapsed = true;
        }
        return t;
    }

    /// The dead man's switch measures time since the last heartbeat as the sum of the clock's
    /// forward steps between readings (hot lock held): a clock stepping back neither blinds it
    /// for the length of the step nor resets it; a reading far ahead counts (fail closed).
    void heartbeat_observe(TimeNs raw) noexcept {
        if (m_heartbeat_ns == 0) return;
        if (raw > m_heartbeat_seen_ns &&
            __builtin_add_overflow(m_since_heartbeat_ns, raw - m_heartbeat_seen_ns,
                                   &m_since_heartbeat_ns))
            m_since_heartbeat_ns = INT64_MAX;
        m_heartbeat_seen_ns = raw;
    }

    /// Step 1 of a request: the time, and every reason of the authority in force, the halt and
    /// the audit trail (hot lock held). Returns the forward-only time.
    TimeNs gate(Decision& d, AfterLock& after) noexcept {
        const TimeNs t = advance_time(d.ts_ns, after);
        const std::int64_t second = floor_div(d.ts_ns, 1'000'000'000);
        const std::int64_t latest_second = floor_div(t, 1'000'000'000);
        const detail::Authority& a = *m_authority;
        if (second < a.not_before_s) d.reasons.add(ReasonCode::certificate_not_yet_valid);
        if (latest_second > a.not_after_s) d.reasons.add(ReasonCode::certificate_expired);
        if (latest_second > a.crl_next_update_s) d.reasons.add(ReasonCode::revocation_status_stale);
        if (m_revoked) d.reasons.add(ReasonCode::certificate_revoked);
        if (m_halted.load(std::memory_order_relaxed)) d.reasons.add(ReasonCode::halted);
        if (m_audit && !m_audit->accepting()) d.reasons.add(ReasonCode::audit_unavailable);
        if (latest_second >= a.expiry_warning_s && !m_expiry_warned) {
            m_expiry_warned = true;
            after.warn_expiry = true;
        }
        return t;
    }

    /// Step 4 of check(): scores the order; at the revocation level halts in this very call
    /// (no order from any thread is allowed after it). True if it did.
    bool score(const Order& order, TimeNs t, Decision& d) noexcept {
        if (!m_scorer) return false;
        m_scorer->score(order, t, d);
        if (d.score_ppm < m_scorer->policy().revoke_ppm || m_halted.load(std::memory_order_relaxed))
            return false;
        d.reasons.add(ReasonCode::anomaly_revocation);
        m_halted.store(true, std::memory_order_release);
        m_revoked = true;
        m_auto_halted = true;
        m_key_compromised = true;  // the revocation is for keyCompromise
        return true;
    }

    /// Step 5: the verdict from the reasons and the score; a new order's is counted
    /// (GuardCounters count check() calls). True if allowed.
    bool decide(Decision& d, bool counted = true) noexcept {
        if (counted) ++m_counters.checks;
        if (!d.reasons.empty()) {
            d.verdict = Verdict::reject;
            if (counted) {
                ++m_counters.rejected;
                for (std::uint64_t b = d.reasons.bits(); b != 0; b &= b - 1)
                    ++m_rejected_by_reason[static_cast<std::size_t>(__builtin_ctzll(b))];
            }
            return false;
        }
        d.verdict = Verdict::allow;
        if (m_scorer && d.score_ppm >= m_scorer->policy().warn_ppm) {
            d.verdict = Verdict::warn;
            d.reasons.add(ReasonCode::anomaly_warning);
        }
        if (counted) ++m_counters.allowed;
        return true;
    }

    /// Step 6 of check(), for the incident desk: an automatic halt, or a warning-level score.
    void hand_off_anomaly(const Order& order, const Decision& d, bool revoke_now) noexcept {
        if (revoke_now) {
            if (m_audit)
                m_audit->push_state(d.ts_ns, "guard.halted", "kakunin", revocation_halt_reason);
            push_anomaly(order, d);
        } else if (m_scorer && d.score_ppm >= m_scorer->policy().warn_ppm &&
                   !d.reasons.contains(ReasonCode::halted)) {
            push_anomaly(order, d);
        }
    }

    /// Wakes the incident thread (a lapsed heartbeat is recorded and cancelled there).
    void wake_desk() noexcept;
    /// Records a lapsed heartbeat's halt (cold; the desk and process_incidents call it).
    void poll_heartbeat() noexcept;
    /// The same with m_admin held (resume() and reenable() check first, under the same lock).
    void poll_heartbeat_locked() noexcept;
    /// Hands every halt's working ids to GuardOptions::on_cancel_all and records
    /// guard.cancel_all; called with no lock held at the end of every path that halts. Returns
    /// when the halts queued so far are delivered (at once when re-entered from the callback).
    void deliver_cancels() noexcept;
    /// The heartbeat starts again from now (a person re-enabled the Guard).
    void rearm_heartbeat() noexcept;
    void rearm_heartbeat_locked() noexcept;  ///< the hot lock held
    void start_heartbeat();
    void update_crl_locked(const CertificateRevocationList& crl);
    /// Firm-wide budgets (options.firm_limits): leases taken at construction (guard.cpp), the
    /// spent ones consumed by what is allowed, the held ones at the working orders' level.
    void attach_firm(std::string_view agent_id);
    bool firm_tracking() const noexcept {
        return m_options.firm_limits && m_options.firm_limits->holds_working_orders();
    }
    void commit_firm(const detail::FirmCheck::Plan& plan) noexcept {
        m_firm.commit(plan);
        hold_firm();
    }
    void hold_firm() noexcept {
        m_firm.hold(m_limits->working_notional(), m_limits->working_count());
    }
    void on_revocation_locked(const Revocation& revocation) noexcept;
    /// HumanStepListener (GuardOptions::human_steps; src/guard/human_steps.cpp).
    void on_human_step(const HumanStep& step) noexcept override;
    /// CredentialListener (GuardCredentials::credential_feed; src/guard/credentials.cpp).
    void on_crl(const CertificateRevocationList& crl,
                const CredentialUpdate& update) noexcept override;
    void on_certificate(const AgentCertificate& certificate,
                        const CredentialUpdate& update) noexcept override;

    void report(std::string_view message) noexcept;
    void report_expiry() noexcept;
    void report_clock_step(TimeNs from, TimeNs to) noexcept;
    /// Appends to the history (m_admin held); audits it unless `audited` (check() did). A halt
    /// or revocation gets a new halt id, becomes the halt in force and is notified; returns the
    /// id ("" for other kinds).
    /// `supersede` false: a halt recorded while an automatic halt is in force; that one stays
    /// the halt a re-enable must name (a manual halt cannot turn it into one a person lifts).
    std::string record(GuardEvent event, bool audited = false, bool supersede = true) noexcept;
    /// Queues the working ids for on_cancel_all (deliver_cancels() hands them over).
    void queue_cancel_list(const GuardEvent& halt) noexcept;
    /// The halt in force is lifted (m_admin held): its id can never be lifted again.
    void lift_halt(const std::string& by) noexcept;
    std::string new_id(std::string_view prefix, TimeNs at, std::uint64_t n) const;
    CertificateCheck verify(const AgentCertificate& cert,
                            const CertificateRevocationList* crl) const;
    std::unique_ptr<detail::Authority> make_authority(const AgentCertificate& cert,
                                                      const CertificateRevocationList& crl) const;
    /// Swaps in a new authority (and, for a renewed scope, the order limits that adopted the
    /// old state: the old engine is left in `limits`, freed by the caller off the hot lock).
    void install(std::unique_ptr<detail::Authority> next, bool new_serial,
                 std::unique_ptr<detail::OrderLimits>* limits = nullptr,
                 const std::vector<std::string>* instruments = nullptr);
    /// `in_force`: the automatic halt that stays the one to lift (a halt made on top of it).
    void audit_state(const GuardEvent& event, const std::string& in_force = {}) noexcept;
    /// Baseline or observation, and the desk; records nothing (the trail may not exist yet).
    /// Returns the baseline.approved payload ("" without a baseline) for announce_behaviour().
    std::string setup_behaviour_quiet(const std::string& agent_id);
    /// Records the baseline in force and starts the desk's thread where one is needed.
    void announce_behaviour(const std::string& baseline_payload);
    /// Validates and installs an approved baseline; returns the baseline.approved payload.
    std::string install_baseline(const ApprovedBaseline& approved);

    // ---- restart (restore.cpp): the state rebuilt from the log at construction ----
    struct Restore {
        std::string fingerprint;               ///< of the certificate in force now
        std::vector<std::uint8_t> public_key;  ///< the agent's key now (SPKI DER)
        bool first = true;                     ///< no record seen yet
        TimeNs latest = INT64_MIN;             ///< the forward-only time the hot path had reached
        bool scored = false;                   ///< orders from here on were scored (a baseline)
        std::vector<std::string> cancelled;    ///< halts whose cancel list is in the log
    };
    std::unique_ptr<Restore> m_restore;  ///< during construction only
    /// The latest reduce-only entry the log held at construction (a history lift before it
    /// does not apply).
    TimeNs m_restored_reduce_only_ns = INT64_MIN;
    void restore_record(const OpenedRecord& record);
    void finish_restore();
    void audit_event(TimeNs at, std::string_view event, std::string payload) noexcept;
    void setup_behaviour(const std::string& agent_id);

    /// Hands an anomaly to the incident desk's ring (hot lock held; no allocation, no lock).
    void push_anomaly(const Order& o, const Decision& d) noexcept;
    /// The incident desk and its hooks into this Guard (setup_behaviour()).
    void make_desk(const std::string& agent_id);
    void require_person(std::string_view person, std::string_view key) const;

    const Clock& m_clock;
    GuardOptions m_options;

    // Hot state, guarded by m_lock.
    mutable detail::SpinLock m_lock;
    std::unique_ptr<const detail::Authority> m_authority;
    std::atomic<bool> m_halted{false};
    bool m_revoked = false;
    bool m_expiry_warned = false;
    detail::RateWindow m_order_rate;  ///< max_orders_per_second, over new orders checked
    /// The stateful limits: daily notional, and with lifecycle limits working orders,
    /// positions, exposure, message rate, daily loss and reduce-only mode.
    std::unique_ptr<detail::OrderLimits> m_limits;
    detail::FirmCheck m_firm;              ///< leases of firm-wide budgets (options.firm_limits)
    TimeNs m_latest_ns = INT64_MIN;        ///< the latest time a hot call has seen
    TimeNs m_last_ns = INT64_MIN;          ///< the time of the previous hot call
    TimeNs m_heartbeat_ns = 0;             ///< GuardOptions::heartbeat_timeout; 0: off
    TimeNs m_heartbeat_seen_ns = 0;        ///< the clock's latest reading the switch has seen
    TimeNs m_since_heartbeat_ns = 0;       ///< forward clock time since the last heartbeat()
    TimeNs m_last_heartbeat_ns = 0;        ///< when the last heartbeat() came (for the record)
    bool m_heartbeat_lapsed = false;       ///< halted for it; the desk has still to record it
    bool m_untracked_report_said = false;  ///< a report without tracking reached the handler
    struct Counts {
        std::uint64_t checks = 0, allowed = 0, rejected = 0;
    } m_counters;  ///< GuardCounters' first three (the rest at the end, off the lines check reads)
    bool m_auto_halted = false;      ///< a halt was automatic: only reenable() lifts it
    bool m_key_compromised = false;  ///< revoked for keyCompromise: stays revoked
    std::unique_ptr<detail::AnomalyScorer> m_scorer;
    std::unique_ptr<BaselineBuilder> m_builder;

    // Cold state, guarded by m_admin: credentials for re-validation, history, the handler.
    mutable std::mutex m_admin;
    Scope m_scope;
    std::optional<AgentCertificate> m_certificate;
    std::optional<TrustAnchor> m_anchor;
    std::optional<CertificateRevocationList> m_crl;
    std::shared_ptr<Kms> m_kms;
    KeyHandle m_key;
    std::vector<std::vector<std::uint8_t>> m_intermediates;
    std::shared_ptr<RevocationFeed> m_feed;
    std::shared_ptr<CredentialFeed> m_credential_feed;
    std::vector<GuardEvent> m_events;
    std::vector<std::string> m_held_serials;  ///< canonical serials rotated away from
    std::string m_instance;                   ///< random, in every halt and incident id
    std::uint64_t m_halts = 0;                ///< halts so far (in the halt ids)
    std::optional<GuardEvent> m_halt;         ///< the halt in force
    struct PastHalt {
        std::string id;
        std::string fate;  ///< "lifted at ... by ..." or "superseded by halt ..."
    };
    std::vector<PastHalt> m_past_halts;
    mutable std::mutex m_handler_mutex;
    GuardErrorHandler m_handler;

    std::string m_agent_id;  ///< set once, in setup_behaviour()

    // Halts whose working ids are still to be handed to on_cancel_all (guard.cpp).
    struct CancelQueue;
    std::unique_ptr<CancelQueue> m_cancels;

    // Destroyed right after the desk, so the writer drains while everything it reads exists.
    std::unique_ptr<AuditTrail> m_audit;
    /// Incidents, notifications and their thread, behind their own locks (taken before
    /// m_admin, never inside m_lock); check() reaches it only through push_anomaly(). Last: if
    /// a constructor throws, its thread stops before anything it calls into is gone.
    std::unique_ptr<detail::IncidentDesk> m_desk;

    // Hot, but placed after everything else so that the members every check reads keep their
    // cache lines (measured: among them they cost check() 14 %). Trivially destructible, so
    // the desk above still stops before anything it calls into is gone.
    /// Rejected checks by reason (GuardCounters::rejected_by_reason), guarded by m_lock.
    std::array<std::uint64_t, all_reason_codes.size()> m_rejected_by_reason{};
    detail::LatencySampler m_check_latency;  ///< check() only; its own atomics, no lock
};

}  // namespace kakunin
