// Private to src/postgres: the fleet's tables (docs/postgres.md, "Fleet state"), created by
// init_audit_database().
#pragma once

#include <string>

#include "postgres/pg.hpp"

namespace kakunin::pg {

/// Creates the fleet's tables where missing and grants the application role its rights; run
/// inside init-db's transaction, `owner` and `app` quoted. Re-running it is harmless.
void init_fleet_schema(Connection& c, const std::string& owner, const std::string& app);

}  // namespace kakunin::pg
