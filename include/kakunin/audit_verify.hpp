// kakunin/audit_verify.hpp — offline verification of an audit log (JSON Lines, DESIGN §5) against
// a set of certificates: recomputes leaf hashes and Merkle roots, checks checkpoint and record
// signatures and seq continuity, and names the first bad seq. Verdicts are values.
//
//   auto certs = kakunin::AuditCertificates::from_directory("evidence/certs");
//   kakunin::AuditVerifyResult r = kakunin::verify_audit_log_file("agent-7.jsonl", certs);
//   if (!r.ok) std::cerr << "seq " << r.first_bad_seq << ": " << r.message << "\n";
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/audit_merkle.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/kms.hpp"

namespace kakunin {

/// Certificates by fingerprint ("sha256:" + hex SHA-256 of the DER), with their public keys
/// loaded once and whom each may sign for (docs/audit-format.md §5, "Who signs which log"): a
/// CA certificate (basicConstraints CA) signs only the CA log (`log_id` "ca"); any other
/// certificate signs only the logs of the agent its subject names (its one CN, the agent id),
/// unless added for an agent explicitly. Not synchronised; share a const instance between
/// threads only for lookups.
class AuditCertificates {
public:
    AuditCertificates();
    ~AuditCertificates();
    AuditCertificates(AuditCertificates&&) noexcept;
    AuditCertificates& operator=(AuditCertificates&&) noexcept;

    /// Every *.pem, *.crt, *.cer and *.der file in `dir` (a PEM file may hold several
    /// certificates). A file that holds no certificate (a CRL, a key) is skipped and named in
    /// notes(). Throws kakunin::Error (io) for a directory or file that cannot be read.
    static AuditCertificates from_directory(const std::string& dir);
    /// Adds one certificate (DER); returns its fingerprint. Throws kakunin::Error (invalid_input,
    /// crypto) for a malformed certificate or a key other than Ed25519 / ECDSA P-256.
    std::string add_der(const std::vector<std::uint8_t>& der);
    /// Adds one end-entity certificate that signs for `agent` whatever its subject names (a key
    /// kept for one agent's log under another subject); a certificate already added is bound to
    /// `agent` instead of what its subject names. Throws like add_der, and
    /// kakunin::Error (invalid_input) for a CA certificate or an empty `agent`.
    std::string add_der(const std::vector<std::uint8_t>& der, std::string_view agent);
    /// Adds every certificate of a PEM text or a DER file's content. Throws kakunin::Error (io,
    /// invalid_input) naming the file when it holds no certificate.
    void add_file(const std::string& path);

    bool contains(std::string_view fingerprint) const;
    std::size_t size() const;
    /// Verifies `sig` over `message` with the key of the certificate `fingerprint`; false when
    /// the certificate is unknown or the signature does not verify.
    bool verify(std::string_view fingerprint, const std::uint8_t* message, std::size_t size,
                const std::uint8_t* sig, std::size_t sig_size) const;

    /// Empty when the certificate `fingerprint` may sign lines of the log `log_id` whose
    /// records concern `agent`; else why not, in one line starting with the fingerprint (to
    /// follow "signed by "). The verifier asks this of every record signature and checkpoint.
    std::string signer_problem(std::string_view fingerprint, std::string_view log_id,
                               std::string_view agent) const;

    /// One certificate that may sign, as added.
    struct Entry {
        std::string fingerprint;
        std::vector<std::uint8_t> der;
        std::string source;  ///< the file it was read from (empty for add_der)
        std::string agent;   ///< whom it signs for (empty for a CA certificate)
        bool ca = false;     ///< a CA certificate: signs the CA log only
    };
    /// Every certificate that may sign, in the order added: what a caller checks against its
    /// trust anchor (kakunin audit verify --ca).
    std::vector<Entry> entries() const;
    /// What from_directory() skipped, one line per file naming it and why.
    const std::vector<std::string>& notes() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

/// Empty when `log_id` may hold the records of `agent`: the CA log "ca" holds the CA's records
/// (agent "ca"); any other log holds one agent's, and its id is the agent id or the agent id
/// followed by "." and a suffix ("agent-7.replay"). Else why not, in one line.
std::string audit_log_agent_problem(std::string_view log_id, std::string_view agent);

/// The signature check the verifier uses, over a DER SubjectPublicKeyInfo: Ed25519 (64-byte
/// signatures) or ECDSA P-256 with SHA-256 (DER signatures, canonical encoding only). Throws
/// kakunin::Error (invalid_input, crypto) for an unusable key or one whose algorithm differs from
/// `key.algorithm`; returns false for any bad signature.
bool verify_audit_signature(const PublicKeyInfo& key, const std::uint8_t* message, std::size_t size,
                            const std::uint8_t* sig, std::size_t sig_size);

/// What was wrong, in the order the checks run on each line.
enum class AuditProblem : std::uint8_t {
    none = 0,
    empty_log,                  ///< no line at all
    malformed_line,             ///< not JSON, not canonical, missing/extra/ill-typed member, float
    wrong_log_id,               ///< a line of another log (spliced)
    seq_gap,                    ///< seq is not the next one (deleted, inserted or reordered)
    unknown_certificate,        ///< cert_fp / key_fp names no certificate given
    bad_record_signature,       ///< a record's `sig` does not verify over its canonical bytes
    missing_record_signature,   ///< unsigned record while signatures are required
    bad_checkpoint_signature,   ///< a checkpoint's `sig` does not verify
    checkpoint_regressed,       ///< a checkpoint smaller than an earlier one
    checkpoint_beyond_records,  ///< a checkpoint covers records that are not in the log
    root_mismatch,              ///< the recomputed root differs from the checkpoint's
    not_covered,                ///< records after the last checkpoint (log not closed)
    known_checkpoint_mismatch,  ///< the log does not extend the checkpoint the auditor holds
    wrong_agent,   ///< a record of another agent than the log's, or a log id not the agent's
    wrong_signer,  ///< a line signed by a certificate that may not sign this log
};
const char* to_string(AuditProblem p) noexcept;

struct AuditVerifyOptions {
    /// Fail on a record without `sig` (for deployments that sign every record).
    bool require_record_signatures = false;
    /// Fail when records follow the last checkpoint (a closed log ends with a checkpoint).
    /// When false, such records are still counted in AuditVerifyResult::uncovered_records.
    bool require_closed = true;
    /// The log_id the log must have; empty: taken from the first line.
    std::string expected_log_id;
    /// A checkpoint the auditor obtained earlier (e.g. from the last export): the log must
    /// contain at least its size and the same root at that size. This is what detects a log
    /// cut back exactly at an earlier checkpoint.
    std::optional<AuditCheckpoint> known_checkpoint;
};

struct AuditVerifyResult {
    bool ok = false;
    AuditProblem problem = AuditProblem::none;
    /// The first seq that cannot be trusted (for a root or checkpoint signature problem: the
    /// first seq the failing checkpoint should have vouched for). Meaningful when !ok.
    std::uint64_t first_bad_seq = 0;
    std::uint64_t line = 0;  ///< 1-based line of the problem (0 when found at the end)
    std::string message;     ///< one line, names the seq and what is wrong

    std::string log_id;
    std::string agent;                    ///< the agent the log's records concern
    std::uint64_t records = 0;            ///< records read
    std::uint64_t signed_records = 0;     ///< of which carried a verified `sig`
    std::uint64_t checkpoints = 0;        ///< checkpoints verified
    std::uint64_t covered = 0;            ///< size of the last verified checkpoint
    MerkleHash root{};                    ///< its root
    std::uint64_t uncovered_records = 0;  ///< records after the last verified checkpoint
};

/// Streaming verifier: feed lines in order, then finish(). Stops at the first problem (later
/// lines are ignored). Single-threaded. Keeps every complete subtree hash (about 64 bytes per
/// record) so that it can check checkpoints of any earlier size and hand out proofs.
class AuditLogVerifier {
public:
    explicit AuditLogVerifier(const AuditCertificates& certificates,
                              AuditVerifyOptions options = {});
    ~AuditLogVerifier();
    AuditLogVerifier(const AuditLogVerifier&) = delete;
    AuditLogVerifier& operator=(const AuditLogVerifier&) = delete;

    /// One line without its newline. Returns false once a problem has been found.
    bool add_line(std::string_view line);
    /// Bytes after the last newline of a file: a line whose write did not complete (a crash).
    /// Always a malformed_line finding, unless a problem was found before.
    void add_torn_tail(std::string_view tail);
    /// The verdict over everything fed so far.
    AuditVerifyResult finish();
    /// The Merkle tree over the records read so far (for inclusion and consistency proofs
    /// in an export, once the log has verified).
    const MerkleTree& tree() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

/// Verifies a JSON Lines file. An unreadable file is a kakunin::Error (io); everything about its
/// content is in the result.
AuditVerifyResult verify_audit_log_file(const std::string& path,
                                        const AuditCertificates& certificates,
                                        const AuditVerifyOptions& options = {});
/// Verifies one exported record on its own (docs/audit-format.md §9): the checkpoint's signature,
/// the record's inclusion in it through `proof`, and the record's own `sig` when present. Returns
/// an empty string when all hold, else what failed. Never throws for bad input.
std::string verify_audit_record_inclusion(std::string_view record_line,
                                          const std::vector<MerkleHash>& proof,
                                          const AuditCheckpoint& checkpoint,
                                          const AuditCertificates& certificates);

/// Verifies lines held in memory (e.g. MemoryAuditSink::lines()).
AuditVerifyResult verify_audit_lines(const std::vector<std::string>& lines,
                                     const AuditCertificates& certificates,
                                     const AuditVerifyOptions& options = {});

}  // namespace kakunin
