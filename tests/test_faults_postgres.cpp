// Faults of the PostgreSQL backends, reproduced against a real server (pg_test_support.hpp):
// revocations that commit out of seq order still reach every Guard, also across a reconnect and
// with eight concurrent publishers; an outage keeps the audit sink's buffer bounded and its
// backlog then arrives in bounded transactions; a stopped backend does not hang flush().
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <mutex>
#include <random>
#include <set>
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

// 2024-01-08 12:00 UTC, the TestAuthority's default start.
constexpr std::int64_t kJan2024 = 1704715200000000000LL;

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

bool rejects_within(Guard& guard, ReasonCode reason, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (guard.check(test::good_order()).reasons.contains(reason)) return true;
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

constexpr const char* kInsertRevocation =
    "INSERT INTO kakunin_audit.revocations (serial, agent_id, reason, revoked_at) "
    "VALUES ($1, $2, $3, 1) RETURNING seq";

// Records every revocation it is given, in arrival order.
class RecordingListener final : public RevocationListener {
public:
    void on_revocation(const Revocation& r) noexcept override {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_arrivals.push_back(r.serial);
        m_serials.insert(r.serial);
    }
    std::size_t distinct() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_serials.size();
    }
    bool has(const std::string& serial) const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_serials.count(serial) != 0;
    }
    std::vector<std::string> arrivals() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_arrivals;
    }

private:
    mutable std::mutex m_mutex;
    std::vector<std::string> m_arrivals;
    std::set<std::string> m_serials;
};

std::string terminate_feed(test::PgSession& su) {
    return su.value(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
        "current_database() AND application_name = 'kakunin-revocation-feed'");
}

}  // namespace

// ---- 1. revocations committed out of seq order ------------------------------------------------

TEST_CASE(
    "postgres faults: a revocation whose lower seq commits after a higher one halts its "
    "Guard") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    TestAuthority authority;
    auto feed = std::make_shared<PostgresRevocationFeed>(db.app());
    REQUIRE(feed->wait_until_listening(10s));
    PostgresRevocationPublisher publisher(db.app());
    test::PgSession held(db.app());

    int halted = 0;
    for (int round = 0; round < 5; ++round) {
        GuardCredentials late = authority.credentials_for(seed());
        GuardCredentials early = authority.credentials_for(seed());
        late.revocation_feed = feed;
        early.revocation_feed = feed;
        Guard late_guard(std::move(late), authority.clock());
        Guard early_guard(std::move(early), authority.clock());
        REQUIRE(late_guard.check(test::good_order()).allowed());

        // The lower seq is taken first and held open while a higher one commits.
        REQUIRE(held.exec("BEGIN").ok);
        const std::string low =
            held.value(kInsertRevocation, {late_guard.certificate()->serial(), "late", "held"});
        const std::uint64_t high =
            publisher.publish({early_guard.certificate()->serial(), "early", "committed first", 1});
        CHECK(std::stoull(low) < high);
        REQUIRE(rejects_within(early_guard, ReasonCode::certificate_revoked, 5s));
        REQUIRE(held.exec("COMMIT").ok);
        const bool ok = rejects_within(late_guard, ReasonCode::certificate_revoked, 5s);
        CHECK(ok);
        halted += ok;
    }
    CHECK(halted == 5);
}

TEST_CASE("postgres faults: a lower seq committed while the feed is disconnected is caught up") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    TestAuthority authority;
    PostgresRevocationFeedOptions options;
    options.reconnect_delay = 300ms;  // the commit below lands while the feed is away
    auto feed = std::make_shared<PostgresRevocationFeed>(db.app(), options);
    REQUIRE(feed->wait_until_listening(10s));
    RecordingListener listener;
    feed->subscribe(&listener);
    test::PgSession su(db.superuser());
    test::PgSession held(db.app());
    PostgresRevocationPublisher publisher(db.app());

    REQUIRE(held.exec("BEGIN").ok);
    held.value(kInsertRevocation, {"aa01", "late", "held over the cut"});
    publisher.publish({"bb02", "early", "committed first", 1});
    REQUIRE(eventually([&] { return listener.has("bb02"); }, 5s));
    CHECK(terminate_feed(su) == "1");
    REQUIRE(held.exec("COMMIT").ok);  // its NOTIFY finds nobody listening
    CHECK(eventually([&] { return feed->connections() >= 2; }, 10s));
    CHECK(eventually([&] { return listener.has("aa01"); }, 5s));
    feed->unsubscribe(&listener);
}

TEST_CASE(
    "postgres faults: eight concurrent publishers with out-of-order commits miss no "
    "revocation") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    PostgresRevocationFeedOptions options;
    options.reconnect_delay = 20ms;
    auto feed = std::make_shared<PostgresRevocationFeed>(db.app(), options);
    REQUIRE(feed->wait_until_listening(10s));
    RecordingListener listener;
    feed->subscribe(&listener);

    constexpr int kThreads = 8;
    constexpr int kPerThread = 1250;  // 10,000 in all
    std::vector<std::thread> publishers;
    std::atomic<int> failures{0};
    std::atomic<int> published{0};
    for (int t = 0; t < kThreads; ++t) {
        publishers.emplace_back([&, t] {
            try {
                std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
                char serial[32];
                if (t >= 6) {  // two of them through the library's publisher, autocommit
                    PostgresRevocationPublisher p(db.app());
                    for (int i = 0; i < kPerThread; ++i) {
                        std::snprintf(serial, sizeof serial, "%x%05x", t + 1, i);
                        p.publish({serial, "agent", "concurrent", 1});
                        ++published;
                    }
                    return;
                }
                // The others hold a transaction with one to four seqs open for a while, so
                // higher seqs of other publishers commit before them.
                test::PgSession s(db.app());
                int i = 0;
                while (i < kPerThread) {
                    const int n = std::min<int>(1 + static_cast<int>(rng() % 4), kPerThread - i);
                    if (!s.exec("BEGIN").ok) throw std::runtime_error("BEGIN failed");
                    for (int k = 0; k < n; ++k, ++i) {
                        std::snprintf(serial, sizeof serial, "%x%05x", t + 1, i);
                        s.value(kInsertRevocation, {serial, "agent", "held"});
                    }
                    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
                    if (!s.exec("COMMIT").ok) throw std::runtime_error("COMMIT failed");
                    published += n;
                }
            } catch (const std::exception&) {
                ++failures;
            }
        });
    }
    // Cut the feed's connection twice while they publish: the catch-ups must cover what
    // committed meanwhile, in whatever seq order.
    test::PgSession su(db.superuser());
    for (int cut = 0; cut < 2; ++cut) {
        eventually([&] { return published.load() >= 3000 * (cut + 1); }, 60s);
        terminate_feed(su);
    }
    for (auto& t : publishers) t.join();
    REQUIRE(failures.load() == 0);
    REQUIRE(published.load() == kThreads * kPerThread);

    const bool all = eventually(
        [&] { return listener.distinct() == static_cast<std::size_t>(kThreads * kPerThread); },
        30s);
    const std::size_t delivered = listener.distinct();
    INFO("delivered " << delivered << " of " << kThreads * kPerThread);
    CHECK(all);
    CHECK(delivered == static_cast<std::size_t>(kThreads * kPerThread));
    CHECK(feed->connections() >= 3);

    // The run did commit out of seq order: some revocation arrived after a higher seq.
    std::map<std::string, std::int64_t> seq_of;
    test::PgSession app(db.app());
    const test::SqlOutcome rows = app.exec("SELECT serial, seq FROM kakunin_audit.revocations");
    REQUIRE(rows.ok);
    for (const auto& r : rows.rows) seq_of[r[0]] = std::stoll(r[1]);
    std::int64_t highest = 0;
    int inversions = 0;
    for (const std::string& s : listener.arrivals()) {
        const std::int64_t q = seq_of.at(s);
        if (q < highest) ++inversions;
        highest = std::max(highest, q);
    }
    INFO("arrivals after a higher seq: " << inversions);
    CHECK(inversions > 0);
    feed->unsubscribe(&listener);
}

TEST_CASE("postgres faults: init-db gives an older schema's revocations their transaction id") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    // What an older schema had: revocations without the xact column.
    REQUIRE(su.exec("BEGIN").ok);
    REQUIRE(su.exec("SET LOCAL kakunin.maintenance = on").ok);
    REQUIRE(su.exec("SET LOCAL ROLE " + db.options.owner_role).ok);
    REQUIRE(su.exec("ALTER TABLE kakunin_audit.revocations DROP COLUMN xact").ok);
    REQUIRE(su.exec("COMMIT").ok);
    publish_revocation(db.app(), {"c0ffee", "agent-old", "before the upgrade", 1});

    init_audit_database(db.superuser(), db.options);
    CHECK(su.value("SELECT count(*) FROM pg_attribute WHERE attrelid = "
                   "'kakunin_audit.revocations'::regclass AND attname = 'xact' AND NOT "
                   "attisdropped") == "1");
    // The DDL guard is back on after the upgrade.
    CHECK_FALSE(su.exec("ALTER TABLE kakunin_audit.revocations ADD COLUMN x int").ok);

    auto feed = std::make_shared<PostgresRevocationFeed>(db.app());
    REQUIRE(feed->wait_until_listening(10s));
    RecordingListener listener;
    feed->subscribe(&listener);
    CHECK(listener.has("c0ffee"));
    publish_revocation(db.app(), {"c0ffee02", "agent-old", "after the upgrade", 2});
    CHECK(eventually([&] { return listener.has("c0ffee02"); }, 5s));
    feed->unsubscribe(&listener);
}

// ---- 3. an outage of the audit database
// ----------------------------------------------------------

namespace {

// The outage: nobody may connect to the test database, and the sink's session is cut. `admin`
// is connected to another database of the server.
void block_connections(test::PgSession& admin, const std::string& db, bool blocked) {
    admin.value("ALTER DATABASE " + db +
                (blocked ? " ALLOW_CONNECTIONS false" : " ALLOW_CONNECTIONS true"));
    if (blocked) {
        admin.value(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 "
            "AND application_name = 'kakunin-audit-sink'",
            {db});
    }
}

}  // namespace

TEST_CASE(
    "postgres faults: an outage keeps the sink's buffer bounded and the backlog arrives in "
    "bounded transactions") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    test::PgSession admin(test::shared_pg_conninfo());
    su.value("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(kJan2024)});
    TestAuthority authority;
    Scope scope = seed();
    scope.limits = PreTradeLimits{};
    GuardCredentials creds = authority.credentials_for(scope);
    const std::string log_id = creds.certificate.agent_id();
    AuditCertificates certs;
    certs.add_der(creds.certificate.der());

    const PostgresAuditSinkOptions defaults{log_id};
    const std::size_t max_lines = defaults.max_pending_lines;
    const std::size_t max_bytes = defaults.max_pending_bytes;
    const std::size_t max_batch = defaults.max_batch_lines;
    auto sink = std::make_shared<PostgresAuditSink>(db.app(), defaults);
    GuardOptions options;
    options.audit = AuditTrailOptions{sink};
    options.audit->record_signatures = false;
    options.audit->sink_failure_grace = 200ms;
    // Entries stay in the trail's queue until durable: a queue larger than the sink's bound, so
    // that the outage reaches the bound.
    options.audit->queue_capacity = 4 * max_lines;
    std::uint64_t queued = 0, allowed = 0, refused = 0;
    std::size_t max_pending = 0, max_pending_bytes = 0;
    {
        Guard guard(std::move(creds), authority.clock(), options);
        REQUIRE(guard.check(test::good_order()).allowed());
        REQUIRE(guard.audit()->wait_durable(10s));

        block_connections(admin, db.name(), true);
        std::atomic<bool> done{false};
        std::thread sampler([&] {
            while (!done.load()) {
                max_pending = std::max(max_pending, sink->pending_lines());
                max_pending_bytes = std::max(max_pending_bytes, sink->pending_bytes());
                std::this_thread::sleep_for(5ms);
            }
        });
        // Four seconds of orders at about 20,000 a second: far more records than the bound.
        const auto until = std::chrono::steady_clock::now() + 4s;
        while (std::chrono::steady_clock::now() < until) {
            for (int i = 0; i < 100; ++i) {
                authority.clock().advance(1ms);
                const Decision d = guard.check(test::good_order());
                allowed += d.allowed();
                refused += d.reasons.contains(ReasonCode::audit_unavailable);
            }
            std::this_thread::sleep_for(5ms);
        }
        done = true;
        sampler.join();
        INFO("largest buffer " << max_pending << " lines; allowed " << allowed << ", refused "
                               << refused);
        CHECK(max_pending <= max_lines);
        CHECK(max_pending_bytes <= max_bytes);
        CHECK(max_pending > max_lines / 2);  // the outage did fill it
        CHECK(refused > 0);
        CHECK_FALSE(guard.audit()->counters().healthy);

        block_connections(admin, db.name(), false);
        REQUIRE(guard.audit()->wait_durable(60s));
        const AuditTrailCounters c = guard.audit()->counters();
        CHECK(c.durable == c.queued);
        CHECK(allowed + 1 <= c.queued);  // every allowed order was recorded
        queued = c.queued;
    }
    // The backlog came in transactions of at most max_batch lines each.
    const test::SqlOutcome per_tx = su.exec(
        "SELECT count(*) FROM kakunin_audit.audit_records WHERE log_id = $1 GROUP BY "
        "xmin::text ORDER BY 1 DESC",
        {log_id});
    REQUIRE(per_tx.ok);
    REQUIRE_FALSE(per_tx.rows.empty());
    INFO(per_tx.rows.size() << " transactions, the largest " << per_tx.rows[0][0] << " records");
    CHECK(std::stoull(per_tx.rows[0][0]) <= max_batch);
    CHECK(per_tx.rows.size() >= queued / max_batch);
    const auto lines = read_back(db.app(), log_id);
    const AuditVerifyResult r = verify_audit_lines(lines, certs);
    INFO(r.message);
    CHECK(r.ok);
    // Besides what was queued: at shutdown, the count of rejections the full queue could not
    // record (audit.unrecorded_rejections), when there were any.
    std::uint64_t unrecorded_reports = 0;
    for (const auto& line : lines)
        unrecorded_reports +=
            line.find("\"event\":\"audit.unrecorded_rejections\"") != std::string::npos;
    CHECK(r.records == queued + unrecorded_reports);
}

TEST_CASE(
    "postgres faults: past its bound the sink refuses more while the database is away "
    "and drops nothing") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    test::PgSession admin(test::shared_pg_conninfo());
    su.value("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(kJan2024)});
    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-bound");
    AuditCertificates certs;
    certs.add_der(id.cert_der);
    ManualClock clock(kJan2024);

    PostgresAuditSinkOptions so{"agent-bound"};
    so.reconnect_attempts = 0;
    so.max_pending_lines = 20;
    so.max_batch_lines = 7;
    PostgresAuditSink sink(db.app(), so);
    AuditLogWriter writer(sink, clock, id.signer(kms), {"agent-bound", "", "", 1000});
    writer.append(audit_event::order_allowed, R"({"i":0})");
    writer.flush();

    block_connections(admin, db.name(), true);
    std::size_t most = 0;
    int refused = 0;
    for (int round = 0; round < 10; ++round) {
        for (int i = 0; i < 5; ++i) writer.append(audit_event::order_allowed, R"({"i":1})");
        try {
            writer.flush();
        } catch (const Error& e) {
            if (std::string(e.what()).find("the most it holds") != std::string::npos) ++refused;
        }
        most = std::max(most, sink.pending_lines());
    }
    CHECK(most <= 20);
    CHECK(refused > 0);
    // What the sink refused the writer still holds: 20 in the sink, 30 in the writer.
    CHECK(sink.pending_lines() + writer.pending_lines() == 50);
    CHECK(writer.durable_size() == 1);

    block_connections(admin, db.name(), false);
    writer.flush();
    CHECK(writer.durable_size() == 51);
    CHECK(sink.pending_lines() == 0);
    writer.close();
    const test::SqlOutcome per_tx = su.exec(
        "SELECT count(*) FROM kakunin_audit.audit_records WHERE log_id = 'agent-bound' GROUP BY "
        "xmin::text ORDER BY 1 DESC");
    REQUIRE(per_tx.ok);
    CHECK(std::stoi(per_tx.rows.at(0).at(0)) <= 7);
    CHECK(per_tx.rows.size() >= 8);  // 50 lines after the outage in batches of 7
    const AuditVerifyResult r = verify_audit_lines(read_back(db.app(), "agent-bound"), certs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 51);
}

// ---- a backend that stops answering ------------------------------------------------------------

TEST_CASE("postgres faults: a stopped backend does not hang the sink's flush") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    su.value("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(kJan2024)});
    test::AuditTestKms kms;
    const test::TestIdentity id = test::make_identity(kms, "agent-hung");
    AuditCertificates certs;
    certs.add_der(id.cert_der);
    ManualClock clock(kJan2024);

    PostgresAuditSinkOptions so{"agent-hung"};
    so.io_timeout = 1s;
    so.reconnect_attempts = 1;
    so.reconnect_delay = 50ms;
    PostgresAuditSink sink(db.app(), so);
    AuditLogWriter writer(sink, clock, id.signer(kms), {"agent-hung", "", "", 10});
    for (int i = 0; i < 5; ++i) writer.append(audit_event::order_allowed, R"({"i":1})");
    writer.flush();

    const std::string pid_text = su.value(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name = 'kakunin-audit-sink'");
    REQUIRE_FALSE(pid_text.empty());
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    // SIGSTOP: the backend keeps its socket open and never answers (what a hung host does).
    REQUIRE(::kill(pid, SIGSTOP) == 0);
    struct Resume {
        pid_t pid;
        ~Resume() { ::kill(pid, SIGCONT); }
    } resume{pid};

    for (int i = 0; i < 5; ++i) writer.append(audit_event::order_allowed, R"({"i":2})");
    const auto started = std::chrono::steady_clock::now();
    auto flushed = std::async(std::launch::async, [&]() -> std::string {
        try {
            writer.flush();
            return "";
        } catch (const std::exception& e) {
            return e.what();
        }
    });
    const bool returned = flushed.wait_for(20s) == std::future_status::ready;
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(returned);
    if (!returned) ::kill(pid, SIGCONT);  // let a flush without a deadline finish
    const std::string error = flushed.get();
    INFO("flush took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                       << " ms: " << (error.empty() ? "stored" : error));
    // The sink gave up on the silent connection and stored the lines through a new one.
    CHECK(error.empty());
    CHECK(took < 15s);
    CHECK(writer.durable_size() == 10);
    ::kill(pid, SIGCONT);
    writer.close();
    const AuditVerifyResult r = verify_audit_lines(read_back(db.app(), "agent-hung"), certs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 10);
}

TEST_CASE(
    "postgres faults: a stopped backend under the revocation feed is replaced and the "
    "revocation still arrives") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    PostgresRevocationFeedOptions options;
    options.io_timeout = 1s;
    options.check_interval = 300ms;
    options.reconnect_delay = 50ms;
    auto feed = std::make_shared<PostgresRevocationFeed>(db.app(), options);
    REQUIRE(feed->wait_until_listening(10s));
    RecordingListener listener;
    feed->subscribe(&listener);
    test::PgSession su(db.superuser());
    const std::string pid_text = su.value(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name = 'kakunin-revocation-feed'");
    REQUIRE_FALSE(pid_text.empty());
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    REQUIRE(::kill(pid, SIGSTOP) == 0);
    struct Resume {
        pid_t pid;
        ~Resume() { ::kill(pid, SIGCONT); }
    } resume{pid};

    publish_revocation(db.app(), {"dead01", "agent", "while the feed's backend is stopped", 1});
    CHECK(eventually([&] { return listener.has("dead01"); }, 10s));
    CHECK(feed->connections() >= 2);
    feed->unsubscribe(&listener);
}

TEST_CASE(
    "postgres faults: a stopped backend at 50 orders a second is audit_unavailable within "
    "the grace") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    su.value("SELECT kakunin_audit.ensure_partition($1)", {std::to_string(kJan2024)});
    TestAuthority authority;
    Scope scope = seed();
    scope.limits = PreTradeLimits{};
    GuardCredentials creds = authority.credentials_for(scope);
    const std::string log_id = creds.certificate.agent_id();
    AuditCertificates certs;
    certs.add_der(creds.certificate.der());
    PostgresAuditSinkOptions so{log_id};
    so.io_timeout = 30s;  // the sink waits on the silent backend: only the grace can stop orders
    GuardOptions options;
    options.audit = AuditTrailOptions{std::make_shared<PostgresAuditSink>(db.app(), so)};
    const auto grace = options.audit->sink_failure_grace;
    auto owned = std::make_unique<Guard>(std::move(creds), authority.clock(), options);
    Guard& guard = *owned;
    REQUIRE(guard.check(test::good_order()).allowed());
    REQUIRE(guard.audit()->wait_durable(10s));

    const std::string pid_text = su.value(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name = 'kakunin-audit-sink'");
    REQUIRE_FALSE(pid_text.empty());
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    REQUIRE(::kill(pid, SIGSTOP) == 0);
    struct Resume {
        pid_t pid;
        ~Resume() { ::kill(pid, SIGCONT); }
    } resume{pid};

    // 50 orders a second: the queue is nowhere near full, so only the age of the oldest record
    // not yet durable can make the Guard fail closed.
    const auto stopped = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration until_refused{};
    bool refused = false;
    while (!refused && std::chrono::steady_clock::now() - stopped < grace + 5s) {
        authority.clock().advance(20ms);
        const Decision d = guard.check(test::good_order());
        if (d.reasons.contains(ReasonCode::audit_unavailable)) {
            refused = true;
            until_refused = std::chrono::steady_clock::now() - stopped;
        }
        std::this_thread::sleep_for(20ms);
    }
    INFO("refused after "
         << std::chrono::duration_cast<std::chrono::milliseconds>(until_refused).count() << " ms");
    REQUIRE(refused);
    CHECK(until_refused <= grace + 1s);

    ::kill(pid, SIGCONT);
    REQUIRE(guard.audit()->wait_durable(30s));
    bool allowed_again = false;
    for (int i = 0; i < 200 && !allowed_again; ++i) {
        authority.clock().advance(20ms);
        allowed_again = guard.check(test::good_order()).allowed();
        if (!allowed_again) std::this_thread::sleep_for(20ms);
    }
    CHECK(allowed_again);
    REQUIRE(guard.audit()->wait_durable(30s));
    owned.reset();  // the final checkpoint covers every record
    const AuditVerifyResult r = verify_audit_lines(read_back(db.app(), log_id), certs);
    INFO(r.message);
    CHECK(r.ok);
}
