// Disk write errors under the file audit sink: writes that fail part way (some bytes written,
// then EIO), fdatasync failing with EIO, and ftruncate failing too, injected into the real
// FileAuditSink through io::testing (src/io/durable_file.hpp). A failed write or sync must never
// leave a duplicate or a torn record behind: the log verifies, reopens, holds every decision
// exactly once, and trading resumes when the fault clears. Reopening repairs only a torn last
// line and refuses, naming the line, a log whose seq or tree does not continue. Each case is
// bounded to a few seconds.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/durable_file.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

using namespace kakunin;
namespace fs = std::filesystem;
namespace faults = kakunin::io::testing;
using steady = std::chrono::steady_clock;

namespace {

class TempDir {
public:
    TempDir() {
        std::string templ = (fs::temp_directory_path() / "kakunin-write-errors-XXXXXX").string();
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        m_path = templ;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(m_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return (m_path / name).string(); }

private:
    fs::path m_path;
};

/// Whatever a test does, no injected fault outlives it.
struct ClearFaults {
    ClearFaults() { faults::clear_faults(); }
    ~ClearFaults() { faults::clear_faults(); }
};

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
}

std::vector<std::string> split_lines(const std::string& bytes) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t pos = bytes.find('\n'); pos != std::string::npos;
         pos = bytes.find('\n', start)) {
        out.push_back(bytes.substr(start, pos - start));
        start = pos + 1;
    }
    if (start < bytes.size()) out.push_back(bytes.substr(start));  // a torn tail, if any
    return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "no error";
}

const Scope& unlimited_seed() {
    static const Scope s = [] {
        Scope scope = parse_scope_json(test::seed_scope_json);
        scope.limits = PreTradeLimits{};
        return scope;
    }();
    return s;
}

GuardOptions file_options(const std::string& path, std::chrono::milliseconds grace) {
    GuardOptions options;
    options.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(path)};
    options.audit->record_signatures = false;
    options.audit->batch_max = 64;
    options.audit->sink_failure_grace = grace;
    return options;
}

/// What the log says: every record in seq order, and how often each order id was recorded.
struct LogContents {
    std::uint64_t records = 0;
    bool seq_in_order = true;
    std::map<std::string, int> order_ids;  ///< client_order_id of order.* records -> count
    std::size_t truncated_tails = 0;
};

LogContents read_log(const std::string& path) {
    LogContents c;
    for (const std::string& line : split_lines(read_bytes(path))) {
        const auto j = nlohmann::json::parse(line, nullptr, false);
        REQUIRE_FALSE(j.is_discarded());
        if (j.value("kind", "") == "checkpoint") continue;
        if (j.at("seq").get<std::uint64_t>() != c.records) c.seq_in_order = false;
        ++c.records;
        const std::string event = j.at("event").get<std::string>();
        if (event.rfind("order.", 0) == 0)
            ++c.order_ids[j.at("payload").at("order").at("client_order_id").get<std::string>()];
        if (event == "log.truncated_tail") ++c.truncated_tails;
    }
    return c;
}

AuditVerifyResult verify(const std::string& path, const GuardCredentials& creds,
                         bool require_closed = true) {
    AuditCertificates certs;
    certs.add_der(creds.certificate.der());
    AuditVerifyOptions vo;
    vo.require_closed = require_closed;
    return verify_audit_log_file(path, certs, vo);
}

/// Sends orders with ids "o-<n>" on a Guard; remembers each decision.
struct Trader {
    Guard& guard;
    ManualClock& clock;
    std::vector<std::string> ids;
    std::vector<bool> allowed;
    std::size_t unavailable = 0;

    Decision send() {
        ids.push_back("o-" + std::to_string(ids.size()));
        Order o = test::good_order();
        o.client_order_id = ids.back();
        o.quantity = Decimal{1, 3};
        clock.advance(std::chrono::milliseconds(1));
        const Decision d = guard.check(o);
        allowed.push_back(d.allowed());
        if (d.reasons.contains(ReasonCode::audit_unavailable)) ++unavailable;
        return d;
    }
};

/// Every decision the Guard returned is recorded exactly once; no other order record exists.
void check_each_decision_recorded_once(const LogContents& log, const Trader& t) {
    std::size_t missing = 0, duplicated = 0;
    for (const std::string& id : t.ids) {
        const auto it = log.order_ids.find(id);
        if (it == log.order_ids.end())
            ++missing;
        else if (it->second != 1)
            ++duplicated;
    }
    INFO("decisions " << t.ids.size() << ", order records " << log.order_ids.size());
    CHECK(missing == 0);
    CHECK(duplicated == 0);
    CHECK(log.order_ids.size() == t.ids.size());
}

}  // namespace

// ---- the sink itself --------------------------------------------------------------------------

TEST_CASE("a write that fails part way leaves the file at its last durable byte",
          "[audit_write_errors][sink]") {
    ClearFaults clear;
    TempDir dir;
    const std::string path = dir / "log.jsonl";
    FileAuditSink sink(path);
    sink.append(std::string_view("{\"agent\":\"a\",\"n\":0}"));
    const std::string durable = read_bytes(path);
    const std::vector<std::string> batch = {"{\"agent\":\"a\",\"n\":1}",
                                            "{\"agent\":\"a\",\"n\":2}"};
    // 27 bytes: the whole first line and part of the second reach the file, then EIO.
    faults::inject_fault(faults::FaultSite::write, {0, 1, 27, EIO});
    const std::string err = error_of([&] { sink.append(batch); });
    CHECK_THAT(err, Catch::Contains("write") && Catch::Contains("Input/output error") &&
                        Catch::Contains("cut back to the last durable byte"));
    CHECK(faults::injected_failures(faults::FaultSite::write) == 1);
    CHECK(read_bytes(path) == durable);  // neither the whole line nor the half one stayed
    sink.append(batch);                  // the retry writes the batch whole, once
    CHECK(read_bytes(path) == durable + join_lines(batch));
}

TEST_CASE("a failed fdatasync cuts the batch back so that the retry does not duplicate it",
          "[audit_write_errors][sink]") {
    ClearFaults clear;
    TempDir dir;
    const std::string path = dir / "log.jsonl";
    FileAuditSink sink(path);  // sync_every_append: append() is write + fdatasync
    sink.append(std::string_view("{\"agent\":\"a\",\"n\":0}"));
    const std::string durable = read_bytes(path);
    const std::vector<std::string> batch = {"{\"agent\":\"a\",\"n\":1}",
                                            "{\"agent\":\"a\",\"n\":2}"};
    faults::inject_fault(faults::FaultSite::sync, {0, 1, 0, EIO});
    CHECK_THAT(error_of([&] { sink.append(batch); }), Catch::Contains("fdatasync"));
    CHECK(read_bytes(path) == durable);
    sink.append(batch);
    CHECK(read_bytes(path) == durable + join_lines(batch));
    std::vector<std::string> seen;
    sink.for_each_line([&](std::string_view l) { seen.emplace_back(l); });
    CHECK(seen.size() == 3);
}

TEST_CASE("without a sync per append, lines stored before a failed flush are written again whole",
          "[audit_write_errors][sink]") {
    ClearFaults clear;
    TempDir dir;
    const std::string path = dir / "log.jsonl";
    FileAuditSinkOptions o;
    o.sync_every_append = false;
    FileAuditSink sink(path, o);
    sink.append(std::string_view("{\"agent\":\"a\",\"n\":0}"));
    sink.flush();
    const std::string durable = read_bytes(path);
    const std::vector<std::string> first = {"{\"agent\":\"a\",\"n\":1}"};
    const std::vector<std::string> second = {"{\"agent\":\"a\",\"n\":2}"};
    sink.append(first);  // stored, not yet durable
    faults::inject_fault(faults::FaultSite::sync, {0, 1, 0, EIO});
    CHECK_THAT(error_of([&] { sink.flush(); }), Catch::Contains("fdatasync"));
    // After a failed fsync the kernel may have dropped those pages: they are cut, kept in
    // memory, and written again before anything else.
    CHECK(read_bytes(path) == durable);
    // A write failing on the rewrite leaves the file at the durable byte again.
    faults::inject_fault(faults::FaultSite::write, {0, 1, 5, EIO});
    CHECK_THAT(error_of([&] { sink.append(second); }), Catch::Contains("write"));
    CHECK(read_bytes(path) == durable);
    sink.append(second);
    sink.flush();
    CHECK(read_bytes(path) == durable + join_lines(first) + join_lines(second));
}

TEST_CASE(
    "a write refused whole on a read-only filesystem needs no cut, so the sink works again "
    "when the filesystem does",
    "[audit_write_errors][sink]") {
    ClearFaults clear;
    TempDir dir;
    const std::string path = dir / "log.jsonl";
    FileAuditSink sink(path);
    sink.append(std::string_view("{\"agent\":\"a\",\"n\":0}"));
    const std::string durable = read_bytes(path);
    const std::vector<std::string> batch = {"{\"agent\":\"a\",\"n\":1}"};
    // Nothing stored, and ftruncate refused too, as on a filesystem turned read-only.
    faults::inject_fault(faults::FaultSite::write, {0, 1, 0, EROFS});
    faults::inject_fault(faults::FaultSite::truncate, {0, UINT64_MAX, 0, EROFS});
    const std::string err = error_of([&] { sink.append(batch); });
    CHECK_THAT(err, Catch::Contains("cut back to the last durable byte"));
    CHECK_THAT(err, !Catch::Contains("nothing more is written"));
    CHECK(read_bytes(path) == durable);
    faults::clear_faults();
    sink.append(batch);  // not broken: the filesystem works again, so does the sink
    CHECK(read_bytes(path) == durable + join_lines(batch));
}

TEST_CASE("a sink that cannot cut back after a failed write refuses every later write",
          "[audit_write_errors][sink]") {
    ClearFaults clear;
    TempDir dir;
    const std::string path = dir / "log.jsonl";
    TestAuthority authority;
    const GuardCredentials creds = authority.credentials_for(unlimited_seed());
    {
        Guard guard(creds, authority.clock(), file_options(path, std::chrono::milliseconds(2000)));
        REQUIRE(guard.check(test::good_order()).allowed());
    }
    const std::string before = read_bytes(path);
    {
        FileAuditSink sink(path);
        faults::inject_fault(faults::FaultSite::write, {0, 1, 20, EIO});
        faults::inject_fault(faults::FaultSite::truncate, {0, 1, 0, EIO});
        const std::string line = split_lines(before).front();
        const std::string err = error_of([&] { sink.append(std::string_view(line)); });
        CHECK_THAT(err, Catch::Contains("cutting the file back to its last durable byte") &&
                            Catch::Contains("nothing more is written"));
        faults::clear_faults();
        // Fail closed: nothing is appended after what may be a torn record, even though the
        // disk works again.
        CHECK(error_of([&] { sink.append(std::string_view(line)); }) == err);
        CHECK(error_of([&] { sink.flush(); }) == err);
        CHECK(read_bytes(path) == before + line.substr(0, 20));
    }
    // Reopening repairs the torn last line, and the writer records that it did.
    {
        Guard guard(creds, authority.clock(), file_options(path, std::chrono::milliseconds(2000)));
        REQUIRE(guard.check(test::good_order()).allowed());
    }
    const AuditVerifyResult r = verify(path, creds);
    INFO(r.message);
    CHECK(r.ok);
    const LogContents log = read_log(path);
    CHECK(log.truncated_tails == 1);
    CHECK(log.seq_in_order);
}

// ---- a Guard writing under load -----------------------------------------------------------------

TEST_CASE(
    "five write errors under load leave no duplicate seq, a log that verifies and reopens, and "
    "every decision recorded once",
    "[audit_write_errors][guard]") {
    ClearFaults clear;
    TempDir dir;
    const std::string path = dir / "log.jsonl";
    TestAuthority authority;
    const GuardCredentials creds = authority.credentials_for(unlimited_seed());
    // A queue that the load cannot fill on a busy machine: a full queue rejects orders too
    // (unrecorded, counted), which is not what this test is about.
    std::optional<Guard> guard;
    {
        GuardOptions options = file_options(path, std::chrono::seconds(10));
        options.audit->queue_capacity = 1 << 16;
        guard.emplace(creds, authority.clock(), options);
    }  // the Guard alone holds the sink, so that the reopen below can lock the file
    Trader t{*guard, authority.clock(), {}, {}, 0};
    for (int i = 0; i < 300; ++i) t.send();
    REQUIRE(guard->audit()->wait_durable(std::chrono::seconds(5)));

    // Five faults at different points of a write: before its first byte, inside the first
    // line, after some whole lines and inside the next, at fdatasync, and three writes in a
    // row failing part way.
    struct Step {
        faults::FaultSite site;
        faults::Fault fault;
    };
    const Step steps[] = {
        {faults::FaultSite::write, {2, 1, 0, EIO}},    {faults::FaultSite::write, {1, 1, 37, EIO}},
        {faults::FaultSite::write, {3, 1, 1500, EIO}}, {faults::FaultSite::sync, {2, 1, 0, EIO}},
        {faults::FaultSite::write, {1, 3, 700, EIO}},
    };
    std::uint64_t expected_failures[3] = {0, 0, 0};
    for (const Step& s : steps) {
        faults::inject_fault(s.site, s.fault);
        expected_failures[static_cast<int>(s.site)] += s.fault.times;
        const auto started = steady::now();
        // Orders keep coming until the fault has been hit (bounded).
        while (faults::injected_failures(s.site) < expected_failures[static_cast<int>(s.site)] &&
               steady::now() - started < std::chrono::seconds(5)) {
            for (int i = 0; i < 20; ++i) t.send();
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        CHECK(faults::injected_failures(s.site) == expected_failures[static_cast<int>(s.site)]);
        for (int i = 0; i < 100; ++i) t.send();
    }
    faults::clear_faults();
    // Trading resumes: everything queued becomes durable, and orders are allowed.
    REQUIRE(guard->audit()->wait_durable(std::chrono::seconds(5)));
    CHECK(guard->audit()->counters().sink_failures >= 5);
    for (int i = 0; i < 50; ++i) CHECK(t.send().allowed());
    CHECK(t.unavailable == 0);  // each fault cleared well within the grace (10 s here)
    CHECK(guard->audit()->counters().unrecorded_rejections == 0);
    guard.reset();  // the final checkpoint

    const LogContents log = read_log(path);
    CHECK(log.seq_in_order);
    check_each_decision_recorded_once(log, t);
    AuditVerifyResult r = verify(path, creds);
    INFO(r.message);
    CHECK(r.ok);

    // Reopening works and the log continues.
    guard.emplace(creds, authority.clock(), file_options(path, std::chrono::milliseconds(2000)));
    Order o = test::good_order();
    o.client_order_id = "after-reopen";
    CHECK(guard->check(o).allowed());
    guard.reset();
    r = verify(path, creds);
    CHECK(r.ok);
    CHECK(r.records == log.records + 1);
}

TEST_CASE(
    "while writes keep failing orders are rejected with audit_unavailable after the grace, and "
    "trading resumes without a lost or duplicated record when they stop",
    "[audit_write_errors][guard]") {
    ClearFaults clear;
    TempDir dir;
    const std::string path = dir / "log.jsonl";
    TestAuthority authority;
    const GuardCredentials creds = authority.credentials_for(unlimited_seed());
    const auto grace = std::chrono::milliseconds(300);
    std::optional<Guard> guard;
    guard.emplace(creds, authority.clock(), file_options(path, grace));
    Trader t{*guard, authority.clock(), {}, {}, 0};
    for (int i = 0; i < 100; ++i) t.send();
    REQUIRE(guard->audit()->wait_durable(std::chrono::seconds(5)));

    // What the campaign's disk did (ext4, errors=continue): every write lands in the page
    // cache, every fdatasync fails with EIO, until cleared.
    faults::inject_fault(faults::FaultSite::sync, {0, UINT64_MAX, 0, EIO});
    const auto failing_at = steady::now();
    std::optional<std::chrono::milliseconds> refused_after;
    std::size_t allowed_after_refusal = 0;
    while (steady::now() - failing_at < std::chrono::seconds(3)) {
        const Decision d = t.send();
        const auto since =
            std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - failing_at);
        if (d.reasons.contains(ReasonCode::audit_unavailable)) {
            if (!refused_after) refused_after = since;
        } else if (refused_after && d.allowed()) {
            ++allowed_after_refusal;
        }
        if (refused_after && since > *refused_after + std::chrono::milliseconds(300)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(refused_after.has_value());
    INFO("first audit_unavailable " << refused_after->count() << " ms after writes began failing");
    CHECK(*refused_after >= grace - std::chrono::milliseconds(50));
    CHECK(*refused_after <= grace + std::chrono::milliseconds(700));
    CHECK(allowed_after_refusal == 0);
    CHECK(faults::injected_failures(faults::FaultSite::sync) > 3);  // retried, and failed again

    faults::clear_faults();
    const auto cleared_at = steady::now();
    bool resumed = false;
    while (!resumed && steady::now() - cleared_at < std::chrono::seconds(5)) {
        resumed = t.send().allowed();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(resumed);
    REQUIRE(guard->audit()->wait_durable(std::chrono::seconds(5)));
    guard.reset();

    const LogContents log = read_log(path);
    CHECK(log.seq_in_order);
    check_each_decision_recorded_once(log, t);
    const AuditVerifyResult r = verify(path, creds);
    INFO(r.message);
    CHECK(r.ok);
    guard.emplace(creds, authority.clock(), file_options(path, grace));  // and it reopens
    CHECK(guard->check(test::good_order()).allowed());
}

// ---- reopening: repair only a torn last line, refuse a log that does not continue -------------

TEST_CASE("reopening refuses a log whose seq or tree does not continue, naming the line",
          "[audit_write_errors][reopen]") {
    TempDir dir;
    TestAuthority authority;
    const GuardCredentials creds = authority.credentials_for(unlimited_seed());
    const std::string path = dir / "log.jsonl";
    {
        Guard guard(creds, authority.clock(), file_options(path, std::chrono::milliseconds(2000)));
        Trader t{guard, authority.clock(), {}, {}, 0};
        for (int i = 0; i < 5; ++i) t.send();
    }
    const std::string good = read_bytes(path);
    const std::vector<std::string> lines = split_lines(good);
    // Line 1 is the first order (seq 0), ..., line 5 (seq 4), then the final checkpoint.
    REQUIRE(lines.size() == 6);
    REQUIRE(lines[5].find("\"kind\":\"checkpoint\"") != std::string::npos);
    auto open_error = [&](const std::string& bytes) {
        write_bytes(path, bytes);
        return error_of([&] {
            Guard g(creds, authority.clock(), file_options(path, std::chrono::milliseconds(2000)));
        });
    };

    SECTION("a record written twice (a retry on top of a written batch)") {
        std::vector<std::string> l = lines;
        l.insert(l.begin() + 3, l[2]);
        CHECK_THAT(open_error(join_lines(l)),
                   Catch::Contains("line 4: seq 2 where 3 was expected"));
    }
    SECTION("a record missing") {
        std::vector<std::string> l = lines;
        l.erase(l.begin() + 2);
        CHECK_THAT(open_error(join_lines(l)),
                   Catch::Contains("line 3: seq 3 where 2 was expected"));
    }
    SECTION("a record changed under its checkpoint") {
        std::vector<std::string> l = lines;
        const std::size_t at = l[1].find("\"o-1\"");
        REQUIRE(at != std::string::npos);
        l[1].replace(at, 5, "\"o-9\"");
        CHECK_THAT(open_error(join_lines(l)),
                   Catch::Contains("line 6: checkpoint at size 5 does not match the records"));
    }
    SECTION("a torn line that is not the last one") {
        std::vector<std::string> l = lines;
        l[2] = l[2].substr(0, 40);
        CHECK_THAT(open_error(join_lines(l)), Catch::Contains("line 3: not valid JSON"));
    }
    SECTION("a complete last line that is not a record is not cut") {
        const std::string bytes = good + "{\"agent\":\"x\"}\n";
        CHECK_THAT(open_error(bytes), Catch::Contains("line 7: missing member"));
        CHECK(read_bytes(path) == bytes);  // refused, not repaired by guessing
    }
    SECTION("only a torn last line is repaired, and recorded") {
        write_bytes(path, good + lines[0].substr(0, 33));
        {
            Guard g(creds, authority.clock(), file_options(path, std::chrono::milliseconds(2000)));
            CHECK(g.check(test::good_order()).allowed());
        }
        const AuditVerifyResult r = verify(path, creds);
        INFO(r.message);
        CHECK(r.ok);
        const LogContents log = read_log(path);
        CHECK(log.truncated_tails == 1);
        CHECK(log.records == 5 + 2);  // the tail record, then the new order
    }
}
