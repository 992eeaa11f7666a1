// PostgreSQL backends against a real server (pg_test_support.hpp): the write-once schema refuses
// what it must, as the application role and as a superuser; logs written through
// PostgresAuditSink verify and survive a server crash; a revocation published by another process
// halts a Guard; baselines and approvals are kept.
#include <catch2/catch.hpp>

#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "audit_test_support.hpp"
#include "kakunin/audit.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/testing.hpp"
#include "pg_test_support.hpp"
#include "support.hpp"

using namespace kakunin;
using namespace std::chrono_literals;

namespace {

constexpr const char* kInsertRecord =
    "INSERT INTO kakunin_audit.audit_records (log_id, seq, ts_ns, event, canonical, line) "
    "VALUES ($1, $2, $3, 'order.allowed', '{}', '{}')";

// 2024-01-08 12:00 UTC, the TestAuthority's default start.
constexpr std::int64_t kJan2024 = 1704715200000000000LL;

void require_refused(const test::SqlOutcome& o, const std::string& sqlstate,
                     const std::string& words = "") {
    INFO("sqlstate " << o.sqlstate << ": " << o.message);
    CHECK_FALSE(o.ok);
    CHECK(o.sqlstate == sqlstate);
    if (!words.empty()) CHECK_THAT(o.message, Catch::Contains(words));
}

const Scope& seed() {
    static const Scope s = parse_scope_json(test::seed_scope_json);
    return s;
}

std::vector<std::string> read_back(const std::string& conninfo, const std::string& log_id) {
    PostgresAuditSink sink(conninfo, {log_id});
    std::vector<std::string> lines;
    sink.for_each_line([&](std::string_view l) { lines.emplace_back(l); });
    return lines;
}

// Records of 2024 go to the 2024-01 partition (init-db makes only this month's and next's).
void add_jan2024_partition(test::PgSession& app) {
    app.value("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(kJan2024)});
}

}  // namespace

TEST_CASE("postgres: the application role can only insert and read and a forged seq is refused") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession app(db.app());
    const std::string ts = std::to_string(kJan2024);
    add_jan2024_partition(app);
    REQUIRE(app.exec(kInsertRecord, {"a", "0", ts}).ok);
    REQUIRE(app.exec(kInsertRecord, {"a", "1", ts}).ok);
    CHECK(app.value("SELECT count(*) FROM kakunin_audit.audit_records") == "2");

    // Privileges: column-level INSERT and SELECT only, not the owner.
    require_refused(app.exec("UPDATE kakunin_audit.audit_records SET event = 'order.rejected'"),
                    "42501", "permission denied");
    require_refused(app.exec("DELETE FROM kakunin_audit.audit_records"), "42501");
    require_refused(app.exec("TRUNCATE kakunin_audit.audit_records"), "42501");
    require_refused(app.exec("ALTER TABLE kakunin_audit.audit_records DISABLE TRIGGER worm"),
                    "42501", "must be owner");
    require_refused(app.exec("ALTER TABLE kakunin_audit.audit_records DISABLE TRIGGER ALL"),
                    "42501");
    require_refused(app.exec("DROP TABLE kakunin_audit.audit_records"), "42501");
    require_refused(app.exec("DROP TABLE kakunin_audit.audit_checkpoints CASCADE"), "42501");
    require_refused(app.exec("UPDATE kakunin_audit.revocations SET reason = 'x'"), "42501");
    require_refused(app.exec("SELECT * FROM kakunin_audit.log_heads"), "42501");
    require_refused(app.exec("SELECT kakunin_audit.drop_expired_partitions()"), "42501");

    // seq must be exactly the next one: no gap, no rewrite of an earlier seq (even under another
    // ts_ns, i.e. in another partition), no duplicate inside a batch.
    require_refused(app.exec(kInsertRecord, {"a", "3", ts}), "KAK01", "not the next seq");
    require_refused(app.exec(kInsertRecord, {"a", "1", std::to_string(kJan2024 + 1)}), "KAK01");
    // The same (log_id, seq, ts_ns) again meets the primary key first.
    require_refused(app.exec(kInsertRecord, {"a", "0", ts}), "23505");
    require_refused(app.exec(kInsertRecord, {"b", "1", ts}), "KAK01");
    require_refused(
        app.exec("INSERT INTO kakunin_audit.audit_records (log_id, seq, ts_ns, event, canonical, "
                 "line) VALUES ('a', 2, $1, 'e', '{}', '{}'), ('a', 2, $1 + 1, 'e', '{}', '{}')",
                 {ts}),
        "KAK01");
    REQUIRE(app.exec(kInsertRecord, {"a", "2", ts}).ok);
    // A checkpoint may not cover records that are not there, nor go backwards.
    const char* cp =
        "INSERT INTO kakunin_audit.audit_checkpoints (log_id, size, ts_ns, root, key_fp, sig, "
        "line) VALUES ('a', $1, 0, 'r', 'k', 's', '{}')";
    require_refused(app.exec(cp, {"4"}), "KAK01");
    REQUIRE(app.exec(cp, {"3"}).ok);
    require_refused(app.exec(cp, {"2"}), "KAK01");
    CHECK(app.value("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM "
                    "kakunin_audit.audit_records WHERE log_id = 'a'") == "0,1,2");
}

TEST_CASE("postgres: of two writers racing for the same seq one is refused") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession first(db.app());
    test::PgSession second(db.app());
    add_jan2024_partition(first);
    const std::string ts = std::to_string(kJan2024);
    REQUIRE(first.exec(kInsertRecord, {"a", "0", ts}).ok);
    REQUIRE(first.exec("BEGIN").ok);
    REQUIRE(first.exec(kInsertRecord, {"a", "1", ts}).ok);
    // The second writer's seq 1 (in another ts_ns, so the primary key does not see it) waits for
    // the first transaction on the log's head, then no longer fits.
    REQUIRE(
        second.send("INSERT INTO kakunin_audit.audit_records (log_id, seq, ts_ns, event, "
                    "canonical, line) VALUES ('a', 1, " +
                    std::to_string(kJan2024 + 5) + ", 'order.allowed', '{}', '{}')"));
    std::this_thread::sleep_for(100ms);
    REQUIRE(first.exec("COMMIT").ok);
    require_refused(second.receive(), "KAK01", "not the next seq");
    CHECK(first.value("SELECT count(*) FROM kakunin_audit.audit_records WHERE log_id = 'a' AND "
                      "seq = 1") == "1");
}

TEST_CASE("postgres: a superuser cannot update or truncate even as a replica and DDL is refused") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession app(db.app());
    add_jan2024_partition(app);
    REQUIRE(app.exec(kInsertRecord, {"a", "0", std::to_string(kJan2024)}).ok);
    test::PgSession su(db.superuser());
    for (const char* role : {"origin", "replica"}) {
        INFO("session_replication_role = " << role);
        REQUIRE(su.exec(std::string("SET session_replication_role = ") + role).ok);
        require_refused(su.exec("UPDATE kakunin_audit.audit_records SET event = 'x'"), "KAK02",
                        "append-only");
        require_refused(su.exec("DELETE FROM kakunin_audit.audit_records"), "KAK02");
        require_refused(su.exec("TRUNCATE kakunin_audit.audit_records"), "KAK02");
        // Statements naming a partition directly meet the partition's own triggers.
        require_refused(su.exec("UPDATE kakunin_audit.audit_records_p202401 SET event = 'x'"),
                        "KAK02");
        require_refused(su.exec("TRUNCATE kakunin_audit.audit_records_p202401"), "KAK02");
        require_refused(su.exec("TRUNCATE kakunin_audit.audit_checkpoints"), "KAK02");
        require_refused(su.exec("DELETE FROM kakunin_audit.revocations"), "KAK02");
        require_refused(su.exec("UPDATE kakunin_audit.baselines SET json = '{}'"), "KAK02");
        // The event triggers refuse DDL on the schema.
        require_refused(su.exec("ALTER TABLE kakunin_audit.audit_records DISABLE TRIGGER worm"),
                        "KAK03", "write-once");
        require_refused(
            su.exec("ALTER TABLE kakunin_audit.audit_records_p202401 DISABLE TRIGGER ALL"),
            "KAK03");
        require_refused(su.exec("DROP TABLE kakunin_audit.audit_records"), "KAK04");
        require_refused(su.exec("DROP TRIGGER worm ON kakunin_audit.audit_checkpoints"), "KAK03");
        require_refused(su.exec("CREATE RULE r AS ON INSERT TO kakunin_audit.audit_records DO "
                                "INSTEAD NOTHING"),
                        "KAK03");
        require_refused(su.exec("CREATE OR REPLACE FUNCTION kakunin_audit.refuse_change() "
                                "RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'"),
                        "KAK03");
        require_refused(su.exec("DROP SCHEMA kakunin_audit CASCADE"), "KAK03");
    }
    REQUIRE(su.exec("RESET session_replication_role").ok);
    CHECK(su.value("SELECT count(*) FROM kakunin_audit.audit_records") == "1");
    CHECK(su.value("SELECT count(*) FROM pg_catalog.pg_rules WHERE schemaname = "
                   "'kakunin_audit'") == "0");
    // Every trigger of the audit tables fires in replica sessions too.
    CHECK(su.value("SELECT count(*) FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON "
                   "c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = 'kakunin_audit' AND NOT t.tgisinternal AND t.tgenabled "
                   "<> 'A'") == "0");
    // No foreign key into an audit table cascades.
    CHECK(su.value("SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'f' AND "
                   "connamespace = 'kakunin_audit'::regnamespace AND (confdeltype <> 'r' OR "
                   "confupdtype <> 'r')") == "0");
    // The documented maintenance switch lets a superuser through.
    REQUIRE(su.exec("BEGIN").ok);
    REQUIRE(su.exec("SET LOCAL kakunin.maintenance = on").ok);
    CHECK(su.exec("ALTER TABLE kakunin_audit.audit_records DISABLE TRIGGER worm").ok);
    REQUIRE(su.exec("ROLLBACK").ok);
}

TEST_CASE("postgres: a non-superuser installer gets the same tables and triggers") {
    test::AuditTestDb db(test::shared_pg_conninfo(), /*as_non_superuser=*/true);
    test::PgSession su(db.superuser());
    // Event triggers need a superuser: without one there are none, the rest is all there.
    CHECK(su.value("SELECT count(*) FROM pg_catalog.pg_event_trigger") == "0");
    CHECK(su.value("SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE "
                   "oid = 'kakunin_audit.audit_records'::regclass") == db.options.owner_role);
    test::PgSession app(db.app());
    add_jan2024_partition(app);
    REQUIRE(app.exec(kInsertRecord, {"a", "0", std::to_string(kJan2024)}).ok);
    require_refused(app.exec(kInsertRecord, {"a", "2", std::to_string(kJan2024)}), "KAK01");
    require_refused(app.exec("DELETE FROM kakunin_audit.audit_records"), "42501");
    REQUIRE(su.exec("SET session_replication_role = replica").ok);
    require_refused(su.exec("TRUNCATE kakunin_audit.audit_records"), "KAK02");
    require_refused(su.exec("UPDATE kakunin_audit.audit_records_p202401 SET event = 'x'"), "KAK02");
}

TEST_CASE("postgres: retention drops only partitions over five years old and not on hold") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    test::PgSession app(db.app());
    // Partitions are created on demand by the application role (2017-07 and 2014-05).
    CHECK(app.value("SELECT kakunin_audit.ensure_partition(1500000000000000000)") ==
          "audit_records_p201707");
    CHECK(app.value("SELECT kakunin_audit.ensure_partition(1400000000000000000)") ==
          "audit_records_p201405");
    add_jan2024_partition(app);
    REQUIRE(app.exec(kInsertRecord, {"a", "0", std::to_string(kJan2024)}).ok);
    REQUIRE(su.exec("INSERT INTO kakunin_audit.legal_holds (from_ns, to_ns, reason) VALUES "
                    "(1500000000000000000, 1500000000000000001, 'case 17')")
                .ok);
    require_refused(su.exec("SELECT kakunin_audit.drop_partition('audit_records_p202401')"),
                    "KAK04", "younger than five years");
    require_refused(su.exec("SELECT kakunin_audit.drop_partition('audit_records_p201707')"),
                    "KAK04", "legal hold");
    require_refused(su.exec("DROP TABLE kakunin_audit.audit_records_p201707"), "KAK04",
                    "legal hold");
    require_refused(su.exec("DROP TABLE kakunin_audit.audit_records_p202401"), "KAK04");
    const test::SqlOutcome dropped = su.exec("SELECT kakunin_audit.drop_expired_partitions()");
    REQUIRE(dropped.ok);
    REQUIRE(dropped.rows.size() == 1);
    CHECK(dropped.rows[0][0] == "audit_records_p201405");
    CHECK(su.value("SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i "
                   "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
                   "'kakunin_audit.audit_records'::regclass")
              .find("audit_records_p201405") == std::string::npos);
}

TEST_CASE("postgres: init-db is repeatable and refuses bad role names") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    CHECK_NOTHROW(init_audit_database(db.superuser(), db.options));
    AuditDbOptions bad = db.options;
    bad.app_role = "app\"; DROP TABLE x; --";
    try {
        init_audit_database(db.superuser(), bad);
        FAIL("a role name with quotes was accepted");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_input);
    }
    bad = db.options;
    bad.owner_role = bad.app_role;
    CHECK_THROWS_AS(init_audit_database(db.superuser(), bad), Error);
    // The canonical text is a text column (never jsonb), stored as given.
    test::PgSession su(db.superuser());
    CHECK(su.value("SELECT data_type FROM information_schema.columns WHERE table_schema = "
                   "'kakunin_audit' AND table_name = 'audit_records' AND column_name = "
                   "'canonical'") == "text");
}

TEST_CASE("postgres: a log written through PostgresAuditSink verifies and a writer continues it") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-pg");
    AuditCertificates certs;
    certs.add_der(id.cert_der);
    ManualClock clock(kJan2024);
    const std::string log_id = "agent-pg";
    // Payload text whose bytes a jsonb round trip would change (escapes, key order, numbers).
    const std::string payload =
        R"({"reasoning":"caf\u00e9 \"quoted\" \\ back","z":1,"a":{"y":-0,"b":"10.50"}})";
    {
        PostgresAuditSink sink(db.app(), {log_id});
        AuditLogWriter writer(sink, clock, id.signer(kms), {log_id, "", "", 50}, id.signer(kms));
        for (int i = 0; i < 120; ++i) {
            writer.append(audit_event::order_allowed, payload);
            clock.advance(1ms);
            if (i % 25 == 24) writer.flush();
        }
        writer.flush();
        CHECK(writer.durable_size() == 120);
        CHECK(sink.pending_lines() == 0);
    }
    {
        PostgresAuditSink sink(db.app(), {log_id});
        AuditLogWriter writer(sink, clock, id.signer(kms), {log_id, "", "", 50}, id.signer(kms));
        CHECK(writer.size() == 120);
        for (int i = 0; i < 30; ++i) writer.append(audit_event::order_warned, payload);
        writer.close();
    }
    CHECK(postgres_audit_log_ids(db.app()) == std::vector<std::string>{log_id});
    const std::vector<std::string> lines = read_back(db.app(), log_id);
    AuditVerifyOptions opts;
    opts.require_record_signatures = true;
    const AuditVerifyResult r = verify_audit_lines(lines, certs, opts);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 150);
    CHECK(r.signed_records == 150);
    CHECK(r.covered == 150);
    CHECK(r.checkpoints == 3);  // at 50 and 100, then 150 (20 left by the first writer + 30)
    // Stored verbatim: the canonical column is exactly the bytes the leaf hash covers.
    test::PgSession app(db.app());
    const AuditRecord first = parse_audit_record(lines.at(0));
    CHECK(app.value("SELECT canonical FROM kakunin_audit.audit_records WHERE log_id = $1 AND "
                    "seq = 0",
                    {log_id}) == first.canonical);
    CHECK(app.value("SELECT sig FROM kakunin_audit.audit_records WHERE log_id = $1 AND seq = 0",
                    {log_id}) == first.sig);
    // A line of another log is refused before it reaches the database.
    PostgresAuditSink other(db.app(), {"someone-else"});
    CHECK_THROWS_AS(other.append(std::string_view(lines.at(0))), Error);
}

TEST_CASE("postgres: backslashes at every offset of a line are stored byte for byte") {
    // The sink escapes a line for COPY eight bytes at a time; a backslash (JSON's own escapes)
    // at each offset of a word, in runs, beside multi-byte UTF-8, must come back unchanged.
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-esc");
    AuditCertificates certs;
    certs.add_der(id.cert_der);
    ManualClock clock(kJan2024);
    const std::string log_id = "agent-esc";
    std::vector<std::string> payloads;
    for (int k = 0; k < 24; ++k) {
        std::string text(static_cast<std::size_t>(k), 'x');
        text += R"(\"\\)";
        text += std::string(static_cast<std::size_t>(k % 9), 'y');
        text += k % 2 == 0 ? "\xc3\xa9\\n" : "\xc3\xa9\\\\";
        payloads.push_back(R"({"reasoning":")" + text + R"("})");
    }
    {
        PostgresAuditSink sink(db.app(), {log_id});
        // No record signer: each record's canonical text is its whole line.
        AuditLogWriter writer(sink, clock, id.signer(kms), {log_id, "", "", 10});
        for (const std::string& p : payloads) {
            writer.append(audit_event::order_allowed, p);
            clock.advance(1ms);
        }
        writer.close();
    }
    const std::vector<std::string> lines = read_back(db.app(), log_id);
    const AuditVerifyResult r = verify_audit_lines(lines, certs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == payloads.size());
    std::size_t k = 0;
    for (const std::string& line : lines) {
        if (line.find(R"("seq":)") == std::string::npos) continue;  // a checkpoint
        INFO(line);
        REQUIRE(k < payloads.size());
        CHECK(line.find(payloads[k].substr(1, payloads[k].size() - 2)) != std::string::npos);
        ++k;
    }
    CHECK(k == payloads.size());
    test::PgSession app(db.app());
    CHECK(app.value("SELECT count(*) FROM kakunin_audit.audit_records WHERE log_id = $1 AND "
                    "canonical IS DISTINCT FROM line",
                    {log_id}) == "0");
}

TEST_CASE(
    "postgres: the sink COPYs straight into the month's partition whose own trigger checks seq") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession app(db.app());
    test::PgSession su(db.superuser());
    add_jan2024_partition(app);
    // ensure_partition gives each partition the seq check (ENABLE ALWAYS) and the application
    // role's column grants.
    CHECK(su.value("SELECT tgenabled FROM pg_catalog.pg_trigger WHERE tgrelid = "
                   "'kakunin_audit.audit_records_p202401'::regclass AND tgname = "
                   "'audit_records_seq'") == "A");
    // Statements that name the partition meet the same refusals as through the parent.
    const std::string ts = std::to_string(kJan2024);
    const char* direct =
        "INSERT INTO kakunin_audit.audit_records_p202401 (log_id, seq, ts_ns, event, canonical, "
        "line) VALUES ($1, $2, $3, 'order.allowed', '{}', '{}')";
    REQUIRE(app.exec(direct, {"a", "0", ts}).ok);
    require_refused(app.exec(direct, {"a", "2", ts}), "KAK01", "not the next seq");
    require_refused(app.exec(direct, {"a", "0", std::to_string(kJan2024 + 1)}), "KAK01");
    require_refused(app.exec(direct, {"b", "1", ts}), "KAK01");
    require_refused(
        app.exec("INSERT INTO kakunin_audit.audit_records_p202401 (log_id, seq, ts_ns, event, "
                 "canonical, line) VALUES ('a', 1, $1, 'e', '{}', '{}'), ('a', 1, $1 + 1, 'e', "
                 "'{}', '{}')",
                 {ts}),
        "KAK01");
    // ... and a partition in another month cannot take a record of this one.
    REQUIRE(app.exec(kInsertRecord, {"a", "1", ts}).ok);  // through the parent, continuing
    require_refused(app.exec(direct, {"a", "2", "1500000000000000000"}), "23514");
    require_refused(app.exec("UPDATE kakunin_audit.audit_records_p202401 SET event = 'x'"),
                    "42501");

    // With INSERT on the parent taken away, only a sink that writes straight into the
    // partition still succeeds: this is the path it takes.
    REQUIRE(su.exec("REVOKE INSERT ON kakunin_audit.audit_records FROM " + db.options.app_role).ok);
    REQUIRE(su.exec("REVOKE INSERT (log_id, seq, ts_ns, event, canonical, sig, line) ON "
                    "kakunin_audit.audit_records FROM " +
                    db.options.app_role)
                .ok);
    require_refused(app.exec(kInsertRecord, {"a", "2", ts}), "42501");
    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-direct");
    AuditCertificates certs;
    certs.add_der(id.cert_der);
    // 2024-01-31 23:59:59.900: the second batch crosses into February (a partition made inside
    // the batch's transaction; it gets no grant now, since the parent has none, so its records go
    // through the parent, which refuses: the flush fails as a whole and stores nothing).
    constexpr std::int64_t kFeb2024 = 1706745600000000000LL;  // 2024-02-01 00:00 UTC
    ManualClock clock(kFeb2024 - 100'000'000);
    const std::string log_id = "agent-direct";
    {
        PostgresAuditSink sink(db.app(), {log_id});
        AuditLogWriter writer(sink, clock, id.signer(kms), {log_id, "", "", 20});
        for (int i = 0; i < 40; ++i) writer.append(audit_event::order_allowed, R"({"i":1})");
        writer.flush();  // all in January: straight into audit_records_p202401
        CHECK(writer.durable_size() == 40);
        for (int i = 0; i < 40; ++i) {
            writer.append(audit_event::order_allowed, R"({"i":2})");
            clock.advance(5ms);
        }
        CHECK_THROWS_AS(writer.flush(), Error);
        CHECK(writer.durable_size() == 40);
    }
    CHECK(su.value("SELECT count(*) FROM kakunin_audit.audit_records WHERE log_id = $1",
                   {log_id}) == "40");
    // The parent's grant back: new partitions get theirs again, and the rest of the log goes in.
    REQUIRE(su.exec("GRANT INSERT (log_id, seq, ts_ns, event, canonical, sig, line) ON "
                    "kakunin_audit.audit_records TO " +
                    db.options.app_role)
                .ok);
    {
        PostgresAuditSink sink(db.app(), {log_id});
        AuditLogWriter writer(sink, clock, id.signer(kms), {log_id, "", "", 20});
        CHECK(writer.size() == 40);
        clock.set(kFeb2024 - 100'000'000);
        for (int i = 0; i < 40; ++i) {
            writer.append(audit_event::order_allowed, R"({"i":3})");
            clock.advance(5ms);
        }
        writer.close();
    }
    CHECK(su.value("SELECT count(*) FROM kakunin_audit.audit_records_p202402 WHERE log_id = $1",
                   {log_id}) != "0");
    CHECK(su.value("SELECT count(*) FROM kakunin_audit.audit_records_p202401 WHERE log_id = $1",
                   {log_id}) != "0");
    const AuditVerifyResult r = verify_audit_lines(read_back(db.app(), log_id), certs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 80);
}

TEST_CASE("postgres: a partition without the seq check is written through the parent") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    // What an older schema's ensure_partition made: the partition and its worm trigger only.
    REQUIRE(su.exec("BEGIN").ok);
    REQUIRE(su.exec("SET LOCAL kakunin.maintenance = on").ok);
    REQUIRE(su.exec("SET LOCAL ROLE " + db.options.owner_role).ok);
    REQUIRE(su.exec("CREATE TABLE kakunin_audit.audit_records_p202401 PARTITION OF "
                    "kakunin_audit.audit_records FOR VALUES FROM (1704067200000000000) TO "
                    "(1706745600000000000)")
                .ok);
    REQUIRE(su.exec("COMMIT").ok);
    test::PgSession app(db.app());
    require_refused(
        app.exec("INSERT INTO kakunin_audit.audit_records_p202401 (log_id, seq, ts_ns, event, "
                 "canonical, line) VALUES ('a', 0, $1, 'e', '{}', '{}')",
                 {std::to_string(kJan2024)}),
        "42501");
    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-old");
    AuditCertificates certs;
    certs.add_der(id.cert_der);
    ManualClock clock(kJan2024);
    {
        PostgresAuditSink sink(db.app(), {"agent-old"});
        AuditLogWriter writer(sink, clock, id.signer(kms), {"agent-old", "", "", 10});
        for (int i = 0; i < 25; ++i) writer.append(audit_event::order_allowed, R"({"i":1})");
        writer.close();
        CHECK(writer.durable_size() == 25);
    }
    const AuditVerifyResult r = verify_audit_lines(read_back(db.app(), "agent-old"), certs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 25);
    // The parent's trigger checked them: the log's head moved.
    CHECK(su.value("SELECT next_seq FROM kakunin_audit.log_heads WHERE log_id = 'agent-old'") ==
          "25");
}

TEST_CASE("postgres: a server crash in the middle of a write loop loses no durable record") {
    // A server of its own: the restart must not disturb tests running in parallel.
    test::PgServer server;
    test::AuditTestDb db(server.conninfo());
    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-crash");
    AuditCertificates certs;
    certs.add_der(id.cert_der);
    ManualClock clock(kJan2024);
    const std::string log_id = "agent-crash";

    PostgresAuditSinkOptions sink_options{log_id};
    sink_options.reconnect_attempts = 1;
    sink_options.reconnect_delay = 50ms;
    PostgresAuditSink sink(db.app(), sink_options);
    AuditLogWriter writer(sink, clock, id.signer(kms), {log_id, "", "", 100});

    std::atomic<std::uint64_t> durable{0};
    std::atomic<bool> restarted{false};
    std::string restart_error;
    std::atomic<bool> give_up{false};
    std::thread crasher([&] {
        while (durable.load() < 300 && !give_up.load()) std::this_thread::sleep_for(1ms);
        if (give_up.load()) return;
        try {
            server.restart(/*crash=*/true);
        } catch (const std::exception& e) {
            restart_error = e.what();
        }
        restarted = true;
    });
    int failed_flushes = 0;
    std::uint64_t reported_durable = 0;
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    // Keep writing until the server has come back and some records went in after it.
    int flushes_after_restart = 0;
    while (flushes_after_restart < 20 && std::chrono::steady_clock::now() < deadline) {
        for (int i = 0; i < 10; ++i) {
            writer.append(audit_event::order_allowed, R"({"i":1})");
            clock.advance(1ms);
        }
        try {
            writer.flush();
        } catch (const Error& e) {
            if (failed_flushes == 0) WARN("first failed flush: " << e.what());
            ++failed_flushes;
            CHECK(e.category() == ErrorCategory::database);
            CHECK(writer.durable_size() == reported_durable);  // nothing new claimed durable
            std::this_thread::sleep_for(20ms);
            continue;
        }
        CHECK(writer.durable_size() == writer.size());
        reported_durable = writer.durable_size();
        durable = reported_durable;
        if (restarted.load()) ++flushes_after_restart;
    }
    CHECK(flushes_after_restart == 20);
    give_up = true;
    crasher.join();
    REQUIRE(restart_error.empty());
    REQUIRE(restarted.load());
    CHECK(failed_flushes > 0);  // the crash was seen by the writer, not slept through
    writer.close();
    CHECK(writer.durable_size() == writer.size());

    const std::vector<std::string> lines = read_back(db.app(), log_id);
    const AuditVerifyResult r = verify_audit_lines(lines, certs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == writer.size());
    CHECK(r.records >= reported_durable);
}

namespace {

// Runs this test binary again, as another process, on one hidden test case with `env` added.
int run_child(const std::string& test_name, const std::vector<std::string>& env) {
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) envs.emplace_back(*e);
    envs.insert(envs.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string self = "/proc/self/exe";
    std::string name = test_name;
    char* argv[] = {self.data(), name.data(), nullptr};
    pid_t pid = 0;
    if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()) != 0) {
        return -1;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Polls until the Guard rejects with `reason`, or the time is up.
bool rejects_within(Guard& guard, ReasonCode reason, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (guard.check(test::good_order()).reasons.contains(reason)) return true;
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

}  // namespace

// Not run on its own ([.]): the child half of the cross-process test below.
TEST_CASE("postgres child: publish a revocation", "[.]") {
    const char* conninfo = std::getenv("KAKUNIN_PG_CHILD_CONNINFO");
    const char* serial = std::getenv("KAKUNIN_PG_CHILD_SERIAL");
    const char* agent = std::getenv("KAKUNIN_PG_CHILD_AGENT");
    REQUIRE(conninfo != nullptr);
    REQUIRE(serial != nullptr);
    REQUIRE(agent != nullptr);
    const std::uint64_t seq =
        publish_revocation(conninfo, {serial, agent, "anomaly score 0.91 (child process)", 1});
    CHECK(seq > 0);
}

TEST_CASE("postgres: a revocation published by another process halts the Guard") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    TestAuthority authority;
    auto feed = std::make_shared<PostgresRevocationFeed>(db.app());
    REQUIRE(feed->wait_until_listening(10s));
    GuardCredentials other = authority.credentials_for(seed());
    GuardCredentials mine = authority.credentials_for(seed());
    other.revocation_feed = feed;
    mine.revocation_feed = feed;
    Guard bystander(std::move(other), authority.clock());
    Guard guard(std::move(mine), authority.clock());
    REQUIRE(guard.check(test::good_order()).allowed());

    const std::string serial = guard.certificate()->serial();
    const int rc =
        run_child("postgres child: publish a revocation",
                  {"KAKUNIN_PG_CHILD_CONNINFO=" + db.app(), "KAKUNIN_PG_CHILD_SERIAL=" + serial,
                   "KAKUNIN_PG_CHILD_AGENT=" + guard.certificate()->agent_id()});
    REQUIRE(rc == 0);
    CHECK(rejects_within(guard, ReasonCode::certificate_revoked, 5s));
    CHECK(guard.halted());
    CHECK(bystander.check(test::good_order()).allowed());
    CHECK(feed->last_seq() == 1);
}

TEST_CASE("postgres: the revocation feed catches up after losing its connection") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    TestAuthority authority;
    // Published before anyone listened: delivered from the history.
    GuardCredentials early = authority.credentials_for(seed());
    const std::string early_serial = early.certificate.serial();
    publish_revocation(db.app(), {early_serial, early.certificate.agent_id(), "before", 1});

    PostgresRevocationFeedOptions options;
    options.reconnect_delay = 20ms;
    auto feed = std::make_shared<PostgresRevocationFeed>(db.app(), options);
    REQUIRE(feed->wait_until_listening(10s));
    early.revocation_feed = feed;
    Guard early_guard(std::move(early), authority.clock());
    CHECK(early_guard.halted());

    GuardCredentials mine = authority.credentials_for(seed());
    mine.revocation_feed = feed;
    Guard guard(std::move(mine), authority.clock());
    REQUIRE(guard.check(test::good_order()).allowed());

    // Cut the feed's connection and publish at once: whether the NOTIFY reaches it or not,
    // the catch-up after the reconnect delivers the revocation.
    test::PgSession su(db.superuser());
    const std::string killed = su.value(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
        "current_database() AND application_name = 'kakunin-revocation-feed'");
    CHECK(killed == "1");
    PostgresRevocationPublisher publisher(db.app());
    CHECK(publisher.publish({guard.certificate()->serial(), guard.certificate()->agent_id(),
                             "after the cut", 2}) == 2);
    CHECK(rejects_within(guard, ReasonCode::certificate_revoked, 5s));
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (feed->connections() < 2 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(5ms);
    }
    CHECK(feed->connections() >= 2);
    CHECK(feed->last_seq() == 2);
    CHECK_THROWS_AS(publisher.publish({"NOT-HEX", "x", "y", 3}), Error);
}

TEST_CASE("postgres: baselines are versioned with their SHA-256 and approvals are kept") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    PostgresBaselineStore store(db.app());
    CHECK_FALSE(store.get_baseline("agent-7").has_value());
    const std::string v1 = R"({"version":1,"size":{"p50":"10","p99":"100"}})";
    const std::string v2 = R"({"version":1, "size": {"p50": "12"}})";  // kept byte for byte
    const StoredBaseline b1 = store.put_baseline("agent-7", v1);
    const StoredBaseline b2 = store.put_baseline("agent-7", v2);
    CHECK(b1.version == 1);
    CHECK(b2.version == 2);
    CHECK(b1.sha256_hex.size() == 64);
    CHECK(b1.sha256_hex != b2.sha256_hex);
    REQUIRE(store.get_baseline("agent-7").has_value());
    CHECK(store.get_baseline("agent-7")->json == v2);
    CHECK(store.get_baseline("agent-7", 1)->json == v1);
    CHECK(store.get_baseline("agent-7", 1)->sha256_hex == b1.sha256_hex);
    CHECK_FALSE(store.get_baseline("agent-7", 3).has_value());
    // sha256 of {"version":1,"size":{"p50":"10","p99":"100"}} as the database computes it
    test::PgSession su(db.superuser());
    CHECK(su.value("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", {v1}) == b1.sha256_hex);

    CHECK_FALSE(store.get_approval("agent-7", 2).has_value());
    BaselineApproval given{"agent-7", 2, "A. Officer", kJan2024, "c2lnbmF0dXJl"};
    given.baseline_sha256 = b2.sha256_hex;
    given.algorithm = "ecdsa-p256";
    given.approver_public_key = "cHVibGlj";
    given.automatic = true;
    store.put_approval(given);
    const auto a = store.get_approval("agent-7", 2);
    REQUIRE(a.has_value());
    CHECK(a->approver == "A. Officer");
    CHECK(a->approved_at == kJan2024);
    CHECK(a->signature == "c2lnbmF0dXJl");
    // Everything a Guard checks survives the round trip.
    CHECK(a->baseline_sha256 == b2.sha256_hex);
    CHECK(a->algorithm == "ecdsa-p256");
    CHECK(a->approver_public_key == "cHVibGlj");
    CHECK(a->automatic);
    try {
        store.put_approval({"agent-7", 9, "A. Officer", kJan2024, "c2ln"});
        FAIL("an approval of a missing version was stored");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::not_found);
    }
    // A stored baseline cannot be rewritten, not even by a superuser.
    require_refused(su.exec("UPDATE kakunin_audit.baselines SET json = '{}'"), "KAK02");
    require_refused(
        su.exec("INSERT INTO kakunin_audit.baselines (agent_id, version, json, sha256) VALUES "
                "('agent-7', 3, '{}', 'ab')"),
        "23514");
}

TEST_CASE("postgres: kakunin audit init-db and audit verify --postgres from the command line") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    const std::string cli = KAKUNIN_CLI_PATH;
    // init-db again through the CLI: repeatable on an installed schema.
    const auto init =
        test::run_command({cli, "audit", "init-db", "--postgres", db.superuser(), "--owner-role",
                           db.options.owner_role, "--app-role", db.options.app_role});
    INFO(init.output);
    REQUIRE(init.status == 0);
    CHECK_THAT(init.output, Catch::Contains("audit schema ready"));

    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-cli");
    ManualClock clock(kJan2024);
    {
        test::PgSession app(db.app());
        add_jan2024_partition(app);
    }
    {
        PostgresAuditSink sink(db.app(), {"agent-cli"});
        AuditLogWriter writer(sink, clock, id.signer(kms), {"agent-cli", "", "", 10},
                              id.signer(kms));
        for (int i = 0; i < 25; ++i) writer.append(audit_event::order_allowed, R"({"i":1})");
        writer.close();
    }
    char dir_template[] = "/tmp/kakunin-pg-certs-XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    const std::string certs = dir_template;
    {
        std::ofstream out(certs + "/agent-cli.der", std::ios::binary);
        out.write(reinterpret_cast<const char*>(id.cert_der.data()),
                  static_cast<std::streamsize>(id.cert_der.size()));
    }
    const auto ok =
        test::run_command({cli, "audit", "verify", "--postgres", db.app(), "--certs", certs});
    INFO(ok.output);
    CHECK(ok.status == 0);
    CHECK_THAT(ok.output,
               Catch::Contains("postgres:agent-cli: ok: log 'agent-cli', 25 records (25 signed)"));
    // Without the signer's certificate the same log does not verify.
    const auto bare = test::run_command({cli, "audit", "verify", "--postgres", db.app()});
    CHECK(bare.status != 0);
    CHECK_THAT(bare.output, Catch::Contains("unknown_certificate"));
    std::remove((certs + "/agent-cli.der").c_str());
    ::rmdir(certs.c_str());
}

TEST_CASE("postgres: kakunin cert revoke --postgres publishes the revocation") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    const std::string cli = KAKUNIN_CLI_PATH;
    char dir_template[] = "/tmp/kakunin-pg-state-XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    const std::string state = std::string(dir_template) + "/state";
    const std::string scope = std::string(dir_template) + "/scope.json";
    std::ofstream(scope) << test::seed_scope_json;
    ::setenv("KAKUNIN_KMS_PASSPHRASE", "test passphrase", 1);
    for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
             {cli, "ca", "init", "--dir", state},
             {cli, "agent", "register", "--dir", state, "--agent", "agent-7", "--owner", "Desk 3",
              "--purpose", "test"},
             {cli, "scope", "approve", "--dir", state, "--agent", "agent-7", "--scope", scope,
              "--approver", "Jane Doe"},
             {cli, "cert", "issue", "--dir", state, "--agent", "agent-7", "--out",
              std::string(dir_template) + "/agent.pem"}}) {
        const auto r = test::run_command(argv);
        INFO(argv[1] << " " << argv[2] << ": " << r.output);
        REQUIRE(r.status == 0);
    }
    const AgentCertificate cert =
        AgentCertificate::load_file(std::string(dir_template) + "/agent.pem");
    const auto revoke =
        test::run_command({cli, "cert", "revoke", "--dir", state, "--serial", cert.serial(),
                           "--reason", "keyCompromise: test", "--postgres", db.app()});
    INFO(revoke.output);
    REQUIRE(revoke.status == 0);
    CHECK_THAT(revoke.output, Catch::Contains("published to PostgreSQL as revocation #"));
    test::PgSession app(db.app());
    CHECK(app.value("SELECT count(*) FROM kakunin_audit.revocations WHERE serial = $1",
                    {cert.serial()}) == "1");
    test::run_command({"rm", "-rf", dir_template});
}
