// Private helpers: hex, base64 and SHA-256 over Botan, so callers need not include Botan.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kakunin::crypto {

/// Lowercase hex.
std::string to_hex(const std::uint8_t* data, std::size_t size);
inline std::string to_hex(const std::vector<std::uint8_t>& v) { return to_hex(v.data(), v.size()); }

/// Throws kakunin::Error (invalid_input) naming `what` unless `hex` is an even run of hex digits.
std::vector<std::uint8_t> from_hex(std::string_view hex, std::string_view what);

std::string base64_encode(const std::vector<std::uint8_t>& data);
/// Throws kakunin::Error (invalid_input) naming `what` on malformed input.
std::vector<std::uint8_t> base64_decode(std::string_view text, std::string_view what);

std::vector<std::uint8_t> sha256(const std::uint8_t* data, std::size_t size);
inline std::vector<std::uint8_t> sha256(std::string_view s) {
    return sha256(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}
inline std::vector<std::uint8_t> sha256(const std::vector<std::uint8_t>& v) {
    return sha256(v.data(), v.size());
}
inline std::string sha256_hex(std::string_view s) { return to_hex(sha256(s)); }

/// "sha256:" + lowercase hex of SHA-256 over `der` (DESIGN §5 fingerprints).
inline std::string fingerprint(const std::vector<std::uint8_t>& der) {
    return "sha256:" + to_hex(sha256(der));
}

}  // namespace kakunin::crypto
