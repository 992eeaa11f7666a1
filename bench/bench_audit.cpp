// Certificates and the audit log: loading and validating an agent certificate, records per
// second through the writer into the file sink (with and without per-record signatures), and
// offline verification speed (DESIGN §7).
#include <benchmark/benchmark.h>

#include <unistd.h>
#include <cstdio>

#include "bench_support.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/audit_writer.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"

namespace kakunin::bench {
namespace {

const char* const scope_json = R"({"version":1,
  "max_transaction":{"currency":"EUR","amount":"500000.00"},
  "instruments":["BTC_EUR","ETH_EUR","SOL_EUR"],"counterparties":["exchange_a","exchange_b"],
  "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri"],"from":"07:00","to":"20:00"}],
  "regions":["eu-west-1","eu-central-1"],
  "limits":{"max_order_quantity":{"BTC_EUR":"10","ETH_EUR":"150"},"price_collar_bps":500,
            "max_orders_per_second":50,"max_daily_notional":{"currency":"EUR","amount":"5000000.00"}}})";

/// A typical order-decision payload (about 400 bytes).
const char* const payload =
    R"({"components_ppm":{"concentration":0,"frequency":0,"origin":0,"size":0,"time_of_day":0},)"
    R"("decision":"allow","order":{"client_order_id":"c-000123","counterparty":"exchange_b",)"
    R"("instrument":"ETH_EUR","price":"2500.12","quantity":"0.001","reference_price":"2500.00",)"
    R"("region":"eu-central-1","side":"BUY"},"reasoning":"mean reversion after a 2.1 sigma move",)"
    R"("reasons":[],"score_ppm":0})";

void BM_cert_load_validate(benchmark::State& state) {
    TestAuthority authority;
    const GuardCredentials c = authority.credentials_for(parse_scope_json(scope_json));
    const std::vector<std::uint8_t> der = c.certificate.der();
    VerifyOptions options;
    options.expected_public_key = c.kms->public_key(c.key).spki_der;
    for (auto _ : state) {
        const AgentCertificate cert = AgentCertificate::from_der(der);
        const CertificateCheck r =
            verify_certificate(cert, c.trust_anchor, &*c.crl, authority.clock().now_ns(), options);
        if (!r.ok()) state.SkipWithError("certificate did not validate");
        benchmark::DoNotOptimize(r);
    }
}

/// Writes `records` records through the writer into a fresh file; returns seconds taken.
void write_log(benchmark::State& state, bool signed_records) {
    auto kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    const KeyHandle key = kms->create_key("agent:bench", KeyAlgorithm::ed25519);
    ManualClock clock(utc(2024, 1, 8, 12));
    const std::string path = temp_path(signed_records ? "signed.jsonl" : "plain.jsonl");
    const std::size_t batch = 4096;
    std::uint64_t total = 0;
    for (auto _ : state) {
        state.PauseTiming();
        std::remove(path.c_str());
        std::remove((path + ".started").c_str());  // the sink's note that a log began here
        FileAuditSink sink(path);
        AuditSigner signer{*kms, key, "sha256:bench"};
        AuditWriterOptions options;
        options.log_id = "bench";
        options.checkpoint_every = 1000;
        std::optional<AuditSigner> record_signer;
        if (signed_records) record_signer = signer;
        AuditLogWriter writer(sink, clock, signer, options, record_signer);
        state.ResumeTiming();
        const std::size_t n = static_cast<std::size_t>(state.range(0));
        for (std::size_t i = 0; i < n; ++i) {
            writer.append("order.allowed", payload);
            if ((i + 1) % batch == 0) writer.flush();
        }
        writer.close();
        total += n;
    }
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());  // the sink's note that a log began here
    state.counters["records_per_s"] =
        benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}

void BM_audit_file(benchmark::State& state) { write_log(state, false); }
void BM_audit_signed(benchmark::State& state) { write_log(state, true); }

void BM_verify(benchmark::State& state) {
    auto kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    TestAuthority authority;
    const GuardCredentials c = authority.credentials_for(parse_scope_json(scope_json));
    const std::string path = temp_path("verify.jsonl");
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());  // the sink's note that a log began here
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    {
        FileAuditSink sink(path);
        AuditSigner signer{*c.kms, c.key, c.certificate.fingerprint()};
        AuditWriterOptions options;
        options.log_id = c.certificate.agent_id();  // the verifier binds a log to its agent
        options.checkpoint_every = 1000;
        AuditLogWriter writer(sink, authority.clock(), signer, options);
        for (std::size_t i = 0; i < n; ++i) {
            writer.append("order.allowed", payload);
            if ((i + 1) % 4096 == 0) writer.flush();
        }
        writer.close();
    }
    AuditCertificates certs;
    certs.add_der(c.certificate.der());
    std::uint64_t total = 0;
    for (auto _ : state) {
        const AuditVerifyResult r = verify_audit_log_file(path, certs);
        if (!r.ok) state.SkipWithError("log did not verify");
        total += r.records;
    }
    std::remove(path.c_str());
    std::remove((path + ".started").c_str());  // the sink's note that a log began here
    state.counters["records_per_s"] =
        benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_cert_load_validate)->Unit(benchmark::kMicrosecond);
// Rates over wall-clock time: fsync and the disk count (kIsRate divides by CPU time otherwise).
BENCHMARK(BM_audit_file)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_audit_signed)->Arg(20000)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_verify)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

}  // namespace
}  // namespace kakunin::bench
