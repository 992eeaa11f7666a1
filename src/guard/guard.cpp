// The Guard's cold paths: construction from credentials, rotation, CRL updates, revocation,
// halt and resume. The hot path, check(), is inline in include/kakunin/guard.hpp.
#include "kakunin/guard.hpp"

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
}  // namespace

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
      m_scope(scope) {
    if (m_authority->compiled.rate_limit() > 0)
        m_rate_ring.assign(m_authority->compiled.rate_limit(), 0);
    setup_behaviour(m_options.baseline ? m_options.baseline->baseline.agent_id : std::string());
}

Guard::Guard(GuardCredentials c, const Clock& clock, GuardOptions options)
    : m_clock(clock), m_options(options) {
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
    if (m_authority->compiled.rate_limit() > 0)
        m_rate_ring.assign(m_authority->compiled.rate_limit(), 0);
    if (options.audit)
        m_audit =
            std::make_unique<AuditTrail>(*options.audit, clock, m_kms, m_key,
                                         m_certificate->agent_id(), m_certificate->fingerprint());
    setup_behaviour(m_certificate->agent_id());
    m_feed = c.revocation_feed;
    if (m_feed) m_feed->subscribe(this);
}

void Guard::record(GuardEvent event) noexcept {
    audit_state(event);
    try {
        m_events.push_back(std::move(event));
    } catch (...) {
        // Out of memory for the in-process history; the audit trail has the event.
    }
}

void Guard::audit_state(const GuardEvent& e) noexcept {
    if (!m_audit) return;
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
    m_stop.store(true, std::memory_order_release);
    m_wake.notify_all();
    if (m_incident_thread.joinable()) m_incident_thread.join();
    try {
        process_incidents();  // what check() queued last still becomes incidents and records
    } catch (...) {
    }
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

void Guard::install(std::unique_ptr<detail::Authority> next, bool new_serial) {
    // Resize the message-rate window outside the spin lock; carry the newest timestamps over.
    const std::size_t size = next->compiled.rate_limit();
    std::vector<TimeNs> ring(size, 0);
    std::unique_ptr<const detail::Authority> old;
    std::vector<TimeNs> old_ring;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (size == m_rate_ring.size()) {
            old_ring.swap(ring);  // nothing to change
        } else {
            const std::size_t have = m_rate_filled ? m_rate_ring.size() : m_rate_next;
            const std::size_t keep = std::min(have, size);
            for (std::size_t i = 0; i < keep; ++i) {
                const std::size_t from =
                    (m_rate_next + m_rate_ring.size() - keep + i) % m_rate_ring.size();
                ring[i] = m_rate_ring[from];
            }
            m_rate_filled = size > 0 && keep == size;
            m_rate_next = size > 0 ? keep % size : 0;
            old_ring.swap(m_rate_ring);
            m_rate_ring.swap(ring);
        }
        old.reset(m_authority.release());
        m_authority = std::move(next);
        if (new_serial) {
            m_revoked = false;
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
    const CertificateCheck result = verify(renewed, &*m_crl);
    if (!result.ok())
        throw Error(ErrorCategory::unauthorised,
                    std::string("rotate: renewed certificate refused: ") +
                        to_string(result.status) + ": " + result.detail);
    auto next = make_authority(renewed, *m_crl);
    const bool new_serial = renewed.serial() != m_certificate->serial();
    install(std::move(next), new_serial);
    m_certificate = renewed;
    m_scope = renewed.scope();
    record(
        {GuardEvent::Kind::rotated, m_clock.now_ns(), "kakunin",
         "serial " + renewed.serial() + " valid until " + format_timestamp(renewed.not_after())});
}

void Guard::update_crl(const CertificateRevocationList& crl) {
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
    auto next = make_authority(*m_certificate, crl);
    install(std::move(next), false);
    m_crl = crl;
    record({GuardEvent::Kind::crl_updated, m_clock.now_ns(), "kakunin",
            "next update " + format_timestamp(crl.next_update())});
    if (result.status == CertificateStatus::revoked) {
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            m_revoked = true;
            m_halted.store(true, std::memory_order_relaxed);
        }
        record({GuardEvent::Kind::revoked, m_clock.now_ns(), "crl", result.detail});
    }
}

void Guard::on_revocation(const Revocation& r) noexcept {
    try {
        std::lock_guard<std::mutex> admin(m_admin);
        if (!m_certificate || m_certificate->serial() != r.serial) return;
        {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            m_revoked = true;
            m_halted.store(true, std::memory_order_relaxed);
        }
        record({GuardEvent::Kind::revoked, r.revoked_at, "revocation feed", r.reason});
    } catch (...) {
        // Only the history entry can fail (allocation); the halt above has already happened.
    }
}

void Guard::halt(std::string_view reason, std::string_view by) {
    GuardEvent event{GuardEvent::Kind::halted, m_clock.now_ns(), std::string(by),
                     std::string(reason)};
    std::lock_guard<std::mutex> admin(m_admin);
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        m_halted.store(true, std::memory_order_relaxed);
    }
    record(std::move(event));
}

void Guard::resume(std::string_view by) {
    if (by.empty())
        throw Error(ErrorCategory::invalid_input, "resume: the person re-enabling must be named");
    GuardEvent event{GuardEvent::Kind::resumed, m_clock.now_ns(), std::string(by), "resumed"};
    std::lock_guard<std::mutex> admin(m_admin);
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        if (!m_halted.load(std::memory_order_relaxed))
            throw Error(ErrorCategory::invalid_state, "resume: the guard is not halted");
        if (m_revoked)
            throw Error(
                ErrorCategory::invalid_state,
                "resume: the certificate is revoked; rotate() to a newly issued certificate first");
        if (m_auto_halted)
            throw Error(ErrorCategory::invalid_state,
                        "resume: the halt was automatic; re-enabling needs a named person's "
                        "signed statement (Guard::reenable, kakunin agent reenable)");
        m_halted.store(false, std::memory_order_relaxed);
    }
    record(std::move(event));
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
    std::lock_guard<std::mutex> lock(m_handler_mutex);
    m_handler = std::move(handler);
}

void Guard::report(std::string_view message) noexcept {
    try {
        std::lock_guard<std::mutex> lock(m_handler_mutex);
        if (m_handler) m_handler(message);
    } catch (...) {
        // A handler must not throw; if it does, the check that triggered it is unaffected.
    }
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
