// The Guard's cold paths: construction from credentials, rotation, CRL updates, revocation,
// halt and resume. The hot path, check(), is inline in include/kakunin/guard.hpp.
#include "kakunin/guard.hpp"

#include <botan/system_rng.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "crypto/encoding.hpp"
#include "guard/incident_desk.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/replay.hpp"

namespace kakunin {

const char* to_string(GuardEvent::Kind k) noexcept {
    switch (k) {
        case GuardEvent::Kind::halted: return "halted";
        case GuardEvent::Kind::resumed: return "resumed";
        case GuardEvent::Kind::revoked: return "revoked";
        case GuardEvent::Kind::rotated: return "rotated";
        case GuardEvent::Kind::crl_updated: return "crl_updated";
    }
    return "unknown";
}

namespace {
constexpr std::int64_t seconds_of(TimeNs t) { return floor_div(t, 1'000'000'000); }

/// A revocation reason whose first word (as the CA reads it into the CRL's reasonCode) says
/// the key is compromised: keyCompromise or cACompromise.
bool compromise_reason(std::string_view reason) {
    std::string word;
    for (char c : reason) {
        if (c == ':' || c == ' ' || c == ',') break;
        if (c != '_' && c != '-')
            word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return word == "keycompromise" || word == "cacompromise";
}

/// 64 random bits, in every halt and incident id: unique across Guards, processes, restarts.
std::string instance_tag() {
    std::uint8_t bytes[8];
    Botan::system_rng().randomize(bytes, sizeof bytes);
    return crypto::to_hex(bytes, sizeof bytes);
}

std::string dump(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// An amount in 10^-18 units as a decimal string, trailing zeros trimmed ("0" for zero).
std::string units_text(int128 v) {
    const bool negative = v < 0;
    detail::u128 u =
        negative ? static_cast<detail::u128>(-(v + 1)) + 1 : static_cast<detail::u128>(v);
    char digits[48];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + static_cast<int>(u % 10));
        u /= 10;
    } while (u != 0 || n <= 18);
    std::string out = negative ? "-" : "";
    for (int i = n - 1; i >= 18; --i) out.push_back(digits[i]);
    int last = 0;  // the lowest non-zero fraction digit
    while (last < 18 && digits[last] == '0') ++last;
    if (last < 18) {
        out.push_back('.');
        for (int i = 17; i >= last; --i) out.push_back(digits[i]);
    }
    return out;
}

/// What the stateful limits compile from a scope: a renewed certificate that changes it
/// cannot be taken over by the same engine.
std::string engine_view(const Scope& s) {
    Scope v;
    v.instruments = s.instruments;
    v.counterparties = s.counterparties;
    v.limits.max_daily_notional = s.limits.max_daily_notional;
    v.limits.max_position = s.limits.max_position;
    v.limits.max_open_orders = s.limits.max_open_orders;
    v.limits.max_working_notional = s.limits.max_working_notional;
    v.limits.max_messages_per_second = s.limits.max_messages_per_second;
    v.limits.max_daily_loss = s.limits.max_daily_loss;
    return to_json(v);
}

/// A working order's id, copied under the hot lock without allocating.
struct IdSlot {
    char text[max_order_id_length];
    std::uint8_t length;
};
}  // namespace

/// Halts whose working ids are still to be handed to on_cancel_all, in order.
struct Guard::CancelQueue {
    std::mutex mutex;
    std::condition_variable done;
    std::vector<CancelAll> pending;
    std::uint64_t queued = 0, delivered = 0;
    std::thread::id deliverer;  ///< the thread delivering now; none when idle
};

Guard::Guard(const Scope& scope, const Clock& clock)
    : Guard(scope, clock, [] {
          GuardOptions o;
          o.observe = false;
          return o;
      }()) {}

Guard::Guard(const Scope& scope, const Clock& clock, GuardOptions options)
    : m_clock(clock),
      m_options(std::move(options)),
      m_authority(std::make_unique<detail::Authority>(scope)),
      m_order_rate(m_authority->compiled.rate_limit()),
      m_limits(std::make_unique<detail::OrderLimits>(scope, m_options.working_order_capacity,
                                                     firm_tracking())),
      m_scope(scope),
      m_instance(instance_tag()),
      m_cancels(std::make_unique<CancelQueue>()) {
    setup_behaviour(m_options.baseline ? m_options.baseline->baseline.agent_id : std::string());
    attach_firm(m_options.baseline ? m_options.baseline->baseline.agent_id : std::string());
    start_heartbeat();
}

Guard::Guard(GuardCredentials c, const Clock& clock, GuardOptions options)
    : m_clock(clock),
      m_options(options),
      m_instance(instance_tag()),
      m_cancels(std::make_unique<CancelQueue>()) {
    if (!c.kms)
        throw Error(ErrorCategory::invalid_input, "guard: credentials need the agent's Kms");
    if (!c.crl)
        throw Error(
            ErrorCategory::unauthorised,
            "agent certificate refused: crl_missing: no CRL given, revocation status unknown");
    m_anchor = c.trust_anchor;
    m_kms = c.kms;
    m_key = c.key;
    m_intermediates = c.intermediates_der;
    const CertificateCheck result = verify(c.certificate, &*c.crl);
    if (!result.ok())
        throw Error(ErrorCategory::unauthorised, std::string("agent certificate refused: ") +
                                                     to_string(result.status) + ": " +
                                                     result.detail);
    m_authority = make_authority(c.certificate, *c.crl);
    m_scope = c.certificate.scope();
    m_certificate = c.certificate;
    m_crl = c.crl;
    m_order_rate = detail::RateWindow(m_authority->compiled.rate_limit());
    m_limits = std::make_unique<detail::OrderLimits>(m_scope, m_options.working_order_capacity,
                                                     firm_tracking());
    const std::string baseline_payload = setup_behaviour_quiet(m_certificate->agent_id());
    if (options.audit) {
        // The log is the Guard's journal: its records rebuild the state (restore.cpp) as the
        // trail opens it, before anything new is recorded or checked.
        std::function<void(const OpenedRecord&)> restore;
        if (m_options.restore) {
            m_restore = std::make_unique<Restore>();
            m_restore->fingerprint = m_certificate->fingerprint();
            m_restore->public_key = m_kms->public_key(m_key).spki_der;
            restore = [this](const OpenedRecord& r) { restore_record(r); };
        }
        AuditTrailOptions audit = *options.audit;
        if (!audit.threads) audit.threads = m_options.threads;
        m_audit = std::make_unique<AuditTrail>(std::move(audit), clock, m_kms, m_key,
                                               m_certificate->agent_id(),
                                               m_certificate->fingerprint(), std::move(restore));
        if (m_restore) finish_restore();
    }
    announce_behaviour(baseline_payload);
    attach_firm(m_certificate->agent_id());
    start_heartbeat();
    m_feed = c.revocation_feed;
    if (m_feed && m_options.on_cancel_all) m_desk->start();  // delivers a feed halt's cancels
    if (m_feed) m_feed->subscribe(this);
    deliver_cancels();  // a restored halt whose cancel list never reached the trading system
    // Last: the CRLs and certificates published, and the steps already recorded, are applied
    // to the Guard as constructed.
    try {
        m_credential_feed = c.credential_feed;
        if (m_credential_feed) m_credential_feed->subscribe(this);
        if (m_options.human_steps) m_options.human_steps->subscribe(this);
    } catch (...) {
        // The destructor will not run.
        if (m_feed) m_feed->unsubscribe(this);
        if (m_credential_feed) m_credential_feed->unsubscribe(this);
        throw;
    }
}

std::string Guard::record(GuardEvent event, bool audited, bool supersede) noexcept {
    const bool halts =
        event.kind == GuardEvent::Kind::halted || event.kind == GuardEvent::Kind::revoked;
    try {
        if (halts && !supersede && m_halt) {
            event.halt_id = new_id("halt", event.at_ns, ++m_halts);
            m_past_halts.push_back({event.halt_id, "made while the automatic halt " +
                                                       m_halt->halt_id +
                                                       " was in force: only a re-enable of "
                                                       "that one lifts both"});
        } else if (halts) {
            event.halt_id = new_id("halt", event.at_ns, ++m_halts);
            if (m_halt)
                m_past_halts.push_back({m_halt->halt_id, "superseded by halt " + event.halt_id +
                                                             " (" + event.reason +
                                                             ") before it was lifted"});
            m_halt = event;
        }
    } catch (...) {
        report("out of memory recording a halt");
    }
    if (!audited) audit_state(event, halts && !supersede && m_halt ? m_halt->halt_id : "");
    if (halts) queue_cancel_list(event);
    try {
        m_events.push_back(event);
    } catch (...) {
        // Out of memory for the in-process history; the audit trail has the event.
    }
    try {
        const std::string who = m_agent_id.empty() ? std::string("guard") : m_agent_id;
        if (event.kind == GuardEvent::Kind::revoked) {
            const std::string serial = m_certificate ? m_certificate->serial() : std::string();
            bool compromised;
            {
                std::lock_guard<detail::SpinLock> lock(m_lock);
                compromised = m_key_compromised;
            }
            m_desk->notify(Notification::Kind::revocation, nullptr, event.at_ns,
                           who + ": certificate " + serial + " revoked (" + event.by +
                               "): " + event.reason + "; halted",
                           dump({{"serial", serial},
                                 {"source", event.by},
                                 {"reason", event.reason},
                                 {"halt", event.halt_id},
                                 {"key_compromised", compromised}}));
        }
        if (halts)
            m_desk->notify(Notification::Kind::halt, nullptr, event.at_ns,
                           who + ": halted by " + event.by + ": " + event.reason + " (halt " +
                               event.halt_id + ")",
                           dump({{"halt", event.halt_id},
                                 {"by", event.by},
                                 {"reason", event.reason},
                                 {"revoked", event.kind == GuardEvent::Kind::revoked}}));
    } catch (...) {
        report("notifier: could not build a halt notification");
    }
    return event.halt_id;
}

void Guard::queue_cancel_list(const GuardEvent& halt) noexcept {
    try {
        // The working ids as the halt takes effect (it is in force: none can join later);
        // handed to on_cancel_all once no Guard lock is held.
        CancelAll c{halt.halt_id, halt.reason, halt.by, halt.at_ns, working_orders()};
        std::lock_guard<std::mutex> lock(m_cancels->mutex);
        m_cancels->pending.push_back(std::move(c));
        ++m_cancels->queued;
    } catch (...) {
        report("out of memory queueing a halt's cancel list: cancel the working orders by hand");
    }
}

void Guard::lift_halt(const std::string& by) noexcept {
    if (!m_halt) return;
    try {
        m_past_halts.push_back(
            {m_halt->halt_id, "lifted at " + format_timestamp(m_clock.now_ns()) + " by " + by});
    } catch (...) {
        report("out of memory recording a lifted halt");
    }
    m_halt.reset();
}

std::optional<GuardEvent> Guard::current_halt() const {
    std::lock_guard<std::mutex> admin(m_admin);
    return m_halt;
}

void Guard::audit_state(const GuardEvent& e, const std::string& in_force) noexcept {
    if (!m_audit) return;
    if (!e.halt_id.empty()) {
        // With the halt's id, the one thing a signed re-enable must name, and what a restart
        // needs to restore it (docs/restart.md).
        try {
            nlohmann::json p = {{"by", e.by}, {"reason", e.reason}, {"halt", e.halt_id}};
            if (e.kind != GuardEvent::Kind::resumed) {
                std::lock_guard<detail::SpinLock> lock(m_lock);
                p["automatic"] = m_auto_halted;  // only a signed re-enable lifts it
                if (e.kind == GuardEvent::Kind::revoked) p["key_compromised"] = m_key_compromised;
            }
            if (!in_force.empty()) p["in_force"] = in_force;
            audit_event(e.at_ns,
                        e.kind == GuardEvent::Kind::resumed   ? audit_event::guard_resumed
                        : e.kind == GuardEvent::Kind::revoked ? audit_event::certificate_revoked
                                                              : audit_event::guard_halted,
                        dump(p));
            return;
        } catch (...) {
            // Out of memory for the payload: record it without the id below.
        }
    }
    std::string_view event;
    switch (e.kind) {
        case GuardEvent::Kind::halted: event = audit_event::guard_halted; break;
        case GuardEvent::Kind::resumed: event = audit_event::guard_resumed; break;
        case GuardEvent::Kind::revoked: event = audit_event::certificate_revoked; break;
        case GuardEvent::Kind::rotated: event = audit_event::guard_rotated; break;
        case GuardEvent::Kind::crl_updated: event = audit_event::guard_crl_updated; break;
    }
    std::lock_guard<detail::SpinLock> lock(m_lock);  // one producer at a time
    m_audit->push_state(e.at_ns, event, e.by, e.reason);
}

Guard::~Guard() {
    if (m_feed) m_feed->unsubscribe(this);
    if (m_credential_feed) m_credential_feed->unsubscribe(this);
    if (m_options.human_steps) m_options.human_steps->unsubscribe(this);
    if (!m_desk) return;  // a constructor threw before it was made
    m_desk->stop();
    try {
        m_desk->process();  // what check() queued last still becomes incidents and records
    } catch (...) {
    }
    deliver_cancels();
}

void Guard::attach_firm(std::string_view agent_id) {
    if (!m_options.firm_limits) return;
    m_firm.attach(m_options.firm_limits, agent_id, m_clock);
    m_firm.bind(m_scope.instruments);
    hold_firm();  // working orders restored from the log hold their part from the start
}

CertificateCheck Guard::verify(const AgentCertificate& cert,
                               const CertificateRevocationList* crl) const {
    VerifyOptions options;
    options.intermediates_der = m_intermediates;
    options.expected_public_key = m_kms->public_key(m_key).spki_der;
    options.require_crl = true;
    return verify_certificate(cert, *m_anchor, crl, m_clock.now_ns(), options);
}

std::unique_ptr<detail::Authority> Guard::make_authority(
    const AgentCertificate& cert, const CertificateRevocationList& crl) const {
    auto a = std::make_unique<detail::Authority>(cert.scope());
    a->has_certificate = true;
    a->not_before_s = seconds_of(cert.not_before());
    a->not_after_s = seconds_of(cert.not_after());
    a->crl_next_update_s = seconds_of(crl.next_update());
    a->expiry_warning_s = a->not_after_s - m_options.expiry_warning.count();
    return a;
}

void Guard::install(std::unique_ptr<detail::Authority> next, bool new_serial,
                    std::unique_ptr<detail::OrderLimits>* limits,
                    const std::vector<std::string>* instruments) {
    // Size the order-rate window outside the spin lock; carry the newest timestamps over. The
    // old window and authority are freed after the lock is released.
    detail::RateWindow window(next->compiled.rate_limit());
    std::unique_ptr<const detail::Authority> old;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (window.limit() != m_order_rate.limit()) {
            window.carry_from(m_order_rate);
            m_order_rate.swap(window);
        }
        if (limits != nullptr) {
            // Checked by rotate() under m_admin (held): nothing can have changed what it saw.
            (*limits)->adopt(*m_limits);
            limits->swap(m_limits);  // the old engine is freed by the caller
        }
        old.reset(m_authority.release());
        m_authority = std::move(next);
        if (instruments) m_firm.bind(*instruments);  // the renewed scope's
        if (new_serial) {
            if (!m_key_compromised) m_revoked = false;  // a compromised key stays revoked
            m_expiry_warned = false;
        }
    }
}

void Guard::rotate(const AgentCertificate& renewed) {
    std::lock_guard<std::mutex> admin(m_admin);
    if (!m_certificate)
        throw Error(ErrorCategory::invalid_state,
                    "rotate: this Guard enforces a scope without a certificate");
    if (renewed.agent_id() != m_certificate->agent_id())
        throw Error(ErrorCategory::invalid_input, "rotate: the renewed certificate is for agent '" +
                                                      renewed.agent_id() + "', not '" +
                                                      m_certificate->agent_id() + "'");
    bool compromised;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        compromised = m_key_compromised;
    }
    if (compromised)
        throw Error(ErrorCategory::unauthorised,
                    "rotate: renewed certificate refused: key_compromised: a certificate carrying "
                    "this Guard's key was revoked for keyCompromise, so every certificate of that "
                    "key stays refused; a replacement agent needs a new key and a new Guard");
    // Never back: not the certificate in force, not one held before, not an older one.
    const std::string serial = canonical_serial(renewed.serial());
    if (serial == canonical_serial(m_certificate->serial()))
        throw Error(ErrorCategory::unauthorised,
                    "rotate: renewed certificate refused: not_newer: serial " + renewed.serial() +
                        " is the certificate in force");
    if (std::find(m_held_serials.begin(), m_held_serials.end(), serial) != m_held_serials.end())
        throw Error(ErrorCategory::unauthorised,
                    "rotate: renewed certificate refused: not_newer: serial " + renewed.serial() +
                        " was in force before; rotation never goes back");
    if (seconds_of(renewed.not_before()) < seconds_of(m_certificate->not_before()))
        throw Error(ErrorCategory::unauthorised,
                    "rotate: renewed certificate refused: not_newer: its notBefore " +
                        format_timestamp(renewed.not_before()) +
                        " is before that of the certificate in force (" +
                        format_timestamp(m_certificate->not_before()) + ")");
    // The order limits of the renewed scope take over the state (working orders, positions,
    // daily totals) where they can; where they cannot, the rotation is refused.
    std::unique_ptr<detail::OrderLimits> limits;
    if (engine_view(renewed.scope()) != engine_view(m_scope)) {
        limits = std::make_unique<detail::OrderLimits>(
            renewed.scope(), m_options.working_order_capacity, firm_tracking());
        // What it compares is configuration, which only rotate() (m_admin held) changes.
        const std::string why = limits->cannot_adopt(*m_limits);
        if (!why.empty())
            throw Error(ErrorCategory::invalid_state,
                        "rotate: renewed certificate refused: " + why +
                            "; the working orders and positions would not carry over (start a "
                            "new Guard with it once nothing works, docs/lifecycle.md)");
    }
    const CertificateCheck result = verify(renewed, &*m_crl);
    if (!result.ok())
        throw Error(ErrorCategory::unauthorised,
                    std::string("rotate: renewed certificate refused: ") +
                        to_string(result.status) + ": " + result.detail);
    auto next = make_authority(renewed, *m_crl);
    m_held_serials.push_back(canonical_serial(m_certificate->serial()));
    install(std::move(next), true, limits ? &limits : nullptr, &renewed.scope().instruments);
    m_certificate = renewed;
    m_scope = renewed.scope();
    record(
        {GuardEvent::Kind::rotated, m_clock.now_ns(), "kakunin",
         "serial " + renewed.serial() + " valid until " + format_timestamp(renewed.not_after())});
}

void Guard::update_crl(const CertificateRevocationList& crl) {
    update_crl_locked(crl);
    deliver_cancels();  // a CRL listing the certificate halted: cancel what works
}

void Guard::update_crl_locked(const CertificateRevocationList& crl) {
    std::lock_guard<std::mutex> admin(m_admin);
    if (!m_certificate)
        throw Error(ErrorCategory::invalid_state, "update_crl: this Guard has no certificate");
    const CertificateCheck result = verify(*m_certificate, &crl);
    // `revoked` comes only from a CRL that authenticated (issuer, cRLSign, signature): anything
    // else, a forged CRL listing the serial included (crl_invalid), is refused here before any
    // state changes.
    if (!result.ok() && result.status != CertificateStatus::revoked)
        throw Error(
            ErrorCategory::unauthorised,
            std::string("update_crl: refused: ") + to_string(result.status) + ": " + result.detail);
    // Never back (once it is known to be the issuer's): an older CRL, though genuine and not
    // yet past its nextUpdate, may not list what the one in force lists.
    if (crl.this_update() < m_crl->this_update() ||
        (crl.this_update() == m_crl->this_update() && crl.number() < m_crl->number()))
        throw Error(ErrorCategory::unauthorised, "update_crl: refused: not_newer: CRL number " +
                                                     std::to_string(crl.number()) + " of " +
                                                     format_timestamp(crl.this_update()) +
                                                     " is older than the CRL in force (number " +
                                                     std::to_string(m_crl->number()) + " of " +
                                                     format_timestamp(m_crl->this_update()) + ")");
    auto next = make_authority(*m_certificate, crl);
    install(std::move(next), false);
    m_crl = crl;
    record({GuardEvent::Kind::crl_updated, m_clock.now_ns(), "kakunin",
            "next update " + format_timestamp(crl.next_update())});
    // A compromise of any certificate this Guard held is a compromise of its key: the CRL's
    // reason code says so (the authenticated CRL, as checked above).
    bool compromised = crl.lists_for_compromise(m_certificate->serial());
    std::string compromised_serial = compromised ? m_certificate->serial() : std::string();
    for (const std::string& held : m_held_serials)
        if (!compromised && crl.lists_for_compromise(held)) {
            compromised = true;
            compromised_serial = held;
        }
    if (result.status == CertificateStatus::revoked || compromised) {
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            m_revoked = true;
            if (compromised) m_key_compromised = true;
            m_halted.store(true, std::memory_order_relaxed);
        }
        record({GuardEvent::Kind::revoked, m_clock.now_ns(), "crl",
                result.status == CertificateStatus::revoked
                    ? result.detail
                    : "certificate " + compromised_serial +
                          " of this Guard's key is on the CRL for keyCompromise"});
    }
}

void Guard::on_revocation(const Revocation& r) noexcept {
    on_revocation_locked(r);
    // Not on the feed's thread (it holds the feed's lock, and other Guards wait on it): the
    // desk hands the cancel list over (its thread runs when on_cancel_all is set with a feed).
    wake_desk();
}

void Guard::on_revocation_locked(const Revocation& r) noexcept {
    try {
        std::lock_guard<std::mutex> admin(m_admin);
        if (!m_certificate) return;
        const std::string serial = canonical_serial(r.serial);
        const bool compromise = compromise_reason(r.reason);
        const bool current = serial == canonical_serial(m_certificate->serial());
        // Every certificate this Guard held carries its key: a compromise of one is of all.
        const bool held =
            std::find(m_held_serials.begin(), m_held_serials.end(), serial) != m_held_serials.end();
        if (!current && !(held && compromise)) return;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            m_revoked = true;
            if (compromise) m_key_compromised = true;
            m_halted.store(true, std::memory_order_relaxed);
        }
        record({GuardEvent::Kind::revoked, r.revoked_at, "revocation feed",
                current ? r.reason
                        : "certificate " + r.serial + " of this Guard's key revoked: " + r.reason});
    } catch (...) {
        // Only the history entry can fail (allocation); the halt above has already happened.
    }
}

std::string Guard::halt(std::string_view reason, std::string_view by) {
    GuardEvent event{GuardEvent::Kind::halted, m_clock.now_ns(), std::string(by),
                     std::string(reason)};
    std::string id;
    {
        std::lock_guard<std::mutex> admin(m_admin);
        bool automatic_in_force;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            automatic_in_force = m_halted.load(std::memory_order_relaxed) && m_auto_halted;
            m_halted.store(true, std::memory_order_relaxed);
        }
        // A manual halt on top of an automatic one never becomes the halt in force: otherwise
        // a statement signed for the drill would lift the automatic halt it never named.
        id = record(std::move(event), false, !automatic_in_force);
    }
    deliver_cancels();  // returns once on_cancel_all has every working id
    return id;
}

void Guard::resume(std::string_view by) {
    if (by.empty())
        throw Error(ErrorCategory::invalid_input, "resume: the person re-enabling must be named");
    GuardEvent event{GuardEvent::Kind::resumed, m_clock.now_ns(), std::string(by), "resumed"};
    {
        std::lock_guard<std::mutex> admin(m_admin);
        // A lapse check() saw is recorded as the halt in force, under this same lock, before it is
        // lifted: the desk cannot record it after the resume.
        poll_heartbeat_locked();
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            if (!m_halted.load(std::memory_order_relaxed))
                throw Error(ErrorCategory::invalid_state, "resume: the guard is not halted");
            if (m_revoked)
                throw Error(
                    ErrorCategory::invalid_state,
                    m_key_compromised
                        ? "resume: the certificate is revoked for keyCompromise: every "
                          "certificate of this key stays refused; a replacement agent needs "
                          "a new key"
                        : "resume: the certificate is revoked; rotate() to a newly issued "
                          "certificate first");
            if (m_auto_halted)
                throw Error(ErrorCategory::invalid_state,
                            "resume: the halt was automatic; re-enabling needs a named person's "
                            "signed statement (Guard::reenable, kakunin agent reenable)");
            m_halted.store(false, std::memory_order_relaxed);
            rearm_heartbeat_locked();  // in the same step: no check() sees the old heartbeat
        }
        if (m_halt) event.halt_id = m_halt->halt_id;
        lift_halt(event.by);
        record(std::move(event));
    }
    deliver_cancels();  // the lapse's cancel list, if one was recorded above
}

// ---- the lifecycle: reduce-only mode, working orders, the cancel list, the heartbeat ----

void Guard::reduce_only(std::string_view reason, std::string_view by) {
    if (by.empty() || reason.empty())
        throw Error(ErrorCategory::invalid_input,
                    "reduce_only: the person (by) and the reason are required");
    const TimeNs now = m_clock.now_ns();
    bool recorded = true;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (!m_limits->tracking())
            throw Error(ErrorCategory::invalid_state,
                        "reduce_only: this Guard tracks no positions (the scope sets no lifecycle "
                        "limit and GuardOptions::working_order_capacity is 0), so it cannot tell "
                        "which orders reduce");
        m_limits->set_reduce_only(true);
        if (m_audit)
            recorded = m_audit->push_state(now, audit_event::guard_reduce_only, by, reason);
    }
    if (!recorded) report("audit queue full: reduce-only mode entered but not recorded");
}

void Guard::lift_reduce_only(std::string_view by) {
    if (by.empty())
        throw Error(ErrorCategory::invalid_input,
                    "lift_reduce_only: the person lifting it must be named");
    const TimeNs now = m_clock.now_ns();
    bool recorded = true;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (!m_limits->reduce_only())
            throw Error(ErrorCategory::invalid_state,
                        "lift_reduce_only: reduce-only mode is not in force");
        m_limits->set_reduce_only(false);
        if (m_audit)
            recorded =
                m_audit->push_state(now, audit_event::guard_reduce_only_lifted, by, "lifted");
    }
    if (!recorded) report("audit queue full: reduce-only mode lifted but not recorded");
}

std::vector<std::string> Guard::working_orders() const {
    std::vector<IdSlot> slots;
    for (;;) {
        std::size_t count;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            count = m_limits->working_count();
        }
        slots.resize(count + 16);  // allocated outside the hot lock; copied into under it
        std::size_t n = 0;
        bool fits = true;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            if (m_limits->working_count() > slots.size()) {
                fits = false;
            } else {
                m_limits->for_each_working([&](std::string_view id) {
                    IdSlot& slot = slots[n++];
                    std::memcpy(slot.text, id.data(), id.size());
                    slot.length = static_cast<std::uint8_t>(id.size());
                });
            }
        }
        if (!fits) continue;  // more orders arrived meanwhile: size again
        std::vector<std::string> ids;
        ids.reserve(n);
        for (std::size_t i = 0; i < n; ++i) ids.emplace_back(slots[i].text, slots[i].length);
        std::sort(ids.begin(), ids.end());
        return ids;
    }
}

LifecycleState Guard::lifecycle_state() const {
    LifecycleState out;
    std::vector<std::string> instruments;
    {
        std::lock_guard<std::mutex> admin(m_admin);
        instruments = m_scope.instruments;
    }
    struct Figures {
        int128 position, buy, sell;
    };
    std::vector<Figures> figures(instruments.size());
    int128 filled, working, pnl;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        for (std::size_t i = 0; i < instruments.size(); ++i) {
            const int index = m_limits->instrument_index(instruments[i]);
            figures[i] = {m_limits->position(index), m_limits->working_buy(index),
                          m_limits->working_sell(index)};
        }
        filled = m_limits->filled_today(m_latest_ns);
        working = m_limits->working_notional();
        pnl = m_limits->daily_pnl(m_latest_ns);
        out.reduce_only = m_limits->reduce_only();
    }
    for (std::size_t i = 0; i < instruments.size(); ++i)
        out.positions.push_back({instruments[i], units_text(figures[i].position),
                                 units_text(figures[i].buy), units_text(figures[i].sell)});
    out.working_orders = working_orders();
    out.filled_today = units_text(filled);
    out.working_notional = units_text(working);
    out.daily_pnl = units_text(pnl);
    return out;
}

void Guard::start_heartbeat() {
    if (m_options.heartbeat_timeout.count() <= 0) return;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        m_heartbeat_ns = static_cast<TimeNs>(m_options.heartbeat_timeout.count()) * 1'000'000;
        m_last_heartbeat_ns = m_heartbeat_seen_ns = m_clock.now_ns();
        m_since_heartbeat_ns = 0;
    }
    m_desk->start();  // the switch must fire while no order is checked
}

void Guard::rearm_heartbeat() noexcept {
    std::lock_guard<detail::SpinLock> lock(m_lock);
    rearm_heartbeat_locked();
}

void Guard::rearm_heartbeat_locked() noexcept {
    const TimeNs now = m_clock.now_ns();
    heartbeat_observe(now);
    m_since_heartbeat_ns = 0;
    m_last_heartbeat_ns = now;
    m_heartbeat_lapsed = false;
}

void Guard::wake_desk() noexcept { m_desk->wake(); }

void Guard::poll_heartbeat() noexcept {
    try {
        std::lock_guard<std::mutex> admin(m_admin);
        poll_heartbeat_locked();
    } catch (...) {
        report("could not check the dead man's switch");
    }
}

void Guard::poll_heartbeat_locked() noexcept {
    TimeNs now, last;
    bool automatic_in_force;
    {
        // Tested and cleared under m_admin (held) as well as the hot lock, so a resume() cannot
        // come between a lapse and its record.
        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (m_heartbeat_ns == 0) return;
        now = std::max(m_clock.now_ns(), m_latest_ns);
        heartbeat_observe(m_clock.now_ns());
        if (!m_halted.load(std::memory_order_relaxed) && m_since_heartbeat_ns > m_heartbeat_ns) {
            m_halted.store(true, std::memory_order_release);
            m_heartbeat_lapsed = true;
        }
        if (!m_heartbeat_lapsed) return;
        m_heartbeat_lapsed = false;
        last = m_last_heartbeat_ns;
        automatic_in_force = m_auto_halted;
    }
    try {
        record(
            {GuardEvent::Kind::halted, now, "kakunin",
             "dead man's switch: no heartbeat() for " + std::to_string(m_heartbeat_ns / 1'000'000) +
                 " ms (the last at " + format_timestamp(last) + ")"},
            false, !automatic_in_force);
    } catch (...) {
        report("out of memory recording a dead man's switch halt; the Guard is halted");
    }
}

void Guard::deliver_cancels() noexcept {
    CancelQueue& q = *m_cancels;
    std::unique_lock<std::mutex> lock(q.mutex);
    if (q.deliverer == std::this_thread::get_id()) return;  // halted again from the callback
    const std::uint64_t target = q.queued;
    while (q.delivered < target) {
        if (q.deliverer != std::thread::id()) {  // another thread delivers: wait for ours
            q.done.wait(lock);
            continue;
        }
        q.deliverer = std::this_thread::get_id();
        while (!q.pending.empty()) {  // halts queued meanwhile (the callback's own) included
            std::vector<CancelAll> batch;
            batch.swap(q.pending);
            lock.unlock();
            for (CancelAll& c : batch) {
                std::string outcome = "none registered";
                try {
                    if (m_options.on_cancel_all) {
                        outcome = "handed to on_cancel_all";
                        m_options.on_cancel_all(c);
                    }
                } catch (const std::exception& e) {
                    outcome = std::string("on_cancel_all threw: ") + e.what();
                    report("on_cancel_all threw: cancel the working orders by hand");
                } catch (...) {
                    outcome = "on_cancel_all threw";
                    report("on_cancel_all threw: cancel the working orders by hand");
                }
                bool tracking;
                {
                    std::lock_guard<detail::SpinLock> hot(m_lock);
                    tracking = m_limits->tracking();
                }
                // A Guard that tracks no orders and has no callback has nothing to record.
                if (tracking || m_options.on_cancel_all) try {
                        audit_event(m_clock.now_ns(), audit_event::guard_cancel_all,
                                    dump({{"halt", c.halt_id},
                                          {"reason", c.reason},
                                          {"by", c.by},
                                          {"halted_at_ns", c.at_ns},
                                          {"order_ids", c.order_ids},
                                          {"callback", outcome}}));
                    } catch (...) {
                        report("out of memory recording a cancel list");
                    }
            }
            lock.lock();
            q.delivered += batch.size();
        }
        q.deliverer = std::thread::id();
        q.done.notify_all();
    }
}

bool Guard::revoked() const noexcept {
    std::lock_guard<detail::SpinLock> lock(m_lock);
    return m_revoked;
}

std::vector<GuardEvent> Guard::events() const {
    std::lock_guard<std::mutex> admin(m_admin);
    return m_events;
}

Scope Guard::scope() const {
    std::lock_guard<std::mutex> admin(m_admin);
    return m_scope;
}

std::optional<AgentCertificate> Guard::certificate() const {
    std::lock_guard<std::mutex> admin(m_admin);
    return m_certificate;
}

void Guard::set_error_handler(GuardErrorHandler handler) {
    {
        std::lock_guard<std::mutex> lock(m_handler_mutex);
        m_handler.swap(handler);
    }
    // The old handler is destroyed here, with no lock held (its captures may call back).
}

void Guard::report(std::string_view message) noexcept {
    try {
        std::lock_guard<std::mutex> lock(m_handler_mutex);
        if (m_handler) m_handler(message);
    } catch (...) {
        // A handler must not throw; if it does, the check that triggered it is unaffected.
    }
}

void Guard::report_clock_step(TimeNs from, TimeNs to) noexcept {
    // No allocation: this runs on the thread calling check().
    char message[256];
    std::snprintf(message, sizeof message,
                  "clock stepped back %" PRId64 " ns (from %" PRId64 " to %" PRId64
                  " ns since the epoch): the rate window, daily total, scoring and expiry keep "
                  "the later time until the clock passes it; no limit is reset",
                  from - to, from, to);
    report(message);
}

void Guard::report_expiry() noexcept {
    try {
        std::string message;
        {
            std::lock_guard<std::mutex> admin(m_admin);
            if (!m_certificate) return;
            message = "agent certificate " + m_certificate->serial() + " of '" +
                      m_certificate->agent_id() + "' expires at " +
                      format_timestamp(m_certificate->not_after()) +
                      ": issue a renewed certificate and rotate() it in";
        }
        report(message);
    } catch (...) {
    }
}

}  // namespace kakunin
