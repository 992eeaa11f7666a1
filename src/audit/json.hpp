// Private to src/audit: strict JSON helpers shared by the record code, the writer and the
// verifier. nlohmann/json stays behind this header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kakunin/audit_record.hpp"

namespace kakunin::audit_detail {

using json = nlohmann::json;

/// The deepest nesting of objects and arrays a reader accepts (the top-level value counts as
/// one). Deeper text is refused before nlohmann sees it: its serialiser, comparison and our own
/// walks over a value recurse once per level, so unbounded nesting would overflow the stack.
/// The canonical scanner (canonical_scan.hpp) has the same bound.
inline constexpr std::size_t max_json_depth = 256;

/// False when objects and arrays in `text` nest deeper than `limit` (brackets inside strings do
/// not count). One pass, no allocation; says nothing else about whether `text` is JSON.
bool json_depth_within(std::string_view text, std::size_t limit = max_json_depth) noexcept;

/// Parses `text`; throws kakunin::Error (invalid_input) for malformed JSON, nesting deeper than
/// max_json_depth or a duplicate member name. `what` prefixes the message ("payload",
/// "line 12").
json parse_strict(std::string_view text, const std::string& what);

/// Empty when `value` meets the canonical-form preconditions (no floating-point number, only
/// ASCII member names), else a message naming the member path (under `path`).
std::string precondition_violation(const json& value, const std::string& path);

/// The fixed parts of a log's record text, escaped once.
struct RecordTemplate {
    std::string head;  ///< {"agent":...,"cert_fp":...,"event":"
    std::string mid;   ///< ","kind":"record","log_id":...,"payload":
};
RecordTemplate make_record_template(std::string_view log_id, std::string_view agent,
                                    std::string_view cert_fp);
/// Appends the canonical record text to `out` (the event must already be validated, the payload
/// canonical).
void build_record_text(const RecordTemplate& t, std::string_view event,
                       std::string_view canonical_payload, std::uint64_t seq, TimeNs ts_ns,
                       std::string& out);

/// The JSON Lines form of a record: `canonical` with "sig" spliced in before the last member
/// ("ts_ns" sorts after "sig").
std::string record_line(std::string_view canonical, std::string_view sig_b64);

/// Parts of a record's canonical bytes, which order the members by name (agent, cert_fp, event,
/// kind, log_id, payload, seq, ts_ns): the payload object's text, and the cert_fp string's
/// content. Empty if `canonical` is not a record's canonical text. No allocation. (A raw `"`
/// never occurs inside a JSON string, so the first `,"payload":` is the top-level member and
/// the last `,"seq":` the one after it.)
std::string_view record_payload_text(std::string_view canonical) noexcept;
std::string_view record_cert_fp(std::string_view canonical) noexcept;

/// Non-empty and only base64 characters (the `sig` of a record).
bool is_base64_text(std::string_view s);

enum class LineKind { record, checkpoint };

/// Parses and validates one line without throwing: on failure returns false and sets `error`.
/// On success exactly one of `record` / `checkpoint` is filled according to `kind`.
/// `leaf` receives the record's leaf hash when kind is record.
struct ParsedLine {
    LineKind kind = LineKind::record;
    AuditRecord record;          ///< its `canonical` may be stale: use `canonical` below
    std::string_view canonical;  ///< the record's canonical bytes (into the line or `record`)
    std::string agent;
    std::string cert_fp;
    AuditCheckpoint checkpoint;
};
bool parse_line(std::string_view line, ParsedLine& out, std::string& error);

/// The two halves of parse_line, exposed for the differential test: the one-pass scanner over
/// canonical text (false for anything unusual, without a message), and the nlohmann-based path
/// that explains problems. They must accept exactly the same lines.
bool parse_line_fast(std::string_view line, ParsedLine& out);
bool parse_line_detailed(std::string_view line, ParsedLine& out, std::string& error);

}  // namespace kakunin::audit_detail
