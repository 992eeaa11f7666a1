// kakunin/fleet.hpp — fleet state and the fleet halt (docs/operations-fleet.md). Each process
// publishes what its Guards are doing to PostgreSQL, and obeys a fleet-wide halt and resume
// that a named person signs (kakunin fleet halt|resume), all over the process's PostgresRuntime.
//
//   kakunin::PostgresRuntime pg("host=/run/pg dbname=kakunin user=kakunin_app");
//   kakunin::PostgresFleet fleet(pg);   // publishes every second; obeys kakunin fleet halt
//   fleet.add(guard);                   // ... fleet.remove(guard) before the Guard goes
//   // kakunin fleet status --postgres ... --json  -> every agent, its state and counters
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/fwd.hpp"
#include "kakunin/kms.hpp"

namespace kakunin {

class Guard;
class PostgresRuntime;

/// A fleet-wide halt or resume, as a named person signed it.
struct FleetStep {
    enum class Action : std::uint8_t { halt, resume };
    Action action = Action::halt;
    std::string by;
    std::string reason;
    TimeNs signed_at_ns = 0;
    std::string algorithm;   ///< "ed25519" or "ecdsa-p256"
    std::string public_key;  ///< base64 SubjectPublicKeyInfo DER of the person's key
    std::string signature;   ///< base64, over fleet_step_text()
    /// Its row in kakunin_audit.fleet_steps (0 until published): the Guards' halt reasons
    /// name it ("fleet halt 3: ...").
    std::uint64_t seq = 0;
};

const char* to_string(FleetStep::Action a) noexcept;

/// "kakunin-fleet-step/v1\n" action "\n" by "\n" signed_at_ns "\n" reason "\n" (UTF-8).
std::string fleet_step_text(const FleetStep& s);
/// Signs with the person's key (label "approver:" + name, created on first use) in `kms`.
/// Throws kakunin::Error (invalid_input) for an empty name or reason.
FleetStep sign_fleet_step(Kms& kms, FleetStep::Action action, std::string_view by,
                          std::string_view reason, TimeNs at,
                          KeyAlgorithm algorithm = KeyAlgorithm::ed25519);
/// Empty when the signature verifies under the statement's own key; else the reason.
std::string check_fleet_step(const FleetStep& s) noexcept;
/// JSON object with every member but seq; the parser names a bad member (invalid_input).
std::string to_json(const FleetStep& s);
FleetStep fleet_step_from_json(std::string_view json);

/// Records a fleet step in kakunin_audit.fleet_steps (one short connection), which NOTIFYs
/// every PostgresFleet. `ca_log_seq`: where the CA log holds it (0: none). Returns its seq.
/// Throws kakunin::Error (invalid_input) for a step that does not verify, database otherwise.
std::uint64_t publish_fleet_step(const std::string& conninfo, const FleetStep& step,
                                 std::uint64_t ca_log_seq = 0);

/// One Guard's row of kakunin_fleet.agents as read back (times: "YYYY-MM-DDTHH:MM:SS.mmmZ").
struct FleetAgentRow {
    std::string agent_id, host, process;
    int pid = 0;
    std::string state;  ///< trading | reduce_only | halted | revoked, as last published
    std::string halt_id, halt_by, halt_reason;
    bool automatic = false;
    std::uint64_t checks = 0, allowed = 0, rejected = 0;
    std::string serial, not_after;
    int open_incidents = 0;
    std::string heartbeat;
    /// The heartbeat is older than three of its publish intervals (the server's clock).
    bool stale = false;
};

/// One row of kakunin_fleet.incidents.
struct FleetIncidentRow {
    std::string incident_id, agent_id, state, opened, deadline, acknowledged_by, resolved_by,
        updated;
    bool escalated = false;
    std::uint32_t score_ppm = 0;
    std::uint64_t warnings = 0;
};

struct FleetReading {
    std::vector<FleetAgentRow> agents;        ///< by agent id
    std::vector<FleetIncidentRow> incidents;  ///< by opening time
    std::optional<FleetStep> latest_step;     ///< the latest fleet halt or resume
};

/// Reads the fleet's tables (one short connection; kakunin fleet status, agent list, incident
/// list). Throws kakunin::Error (database).
FleetReading read_fleet(const std::string& conninfo);

struct PostgresFleetOptions {
    /// How often every added Guard's row is published (its heartbeat). A row older than three
    /// intervals shows as stale.
    std::chrono::milliseconds publish_interval{1000};
    /// The process's label in the rows (default: the program's name).
    std::string process_label;
    /// The host name in the rows (default: gethostname()).
    std::string host;
    /// Told about failed publications, fleet steps that do not verify, and Guards that stay
    /// halted on a resume. Must not throw; called on the fleet's threads.
    std::function<void(std::string_view)> error_handler = {};
    /// Decides whether a fleet step's signing key belongs to the person it names (as
    /// GuardOptions::person_key_check: e.g. the key labelled "approver:" + name in the firm's
    /// Kms). Empty string: yes; otherwise why not, and the step is skipped and reported, halt
    /// and resume alike. Without it any step whose signature verifies under the key it carries
    /// is applied: anyone who can insert into kakunin_audit.fleet_steps could then lift a fleet
    /// halt. Called on the fleet's listening thread; must not throw.
    std::function<std::string(std::string_view person, std::string_view public_key_base64)>
        person_key_check;
};

/// Thread-safe. Made from the process's PostgresRuntime, which must outlive it; uses its write
/// connection (one upsert per interval for every Guard) and a channel of its LISTEN connection.
/// Nothing here is on a Guard's hot path: a fleet halt is applied on the fleet's own thread
/// through Guard::halt(), a resume through Guard::resume_halt().
class PostgresFleet {
public:
    explicit PostgresFleet(PostgresRuntime& runtime, PostgresFleetOptions options = {});
    /// Stops its thread; the rows stay (and turn stale).
    ~PostgresFleet();
    PostgresFleet(const PostgresFleet&) = delete;
    PostgresFleet& operator=(const PostgresFleet&) = delete;

    /// Publishes `guard` from the next interval on. While a fleet halt is in force (as far as
    /// the fleet has read) the Guard is halted before this returns; a halt the fleet made that
    /// the Guard restored from its log is lifted if the fleet was resumed meanwhile. The Guard
    /// must outlive its remove(): the fleet's thread reads it, so remove it also on the way out
    /// of an exception (a scope guard declared after the Guard). Adding it twice does nothing.
    void add(Guard& guard);
    /// After this returns the fleet does not touch `guard` (a publication or fleet step in
    /// progress is waited for). Its row stays and turns stale.
    void remove(Guard& guard) noexcept;

    /// Publishes every added Guard now, on the caller's thread; throws kakunin::Error on
    /// failure (the thread's publications report to the error handler instead).
    void publish_now();
    /// True once the fleet's channel listens and has read the fleet steps so far.
    bool wait_until_listening(std::chrono::milliseconds timeout);
    /// The fleet halt in force, or nullopt (as far as the fleet has read).
    std::optional<FleetStep> fleet_halt() const;
    /// Publications that succeeded so far.
    std::uint64_t publications() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
