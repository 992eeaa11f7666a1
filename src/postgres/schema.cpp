// kakunin audit init-db: the write-once audit schema (docs/postgres.md). The SQL is fixed text;
// the only things substituted are role names, validated and quoted with PQescapeIdentifier.
#include <chrono>
#include <string>

#include "kakunin/postgres.hpp"
#include "postgres/credentials_schema.hpp"
#include "postgres/firm_schema.hpp"
#include "postgres/fleet_schema.hpp"
#include "postgres/pg.hpp"

namespace kakunin {

namespace {

// Tables, functions and triggers, created as the owner role (@OWNER@).
constexpr const char* schema_sql = R"sql(
CREATE SCHEMA kakunin_audit AUTHORIZATION @OWNER@;
SET LOCAL ROLE @OWNER@;

CREATE TABLE kakunin_audit.log_heads (
    log_id text PRIMARY KEY,
    next_seq bigint NOT NULL,
    checkpoint_size bigint NOT NULL DEFAULT 0
);

CREATE TABLE kakunin_audit.audit_records (
    log_id text NOT NULL CHECK (log_id <> ''),
    seq bigint NOT NULL CHECK (seq >= 0),
    ts_ns bigint NOT NULL,
    event text NOT NULL,
    canonical text NOT NULL,
    sig text,
    line text NOT NULL,
    PRIMARY KEY (log_id, seq, ts_ns)
) PARTITION BY RANGE (ts_ns);

CREATE TABLE kakunin_audit.audit_checkpoints (
    log_id text NOT NULL,
    size bigint NOT NULL CHECK (size > 0),
    ts_ns bigint NOT NULL,
    root text NOT NULL,
    key_fp text NOT NULL,
    sig text NOT NULL,
    line text NOT NULL,
    PRIMARY KEY (log_id, size)
);

CREATE TABLE kakunin_audit.legal_holds (
    hold_id bigserial PRIMARY KEY,
    from_ns bigint NOT NULL,
    to_ns bigint NOT NULL,
    reason text NOT NULL,
    placed_by text NOT NULL DEFAULT session_user,
    placed_at timestamptz NOT NULL DEFAULT now(),
    CHECK (from_ns < to_ns)
);

CREATE TABLE kakunin_audit.revocations (
    seq bigserial PRIMARY KEY,
    serial text NOT NULL CHECK (serial ~ '^[0-9a-f]+$'),
    agent_id text NOT NULL,
    reason text NOT NULL,
    revoked_at bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    xact xid8 NOT NULL DEFAULT pg_current_xact_id()
);
-- The inserting transaction: a feed catches up on the rows that committed since its last
-- snapshot, whatever their seq (a bigserial is taken before commit, so seqs commit out of order).
CREATE INDEX revocations_xact ON kakunin_audit.revocations (xact);

CREATE TABLE kakunin_audit.baselines (
    agent_id text NOT NULL CHECK (agent_id <> ''),
    version bigint NOT NULL CHECK (version > 0),
    json text NOT NULL,
    sha256 text NOT NULL CHECK (sha256 = encode(sha256(convert_to(json, 'UTF8')), 'hex')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE kakunin_audit.baseline_approvals (
    agent_id text NOT NULL,
    version bigint NOT NULL,
    approver text NOT NULL CHECK (approver <> ''),
    approved_at bigint NOT NULL,
    signature text NOT NULL,
    baseline_sha256 text NOT NULL DEFAULT '',
    algorithm text NOT NULL DEFAULT '',
    approver_public_key text NOT NULL DEFAULT '',
    automatic boolean NOT NULL DEFAULT false,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, version, approver),
    FOREIGN KEY (agent_id, version) REFERENCES kakunin_audit.baselines (agent_id, version)
        ON UPDATE RESTRICT ON DELETE RESTRICT
);

-- Append-only: any UPDATE, DELETE or TRUNCATE raises. Statement triggers, ENABLE ALWAYS.
CREATE FUNCTION kakunin_audit.refuse_change() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    RAISE EXCEPTION 'kakunin_audit.%: % refused: audit tables are append-only', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'KAK02';
END
$f$;

-- seq must be exactly the next one of its log (no gap, no duplicate, no rewrite). log_heads
-- serialises writers of one log: the UPDATE waits for a concurrent writer and then no longer
-- matches (READ COMMITTED) or fails to serialise (REPEATABLE READ and above).
CREATE FUNCTION kakunin_audit.check_record_seq() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    r record;
    n bigint;
BEGIN
    FOR r IN SELECT log_id, min(seq) AS lo, max(seq) AS hi, count(*) AS cnt,
                    count(DISTINCT seq) AS distinct_cnt
               FROM new_rows GROUP BY log_id LOOP
        IF r.hi - r.lo + 1 <> r.cnt OR r.distinct_cnt <> r.cnt THEN
            RAISE EXCEPTION 'kakunin_audit: log %: seq % to % is not one gapless run', r.log_id, r.lo, r.hi
                USING ERRCODE = 'KAK01';
        END IF;
        UPDATE kakunin_audit.log_heads SET next_seq = r.hi + 1
         WHERE log_id = r.log_id AND next_seq = r.lo;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = 0 THEN
            IF r.lo = 0 AND NOT EXISTS (SELECT 1 FROM kakunin_audit.log_heads WHERE log_id = r.log_id) THEN
                INSERT INTO kakunin_audit.log_heads (log_id, next_seq) VALUES (r.log_id, r.hi + 1);
            ELSE
                RAISE EXCEPTION 'kakunin_audit: log %: seq % is not the next seq (expected %)', r.log_id, r.lo,
                    coalesce((SELECT next_seq FROM kakunin_audit.log_heads WHERE log_id = r.log_id), 0)
                    USING ERRCODE = 'KAK01';
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$f$;

CREATE FUNCTION kakunin_audit.check_checkpoint() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    n bigint;
BEGIN
    UPDATE kakunin_audit.log_heads SET checkpoint_size = NEW.size
     WHERE log_id = NEW.log_id AND checkpoint_size < NEW.size AND next_seq >= NEW.size;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RAISE EXCEPTION 'kakunin_audit: log %: checkpoint at size % does not follow the records and checkpoints stored',
            NEW.log_id, NEW.size USING ERRCODE = 'KAK01';
    END IF;
    RETURN NEW;
END
$f$;

CREATE FUNCTION kakunin_audit.notify_revocation() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF octet_length(NEW.reason) <= 4000 THEN
        PERFORM pg_notify('kakunin_revocations', json_build_object('seq', NEW.seq, 'serial', NEW.serial,
            'agent_id', NEW.agent_id, 'reason', NEW.reason, 'revoked_at', NEW.revoked_at)::text);
    ELSE
        PERFORM pg_notify('kakunin_revocations', json_build_object('seq', NEW.seq)::text);
    END IF;
    RETURN NULL;
END
$f$;

CREATE TRIGGER audit_records_seq AFTER INSERT ON kakunin_audit.audit_records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.check_record_seq();
ALTER TABLE kakunin_audit.audit_records ENABLE ALWAYS TRIGGER audit_records_seq;
CREATE TRIGGER audit_checkpoints_order BEFORE INSERT ON kakunin_audit.audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION kakunin_audit.check_checkpoint();
ALTER TABLE kakunin_audit.audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_order;
CREATE TRIGGER revocations_notify AFTER INSERT ON kakunin_audit.revocations
    FOR EACH ROW EXECUTE FUNCTION kakunin_audit.notify_revocation();
ALTER TABLE kakunin_audit.revocations ENABLE ALWAYS TRIGGER revocations_notify;

CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.audit_records ENABLE ALWAYS TRIGGER worm;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.audit_checkpoints ENABLE ALWAYS TRIGGER worm;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.revocations
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.revocations ENABLE ALWAYS TRIGGER worm;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.baselines
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.baselines ENABLE ALWAYS TRIGGER worm;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.baseline_approvals
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.baseline_approvals ENABLE ALWAYS TRIGGER worm;

@HUMAN_STEPS@
-- Monthly partitions of audit_records, named audit_records_pYYYYMM, bounds in ns since the epoch.
CREATE FUNCTION kakunin_audit.month_start_ns(p_month date) RETURNS bigint LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $f$
    SELECT (extract(epoch FROM (date_trunc('month', p_month)::timestamp AT TIME ZONE 'UTC'))::bigint) * 1000000000
$f$;

CREATE FUNCTION kakunin_audit.ensure_partition(p_ts_ns bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    m date := date_trunc('month', to_timestamp(p_ts_ns / 1000000000) AT TIME ZONE 'UTC')::date;
    name text := 'audit_records_p' || to_char(m, 'YYYYMM');
    who text;
BEGIN
    IF to_regclass('kakunin_audit.' || name) IS NOT NULL THEN
        RETURN name;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('kakunin_audit.ensure_partition'));
    IF to_regclass('kakunin_audit.' || name) IS NOT NULL THEN
        RETURN name;
    END IF;
    EXECUTE format('CREATE TABLE kakunin_audit.%I PARTITION OF kakunin_audit.audit_records FOR VALUES FROM (%s) TO (%s)',
                   name, kakunin_audit.month_start_ns(m), kakunin_audit.month_start_ns((m + interval '1 month')::date));
    -- Statement triggers on the parent do not fire for statements naming a partition.
    EXECUTE format('CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change()', name);
    EXECUTE format('ALTER TABLE kakunin_audit.%I ENABLE ALWAYS TRIGGER worm', name);
    -- The same seq check for statements that name the partition: the sink COPYs straight into
    -- the month's partition (no routing through the parent, whose statement triggers do not fire
    -- then), and whoever may insert into audit_records may insert these columns into it.
    EXECUTE format('CREATE TRIGGER audit_records_seq AFTER INSERT ON kakunin_audit.%I '
                   'REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION kakunin_audit.check_record_seq()', name);
    EXECUTE format('ALTER TABLE kakunin_audit.%I ENABLE ALWAYS TRIGGER audit_records_seq', name);
    FOR who IN SELECT DISTINCT pg_get_userbyid(a.grantee)
                     FROM pg_attribute att, aclexplode(att.attacl) a
                    WHERE att.attrelid = 'kakunin_audit.audit_records'::regclass
                      AND a.privilege_type = 'INSERT' AND a.grantee <> 0 LOOP
        EXECUTE format('GRANT INSERT (log_id, seq, ts_ns, event, canonical, sig, line) '
                       'ON kakunin_audit.%I TO %I', name, who);
    END LOOP;
    RETURN name;
END
$f$;

-- Retention: a partition may go once its whole month is more than five years old and no legal
-- hold overlaps it.
CREATE FUNCTION kakunin_audit.partition_droppable(p_name text) RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    m date;
BEGIN
    IF p_name !~ '^audit_records_p[0-9]{6}$' THEN
        RETURN p_name || ' is not a monthly audit partition';
    END IF;
    m := to_date(substr(p_name, 16), 'YYYYMM');
    IF (m + interval '1 month') > (now() AT TIME ZONE 'UTC') - interval '5 years' THEN
        RETURN p_name || ' holds records younger than five years';
    END IF;
    IF EXISTS (SELECT 1 FROM kakunin_audit.legal_holds h
                WHERE h.from_ns < kakunin_audit.month_start_ns((m + interval '1 month')::date)
                  AND h.to_ns > kakunin_audit.month_start_ns(m)) THEN
        RETURN p_name || ' is under legal hold';
    END IF;
    RETURN NULL;
END
$f$;

CREATE FUNCTION kakunin_audit.drop_partition(p_name text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    why text := kakunin_audit.partition_droppable(p_name);
BEGIN
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'kakunin_audit: retention refused: %', why USING ERRCODE = 'KAK04';
    END IF;
    EXECUTE format('DROP TABLE kakunin_audit.%I', p_name);
END
$f$;

CREATE FUNCTION kakunin_audit.drop_expired_partitions() RETURNS SETOF text LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    p text;
BEGIN
    FOR p IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'kakunin_audit.audit_records'::regclass ORDER BY c.relname LOOP
        IF kakunin_audit.partition_droppable(p) IS NULL THEN
            PERFORM kakunin_audit.drop_partition(p);
            RETURN NEXT p;
        END IF;
    END LOOP;
END
$f$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA kakunin_audit FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA kakunin_audit FROM PUBLIC;
RESET ROLE;
)sql";

// Superuser only: the event triggers that refuse DDL on the audit schema. They live in their
// own schema, owned by the installing superuser, so that the owner role cannot replace them.
constexpr const char* guard_sql = R"sql(
CREATE SCHEMA kakunin_audit_guard;
REVOKE ALL ON SCHEMA kakunin_audit_guard FROM PUBLIC;

CREATE FUNCTION kakunin_audit_guard.maintenance_allowed() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $f$
    SELECT coalesce(current_setting('kakunin.maintenance', true), '') = 'on'
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = session_user AND rolsuper)
$f$;

-- A partition of audit_records created by the current transaction (its row type is that new).
CREATE FUNCTION kakunin_audit_guard.new_partition(p_rel oid) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $f$
    SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_type t ON t.typrelid = i.inhrelid
                    WHERE i.inhrelid = p_rel
                      AND i.inhparent = 'kakunin_audit.audit_records'::regclass
                      AND t.xmin::text = (pg_current_xact_id()::xid)::text)
$f$;

CREATE FUNCTION kakunin_audit_guard.month_start_ns(p_month date) RETURNS bigint LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $f$
    SELECT (extract(epoch FROM (date_trunc('month', p_month)::timestamp AT TIME ZONE 'UTC'))::bigint) * 1000000000
$f$;

CREATE FUNCTION kakunin_audit_guard.partition_droppable(p_name text) RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    m date;
BEGIN
    IF p_name !~ '^audit_records_p[0-9]{6}$' THEN
        RETURN p_name || ' is not a monthly audit partition';
    END IF;
    m := to_date(substr(p_name, 16), 'YYYYMM');
    IF (m + interval '1 month') > (now() AT TIME ZONE 'UTC') - interval '5 years' THEN
        RETURN p_name || ' holds records younger than five years';
    END IF;
    IF EXISTS (SELECT 1 FROM kakunin_audit.legal_holds h
                WHERE h.from_ns < kakunin_audit_guard.month_start_ns((m + interval '1 month')::date)
                  AND h.to_ns > kakunin_audit_guard.month_start_ns(m)) THEN
        RETURN p_name || ' is under legal hold';
    END IF;
    RETURN NULL;
END
$f$;

CREATE FUNCTION kakunin_audit_guard.guard_ddl() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    c record;
    rel oid;
BEGIN
    IF kakunin_audit_guard.maintenance_allowed() THEN
        RETURN;
    END IF;
    FOR c IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        -- Triggers, rules, policies, defaults and constraints belong to a table, not a schema.
        rel := CASE c.classid
            WHEN 'pg_class'::regclass THEN
                coalesce((SELECT indrelid FROM pg_index WHERE indexrelid = c.objid), c.objid)
            WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = c.objid)
            WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = c.objid)
            WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = c.objid)
            WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = c.objid)
            WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = c.objid)
            ELSE NULL END;
        IF rel IS NOT NULL AND rel <> 0 THEN
            c.schema_name := (SELECT n.nspname FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
                               WHERE k.oid = rel);
        END IF;
        IF c.schema_name IS DISTINCT FROM 'kakunin_audit'
           AND c.schema_name IS DISTINCT FROM 'kakunin_audit_guard'
           AND NOT (c.object_type = 'schema' AND c.object_identity IN ('kakunin_audit', 'kakunin_audit_guard')) THEN
            CONTINUE;
        END IF;
        IF c.command_tag IN ('GRANT', 'REVOKE') THEN
            CONTINUE;
        END IF;
        IF rel IS NOT NULL AND kakunin_audit_guard.new_partition(rel) THEN
            CONTINUE;
        END IF;
        RAISE EXCEPTION '% on % refused: the kakunin_audit schema is write-once (a superuser may SET kakunin.maintenance = on)',
            c.command_tag, c.object_identity USING ERRCODE = 'KAK03';
    END LOOP;
END
$f$;

CREATE FUNCTION kakunin_audit_guard.guard_drop() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    d record;
    why text;
    partition_dropped boolean := false;
BEGIN
    IF kakunin_audit_guard.maintenance_allowed() THEN
        RETURN;
    END IF;
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects() ORDER BY original DESC LOOP
        IF d.object_type = 'schema' AND d.object_name IN ('kakunin_audit', 'kakunin_audit_guard') THEN
            RAISE EXCEPTION 'DROP of schema % refused: the audit schema is write-once', d.object_name
                USING ERRCODE = 'KAK03';
        END IF;
        IF d.schema_name IS DISTINCT FROM 'kakunin_audit' AND d.schema_name IS DISTINCT FROM 'kakunin_audit_guard' THEN
            CONTINUE;
        END IF;
        IF d.original AND d.object_type = 'table' AND d.schema_name = 'kakunin_audit' THEN
            why := kakunin_audit_guard.partition_droppable(d.object_name);
            IF why IS NULL THEN
                partition_dropped := true;
                CONTINUE;
            END IF;
            RAISE EXCEPTION 'DROP of % refused: %', d.object_identity, why USING ERRCODE = 'KAK04';
        END IF;
        IF NOT d.original AND partition_dropped THEN
            CONTINUE;  -- an expired partition's own indexes, triggers and row type
        END IF;
        RAISE EXCEPTION 'DROP of % % refused: the kakunin_audit schema is write-once (a superuser may SET kakunin.maintenance = on)',
            d.object_type, d.object_identity USING ERRCODE = 'KAK03';
    END LOOP;
END
$f$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA kakunin_audit_guard FROM PUBLIC;
CREATE EVENT TRIGGER kakunin_audit_ddl ON ddl_command_end EXECUTE FUNCTION kakunin_audit_guard.guard_ddl();
ALTER EVENT TRIGGER kakunin_audit_ddl ENABLE ALWAYS;
CREATE EVENT TRIGGER kakunin_audit_drop ON sql_drop EXECUTE FUNCTION kakunin_audit_guard.guard_drop();
ALTER EVENT TRIGGER kakunin_audit_drop ENABLE ALWAYS;
)sql";

// People's steps (kakunin incident ack ... --postgres), for PostgresHumanStepFeed: each row is a
// record payload as the CA log holds it; an INSERT NOTIFYs kakunin_human_steps with its seq.
// Also created on a database whose schema predates it (init-db adds it, under the maintenance
// switch).
constexpr const char* human_steps_sql = R"sql(
CREATE TABLE kakunin_audit.human_steps (
    seq bigserial PRIMARY KEY,
    agent_id text NOT NULL CHECK (agent_id <> ''),
    event text NOT NULL,
    payload text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    xact xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX human_steps_xact ON kakunin_audit.human_steps (xact);
CREATE FUNCTION kakunin_audit.notify_human_step() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    PERFORM pg_notify('kakunin_human_steps', json_build_object('seq', NEW.seq)::text);
    RETURN NULL;
END
$f$;
CREATE TRIGGER human_steps_notify AFTER INSERT ON kakunin_audit.human_steps
    FOR EACH ROW EXECUTE FUNCTION kakunin_audit.notify_human_step();
ALTER TABLE kakunin_audit.human_steps ENABLE ALWAYS TRIGGER human_steps_notify;
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.human_steps
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.human_steps ENABLE ALWAYS TRIGGER worm;
)sql";

constexpr const char* human_steps_migration_sql = R"sql(
SET LOCAL kakunin.maintenance = on;
SET LOCAL ROLE @OWNER@;
@HUMAN_STEPS@
RESET ROLE;
SET LOCAL kakunin.maintenance = off;
)sql";

// An older schema's revocations table lacks the inserting transaction (xact) that the feed's
// catch-up needs: added as the owner, under the maintenance switch (honoured for a superuser).
constexpr const char* revocations_xact_sql = R"sql(
SET LOCAL kakunin.maintenance = on;
SET LOCAL ROLE @OWNER@;
ALTER TABLE kakunin_audit.revocations
    ADD COLUMN xact xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id();
CREATE INDEX revocations_xact ON kakunin_audit.revocations (xact);
RESET ROLE;
SET LOCAL kakunin.maintenance = off;
)sql";

// What the application role (@APP@) may do: column-level INSERT and SELECT, nothing else.
constexpr const char* app_sql = R"sql(
GRANT USAGE ON SCHEMA kakunin_audit TO @APP@;
GRANT SELECT (log_id, seq, ts_ns, event, canonical, sig, line),
      INSERT (log_id, seq, ts_ns, event, canonical, sig, line) ON kakunin_audit.audit_records TO @APP@;
GRANT SELECT (log_id, size, ts_ns, root, key_fp, sig, line),
      INSERT (log_id, size, ts_ns, root, key_fp, sig, line) ON kakunin_audit.audit_checkpoints TO @APP@;
GRANT SELECT (seq, serial, agent_id, reason, revoked_at, recorded_at, xact),
      INSERT (serial, agent_id, reason, revoked_at) ON kakunin_audit.revocations TO @APP@;
GRANT USAGE ON SEQUENCE kakunin_audit.revocations_seq_seq TO @APP@;
GRANT SELECT (seq, agent_id, event, payload, recorded_at, xact),
      INSERT (agent_id, event, payload) ON kakunin_audit.human_steps TO @APP@;
GRANT USAGE ON SEQUENCE kakunin_audit.human_steps_seq_seq TO @APP@;
GRANT SELECT (agent_id, version, json, sha256, created_at),
      INSERT (agent_id, version, json, sha256) ON kakunin_audit.baselines TO @APP@;
GRANT SELECT (agent_id, version, approver, approved_at, signature, baseline_sha256, algorithm,
              approver_public_key, automatic, recorded_at),
      INSERT (agent_id, version, approver, approved_at, signature, baseline_sha256, algorithm,
              approver_public_key, automatic) ON kakunin_audit.baseline_approvals TO @APP@;
GRANT EXECUTE ON FUNCTION kakunin_audit.ensure_partition(bigint) TO @APP@;
)sql";

std::string substitute(std::string text, const std::string& key, const std::string& value) {
    for (std::size_t pos = text.find(key); pos != std::string::npos;
         pos = text.find(key, pos + value.size())) {
        text.replace(pos, key.size(), value);
    }
    return text;
}

bool role_exists(pg::Connection& c, const std::string& role) {
    return PQntuples(c.exec("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", {role}).get()) >
           0;
}

}  // namespace

void init_audit_database(const std::string& conninfo, const AuditDbOptions& options) {
    if (!pg::is_plain_identifier(options.owner_role) ||
        !pg::is_plain_identifier(options.app_role)) {
        throw Error(ErrorCategory::invalid_input,
                    "init-db: role names must be plain lowercase identifiers (a-z, 0-9, _; at "
                    "most 63 characters): \"" +
                        options.owner_role + "\", \"" + options.app_role + "\"");
    }
    if (options.owner_role == options.app_role) {
        throw Error(ErrorCategory::invalid_input,
                    "init-db: the owner role and the application role must differ");
    }
    // No deadline: its DDL may rightly wait for locks, and a person is watching it.
    pg::Connection c(conninfo, "kakunin-init-db", std::chrono::milliseconds(0));
    const std::string owner = c.quote_identifier(options.owner_role);
    const std::string app = c.quote_identifier(options.app_role);

    c.command("BEGIN");
    try {
        // Roles are cluster-wide: serialise concurrent installers on one server.
        c.exec("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('kakunin init-db'))");
        const bool superuser =
            pg::value(c.exec("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = "
                             "current_user")
                          .get(),
                      0, 0) == "t";
        if (!role_exists(c, options.owner_role)) c.command("CREATE ROLE " + owner + " NOLOGIN");
        if (!role_exists(c, options.app_role)) {
            c.command("CREATE ROLE " + app + (options.app_login ? " LOGIN" : " NOLOGIN"));
        }
        if (!superuser) {
            // A CREATEROLE installer needs membership to create objects owned by the owner role.
            const bool member =
                pg::value(c.exec("SELECT pg_catalog.pg_has_role(current_user, $1, 'MEMBER')",
                                 {options.owner_role})
                              .get(),
                          0, 0) == "t";
            if (!member) c.command("GRANT " + owner + " TO CURRENT_USER");
        }
        pg::Result ns = c.exec(
            "SELECT pg_catalog.pg_get_userbyid(nspowner) FROM pg_catalog.pg_namespace "
            "WHERE nspname = $1",
            {std::string(audit_schema)});
        if (PQntuples(ns.get()) == 0) {
            c.command(substitute(substitute(schema_sql, "@HUMAN_STEPS@", human_steps_sql),
                                 "@OWNER@", owner));
        } else if (pg::value(ns.get(), 0, 0) != options.owner_role) {
            throw Error(ErrorCategory::invalid_input,
                        "init-db: schema kakunin_audit exists and is owned by \"" +
                            std::string(pg::value(ns.get(), 0, 0)) + "\", not \"" +
                            options.owner_role + "\"");
        } else if (PQntuples(c.exec("SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
                                    "'kakunin_audit.revocations'::pg_catalog.regclass AND "
                                    "attname = 'xact' AND NOT attisdropped")
                                 .get()) == 0) {
            c.command(substitute(revocations_xact_sql, "@OWNER@", owner));
        }
        if (PQntuples(c.exec("SELECT 1 FROM pg_catalog.pg_class WHERE oid = "
                             "pg_catalog.to_regclass('kakunin_audit.human_steps')")
                          .get()) == 0)
            c.command(
                substitute(substitute(human_steps_migration_sql, "@HUMAN_STEPS@", human_steps_sql),
                           "@OWNER@", owner));
        pg::install_credential_tables(c, owner, app);
        if (superuser) {
            pg::Result g = c.exec("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                                  {std::string("kakunin_audit_guard")});
            if (PQntuples(g.get()) == 0) c.command(guard_sql);
        }
        c.command(substitute(app_sql, "@APP@", app));
        pg::install_firm_schema(c, owner, app);
        pg::init_fleet_schema(c, owner, app);
        // This month's and next month's partitions, so the first records need no DDL.
        const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        const std::int64_t month_ns = 31LL * 24 * 3600 * 1000000000LL;
        for (std::int64_t t : {static_cast<std::int64_t>(now_ns), now_ns + month_ns}) {
            c.exec("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(t)});
        }
        c.command("COMMIT");
    } catch (...) {
        if (c.ok()) PQclear(PQexec(c.get(), "ROLLBACK"));
        throw;
    }
}

}  // namespace kakunin
