// kakunin/incident.hpp — what happens after an anomaly: incidents with their human steps, and
// the signed statements RTS 6 asks of named people (incident review, re-enabling a halted agent).
//
//   auto review = kakunin::sign_incident_review(kms, "agent-7", "inc-agent-7-1", "A. Officer",
//                                                "LLM prompt injection via news feed", now);
//   guard.review_incident(review);                     // revoked -> reviewed, recorded
//   const std::string halt = guard.current_halt()->halt_id;   // the halt to lift
//   auto ok = kakunin::sign_reenable(kms, "agent-7", halt, "B. Head of Desk", "fixed feed", now);
//   guard.reenable(ok);                                // after an automatic halt (Art. 15(3))
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/kms.hpp"

namespace kakunin {

/// open -> acknowledged -> resolved, or (automatic revocation) revoked -> reviewed.
enum class IncidentState : std::uint8_t { open, acknowledged, resolved, revoked, reviewed };
const char* to_string(IncidentState s) noexcept;

struct IncidentTransition {
    IncidentState state = IncidentState::open;
    TimeNs at_ns = 0;
    std::string by;    ///< a named person, or "kakunin"
    std::string note;  ///< what happened or what the person said
};

struct Incident {
    /// "inc-" agent "-" opening time (YYYYMMDDTHHMMSSZ) "-" the Guard's random instance tag "-"
    /// n: unique across Guards, processes and restarts.
    std::string id;
    std::string agent_id;
    TimeNs opened_at_ns = 0;
    TimeNs deadline_ns = 0;       ///< end of the investigation window
    std::uint32_t score_ppm = 0;  ///< of the triggering order
    std::array<std::uint32_t, score_component_count> components_ppm{};
    std::string trigger_order_json;  ///< the triggering order, as in its audit record
    IncidentState state = IncidentState::open;
    bool escalated = false;
    std::uint64_t warnings = 0;  ///< orders that scored over the warning threshold while open
    TimeNs last_warning_ns = 0;  ///< the latest of them
    std::vector<IncidentTransition> history;  ///< oldest first; the first is the opening
};

/// Asked of the firm after an automatic revocation: a new agent (new key, new certificate)
/// whose baseline must be approved before it enforces.
struct ReplacementRequest {
    std::string agent_id;  ///< the revoked agent
    std::string incident_id;
    std::string revoked_serial;
    std::string reason;
    TimeNs at_ns = 0;
};

/// A named reviewer's signed root cause of an incident (post-incident review).
struct IncidentReview {
    std::string agent_id;
    std::string incident_id;
    std::string reviewer;
    std::string root_cause;
    TimeNs signed_at_ns = 0;
    std::string algorithm;   ///< "ed25519" or "ecdsa-p256"
    std::string public_key;  ///< base64 SubjectPublicKeyInfo DER of the reviewer's key
    std::string signature;   ///< base64, over incident_review_text()
};

/// A named person's signed decision to let a halted agent trade again (RTS 6 Art. 15(3)).
/// It lifts the one halt it names and nothing else: not an earlier or later halt, not twice.
struct Reenable {
    std::string agent_id;
    std::string halt_id;  ///< the halt it lifts (GuardEvent::halt_id, Guard::current_halt())
    std::string by;
    std::string reason;
    TimeNs signed_at_ns = 0;
    std::string algorithm;
    std::string public_key;
    std::string signature;  ///< base64, over reenable_text()
};

/// "kakunin-incident-review/v1\n" agent "\n" incident "\n" reviewer "\n" signed_at_ns "\n"
/// root_cause "\n" (UTF-8).
std::string incident_review_text(const IncidentReview& r);
/// "kakunin-reenable/v2\n" agent "\n" halt "\n" by "\n" signed_at_ns "\n" reason "\n" (UTF-8).
/// (v1, without the halt, lifted any halt and is no longer accepted.)
std::string reenable_text(const Reenable& r);

/// Sign with the person's key (label "approver:" + name, created on first use) in `kms`.
/// Throws kakunin::Error (invalid_input) for an empty name, root cause or reason.
IncidentReview sign_incident_review(Kms& kms, std::string_view agent_id,
                                    std::string_view incident_id, std::string_view reviewer,
                                    std::string_view root_cause, TimeNs at,
                                    KeyAlgorithm algorithm = KeyAlgorithm::ed25519);
/// Also throws (invalid_input) for an empty halt id.
Reenable sign_reenable(Kms& kms, std::string_view agent_id, std::string_view halt_id,
                       std::string_view by, std::string_view reason, TimeNs at,
                       KeyAlgorithm algorithm = KeyAlgorithm::ed25519);

/// Empty when the signature verifies under the statement's own key; else the reason.
std::string check_incident_review(const IncidentReview& r) noexcept;
std::string check_reenable(const Reenable& r) noexcept;

/// JSON objects with every member (audit payloads, files); the parsers name the bad member.
std::string to_json(const IncidentReview& r);
std::string to_json(const Reenable& r);
IncidentReview incident_review_from_json(std::string_view json);
Reenable reenable_from_json(std::string_view json);
std::string to_json(const Incident& i);

}  // namespace kakunin
