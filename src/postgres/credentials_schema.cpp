// kakunin_audit.published_crls and published_certificates: what the CA published for running
// Guards to take up (PostgresCredentialFeed). Append-only like every audit table; an INSERT
// NOTIFYs kakunin_credentials with its seq and kind. The columns say what the DER holds, for
// people and for the feed's first catch-up; the feed checks them against the DER and the Guard
// verifies the DER itself.
#include "postgres/credentials_schema.hpp"

namespace kakunin::pg {

namespace {

constexpr const char* credentials_sql = R"sql(
SET LOCAL kakunin.maintenance = on;
SET LOCAL ROLE @OWNER@;
-- One sequence for both tables: a seq names one row of the channel.
CREATE SEQUENCE kakunin_audit.credentials_seq;
CREATE TABLE kakunin_audit.published_crls (
    seq bigint PRIMARY KEY DEFAULT nextval('kakunin_audit.credentials_seq'),
    issuer text NOT NULL CHECK (issuer <> ''),
    crl_number bigint NOT NULL CHECK (crl_number >= 0),
    this_update_ns bigint NOT NULL,
    next_update_ns bigint NOT NULL CHECK (next_update_ns > this_update_ns),
    der bytea NOT NULL CHECK (octet_length(der) > 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    xact xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE UNIQUE INDEX published_crls_der ON kakunin_audit.published_crls (pg_catalog.sha256(der));
CREATE INDEX published_crls_xact ON kakunin_audit.published_crls (xact);
CREATE TABLE kakunin_audit.published_certificates (
    seq bigint PRIMARY KEY DEFAULT nextval('kakunin_audit.credentials_seq'),
    agent_id text NOT NULL CHECK (agent_id <> ''),
    serial text NOT NULL CHECK (serial ~ '^[0-9a-f]+$'),
    public_key_sha256 text NOT NULL CHECK (public_key_sha256 ~ '^[0-9a-f]{64}$'),
    not_before_ns bigint NOT NULL,
    not_after_ns bigint NOT NULL CHECK (not_after_ns > not_before_ns),
    der bytea NOT NULL CHECK (octet_length(der) > 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    xact xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE UNIQUE INDEX published_certificates_der
    ON kakunin_audit.published_certificates (pg_catalog.sha256(der));
CREATE INDEX published_certificates_xact ON kakunin_audit.published_certificates (xact);
CREATE INDEX published_certificates_agent ON kakunin_audit.published_certificates (agent_id);

CREATE FUNCTION kakunin_audit.notify_credential() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    PERFORM pg_notify('kakunin_credentials', json_build_object('seq', NEW.seq, 'kind',
        CASE TG_TABLE_NAME WHEN 'published_crls' THEN 'crl' ELSE 'certificate' END)::text);
    RETURN NULL;
END
$f$;
CREATE TRIGGER published_crls_notify AFTER INSERT ON kakunin_audit.published_crls
    FOR EACH ROW EXECUTE FUNCTION kakunin_audit.notify_credential();
ALTER TABLE kakunin_audit.published_crls ENABLE ALWAYS TRIGGER published_crls_notify;
CREATE TRIGGER published_certificates_notify AFTER INSERT ON kakunin_audit.published_certificates
    FOR EACH ROW EXECUTE FUNCTION kakunin_audit.notify_credential();
ALTER TABLE kakunin_audit.published_certificates ENABLE ALWAYS TRIGGER published_certificates_notify;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.published_crls
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.published_crls ENABLE ALWAYS TRIGGER worm;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.published_certificates
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.published_certificates ENABLE ALWAYS TRIGGER worm;
REVOKE ALL ON kakunin_audit.published_crls, kakunin_audit.published_certificates FROM PUBLIC;
REVOKE ALL ON SEQUENCE kakunin_audit.credentials_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION kakunin_audit.notify_credential() FROM PUBLIC;
RESET ROLE;
SET LOCAL kakunin.maintenance = off;
)sql";

// What the application role may do with them: INSERT the described columns, SELECT all.
constexpr const char* credentials_app_sql = R"sql(
GRANT SELECT (seq, issuer, crl_number, this_update_ns, next_update_ns, der, recorded_at, xact),
      INSERT (issuer, crl_number, this_update_ns, next_update_ns, der)
      ON kakunin_audit.published_crls TO @APP@;
GRANT SELECT (seq, agent_id, serial, public_key_sha256, not_before_ns, not_after_ns, der,
              recorded_at, xact),
      INSERT (agent_id, serial, public_key_sha256, not_before_ns, not_after_ns, der)
      ON kakunin_audit.published_certificates TO @APP@;
GRANT USAGE ON SEQUENCE kakunin_audit.credentials_seq TO @APP@;
)sql";

std::string with(std::string text, const std::string& key, const std::string& value) {
    for (std::size_t pos = text.find(key); pos != std::string::npos;
         pos = text.find(key, pos + value.size()))
        text.replace(pos, key.size(), value);
    return text;
}

}  // namespace

void install_credential_tables(Connection& c, const std::string& owner, const std::string& app) {
    if (PQntuples(c.exec("SELECT 1 FROM pg_catalog.pg_class WHERE oid = "
                         "pg_catalog.to_regclass('kakunin_audit.published_crls')")
                      .get()) == 0)
        c.command(with(credentials_sql, "@OWNER@", owner));
    c.command(with(credentials_app_sql, "@APP@", app));
}

}  // namespace kakunin::pg
