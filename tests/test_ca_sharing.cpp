// One state directory shared by an in-process LocalCa (a trading process keeps it open for
// automatic revocation) and the command line (the real `kakunin` program, KAKUNIN_CLI_PATH, run
// as separate processes): both take turns under the CA log's lock, each continuing from what the
// other recorded; a lock held too long is refused naming its holder.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <botan/x509_crl.h>
#include <nlohmann/json.hpp>

#include "audit_test_support.hpp"
#include "cli_test_support.hpp"
#include "crypto/encoding.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/audit_writer.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/error.hpp"
#include "kakunin/software_kms.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

extern char** environ;

using json = nlohmann::json;
using namespace kakunin;
namespace fs = std::filesystem;

namespace {

constexpr const char* k_passphrase = "correct horse battery staple";

using test::require_ok;
using test::Run;
using test::slurp;

/// The real `kakunin` program with `args`, in `dir`, as a process of its own (posix_spawn, so
/// several threads may run it at once), stdout and stderr captured apart.
Run cli(const std::vector<std::string>& args, const test::TempDir& dir) {
    static std::atomic<unsigned> counter{0};
    const std::string tag = std::to_string(counter++);
    const std::string out = dir / (".out-" + tag), err = dir / (".err-" + tag);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<std::string> argv_text{KAKUNIN_CLI_PATH};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The CLI runs in `dir`: relative paths in `args` are the test's.
    const std::string cd = dir.path().string();
    std::vector<std::string> env_text{std::string("KAKUNIN_KMS_PASSPHRASE=") + k_passphrase,
                                      "PATH=/usr/bin:/bin"};
    std::vector<char*> envp;
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    // posix_spawn has no chdir before glibc 2.29's _np extension: go through /bin/sh's cd.
    std::string line = "cd '" + cd + "' && exec";
    for (auto& a : argv_text) line += " '" + a + "'";
    std::vector<std::string> sh_text{"/bin/sh", "-c", line};
    std::vector<char*> sh;
    for (auto& a : sh_text) sh.push_back(a.data());
    sh.push_back(nullptr);
    pid_t pid = -1;
    Run r;
    if (::posix_spawn(&pid, "/bin/sh", &actions, nullptr, sh.data(), envp.data()) == 0) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

/// ca init, agent register, scope approve for agent-7 in dir/state.
void set_up(const test::TempDir& dir) {
    std::ofstream(dir / "scope.json") << test::seed_scope_json;
    require_ok(cli({"ca", "init", "--dir", "state"}, dir), "ca init");
    require_ok(cli({"agent", "register", "--dir", "state", "--agent", "agent-7", "--owner",
                    "Desk 3", "--purpose", "BTC market making", "--by", "Jane Roe"},
                   dir),
               "agent register");
    require_ok(cli({"scope", "approve", "--dir", "state", "--agent", "agent-7", "--scope",
                    "scope.json", "--approver", "Jane Doe"},
                   dir),
               "scope approve");
}

std::string cli_issue(const test::TempDir& dir, const std::string& out,
                      const std::string& agent = "agent-7") {
    const Run r =
        cli({"cert", "issue", "--dir", "state", "--agent", agent, "--out", out, "--json"}, dir);
    require_ok(r, "cert issue");
    return json::parse(r.out).at("serial").get<std::string>();
}

std::unique_ptr<LocalCa> open_in_process(const test::TempDir& dir, std::shared_ptr<Kms>& kms,
                                         const Clock& clock) {
    kms = SoftwareKms::open(dir / "state/keys", k_passphrase);
    LocalCaOptions o;
    o.state_dir = dir / "state";
    return LocalCa::open(kms, clock, o);
}

void require_log_verifies(const test::TempDir& dir) {
    const Run v =
        cli({"audit", "verify", "--log", "state/audit/ca.jsonl", "--ca", "state/ca.pem"}, dir);
    require_ok(v, "audit verify");
    CHECK_THAT(v.out, Catch::Contains(": ok:"));
}

std::vector<json> records(const test::TempDir& dir, const std::string& event) {
    std::vector<json> out;
    std::ifstream in(dir / "state/audit/ca.jsonl");
    for (std::string line; std::getline(in, line);) {
        json j = json::parse(line);
        if (j.at("kind") == "record" && j.at("event") == event) out.push_back(std::move(j));
    }
    return out;
}

std::uint32_t crl_number_of(const json& crl_record) {
    const auto der =
        crypto::base64_decode(crl_record.at("payload").at("crl").get<std::string>(), "crl");
    return Botan::X509_CRL(der).crl_number();
}

/// A child process that holds the CA log's lock until killed: through a FileAuditSink (which
/// describes itself in PATH.holder), or, with `describe` false, through a bare flock.
struct LockHolder {
    pid_t pid = -1;
    LockHolder(const std::string& log, bool describe) {
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(ready[0]);
            try {
                std::unique_ptr<FileAuditSink> sink;
                if (describe) {
                    sink = std::make_unique<FileAuditSink>(log);
                } else {
                    const int fd = ::open(log.c_str(), O_RDWR);
                    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) ::_exit(2);
                }
                (void)!::write(ready[1], "x", 1);
                for (;;) ::pause();
            } catch (...) {
                ::_exit(3);
            }
        }
        ::close(ready[1]);
        char c = 0;
        const ssize_t n = ::read(ready[0], &c, 1);
        ::close(ready[0]);
        REQUIRE(n == 1);
    }
    void kill() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        pid = -1;
    }
    ~LockHolder() { kill(); }
};

}  // namespace

TEST_CASE(
    "ca-sharing: the command line runs on a state directory an in-process LocalCa keeps "
    "open",
    "[ca_sharing][cli]") {
    test::TempDir dir("kakunin-ca-sharing");
    set_up(dir);
    SystemClock clock;
    std::shared_ptr<Kms> kms;
    // Held for the whole test, as a trading process holds it for automatic revocation.
    auto ca = open_in_process(dir, kms, clock);

    require_ok(cli({"crl", "--dir", "state", "--out", "crl-1.pem"}, dir), "crl");
    const std::string serial = cli_issue(dir, "agent.pem");
    {
        // The agent's log shows the incident open (the CLI checks a step against it).
        FileAuditSink sink(dir / "state/audit/agent-7.jsonl");
        AuditLogWriter w(
            sink, clock,
            AuditSigner{*kms, kms->find_or_create_key("test:agent-log", KeyAlgorithm::ed25519),
                        "sha256:" + std::string(64, '0')},
            AuditWriterOptions{"agent-7"});
        w.append(audit_event::incident_opened,
                 R"({"agent":"agent-7","incident":"inc-1","window_ms":300000})");
        w.close();
    }
    require_ok(cli({"incident", "ack", "--dir", "state", "--agent", "agent-7", "--incident",
                    "inc-1", "--by", "M. Rossi", "--note", "looking"},
                   dir),
               "incident ack");

    // The in-process CA knows the certificate the command line issued, and revokes it.
    REQUIRE(ca->find_certificate(serial));
    ca->revoke(serial, "keyCompromise: anomaly score 0.91");
    CHECK(ca->is_revoked(serial));

    // The command line's next CRL lists it, and so does what it verifies against.
    require_ok(cli({"crl", "--dir", "state", "--out", "crl-2.pem"}, dir), "crl after revoke");
    CHECK(CertificateRevocationList::load_file(dir / "crl-2.pem").lists(serial));
    CHECK_FALSE(CertificateRevocationList::load_file(dir / "crl-1.pem").lists(serial));
    const Run verified = cli({"cert", "verify", "--dir", "state", "--json", "agent.pem"}, dir);
    CHECK(json::parse(verified.out).at("status") == "revoked");

    // And the command line sees what the in-process CA did: revoking again is a no-op.
    const Run again = cli({"cert", "revoke", "--dir", "state", "--serial", serial, "--reason",
                           "keyCompromise: again"},
                          dir);
    require_ok(again, "cert revoke of a revoked serial");
    CHECK_THAT(again.out, Catch::Contains("was already revoked"));

    // A CRL the in-process CA issues after more command-line work continues its numbering
    // (agent-7's key is compromised: a second agent).
    require_ok(cli({"agent", "register", "--dir", "state", "--agent", "agent-8", "--owner",
                    "Desk 4", "--purpose", "ETH arbitrage", "--by", "Jane Roe"},
                   dir),
               "agent register");
    require_ok(cli({"scope", "approve", "--dir", "state", "--agent", "agent-8", "--scope",
                    "scope.json", "--approver", "Jane Doe"},
                   dir),
               "scope approve");
    const std::string second = cli_issue(dir, "agent-8.pem", "agent-8");
    CHECK(ca->registration("agent-8"));
    CHECK(ca->approved_scope("agent-8"));
    require_ok(
        cli({"cert", "revoke", "--dir", "state", "--serial", second, "--reason", "superseded"},
            dir),
        "cert revoke");
    const CertificateRevocationList mine = ca->issue_crl();
    CHECK(mine.lists(serial));
    CHECK(mine.lists(second));
    CHECK(ca->revocations().size() == 2);
    CHECK(ca->record_event("review.signed", R"({"agent":"agent-7","incident":"inc-1"})") > 0);

    require_log_verifies(dir);
    const auto crls = records(dir, "crl.issued");
    REQUIRE(crls.size() >= 4);
    for (std::size_t i = 1; i < crls.size(); ++i)
        CHECK(crl_number_of(crls[i]) == crl_number_of(crls[i - 1]) + 1);
    CHECK(records(dir, "incident.acknowledged").size() == 1);
}

TEST_CASE("ca-sharing: an in-process CA and concurrent command lines interleave into one log",
          "[ca_sharing][cli]") {
    test::TempDir dir("kakunin-ca-sharing");
    set_up(dir);
    (void)cli_issue(dir, "first.pem");  // makes the agent's key in the KMS
    SystemClock clock;
    std::shared_ptr<Kms> kms;
    auto ca = open_in_process(dir, kms, clock);
    const auto key = kms->public_key(kms->find_key("agent:agent-7")).spki_der;

    constexpr int k_in_process = 8, k_cli_threads = 2, k_cli_rounds = 3;
    std::vector<std::string> in_process_serials;
    std::string in_process_error;
    std::thread trading([&] {
        try {
            for (int i = 0; i < k_in_process; ++i) {
                const AgentCertificate c = ca->issue_for_agent("agent-7", key);
                in_process_serials.push_back(c.serial());
                ca->revoke(c.serial(), "superseded");
            }
        } catch (const std::exception& e) {
            in_process_error = e.what();
        }
    });
    std::vector<std::vector<Run>> runs(k_cli_threads);
    std::vector<std::thread> operators;
    for (int t = 0; t < k_cli_threads; ++t)
        operators.emplace_back([&, t] {
            for (int j = 0; j < k_cli_rounds; ++j) {
                const std::string cert = "cli-" + std::to_string(t) + "-" + std::to_string(j);
                runs[t].push_back(cli({"cert", "issue", "--dir", "state", "--agent", "agent-7",
                                       "--out", cert + ".pem", "--json"},
                                      dir));
                if (runs[t].back().code == 0) {
                    const std::string serial =
                        json::parse(runs[t].back().out).at("serial").get<std::string>();
                    runs[t].push_back(cli({"cert", "revoke", "--dir", "state", "--serial", serial,
                                           "--reason", "cessationOfOperation"},
                                          dir));
                }
                runs[t].push_back(cli({"crl", "--dir", "state", "--out", cert + "-crl.pem"}, dir));
            }
        });
    trading.join();
    for (auto& t : operators) t.join();
    CHECK(in_process_error.empty());
    for (const auto& per_thread : runs)
        for (const Run& r : per_thread) require_ok(r, "a command line run meanwhile");
    CHECK(in_process_serials.size() == k_in_process);

    require_ok(cli({"crl", "--dir", "state", "--out", "last.pem"}, dir), "last crl");
    require_log_verifies(dir);

    // No serial issued twice, no CRL number used twice (each CRL one more than the one before).
    const auto issued = records(dir, "certificate.issued");
    std::set<std::string> serials;
    for (const auto& r : issued) serials.insert(r.at("payload").at("serial").get<std::string>());
    CHECK(issued.size() == 1 + k_in_process + k_cli_threads * k_cli_rounds);
    CHECK(serials.size() == issued.size());
    const auto crls = records(dir, "crl.issued");
    for (std::size_t i = 1; i < crls.size(); ++i)
        CHECK(crl_number_of(crls[i]) == crl_number_of(crls[i - 1]) + 1);

    // Every revocation, whoever made it, is in the last CRL; both sides agree on the list.
    const auto revoked = records(dir, "certificate.revoked");
    CHECK(revoked.size() == k_in_process + k_cli_threads * k_cli_rounds);
    const auto last = CertificateRevocationList::load_file(dir / "last.pem");
    for (const auto& r : revoked) {
        const std::string s = r.at("payload").at("serial").get<std::string>();
        INFO(s);
        CHECK(last.lists(s));
    }
    CHECK(ca->revocations().size() == revoked.size());
    CHECK(ca->current_crl().der() == last.der());
}

TEST_CASE(
    "ca-sharing: a lock held too long is refused naming its holder, and a dead holder "
    "blocks nobody",
    "[ca_sharing][cli]") {
    test::TempDir dir("kakunin-ca-sharing");
    set_up(dir);
    const std::string log = dir / "state/audit/ca.jsonl";
    {
        LockHolder holder(log, true);
        const std::string pid = "pid " + std::to_string(holder.pid);

        // The command line waits a bounded time, then names the holder.
        const auto start = std::chrono::steady_clock::now();
        const Run r = cli({"crl", "--dir", "state", "--out", "crl.pem"}, dir);
        const auto waited = std::chrono::steady_clock::now() - start;
        INFO("stderr: " << r.err);
        CHECK(r.code != 0);
        CHECK_THAT(r.err, Catch::Contains(pid) && Catch::Contains("test_ca_sharing") &&
                              Catch::Contains("holds it since"));
        CHECK(waited >= std::chrono::milliseconds(4500));
        CHECK(waited < std::chrono::seconds(30));
        CHECK_FALSE(fs::exists(dir / "crl.pem"));

        // So does an in-process LocalCa, with a shorter wait of its own.
        SystemClock clock;
        auto kms = std::shared_ptr<Kms>(SoftwareKms::open(dir / "state/keys", k_passphrase));
        LocalCaOptions o;
        o.state_dir = dir / "state";
        o.lock_wait = std::chrono::milliseconds(200);
        try {
            LocalCa::open(kms, clock, o);
            FAIL("opened a state directory whose lock another process holds");
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::io);
            CHECK_THAT(e.what(),
                       Catch::Contains(pid) && Catch::Contains("locked by another writer"));
        }
        // And a second writer of the same log (a second Guard), at once.
        try {
            FileAuditSink second(log);
            FAIL("a second writer opened a locked log");
        } catch (const Error& e) {
            CHECK_THAT(e.what(), Catch::Contains("already open for writing elsewhere") &&
                                     Catch::Contains(pid));
        }

        // Killed: the kernel releases its lock; the description it left blocks nobody.
        const pid_t killed = holder.pid;
        holder.kill();
        REQUIRE(fs::exists(log + ".holder"));
        CHECK_THAT(slurp(log + ".holder"),
                   Catch::Contains("\"pid\":" + std::to_string(killed) + ","));
        require_ok(cli({"crl", "--dir", "state", "--out", "crl.pem"}, dir), "crl after the kill");
        CHECK_FALSE(fs::exists(log + ".holder"));  // the command removed its own when it ended
    }
    {
        // A holder that does not describe itself, with a stale description of a dead process
        // beside the lock: the message says the description is stale.
        pid_t dead = ::fork();
        if (dead == 0) ::_exit(0);
        REQUIRE(dead > 0);
        ::waitpid(dead, nullptr, 0);
        std::ofstream(log + ".holder")
            << R"({"pid":)" << dead << R"(,"program":"kakunin","since_ns":1700000000000000000})"
            << "\n";
        LockHolder bare(log, false);
        const Run r = cli({"crl", "--dir", "state", "--out", "crl-2.pem"}, dir);
        INFO("stderr: " << r.err);
        CHECK(r.code != 0);
        CHECK_THAT(r.err,
                   Catch::Contains("pid " + std::to_string(dead)) &&
                       Catch::Contains("no process " + std::to_string(dead) + " is running") &&
                       Catch::Contains("stale"));
        bare.kill();
        require_ok(cli({"crl", "--dir", "state", "--out", "crl-2.pem"}, dir), "crl after the kill");
    }
    require_log_verifies(dir);
}

TEST_CASE("ca-sharing: two LocalCa objects on one state directory take turns",
          "[ca_sharing][local_ca]") {
    test::TempDir dir("kakunin-ca-sharing");
    set_up(dir);
    (void)cli_issue(dir, "first.pem");
    SystemClock clock;
    std::shared_ptr<Kms> kms_a, kms_b;
    auto a = open_in_process(dir, kms_a, clock);
    auto b = open_in_process(dir, kms_b, clock);
    const auto key = kms_a->public_key(kms_a->find_key("agent:agent-7")).spki_der;
    const AgentCertificate by_a = a->issue_for_agent("agent-7", key);
    b->revoke(by_a.serial(), "superseded");  // b continues from what a recorded
    CHECK(a->is_revoked(by_a.serial()));
    const auto crl_a = a->issue_crl();
    const auto crl_b = b->current_crl();
    CHECK(crl_a.lists(by_a.serial()));
    CHECK(crl_b.der() == crl_a.der());
    b->register_agent({"agent-8", "Desk 4", "ETH arbitrage", clock.now_ns(), "Jane Roe"});
    CHECK(a->registration("agent-8"));
    CHECK_THROWS_AS(
        a->register_agent({"agent-8", "Desk 4", "ETH arbitrage", clock.now_ns(), "Jane Roe"}),
        Error);
    require_log_verifies(dir);
}

TEST_CASE("ca-sharing: LocalCa::hold keeps other processes out across several calls",
          "[ca_sharing][cli]") {
    test::TempDir dir("kakunin-ca-sharing");
    set_up(dir);
    SystemClock clock;
    std::shared_ptr<Kms> kms;
    auto ca = open_in_process(dir, kms, clock);
    {
        const LocalCa::Hold held = ca->hold();
        CHECK(ca->registration("agent-7"));  // calls of the holding thread run inside it
        const CertificateRevocationList crl = ca->issue_crl();
        const Run r = cli({"crl", "--dir", "state", "--out", "crl.pem"}, dir);
        INFO("stderr: " << r.err);
        CHECK(r.code != 0);
        CHECK_THAT(r.err, Catch::Contains("locked by another writer") &&
                              Catch::Contains("pid " + std::to_string(::getpid()) + " (") &&
                              Catch::Contains("holds it since"));
        CHECK(crl.this_update() > 0);
    }
    require_ok(cli({"crl", "--dir", "state", "--out", "crl.pem"}, dir), "crl after the hold");
    CHECK(CertificateRevocationList::load_file(dir / "crl.pem").der() == ca->current_crl().der());
}

TEST_CASE(
    "ca-sharing: file log writers taking turns continue from each other and repair what a "
    "crashed one left",
    "[ca_sharing][audit]") {
    test::TempDir dir("kakunin-ca-sharing");
    test::AuditTestKms kms;
    const auto id = test::make_identity(kms, "agent:agent-7");
    ManualClock clock(test::monday(9));
    const std::string path = dir / "agent-7.jsonl";
    FileAuditSinkOptions so;
    so.lock = FileAuditSinkOptions::Lock::per_hold;
    so.lock_wait = std::chrono::milliseconds(200);
    FileAuditSink sink_a(path, so), sink_b(path, so);
    AuditWriterOptions wo;
    wo.log_id = "agent-7";
    wo.checkpoint_every = 0;
    const std::string payload = R"({"decision":"allow","order":{"instrument":"BTC_EUR"}})";
    std::unique_ptr<AuditLogWriter> a, b;
    {
        const auto held = sink_a.hold();
        a = std::make_unique<AuditLogWriter>(sink_a, clock, id.signer(kms), wo, id.signer(kms));
        a->append(audit_event::order_allowed, payload);
        a->checkpoint();
    }
    {
        const auto held = sink_b.hold();
        b = std::make_unique<AuditLogWriter>(sink_b, clock, id.signer(kms), wo, id.signer(kms));
        CHECK(b->size() == 1);
        CHECK(b->append(audit_event::order_allowed, payload) == 1);
        b->checkpoint();
    }
    // Writing takes a hold.
    CHECK_THROWS_WITH(sink_a.append(std::string_view(R"({"x":1})")),
                      Catch::Contains("without holding its lock"));
    {
        const auto held = sink_a.hold();
        CHECK(a->catch_up() == 2);  // b's record and checkpoint
        CHECK(a->root() == b->root());
        CHECK(a->append(audit_event::order_allowed, payload) == 2);
        a->checkpoint();
        // Held: the other sink waits, then names this process.
        CHECK_THROWS_WITH(sink_b.hold(),
                          Catch::Contains("pid " + std::to_string(::getpid())) &&
                              Catch::Contains("locked by another writer for more than 0.2 s"));
    }
    // A holder that crashed mid-write leaves a torn last line: the next hold cuts it, and its
    // writer records the cut.
    std::ofstream(path, std::ios::app) << R"({"agent":"agent-7","cert_fp":"sha)";
    {
        const auto held = sink_b.hold();
        CHECK(sink_b.recovery().tail_cut);
        CHECK(b->catch_up() == 2);
        CHECK(b->size() == 4);  // a's record and the log.truncated_tail
        b->checkpoint();
    }
    AuditCertificates certs;
    certs.add_der(id.cert_der, "agent-7");
    const AuditVerifyResult v = verify_audit_log_file(path, certs);
    INFO(v.message);
    CHECK(v.ok);
    CHECK(v.records == 4);
    {
        const auto held = sink_a.hold();
        CHECK(a->catch_up() == 2);  // b's log.truncated_tail and checkpoint
        CHECK(a->root() == b->root());
    }
    // A log cut back while nobody held it is refused, not continued.
    fs::resize_file(path, fs::file_size(path) / 2);
    try {
        (void)sink_a.hold();
        FAIL("a hold continued a log that shrank");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_state);
        CHECK_THAT(e.what(), Catch::Contains("fewer than"));
    }
}
