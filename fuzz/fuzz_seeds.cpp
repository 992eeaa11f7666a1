// fuzz_seeds DIR: writes a starting corpus for each fuzz target (valid inputs the fuzzers then
// mutate) into DIR/<target>/.
#include <sys/stat.h>
#include <fstream>
#include <iostream>
#include <optional>

#include "kakunin/audit.hpp"
#include "kakunin/scope_extension.hpp"
#include "kakunin/testing.hpp"

namespace {
const char* const seed_scope = R"({"version":1,
  "max_transaction":{"currency":"EUR","amount":"500000.00"},
  "instruments":["BTC_EUR","ETH_EUR","SOL_EUR"],"counterparties":["exchange_a","exchange_b"],
  "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri"],"from":"07:00","to":"20:00"}],
  "regions":["eu-west-1","eu-central-1"],
  "limits":{"max_order_quantity":{"BTC_EUR":"10","ETH_EUR":"150"},"price_collar_bps":500,
            "max_orders_per_second":50,"max_daily_notional":{"currency":"EUR","amount":"5000000.00"}}})";

void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}
std::string text(const std::vector<std::uint8_t>& v) { return std::string(v.begin(), v.end()); }
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: fuzz_seeds DIR\n";
        return 2;
    }
    const std::string dir = argv[1];
    for (const char* sub : {"", "/fuzz_scope_json", "/fuzz_scope_extension", "/fuzz_certificate",
                            "/fuzz_audit_line", "/fuzz_crl"})
        ::mkdir((dir + sub).c_str(), 0755);
    const kakunin::Scope scope = kakunin::parse_scope_json(seed_scope);
    write(dir + "/fuzz_scope_json/seed.json", seed_scope);
    write(dir + "/fuzz_scope_json/canonical.json", kakunin::to_json(scope));
    write(dir + "/fuzz_scope_extension/seed.der", text(kakunin::encode_scope_extension(scope)));
    kakunin::Scope small = scope;
    small.limits = kakunin::PreTradeLimits{};
    write(dir + "/fuzz_scope_extension/small.der", text(kakunin::encode_scope_extension(small)));
    kakunin::TestAuthority authority;
    const auto cert = authority.credentials_for(scope).certificate;
    write(dir + "/fuzz_certificate/agent.der", text(cert.der()));
    write(dir + "/fuzz_certificate/agent.pem", cert.pem());

    // Audit lines: signed and unsigned records, a checkpoint, and a CA log record.
    const kakunin::GuardCredentials agent = authority.credentials_for(scope);
    const kakunin::AuditSigner signer{*agent.kms, agent.key, agent.certificate.fingerprint()};
    const std::string id = agent.certificate.agent_id();
    for (bool signed_records : {true, false}) {
        kakunin::MemoryAuditSink sink;
        std::optional<kakunin::AuditSigner> record_signer;
        if (signed_records) record_signer = signer;
        kakunin::AuditLogWriter log(sink, authority.clock(), signer,
                                    kakunin::AuditWriterOptions{id, id, "", 0}, record_signer);
        log.append("order.allowed",
                   R"({"decision":"allow","order":{"instrument":"BTC_EUR","price":"42000.00",)"
                   R"("quantity":"0.25","side":"BUY"},"reasons":[],"score_ppm":120345})");
        log.append("guard.halted", R"({"by":"M. Rossi","reason":"desk kill switch \u00e9\n"})");
        log.close();
        const auto lines = sink.lines();
        const std::string tag = signed_records ? "signed" : "unsigned";
        for (std::size_t i = 0; i < lines.size(); ++i)
            write(dir + "/fuzz_audit_line/" + tag + "-" + std::to_string(i) + ".jsonl", lines[i]);
    }
    const auto ca_lines = authority.ca().audit_log_lines();
    for (std::size_t i = 0; i < ca_lines.size() && i < 4; ++i)
        write(dir + "/fuzz_audit_line/ca-" + std::to_string(i) + ".jsonl", ca_lines[i]);

    // CRLs: empty and with a revoked serial, DER and PEM.
    const kakunin::CertificateRevocationList empty = authority.ca().current_crl();
    write(dir + "/fuzz_crl/empty.der", text(empty.der()));
    write(dir + "/fuzz_crl/empty.pem", empty.pem());
    authority.revoke(cert, "keyCompromise fuzz seed");
    const kakunin::CertificateRevocationList revoked = authority.ca().current_crl();
    write(dir + "/fuzz_crl/revoked.der", text(revoked.der()));
    write(dir + "/fuzz_crl/revoked.pem", revoked.pem());
    return 0;
}
