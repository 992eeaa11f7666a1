// Fleet state and the fleet halt (docs/operations.md): three PostgresRuntimes stand for
// three processes of ten Guards each; each publishes its Guards' rows through a PostgresFleet;
// `kakunin fleet halt` (the CLI, a second process) stops every Guard within a second and
// `kakunin fleet resume` restarts only those the fleet halt stopped. A file setup's
// `--dir STATE` reads the CA's registry and the agents' logs.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_test_support.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/fleet.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "pg_test_support.hpp"
#include "support.hpp"

using namespace kakunin;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

const char* const passphrase = "fleet-state";

using test::quote;
using test::Run;
using test::slurp;

const test::Cli cli{passphrase};

const char* const scope_json = R"({"version":1,
 "max_transaction":{"currency":"EUR","amount":"50000000.00"},
 "instruments":["BTC_EUR","ETH_EUR"],"counterparties":["exchange_a"],
 "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri","Sat","Sun"],"from":"00:00","to":"24:00"}],
 "regions":["eu-west-1","eu-central-1"],
 "limits":{"max_orders_per_second":50,"max_open_orders":100}})";

Order order(const char* region, const char* quantity, const std::string& id = "t") {
    Order o;
    o.client_order_id = id;
    o.instrument = "BTC_EUR";
    o.counterparty = "exchange_a";
    o.region = region;
    o.side = Side::buy;
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal("40000");
    return o;
}

/// Seven days of BTC_EUR from eu-west-1: an order from eu-central-1 then warns.
Baseline learn(const Scope& scope, const std::string& agent) {
    const TimeNs start = utc(2024, 1, 8, 0, 0, 0);
    const TimeNs minute = 60'000'000'000LL;
    BaselineBuilder b(scope, agent);
    b.start(start);
    unsigned n = 0;
    for (TimeNs t = start; t < start + 7 * 1440 * minute; t += 2 * minute, ++n)
        b.observe(order("eu-west-1", ("0." + std::to_string(n % 9 + 1)).c_str()), t);
    return b.finalize(start + 7 * 1440 * minute);
}

/// A CLI-made CA state with agent-7 and agent-8 (certificates issued), as an operator has it.
struct State {
    test::TempDir d{"kakunin-fleet"};
    std::string state = d / "state";
    std::shared_ptr<Kms> kms;

    State() {
        ::setenv(SoftwareKms::passphrase_variable, passphrase, 1);
        std::ofstream(d / "scope.json") << scope_json;
        cli.ok(d, "ca init --dir state");
        for (const char* agent : {"agent-7", "agent-8"}) {
            const std::string a = agent;
            cli.ok(d, "agent register --dir state --agent " + a + " --owner Desk --purpose mm");
            cli.ok(d, "scope approve --dir state --agent " + a +
                          " --scope scope.json --approver 'A. Officer'");
            cli.ok(d,
                   "cert issue --dir state --agent " + a + " --validity 24h --out " + a + ".pem");
        }
        kms = SoftwareKms::open(state + "/keys");
    }

    std::string log(const std::string& agent) const { return state + "/audit/" + agent + ".jsonl"; }

    GuardCredentials credentials(const std::string& agent) const {
        return GuardCredentials{AgentCertificate::load_file(d / (agent + ".pem")),
                                TrustAnchor::load_file(state + "/ca.pem"),
                                CertificateRevocationList::load_file(state + "/crl.pem"), kms,
                                kms->find_key("agent:" + agent)};
    }

    /// Scores against a learned baseline; `escalate_halt`: an incident not acknowledged within
    /// a second halts the Guard automatically.
    GuardOptions options(const std::string& agent, const Clock& clock, bool escalate_halt) const {
        GuardOptions o;
        o.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(log(agent))};
        Baseline b = learn(parse_scope_json(scope_json), agent);
        b.policy.investigation_window_s = escalate_halt ? 1 : 300;
        b.policy.halt_on_escalation = escalate_halt;
        o.baseline =
            ApprovedBaseline{b, approve_baseline(*kms, b, "C. Officer", clock.now_ns(), 1)};
        return o;
    }
};

std::vector<json> records(const std::string& path) {
    std::vector<json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        json j = json::parse(line);
        if (j["kind"] == "record") out.push_back(std::move(j));
    }
    return out;
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

std::string count_of(test::PgSession& su, const std::string& application_name) {
    return su.value(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name = $1",
        {application_name});
}

const json* agent_row(const json& status, const std::string& agent) {
    for (const json& a : status["agents"])
        if (a["agent_id"] == agent) return &a;
    return nullptr;
}

const Scope& seed() {
    static const Scope s = parse_scope_json(test::seed_scope_json);
    return s;
}

}  // namespace

TEST_CASE(
    "fleet: 30 Guards in 3 processes publish their state, a fleet halt stops all within a "
    "second and resume restarts only what it stopped",
    "[fleet][postgres][cli]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    State s;
    TestAuthority authority;
    SystemClock clock;
    const std::string pg = " --postgres " + quote(db.app());

    struct Process {
        std::unique_ptr<PostgresRuntime> runtime;
        std::vector<std::unique_ptr<Guard>> guards;
        std::unique_ptr<PostgresFleet> fleet;
    };
    std::vector<Process> processes(3);
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    for (std::size_t p = 0; p < processes.size(); ++p) {
        PostgresRuntimeOptions ro;
        ro.application_name = "kk-fleet-" + std::to_string(p);
        ro.reconnect_delay = 20ms;
        processes[p].runtime = std::make_unique<PostgresRuntime>(db.app(), ro);
        PostgresFleetOptions fo;
        fo.process_label = "desk-" + std::to_string(p);
        fo.publish_interval = 200ms;
        fo.error_handler = [&](std::string_view m) {
            std::lock_guard<std::mutex> lock(errors_mutex);
            errors.emplace_back(m);
        };
        processes[p].fleet = std::make_unique<PostgresFleet>(*processes[p].runtime, fo);
        REQUIRE(processes[p].fleet->wait_until_listening(10s));
    }
    // Process 0 runs agent-7 and agent-8 of the CLI-made CA (audit logs, baselines); the other
    // 28 Guards are TestAuthority agents.
    processes[0].guards.push_back(std::make_unique<Guard>(s.credentials("agent-7"), clock,
                                                          s.options("agent-7", clock, false)));
    processes[0].guards.push_back(std::make_unique<Guard>(s.credentials("agent-8"), clock,
                                                          s.options("agent-8", clock, true)));
    for (Process& p : processes) {
        while (p.guards.size() < 10)
            p.guards.push_back(
                std::make_unique<Guard>(authority.credentials_for(seed()), authority.clock()));
        for (auto& g : p.guards) p.fleet->add(*g);
    }
    std::vector<Guard*> all;
    for (Process& p : processes)
        for (auto& g : p.guards) all.push_back(g.get());
    REQUIRE(all.size() == 30);

    // Every agent is listed, trading, with the process that runs it.
    json status;
    CHECK(within(10s, [&] {
        status = cli.ok_json(s.d, "fleet status --json" + pg);
        return status["total"] == 30 && status["counts"]["trading"] == 30;
    }));
    REQUIRE(status["agents"].size() == 30);
    CHECK(status["fleet_halt"] == false);
    for (const json& a : status["agents"]) {
        CHECK(a["state"] == "trading");
        CHECK(a["stale"] == false);
        CHECK(a["pid"] == static_cast<int>(::getpid()));
        CHECK(a["serial"].is_string());
    }
    CHECK((*agent_row(status, "agent-7"))["process"] == "desk-0");

    // Each process holds one LISTEN and one write connection, whatever its number of Guards.
    for (std::size_t p = 0; p < processes.size(); ++p) {
        const std::string name = "kk-fleet-" + std::to_string(p);
        CHECK(count_of(su, name + "-listen") == "1");
        CHECK(count_of(su, name + "-write") == "1");
        CHECK(su.value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name LIKE $1",
                       {name + "%"}) == "2");
    }

    // agent-7 trades and warns (an incident); agent-8 warns and, unacknowledged, halts
    // automatically; one TestAuthority Guard is halted by a person.
    Guard& agent7 = *processes[0].guards[0];
    Guard& agent8 = *processes[0].guards[1];
    Guard& manual = *processes[1].guards[3];
    REQUIRE(agent7.check(order("eu-west-1", "0.5", "a")).allowed());
    REQUIRE(agent7.check(order("eu-central-1", "0.5", "b")).verdict == Verdict::warn);
    REQUIRE(agent8.check(order("eu-central-1", "0.5", "c")).verdict == Verdict::warn);
    REQUIRE(within(10s, [&] { return agent8.halted(); }));
    REQUIRE(agent8.status().automatic);
    const std::string manual_halt = manual.halt("desk drill", "J. Doe");

    // The incidents are rows.
    json incidents;
    CHECK(within(10s, [&] {
        incidents = cli.ok_json(s.d, "incident list --json" + pg);
        return incidents["incidents"].size() == 2;
    }));
    for (const json& i : incidents["incidents"]) {
        CHECK((i["agent_id"] == "agent-7" || i["agent_id"] == "agent-8"));
        CHECK(i["opened"].is_string());
        CHECK(i["deadline"].is_string());
    }
    const json only7 = cli.ok_json(s.d, "incident list --agent agent-7 --json" + pg);
    REQUIRE(only7["incidents"].size() == 1);
    CHECK(only7["incidents"][0]["state"] == "open");
    json agents;
    CHECK(within(5s, [&] {
        agents = cli.ok_json(s.d, "agent list --json" + pg);
        const json* a8 = agent_row(agents, "agent-8");
        return a8 != nullptr && (*a8)["automatic"] == true;
    }));
    REQUIRE(agents["agents"].size() == 30);
    const json* row7 = agent_row(agents, "agent-7");
    REQUIRE(row7 != nullptr);
    CHECK((*row7)["checks"] == 2);
    CHECK((*row7)["allowed"] == 2);
    CHECK((*row7)["open_incidents"] == 1);
    CHECK((*row7)["serial"] == agent7.certificate()->serial());
    CHECK((*agent_row(agents, "agent-8"))["automatic"] == true);

    // The fleet halt: every Guard stopped within a second of the command's return.
    cli.ok(s.d, "fleet halt --dir state --by 'H. Head' --reason 'venue outage'" + pg);
    const auto halted_at = std::chrono::steady_clock::now();
    CHECK(within(1000ms, [&] {
        for (Guard* g : all)
            if (!g->halted()) return false;
        return true;
    }));
    INFO("halt took " << std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - halted_at)
                             .count()
                      << " ms");
    for (Guard* g : all) CHECK(!g->check(test::good_order()).allowed());
    CHECK(within(5s, [&] {
        status = cli.ok_json(s.d, "fleet status --json" + pg);
        return status["counts"]["halted"] == 30;
    }));
    CHECK(status["fleet_halt"] == true);
    CHECK(status["latest_step"]["by"] == "H. Head");
    const json* row = agent_row(status, "agent-7");
    REQUIRE(row != nullptr);
    CHECK((*row)["halt_by"] == "H. Head");
    CHECK_THAT((*row)["halt_reason"].get<std::string>(), Catch::Contains("venue outage"));
    // A Guard added while the fleet halt is in force starts halted.
    auto late = std::make_unique<Guard>(authority.credentials_for(seed()), authority.clock());
    processes[2].fleet->add(*late);
    CHECK(late->halted());

    // Resume: the fleet halt is lifted; the automatic halt and the person's halt stay.
    cli.ok(s.d, "fleet resume --dir state --by 'H. Head' --reason 'venue back'" + pg);
    CHECK(within(2s, [&] {
        for (Guard* g : all)
            if (g != &agent8 && g != &manual && g->halted()) return false;
        return !late->halted();
    }));
    CHECK(agent8.halted());
    CHECK(agent8.status().automatic);
    CHECK(manual.halted());
    CHECK(manual.current_halt()->halt_id == manual_halt);
    CHECK(agent7.check(order("eu-west-1", "0.5", "d")).allowed());
    CHECK(within(5s, [&] {
        status = cli.ok_json(s.d, "fleet status --json" + pg);
        return status["counts"]["trading"] == 29 && status["counts"]["halted"] == 2;
    }));
    CHECK(status["fleet_halt"] == false);
    CHECK(status["total"] == 31);

    // agent-7's log records the fleet halt and its resume, with the person and the halt's id.
    REQUIRE(agent7.audit()->wait_durable(5s));
    std::string fleet_halt_id;
    bool resumed = false;
    for (const json& r : records(s.log("agent-7"))) {
        if (r["event"] == "guard.halted" && r["payload"]["by"] == "H. Head") {
            CHECK_THAT(r["payload"]["reason"].get<std::string>(),
                       Catch::StartsWith("fleet halt ") && Catch::Contains("venue outage"));
            fleet_halt_id = r["payload"]["halt"].get<std::string>();
        }
        if (r["event"] == "guard.resumed" && r["payload"]["by"] == "H. Head") {
            CHECK(r["payload"]["halt"] == fleet_halt_id);
            CHECK_THAT(r["payload"]["reason"].get<std::string>(), Catch::Contains("venue back"));
            resumed = true;
        }
    }
    CHECK(!fleet_halt_id.empty());
    CHECK(resumed);
    // The CA log holds both signed steps.
    const std::string ca_log = slurp(s.state + "/audit/ca.jsonl");
    CHECK_THAT(ca_log, Catch::Contains("\"fleet.halted\"") && Catch::Contains("\"fleet.resumed\""));

    // Still one LISTEN and one write connection per process.
    for (std::size_t p = 0; p < processes.size(); ++p) {
        CHECK(processes[p].runtime->listen_connections() == 1);
        CHECK(processes[p].runtime->write_connections() == 1);
    }
    processes[2].fleet->remove(*late);
    for (Process& p : processes)
        for (auto& g : p.guards) p.fleet->remove(*g);
    {
        std::lock_guard<std::mutex> lock(errors_mutex);
        for (const std::string& e : errors) INFO(e);
    }
}

TEST_CASE("fleet: agent list, incident list and fleet status read a file setup with --dir",
          "[fleet][cli]") {
    State s;
    SystemClock clock;
    std::string halt_id;
    {
        // agent-7's Guard ran: it traded, warned (an incident, acknowledged) and was halted.
        GuardOptions o = s.options("agent-7", clock, false);
        o.incident_thread = false;
        Guard g(s.credentials("agent-7"), clock, o);
        REQUIRE(g.check(order("eu-west-1", "0.5", "a")).allowed());
        REQUIRE(g.check(order("eu-central-1", "0.5", "b")).verdict == Verdict::warn);
        g.process_incidents();
        g.acknowledge_incident(g.incidents().at(0).id, "On Call", "seen");
        halt_id = g.halt("desk drill", "J. Doe");
        REQUIRE(g.audit()->wait_durable(5s));
    }
    const json status = cli.ok_json(s.d, "fleet status --dir state --json");
    CHECK(status["source"] == "dir");
    CHECK(status["total"] == 2);
    CHECK(status["counts"]["halted"] == 1);
    CHECK(status["counts"]["trading"] == 1);  // agent-8: issued, no log yet
    const json* a7 = agent_row(status, "agent-7");
    REQUIRE(a7 != nullptr);
    CHECK((*a7)["state"] == "halted");
    CHECK((*a7)["halt_id"] == halt_id);
    CHECK((*a7)["halt_by"] == "J. Doe");
    CHECK((*a7)["checks"] == 2);
    CHECK((*a7)["open_incidents"] == 1);
    CHECK((*a7)["heartbeat"].is_string());  // its log's latest record
    const json* a8 = agent_row(status, "agent-8");
    REQUIRE(a8 != nullptr);
    CHECK((*a8)["checks"] == 0);
    CHECK((*a8)["heartbeat"].is_null());

    const json incidents = cli.ok_json(s.d, "incident list --dir state --json");
    REQUIRE(incidents["incidents"].size() == 1);
    CHECK(incidents["incidents"][0]["agent_id"] == "agent-7");
    CHECK(incidents["incidents"][0]["state"] == "acknowledged");
    CHECK(incidents["incidents"][0]["acknowledged_by"] == "On Call");

    // Revoking the certificate shows.
    const std::string serial = AgentCertificate::load_file(s.d / "agent-8.pem").serial();
    cli.ok(s.d, "cert revoke --dir state --serial " + serial + " --reason superseded");
    const json after = cli.ok_json(s.d, "agent list --dir state --json");
    CHECK((*agent_row(after, "agent-8"))["state"] == "revoked");

    // The table output names every agent; a source is required, and only one.
    const Run table = cli.ok(s.d, "fleet status --dir state");
    CHECK_THAT(table.out, Catch::Contains("2 agents") && Catch::Contains("agent-7") &&
                              Catch::Contains("agent-8"));
    CHECK(cli.run(s.d, "agent list").code != 0);
    CHECK(cli.run(s.d, "agent list --dir state --postgres x").code != 0);
}

TEST_CASE("fleet: a Guard lifts only the halt it is named, and a fleet step verifies", "[fleet]") {
    TestAuthority authority;
    auto g = std::make_unique<Guard>(authority.credentials_for(seed()), authority.clock());
    CHECK(g->status().state == GuardStatus::State::trading);
    const std::string first = g->halt("fleet halt 1: test", "H. Head");
    CHECK(g->status().state == GuardStatus::State::halted);
    CHECK(g->status().halt_id == first);
    const std::string second = g->halt("desk drill", "J. Doe");
    CHECK_FALSE(g->resume_halt(first, "H. Head", "fleet resume"));  // superseded
    CHECK(g->halted());
    CHECK(g->resume_halt(second, "J. Doe", "drill over"));
    CHECK_FALSE(g->halted());
    CHECK_FALSE(g->resume_halt(second, "J. Doe", "again"));  // lifted once only
    CHECK_THROWS_AS(g->resume_halt(second, "", "x"), Error);

    auto kms = authority.kms();
    FleetStep step = sign_fleet_step(*kms, FleetStep::Action::halt, "H. Head", "outage",
                                     authority.clock().now_ns());
    CHECK(check_fleet_step(step).empty());
    const FleetStep back = fleet_step_from_json(to_json(step));
    CHECK(check_fleet_step(back).empty());
    FleetStep forged = back;
    forged.action = FleetStep::Action::resume;
    CHECK_THAT(check_fleet_step(forged), Catch::Contains("does not verify"));
    CHECK_THROWS_AS(fleet_step_from_json(R"({"action":"pause"})"), Error);
}

TEST_CASE(
    "fleet: init-db creates the fleet's tables, re-running it is harmless, and the app "
    "role may update the live rows but not the fleet steps",
    "[fleet][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    init_audit_database(db.superuser(), db.options);  // again
    TestAuthority authority;
    auto kms = authority.kms();
    const FleetStep step = sign_fleet_step(*kms, FleetStep::Action::halt, "H. Head", "outage",
                                           authority.clock().now_ns());
    CHECK(publish_fleet_step(db.app(), step, 0) == 1);
    FleetStep forged = step;
    forged.reason = "something else";
    CHECK_THROWS_AS(publish_fleet_step(db.app(), forged, 0), Error);
    test::PgSession app(db.app());
    CHECK_FALSE(app.exec("UPDATE kakunin_audit.fleet_steps SET reason = 'x'").ok);
    CHECK_FALSE(app.exec("DELETE FROM kakunin_audit.fleet_steps").ok);
    const FleetReading r = read_fleet(db.app());
    REQUIRE(r.latest_step);
    CHECK(r.latest_step->seq == 1);
    CHECK(r.latest_step->by == "H. Head");
    CHECK(r.agents.empty());
}

TEST_CASE(
    "fleet: a Guard restarted on its log keeps the fleet halt while it is in force and "
    "is lifted when the fleet was resumed while it was down",
    "[fleet][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    State s;
    SystemClock clock;
    PostgresRuntimeOptions ro;
    ro.application_name = "kk-fleet-restart";
    PostgresRuntime runtime(db.app(), ro);
    PostgresFleetOptions fo;
    fo.publish_interval = 100ms;
    PostgresFleet fleet(runtime, fo);
    REQUIRE(fleet.wait_until_listening(10s));
    const auto step = [&](FleetStep::Action action, const char* reason) {
        publish_fleet_step(db.app(),
                           sign_fleet_step(*s.kms, action, "H. Head", reason, clock.now_ns()));
    };
    const auto make = [&] {
        GuardOptions o;
        o.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(s.log("agent-7"))};
        return std::make_unique<Guard>(s.credentials("agent-7"), clock, std::move(o));
    };
    {
        auto g = make();
        fleet.add(*g);
        step(FleetStep::Action::halt, "outage");
        REQUIRE(within(2s, [&] { return g->halted(); }));
        fleet.remove(*g);
    }
    {
        // Restarted while the fleet halt is in force: restored halted, and it stays.
        auto g = make();
        REQUIRE(g->halted());
        fleet.add(*g);
        CHECK(g->halted());
        fleet.remove(*g);
    }
    step(FleetStep::Action::resume, "back");
    REQUIRE(within(2s, [&] { return !fleet.fleet_halt(); }));
    auto g = make();
    REQUIRE(g->halted());  // the log says halted by the fleet
    fleet.add(*g);
    CHECK_FALSE(g->halted());  // the fleet was resumed meanwhile
    CHECK(g->check(order("eu-west-1", "0.5")).allowed());
    fleet.remove(*g);
}

TEST_CASE(
    "fleet: with a person-key check, a step signed by a key that is not the named person's is "
    "skipped and reported, and the genuine ones still apply",
    "[fleet][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    State s;
    SystemClock clock;
    PostgresRuntime runtime(db.app());
    // The firm's key for H. Head, as its Kms holds it.
    const std::string head_key =
        sign_fleet_step(*s.kms, FleetStep::Action::halt, "H. Head", "probe", clock.now_ns())
            .public_key;
    std::mutex mutex;
    std::vector<std::string> reports;
    PostgresFleetOptions fo;
    fo.publish_interval = 100ms;
    fo.error_handler = [&](std::string_view m) {
        std::lock_guard<std::mutex> lock(mutex);
        reports.emplace_back(m);
    };
    fo.person_key_check = [&](std::string_view person, std::string_view key) -> std::string {
        if (person == "H. Head" && key == head_key) return {};
        return "not the key the firm holds for " + std::string(person);
    };
    PostgresFleet fleet(runtime, fo);
    REQUIRE(fleet.wait_until_listening(10s));
    auto g = std::make_unique<Guard>(s.credentials("agent-7"), clock);
    fleet.add(*g);

    publish_fleet_step(db.app(), sign_fleet_step(*s.kms, FleetStep::Action::halt, "H. Head",
                                                 "outage", clock.now_ns()));
    REQUIRE(within(2s, [&] { return g->halted(); }));
    // Someone with insert rights on the table, signing as H. Head with a key of their own.
    const auto intruder = SoftwareKms::in_memory();
    publish_fleet_step(db.app(), sign_fleet_step(*intruder, FleetStep::Action::resume, "H. Head",
                                                 "resume, trust me", clock.now_ns()));
    const auto reported = [&] {
        std::lock_guard<std::mutex> lock(mutex);
        for (const auto& r : reports)
            if (r.find("its key is not H. Head's") != std::string::npos) return true;
        return false;
    };
    REQUIRE(within(2s, reported));
    CHECK(g->halted());
    CHECK(fleet.fleet_halt().has_value());
    publish_fleet_step(db.app(), sign_fleet_step(*s.kms, FleetStep::Action::resume, "H. Head",
                                                 "back", clock.now_ns()));
    REQUIRE(within(2s, [&] { return !g->halted(); }));
    fleet.remove(*g);
}
