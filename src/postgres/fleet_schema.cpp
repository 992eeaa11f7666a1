// The fleet's tables. kakunin_fleet holds live status (each Guard's row, each incident's row),
// which the application role updates in place: they are not audit records (the signed logs are).
// kakunin_audit.fleet_steps is append-only, like human_steps: each fleet halt or resume, as the
// person signed it; an INSERT NOTIFYs kakunin_fleet with its seq.
#include "postgres/fleet_schema.hpp"

#include <libpq-fe.h>

namespace kakunin::pg {
namespace {

constexpr const char* fleet_schema_sql = R"sql(
CREATE SCHEMA IF NOT EXISTS kakunin_fleet AUTHORIZATION @OWNER@;
SET LOCAL ROLE @OWNER@;
REVOKE ALL ON SCHEMA kakunin_fleet FROM PUBLIC;
CREATE TABLE IF NOT EXISTS kakunin_fleet.agents (
    agent_id text PRIMARY KEY CHECK (agent_id <> ''),
    host text NOT NULL,
    pid integer NOT NULL,
    process text NOT NULL,
    state text NOT NULL CHECK (state IN ('trading', 'reduce_only', 'halted', 'revoked')),
    halt_id text,
    halt_by text,
    halt_reason text,
    automatic boolean NOT NULL DEFAULT false,
    checks bigint NOT NULL,
    allowed bigint NOT NULL,
    rejected bigint NOT NULL,
    serial text,
    not_after timestamptz,
    open_incidents integer NOT NULL,
    publish_interval_ms integer NOT NULL CHECK (publish_interval_ms > 0),
    heartbeat timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS kakunin_fleet.incidents (
    incident_id text PRIMARY KEY CHECK (incident_id <> ''),
    agent_id text NOT NULL,
    state text NOT NULL,
    opened timestamptz NOT NULL,
    deadline timestamptz,
    escalated boolean NOT NULL,
    score_ppm integer NOT NULL,
    warnings bigint NOT NULL,
    acknowledged_by text,
    resolved_by text,
    updated timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_agent ON kakunin_fleet.incidents (agent_id);
RESET ROLE;
)sql";

constexpr const char* fleet_steps_sql = R"sql(
SET LOCAL kakunin.maintenance = on;
SET LOCAL ROLE @OWNER@;
CREATE TABLE kakunin_audit.fleet_steps (
    seq bigserial PRIMARY KEY,
    action text NOT NULL CHECK (action IN ('halt', 'resume')),
    by_person text NOT NULL CHECK (by_person <> ''),
    reason text NOT NULL CHECK (reason <> ''),
    payload text NOT NULL,
    ca_log_seq bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    xact xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX fleet_steps_xact ON kakunin_audit.fleet_steps (xact);
CREATE FUNCTION kakunin_audit.notify_fleet_step() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    PERFORM pg_notify('kakunin_fleet', json_build_object('seq', NEW.seq)::text);
    RETURN NULL;
END
$f$;
CREATE TRIGGER fleet_steps_notify AFTER INSERT ON kakunin_audit.fleet_steps
    FOR EACH ROW EXECUTE FUNCTION kakunin_audit.notify_fleet_step();
ALTER TABLE kakunin_audit.fleet_steps ENABLE ALWAYS TRIGGER fleet_steps_notify;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.fleet_steps
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.fleet_steps ENABLE ALWAYS TRIGGER worm;
REVOKE ALL ON kakunin_audit.fleet_steps FROM PUBLIC;
REVOKE ALL ON FUNCTION kakunin_audit.notify_fleet_step() FROM PUBLIC;
RESET ROLE;
SET LOCAL kakunin.maintenance = off;
)sql";

// The live tables only are the application role's to update; the steps it may add and read.
constexpr const char* fleet_app_sql = R"sql(
GRANT USAGE ON SCHEMA kakunin_fleet TO @APP@;
GRANT SELECT, INSERT, UPDATE ON kakunin_fleet.agents, kakunin_fleet.incidents TO @APP@;
GRANT SELECT (seq, action, by_person, reason, payload, ca_log_seq, recorded_at, xact),
      INSERT (action, by_person, reason, payload, ca_log_seq) ON kakunin_audit.fleet_steps TO @APP@;
GRANT USAGE ON SEQUENCE kakunin_audit.fleet_steps_seq_seq TO @APP@;
)sql";

std::string substitute(std::string text, const std::string& key, const std::string& value) {
    for (std::size_t pos; (pos = text.find(key)) != std::string::npos;)
        text.replace(pos, key.size(), value);
    return text;
}

}  // namespace

void init_fleet_schema(Connection& c, const std::string& owner, const std::string& app) {
    c.command(substitute(fleet_schema_sql, "@OWNER@", owner));
    if (PQntuples(c.exec("SELECT 1 FROM pg_catalog.pg_class WHERE oid = "
                         "pg_catalog.to_regclass('kakunin_audit.fleet_steps')")
                      .get()) == 0)
        c.command(substitute(fleet_steps_sql, "@OWNER@", owner));
    c.command(substitute(fleet_app_sql, "@APP@", app));
}

}  // namespace kakunin::pg
