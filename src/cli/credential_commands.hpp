// The command line's side of publishing CRLs and certificates through PostgreSQL
// (credential_commands.cpp): shared by `kakunin crl`, `cert issue` and `cert renew`.
#pragma once

#include <string>

#include "kakunin/postgres_credentials.hpp"

namespace kakunin::cli {

/// "published to PostgreSQL as credential #N" (or "already published ... as #N").
std::string publication_line(const PublishedCredential& published);

}  // namespace kakunin::cli
