// The audit side of the order lifecycle (docs/lifecycle.md): amend and cancel decisions and
// execution reports pushed into an AuditTrail become signed records with the payloads
// docs/audit-format.md documents, as do the kill switch's cancel-all and reduce-only mode; the
// log verifies (library and `kakunin audit verify`); the pushes allocate nothing; a full queue
// counts what it could not take; the export lists them and maps RTS 6 Art. 12 to them.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "kakunin/audit.hpp"
#include "kakunin/audit_trail.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/export.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

// ---- allocation counter (as tests/test_allocation.cpp): per thread, so the writer thread's
// own allocations do not count against the producer ----
#include "allocation_counter.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace kakunin;

namespace {

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-auditlc") {}
};

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<json> records_of(const std::string& path) {
    std::vector<json> out;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        json j = json::parse(line);
        if (j["kind"] == "record") out.push_back(std::move(j));
    }
    return out;
}

Decision decided(Verdict v, TimeNs at, std::initializer_list<ReasonCode> reasons = {}) {
    Decision d;
    d.verdict = v;
    d.ts_ns = at;
    for (ReasonCode r : reasons) d.reasons.add(r);
    return d;
}

ExecutionReport report(ExecutionType type, const char* id, const char* instrument, Side side,
                       const char* quantity = "0", const char* price = "0") {
    ExecutionReport r;
    r.type = type;
    r.client_order_id = id;
    r.instrument = instrument;
    r.side = side;
    r.quantity = parse_decimal(quantity);
    r.price = parse_decimal(price);
    return r;
}

ExecutionResult result(bool applied, bool unknown, bool closed, bool reduce_only = false,
                       const char* problem = nullptr) {
    ExecutionResult r;
    r.applied = applied;
    r.unknown_order = unknown;
    r.order_closed = closed;
    r.reduce_only_entered = reduce_only;
    r.problem = problem;
    return r;
}

constexpr const char* k_unknown_fill = "fill for an id that is not working";

/// One of each new kind, at one-second steps from `t0`, then the cancel-all and reduce-only
/// state changes. What each record's payload must be is in `expected_lifecycle`.
void push_lifecycle(AuditTrail& trail, TimeNs t0) {
    const TimeNs s = 1'000'000'000;
    Amend up{"c-17", parse_decimal("2"), std::nullopt};
    REQUIRE(trail.push_amend(up, decided(Verdict::allow, t0)));
    Amend reprice{"c-17", std::nullopt, parse_decimal("42000.10")};
    REQUIRE(trail.push_amend(reprice, decided(Verdict::allow, t0 + s)));
    Amend both{"c-99", parse_decimal("3.5"), parse_decimal("41000")};
    REQUIRE(trail.push_amend(both, decided(Verdict::reject, t0 + 2 * s,
                                           {ReasonCode::unknown_order_id, ReasonCode::halted})));
    REQUIRE(trail.push_cancel(Cancel{"c-17"}, decided(Verdict::allow, t0 + 3 * s)));
    REQUIRE(trail.push_cancel(
        Cancel{"c-98"}, decided(Verdict::reject, t0 + 4 * s, {ReasonCode::unknown_order_id})));
    REQUIRE(trail.push_execution(t0 + 5 * s, report(ExecutionType::ack, "c-17", "", Side::buy),
                                 result(true, false, false), "BTC_EUR", Side::buy));
    REQUIRE(trail.push_execution(
        t0 + 6 * s, report(ExecutionType::fill, "c-17", "BTC_EUR", Side::buy, "0.5", "42000.10"),
        result(true, false, false), "BTC_EUR", Side::buy));
    REQUIRE(trail.push_execution(
        t0 + 7 * s, report(ExecutionType::fill, "c-404", "ETH_EUR", Side::sell, "1.25", "2200"),
        result(true, true, false, false, k_unknown_fill), "ETH_EUR", Side::sell));
    REQUIRE(trail.push_execution(t0 + 8 * s,
                                 report(ExecutionType::cancelled, "c-17", "", Side::buy),
                                 result(true, false, true), "BTC_EUR", Side::buy));
    REQUIRE(trail.push_execution(t0 + 9 * s, report(ExecutionType::reject, "c-18", "", Side::buy),
                                 result(true, false, true), "SOL_EUR", Side::sell));
    REQUIRE(trail.push_execution(t0 + 10 * s, report(ExecutionType::expired, "c-19", "", Side::buy),
                                 result(false, true, false), "", Side::buy));
    REQUIRE(trail.push_execution(
        t0 + 11 * s, report(ExecutionType::mark, "", "BTC_EUR", Side::buy, "0", "39000"),
        result(true, false, false, true), "BTC_EUR", Side::buy));
    json cancel_all;
    cancel_all["halt"] = "halt-20240108T120012Z-1";
    cancel_all["reason"] = "desk kill switch";
    cancel_all["by"] = "M. Rossi";
    cancel_all["order_ids"] = {"c-20", "c-21", "c-22"};
    REQUIRE(trail.push_event(t0 + 12 * s, audit_event::guard_cancel_all, cancel_all.dump()));
    REQUIRE(trail.push_state(t0 + 13 * s, audit_event::guard_reduce_only, "kakunin",
                             "max_daily_loss reached"));
    REQUIRE(trail.push_state(t0 + 14 * s, audit_event::guard_reduce_only_lifted, "A. Schmidt",
                             "loss reviewed with the desk"));
}

/// (event, payload) of each record push_lifecycle makes, in order.
std::vector<std::pair<std::string, json>> expected_lifecycle() {
    return {
        {"amend.allowed", json::parse(R"({"amend":{"client_order_id":"c-17","quantity":"2"},
                          "decision":"allow","reasons":[]})")},
        {"amend.allowed", json::parse(R"({"amend":{"client_order_id":"c-17","price":"42000.10"},
                          "decision":"allow","reasons":[]})")},
        {"amend.rejected",
         json::parse(R"({"amend":{"client_order_id":"c-99","price":"41000","quantity":"3.5"},
                          "decision":"reject","reasons":["halted","unknown_order_id"]})")},
        {"cancel.allowed",
         json::parse(R"({"cancel":{"client_order_id":"c-17"},"decision":"allow","reasons":[]})")},
        {"cancel.rejected", json::parse(R"({"cancel":{"client_order_id":"c-98"},
                          "decision":"reject","reasons":["unknown_order_id"]})")},
        {"execution.ack",
         json::parse(R"({"client_order_id":"c-17","instrument":"BTC_EUR","side":"BUY",
                          "applied":true,"unknown_order":false,"order_closed":false,
                          "reduce_only_entered":false})")},
        {"execution.fill",
         json::parse(R"({"client_order_id":"c-17","instrument":"BTC_EUR","side":"BUY",
                          "quantity":"0.5","price":"42000.10","applied":true,
                          "unknown_order":false,"order_closed":false,
                          "reduce_only_entered":false})")},
        {"execution.fill",
         json::parse(R"({"client_order_id":"c-404","instrument":"ETH_EUR","side":"SELL",
                          "quantity":"1.25","price":"2200","applied":true,"unknown_order":true,
                          "order_closed":false,"reduce_only_entered":false,
                          "problem":"fill for an id that is not working"})")},
        {"execution.cancelled",
         json::parse(R"({"client_order_id":"c-17","instrument":"BTC_EUR","side":"BUY",
                          "applied":true,"unknown_order":false,"order_closed":true,
                          "reduce_only_entered":false})")},
        {"execution.reject",
         json::parse(R"({"client_order_id":"c-18","instrument":"SOL_EUR","side":"SELL",
                          "applied":true,"unknown_order":false,"order_closed":true,
                          "reduce_only_entered":false})")},
        {"execution.expired", json::parse(R"({"client_order_id":"c-19","instrument":"","side":"BUY",
                          "applied":false,"unknown_order":true,"order_closed":false,
                          "reduce_only_entered":false})")},
        {"execution.mark", json::parse(R"({"instrument":"BTC_EUR","price":"39000",
                          "applied":true,"unknown_order":false,"order_closed":false,
                          "reduce_only_entered":true})")},
        {"guard.cancel_all",
         json::parse(R"({"halt":"halt-20240108T120012Z-1","reason":"desk kill switch",
                          "by":"M. Rossi","order_ids":["c-20","c-21","c-22"]})")},
        {"guard.reduce_only", json::parse(R"({"by":"kakunin","reason":"max_daily_loss reached"})")},
        {"guard.reduce_only_lifted",
         json::parse(R"({"by":"A. Schmidt","reason":"loss reviewed with the desk"})")},
    };
}

void check_lifecycle_records(const std::vector<json>& records, std::size_t first, TimeNs t0) {
    const auto expected = expected_lifecycle();
    REQUIRE(records.size() >= first + expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const json& r = records[first + i];
        INFO("record " << first + i << ": " << r.dump());
        CHECK(r["event"] == expected[i].first);
        CHECK(r["payload"] == expected[i].second);
        CHECK(r["ts_ns"] == t0 + static_cast<TimeNs>(i) * 1'000'000'000);
        CHECK(r.contains("sig"));
    }
}

std::string temp_path(const std::string& name) {
    return "/tmp/kakunin-auditlc-" + std::to_string(getpid()) + "-" + name;
}

void remove_log(const std::string& path) {
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());
}

/// A memory sink whose appends wait while `blocked` is set.
class BlockingSink final : public LockingAuditSink {
public:
    std::atomic<bool> blocked{false};
    std::string name() const override { return "blocking"; }
    std::atomic<int> appends{0};  ///< calls begun

protected:
    void do_append(const std::string_view*, std::size_t) override {
        ++appends;
        while (blocked.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    void do_flush() override {}
};

}  // namespace

TEST_CASE(
    "audit lifecycle: amends, cancels, reports, cancel-all and reduce-only are signed "
    "records with the documented payloads",
    "[audit][lifecycle]") {
    TestAuthority authority;
    const std::string path = temp_path("records.jsonl");
    remove_log(path);
    const GuardCredentials creds =
        authority.credentials_for(parse_scope_json(kakunin::test::seed_scope_json));
    const std::string agent = creds.certificate.agent_id();
    const TimeNs t0 = authority.clock().now_ns();
    {
        AuditTrailOptions options{std::make_shared<FileAuditSink>(path)};
        options.checkpoint_every = 4;
        AuditTrail trail(options, authority.clock(), creds.kms, creds.key, agent,
                         creds.certificate.fingerprint());
        push_lifecycle(trail, t0);
        REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
        const AuditTrailCounters c = trail.counters();
        CHECK(c.queued == 15);
        CHECK(c.durable == 15);
        CHECK(c.unrecorded_rejections == 0);
        CHECK(c.unrecorded_reports == 0);
    }  // the final checkpoint

    AuditCertificates certs;
    certs.add_der(creds.certificate.der());
    AuditVerifyOptions vo;
    vo.require_record_signatures = true;
    const AuditVerifyResult v = verify_audit_log_file(path, certs, vo);
    INFO(v.message);
    CHECK(v.ok);
    CHECK(v.records == 15);
    CHECK(v.signed_records == 15);
    CHECK(v.uncovered_records == 0);
    check_lifecycle_records(records_of(path), 0, t0);
    remove_log(path);
}

TEST_CASE(
    "audit lifecycle: an id or instrument too long to store says how long it was, and "
    "a report of no known type is recorded as such",
    "[audit][lifecycle]") {
    TestAuthority authority;
    const std::string path = temp_path("long.jsonl");
    remove_log(path);
    const GuardCredentials creds =
        authority.credentials_for(parse_scope_json(kakunin::test::seed_scope_json));
    const std::string id(5000, 'x'), instrument(300, 'I');
    {
        AuditTrailOptions options{std::make_shared<FileAuditSink>(path)};
        AuditTrail trail(options, authority.clock(), creds.kms, creds.key,
                         creds.certificate.agent_id(), creds.certificate.fingerprint());
        const TimeNs at = authority.clock().now_ns();
        REQUIRE(trail.push_cancel(Cancel{id},
                                  decided(Verdict::reject, at, {ReasonCode::unknown_order_id})));
        ExecutionReport fill = report(ExecutionType::fill, "", "", Side::buy, "1", "2");
        fill.client_order_id = id;
        fill.instrument = instrument;
        REQUIRE(trail.push_execution(at, fill, result(false, true, false, false, k_unknown_fill),
                                     instrument, Side::buy));
        const ExecutionReport odd =
            report(static_cast<ExecutionType>(42), "c-1", "BTC_EUR", Side::sell);
        REQUIRE(trail.push_execution(at, odd, result(true, false, false), "BTC_EUR", Side::sell));
        REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
    }
    const std::vector<json> r = records_of(path);
    REQUIRE(r.size() == 3);
    CHECK(r[2]["event"] == "execution.ack");
    CHECK(r[2]["payload"]["problem"] == "execution report of unknown type 42 (recorded as ack)");
    CHECK(r[2]["payload"]["client_order_id"] == "c-1");
    const json cancel = r[0]["payload"]["cancel"];
    CHECK(cancel["client_order_id_truncated_from"] == 5000);
    CHECK(cancel["client_order_id"].get<std::string>() == id.substr(0, 1024));
    const json fill = r[1]["payload"];
    CHECK(fill["instrument_truncated_from"] == 300);
    CHECK(fill["instrument"].get<std::string>() == instrument.substr(0, max_order_field_length));
    CHECK(fill["client_order_id_truncated_from"] == 5000);
    const std::string stored = fill["client_order_id"];
    // The id has the room the instrument and the problem's text leave.
    const std::size_t problem =
        fill.contains("problem") ? fill["problem"].get<std::string>().size() : 0;
    CHECK(stored.size() == 1024 - max_order_field_length - problem);
    CHECK(id.compare(0, stored.size(), stored) == 0);
    remove_log(path);
}

TEST_CASE("audit lifecycle: push_amend, push_cancel and push_execution allocate nothing",
          "[audit][lifecycle][allocation]") {
    TestAuthority authority;
    const GuardCredentials creds =
        authority.credentials_for(parse_scope_json(kakunin::test::seed_scope_json));
    auto sink = std::make_shared<MemoryAuditSink>();
    AuditTrailOptions options{sink};
    options.queue_capacity = 8192;
    options.record_signatures = false;
    AuditTrail trail(options, authority.clock(), creds.kms, creds.key, creds.certificate.agent_id(),
                     creds.certificate.fingerprint());
    // Text long enough that a copy into a std::string would need the heap.
    const std::string id = "an-order-id-well-beyond-the-small-string-buffer-0001";
    const std::string instrument = "BTC_EUR";
    Amend amend{id, parse_decimal("1.5"), parse_decimal("42000.5")};
    const Cancel cancel{id};
    ExecutionReport fill = report(ExecutionType::fill, "", "", Side::buy, "0.5", "42000.1");
    fill.client_order_id = id;
    fill.instrument = instrument;
    const ExecutionResult applied = result(true, true, false, false, k_unknown_fill);
    auto push_all = [&](TimeNs at, int i) {
        const Decision d = decided(i % 2 ? Verdict::reject : Verdict::allow, at,
                                   {ReasonCode::message_rate_exceeded});
        bool ok = trail.push_amend(amend, d);
        ok = trail.push_cancel(cancel, d) && ok;
        fill.type = static_cast<ExecutionType>(i % 6);
        ok = trail.push_execution(at, fill, applied, instrument, Side::sell) && ok;
        return ok;
    };
    for (int i = 0; i < 30; ++i) REQUIRE(push_all(authority.clock().now_ns(), i));  // warm
    REQUIRE(trail.wait_durable(std::chrono::seconds(10)));

    const std::uint64_t before = t_allocations;
    int pushed = 0;
    for (int i = 0; i < 1500; ++i) {  // 4,500 entries: the queue holds them all
        authority.clock().advance(std::chrono::milliseconds(1));
        pushed += push_all(authority.clock().now_ns(), i);
    }
    const std::uint64_t during = t_allocations - before;
    CHECK(during == 0);
    CHECK(pushed == 1500);
    REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
    CHECK(trail.counters().durable == 3 * 1530);
    CHECK(sink->lines().size() >= 3 * 1530);
}

TEST_CASE(
    "audit lifecycle: a full queue counts the rejected requests and the reports it could "
    "not take",
    "[audit][lifecycle]") {
    TestAuthority authority;
    const GuardCredentials creds =
        authority.credentials_for(parse_scope_json(kakunin::test::seed_scope_json));
    auto sink = std::make_shared<BlockingSink>();
    sink->blocked = true;
    AuditTrailOptions options{sink};
    options.queue_capacity = 16;
    options.state_reserve = 4;  // the last 4 entries are for state changes only
    options.reserve = 6;
    options.batch_max = 1;
    options.sink_failure_grace = std::chrono::minutes(1);  // accepting() reads the queue only
    options.record_signatures = false;
    AuditTrail trail(options, authority.clock(), creds.kms, creds.key, creds.certificate.agent_id(),
                     creds.certificate.fingerprint());
    const TimeNs at = authority.clock().now_ns();
    const ExecutionReport ack = report(ExecutionType::ack, "c-1", "", Side::buy);
    // Half of the 12 entries orders may use (its reserve is the other half: not accepting).
    // The writer takes one and hangs in the blocked sink with it; the entry stays in the queue
    // (the journal's slot) until its record is durable, so the queue still holds all six; then
    // reports fill it up to the state changes' reserve.
    for (int i = 0; i < 6; ++i)
        REQUIRE(trail.push_execution(at, ack, result(true, false, false), "BTC_EUR", Side::buy));
    for (int i = 0; i < 10000 && sink->appends.load() == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(sink->appends.load() == 1);
    CHECK_FALSE(trail.accepting());
    int taken = 0;
    while (trail.push_execution(at, ack, result(true, false, false), "BTC_EUR", Side::buy)) {
        REQUIRE(++taken < 1000);
    }
    CHECK(taken == 6);  // 12 in the queue, one of them with the writer
    CHECK(trail.counters().unrecorded_reports == 1);
    CHECK_FALSE(trail.push_amend(Amend{"c-1", parse_decimal("2"), std::nullopt},
                                 decided(Verdict::allow, at)));
    CHECK_FALSE(trail.push_amend(Amend{"c-1", parse_decimal("2"), std::nullopt},
                                 decided(Verdict::reject, at, {ReasonCode::halted})));
    CHECK_FALSE(trail.push_cancel(Cancel{"c-2"},
                                  decided(Verdict::reject, at, {ReasonCode::unknown_order_id})));
    CHECK_FALSE(trail.push_execution(at, ack, result(true, false, false), "BTC_EUR", Side::buy));
    const AuditTrailCounters c = trail.counters();
    CHECK(c.unrecorded_rejections == 2);  // the two rejected requests, not the allowed amend
    CHECK(c.unrecorded_reports == 2);
    sink->blocked = false;
    CHECK(trail.wait_durable(std::chrono::seconds(10)));
}

TEST_CASE("audit lifecycle: the new event names are valid, and the CA log refuses the agent's",
          "[audit][lifecycle]") {
    for (std::string_view e :
         {"amend.allowed", "amend.rejected", "cancel.allowed", "cancel.rejected", "execution.ack",
          "execution.reject", "execution.fill", "execution.cancelled", "execution.expired",
          "execution.mark", "guard.cancel_all", "guard.reduce_only", "guard.reduce_only_lifted"})
        CHECK(is_valid_audit_event(e));
    for (std::string_view e : {"amend.warned", "execution.partial", "cancel", "guard.cancel"})
        CHECK_FALSE(is_valid_audit_event(e));
    // What a Guard decides and applies belongs in the agent's log: record_event refuses it,
    // as it refuses order.*.
    TestAuthority authority;
    for (std::string_view e : {"amend.allowed", "cancel.rejected", "execution.fill"}) {
        INFO(e);
        CHECK_THROWS_WITH(authority.ca().record_event(e, "{}"),
                          Catch::Contains("belongs in an agent's log"));
    }
    CHECK_NOTHROW(authority.ca().record_event("guard.reduce_only_lifted",
                                              R"({"by":"A. Schmidt","reason":"reviewed"})"));
}

TEST_CASE(
    "audit lifecycle: the log verifies with kakunin audit verify, and the export lists "
    "the requests, reports, cancel-all and reduce-only",
    "[audit][lifecycle][export]") {
    TempDir tmp;
    const std::string state = tmp / "state";
    fs::create_directories(state + "/audit");
    ManualClock clock(utc(2024, 1, 8, 6, 0, 0));
    std::shared_ptr<SoftwareKms> kms = SoftwareKms::open(state + "/keys", "lifecycle audit");
    LocalCaOptions co;
    co.state_dir = state;
    co.crl_validity = std::chrono::hours(48);
    auto ca = LocalCa::init(kms, clock, co);
    const std::string agent = "agent-7";
    ca->register_agent({agent, "Desk 3", "BTC market making", clock.now_ns(), "J. Roe"});
    const Scope scope = parse_scope_json(kakunin::test::seed_scope_json);
    ca->record_approval(approve_scope(*kms, agent, "A. Schmidt", scope, clock.now_ns()), scope);
    const KeyHandle key = kms->create_key("agent:" + agent, KeyAlgorithm::ed25519);
    const AgentCertificate cert =
        ca->issue_for_agent(agent, kms->public_key(key).spki_der, std::chrono::hours(48));
    clock.set(utc(2024, 1, 8, 12, 0, 0));
    const TimeNs t0 = clock.now_ns();
    const std::string log = state + "/audit/" + agent + ".jsonl";
    {
        AuditTrailOptions options{std::make_shared<FileAuditSink>(log)};
        options.checkpoint_every = 5;
        options.checkpoint_interval = std::chrono::milliseconds(0);
        AuditTrail trail(options, clock, kms, key, agent, cert.fingerprint());
        Order o = kakunin::test::good_order();
        o.client_order_id = "c-17";
        Decision allowed = decided(Verdict::allow, t0 - 1'000'000'000);
        REQUIRE(trail.push_order(o, allowed));
        push_lifecycle(trail, t0);
        REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
    }
    check_lifecycle_records(records_of(log), 1, t0);

    // The command line verifies it, with the CA pinned.
    const std::string certs = tmp / "certs";
    fs::create_directories(certs);
    std::ofstream(certs + "/agent-7.pem") << cert.pem();
    const std::string out = tmp / "verify.out";
    const std::string command = std::string(KAKUNIN_CLI_PATH) + " audit verify --log '" + log +
                                "' --certs '" + certs + "' --ca '" + state + "/ca.pem' --json >'" +
                                out + "' 2>&1";
    const int status = std::system(command.c_str());
    INFO(read_all(out));
    REQUIRE(status == 0);
    const json verdict = json::parse(read_all(out));
    CHECK(verdict["ok"] == true);
    CHECK(verdict["records"] == 16);

    ExportOptions e;
    e.state_dir = state;
    e.agent = agent;
    e.out_dir = tmp / "pkg";
    e.write_tarball = false;
    const ExportSummary sum = export_package(*ca, *kms, e, clock);
    CHECK(sum.records == 16);
    ExportVerifyOptions pin;
    pin.pinned_ca = ca->trust_anchor().der();
    const ExportVerifyResult checked = verify_export_package(e.out_dir, pin);
    INFO(checked.message);
    CHECK(checked.ok);

    // The timeline: what a supervisor must see, not the routine requests and reports.
    const json timeline = json::parse(read_all(e.out_dir + "/timeline.json"));
    std::map<std::string, json> on;
    std::map<std::string, int> count;
    for (const auto& entry : timeline) {
        if (entry["log"] != "agent") continue;
        on[entry["event"]] = entry;
        ++count[entry["event"]];
    }
    REQUIRE(on.count("guard.cancel_all") == 1);
    CHECK(on["guard.cancel_all"]["who"] == "M. Rossi");
    CHECK(on["guard.cancel_all"]["seq"] == 13);
    const std::string cancel_detail = on["guard.cancel_all"]["detail"];
    CHECK_THAT(cancel_detail,
               Catch::Contains("cancel of 3 working order(s) requested: c-20, c-21, c-22"));
    CHECK_THAT(cancel_detail, Catch::Contains("halt halt-20240108T120012Z-1"));
    CHECK_THAT(cancel_detail, Catch::Contains("desk kill switch"));
    REQUIRE(on.count("guard.reduce_only") == 1);
    CHECK(on["guard.reduce_only"]["detail"] == "max_daily_loss reached");
    REQUIRE(on.count("guard.reduce_only_lifted") == 1);
    CHECK(on["guard.reduce_only_lifted"]["who"] == "A. Schmidt");
    // The fill of an order the Guard never knew, and the mark that entered reduce-only mode.
    CHECK(count["execution.fill"] == 1);
    CHECK_THAT(on["execution.fill"]["detail"].get<std::string>(),
               Catch::Contains("fill SELL 1.25 ETH_EUR @ 2200 (c-404)") &&
                   Catch::Contains("not a working order of the Guard") &&
                   Catch::Contains(k_unknown_fill));
    CHECK(count["execution.mark"] == 1);
    CHECK_THAT(
        on["execution.mark"]["detail"].get<std::string>(),
        Catch::Contains("mark BTC_EUR @ 39000") && Catch::Contains("reduce-only mode entered"));
    for (const char* routine :
         {"amend.allowed", "amend.rejected", "cancel.allowed", "cancel.rejected", "execution.ack",
          "execution.cancelled", "execution.reject", "execution.expired", "order.allowed"})
        CHECK(count.count(routine) == 0);

    // The report counts them like orders and lists the rejected requests by reason.
    const std::string html = read_all(e.out_dir + "/report.html");
    CHECK_THAT(html, Catch::Contains("<div class=\"n\">5</div><div class=\"l\">amend and cancel "
                                     "requests</div>"));
    CHECK_THAT(html, Catch::Contains("<div class=\"n\">7</div><div class=\"l\">execution "
                                     "reports</div>"));
    CHECK_THAT(html, Catch::Contains("<div class=\"n\">1</div><div class=\"l\">cancel-all "
                                     "requests on halts</div>"));
    CHECK_THAT(html, Catch::Contains("0 rejected orders and 2 rejected amend or cancel requests"));
    CHECK_THAT(html, Catch::Contains("<tr data-reason=\"unknown_order_id\"><td>312</td><td><code>"
                                     "unknown_order_id</code></td><td class=\"count\">0</td><td "
                                     "class=\"requests\">2</td></tr>"));
    CHECK_THAT(html, Catch::Contains("<td class=\"count\">0</td><td class=\"requests\">1</td>"));

    // RTS 6 Art. 12 is met on the guard.cancel_all records; Art. 15(1) names the message limit.
    const json manifest = json::parse(read_all(e.out_dir + "/manifest.json"));
    json art12, art15;
    for (const auto& m : manifest["regulatory_mapping"]) {
        if (m["provision"] == "Art. 12") art12 = m;
        if (m["provision"] == "Art. 15(1)") art15 = m;
    }
    REQUIRE(art12.is_object());
    CHECK_FALSE(art12.contains("coverage"));
    CHECK_THAT(art12["how"].get<std::string>(),
               Catch::Contains("guard.cancel_all") && Catch::Contains("order_ids") &&
                   Catch::Contains("not that the venue cancelled them"));
    REQUIRE(art15.is_object());
    CHECK_THAT(art15["how"].get<std::string>(), Catch::Contains("limits.max_messages_per_second"));
}
