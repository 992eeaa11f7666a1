// The audit trail's write-ahead journal (docs/audit-format.md section 13): a process that dies
// before its writer made its entries durable leaves them in the mapped journal, and the next
// trail on the log records them, once, in order (`log.recovered`). A child process fills a trail
// whose sink never works and kills itself with SIGKILL: nothing of its entries reached the log.
// Torn slots are told by their checksum; a journal that does not belong to the log, or a log
// cut behind the journal's back, is refused with the reason. (tests/test_audit_crash.cpp kills a
// trading process at random moments under load.)
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kakunin/audit_trail.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using namespace kakunin;
using nlohmann::json;

namespace {

/// A sink whose writes always fail: nothing the child queues becomes durable.
class DownSink final : public LockingAuditSink {
public:
    std::string name() const override { return "down"; }

protected:
    void do_append(const std::string_view*, std::size_t) override {
        throw Error(ErrorCategory::io, "down sink: disk unplugged");
    }
    void do_flush() override { throw Error(ErrorCategory::io, "down sink: disk unplugged"); }
};

struct Setup {
    TestAuthority authority;
    GuardCredentials creds = authority.credentials_for(parse_scope_json(test::seed_scope_json));
    std::string agent = creds.certificate.agent_id();

    AuditTrail trail(AuditTrailOptions o) {
        o.record_signatures = true;
        o.shutdown_deadline = std::chrono::milliseconds(100);
        return AuditTrail(std::move(o), authority.clock(), creds.kms, creds.key, agent,
                          creds.certificate.fingerprint());
    }
};

std::string big_payload() {
    json p;
    p["by"] = "A. Schmidt";
    p["order_ids"] = json::array();
    for (int i = 0; i < 300; ++i) p["order_ids"].push_back("resting-order-" + std::to_string(i));
    return p.dump();  // about 6,000 bytes: seven entries
}

/// In a child process: a trail on a sink that never works, with its journal at `journal`,
/// given `orders` allowed orders, one JSON event spanning several entries and one state change,
/// then SIGKILL. Returns once the child is dead.
void die_with_entries(Setup& s, const std::string& journal, int orders,
                      std::size_t capacity = 4096) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        try {
            AuditTrailOptions o{std::make_shared<DownSink>()};
            o.journal_path = journal;
            o.queue_capacity = capacity;
            o.sink_failure_grace = std::chrono::minutes(1);
            AuditTrail trail = s.trail(o);
            for (int i = 0; i < orders; ++i) {
                const std::string id = "j-" + std::to_string(i);
                Order order = test::good_order();
                order.client_order_id = id;
                Decision d;
                d.verdict = Verdict::allow;
                d.ts_ns = s.authority.clock().now_ns() + i;
                if (!trail.push_order(order, d)) ::_exit(3);
            }
            if (!trail.push_event(s.authority.clock().now_ns() + orders, "guard.cancel_all",
                                  big_payload()))
                ::_exit(4);
            if (!trail.push_state(s.authority.clock().now_ns() + orders + 1, "guard.halted",
                                  "kakunin", "end of the child's run"))
                ::_exit(5);
            ::raise(SIGKILL);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child: %s\n", e.what());
        }
        ::_exit(2);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("child exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
}

std::vector<json> records(const std::string& path) {
    std::vector<json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        json j = json::parse(line);
        if (j["kind"] == "record") out.push_back(std::move(j));
    }
    return out;
}

AuditVerifyResult verify(Setup& s, const std::string& path) {
    AuditCertificates certs;
    certs.add_der(s.creds.certificate.der());
    return verify_audit_log_file(path, certs);
}

}  // namespace

TEST_CASE(
    "entries a killed process left in its journal are recorded once, in order, by the "
    "next trail on the log",
    "[journal]") {
    test::TempDir dir("kakunin-journal");
    Setup s;
    const std::string log = dir / "agent.jsonl";
    die_with_entries(s, log + ".journal", 40);
    {
        AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
        CHECK(trail.counters().recovered == 42);
    }
    const std::vector<json> r = records(log);
    REQUIRE(r.size() == 43);
    for (int i = 0; i < 40; ++i) {
        INFO("record " << i);
        CHECK(r[i]["seq"] == i);
        CHECK(r[i]["event"] == "order.allowed");
        CHECK(r[i]["payload"]["order"]["client_order_id"] == "j-" + std::to_string(i));
        CHECK(r[i]["ts_ns"] == s.authority.clock().now_ns() + i);  // the entry's own time
    }
    CHECK(r[40]["event"] == "guard.cancel_all");
    CHECK(r[40]["payload"] == json::parse(big_payload()));  // all seven parts, in order
    CHECK(r[41]["event"] == "guard.halted");
    CHECK(r[41]["payload"]["reason"] == "end of the child's run");
    CHECK(r[42]["event"] == "log.recovered");
    CHECK(r[42]["payload"]["count"] == 42);
    CHECK(r[42]["payload"]["damaged_slots"] == 0);
    CHECK(r[42]["payload"]["missing_entries"] == 0);
    const AuditVerifyResult v = verify(s, log);
    INFO(v.message);
    CHECK(v.ok);

    // Opened again: nothing to recover, nothing recorded twice.
    {
        AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
        CHECK(trail.counters().recovered == 0);
    }
    CHECK(records(log).size() == 43);
    CHECK(verify(s, log).ok);
}

TEST_CASE(
    "a slot the disk kept half of is told by its checksum: the rest is recovered and the "
    "damage counted",
    "[journal]") {
    test::TempDir dir("kakunin-journal");
    Setup s;
    const std::string log = dir / "agent.jsonl";
    const std::string journal = log + ".journal";
    die_with_entries(s, journal, 10);
    {  // flip one byte inside the fourth slot's text (the order j-3)
        const int fd = ::open(journal.c_str(), O_RDWR);
        REQUIRE(fd >= 0);
        const off_t at = 4096 + 3 * static_cast<off_t>(sizeof(detail::JournalSlot)) +
                         static_cast<off_t>(offsetof(detail::JournalSlot, entry) +
                                            offsetof(detail::AuditEntry, text) + 1);
        char c = 0;
        REQUIRE(::pread(fd, &c, 1, at) == 1);
        c ^= 0x20;
        REQUIRE(::pwrite(fd, &c, 1, at) == 1);
        ::close(fd);
    }
    {
        AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
        CHECK(trail.counters().recovered == 11);
    }
    const std::vector<json> r = records(log);
    REQUIRE(r.size() == 12);
    std::vector<std::string> ids;
    for (const json& j : r)
        if (j["event"] == "order.allowed") ids.push_back(j["payload"]["order"]["client_order_id"]);
    CHECK(ids ==
          std::vector<std::string>{"j-0", "j-1", "j-2", "j-4", "j-5", "j-6", "j-7", "j-8", "j-9"});
    CHECK(r.back()["event"] == "log.recovered");
    CHECK(r.back()["payload"]["damaged_slots"] == 1);
    CHECK(verify(s, log).ok);
}

TEST_CASE("a journal made with another capacity is recovered, then remade with the new one",
          "[journal]") {
    test::TempDir dir("kakunin-journal");
    Setup s;
    const std::string log = dir / "agent.jsonl";
    die_with_entries(s, log + ".journal", 20, 64);
    {
        AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
        o.queue_capacity = 256;
        AuditTrail trail = s.trail(o);
        CHECK(trail.counters().recovered == 22);
    }
    CHECK(std::filesystem::file_size(log + ".journal") == 4096 + 256 * sizeof(detail::JournalSlot));
    CHECK(records(log).size() == 23);
    CHECK(verify(s, log).ok);
}

TEST_CASE(
    "a journal is refused with the reason when it is not the log's, not a journal, in use, "
    "or ahead of a log that was cut",
    "[journal]") {
    test::TempDir dir("kakunin-journal");
    Setup s;
    const std::string log = dir / "agent.jsonl";
    SECTION("another log's journal") {
        die_with_entries(s, log + ".journal", 3);
        AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
        o.log_id = "someone-else";
        CHECK_THROWS_WITH(s.trail(o), Catch::Contains("the journal of log \"" + s.agent + "\""));
    }
    SECTION("not a journal") {
        std::ofstream(log + ".journal") << std::string(8192, 'x');
        CHECK_THROWS_WITH(s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)}),
                          Catch::Contains("not a Kakunin audit journal"));
        CHECK(std::filesystem::file_size(log + ".journal") == 8192);  // left as it was
    }
    SECTION("in use by another trail") {
        AuditTrailOptions o{std::make_shared<MemoryAuditSink>()};
        o.journal_path = log + ".journal";
        AuditTrail first = s.trail(o);
        AuditTrailOptions o2{std::make_shared<MemoryAuditSink>()};
        o2.journal_path = log + ".journal";
        CHECK_THROWS_WITH(s.trail(o2), Catch::Contains("in use by another audit trail"));
    }
    SECTION("a log cut behind the journal") {
        {
            AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
            Decision d;
            d.verdict = Verdict::allow;
            d.ts_ns = s.authority.clock().now_ns();
            for (int i = 0; i < 5; ++i) REQUIRE(trail.push_order(test::good_order(), d));
            REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
        }
        std::filesystem::remove(log);
        std::filesystem::remove(log + ".started");  // a new log on purpose, the journal kept
        CHECK_THROWS_WITH(s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)}),
                          Catch::Contains("was cut or replaced"));
    }
}

namespace {

/// Writes `orders` allowed orders j-0, j-1, ... a millisecond apart, `per_batch` at a time, each
/// batch made durable, then closes the trail (its final checkpoint).
void durable_orders(Setup& s, const std::string& log, int orders, int per_batch,
                    std::size_t capacity = 4096) {
    AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
    o.queue_capacity = capacity;
    AuditTrail trail = s.trail(o);
    for (int i = 0; i < orders; ++i) {
        const std::string id = "j-" + std::to_string(i);  // the order holds a view of it
        Order order = test::good_order();
        order.client_order_id = id;
        Decision d;
        d.verdict = Verdict::allow;
        d.ts_ns = s.authority.clock().now_ns() + i * 1000000;
        REQUIRE(trail.push_order(order, d));
        if ((i + 1) % per_batch == 0) REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
    }
    REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
}

/// What a storage that loses its last confirmed commit leaves: the log without its last `cut`
/// records (and the checkpoints after them), ending on a whole line.
void lose_last_records(const std::string& log, int cut) {
    std::vector<std::string> lines;
    {
        std::ifstream in(log);
        for (std::string line; std::getline(in, line);) lines.push_back(line);
    }
    std::size_t keep = lines.size();
    for (int seen = 0; keep > 0 && seen < cut;)
        if (json::parse(lines[--keep])["kind"] == "record") ++seen;
    std::ofstream out(log, std::ios::trunc);
    for (std::size_t i = 0; i < keep; ++i) out << lines[i] << "\n";
}

}  // namespace

TEST_CASE(
    "records the storage lost after confirming them come back from the journal, once and in "
    "order, and a journal that no longer holds them is refused with the reason",
    "[journal]") {
    test::TempDir dir("kakunin-journal");
    Setup s;
    const std::string log = dir / "agent.jsonl";
    SECTION("the last three records lost: restored at their own times") {
        durable_orders(s, log, 10, 4);
        lose_last_records(log, 3);
        REQUIRE(records(log).size() == 7);
        std::vector<std::string> messages;
        {
            AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
            o.error_handler = [&](std::string_view m) { messages.emplace_back(m); };
            AuditTrail trail = s.trail(o);
            CHECK(trail.counters().recovered == 3);
        }
        REQUIRE(messages.size() == 1);
        CHECK_THAT(messages[0], Catch::Contains("held 10 records durably and now holds 7") &&
                                    Catch::Contains("3 restored from the journal"));
        const std::vector<json> r = records(log);
        REQUIRE(r.size() == 11);
        for (int i = 0; i < 10; ++i) {
            INFO("record " << i);
            CHECK(r[i]["seq"] == i);
            CHECK(r[i]["payload"]["order"]["client_order_id"] == "j-" + std::to_string(i));
            CHECK(r[i]["ts_ns"] == s.authority.clock().now_ns() + i * 1000000);
        }
        CHECK(r[10]["event"] == "log.recovered");
        CHECK(r[10]["payload"]["lost_records"] == 3);
        CHECK(r[10]["payload"]["restored"] == 3);
        CHECK(r[10]["payload"]["count"] == 0);  // nothing was pending beyond the watermark
        const AuditVerifyResult v = verify(s, log);
        INFO(v.message);
        CHECK(v.ok);
        // Opened again: nothing more to restore.
        {
            AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
            CHECK(trail.counters().recovered == 0);
        }
        CHECK(records(log).size() == 11);
    }
    SECTION("orders alike in every byte: refused, since which were lost cannot be told") {
        {
            AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
            Decision d;
            d.verdict = Verdict::allow;
            d.ts_ns = s.authority.clock().now_ns();
            for (int i = 0; i < 6; ++i) REQUIRE(trail.push_order(test::good_order(), d));
            REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
        }
        lose_last_records(log, 2);
        const std::uintmax_t size = std::filesystem::file_size(log);
        CHECK_THROWS_WITH(s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)}),
                          Catch::Contains("3 of the journal's last entries are the log's last "
                                          "record (seq 3") &&
                              Catch::Contains("byte for byte"));
        CHECK(std::filesystem::file_size(log) == size);  // nothing was written
    }
    SECTION("a lost record the writer made itself has no entry: the others are restored") {
        // A recovery's own log.recovered and the halt before it lost: the JSON event before
        // them (seven entries) is the log's last record, and only the halt comes back.
        die_with_entries(s, log + ".journal", 40);
        {
            AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
            CHECK(trail.counters().recovered == 42);
        }
        lose_last_records(log, 2);
        {
            AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)});
            CHECK(trail.counters().recovered == 1);
        }
        const std::vector<json> r = records(log);
        REQUIRE(r.size() == 43);
        CHECK(r[40]["event"] == "guard.cancel_all");
        CHECK(r[41]["event"] == "guard.halted");
        CHECK(r[41]["payload"]["reason"] == "end of the child's run");
        CHECK(r[42]["event"] == "log.recovered");
        CHECK(r[42]["payload"]["lost_records"] == 2);
        CHECK(r[42]["payload"]["restored"] == 1);
        CHECK(verify(s, log).ok);
    }
    SECTION("alike orders and a journal that does not reach back far enough: refused") {
        {
            AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
            o.queue_capacity = 16;
            AuditTrail trail = s.trail(o);
            Decision d;
            d.verdict = Verdict::allow;
            d.ts_ns = s.authority.clock().now_ns();
            for (int i = 0; i < 48; ++i) {
                REQUIRE(trail.push_order(test::good_order(), d));
                if ((i + 1) % 8 == 0) REQUIRE(trail.wait_durable(std::chrono::seconds(10)));
            }
        }
        lose_last_records(log, 30);
        const std::uintmax_t size = std::filesystem::file_size(log);
        CHECK_THROWS_WITH(
            s.trail([&] {
                AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
                o.queue_capacity = 16;
                return o;
            }()),
            Catch::Contains("no longer reaches back to the entry of the log's last record"));
        CHECK(std::filesystem::file_size(log) == size);
    }
    SECTION("the journal has reused the slots of the lost records' entries") {
        durable_orders(s, log, 48, 8, 16);
        lose_last_records(log, 30);
        const std::uintmax_t size = std::filesystem::file_size(log);
        CHECK_THROWS_WITH(
            s.trail([&] {
                AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
                o.queue_capacity = 16;
                return o;
            }()),
            Catch::Contains("held 48 records durably and now holds 18") &&
                Catch::Contains(
                    "no longer reaches back to the entry of the log's last record (seq 17"));
        CHECK(std::filesystem::file_size(log) == size);  // nothing was written
    }
}

TEST_CASE("without a journal nothing is mapped, and a memory sink has none by default",
          "[journal]") {
    test::TempDir dir("kakunin-journal");
    Setup s;
    const std::string log = dir / "agent.jsonl";
    {
        AuditTrailOptions o{std::make_shared<FileAuditSink>(log)};
        o.journal = false;
        AuditTrail trail = s.trail(o);
    }
    CHECK_FALSE(std::filesystem::exists(log + ".journal"));
    { AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<MemoryAuditSink>()}); }
    { AuditTrail trail = s.trail(AuditTrailOptions{std::make_shared<FileAuditSink>(log)}); }
    CHECK(std::filesystem::exists(log + ".journal"));
}

TEST_CASE("an entry's fields are copied byte for byte at every length, and nothing around them",
          "[journal]") {
    // copy_short's overlapping moves against memcpy, at each length up to a field's maximum and
    // at each offset in a 16-byte word, into a buffer whose bytes outside the copy must stay.
    std::vector<char> from(2 * max_order_field_length + 64);
    for (std::size_t i = 0; i < from.size(); ++i) from[i] = static_cast<char>(i * 131 + 7);
    for (std::size_t offset = 0; offset < 16; ++offset) {
        for (std::size_t n = 0; n <= max_order_field_length + 20; ++n) {
            std::vector<char> got(from.size() + 32, '#'), want(from.size() + 32, '#');
            detail::copy_short(got.data() + 8 + offset, from.data() + offset, n);
            std::memcpy(want.data() + 8 + offset, from.data() + offset, n);
            if (got != want) FAIL("copy_short differs from memcpy at length " << n);
        }
    }
    // Through set_text: each field back as it went in, the last one truncated to the room left.
    detail::AuditEntry e;
    const std::string id(max_order_field_length, 'i'), reasoning(2000, 'r');
    const std::string_view fields[5] = {id, "ETH_EUR", "", "eu-central-1", reasoning};
    e.set_text(fields, 5);
    CHECK(e.field(0) == id);
    CHECK(e.field(1) == "ETH_EUR");
    CHECK(e.field(2).empty());
    CHECK(e.field(3) == "eu-central-1");
    CHECK(e.field(4) == std::string_view(reasoning).substr(
                            0, detail::AuditEntry::text_capacity - id.size() - 7 - 12));
}
