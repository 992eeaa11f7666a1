// kakunin/export.hpp — the compliance export: one directory (and DIR.tar.gz beside it) holding
// the evidence behind one agent for a period, signed by the CA's key, that an auditor verifies
// offline without the firm's database (docs/export.md; MiCA Art. 94 requests).
//
//   auto kms = std::shared_ptr<kakunin::Kms>(kakunin::SoftwareKms::open("state/keys"));
//   auto ca = kakunin::LocalCa::open(kms, clock, {"state"});
//   kakunin::ExportOptions o;
//   o.state_dir = "state";  o.agent = "agent-7";  o.out_dir = "evidence-agent-7";
//   o.from_ns = kakunin::parse_timestamp("2024-01-08T00:00:00Z");
//   kakunin::ExportSummary s = kakunin::export_package(*ca, *kms, o, clock);
//
//   kakunin::ExportVerifyResult r = kakunin::verify_export_package("evidence-agent-7");
//   if (!r.ok) std::cerr << r.file << " line " << r.line << ": " << r.message << "\n";
//
// Exporting throws kakunin::Error on cold-path failures (a log that does not verify, a missing
// agent, an output directory that exists). Verification never throws for anything a package
// contains: the verdict is a value naming the first problem.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kakunin/ca.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/kms.hpp"

namespace kakunin {

/// The package format written into manifest.json ("format").
inline constexpr const char* export_format = "kakunin-export/v1";

/// The first line of the text the CA key signs for manifest.sig:
///   "kakunin-export-manifest/v1\n" + lowercase hex SHA-256 of manifest.json's bytes + "\n".
inline constexpr const char* export_manifest_signature_context = "kakunin-export-manifest/v1";

struct ExportOptions {
    std::string state_dir;  ///< the CA state directory (STATE)
    std::string agent;      ///< the registered agent
    /// Records with ts_ns >= from_ns and <= to_ns (both optional): the extract is the contiguous
    /// seq range from the first record at or after `from` to the last at or before `to`.
    std::optional<TimeNs> from_ns, to_ns;
    /// The log to export; empty: the agent id (e.g. "agent-7.replay" for a replay log).
    std::string log_id;
    /// Read the agent's log from PostgreSQL (libpq conninfo); empty: STATE/audit/LOG_ID.jsonl.
    std::string postgres;
    /// Where to write; must not exist yet (or be an empty directory). DIR.tar.gz goes beside it.
    std::string out_dir;
    bool write_tarball = true;
    /// The regulatory mapping as JSON (an array, see docs/export.md); empty: the built-in table
    /// derived from the project's reading of MiCA, Delegated Regulation 2025/1140 and RTS 6.
    std::string regulatory_mapping_json;
};

struct ExportSummary {
    std::string out_dir;
    std::string tarball;  ///< empty when not written
    std::string log_id;
    std::uint64_t records = 0;  ///< records in the extract
    std::uint64_t first_seq = 0, last_seq = 0;
    std::uint64_t checkpoints = 0;  ///< checkpoints in the extract
    std::uint64_t log_records = 0;  ///< records in the whole log at export time
    std::uint64_t timeline_entries = 0;
    std::uint64_t files = 0;         ///< files listed in the manifest
    std::string manifest_sha256;     ///< lowercase hex
    std::vector<std::string> notes;  ///< what the package cannot show (also in the report)
};

/// Builds the package for `options.agent` from the CA `ca` (opened on `options.state_dir`) and
/// signs manifest.json with the CA key (label ca.options().key_label) in `kms`. The agent's log
/// is verified from seq 0 first; the export refuses a log that does not verify, and refuses
/// records in the period that no checkpoint covers yet (message says which seq and to retry or
/// narrow --to). The finished package is verified with verify_export_package before returning.
/// Throws kakunin::Error naming the problem; on failure nothing is left in `out_dir`.
ExportSummary export_package(LocalCa& ca, Kms& kms, const ExportOptions& options,
                             const Clock& clock);

struct ExportVerifyOptions {
    /// PEM or DER of the CA certificate the auditor trusts (obtained independently, e.g. from the
    /// supervisor's register). When set, the package's certificates/ca.pem must be this
    /// certificate. When empty, the package is only checked against its own CA certificate:
    /// self-consistent, not proven to come from the firm's CA.
    std::vector<std::uint8_t> pinned_ca;
};

struct ExportVerifyResult {
    bool ok = false;
    /// The first problem: the package file it is in (relative path), the 1-based line where it
    /// applies (0: the whole file), the record's seq when a record is concerned.
    std::string file;
    std::uint64_t line = 0;
    std::optional<std::uint64_t> seq;
    std::string message;  ///< one line: "FILE line N (seq S): what is wrong"

    std::string agent, log_id;
    std::string ca_fingerprint;  ///< of the package's CA certificate
    bool ca_pinned = false;
    std::uint64_t files = 0, records = 0, checkpoints = 0, inclusion_proofs = 0,
                  consistency_proofs = 0, certificates = 0, baselines = 0, ca_log_records = 0,
                  timeline_entries = 0;
    std::vector<std::string> notes;  ///< what holds with a caveat (never a failed check)
};

/// Checks a package directory offline: the manifest signature against the package's CA
/// certificate (and that it is the pinned one), every file's SHA-256 and that none is missing
/// or extra, every certificate's chain to the CA and its decoded scope, the CRL's signature,
/// the scope approval, every baseline approval's signature and hash, every record's signature,
/// inclusion proof and checkpoint signature, the consistency between consecutive checkpoints,
/// the whole CA log, and that timeline.json and report.html are what the evidence produces.
/// Never throws; stops at the first problem.
ExportVerifyResult verify_export_package(const std::string& dir,
                                         const ExportVerifyOptions& options = {});

/// The built-in regulatory mapping (JSON array): which package file evidences which
/// requirement, with the text each relies on.
const std::string& default_regulatory_mapping_json();

}  // namespace kakunin
