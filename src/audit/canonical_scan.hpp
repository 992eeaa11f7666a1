// Private to src/audit: a validating scanner for Kakunin's canonical JSON (RFC 8785 with ASCII
// member names and integers only). It answers "is this text exactly the canonical form?" in one
// pass without building a document, which is what the writer (payloads) and the verifier (every
// line) need at hundreds of thousands of lines per second. Anything it refuses goes to the
// nlohmann-based path, which either explains the problem or, if it parses, is by definition not
// canonical.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kakunin::audit_detail {

/// True when `text` is exactly the canonical serialisation of a JSON value that meets the
/// preconditions: no whitespace, members sorted (strictly increasing, so no duplicates), ASCII
/// member names, shortest string escapes, valid UTF-8, integers in the 64-bit range without
/// fraction or exponent, nesting below 256 levels.
bool is_canonical_json(std::string_view text) noexcept;

/// A top-level member of a canonical object: its name (as written between the quotes) and the
/// exact text of its value.
struct CanonicalMember {
    std::string_view name;
    std::string_view value;
};

/// Like is_canonical_json for an object, also returning its top-level members in order. False
/// when the text is not a canonical object or has more than `max` members.
bool scan_canonical_object(std::string_view text, CanonicalMember* members, std::size_t max,
                           std::size_t& count) noexcept;

/// Decodes the text of a canonical JSON string (with its quotes) into `out`.
bool decode_canonical_string(std::string_view quoted, std::string& out);
/// Parses canonical integer text.
bool parse_canonical_u64(std::string_view text, std::uint64_t& out) noexcept;
bool parse_canonical_i64(std::string_view text, std::int64_t& out) noexcept;

}  // namespace kakunin::audit_detail
