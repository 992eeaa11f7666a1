// What an agent's records say of its incidents, its halt and reduce-only mode, and so which
// human steps still apply: the incident desk's state machine (open -> acknowledged -> resolved,
// revoked -> reviewed) and the Guard's halts, folded from records instead of lived. The command
// line asks it before it records a step (kakunin incident ack ...); a Guard restarting from its
// log can rebuild the same states from it.
//
//   detail::HumanStepLedger ledger("agent-7");
//   for (line : agent log) ledger.add_agent_line(line, n);   // the Guard's own records
//   for (step : CA log) ledger.add_recorded_step(step);      // recorded, maybe not yet applied
//   if (auto why = ledger.refusal(step); !why.empty()) refuse(why);
//
// Private to src/. Not synchronised.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/human_steps.hpp"
#include "kakunin/incident.hpp"

namespace kakunin::detail {

class HumanStepLedger {
public:
    struct IncidentEntry {
        std::string id;
        IncidentState state = IncidentState::open;
        bool escalated = false;
        TimeNs changed_at_ns = 0;  ///< the latest transition
        std::string changed_by;
        /// Non-empty when the state comes from a recorded step the agent's log does not show
        /// yet ("CA log seq 12"): its Guard has not applied it (it was down, or is about to).
        std::string pending;
    };
    struct Halt {
        std::string id;  ///< empty for the automatic halt of an anomaly revocation
        std::string by, reason;
        TimeNs at_ns = 0;
        bool automatic = false;  ///< by "kakunin": only a signed re-enable lifts it
        bool revoked = false;    ///< the certificate is revoked: a re-enable needs a rotation
        bool key_compromised = false;
    };

    explicit HumanStepLedger(std::string agent_id);

    /// One line of the agent's log (a record or a checkpoint, DESIGN §5), in order. Throws
    /// kakunin::Error (invalid_input) naming `where` for a line that is not a record or
    /// checkpoint, a record of another agent, or a step record whose payload is malformed.
    void add_agent_line(std::string_view line, const std::string& where);
    /// One record of the agent's log (events that say nothing of incidents, halts or
    /// reduce-only mode are ignored). Throws as add_agent_line.
    void add_agent_record(std::string_view event, std::string_view payload_json, TimeNs ts_ns,
                          const std::string& where);
    /// A step recorded outside the agent's log (the CA log, the steps table). When the agent's
    /// log already shows it (the same person's same step, or the same signed statement), it is
    /// spent; otherwise, if it still applies, its change is taken as pending. Steps of other
    /// agents are ignored. Returns true when it was taken as pending.
    bool add_recorded_step(const HumanStep& step);

    /// Empty when `step` may be taken now; else why not, in one line ("no incident ...",
    /// "incident ... is resolved ...", "an incident id is required", ...).
    std::string refusal(const HumanStep& step) const;

    const std::vector<IncidentEntry>& incidents() const noexcept { return m_incidents; }
    const std::optional<Halt>& halt_in_force() const noexcept { return m_halt; }
    bool reduce_only() const noexcept { return m_reduce_only; }

private:
    IncidentEntry* find(std::string_view id);
    const IncidentEntry* find(std::string_view id) const;
    /// A step's change, from the agent's log (`pending` empty) or a recorded step.
    void apply(const HumanStep& step, const std::string& pending);
    static std::string key(const HumanStep& step);

    std::string m_agent;
    std::vector<IncidentEntry> m_incidents;
    std::optional<Halt> m_halt;
    std::map<std::string, std::string> m_past_halts;  ///< id -> what became of it
    std::string m_halt_pending;                       ///< the halt's lift, when pending
    bool m_reduce_only = false;
    std::string m_reduce_only_pending;
    /// Steps the agent's log shows, by key (see key()), with how often: each spends one
    /// recorded step.
    std::map<std::string, int> m_seen;
};

}  // namespace kakunin::detail
