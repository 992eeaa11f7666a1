// kakunin/error.hpp — the one exception type of Kakunin's cold paths.
//
// Verdicts on orders are values (see decision.hpp) and never throw. Configuration, parsing,
// cryptographic and storage errors on cold paths throw kakunin::Error, whose category lets a
// caller branch without parsing the message:
//
//   try { auto scope = kakunin::parse_scope_json(text); }
//   catch (const kakunin::Error& e) { if (e.category() == kakunin::ErrorCategory::invalid_input)
//   ... }
#pragma once

#include <stdexcept>
#include <string>

namespace kakunin {

enum class ErrorCategory {
    invalid_input,  ///< malformed file, JSON member, CSV row, DER ... (message names where)
    invalid_state,  ///< the call is not allowed now (e.g. resume without a halt)
    crypto,         ///< key, signature or certificate operation failed
    kms,            ///< the key-management backend refused or failed
    io,             ///< file system
    database,       ///< PostgreSQL
    network,        ///< HTTP and other remote calls
    not_found,      ///< a named key, agent, certificate or record does not exist
    unauthorised,   ///< a required human approval or credential is missing or does not match
};

inline const char* to_string(ErrorCategory c) noexcept {
    switch (c) {
        case ErrorCategory::invalid_input: return "invalid_input";
        case ErrorCategory::invalid_state: return "invalid_state";
        case ErrorCategory::crypto: return "crypto";
        case ErrorCategory::kms: return "kms";
        case ErrorCategory::io: return "io";
        case ErrorCategory::database: return "database";
        case ErrorCategory::network: return "network";
        case ErrorCategory::not_found: return "not_found";
        case ErrorCategory::unauthorised: return "unauthorised";
    }
    return "unknown";
}

class Error : public std::runtime_error {
public:
    Error(ErrorCategory category, const std::string& message)
        : std::runtime_error(message), m_category(category) {}
    ErrorCategory category() const noexcept { return m_category; }

private:
    ErrorCategory m_category;
};

}  // namespace kakunin
