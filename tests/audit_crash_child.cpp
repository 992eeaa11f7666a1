// audit_crash_child — the process tests/test_audit_crash.cpp kills with SIGKILL while it trades.
// It opens a Guard on credentials the test made in DIR (agent.pem, ca.pem, crl.pem and the
// agent's key in the software KMS DIR/keys, passphrase in KAKUNIN_KMS_PASSPHRASE) with an audit
// trail on the given log, prints "ready", then checks orders "c<RUN>-<n>" as fast as it can and
// writes each allowed order's id and a newline to stdout with write(2) once check() has
// returned: whatever the test reads was really returned as allowed before the kill.
//
//   audit_crash_child DIR RUN signed|unsigned journal|no-journal file LOG
//   audit_crash_child DIR RUN signed|unsigned journal|no-journal postgres CONNINFO LOG_ID JOURNAL
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "kakunin/guard.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/software_kms.hpp"

using namespace kakunin;

namespace {

/// The agent the test registers in DIR (tests/test_audit_crash.cpp).
constexpr const char* agent_id = "crash-agent";

int usage() {
    std::fprintf(stderr,
                 "usage: audit_crash_child DIR RUN signed|unsigned journal|no-journal "
                 "(file LOG | postgres CONNINFO LOG_ID JOURNAL)\n");
    return 64;
}

/// All of `size` bytes to stdout; false if the pipe is gone.
bool write_all(const char* data, std::size_t size) {
    while (size != 0) {
        const ssize_t n = ::write(STDOUT_FILENO, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 7) return usage();
    const std::string dir = argv[1], run = argv[2], signing = argv[3], journal = argv[4],
                      backend = argv[5];
    if ((signing != "signed" && signing != "unsigned") ||
        (journal != "journal" && journal != "no-journal") ||
        !((backend == "file" && argc == 7) || (backend == "postgres" && argc == 9)))
        return usage();
    try {
        SystemClock clock;
        std::shared_ptr<Kms> kms(SoftwareKms::open(dir + "/keys"));
        GuardCredentials credentials{AgentCertificate::load_file(dir + "/agent.pem"),
                                     TrustAnchor::load_file(dir + "/ca.pem"),
                                     CertificateRevocationList::load_file(dir + "/crl.pem"), kms,
                                     kms->find_key(std::string("agent:") + agent_id)};
        std::shared_ptr<AuditSink> sink;
        std::string journal_path;
        if (backend == "file") {
            sink = std::make_shared<FileAuditSink>(argv[6]);
        } else {
            PostgresAuditSinkOptions pg;
            pg.log_id = argv[7];
            sink = std::make_shared<PostgresAuditSink>(argv[6], pg);
            journal_path = argv[8];
        }
        GuardOptions options;
        options.observe = false;
        options.audit = AuditTrailOptions{sink};
        options.audit->record_signatures = signing == "signed";
        // An unsigned log cut off by a kill has records no checkpoint covers: the operator of
        // this test accepts that on every restart (recorded as log.accepted).
        if (signing != "signed")
            options.audit->accept_unverified_log =
                AuditTrailOptions::Acceptance{"T. Operator", "crash test: unsigned log restarted"};
        options.audit->journal = journal == "journal";
        options.audit->journal_path = journal_path;
        if (backend == "postgres") options.audit->log_id = argv[7];
        Guard guard(credentials, clock, options);
        if (!write_all("ready\n", 6)) return 3;

        Order order;
        order.instrument = "BTC_EUR";
        order.counterparty = "exchange_a";
        order.side = Side::buy;
        order.quantity = Decimal{1, 3};
        order.price = Decimal{4000000, 2};
        order.reference_price = order.price;
        order.region = "eu-west-1";
        char id[64];
        for (unsigned long n = 1;; ++n) {
            const int length = std::snprintf(id, sizeof id, "c%s-%lu\n", run.c_str(), n);
            if (length <= 1 || static_cast<std::size_t>(length) >= sizeof id) return 4;
            order.client_order_id = std::string_view(id, static_cast<std::size_t>(length - 1));
            if (guard.check(order).allowed() && !write_all(id, static_cast<std::size_t>(length)))
                return 3;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "audit_crash_child: %s\n", e.what());
        return 2;
    }
}
