// CRLs and renewed certificates published once reach every running Guard (issue 13): `kakunin
// crl --postgres`, `cert issue --postgres` and `cert renew --all --postgres` (the real `kakunin`
// program, KAKUNIN_CLI_PATH, on a real state directory) publish into kakunin_audit, and Guards
// of one PostgresRuntime take them up on its one LISTEN connection (update_crl, rotate); what is
// forged, older or for another key is refused, reported and changes nothing. The in-process feed
// and the Guard's side are also tested without a database.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_test_support.hpp"
#include "crypto/encoding.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/postgres_credentials.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "kakunin/revocation.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "pg_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace kakunin;
using namespace std::chrono_literals;

namespace {

const char* const passphrase = "fleet-credentials";

using test::quote;
using test::Run;
using test::slurp;

const test::Cli cli{passphrase};

// Every day, every hour: the tests run on the system clock.
const char* const scope_json = R"({"version":1,
 "max_transaction":{"currency":"EUR","amount":"50000000.00"},
 "instruments":["BTC_EUR"],"counterparties":["exchange_a"],
 "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri","Sat","Sun"],"from":"00:00","to":"24:00"}],
 "regions":["eu-west-1"]})";

Order order() {
    Order o;
    o.client_order_id = "o-1";
    o.instrument = "BTC_EUR";
    o.counterparty = "exchange_a";
    o.region = "eu-west-1";
    o.side = Side::buy;
    o.quantity = parse_decimal("0.1");
    o.price = parse_decimal("40000");
    return o;
}

template <class F>
bool within(std::chrono::milliseconds limit, F&& done) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

/// The system clock moved by a settable offset: the Guards check what the CLI issues now, and
/// the test jumps ahead to past a CRL's nextUpdate.
class OffsetClock final : public Clock {
public:
    TimeNs now_ns() const noexcept override { return m_system.now_ns() + m_offset.load(); }
    void jump_to(TimeNs t) noexcept { m_offset.store(t - m_system.now_ns()); }

private:
    SystemClock m_system;
    std::atomic<TimeNs> m_offset{0};
};

/// What a Guard's error handler was told.
class Reports {
public:
    GuardErrorHandler handler() {
        return [this](std::string_view m) {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_messages.emplace_back(m);
        };
    }
    std::vector<std::string> messages() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_messages;
    }
    /// How many messages contain every fragment.
    std::size_t count(std::initializer_list<const char*> fragments) const {
        std::size_t n = 0;
        for (const std::string& m : messages()) {
            bool all = true;
            for (const char* f : fragments) all = all && m.find(f) != std::string::npos;
            n += all ? 1 : 0;
        }
        return n;
    }

private:
    mutable std::mutex m_mutex;
    std::vector<std::string> m_messages;
};

std::size_t events_of(const Guard& g, GuardEvent::Kind kind) {
    std::size_t n = 0;
    for (const GuardEvent& e : g.events()) n += e.kind == kind ? 1 : 0;
    return n;
}

/// A CA state directory made with the command line: agents agent-0 .. agent-(n-1) registered,
/// the scope approved and a 24 h certificate each (their keys in the CA's software KMS).
struct Fleet {
    test::TempDir dir{"kakunin-fleet"};
    std::string state = dir / "state";
    std::vector<std::string> agents;
    std::shared_ptr<Kms> kms;

    explicit Fleet(int n) {
        ::setenv(SoftwareKms::passphrase_variable, passphrase, 1);
        std::ofstream(dir / "scope.json") << scope_json;
        cli.ok(dir, "ca init --dir state");
        for (int i = 0; i < n; ++i) add("agent-" + std::to_string(i));
        kms = SoftwareKms::open(state + "/keys");
    }

    void add(const std::string& agent) {
        cli.ok(dir,
               "agent register --dir state --agent " + agent + " --owner Desk --purpose trading");
        cli.ok(dir, "scope approve --dir state --agent " + agent +
                        " --scope scope.json --approver 'A. Officer'");
        cli.ok(dir, "cert issue --dir state --agent " + agent + " --out " + agent + ".pem");
        agents.push_back(agent);
    }

    AgentCertificate certificate(const std::string& agent) const {
        return AgentCertificate::load_file(dir / (agent + ".pem"));
    }

    /// The agent's credentials as the host has them: its certificate file and `crl`.
    GuardCredentials credentials(const std::string& agent,
                                 const CertificateRevocationList& crl) const {
        return GuardCredentials{certificate(agent), TrustAnchor::load_file(state + "/ca.pem"), crl,
                                kms, kms->find_key("agent:" + agent)};
    }
};

std::string connections_named(test::PgSession& su, const std::string& pattern) {
    return su.value(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name LIKE $1",
        {pattern});
}

/// "agent-N: renewed: serial S ..." lines of `cert renew`: agent -> new serial.
std::map<std::string, std::string> renewed_serials(const std::string& out) {
    std::map<std::string, std::string> serials;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        const auto colon = line.find(": renewed: serial ");
        if (colon == std::string::npos) continue;
        const std::string rest = line.substr(colon + 18);
        serials[line.substr(0, colon)] = rest.substr(0, rest.find(' '));
    }
    return serials;
}

bool test_support_on_path(const char* program) {
    return std::system(("command -v " + std::string(program) + " >/dev/null 2>&1").c_str()) == 0;
}

bool has_record(const MemoryAuditSink& sink, const std::string& event) {
    for (const std::string& line : sink.lines())
        if (line.find("\"event\":\"" + event + "\"") != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE(
    "fleet credentials: ten Guards on one runtime take up a CRL and the renewals published "
    "once with the command line",
    "[fleet_credentials][postgres][cli]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    Fleet fleet(10);
    fleet.add("agent-x");  // revoked below: its revocation makes the new CRL
    const CertificateRevocationList old_crl =
        CertificateRevocationList::load_file(fleet.state + "/crl.pem");

    OffsetClock clock;
    PostgresRuntimeOptions ro;
    ro.application_name = "kk-fleet-creds";
    ro.reconnect_delay = 20ms;
    PostgresRuntime runtime(db.app(), ro);
    auto feed = runtime.credential_feed();
    CHECK(runtime.credential_feed() == feed);  // the process's one
    auto revocations = runtime.revocation_feed();
    REQUIRE(feed->wait_until_listening(10s));
    REQUIRE(revocations->wait_until_listening(10s));

    std::vector<std::unique_ptr<Guard>> guards;
    std::vector<std::shared_ptr<MemoryAuditSink>> logs;
    std::vector<std::unique_ptr<Reports>> reports;
    for (int i = 0; i < 10; ++i) {
        GuardCredentials c = fleet.credentials(fleet.agents[i], old_crl);
        c.credential_feed = feed;
        c.revocation_feed = revocations;
        GuardOptions o;
        logs.push_back(std::make_shared<MemoryAuditSink>());
        o.audit = AuditTrailOptions{logs.back()};
        guards.push_back(std::make_unique<Guard>(std::move(c), clock, std::move(o)));
        reports.push_back(std::make_unique<Reports>());
        guards.back()->set_error_handler(reports.back()->handler());
    }
    CHECK(connections_named(su, "kk-fleet-creds-listen") == "1");
    CHECK(connections_named(su, "kk-fleet-creds%") == "1");

    // A new CRL (agent-x revoked), published once. Its nextUpdate must come at least two
    // seconds after the old one's, for the jump past the old one below.
    std::this_thread::sleep_until(std::chrono::system_clock::time_point(
        std::chrono::nanoseconds(old_crl.this_update() + 2'000'000'000)));
    cli.ok(fleet.dir, "cert revoke --dir state --serial " + fleet.certificate("agent-x").serial() +
                          " --reason superseded");
    const Run published =
        cli.ok(fleet.dir, "crl --dir state --out crl-now.pem --postgres " + quote(db.app()));
    CHECK_THAT(published.out, Catch::Contains("published to PostgreSQL as credential #"));
    const CertificateRevocationList new_crl =
        CertificateRevocationList::load_file(fleet.dir / "crl-now.pem");
    REQUIRE(new_crl.next_update() >= old_crl.next_update() + 2'000'000'000);
    CHECK(new_crl.lists(fleet.certificate("agent-x").serial()));
    for (std::size_t i = 0; i < guards.size(); ++i) {
        INFO("guard of " << fleet.agents[i]);
        CHECK(
            within(10s, [&] { return events_of(*guards[i], GuardEvent::Kind::crl_updated) == 1; }));
    }
    // The same CRL again is stored once, and no Guard takes it up twice.
    const Run again =
        cli.ok(fleet.dir, "crl --dir state --out crl-again.pem --postgres " + quote(db.app()));
    CHECK_THAT(again.out, Catch::Contains("already published to PostgreSQL as credential #"));
    CHECK(su.value("SELECT count(*) FROM kakunin_audit.published_crls") == "1");

    // The daily renewal: one command for every active agent (agent-x is revoked: skipped).
    const Run renew = cli.ok(
        fleet.dir, "cert renew --dir state --all --validity 36h --postgres " + quote(db.app()));
    INFO(renew.out);
    CHECK_THAT(renew.out, Catch::Contains("agent-x: skipped: its certificate"));
    const std::map<std::string, std::string> serials = renewed_serials(renew.out);
    REQUIRE(serials.size() == 10);
    CHECK(su.value("SELECT count(*) FROM kakunin_audit.published_certificates") == "10");
    for (std::size_t i = 0; i < guards.size(); ++i) {
        const std::string& agent = fleet.agents[i];
        INFO("guard of " << agent);
        REQUIRE(serials.count(agent) == 1);
        CHECK(serials.at(agent) != fleet.certificate(agent).serial());
        CHECK(within(10s, [&] { return guards[i]->certificate()->serial() == serials.at(agent); }));
        CHECK(within(10s, [&] { return has_record(*logs[i], "guard.rotated"); }));
        CHECK(guards[i]->certificate()->not_after() - guards[i]->certificate()->not_before() ==
              36LL * 3600 * 1'000'000'000);
        CHECK(reports[i]->messages().empty());
    }

    // A Guard started now from the old files takes up the newest CRL and its renewal before its
    // constructor returns (the feed's history); one without the feed stays on the old files.
    GuardCredentials late = fleet.credentials("agent-3", old_crl);
    late.credential_feed = feed;
    Guard latecomer(std::move(late), clock);
    CHECK(latecomer.certificate()->serial() == serials.at("agent-3"));
    CHECK(events_of(latecomer, GuardEvent::Kind::crl_updated) == 1);
    Guard unfed(fleet.credentials("agent-3", old_crl), clock);

    // Past the old CRL's nextUpdate: the Guards that took the new one still allow.
    clock.jump_to(old_crl.next_update() + 1'000'000'000);
    const Decision stale = unfed.check(order());
    CHECK(stale.reasons.contains(ReasonCode::revocation_status_stale));
    for (auto& g : guards) {
        CHECK(g->check(order()).allowed());
    }
    CHECK(latecomer.check(order()).allowed());

    // All of it on the runtime's one LISTEN connection; no Guard opened another.
    CHECK(connections_named(su, "kk-fleet-creds-listen") == "1");
    CHECK(connections_named(su, "kk-fleet-creds%") == "1");
    CHECK(runtime.listen_connections() == 1);
    CHECK(feed->connections() == 1);
}

TEST_CASE(
    "fleet credentials: a forged CRL, a row that lies about its DER and a certificate for "
    "another key are refused and change nothing",
    "[fleet_credentials][postgres][cli]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    Fleet fleet(3);
    const CertificateRevocationList crl =
        CertificateRevocationList::load_file(fleet.state + "/crl.pem");
    SystemClock clock;
    std::vector<std::string> feed_errors;
    std::mutex feed_errors_mutex;
    PostgresRuntimeOptions ro;
    ro.application_name = "kk-fleet-forged";
    ro.error_handler = [&](std::string_view e) {
        std::lock_guard<std::mutex> lock(feed_errors_mutex);
        feed_errors.emplace_back(e);
    };
    PostgresRuntime runtime(db.app(), ro);
    auto feed = runtime.credential_feed();
    REQUIRE(feed->wait_until_listening(10s));
    std::vector<std::unique_ptr<Guard>> guards;
    std::vector<std::unique_ptr<Reports>> reports;
    for (const std::string& agent : fleet.agents) {
        GuardCredentials c = fleet.credentials(agent, crl);
        c.credential_feed = feed;
        guards.push_back(std::make_unique<Guard>(std::move(c), clock));
        reports.push_back(std::make_unique<Reports>());
        guards.back()->set_error_handler(reports.back()->handler());
    }

    // Another CA of the same name signs a later CRL; a superuser stores it.
    std::this_thread::sleep_for(1100ms);  // a later thisUpdate than the genuine CRL's
    auto other = LocalCa::init(SoftwareKms::in_memory(), clock, LocalCaOptions{});
    const CertificateRevocationList forged = other->issue_crl();
    REQUIRE(forged.issuer() == crl.issuer());
    REQUIRE(forged.this_update() > crl.this_update());
    CHECK_FALSE(publish_crl(db.superuser(), forged).already_published);
    for (std::size_t i = 0; i < guards.size(); ++i) {
        INFO("guard of " << fleet.agents[i]);
        CHECK(within(10s, [&] { return reports[i]->count({"CRL number", "not taken up"}) == 1; }));
        CHECK(events_of(*guards[i], GuardEvent::Kind::crl_updated) == 0);
    }

    // A genuine CRL in a row whose columns say something else: skipped by the feed, reported.
    test::PgSession su(db.superuser());
    cli.ok(fleet.dir, "cert revoke --dir state --serial " + fleet.certificate("agent-2").serial() +
                          " --reason superseded");
    const CertificateRevocationList genuine =
        CertificateRevocationList::load_file(fleet.state + "/crl.pem");
    REQUIRE(su.exec("INSERT INTO kakunin_audit.published_crls (issuer, crl_number, "
                    "this_update_ns, next_update_ns, der) VALUES ($1, $2, $3, $4, "
                    "decode($5, 'hex'))",
                    {genuine.issuer(), std::to_string(genuine.number() + 100),
                     std::to_string(genuine.this_update()), std::to_string(genuine.next_update()),
                     crypto::to_hex(genuine.der())})
                .ok);
    CHECK(within(10s, [&] {
        std::lock_guard<std::mutex> lock(feed_errors_mutex);
        for (const std::string& e : feed_errors)
            if (e.find("skipped: its crl_number is not what its DER holds") != std::string::npos)
                return true;
        return false;
    }));
    std::this_thread::sleep_for(200ms);
    for (auto& g : guards) {
        CHECK(events_of(*g, GuardEvent::Kind::crl_updated) == 0);
        CHECK_FALSE(g->halted());  // agent-2's revocation came in no CRL it took
    }

    // A certificate for agent-1 under another key (a request made elsewhere), published with
    // cert issue --postgres: agent-1's Guard refuses it, the others pass over it quietly.
    if (!test_support_on_path("openssl"))
        FAIL("the openssl program is not installed: run scripts/test");
    REQUIRE(std::system(("cd " + quote(fleet.dir.path().string()) +
                         " && openssl req -new -newkey ed25519 -nodes -keyout other.key "
                         "-subj /CN=x -out other.csr 2>/dev/null")
                            .c_str()) == 0);
    const std::string before = guards[1]->certificate()->serial();
    const Run other_key = cli.ok(fleet.dir,
                                 "cert issue --dir state --agent agent-1 --csr other.csr "
                                 "--out other.pem --postgres " +
                                     quote(db.app()));
    CHECK_THAT(other_key.out, Catch::Contains("published to PostgreSQL as credential #"));
    CHECK(within(10s, [&] {
        return reports[1]->count({"not taken up", "another key than this Guard's"}) == 1;
    }));
    CHECK(guards[1]->certificate()->serial() == before);
    CHECK(reports[0]->count({"certificate serial"}) == 0);
    CHECK(reports[2]->count({"certificate serial"}) == 0);

    // The feed still works: agent-1's renewal for its own key is taken up.
    const Run renewal = cli.ok(fleet.dir,
                               "cert issue --dir state --agent agent-1 --out renewed.pem "
                               "--json --postgres " +
                                   quote(db.app()));
    CHECK_THAT(renewal.out, Catch::Contains("\"published_seq\""));
    const AgentCertificate r = AgentCertificate::load_file(fleet.dir / "renewed.pem");
    CHECK(r.serial() != before);
    CHECK(within(10s, [&] { return guards[1]->certificate()->serial() == r.serial(); }));
    CHECK(events_of(*guards[1], GuardEvent::Kind::rotated) == 1);
    CHECK(events_of(*guards[0], GuardEvent::Kind::rotated) == 0);
    CHECK(connections_named(su, "kk-fleet-forged%") == "1");
}

TEST_CASE(
    "fleet credentials: cert renew names each agent, skips a revoked one, exits non-zero "
    "naming a failure, and renews nothing when the database is away",
    "[fleet_credentials][postgres][cli]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    Fleet fleet(3);
    cli.ok(fleet.dir, "cert revoke --dir state --serial " + fleet.certificate("agent-2").serial() +
                          " --reason superseded");
    const auto issued = [&] {
        std::size_t n = 0;
        for (const auto& e : fs::directory_iterator(fleet.state + "/certs"))
            n += e.is_regular_file();
        return n;
    };
    REQUIRE(issued() == 3);

    // No database: refused before anything is issued.
    const Run away = cli.run(
        fleet.dir, "cert renew --dir state --all --postgres " +
                       quote("host=/nonexistent-kakunin-socket-dir port=1 connect_timeout=1"));
    CHECK(away.code != 0);
    CHECK(issued() == 3);
    // Neither --all nor --agent, both, or nowhere to send them: refused.
    CHECK(cli.run(fleet.dir, "cert renew --dir state --out-dir .").code != 0);
    CHECK(cli.run(fleet.dir, "cert renew --dir state --all --agent agent-0 --out-dir .").code != 0);
    const Run nowhere = cli.run(fleet.dir, "cert renew --dir state --all");
    CHECK(nowhere.code != 0);
    CHECK_THAT(nowhere.err, Catch::Contains("would reach no Guard"));
    CHECK(issued() == 3);

    // agent-1's output is a directory: its renewal fails, the others go through.
    fs::create_directories(fleet.dir / "out/agent-1.pem");
    const Run run = cli.run(fleet.dir,
                            "cert renew --dir state --all --out-dir out "
                            "--postgres " +
                                quote(db.app()));
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    CHECK(run.code != 0);
    CHECK_THAT(run.out, Catch::Contains("agent-0: renewed: serial "));
    CHECK_THAT(run.out, Catch::Contains("agent-1: FAILED: "));
    CHECK_THAT(run.out, Catch::Contains("agent-2: skipped: its certificate"));
    CHECK_THAT(run.err, Catch::Contains("1 of 3 agents failed: agent-1"));
    CHECK(run.err.find('\n') == run.err.size() - 1);  // one line
    CHECK(renewed_serials(run.out).size() == 1);
    CHECK(fs::exists(fleet.dir / "out/agent-0.pem"));
    CHECK(issued() == 4);  // agent-1's was refused before it was issued
    CHECK(su.value("SELECT agent_id FROM kakunin_audit.published_certificates") == "agent-0");

    // An agent named explicitly that is revoked, or unknown, fails and is named.
    const Run named =
        cli.run(fleet.dir, "cert renew --dir state --agent agent-2 --agent nobody --out-dir out");
    CHECK(named.code != 0);
    CHECK_THAT(named.out, Catch::Contains("agent-2: FAILED: its certificate"));
    CHECK_THAT(named.out, Catch::Contains("nobody: FAILED: not registered"));
    CHECK_THAT(named.err, Catch::Contains("2 of 2 agents failed: agent-2, nobody"));
    CHECK(issued() == 4);
}

TEST_CASE(
    "fleet credentials: init-db creates the tables once, on an older schema too, and they "
    "are append-only",
    "[fleet_credentials][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    TestAuthority authority;
    CHECK(publish_crl(db.app(), authority.ca().current_crl()).seq > 0);
    init_audit_database(db.superuser(), db.options);  // again: harmless
    test::PgSession su(db.superuser());
    CHECK(su.value("SELECT count(*) FROM kakunin_audit.published_crls") == "1");
    test::PgSession app(db.app());
    CHECK_FALSE(app.exec("UPDATE kakunin_audit.published_crls SET crl_number = 7").ok);
    CHECK_FALSE(app.exec("DELETE FROM kakunin_audit.published_certificates").ok);
    const test::SqlOutcome su_delete = su.exec("DELETE FROM kakunin_audit.published_crls");
    CHECK_FALSE(su_delete.ok);
    CHECK(su_delete.sqlstate == "KAK02");

    // A schema from before the tables: init-db adds them.
    REQUIRE(su.exec("SET kakunin.maintenance = on").ok);
    REQUIRE(su.exec("DROP TABLE kakunin_audit.published_crls, "
                    "kakunin_audit.published_certificates")
                .ok);
    REQUIRE(su.exec("DROP FUNCTION kakunin_audit.notify_credential()").ok);
    REQUIRE(su.exec("DROP SEQUENCE kakunin_audit.credentials_seq").ok);
    REQUIRE(su.exec("SET kakunin.maintenance = off").ok);
    init_audit_database(db.superuser(), db.options);
    const PublishedCredential p = publish_crl(db.app(), authority.ca().current_crl());
    CHECK_FALSE(p.already_published);
    CHECK(publish_crl(db.app(), authority.ca().current_crl()).seq == p.seq);
    CHECK(publish_crl(db.app(), authority.ca().current_crl()).already_published);
}

TEST_CASE(
    "fleet credentials: update_crl refuses an older CRL, so the revocation status never "
    "goes back",
    "[fleet_credentials]") {
    TestAuthority authority;
    const Scope scope = parse_scope_json(scope_json);
    GuardCredentials c = authority.credentials_for(scope);
    Guard guard(std::move(c), authority.clock());
    authority.clock().advance(10s);
    const CertificateRevocationList older = authority.ca().issue_crl();
    authority.clock().advance(10s);
    const CertificateRevocationList newer = authority.ca().issue_crl();
    REQUIRE(newer.number() > older.number());
    guard.update_crl(newer);
    try {
        guard.update_crl(older);
        FAIL("update_crl took an older CRL");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::unauthorised);
        CHECK_THAT(e.what(), Catch::Contains("not_newer"));
    }
    // Past the older one's nextUpdate, before the newer one's: still fresh.
    authority.clock().set(older.next_update() + 5'000'000'000);
    CHECK_FALSE(guard.check(order()).reasons.contains(ReasonCode::revocation_status_stale));
    CHECK(events_of(guard, GuardEvent::Kind::crl_updated) == 1);
}

TEST_CASE(
    "fleet credentials: an in-process feed hands its Guards new CRLs and renewals of their "
    "own key, and a late Guard the newest at once",
    "[fleet_credentials]") {
    TestAuthority authority;
    const Scope scope = parse_scope_json(scope_json);
    auto feed = std::make_shared<InProcessCredentialFeed>();
    GuardCredentials c = authority.credentials_for(scope);
    const AgentCertificate first = c.certificate;
    const CertificateRevocationList first_crl = *c.crl;
    GuardCredentials c_copy = c;
    c.credential_feed = feed;
    Guard guard(std::move(c), authority.clock());
    Reports reports;
    guard.set_error_handler(reports.handler());
    GuardCredentials other_agent = authority.credentials_for(scope);
    other_agent.credential_feed = feed;
    Guard bystander(std::move(other_agent), authority.clock());
    Reports bystander_reports;
    bystander.set_error_handler(bystander_reports.handler());

    authority.clock().advance(60s);
    const CertificateRevocationList crl = authority.ca().issue_crl();
    feed->publish_crl(crl);  // synchronous
    CHECK(events_of(guard, GuardEvent::Kind::crl_updated) == 1);
    CHECK(events_of(bystander, GuardEvent::Kind::crl_updated) == 1);
    feed->publish_crl(first_crl);  // an older one, live: refused and reported
    CHECK(reports.count({"not taken up", "not_newer"}) == 1);
    CHECK(events_of(guard, GuardEvent::Kind::crl_updated) == 1);

    const AgentCertificate renewed = authority.renew(first);
    feed->publish_certificate(renewed);
    CHECK(guard.certificate()->serial() == renewed.serial());
    CHECK(bystander_reports.count({"certificate serial"}) == 0);  // another agent's: quiet

    // The same agent under another key: refused and reported.
    const KeyHandle other_key = authority.kms()->find_or_create_key("other", KeyAlgorithm::ed25519);
    authority.clock().advance(1s);
    const AgentCertificate foreign = authority.ca().issue_for_agent(
        first.agent_id(), authority.kms()->public_key(other_key).spki_der);
    feed->publish_certificate(foreign);
    CHECK(reports.count({"another key than this Guard's"}) == 1);
    CHECK(guard.certificate()->serial() == renewed.serial());

    // A Guard of the same agent started from the first certificate and CRL: before its
    // constructor returns it holds the newest of both, and says nothing of the older ones.
    c_copy.credential_feed = feed;
    Guard late(std::move(c_copy), authority.clock());
    CHECK(late.certificate()->serial() == renewed.serial());
    CHECK(events_of(late, GuardEvent::Kind::crl_updated) == 1);
    CHECK(events_of(late, GuardEvent::Kind::rotated) == 1);
}

TEST_CASE(
    "fleet credentials: a standalone PostgresCredentialFeed hands a Guard what was "
    "published before it started, then what is published after",
    "[fleet_credentials][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    TestAuthority authority;
    const Scope scope = parse_scope_json(scope_json);
    GuardCredentials c = authority.credentials_for(scope);
    authority.clock().advance(60s);
    const CertificateRevocationList before = authority.ca().issue_crl();
    const AgentCertificate renewed = authority.renew(c.certificate);
    PostgresCredentialPublisher publisher(db.app());
    CHECK_FALSE(publisher.publish(before).already_published);
    CHECK_FALSE(publisher.publish(renewed).already_published);
    CHECK(publisher.publish(renewed).already_published);

    PostgresCredentialFeed feed(db.app());
    REQUIRE(feed.wait_until_listening(10s));
    CHECK(feed.delivered() == 2);
    c.credential_feed = std::shared_ptr<CredentialFeed>(&feed, [](CredentialFeed*) {});
    Guard guard(std::move(c), authority.clock());
    CHECK(guard.certificate()->serial() == renewed.serial());
    CHECK(events_of(guard, GuardEvent::Kind::crl_updated) == 1);

    authority.clock().advance(60s);
    const CertificateRevocationList after = authority.ca().issue_crl();
    CHECK_FALSE(publish_crl(db.app(), after).already_published);
    CHECK(within(10s, [&] { return events_of(guard, GuardEvent::Kind::crl_updated) == 2; }));
    authority.clock().set(before.next_update() + 30'000'000'000);
    CHECK_FALSE(guard.check(order()).reasons.contains(ReasonCode::revocation_status_stale));
    CHECK(feed.connections() == 1);
}
