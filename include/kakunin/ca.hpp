// kakunin/ca.hpp — the human records that authorise an agent and the certificate authority that
// turns an approved scope into a short-lived agent certificate (DESIGN §3, §6).
//
//   auto kms = std::shared_ptr<kakunin::Kms>(kakunin::SoftwareKms::open("state/keys"));
//   auto ca = kakunin::LocalCa::init(kms, clock, {"state"});            // kakunin ca init
//   ca->register_agent({"agent-7", "Desk 3", "BTC market making", clock.now_ns(), "Jane Roe"});
//   auto approval = kakunin::approve_scope(*kms, "agent-7", "Jane Doe", scope, clock.now_ns());
//   ca->record_approval(approval, scope);                              // verifies it first
//   kakunin::AgentCertificate cert = ca->issue_for_agent("agent-7", agent_public_key_der);
//   ca->revoke(cert.serial(), "keyCompromise: anomaly score 0.91");
//   ca->record_event("baseline.approved", R"({"agent":"agent-7","approver":"Jane Doe"})");
//
// Every act of the CA (creation, registration, scope approval, issuance, revocation, CRL) is a
// record in its own signed audit log, STATE/audit/ca.jsonl (log_id "ca", DESIGN §5), durable
// before the call returns; `kakunin audit verify --log STATE/audit/ca.jsonl --ca STATE/ca.pem`
// verifies it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/certificate.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/kms.hpp"
#include "kakunin/scope.hpp"

namespace kakunin {

/// Who created an agent, when, and for what.
struct AgentRegistration {
    std::string agent_id;  ///< 1..64 of [A-Za-z0-9._-], starting with a letter or digit
    std::string owner;
    std::string purpose;
    TimeNs created_at = 0;
    std::string created_by;
};

/// Throws kakunin::Error (invalid_input) unless `agent_id` is 1..64 characters of
/// [A-Za-z0-9._-] starting with a letter or digit (it names files and certificate subjects).
void validate_agent_id(std::string_view agent_id);

std::string to_json(const AgentRegistration& r);
/// Throws kakunin::Error (invalid_input) naming the member.
AgentRegistration agent_registration_from_json(std::string_view json);

/// A named person's signed statement that `agent_id` may act within the scope whose canonical
/// JSON (kakunin::to_json) hashes to `scope_sha256`.
struct ScopeApproval {
    std::string agent_id;
    std::string approver;
    TimeNs approved_at = 0;
    std::string scope_sha256;  ///< lowercase hex SHA-256 of kakunin::to_json(scope)
    KeyAlgorithm algorithm = KeyAlgorithm::ed25519;
    std::vector<std::uint8_t> approver_public_key;  ///< SubjectPublicKeyInfo DER
    std::vector<std::uint8_t> signature;  ///< approver's Kms signature of scope_approval_text
};

/// Lowercase hex SHA-256 over kakunin::to_json(scope).
std::string scope_sha256_hex(const Scope& scope);
/// The Kms label of a person's key: "approver:" + name.
std::string approver_key_label(std::string_view approver);
/// The exact bytes an approver signs (UTF-8):
///   "kakunin-scope-approval/v1\n" agent_id "\n" approver "\n" approved_at (decimal ns) "\n"
///   scope_sha256 "\n"
std::string scope_approval_text(const ScopeApproval& approval);
/// Signs an approval with the approver's key in `kms` (label approver_key_label(approver),
/// created with `algorithm` on first use). Throws kakunin::Error (invalid_input) for an invalid
/// scope or agent id, (kms) if signing fails.
ScopeApproval approve_scope(Kms& kms, std::string_view agent_id, std::string_view approver,
                            const Scope& scope, TimeNs approved_at,
                            KeyAlgorithm algorithm = KeyAlgorithm::ed25519);
/// True if the approval's hash matches `scope` and its signature verifies under its own public
/// key. (Whether that key belongs to the named person is the CA's check.) Never throws.
bool verify_scope_approval(const ScopeApproval& approval, const Scope& scope) noexcept;
std::string to_json(const ScopeApproval& a);
ScopeApproval scope_approval_from_json(std::string_view json);

/// What a CA needs to issue one agent certificate.
struct IssueRequest {
    std::string agent_id;
    Scope scope;
    ScopeApproval approval;
    std::vector<std::uint8_t> public_key;  ///< the agent's SubjectPublicKeyInfo DER
    std::optional<TimeNs> not_before;      ///< default: the CA clock's now
    std::chrono::seconds validity{0};      ///< 0: the CA's default (24 h)
    bool simulation = false;               ///< replay certificate: subject gets OU=simulation
};

struct Revocation {
    std::string serial;  ///< lowercase hex
    std::string agent_id;
    std::string reason;
    TimeNs revoked_at = 0;
};

/// Threading: implementations take their own locks; any member may be called from any thread
/// (the Guard's background worker calls revoke() on automatic revocation). Calls may block on
/// the Kms and on storage. Errors throw kakunin::Error.
class CertificateAuthority {
public:
    virtual ~CertificateAuthority() = default;

    /// Issues a certificate, or throws kakunin::Error (unauthorised) when the approval does not
    /// cover the request.
    virtual AgentCertificate issue(const IssueRequest& request) = 0;
    /// Revokes an issued certificate and publishes a new CRL. Revoking twice is a no-op.
    /// Throws kakunin::Error (not_found) for a serial this CA did not issue.
    virtual void revoke(std::string_view serial_hex, std::string_view reason) = 0;
    /// The current CRL, reissued when missing or past half its lifetime.
    virtual CertificateRevocationList current_crl() = 0;
    virtual TrustAnchor trust_anchor() const = 0;

    std::string crl_pem() { return current_crl().pem(); }
};

struct LocalCaOptions {
    std::string state_dir;  ///< ca.pem, crl.pem, certs/, ...; empty: everything in memory
    std::string key_label = "ca";
    std::string oid_arc = std::string(default_oid_arc);
    std::chrono::seconds default_validity{24 * 3600};
    std::chrono::seconds crl_validity{3600};  ///< nextUpdate - thisUpdate
    /// How long an operation waits for the state directory's lock while another process (the
    /// command line, another LocalCa) holds it, before it throws kakunin::Error (io) naming the
    /// holder.
    std::chrono::milliseconds lock_wait{5000};
};

struct CaInitOptions {
    KeyAlgorithm algorithm = KeyAlgorithm::ed25519;
    std::string name = "Kakunin CA";  ///< subject CN (O=Kakunin)
    std::chrono::seconds validity{5LL * 365 * 24 * 3600};
};

/// A CA over any Kms: the CA key stays in the Kms; every extension is built from the approved
/// scope with X509_CA::make_cert (a request's extensions are never copied); CRLs with a short
/// nextUpdate; state persisted in `state_dir`.
///
/// The CA log: every operation that changes the CA appends its records (ca.initialised,
/// agent.registered, scope.approved, certificate.issued, certificate.revoked, crl.issued; see
/// docs/audit-format.md) to the log "ca", each signed by the CA key through the Kms, followed by
/// a signed checkpoint, and makes them durable before it changes anything else and before it
/// returns; if that fails, the operation throws and has changed nothing. The log is
/// STATE/audit/ca.jsonl (a FileAuditSink) or, for an in-memory CA, a MemoryAuditSink. It
/// continues across open(). After a failed write whose outcome is unknown, further operations
/// throw kakunin::Error (invalid_state) until the CA is opened again.
///
/// Sharing a state directory: the CA log's file lock (flock on STATE/audit/ca.jsonl) is held for
/// the length of one member call, not while the CA is open, so a trading process can keep
/// `LocalCa::open(STATE)` for automatic revocation while `kakunin crl`, `cert issue`, `incident
/// ack`... run on the same directory. Each call, under the lock, first continues from what other
/// processes recorded since its last call (the log's seq and Merkle tree, and the
/// registrations, approvals, certificates, revocations and latest CRL it acts on, after
/// verifying their lines with the CA key), so operations of several processes interleave into
/// one log that verifies, CRL numbers are never reused and a revocation made by one process is
/// in the next CRL another issues. A call that finds the lock held waits up to
/// LocalCaOptions::lock_wait (5 s), then throws kakunin::Error (io) naming the holder's pid,
/// program and since when it holds the lock (from STATE/audit/ca.jsonl.holder).
class LocalCa final : public CertificateAuthority {
public:
    /// Creates the CA key (or reuses one of the same algorithm under the label), a self-signed
    /// CA certificate and an empty CRL. Throws kakunin::Error (invalid_state) if `state_dir`
    /// already holds a CA.
    static std::unique_ptr<LocalCa> init(std::shared_ptr<Kms> kms, const Clock& clock,
                                         LocalCaOptions options, const CaInitOptions& init = {});
    /// Opens an existing state directory. Throws kakunin::Error (not_found) without ca.pem.
    /// What the CA acts on (registrations, scope approvals, issued certificates, revocations,
    /// the latest CRL) is read from its log, STATE/audit/ca.jsonl, after every line of it has
    /// verified with the key of ca.pem; the state files are checked against it. Throws
    /// kakunin::Error (invalid_state), naming the file, for a missing, empty or unverifiable log
    /// and for a state file that differs from the log or names what the log does not (restored
    /// from an older state, altered, copied in). A file missing for something the log holds is
    /// written again from the log.
    static std::unique_ptr<LocalCa> open(std::shared_ptr<Kms> kms, const Clock& clock,
                                         LocalCaOptions options);
    ~LocalCa() override;
    LocalCa(const LocalCa&) = delete;
    LocalCa& operator=(const LocalCa&) = delete;

    /// Refuses (unauthorised) unless the agent is registered, the approval names it, its hash
    /// equals the requested scope's, its signature verifies, and its key is the approver's key
    /// in this CA's Kms; and refuses a public key that was revoked for keyCompromise.
    AgentCertificate issue(const IssueRequest& request) override;
    /// A reason whose first word is keyCompromise revokes every certificate of the same public
    /// key (each recorded), in one CRL.
    void revoke(std::string_view serial_hex, std::string_view reason) override;
    CertificateRevocationList current_crl() override;
    TrustAnchor trust_anchor() const override;

    /// Issues a fresh CRL now, whatever the current one's age.
    CertificateRevocationList issue_crl();

    /// The state directory's lock held across several calls, for a caller that must keep other
    /// processes out between them (kakunin baseline approve: the next version of a file kept
    /// beside the CA, then its record). Calls this thread makes meanwhile run inside it; other
    /// threads wait for it, other processes up to their lock_wait. Keep it short: an in-process
    /// CA's automatic revocation waits for it too. End it on the thread that took it.
    class Hold {
    public:
        Hold(Hold&& other) noexcept;
        Hold& operator=(Hold&&) = delete;
        Hold(const Hold&) = delete;
        Hold& operator=(const Hold&) = delete;
        ~Hold();

    private:
        friend class LocalCa;
        struct Turn;
        explicit Hold(std::unique_ptr<Turn> turn);
        std::unique_ptr<Turn> m_turn;
    };
    /// Takes the lock (waiting like any call, then throwing kakunin::Error io naming the holder)
    /// and brings the CA up to date with the log.
    [[nodiscard]] Hold hold();

    /// Throws kakunin::Error (invalid_state) if the agent is already registered.
    void register_agent(const AgentRegistration& registration);
    std::optional<AgentRegistration> registration(std::string_view agent_id) const;

    /// Verifies (as issue() does) and stores the approval as the agent's current scope.
    void record_approval(const ScopeApproval& approval, const Scope& scope);
    struct ApprovedScope {
        ScopeApproval approval;
        Scope scope;
    };
    std::optional<ApprovedScope> approved_scope(std::string_view agent_id) const;

    /// Issues under the agent's current approved scope (no new approval needed for renewal).
    AgentCertificate issue_for_agent(std::string_view agent_id,
                                     const std::vector<std::uint8_t>& public_key,
                                     std::chrono::seconds validity = std::chrono::seconds{0});

    /// Appends one record to the CA's signed log (STATE/audit/ca.jsonl) and makes it durable before
    /// returning; returns its seq. For human sign-offs made outside the CA (baseline approvals,
    /// incident reviews, re-enables). Throws kakunin::Error (invalid_input) for an unknown event or
    /// a payload that is not a JSON object, and for the events the CA records itself
    /// (ca.initialised, agent.registered, scope.approved, certificate.issued,
    /// certificate.revoked, crl.issued, log.truncated_tail) and order.* (an agent's log); what
    /// the Kms or the sink throws otherwise. Cold path; thread-safe.
    std::uint64_t record_event(std::string_view event, std::string_view payload_json);
    /// Path of the CA log, empty for an in-memory CA.
    std::string audit_log_path() const;
    /// Every line of the CA log (records and checkpoints, JSON Lines without newlines), e.g. to
    /// verify an in-memory CA's log with kakunin::verify_audit_lines.
    std::vector<std::string> audit_log_lines() const;

    std::vector<Revocation> revocations() const;
    bool is_revoked(std::string_view serial_hex) const;
    /// Issued certificates, optionally only one agent's, oldest first.
    std::vector<AgentCertificate> issued_certificates(std::string_view agent_id = {}) const;
    std::optional<AgentCertificate> find_certificate(std::string_view serial_hex) const;
    const LocalCaOptions& options() const noexcept;

private:
    struct Impl;
    explicit LocalCa(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

/// The public key of a PKCS#10 request (PEM), after checking that it is an Ed25519 or ECDSA
/// P-256 key and that the request's self-signature (Ed25519, or ecdsa-with-SHA256) verifies
/// under it: the requester holds the key. Nothing else in the request (subject, extensions) is
/// used. Throws kakunin::Error (invalid_input) naming the reason.
std::vector<std::uint8_t> public_key_from_csr(std::string_view pem);

/// A PKCS#10 request (PEM) for the agent key `key` in `kms`, subject CN=agent_id, O=Kakunin
/// agent, signed by that key through the Kms (the proof of possession public_key_from_csr
/// checks; the key never leaves the Kms). What `kakunin agent keygen` writes on a trading host
/// and `kakunin cert issue --csr` certifies on the CA's. Throws kakunin::Error (invalid_input)
/// for an invalid agent id, what the Kms throws otherwise.
std::string agent_certificate_request(Kms& kms, const KeyHandle& key, std::string_view agent_id);

}  // namespace kakunin
