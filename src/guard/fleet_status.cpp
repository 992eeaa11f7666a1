// What the fleet sees of a Guard (Guard::status()) and the one lever it pulls on it: lifting
// the halt it made, by that halt's id and no other (Guard::resume_halt()).
#include "kakunin/guard.hpp"

namespace kakunin {

const char* to_string(GuardStatus::State s) noexcept {
    switch (s) {
        case GuardStatus::State::trading: return "trading";
        case GuardStatus::State::reduce_only: return "reduce_only";
        case GuardStatus::State::halted: return "halted";
        case GuardStatus::State::revoked: return "revoked";
    }
    return "unknown";
}

GuardStatus Guard::status() const {
    GuardStatus s;
    std::lock_guard<std::mutex> admin(m_admin);
    s.agent_id = m_agent_id;
    if (m_certificate) {
        s.serial = m_certificate->serial();
        s.not_after_ns = m_certificate->not_after();
        if (s.agent_id.empty()) s.agent_id = m_certificate->agent_id();
    }
    if (m_halt) {
        s.halt_id = m_halt->halt_id;
        s.halt_by = m_halt->by;
        s.halt_reason = m_halt->reason;
    }
    std::lock_guard<detail::SpinLock> lock(m_lock);
    s.counters.checks = m_counters.checks;
    s.counters.allowed = m_counters.allowed;
    s.counters.rejected = m_counters.rejected;
    s.counters.rejected_by_reason = m_rejected_by_reason;
    s.automatic = m_auto_halted && m_halted.load(std::memory_order_relaxed);
    if (m_revoked)
        s.state = GuardStatus::State::revoked;
    else if (m_halted.load(std::memory_order_relaxed))
        s.state = GuardStatus::State::halted;
    else if (m_limits->reduce_only())
        s.state = GuardStatus::State::reduce_only;
    return s;
}

bool Guard::resume_halt(std::string_view halt_id, std::string_view by, std::string_view reason) {
    if (by.empty())
        throw Error(ErrorCategory::invalid_input,
                    "resume_halt: the person re-enabling must be named");
    GuardEvent event{GuardEvent::Kind::resumed, m_clock.now_ns(), std::string(by),
                     reason.empty() ? std::string("resumed") : std::string(reason)};
    bool lifted = false;
    {
        std::lock_guard<std::mutex> admin(m_admin);
        // A lapse check() saw becomes the halt in force first: it is not the one named.
        poll_heartbeat_locked();
        if (!halt_id.empty() && m_halt && m_halt->halt_id == halt_id) {
            std::lock_guard<detail::SpinLock> lock(m_lock);
            if (m_halted.load(std::memory_order_relaxed) && !m_revoked && !m_auto_halted) {
                m_halted.store(false, std::memory_order_relaxed);
                rearm_heartbeat_locked();
                lifted = true;
            }
        }
        if (lifted) {
            event.halt_id = m_halt->halt_id;
            lift_halt(event.by);
            record(std::move(event));
        }
    }
    deliver_cancels();  // the lapse's cancel list, if one was recorded above
    return lifted;
}

}  // namespace kakunin
