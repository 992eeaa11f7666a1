// The Guard's cold paths: construction from credentials, rotation, CRL updates, revocation,
// halt and resume. The hot path, check(), is inline in include/kakunin/guard.hpp.
#include "kakunin/guard.hpp"

#include <botan/system_rng.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

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
      m_scope(scope),
      m_instance(instance_tag()) {
    if (m_authority->compiled.rate_limit() > 0)
        m_rate_ring.assign(m_authority->compiled.rate_limit(), 0);
    setup_behaviour(m_options.baseline ? m_options.baseline->baseline.agent_id : std::string());
}

Guard::Guard(GuardCredentials c, const Clock& clock, GuardOptions options)
    : m_clock(clock), m_options(options), m_instance(instance_tag()) {
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
    if (!audited) audit_state(event);
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

void Guard::audit_state(const GuardEvent& e) noexcept {
    if (!m_audit) return;
    if (!e.halt_id.empty()) {
        // With the halt's id, the one thing a signed re-enable must name.
        try {
            audit_event(e.at_ns,
                        e.kind == GuardEvent::Kind::resumed   ? audit_event::guard_resumed
                        : e.kind == GuardEvent::Kind::revoked ? audit_event::certificate_revoked
                                                              : audit_event::guard_halted,
                        dump({{"by", e.by}, {"reason", e.reason}, {"halt", e.halt_id}}));
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
    if (!m_desk) return;  // a constructor threw before it was made
    m_desk->stop();
    try {
        m_desk->process();  // what check() queued last still becomes incidents and records
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
    const CertificateCheck result = verify(renewed, &*m_crl);
    if (!result.ok())
        throw Error(ErrorCategory::unauthorised,
                    std::string("rotate: renewed certificate refused: ") +
                        to_string(result.status) + ": " + result.detail);
    auto next = make_authority(renewed, *m_crl);
    m_held_serials.push_back(canonical_serial(m_certificate->serial()));
    install(std::move(next), true);
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
    std::lock_guard<std::mutex> admin(m_admin);
    bool automatic_in_force;
    {
        std::lock_guard<detail::SpinLock> lock(m_lock);
        automatic_in_force = m_halted.load(std::memory_order_relaxed) && m_auto_halted;
        m_halted.store(true, std::memory_order_relaxed);
    }
    // A manual halt on top of an automatic one never becomes the halt in force: otherwise a
    // statement signed for the drill would lift the automatic halt it never named.
    return record(std::move(event), false, !automatic_in_force);
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
            throw Error(ErrorCategory::invalid_state,
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
    }
    if (m_halt) event.halt_id = m_halt->halt_id;
    lift_halt(event.by);
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
