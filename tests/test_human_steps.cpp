// People's steps taken with the command line reach running Guards (FileHumanStepFeed following
// the CA log; PostgresHumanStepFeed through LISTEN/NOTIFY), and steps that do not apply to what
// the agent's own audit log says are refused and leave no record. The CLI is the real `kakunin`
// program (KAKUNIN_CLI_PATH) run as a second process; the running Guard is a forked child.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_test_support.hpp"
#include "guard/step_ledger.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/human_steps.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/software_kms.hpp"
#include "pg_test_support.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace kakunin;
using namespace std::chrono_literals;

namespace {

const char* const passphrase = "human-steps";

using test::quote;
using test::Run;
using test::slurp;
using test::write_file;

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

/// Seven days around the clock (an order every 2 minutes, all BTC_EUR in eu-west-1): an order
/// from eu-central-1 then warns at any hour, and nothing else about it stands out.
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

/// A state directory with a CA, agent-7 registered, its scope approved and a certificate issued,
/// and what a Guard of agent-7 needs.
struct State {
    test::TempDir d{"kakunin-human-steps"};
    std::string state = d / "state";
    std::string agent = "agent-7";
    std::string agent_log = state + "/audit/agent-7.jsonl";
    std::string ca_log = state + "/audit/ca.jsonl";
    std::shared_ptr<Kms> kms;
    Baseline baseline;

    State() {
        ::setenv(SoftwareKms::passphrase_variable, passphrase, 1);
        write_file(d / "scope.json", scope_json);
        cli.ok(d, "ca init --dir state");
        cli.ok(d,
               "agent register --dir state --agent agent-7 --owner Desk --purpose 'market making'");
        cli.ok(
            d,
            "scope approve --dir state --agent agent-7 --scope scope.json --approver 'A. Officer'");
        cli.ok(d, "cert issue --dir state --agent agent-7 --validity 24h --out agent-7.pem");
        kms = SoftwareKms::open(state + "/keys");
        baseline = learn(parse_scope_json(scope_json), agent);
    }

    GuardCredentials credentials() const {
        return GuardCredentials{AgentCertificate::load_file(d / "agent-7.pem"),
                                TrustAnchor::load_file(state + "/ca.pem"),
                                CertificateRevocationList::load_file(state + "/crl.pem"), kms,
                                kms->find_key("agent:agent-7")};
    }

    GuardOptions options(std::uint32_t window_s, const Clock& clock) const {
        GuardOptions o;
        o.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(agent_log)};
        Baseline b = baseline;
        b.policy.investigation_window_s = window_s;
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

std::map<std::string, int> event_counts(const std::string& path) {
    std::map<std::string, int> n;
    for (const json& r : records(path)) ++n[r["event"].get<std::string>()];
    return n;
}

/// Waits until the log holds a record of `event`; returns its payload (null on timeout).
json wait_for_record(const std::string& path, const std::string& event,
                     std::chrono::milliseconds timeout = 10s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        for (const json& r : records(path))
            if (r["event"] == event) return r["payload"];
        std::this_thread::sleep_for(5ms);
    }
    return nullptr;
}

/// A line from the child, or "" on timeout.
std::string read_line(int fd, std::chrono::milliseconds timeout) {
    std::string line;
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            until - std::chrono::steady_clock::now());
        if (left.count() <= 0) return "";
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        char c;
        if (::read(fd, &c, 1) != 1) return "";
        if (c == '\n') return line;
        line += c;
    }
}

void say(int fd, const std::string& text) {
    const std::string line = text + "\n";
    (void)!::write(fd, line.data(), line.size());
}

/// Records every step delivered, and whether it came as history.
class Recorder final : public HumanStepListener {
public:
    void on_human_step(const HumanStep& step) noexcept override {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_steps.push_back(step);
    }
    std::vector<HumanStep> steps() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_steps;
    }
    bool wait_for(std::size_t n, std::chrono::milliseconds timeout) const {
        const auto until = std::chrono::steady_clock::now() + timeout;
        while (steps().size() < n)
            if (std::chrono::steady_clock::now() > until)
                return false;
            else
                std::this_thread::sleep_for(2ms);
        return true;
    }

private:
    mutable std::mutex m_mutex;
    std::vector<HumanStep> m_steps;
};

}  // namespace

TEST_CASE("kakunin incident ack reaches the running Guard in another process within a second",
          "[human_steps][cli]") {
    State s;
    int to_parent[2];
    REQUIRE(::pipe(to_parent) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The trading process: a Guard on the system clock, following the CA log, holding no CA.
        ::close(to_parent[0]);
        int code = 0;
        try {
            SystemClock clock;
            GuardOptions o = s.options(3, clock);
            std::vector<std::string> errors;
            std::mutex errors_mutex;
            o.human_steps = std::make_shared<FileHumanStepFeed>(s.state);
            Guard g(s.credentials(), clock, o);
            g.set_error_handler([&](std::string_view m) {
                std::lock_guard<std::mutex> lock(errors_mutex);
                errors.emplace_back(m);
            });
            if (g.check(order("eu-central-1", "0.5")).verdict != Verdict::warn) {
                say(to_parent[1], "NOWARN");
                ::_exit(3);
            }
            g.wait_incidents(5s);
            const std::vector<Incident> incidents = g.incidents();
            if (incidents.size() != 1) ::_exit(4);
            say(to_parent[1], "OPENED " + incidents[0].id);
            const auto until = std::chrono::steady_clock::now() + 20s;
            while (g.incidents()[0].state != IncidentState::acknowledged &&
                   std::chrono::steady_clock::now() < until)
                std::this_thread::sleep_for(1ms);
            say(to_parent[1], std::string("STATE ") + to_string(g.incidents()[0].state));
            // Past the investigation window: an unacknowledged incident would have escalated.
            while (clock.now_ns() < incidents[0].deadline_ns + 1'500'000'000LL)
                std::this_thread::sleep_for(10ms);
            g.wait_incidents(5s);
            say(to_parent[1], std::string("ESCALATED ") + (g.incidents()[0].escalated ? "1" : "0"));
            std::lock_guard<std::mutex> lock(errors_mutex);
            say(to_parent[1], "ERRORS " + std::to_string(errors.size()) +
                                  (errors.empty() ? "" : " " + errors[0]));
        } catch (const std::exception& e) {
            say(to_parent[1], std::string("FAILED ") + e.what());
            code = 2;
        }
        ::_exit(code);
    }
    ::close(to_parent[1]);
    const std::string opened = read_line(to_parent[0], 30s);
    REQUIRE(opened.rfind("OPENED ", 0) == 0);
    const std::string id = opened.substr(7);
    // The person learns the id from the warning; the CLI finds the incident in the agent's log.
    REQUIRE(wait_for_record(s.agent_log, "incident.opened")["incident"] == id);

    cli.ok(s.d, "incident ack --dir state --agent agent-7 --incident " + id +
                    " --by 'On Call' --note 'looking at it'");
    const auto acked_by_cli = std::chrono::steady_clock::now();
    const std::string state = read_line(to_parent[0], 1s);
    const auto delay = std::chrono::steady_clock::now() - acked_by_cli;
    CHECK(state == "STATE acknowledged");
    CHECK(delay < 1s);
    CHECK(read_line(to_parent[0], 20s) == "ESCALATED 0");
    CHECK(read_line(to_parent[0], 5s) == "ERRORS 0");
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    ::close(to_parent[0]);

    // The Guard recorded the step in the agent's log, once, with who and what; no escalation.
    const auto n = event_counts(s.agent_log);
    CHECK(n.count("incident.escalated") == 0);
    CHECK(n.at("incident.acknowledged") == 1);
    const json ack = wait_for_record(s.agent_log, "incident.acknowledged", 1s);
    CHECK(ack["by"] == "On Call");
    CHECK(ack["note"] == "looking at it");
    // A second ack is refused now that the Guard has recorded the first.
    const Run again = cli.run(
        s.d, "incident ack --dir state --agent agent-7 --incident " + id + " --by 'On Call'");
    CHECK(again.code != 0);
    CHECK_THAT(again.err, Catch::Contains("is acknowledged"));
}

TEST_CASE("bogus human steps are refused with the reason and leave no record anywhere",
          "[human_steps][cli]") {
    State s;
    std::string resolved, open, halt;
    {
        // The agent's Guard ran earlier: one incident resolved, one still open, a halt lifted.
        SystemClock clock;
        GuardOptions o = s.options(300, clock);
        o.incident_thread = false;
        Guard g(s.credentials(), clock, o);
        REQUIRE(g.check(order("eu-central-1", "0.5")).verdict == Verdict::warn);
        g.process_incidents();
        resolved = g.incidents().at(0).id;
        g.acknowledge_incident(resolved, "On Call", "seen");
        g.resolve_incident(resolved, "On Call", "expected");
        halt = g.halt("drill", "M. Rossi");
        g.resume("M. Rossi");
    }
    {
        // A second run of the Guard: a new incident, left open.
        SystemClock clock;
        GuardOptions o = s.options(300, clock);
        o.incident_thread = false;
        Guard g(s.credentials(), clock, o);
        // A new id: the restarted Guard still knows the first run's order as working.
        Order second = order("eu-central-1", "0.5");
        second.client_order_id = "second-run";
        const Decision d = g.check(second);
        for (ReasonCode r : d.reasons) UNSCOPED_INFO(to_string(r));
        REQUIRE(d.verdict == Verdict::warn);
        g.process_incidents();
        open = g.incidents().back().id;  // after the first run's, which the restart restored
    }
    REQUIRE(resolved != open);

    const std::string cmd = " --dir state --agent agent-7 ";
    const auto refused = [&](const std::string& args, const std::string& reason) {
        const std::string ca_before = slurp(s.ca_log), agent_before = slurp(s.agent_log);
        const Run r = cli.run(s.d, args);
        INFO("kakunin " << args << "\nstdout: " << r.out << "\nstderr: " << r.err);
        CHECK(r.code != 0);
        CHECK_THAT(r.err, Catch::Contains(reason));
        CHECK(slurp(s.ca_log) == ca_before);
        CHECK(slurp(s.agent_log) == agent_before);
    };
    refused("incident ack" + cmd + "--incident inc-does-not-exist --by X",
            "no incident 'inc-does-not-exist' in agent 'agent-7's audit log");
    refused("incident ack" + cmd + "--incident '' --by X", "an incident id is required");
    refused("incident resolve" + cmd + "--incident '' --by X", "an incident id is required");
    refused("incident ack" + cmd + "--incident " + resolved + " --by X",
            "incident " + resolved + " is resolved");
    refused("incident resolve" + cmd + "--incident " + resolved + " --by X",
            "incident " + resolved + " is resolved");
    refused("incident review" + cmd + "--incident " + open + " --by R --root-cause 'bad feed'",
            "incident " + open + " is open");
    refused("incident review" + cmd + "--incident " + resolved + " --by R --root-cause x",
            "only an incident closed by an automatic revocation is reviewed");
    refused("agent reenable" + cmd + "--halt " + halt + " --by D --reason fixed --out r.json",
            "halt " + halt + " is not in force: it was lifted");
    refused("agent reenable" + cmd + "--halt halt-agent-7-20240108T130000Z-0123456789abcdef-1 " +
                "--by D --reason fixed --out r.json",
            "agent 'agent-7' is not halted");
    CHECK_FALSE(fs::exists(s.d / "r.json"));
    refused("agent lift-reduce-only" + cmd + "--by D --reason fixed",
            "reduce-only mode is not in force");
    refused("incident ack --dir state --agent agent-7 --log nowhere.jsonl --incident " + open +
                " --by X",
            "nowhere.jsonl does not exist");

    // The Guard is down: the first ack is taken (and waits in the CA log), a second is refused;
    // so is resolving twice.
    cli.ok(s.d, "incident ack" + cmd + "--incident " + open + " --by 'On Call' --note later");
    refused("incident ack" + cmd + "--incident " + open + " --by 'Someone Else'",
            "incident " + open + " is acknowledged");
    refused("incident ack" + cmd + "--incident " + open + " --by 'Someone Else'",
            "not yet in the agent's log");
    cli.ok(s.d, "incident resolve" + cmd + "--incident " + open + " --by 'On Call' --note done");
    refused("incident resolve" + cmd + "--incident " + open + " --by 'On Call' --note twice",
            "incident " + open + " is resolved");
    refused("incident ack" + cmd + "--incident " + open + " --by X",
            "incident " + open + " is resolved");

    // The CA log holds exactly the two steps taken, and still verifies.
    std::vector<std::string> steps;
    for (const json& r : records(s.ca_log))
        if (r["event"] == "incident.acknowledged" || r["event"] == "incident.resolved" ||
            r["event"] == "review.signed" || r["event"] == "guard.resumed" ||
            r["event"] == "guard.reduce_only_lifted")
            steps.push_back(r["event"].get<std::string>() + " " +
                            r["payload"]["incident"].get<std::string>());
    CHECK(steps ==
          std::vector<std::string>{"incident.acknowledged " + open, "incident.resolved " + open});
    cli.ok(s.d, "audit verify --log state/audit/ca.jsonl --ca state/ca.pem");
}

TEST_CASE(
    "a re-enable and a reduce-only lift are taken only for what is in force, and reach the "
    "Guard",
    "[human_steps][cli]") {
    State s;
    SystemClock clock;
    GuardOptions o = s.options(300, clock);
    o.human_steps = std::make_shared<FileHumanStepFeed>(s.state);
    o.working_order_capacity = 16;
    Guard g(s.credentials(), clock, o);
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    g.set_error_handler([&](std::string_view m) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors.emplace_back(m);
    });
    const std::string first = g.halt("drill", "M. Rossi");
    g.resume("M. Rossi");
    const std::string halt = g.halt("desk kill switch", "M. Rossi");
    g.reduce_only("loss limit near", "Risk Desk");
    REQUIRE(wait_for_record(s.agent_log, "guard.reduce_only") != nullptr);

    const Run stale = cli.run(s.d, "agent reenable --dir state --agent agent-7 --halt " + first +
                                       " --by D --reason x --out r.json");
    CHECK(stale.code != 0);
    CHECK_THAT(stale.err, Catch::Contains("is not in force: it was lifted"));
    CHECK_THAT(stale.err, Catch::Contains("the halt in force is " + halt));

    cli.ok(s.d, "agent reenable --dir state --agent agent-7 --halt " + halt +
                    " --by 'D. Head' --reason 'drill over' --out r.json");
    const auto until = std::chrono::steady_clock::now() + 2s;
    while (g.halted() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
    CHECK_FALSE(g.halted());
    cli.ok(s.d, "agent lift-reduce-only --dir state --agent agent-7 --by 'Risk Head' --reason ok");
    const auto until2 = std::chrono::steady_clock::now() + 2s;
    while (g.reduce_only_in_force() && std::chrono::steady_clock::now() < until2)
        std::this_thread::sleep_for(2ms);
    CHECK_FALSE(g.reduce_only_in_force());
    const json lifted = wait_for_record(s.agent_log, "guard.reduce_only_lifted", 5s);
    CHECK(lifted["by"] == "Risk Head");
    const json resumed = wait_for_record(s.agent_log, "guard.resumed", 5s);
    CHECK(resumed != nullptr);
    // Taken twice while the Guard has already applied them: refused, nothing recorded.
    const std::string ca_before = slurp(s.ca_log);
    const Run again = cli.run(s.d,
                              "agent lift-reduce-only --dir state --agent agent-7 "
                              "--by 'Risk Head' --reason ok");
    CHECK(again.code != 0);
    CHECK_THAT(again.err, Catch::Contains("reduce-only mode is not in force"));
    CHECK(slurp(s.ca_log) == ca_before);
    std::lock_guard<std::mutex> lock(errors_mutex);
    CHECK(errors.empty());
}

TEST_CASE("a step taken while the Guard was down is delivered as history on subscribe",
          "[human_steps][cli]") {
    State s;
    std::string id;
    {
        SystemClock clock;
        GuardOptions o = s.options(300, clock);
        o.incident_thread = false;
        Guard g(s.credentials(), clock, o);
        REQUIRE(g.check(order("eu-central-1", "0.5")).verdict == Verdict::warn);
        g.process_incidents();
        id = g.incidents().at(0).id;
    }  // the Guard stops
    cli.ok(s.d, "incident ack --dir state --agent agent-7 --incident " + id +
                    " --by 'On Call' --note 'while it was down'");

    // A restarted process's feed hands the step over in subscribe(), before it returns.
    FileHumanStepFeed feed(s.state);
    Recorder r;
    feed.subscribe(&r);
    std::vector<HumanStep> got = r.steps();
    feed.unsubscribe(&r);
    REQUIRE(got.size() == 1);
    CHECK(got[0].kind == HumanStep::Kind::acknowledge);
    CHECK(got[0].agent_id == "agent-7");
    CHECK(got[0].target == id);
    CHECK(got[0].by == "On Call");
    CHECK(got[0].note == "while it was down");
    CHECK(got[0].history);
    CHECK_THAT(got[0].source, Catch::StartsWith("CA log seq "));

    // And a Guard built on the feed gets it too: restarted on the agent's log it knows the
    // incident of the earlier run again, and the step made while it was down acknowledges it.
    SystemClock clock;
    GuardOptions o = s.options(300, clock);
    auto steps = std::make_shared<FileHumanStepFeed>(s.state);
    o.human_steps = steps;
    std::vector<std::string> errors;
    {
        Guard g(s.credentials(), clock, o);
        g.set_error_handler([&](std::string_view m) { errors.emplace_back(m); });
        REQUIRE(g.incidents().size() == 1);
        CHECK(g.incidents()[0].id == id);
        CHECK(g.incidents()[0].state == IncidentState::acknowledged);
    }
    CHECK(errors.empty());
}

TEST_CASE("the file feed waits for a torn last line and skips lines the CA did not sign",
          "[human_steps]") {
    State s;
    std::string id;
    {
        SystemClock clock;
        GuardOptions o = s.options(300, clock);
        o.incident_thread = false;
        Guard g(s.credentials(), clock, o);
        REQUIRE(g.check(order("eu-central-1", "0.5")).verdict == Verdict::warn);
        g.process_incidents();
        id = g.incidents().at(0).id;
    }
    cli.ok(s.d, "incident ack --dir state --agent agent-7 --incident " + id + " --by A --note one");
    cli.ok(s.d,
           "incident resolve --dir state --agent agent-7 --incident " + id + " --by B --note two");

    // A copy of the state directory whose CA log stops before the resolve record.
    std::vector<std::string> lines;
    {
        std::ifstream in(s.ca_log);
        for (std::string line; std::getline(in, line);) lines.push_back(line);
    }
    std::size_t resolve = 0;
    while (resolve < lines.size() &&
           lines[resolve].find("\"event\":\"incident.resolved\"") == std::string::npos)
        ++resolve;
    REQUIRE(resolve < lines.size());
    const std::string copy = s.d / "copy";
    fs::create_directories(copy + "/audit");
    fs::copy_file(s.state + "/ca.pem", copy + "/ca.pem");
    std::string head;
    for (std::size_t i = 0; i < resolve; ++i) head += lines[i] + "\n";
    write_file(copy + "/audit/ca.jsonl", head);

    std::vector<std::string> errors;
    std::mutex errors_mutex;
    FileHumanStepFeedOptions fo;
    fo.error_handler = [&](std::string_view m) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors.emplace_back(m);
    };
    FileHumanStepFeed feed(copy, fo);
    Recorder r;
    feed.subscribe(&r);
    REQUIRE(r.steps().size() == 1);
    CHECK(r.steps()[0].kind == HumanStep::Kind::acknowledge);

    const std::string& line = lines[resolve];
    {
        std::ofstream out(copy + "/audit/ca.jsonl", std::ios::binary | std::ios::app);
        out << line.substr(0, line.size() / 2) << std::flush;
    }
    std::this_thread::sleep_for(500ms);  // more than two polls: the half line is not a step
    CHECK(r.steps().size() == 1);
    {
        std::ofstream out(copy + "/audit/ca.jsonl", std::ios::binary | std::ios::app);
        out << line.substr(line.size() / 2) << "\n" << std::flush;
    }
    REQUIRE(r.wait_for(2, 1s));
    CHECK(r.steps()[1].kind == HumanStep::Kind::resolve);
    CHECK(r.steps()[1].note == "two");
    CHECK_FALSE(r.steps()[1].history);

    // A step line the CA did not sign (a note altered after signing, as a later record) moves
    // nothing, and the feed says why.
    std::string forged = line;
    const std::string seq_member = "\"seq\":";
    const std::size_t at = forged.find(seq_member) + seq_member.size();
    const std::size_t end = forged.find(',', at);
    forged.replace(at, end - at, std::to_string(std::stoull(forged.substr(at, end - at)) + 100));
    forged.replace(forged.find("\"note\":\"two\""), 12, "\"note\":\"TWO\"");
    {
        std::ofstream out(copy + "/audit/ca.jsonl", std::ios::binary | std::ios::app);
        out << forged << "\n" << std::flush;
    }
    std::this_thread::sleep_for(500ms);
    CHECK(r.steps().size() == 2);
    feed.unsubscribe(&r);
    std::lock_guard<std::mutex> lock(errors_mutex);
    REQUIRE(errors.size() == 1);
    CHECK_THAT(errors[0], Catch::Contains("the CA signature does not verify"));
}

TEST_CASE("postgres: a step taken with --postgres reaches a Guard through LISTEN/NOTIFY",
          "[human_steps][cli][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession admin(db.superuser());
    State s;
    SystemClock clock;
    GuardOptions o = s.options(300, clock);
    PostgresAuditSinkOptions so;
    so.log_id = "agent-7";
    o.audit = AuditTrailOptions{std::make_shared<PostgresAuditSink>(db.app(), so)};
    auto feed = std::make_shared<PostgresHumanStepFeed>(db.app());
    REQUIRE(feed->wait_until_listening(10s));
    o.human_steps = feed;
    Guard g(s.credentials(), clock, o);
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    g.set_error_handler([&](std::string_view m) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors.emplace_back(m);
    });
    REQUIRE(g.check(order("eu-central-1", "0.5")).verdict == Verdict::warn);
    REQUIRE(g.wait_incidents(5s));
    const std::string id = g.incidents().at(0).id;
    const std::string opened =
        "SELECT count(*) FROM kakunin_audit.audit_records WHERE log_id = 'agent-7' AND event = "
        "'incident.opened'";
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (admin.value(opened) != "1" && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(10ms);
    REQUIRE(admin.value(opened) == "1");
    const std::string pg = " --postgres " + quote(db.app());

    // Refused against the log in PostgreSQL (there is no file log): nothing published.
    const Run bogus =
        cli.run(s.d, "incident ack --dir state --agent agent-7 --incident inc-nope --by X" + pg);
    CHECK(bogus.code != 0);
    CHECK_THAT(bogus.err, Catch::Contains("no incident 'inc-nope' in agent 'agent-7's audit log"));
    CHECK(admin.value("SELECT count(*) FROM kakunin_audit.human_steps") == "0");

    cli.ok(s.d,
           "incident ack --dir state --agent agent-7 --incident " + id + " --by 'On Call'" + pg);
    const auto acked = std::chrono::steady_clock::now();
    while (g.incidents()[0].state != IncidentState::acknowledged &&
           std::chrono::steady_clock::now() - acked < 2s)
        std::this_thread::sleep_for(1ms);
    CHECK(g.incidents()[0].state == IncidentState::acknowledged);
    CHECK(std::chrono::steady_clock::now() - acked < 1s);
    CHECK(admin.value("SELECT count(*) FROM kakunin_audit.human_steps") == "1");
    CHECK(admin.value("SELECT event FROM kakunin_audit.human_steps") == "incident.acknowledged");

    // The second ack is refused: the Guard recorded the first in its log (or the CA log has it).
    const Run twice =
        cli.run(s.d, "incident ack --dir state --agent agent-7 --incident " + id + " --by Y" + pg);
    CHECK(twice.code != 0);
    CHECK_THAT(twice.err, Catch::Contains("is acknowledged"));
    CHECK(admin.value("SELECT count(*) FROM kakunin_audit.human_steps") == "1");
    // The application role may only add steps.
    test::PgSession app(db.app());
    CHECK_FALSE(app.exec("DELETE FROM kakunin_audit.human_steps").ok);
    std::lock_guard<std::mutex> lock(errors_mutex);
    CHECK(errors.empty());
}

TEST_CASE("a signed review of an automatic revocation reaches the Guard, a re-enable is refused",
          "[human_steps][cli]") {
    State s;
    SystemClock clock;
    GuardOptions o = s.options(300, clock);
    o.human_steps = std::make_shared<FileHumanStepFeed>(s.state);
    Guard g(s.credentials(), clock, o);
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    g.set_error_handler([&](std::string_view m) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors.emplace_back(m);
    });
    const Decision d = g.check(order("eu-west-1", "500"));  // hundreds of times the p99
    REQUIRE(d.reasons.contains(ReasonCode::anomaly_revocation));
    REQUIRE(g.wait_incidents(5s));
    const std::string id = g.incidents().at(0).id;
    REQUIRE(g.incidents()[0].state == IncidentState::revoked);
    REQUIRE(wait_for_record(s.agent_log, "incident.revoked") != nullptr);

    const std::string ca_before = slurp(s.ca_log);
    const Run reenable =
        cli.run(s.d, "agent reenable --dir state --agent agent-7 --halt " +
                         g.current_halt()->halt_id + " --by D --reason x --out r.json");
    CHECK(reenable.code != 0);
    CHECK_THAT(reenable.err, Catch::Contains("keyCompromise: no re-enable lifts it"));
    CHECK(slurp(s.ca_log) == ca_before);
    const Run ack =
        cli.run(s.d, "incident ack --dir state --agent agent-7 --incident " + id + " --by X");
    CHECK(ack.code != 0);
    CHECK_THAT(ack.err, Catch::Contains("incident " + id + " is revoked"));

    cli.ok(s.d, "incident review --dir state --agent agent-7 --incident " + id +
                    " --by 'R. Reviewer' --root-cause 'size typo in the prompt'");
    const auto until = std::chrono::steady_clock::now() + 2s;
    while (g.incidents()[0].state != IncidentState::reviewed &&
           std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(2ms);
    CHECK(g.incidents()[0].state == IncidentState::reviewed);
    CHECK(g.incidents()[0].history.back().note == "size typo in the prompt");
    const Run twice = cli.run(s.d, "incident review --dir state --agent agent-7 --incident " + id +
                                       " --by 'R. Reviewer' --root-cause again");
    CHECK(twice.code != 0);
    CHECK_THAT(twice.err, Catch::Contains("is reviewed"));
    std::lock_guard<std::mutex> lock(errors_mutex);
    CHECK(errors.empty());
}

TEST_CASE("postgres: init-db adds the human steps table to a schema that predates it",
          "[human_steps][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    REQUIRE(su.exec("BEGIN").ok);
    REQUIRE(su.exec("SET LOCAL kakunin.maintenance = on").ok);
    REQUIRE(su.exec("SET LOCAL ROLE " + db.options.owner_role).ok);
    REQUIRE(su.exec("DROP TABLE kakunin_audit.human_steps").ok);
    REQUIRE(su.exec("DROP FUNCTION kakunin_audit.notify_human_step()").ok);
    REQUIRE(su.exec("COMMIT").ok);
    HumanStep step;
    step.agent_id = "agent-7";
    step.target = "inc-1";
    step.by = "On Call";
    CHECK_THROWS(publish_human_step(db.app(), step));

    init_audit_database(db.superuser(), db.options);
    CHECK_FALSE(su.exec("ALTER TABLE kakunin_audit.human_steps ADD COLUMN x int").ok);
    auto feed = std::make_shared<PostgresHumanStepFeed>(db.app());
    REQUIRE(feed->wait_until_listening(10s));
    Recorder r;
    feed->subscribe(&r);
    step.at_ns = SystemClock().now_ns();  // taken after the subscriber came: not history
    CHECK(publish_human_step(db.app(), step) > 0);
    REQUIRE(r.wait_for(1, 5s));
    CHECK(r.steps()[0].target == "inc-1");
    CHECK(r.steps()[0].by == "On Call");
    CHECK_FALSE(r.steps()[0].history);
    feed->unsubscribe(&r);
    // A second feed has it as history on subscribe.
    PostgresHumanStepFeed later(db.app());
    REQUIRE(later.wait_until_listening(10s));
    Recorder h;
    later.subscribe(&h);
    REQUIRE(h.steps().size() == 1);
    CHECK(h.steps()[0].history);
    later.unsubscribe(&h);
}

TEST_CASE("the ledger follows the Guard's halts and incidents from records", "[human_steps]") {
    detail::HumanStepLedger ledger("agent-7");
    std::uint64_t seq = 0;
    const auto add = [&](std::string_view event, const std::string& payload) {
        const AuditRecord r =
            make_audit_record(seq++, 1'700'000'000'000'000'000 + seq, "agent-7", "agent-7",
                              "sha256:" + std::string(64, '0'), event, payload);
        ledger.add_agent_line(r.line(), "line " + std::to_string(seq));
    };
    const auto step = [](HumanStep::Kind k, const std::string& target,
                         const std::string& by = "P") {
        HumanStep s;
        s.kind = k;
        s.agent_id = "agent-7";
        s.target = target;
        s.by = by;
        return s;
    };
    using K = HumanStep::Kind;

    // An escalated incident is still open: it may be acknowledged.
    add("incident.opened", R"({"agent":"agent-7","incident":"inc-a"})");
    add("incident.escalated", R"({"agent":"agent-7","incident":"inc-a","action":"halt"})");
    CHECK(ledger.refusal(step(K::acknowledge, "inc-a")).empty());
    CHECK_THAT(ledger.refusal(step(K::review, "inc-a")), Catch::Contains("is open"));

    // The escalation's automatic halt; a manual halt on top of it does not become the halt in
    // force (as Guard::halt), so only the automatic one can be re-enabled.
    add("guard.halted", R"({"by":"kakunin","halt":"halt-agent-7-1","reason":"escalation"})");
    add("guard.halted", R"({"by":"M. Rossi","halt":"halt-agent-7-2","reason":"drill"})");
    CHECK(ledger.refusal(step(K::reenable, "halt-agent-7-1")).empty());
    CHECK_THAT(ledger.refusal(step(K::reenable, "halt-agent-7-2")),
               Catch::Contains("made while the automatic halt halt-agent-7-1 was in force"));
    add("guard.resumed", R"({"by":"D. Head","halt":"halt-agent-7-1","reason":"ok"})");
    CHECK_THAT(ledger.refusal(step(K::reenable, "halt-agent-7-1")),
               Catch::Contains("it was lifted"));

    // A manual halt superseded by another before it was lifted.
    add("guard.halted", R"({"by":"M. Rossi","halt":"halt-agent-7-3","reason":"one"})");
    add("guard.halted", R"({"by":"M. Rossi","halt":"halt-agent-7-4","reason":"two"})");
    CHECK_THAT(ledger.refusal(step(K::reenable, "halt-agent-7-3")),
               Catch::Contains("superseded by halt halt-agent-7-4"));
    CHECK(ledger.refusal(step(K::reenable, "halt-agent-7-4")).empty());

    // A revocation: no re-enable until a newer certificate is in force; never after a
    // compromise.
    add("certificate.revoked",
        R"({"by":"revocation feed","halt":"halt-agent-7-5","reason":"superseded"})");
    CHECK_THAT(ledger.refusal(step(K::reenable, "halt-agent-7-5")), Catch::Contains("rotate"));
    add("guard.rotated", R"({"by":"kakunin","reason":"0abc"})");
    CHECK(ledger.refusal(step(K::reenable, "halt-agent-7-5")).empty());
    add("certificate.revoked",
        R"({"by":"revocation feed","halt":"halt-agent-7-6","reason":"keyCompromise: leaked"})");
    add("guard.rotated", R"({"by":"kakunin","reason":"0abd"})");
    CHECK_THAT(ledger.refusal(step(K::reenable, "halt-agent-7-6")),
               Catch::Contains("keyCompromise"));

    // Reduce-only: a lift recorded in the CA log and applied by the Guard is spent; a later
    // reduce-only may be lifted again, once.
    add("guard.reduce_only", R"({"by":"kakunin","reason":"loss"})");
    HumanStep lift = step(K::lift_reduce_only, "", "Risk Head");
    CHECK(ledger.refusal(lift).empty());
    add("guard.reduce_only_lifted", R"({"by":"Risk Head","reason":"lifted"})");
    add("guard.reduce_only", R"({"by":"kakunin","reason":"loss again"})");
    CHECK_FALSE(ledger.add_recorded_step(lift));  // the first lift: spent by the agent's record
    CHECK(ledger.reduce_only());
    CHECK(ledger.add_recorded_step(lift));  // a second one, not in the agent's log: pending
    CHECK_FALSE(ledger.reduce_only());
    CHECK_THAT(ledger.refusal(lift), Catch::Contains("not yet in the agent's log"));

    // Another agent's record in the log, and a malformed payload, are refused with the line.
    const AuditRecord other =
        make_audit_record(seq, 1, "agent-7", "agent-8", "sha256:" + std::string(64, '0'),
                          "incident.opened", R"({"incident":"inc-z"})");
    CHECK_THROWS_WITH(ledger.add_agent_line(other.line(), "line 99"),
                      Catch::Contains("line 99: a record of agent 'agent-8'"));
    const AuditRecord bad =
        make_audit_record(seq, 1, "agent-7", "agent-7", "sha256:" + std::string(64, '0'),
                          "incident.opened", R"({"incident":7})");
    CHECK_THROWS_WITH(ledger.add_agent_line(bad.line(), "line 100"),
                      Catch::Contains("payload.incident: not a string"));
}

TEST_CASE("a step for one Guard's incident is not an error for another Guard of the agent",
          "[human_steps][cli]") {
    State s;
    SystemClock clock;
    auto feed = std::make_shared<FileHumanStepFeed>(s.state);
    GuardOptions o = s.options(300, clock);
    o.human_steps = feed;
    Guard a(s.credentials(), clock, o);
    GuardOptions other = o;
    other.audit.reset();  // the log is the first one's
    Guard b(s.credentials(), clock, other);
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    for (Guard* g : {&a, &b})
        g->set_error_handler([&](std::string_view m) {
            std::lock_guard<std::mutex> lock(errors_mutex);
            errors.emplace_back(m);
        });
    REQUIRE(a.check(order("eu-central-1", "0.5")).verdict == Verdict::warn);
    REQUIRE(a.wait_incidents(5s));
    const std::string id = a.incidents().at(0).id;
    REQUIRE(wait_for_record(s.agent_log, "incident.opened") != nullptr);
    cli.ok(s.d, "incident ack --dir state --agent agent-7 --incident " + id + " --by 'On Call'");
    const auto until = std::chrono::steady_clock::now() + 2s;
    while (a.incidents()[0].state != IncidentState::acknowledged &&
           std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(2ms);
    CHECK(a.incidents()[0].state == IncidentState::acknowledged);
    std::this_thread::sleep_for(300ms);  // b has had the step too
    CHECK(b.incidents().empty());
    std::lock_guard<std::mutex> lock(errors_mutex);
    CHECK(errors.empty());
}
