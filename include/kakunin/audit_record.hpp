// kakunin/audit_record.hpp — audit records and checkpoints as DESIGN §5 defines them (normative):
// canonical bytes, per-record signatures, signed checkpoints. Records cross this API as their
// canonical JSON text plus the few fields callers branch on; JSON libraries stay in src/.
//
//   auto rec = kakunin::make_audit_record(0, clock.now_ns(), "agent-7", "agent-7", cert_fp,
//                                         kakunin::audit_event::order_allowed,
//                                         R"({"decision":"allow","score_ppm":120345})");
//   kakunin::sign_audit_record(signer, rec);          // optional "sig"
//   sink.append(rec.line());
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/audit_merkle.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/kms.hpp"

namespace kakunin {

/// The event names a record may carry. `incident.*` is a family: "incident." followed by a
/// lowercase name ("incident.opened", "incident.closed", ...).
namespace audit_event {
inline constexpr std::string_view order_allowed = "order.allowed";
inline constexpr std::string_view order_warned = "order.warned";
inline constexpr std::string_view order_rejected = "order.rejected";
inline constexpr std::string_view guard_halted = "guard.halted";
inline constexpr std::string_view guard_resumed = "guard.resumed";
inline constexpr std::string_view guard_rotated = "guard.rotated";          ///< renewed certificate
inline constexpr std::string_view guard_crl_updated = "guard.crl_updated";  ///< newer CRL taken
// The order lifecycle (docs/lifecycle.md): the agent's amend and cancel requests, decided like
// orders, and the venue's execution reports as the Guard applied them.
inline constexpr std::string_view amend_allowed = "amend.allowed";
inline constexpr std::string_view amend_rejected = "amend.rejected";
inline constexpr std::string_view cancel_allowed = "cancel.allowed";
inline constexpr std::string_view cancel_rejected = "cancel.rejected";
inline constexpr std::string_view execution_ack = "execution.ack";
inline constexpr std::string_view execution_reject = "execution.reject";
inline constexpr std::string_view execution_fill = "execution.fill";
inline constexpr std::string_view execution_cancelled = "execution.cancelled";
inline constexpr std::string_view execution_expired = "execution.expired";
inline constexpr std::string_view execution_mark = "execution.mark";
/// A halt handed the working orders' ids to the cancel callback (RTS 6 Art. 12).
inline constexpr std::string_view guard_cancel_all = "guard.cancel_all";
inline constexpr std::string_view guard_reduce_only = "guard.reduce_only";  ///< mode entered
inline constexpr std::string_view guard_reduce_only_lifted = "guard.reduce_only_lifted";
/// CA log: a named person set a firm-wide budget (kakunin firm budget set).
inline constexpr std::string_view firm_budget_set = "firm.budget_set";
/// CA log: a named person released a held budget's orphaned leases (kakunin firm release).
inline constexpr std::string_view firm_orphans_released = "firm.orphans_released";
inline constexpr std::string_view ca_initialised = "ca.initialised";      ///< CA log: CA created
inline constexpr std::string_view agent_registered = "agent.registered";  ///< CA log
inline constexpr std::string_view crl_issued = "crl.issued";              ///< CA log: CRL signed
inline constexpr std::string_view certificate_issued = "certificate.issued";
inline constexpr std::string_view certificate_revoked = "certificate.revoked";
inline constexpr std::string_view scope_approved = "scope.approved";
inline constexpr std::string_view baseline_approved = "baseline.approved";
inline constexpr std::string_view incident_opened = "incident.opened";
inline constexpr std::string_view incident_closed = "incident.closed";
inline constexpr std::string_view review_signed = "review.signed";
inline constexpr std::string_view log_truncated_tail = "log.truncated_tail";
/// Entries a trail found in its write-ahead journal that the log lacked (a process that died).
inline constexpr std::string_view log_recovered = "log.recovered";
/// Records a trail could not make durable before its process stopped (no journal to keep them).
inline constexpr std::string_view log_gap = "log.gap";
/// A named operator accepted a log that did not verify as found (AuditTrailOptions).
inline constexpr std::string_view log_accepted = "log.accepted";
/// Rejected orders a full audit queue could not take: their count and the period.
inline constexpr std::string_view audit_unrecorded_rejections = "audit.unrecorded_rejections";
/// CA log: a named person's signed fleet-wide halt and resume (kakunin fleet halt|resume).
inline constexpr std::string_view fleet_halted = "fleet.halted";
inline constexpr std::string_view fleet_resumed = "fleet.resumed";
}  // namespace audit_event

/// True for the documented event names and for "incident." + [a-z0-9_.]+.
bool is_valid_audit_event(std::string_view name) noexcept;

/// Kakunin's canonical JSON: RFC 8785 for ASCII member names and integer-only numbers, which is
/// members sorted by name, no whitespace, shortest escapes, integers written exactly. Throws
/// kakunin::Error (invalid_input, message naming the member) for malformed JSON, a floating-point
/// number anywhere, a non-ASCII member name or a duplicate member name.
std::string canonical_json(std::string_view json);

/// One audit record. `canonical` is the canonical text of the record without `sig`; the other
/// members are parsed copies of what it contains.
struct AuditRecord {
    std::uint64_t seq = 0;
    TimeNs ts_ns = 0;
    std::string log_id;
    std::string event;
    std::string canonical;  ///< the canonical bytes: what the leaf hash and `sig` cover
    std::string sig;        ///< base64 signature over `canonical`, or empty

    /// The record as one JSON Lines line (canonical text with `sig` when present; no newline).
    std::string line() const;
    /// SHA-256(0x00 || canonical).
    MerkleHash leaf_hash() const { return merkle_leaf_hash(canonical); }
};

/// Builds a record. `payload_json` must be a JSON object; it is canonicalised (see
/// canonical_json). Throws kakunin::Error (invalid_input) for an unknown event or bad payload.
AuditRecord make_audit_record(std::uint64_t seq, TimeNs ts_ns, std::string_view log_id,
                              std::string_view agent, std::string_view cert_fp,
                              std::string_view event, std::string_view payload_json);

/// Parses one record line, strictly: it must be the canonical text of a record object with
/// exactly the DESIGN §5 members. Throws kakunin::Error (invalid_input) saying what is wrong.
AuditRecord parse_audit_record(std::string_view line);

/// A signed statement that the log `log_id` had `size` records with Merkle root `root`.
struct AuditCheckpoint {
    std::string log_id;
    std::uint64_t size = 0;
    MerkleHash root{};
    TimeNs ts_ns = 0;
    std::string key_fp;  ///< "sha256:" + hex SHA-256 of the signer's certificate (DER)
    std::vector<std::uint8_t> sig;

    /// The exact text the signature covers:
    /// "kakunin-checkpoint/v1\n" log_id "\n" size "\n" root_hex "\n" ts_ns "\n".
    std::string signed_text() const;
    /// The checkpoint as one JSON Lines line (canonical JSON; no newline).
    std::string line() const;
};

/// Parses one checkpoint line, strictly (canonical text, exactly the DESIGN §5 members).
AuditCheckpoint parse_audit_checkpoint(std::string_view line);

/// Who signs: a key in a Kms and the fingerprint of the certificate that carries its public key.
/// The Kms is borrowed and must outlive every use of the signer (a reference_wrapper, so that
/// signers stay assignable: AuditSigner{kms, key, fp} binds it).
struct AuditSigner {
    std::reference_wrapper<Kms> kms;
    KeyHandle key;
    std::string key_fp;
};

/// "sha256:" + lowercase hex SHA-256 of a certificate's DER encoding.
std::string certificate_fingerprint(const std::vector<std::uint8_t>& certificate_der);

/// Signs the record's canonical bytes and sets `record.sig`. Throws what the Kms throws.
void sign_audit_record(const AuditSigner& signer, AuditRecord& record);
/// Builds and signs a checkpoint. Throws what the Kms throws.
AuditCheckpoint sign_audit_checkpoint(const AuditSigner& signer, std::string_view log_id,
                                      std::uint64_t size, const MerkleHash& root, TimeNs ts_ns);

/// Standard base64 (RFC 4648 §4, with padding), as used for `sig` members.
std::string base64_encode(const std::uint8_t* data, std::size_t size);
/// Strict inverse of base64_encode; throws kakunin::Error (invalid_input).
std::vector<std::uint8_t> base64_decode(std::string_view text);

}  // namespace kakunin
