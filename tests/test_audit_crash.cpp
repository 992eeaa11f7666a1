// Crash safety: a process writing its audit log is killed with SIGKILL mid-stream. The log must
// still verify after reopening, seq must continue, and no record the writer had reported durable
// may be missing. Then the write-ahead journal (docs/audit-format.md section 13): a trading
// process (tests/audit_crash_child.cpp) killed 20 times at random moments under load, each
// restart continuing the same log, loses no decision check() returned as allowed.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "kakunin/audit_verify.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "pg_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

extern char** environ;

using namespace kakunin;

namespace {

[[noreturn]] void child_trades(const GuardCredentials& creds, ManualClock& clock,
                               const std::string& path, int report_fd) {
    try {
        GuardOptions options;
        options.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(path)};
        options.audit->batch_max = 256;
        Scope scope = creds.certificate.scope();
        Guard guard(creds, clock, options);
        Order o = test::good_order();
        o.quantity = Decimal{1, 3};
        for (std::uint64_t i = 1;; ++i) {
            clock.advance(std::chrono::milliseconds(30));
            guard.check(o);
            if (i % 200 == 0) {
                guard.audit()->wait_durable(std::chrono::seconds(5));
                const std::uint64_t durable = guard.audit()->counters().durable;
                if (write(report_fd, &durable, sizeof durable) != sizeof durable) _exit(3);
            }
        }
    } catch (...) {
        _exit(2);
    }
}

}  // namespace

TEST_CASE("kill -9 of the writing process loses no durable record and the log still verifies") {
    TestAuthority authority;
    Scope scope = parse_scope_json(test::seed_scope_json);
    scope.limits.max_daily_notional.reset();
    const GuardCredentials creds = authority.credentials_for(scope);
    const std::string path = "/tmp/kakunin-crash-" + std::to_string(getpid()) + ".jsonl";
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());  // the sink's note that a log began here
    std::remove((path + ".journal").c_str());  // and the trail\'s write-ahead journal

    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(fds[0]);
        child_trades(creds, authority.clock(), path, fds[1]);
    }
    close(fds[1]);
    std::uint64_t durable = 0, reported = 0;
    while (durable < 2000 && read(fds[0], &reported, sizeof reported) == sizeof reported)
        durable = reported;
    REQUIRE(kill(child, SIGKILL) == 0);
    int status = 0;
    waitpid(child, &status, 0);
    close(fds[0]);
    CHECK(WIFSIGNALED(status));
    REQUIRE(durable >= 2000);

    // Reopen: the writer continues the log (cutting a torn last line, if the kill left one).
    authority.clock().advance(std::chrono::hours(1));
    {
        GuardOptions options;
        options.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(path)};
        Guard guard(creds, authority.clock(), options);
        CHECK(guard.check(test::good_order()).allowed());
    }
    AuditCertificates certs;
    certs.add_der(creds.certificate.der());
    AuditVerifyOptions vo;
    vo.require_record_signatures = true;
    const AuditVerifyResult r = verify_audit_log_file(path, certs, vo);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records >= durable + 1);
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());  // the sink's note that a log began here
    std::remove((path + ".journal").c_str());  // and the trail\'s write-ahead journal
}

// ---- the write-ahead journal: kill -9 of a trading process, 20 times, on one log ----

namespace {

using steady = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr const char* crash_agent = "crash-agent";  // as in tests/audit_crash_child.cpp
constexpr const char* crash_passphrase = "crash test passphrase";
constexpr int crash_runs = 20;

// Every hour of every day and no rate or daily limit: under load an order is refused only for
// the audit's sake (audit_unavailable, when the queue fills).
const char* const crash_scope_json = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR"],
  "counterparties": ["exchange_a"],
  "trading_hours": [{"days": ["Mon","Tue","Wed","Thu","Fri","Sat","Sun"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1"]
})";

void write_text_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
}

/// Registers the agent with a CA in DIR/ca (all keys in the software KMS DIR/keys) and leaves
/// what the child reads beside it: agent.pem, ca.pem, crl.pem. Returns the same credentials.
GuardCredentials write_crash_credentials(const std::string& dir, const Clock& clock) {
    std::shared_ptr<Kms> kms(SoftwareKms::open(dir + "/keys", crash_passphrase));
    LocalCaOptions ca_options;
    ca_options.state_dir = dir + "/ca";
    auto ca = LocalCa::init(kms, clock, ca_options);
    const Scope scope = parse_scope_json(crash_scope_json);
    ca->register_agent({crash_agent, "crash tests", "killed while trading", clock.now_ns(),
                        TestAuthority::officer});
    ca->record_approval(
        approve_scope(*kms, crash_agent, TestAuthority::officer, scope, clock.now_ns()), scope);
    const KeyHandle key =
        kms->create_key(std::string("agent:") + crash_agent, KeyAlgorithm::ed25519);
    AgentCertificate cert = ca->issue_for_agent(crash_agent, kms->public_key(key).spki_der);
    write_text_file(dir + "/agent.pem", cert.pem());
    write_text_file(dir + "/ca.pem", ca->trust_anchor().pem());
    write_text_file(dir + "/crl.pem", ca->current_crl().pem());
    return GuardCredentials{cert, ca->trust_anchor(), ca->current_crl(), kms, key};
}

/// One life of the child: what it reported allowed, in order, or why the run went wrong.
struct ChildLife {
    std::vector<std::string> ids;
    std::string problem;
    steady::duration startup{};  ///< from spawn to its "ready"
    bool ready = false;
};

/// Reads what is there (waiting at most `timeout_ms`, -1: until something comes); false at EOF.
bool read_some(int fd, std::string& into, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, timeout_ms);
    if (n < 0) return errno == EINTR;
    if (n == 0) return true;
    char buf[65536];
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0) return errno == EINTR || errno == EAGAIN;
    if (got == 0) return false;
    into.append(buf, static_cast<std::size_t>(got));
    return true;
}

/// Spawns the child with `args`, waits for its "ready", reads its ids for `window`, kills it
/// with SIGKILL, and keeps what it wrote before it died (all of it was returned by check()).
/// `in_startup`: the kill comes `window` after the spawn instead, ready or not (while the child
/// opens the log and recovers what the last one left in the journal).
ChildLife live_and_die(const std::vector<std::string>& args, std::chrono::milliseconds window,
                       bool in_startup = false) {
    ChildLife life;
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    std::vector<std::string> argv_text{KAKUNIN_CRASH_CHILD_PATH};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_text{std::string(SoftwareKms::passphrase_variable) + "=" +
                                      crash_passphrase};
    for (char** e = environ; *e != nullptr; ++e)
        if (std::string_view(*e).rfind(SoftwareKms::passphrase_variable, 0) != 0)
            env_text.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    pid_t pid = 0;
    const steady::time_point spawned = steady::now();
    const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
        ::close(fds[0]);
        life.problem = std::string("cannot start the child: ") + std::strerror(rc);
        return life;
    }
    std::string out;
    bool open = true;
    auto read_until = [&](steady::time_point until, bool until_ready) {
        for (steady::time_point now; open && (now = steady::now()) < until;) {
            if (until_ready && out.find('\n') != std::string::npos) return;
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count();
            open = read_some(fds[0], out, static_cast<int>(std::min<long long>(left, 100)) + 1);
        }
    };
    if (in_startup) {
        read_until(spawned + window, false);
    } else {
        read_until(spawned + std::chrono::seconds(60), true);
        if (out.rfind("ready\n", 0) == 0) {
            life.startup = steady::now() - spawned;
            read_until(steady::now() + window, false);
        }
    }
    ::kill(pid, SIGKILL);
    while (read_some(fds[0], out, -1)) {
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const bool ready = life.ready = out.rfind("ready\n", 0) == 0;
    if (!ready && !(in_startup && out.empty())) {
        life.problem = "the child did not get ready: '" + out + "' (its messages are on stderr)";
    } else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        life.problem = "the child ended before the kill, status " + std::to_string(status) +
                       " (its messages are on stderr)";
    } else if (!out.empty() && out.back() != '\n') {
        life.problem = "the child's last line is incomplete: '" + out.substr(out.rfind('\n')) + "'";
    }
    if (ready) {
        std::istringstream lines(out.substr(6));
        for (std::string id; std::getline(lines, id);) life.ids.push_back(id);
    }
    return life;
}

/// Where the child and the in-process restart write, and how the test reads it back.
struct CrashLog {
    std::vector<std::string> child_args;  ///< after DIR RUN signed|unsigned journal|no-journal
    std::function<std::shared_ptr<AuditSink>()> open_sink;
    std::string journal_path;  ///< empty: the sink's own
    std::string log_id;        ///< empty: the agent id
    /// Calls `fn` with each complete line of the log as it is now (a torn last line left out),
    /// from about byte `from` on (earlier lines may come too), and returns the log's size.
    std::function<std::uint64_t(std::uint64_t from,
                                const std::function<void(const std::string&)>& fn)>
        each_line;
    std::function<AuditVerifyResult(const AuditCertificates&, const AuditVerifyOptions&)> verify;
};

/// The client_order_id of an order.* record line, else empty.
std::string order_id_of(const std::string& line) {
    static const std::string key = "\"client_order_id\":\"";
    if (line.find("\"event\":\"order.") == std::string::npos) return {};
    const std::size_t at = line.find(key);
    if (at == std::string::npos) return {};
    const std::size_t from = at + key.size();
    return line.substr(from, line.find('"', from) - from);
}

/// The run number in an id "c<run>-<n>", or -1.
int run_of(const std::string& id) {
    if (id.size() < 3 || id[0] != 'c') return -1;
    return std::atoi(id.c_str() + 1);
}

/// Kills the child `runs` times at random moments while it trades on one log, restarts it each
/// time on the same log, then reopens the log in this process. Every id the child reported as
/// allowed must be in exactly one order record, the journal must have recovered something, and
/// the log must verify with the agent's certificate.
void kill_and_restart(const CrashLog& log, const GuardCredentials& creds, const std::string& dir,
                      bool signed_records, int runs) {
    // KAKUNIN_CRASH_NO_JOURNAL=1 runs the same test with the journal off, to see it fail.
    const char* no_journal_env = std::getenv("KAKUNIN_CRASH_NO_JOURNAL");
    const bool journal = !(no_journal_env && std::string(no_journal_env) == "1");
    const char* seed_env = std::getenv("KAKUNIN_CRASH_SEED");
    const std::uint32_t seed = seed_env
                                   ? static_cast<std::uint32_t>(std::strtoul(seed_env, nullptr, 10))
                                   : std::random_device{}();
    std::printf("kill -9 test (%s, journal %s): seed %u (KAKUNIN_CRASH_SEED to repeat)\n",
                signed_records ? "signed" : "unsigned", journal ? "on" : "off", seed);
    std::mt19937 random(seed);
    std::uniform_int_distribution<int> window_ms(30, 300);

    // The lives: `runs` killed under load, and after every fifth of them one killed while it
    // starts (opening the log, recovering the last one's entries), numbered from 101.
    struct Life {
        int run;
        bool in_startup;
    };
    std::vector<Life> lives;
    for (int run = 1; run <= runs; ++run) {
        lives.push_back({run, false});
        if (run % 5 == 0) lives.push_back({100 + run / 5, true});
    }

    std::unordered_map<std::string, int> reported;  // id -> the run that reported it
    std::uint64_t log_size = 0;
    std::map<int, std::size_t> missing_at_kill;  // run -> reported ids the log lacked at the kill
    long long startup_ms = 50;                   // the last startup under load
    for (const Life& l : lives) {
        std::vector<std::string> args{dir, std::to_string(l.run),
                                      signed_records ? "signed" : "unsigned",
                                      journal ? "journal" : "no-journal"};
        args.insert(args.end(), log.child_args.begin(), log.child_args.end());
        const std::chrono::milliseconds window(
            l.in_startup ? std::uniform_int_distribution<long long>(0, startup_ms)(random)
                         : window_ms(random));
        const ChildLife life = live_and_die(args, window, l.in_startup);
        INFO("run " << l.run << ": " << life.problem);
        REQUIRE(life.problem.empty());
        // What the log held when the child died: the rest only the journal has.
        std::size_t in_log = 0;
        const std::string prefix = "c" + std::to_string(l.run) + "-";
        std::unordered_map<std::string, bool> of_run;
        for (const auto& id : life.ids) of_run[id] = false;
        log_size = log.each_line(log_size, [&](const std::string& line) {
            const std::string id = order_id_of(line);
            if (id.rfind(prefix, 0) != 0) return;
            auto it = of_run.find(id);
            if (it != of_run.end() && !it->second) {
                it->second = true;
                ++in_log;
            }
        });
        missing_at_kill[l.run] = life.ids.size() - in_log;
        if (l.in_startup) {
            std::printf(
                "  run %3d: killed %3lld ms after the spawn (%s): %6zu allowed, %5zu not "
                "yet in the log\n",
                l.run, static_cast<long long>(window.count()),
                life.ready ? "after its start" : "while starting", life.ids.size(),
                life.ids.size() - in_log);
        } else {
            startup_ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(life.startup).count();
            std::printf(
                "  run %3d: started in %4lld ms, killed after %3lld ms: %6zu allowed, "
                "%5zu not yet in the log\n",
                l.run, startup_ms, static_cast<long long>(window.count()), life.ids.size(),
                life.ids.size() - in_log);
        }
        for (const auto& id : life.ids) {
            INFO("id " << id);
            REQUIRE(reported.emplace(id, l.run).second);  // the child never reports an id twice
        }
    }

    // The restart that recovers the last kill's entries, in this process.
    std::uint64_t recovered_at_reopen = 0;
    {
        SystemClock clock;
        GuardOptions options;
        options.observe = false;
        options.audit = AuditTrailOptions{log.open_sink()};
        options.audit->record_signatures = signed_records;
        options.audit->journal = journal;
        options.audit->journal_path = log.journal_path;
        options.audit->log_id = log.log_id;
        if (!signed_records)
            options.audit->accept_unverified_log =
                AuditTrailOptions::Acceptance{"T. Operator", "crash test: unsigned log restarted"};
        Guard guard(creds, clock, options);
        REQUIRE(guard.audit() != nullptr);
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(30)));
        recovered_at_reopen = guard.audit()->counters().recovered;
    }

    std::unordered_map<std::string, int> in_orders;  // id -> order.* records naming it
    // run -> the counts of the log.recovered records that follow its entries (recovered after
    // its kill: entries are recovered in order, then the record)
    std::map<int, std::uint64_t> recovered_after;
    std::size_t recovered_records = 0, lines_read = 0, accepted_records = 0;
    int last_run = 0;
    log.each_line(0, [&](const std::string& line) {
        ++lines_read;
        const std::string id = order_id_of(line);
        if (!id.empty()) {
            ++in_orders[id];
            last_run = run_of(id);
        } else if (line.find("\"event\":\"log.recovered\"") != std::string::npos) {
            const json j = json::parse(line);
            ++recovered_records;
            recovered_after[last_run] += j.at("payload").at("count").get<std::uint64_t>();
        } else if (line.find("\"event\":\"log.accepted\"") != std::string::npos) {
            ++accepted_records;
        }
    });
    std::printf(
        "  %zu lines, %zu allowed ids reported, %zu log.recovered records, the last "
        "reopen recovered %llu entries\n",
        lines_read, reported.size(), recovered_records,
        static_cast<unsigned long long>(recovered_at_reopen));
    for (const Life& l : lives)
        std::printf(
            "  kill of run %3d: %5zu reported ids not yet in the log, %5llu entries "
            "recovered after it\n",
            l.run, missing_at_kill[l.run], static_cast<unsigned long long>(recovered_after[l.run]));

    std::vector<std::string> lost, repeated;
    for (const auto& [id, run] : reported) {
        const auto it = in_orders.find(id);
        if (it == in_orders.end()) lost.push_back(id);
    }
    for (const auto& [id, count] : in_orders)
        if (count != 1) repeated.push_back(id + " x" + std::to_string(count));
    auto first = [](const std::vector<std::string>& v) {
        std::string s;
        for (std::size_t i = 0; i < v.size() && i < 10; ++i) s += " " + v[i];
        return s;
    };
    INFO(lost.size() << " reported ids not in the log, e.g." << first(lost));
    INFO(repeated.size() << " ids in more than one order record, e.g." << first(repeated));
    REQUIRE(!reported.empty());
    CHECK(lost.empty());
    CHECK(repeated.empty());
    CHECK(recovered_records >= 1);  // the journal did something
    // A signed log's uncovered tail verifies by its signatures; an unsigned one's does not, so
    // each restart after a kill that left one needed the operator's acceptance, recorded.
    if (signed_records)
        CHECK(accepted_records == 0);
    else
        CHECK(accepted_records >= 1);

    AuditCertificates certs;
    certs.add_der(creds.certificate.der());
    AuditVerifyOptions vo;
    vo.require_record_signatures = signed_records;
    const AuditVerifyResult r = log.verify(certs, vo);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records + r.checkpoints == lines_read);
    if (signed_records) CHECK(r.signed_records == r.records);
}

/// The file log at PATH, read back as it lies on disk.
CrashLog file_crash_log(const std::string& path) {
    CrashLog log;
    log.child_args = {"file", path};
    log.open_sink = [path] { return std::make_shared<FileAuditSink>(path); };
    log.each_line = [path](std::uint64_t from,
                           const std::function<void(const std::string&)>& fn) -> std::uint64_t {
        // A restart may have cut a torn last line before `from`: start a little earlier, at
        // the next whole line.
        constexpr std::uint64_t slack = 64 * 1024;
        std::ifstream in(path, std::ios::binary);
        std::string line;
        if (from > slack) {
            in.seekg(static_cast<std::streamoff>(from - slack));
            std::getline(in, line);
        }
        while (std::getline(in, line))
            if (!in.eof()) fn(line);  // a last line without its newline is torn
        in.clear();
        in.seekg(0, std::ios::end);
        return static_cast<std::uint64_t>(in.tellg());
    };
    log.verify = [path](const AuditCertificates& certs, const AuditVerifyOptions& vo) {
        return verify_audit_log_file(path, certs, vo);
    };
    return log;
}

void file_kill_test(bool signed_records) {
    test::TempDir dir("kakunin-crash");
    SystemClock clock;
    const GuardCredentials creds = write_crash_credentials(dir.path().string(), clock);
    kill_and_restart(file_crash_log(dir / "agent.jsonl"), creds, dir.path().string(),
                     signed_records, crash_runs);
}

}  // namespace

TEST_CASE(
    "kill -9 of a trading process 20 times on one file log loses no allowed decision (signed "
    "records)",
    "[crash]") {
    file_kill_test(true);
}

TEST_CASE(
    "kill -9 of a trading process 20 times on one file log loses no allowed decision (unsigned "
    "records)",
    "[crash]") {
    file_kill_test(false);
}

TEST_CASE(
    "kill -9 of a trading process 5 times on one PostgreSQL log with a journal file loses no "
    "allowed decision",
    "[crash][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::TempDir dir("kakunin-crash-pg");
    SystemClock clock;
    const GuardCredentials creds = write_crash_credentials(dir.path().string(), clock);
    const std::string conninfo = db.app(), log_id = crash_agent;
    CrashLog log;
    log.journal_path = dir / "pg.journal";  // a PostgreSQL sink names none
    log.log_id = log_id;
    log.child_args = {"postgres", conninfo, log_id, log.journal_path};
    log.open_sink = [conninfo, log_id] {
        PostgresAuditSinkOptions options;
        options.log_id = log_id;
        return std::make_shared<PostgresAuditSink>(conninfo, options);
    };
    auto read_back = [conninfo, log_id] {
        PostgresAuditSinkOptions options;
        options.log_id = log_id;
        PostgresAuditSink sink(conninfo, options);
        std::vector<std::string> lines;
        sink.for_each_line([&](std::string_view l) { lines.emplace_back(l); });
        return lines;
    };
    log.each_line = [read_back](std::uint64_t, const std::function<void(const std::string&)>& fn) {
        for (const auto& line : read_back()) fn(line);
        return std::uint64_t{0};
    };
    log.verify = [read_back](const AuditCertificates& certs, const AuditVerifyOptions& vo) {
        return verify_audit_lines(read_back(), certs, vo);
    };
    kill_and_restart(log, creds, dir.path().string(), true, 5);
}
