// Crash safety: a process writing its audit log is killed with SIGKILL mid-stream. The log must
// still verify after reopening, seq must continue, and no record the writer had reported durable
// may be missing.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "kakunin/audit_verify.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"

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
