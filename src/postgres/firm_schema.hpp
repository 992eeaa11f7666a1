// Private to src/postgres: the tables of firm-wide budgets (firm_schema.cpp), for init-db.
#pragma once

#include <string>

#include "postgres/pg.hpp"

namespace kakunin::pg {

/// Creates the firm-budget tables and functions when missing (as `owner`, under the
/// maintenance switch) and grants `app` what PostgresFirmLimits and the CLI need. Both roles
/// are quoted identifiers. Runs in the caller's transaction.
void install_firm_schema(Connection& c, const std::string& owner, const std::string& app);

}  // namespace kakunin::pg
