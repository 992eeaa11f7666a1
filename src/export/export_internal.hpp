// Private to src/export: the package layout, what export and verification share (the timeline
// and the report are derived from the package's own files by the same code on both sides, so
// that verification can re-derive them), and the tar.gz writer.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"

namespace kakunin::export_detail {

using json = nlohmann::json;

// ---- layout (docs/export.md) --------------------------------------------------------------------
inline constexpr const char* manifest_file = "manifest.json";
inline constexpr const char* signature_file = "manifest.sig";
inline constexpr const char* registration_file = "registration.json";
inline constexpr const char* ca_certificate_file = "certificates/ca.pem";
inline constexpr const char* certificates_dir = "certificates/";
inline constexpr const char* crl_file = "crl.pem";
inline constexpr const char* scope_approval_file = "approvals/scope.json";
inline constexpr const char* baselines_dir = "baseline/";
inline constexpr const char* extract_file = "audit/extract.jsonl";
inline constexpr const char* latest_checkpoint_file = "audit/latest-checkpoint.jsonl";
inline constexpr const char* ca_log_file = "audit/ca.jsonl";
inline constexpr const char* inclusion_file = "proofs/inclusion.jsonl";
inline constexpr const char* consistency_file = "proofs/consistency.jsonl";
inline constexpr const char* timeline_file = "timeline.json";
inline constexpr const char* report_file = "report.html";
inline constexpr const char* signature_format = "kakunin-export-signature/v1";

/// The files every package has, whatever its manifest says.
const std::vector<std::string>& required_files();

/// The default warning and revocation thresholds (DESIGN §4): the report draws the approved
/// baseline's policy, and these only when the package has none (and says so).
inline constexpr std::uint32_t warn_ppm = 750'000;
inline constexpr std::uint32_t revoke_ppm = 850'000;

/// One line of a JSON Lines file, parsed (nlohmann keeps integers exact as int64/uint64).
struct LogLine {
    std::uint64_t number = 0;  ///< 1-based line in its file
    std::string text;
    json value;
    bool is_record() const { return value.value("kind", "") == "record"; }
};

/// Splits a JSON Lines text into parsed lines; throws kakunin::Error (invalid_input) naming
/// `file` and the line for anything that is not one JSON object per line.
std::vector<LogLine> parse_json_lines(std::string_view text, const std::string& file);

/// What the timeline and the report are derived from: the package's own files, parsed.
struct PackageView {
    json manifest;  ///< everything but "files" is used
    json registration;
    struct Certificate {
        std::string path;  ///< certificates/SERIAL.pem
        json info;         ///< certificates/SERIAL.json
    };
    std::vector<Certificate> certificates;
    json ca_certificate;  ///< {"subject","fingerprint","not_before_ns","not_after_ns"}
    json crl;             ///< {"this_update_ns","next_update_ns","revoked":[serial...],
                          ///<  "entries":[{"serial","revoked_at_ns"}...]}
    std::optional<json> scope_approval;  ///< approvals/scope.json
    struct BaselineFiles {
        std::uint64_t version = 0;
        std::optional<json> baseline;  ///< format/agent/observed_* and policy are read
        std::optional<json> approval;
    };
    std::vector<BaselineFiles> baselines;
    std::vector<LogLine> extract;
    std::vector<LogLine> ca_log;
    json timeline;  ///< as derived (export) or as read (verify)
};

/// Loads everything but report.html from a package directory (after the hashes have been
/// checked, on the verify side). Throws kakunin::Error naming the file.
PackageView load_package_view(const std::string& dir, const json& manifest);

/// The incident timeline (JSON array) from the extract and the CA log: warnings, incidents,
/// escalations, revocations, halts, resumes, approvals and reviews concerning `agent` within
/// [from, to], ordered by ts_ns, each with who, when and the scores.
json build_timeline(const std::string& agent, const std::vector<LogLine>& extract,
                    const std::vector<LogLine>& ca_log, std::optional<TimeNs> from,
                    std::optional<TimeNs> to);

/// report.html: self-contained HTML with inline CSS and SVG, no script, no network.
std::string render_report(const PackageView& view);

/// Writes `entries` (paths relative to `dir`, directories end with '/') under `top` into a
/// POSIX ustar archive, gzip-compressed with Botan's zlib-based gzip compressor, at
/// `out_path`. Entries are stored in the order given, owned by uid/gid 0, dated `mtime_s`.
void write_tar_gz(const std::string& dir, const std::string& top,
                  const std::vector<std::string>& entries, const std::string& out_path,
                  std::int64_t mtime_s);

// ---- small helpers
// --------------------------------------------------------------------------------
std::string read_file_bytes(const std::string& path);
void write_file_bytes(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);
bool is_dir(const std::string& path);
void make_dirs(const std::string& path);
std::string sha256_hex(std::string_view bytes);
std::string html_escape(std::string_view text);
/// "2024-01-08 07:00:00 UTC" (seconds), for people.
std::string human_time(TimeNs t);

}  // namespace kakunin::export_detail
