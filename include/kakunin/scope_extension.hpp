// kakunin/scope_extension.hpp — the Scope as the DER value of one critical X.509 v3 extension
// (DESIGN §3). The ASN.1 module is in docs/scope-extension.md.
//
//   std::vector<std::uint8_t> der = kakunin::encode_scope_extension(scope);   // validates first
//   kakunin::Scope back = kakunin::decode_scope_extension(der);                // strict DER
//   std::string oid = kakunin::scope_extension_oid("1.3.6.1.4.1.99999.7");    // your own arc
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/scope.hpp"

namespace kakunin {

/// The documentation arc of RFC 5612 (enterprise number 32473). Deployers set their own
/// registered arc: certificates minted under this default must not leave a test bed.
inline constexpr std::string_view default_oid_arc = "1.3.6.1.4.1.32473.1";

/// OID of the scope extension under `arc`: arc + ".1". Throws kakunin::Error (invalid_input)
/// unless `arc` is a dotted OID of at least two arcs.
std::string scope_extension_oid(std::string_view arc = default_oid_arc);

/// DER of the extension value (the OCTET STRING's content). Runs kakunin::validate(scope)
/// first and throws its kakunin::Error (invalid_input) if the scope is not valid.
std::vector<std::uint8_t> encode_scope_extension(const Scope& scope);

/// Strict decoding: exact tags, minimal integers, the version checked, no trailing bytes, and
/// the input must be the one DER encoding of the decoded value. The result is validated again
/// with kakunin::validate. Throws kakunin::Error (invalid_input) whose message names the field,
/// e.g. "scope extension: maxTransaction.exponent: ...". Thread-safe (no shared state).
Scope decode_scope_extension(const std::uint8_t* der, std::size_t size);
inline Scope decode_scope_extension(const std::vector<std::uint8_t>& der) {
    return decode_scope_extension(der.data(), der.size());
}

}  // namespace kakunin
