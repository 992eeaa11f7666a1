// Private to src/postgres: the tables of published CRLs and certificates (docs/postgres.md §11).
#pragma once

#include <string>

#include "postgres/pg.hpp"

namespace kakunin::pg {

/// Inside init_audit_database's transaction: creates kakunin_audit.published_crls and
/// published_certificates (as `owner`, under the maintenance switch) when they are missing, and
/// grants `app` what it needs. Both names quoted already. Running it again changes nothing.
void install_credential_tables(Connection& c, const std::string& owner, const std::string& app);

}  // namespace kakunin::pg
