// Firm-wide budgets in PostgreSQL (docs/operations.md, "Firm-wide limits"):
//   firm_budget_steps  who set which budget, append-only, each row naming its CA log record;
//   firm_budgets       the keeper's state of each budget (limit, the day, what is spent);
//   firm_leases        one row per Guard and budget: granted, the consumption last reported,
//                      the slice it may run ahead of that, and when the lease ages out.
// The application role changes the last two only through kakunin_audit.firm_lease(), which
// keeps   spent + sum(granted - base) <= amount   for every budget, under the budget's row
// lock, whatever the processes do or however they die.
#include "postgres/firm_schema.hpp"

namespace kakunin::pg {

namespace {

constexpr const char* firm_sql = R"sql(
SET LOCAL kakunin.maintenance = on;
SET LOCAL ROLE @OWNER@;

CREATE TABLE kakunin_audit.firm_budget_steps (
    seq bigserial PRIMARY KEY,
    budget_id text NOT NULL CHECK (budget_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    kind text NOT NULL CHECK (kind IN ('daily_notional', 'working_notional', 'open_orders')),
    currency text NOT NULL CHECK (currency ~ '^([A-Z0-9]{2,12})?$'),
    amount bigint NOT NULL CHECK (amount >= 0),
    chunk bigint NOT NULL CHECK (chunk > 0 AND chunk <= 1152921504606846976),
    set_by text NOT NULL CHECK (set_by <> ''),
    reason text NOT NULL CHECK (reason <> ''),
    set_at_ns bigint NOT NULL,
    ca_log_seq bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER worm BEFORE UPDATE OR DELETE OR TRUNCATE ON kakunin_audit.firm_budget_steps
    FOR EACH STATEMENT EXECUTE FUNCTION kakunin_audit.refuse_change();
ALTER TABLE kakunin_audit.firm_budget_steps ENABLE ALWAYS TRIGGER worm;

CREATE TABLE kakunin_audit.firm_budgets (
    budget_id text PRIMARY KEY,
    kind text NOT NULL,
    currency text NOT NULL,
    amount bigint NOT NULL,
    chunk bigint NOT NULL,
    step_seq bigint NOT NULL,
    day date NOT NULL,
    spent bigint NOT NULL DEFAULT 0
);

CREATE TABLE kakunin_audit.firm_leases (
    budget_id text NOT NULL REFERENCES kakunin_audit.firm_budgets
        ON UPDATE RESTRICT ON DELETE RESTRICT,
    holder text NOT NULL,
    agent_id text NOT NULL,
    granted bigint NOT NULL,
    used bigint NOT NULL,
    base bigint NOT NULL,
    slice bigint NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    orphaned boolean NOT NULL DEFAULT false,
    PRIMARY KEY (budget_id, holder)
);

RESET ROLE;
SET LOCAL kakunin.maintenance = off;
)sql";

// Functions (replaced on every init-db, so a database keeps the current ones), and what a
// schema from before them lacks.
constexpr const char* firm_functions_sql = R"sql(
SET LOCAL kakunin.maintenance = on;
SET LOCAL ROLE @OWNER@;
ALTER TABLE kakunin_audit.firm_leases ADD COLUMN IF NOT EXISTS orphaned boolean NOT NULL DEFAULT false;

-- A step sets the budget in force. Its kind cannot change while leases of it are out.
CREATE OR REPLACE FUNCTION kakunin_audit.apply_firm_budget_step() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    old record;
BEGIN
    SELECT * INTO old FROM kakunin_audit.firm_budgets WHERE budget_id = NEW.budget_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO kakunin_audit.firm_budgets (budget_id, kind, currency, amount, chunk,
                                                step_seq, day)
        VALUES (NEW.budget_id, NEW.kind, NEW.currency, NEW.amount, NEW.chunk, NEW.seq,
                (now() AT TIME ZONE 'UTC')::date);
        RETURN NULL;
    END IF;
    IF (old.kind <> NEW.kind OR old.currency <> NEW.currency) AND EXISTS (
            SELECT 1 FROM kakunin_audit.firm_leases WHERE budget_id = NEW.budget_id) THEN
        RAISE EXCEPTION 'firm budget %: its kind and currency cannot change while Guards hold leases of it', NEW.budget_id
            USING ERRCODE = 'KAK10';
    END IF;
    UPDATE kakunin_audit.firm_budgets
       SET kind = NEW.kind, currency = NEW.currency, amount = NEW.amount, chunk = NEW.chunk,
           step_seq = NEW.seq
     WHERE budget_id = NEW.budget_id;
    RETURN NULL;
END
$f$;
-- Takes, tops up or gives back one Guard's lease of one budget. `consumed` is the Guard's
-- consumption now (spent budgets: its running total; held budgets: what it holds), `want` how
-- far above it the lease should reach, `slice` how far the Guard's consumption may run ahead of
-- the last one reported. Returns the lease: how far the Guard may go (granted, in its own
-- terms), the consumption now on record (acked) and the milliseconds it is good for.
--   1. a new UTC day starts a spent budget again: every lease's base moves to what it had
--      reported, so a Guard's consumption since then counts against the new day;
--   2. leases that aged out (their Guard stopped renewing: killed, cut off) are taken back:
--      of a spent budget, what may have been consumed (the report plus one slice, at most the
--      grant) stays spent and the rest returns; of a held budget, what the orders it last
--      reported (plus one slice) may still hold stays reserved, as an orphaned lease, until
--      its holder renews it again or a person releases it (firm_release_orphans), since those
--      orders may still rest at the venue;
--   3. release: the Guard stopped; its exact consumption stays spent, the rest returns;
--      (a lease that aged out while its Guard lives is simply renewed: the Guard stopped using
--      it when it expired on its side, which is no later than here, and reports exactly);
--   4. otherwise the lease grows toward consumed + want, as far as the budget has room. A
--      lease never shrinks while its Guard renews it: the Guard may be using all of it.
CREATE OR REPLACE FUNCTION kakunin_audit.firm_lease(p_budget text, p_holder text, p_agent text,
                                         p_consumed bigint, p_want bigint, p_slice bigint,
                                         p_ttl_ms integer, p_release boolean)
RETURNS TABLE (granted bigint, acked bigint, ttl_ms integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    b record;
    l record;
    others bigint;
    room bigint;
    grow bigint;
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF p_consumed < 0 OR p_want < 0 OR p_slice <= 0 OR p_ttl_ms <= 0 THEN
        RAISE EXCEPTION 'firm lease: consumed, want, slice and ttl must be positive'
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO b FROM kakunin_audit.firm_budgets WHERE budget_id = p_budget FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'firm budget % is not set (kakunin firm budget set)', p_budget
            USING ERRCODE = 'KAK11';
    END IF;
    -- 1.
    IF b.kind = 'daily_notional' AND b.day < today THEN
        UPDATE kakunin_audit.firm_leases f SET base = f.used WHERE f.budget_id = p_budget;
        UPDATE kakunin_audit.firm_budgets SET day = today, spent = 0 WHERE budget_id = p_budget;
        b.spent := 0;
    END IF;
    -- 2.
    IF b.kind = 'daily_notional' THEN
        FOR l IN DELETE FROM kakunin_audit.firm_leases f
                  WHERE f.budget_id = p_budget AND f.expires_at < now() AND f.holder <> p_holder
                  RETURNING f.* LOOP
            b.spent := b.spent + greatest(0, least(l.granted, l.used + l.slice) - l.base);
        END LOOP;
    ELSE
        UPDATE kakunin_audit.firm_leases f
           SET granted = least(f.granted, f.used + f.slice), orphaned = true
         WHERE f.budget_id = p_budget AND f.expires_at < now() AND f.holder <> p_holder
           AND NOT f.orphaned;
    END IF;
    SELECT * INTO l FROM kakunin_audit.firm_leases f
     WHERE f.budget_id = p_budget AND f.holder = p_holder FOR UPDATE;
    -- 3.
    IF p_release THEN
        IF FOUND THEN
            IF b.kind = 'daily_notional' THEN
                b.spent := b.spent + greatest(0, p_consumed - l.base);
            END IF;
            DELETE FROM kakunin_audit.firm_leases f
             WHERE f.budget_id = p_budget AND f.holder = p_holder;
        END IF;
        UPDATE kakunin_audit.firm_budgets SET spent = b.spent WHERE budget_id = p_budget;
        RETURN QUERY SELECT 0::bigint, p_consumed, 0;
        RETURN;
    END IF;
    IF NOT FOUND THEN
        -- A new lease starts empty at the Guard's consumption now.
        INSERT INTO kakunin_audit.firm_leases AS f (budget_id, holder, agent_id, granted, used,
                                                   base, slice, expires_at)
        VALUES (p_budget, p_holder, p_agent, p_consumed, p_consumed,
                CASE WHEN b.kind = 'daily_notional' THEN p_consumed ELSE 0 END, p_slice,
                now() + make_interval(secs => p_ttl_ms / 1000.0))
        RETURNING f.* INTO l;
    END IF;
    -- 4.
    SELECT coalesce(sum(f.granted - f.base), 0) INTO others FROM kakunin_audit.firm_leases f
     WHERE f.budget_id = p_budget AND f.holder <> p_holder;
    room := b.amount - b.spent - others - (l.granted - l.base);
    grow := greatest(0, least(p_consumed + p_want - l.granted, room));
    UPDATE kakunin_audit.firm_leases f
       SET orphaned = false, granted = l.granted + grow, used = greatest(p_consumed, CASE WHEN b.kind =
           'daily_notional' THEN l.used ELSE p_consumed END), base = l.base, slice = p_slice,
           renewed_at = now(), expires_at = now() + make_interval(secs => p_ttl_ms / 1000.0)
     WHERE f.budget_id = p_budget AND f.holder = p_holder;
    UPDATE kakunin_audit.firm_budgets SET spent = b.spent WHERE budget_id = p_budget;
    RETURN QUERY SELECT l.granted + grow,
                        CASE WHEN b.kind = 'daily_notional' THEN greatest(p_consumed, l.used)
                             ELSE p_consumed END,
                        p_ttl_ms;
END
$f$;

-- A person judged that the orders of a held budget's orphaned leases no longer work (cancelled
-- at the venue, or the positions closed): their reservation returns. Returns how many.
CREATE OR REPLACE FUNCTION kakunin_audit.firm_release_orphans(p_budget text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    n bigint;
BEGIN
    PERFORM 1 FROM kakunin_audit.firm_budgets WHERE budget_id = p_budget FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'firm budget % is not set', p_budget USING ERRCODE = 'KAK11';
    END IF;
    DELETE FROM kakunin_audit.firm_leases f WHERE f.budget_id = p_budget AND f.orphaned;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$f$;

DO $d$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = 'firm_budget_step_apply') THEN
        CREATE TRIGGER firm_budget_step_apply AFTER INSERT ON kakunin_audit.firm_budget_steps
            FOR EACH ROW EXECUTE FUNCTION kakunin_audit.apply_firm_budget_step();
        ALTER TABLE kakunin_audit.firm_budget_steps ENABLE ALWAYS TRIGGER firm_budget_step_apply;
    END IF;
END
$d$;

RESET ROLE;
SET LOCAL kakunin.maintenance = off;
)sql";

constexpr const char* firm_grants_sql = R"sql(
GRANT SELECT, INSERT (budget_id, kind, currency, amount, chunk, set_by, reason, set_at_ns,
                      ca_log_seq) ON kakunin_audit.firm_budget_steps TO @APP@;
GRANT USAGE ON SEQUENCE kakunin_audit.firm_budget_steps_seq_seq TO @APP@;
GRANT SELECT ON kakunin_audit.firm_budgets, kakunin_audit.firm_leases TO @APP@;
GRANT EXECUTE ON FUNCTION kakunin_audit.firm_lease(text, text, text, bigint, bigint, bigint,
                                                   integer, boolean) TO @APP@;
GRANT EXECUTE ON FUNCTION kakunin_audit.firm_release_orphans(text) TO @APP@;
)sql";

std::string substitute(std::string text, const std::string& key, const std::string& value) {
    for (std::size_t at = text.find(key); at != std::string::npos;
         at = text.find(key, at + value.size()))
        text.replace(at, key.size(), value);
    return text;
}

}  // namespace

void install_firm_schema(Connection& c, const std::string& owner, const std::string& app) {
    if (PQntuples(c.exec("SELECT 1 FROM pg_catalog.pg_class WHERE oid = "
                         "pg_catalog.to_regclass('kakunin_audit.firm_budgets')")
                      .get()) == 0)
        c.command(substitute(firm_sql, "@OWNER@", owner));
    c.command(substitute(firm_functions_sql, "@OWNER@", owner));
    c.command(substitute(firm_grants_sql, "@APP@", app));
}

}  // namespace kakunin::pg
