// Any bytes as one audit log line (a record or a checkpoint, DESIGN §5): the one-pass scanner and
// the explaining parser accept exactly the same lines with the same content; the public parsers
// throw only kakunin::Error and what they accept is the line itself re-serialised; the verifier,
// after the first records of a genuine log, never throws and accepts a signed line only if it is
// one the agent's key really signed.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "audit/json.hpp"
#include "kakunin/audit.hpp"
#include "kakunin/testing.hpp"

namespace {

const char* const seed_scope = R"({"version":1,
  "max_transaction":{"currency":"EUR","amount":"500000.00"},
  "instruments":["BTC_EUR"],"counterparties":["exchange_a"],
  "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri"],"from":"07:00","to":"20:00"}],
  "regions":["eu-west-1"]})";

using kakunin::audit_detail::LineKind;
using kakunin::audit_detail::ParsedLine;

/// A genuine agent log: six signed records and a checkpoint (what fuzz_seeds writes too).
struct Fixed {
    kakunin::TestAuthority authority;
    kakunin::GuardCredentials agent =
        authority.credentials_for(kakunin::parse_scope_json(seed_scope));
    kakunin::AuditCertificates certs;
    std::vector<std::string> lines;
    std::set<std::string> genuine;

    Fixed() {
        certs.add_der(agent.certificate.der());
        certs.add_der(authority.ca().trust_anchor().der());
        kakunin::MemoryAuditSink sink;
        const kakunin::AuditSigner signer{*agent.kms, agent.key, agent.certificate.fingerprint()};
        const std::string id = agent.certificate.agent_id();
        kakunin::AuditLogWriter log(sink, authority.clock(), signer,
                                    kakunin::AuditWriterOptions{id, id, "", 0}, signer);
        for (int i = 0; i < 6; ++i)
            log.append("order.allowed",
                       R"({"decision":"allow","score_ppm":)" + std::to_string(i) + "}");
        log.close();
        lines = sink.lines();
        genuine.insert(lines.begin(), lines.end());
    }
};

void same_or_abort(bool same) {
    if (!same) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const Fixed* fixed = new Fixed();
    const std::string text(reinterpret_cast<const char*>(data), size);
    const std::string_view line(text);

    ParsedLine fast, detailed;
    std::string error;
    const bool f = kakunin::audit_detail::parse_line_fast(line, fast);
    const bool d = kakunin::audit_detail::parse_line_detailed(line, detailed, error);
    same_or_abort(f == d);
    if (f) {
        same_or_abort(fast.kind == detailed.kind);
        if (fast.kind == LineKind::record) {
            same_or_abort(fast.record.seq == detailed.record.seq &&
                          fast.record.ts_ns == detailed.record.ts_ns &&
                          fast.record.log_id == detailed.record.log_id &&
                          fast.record.event == detailed.record.event &&
                          fast.record.sig == detailed.record.sig &&
                          fast.canonical == detailed.canonical && fast.agent == detailed.agent &&
                          fast.cert_fp == detailed.cert_fp);
        } else {
            const auto& a = fast.checkpoint;
            const auto& b = detailed.checkpoint;
            same_or_abort(a.log_id == b.log_id && a.size == b.size && a.root == b.root &&
                          a.ts_ns == b.ts_ns && a.key_fp == b.key_fp && a.sig == b.sig);
        }
    }

    try {
        const kakunin::AuditRecord r = kakunin::parse_audit_record(line);
        same_or_abort(f && r.line() == line);
    } catch (const kakunin::Error&) {
    }
    try {
        const kakunin::AuditCheckpoint c = kakunin::parse_audit_checkpoint(line);
        same_or_abort(f && c.line() == line);
    } catch (const kakunin::Error&) {
    }

    // After the genuine log's first three records: no exception, and no forged signature.
    kakunin::AuditLogVerifier verifier(fixed->certs);
    for (int i = 0; i < 3; ++i) same_or_abort(verifier.add_line(fixed->lines[i]));
    const bool accepted = verifier.add_line(line);
    const kakunin::AuditVerifyResult r = verifier.finish();
    if (accepted && (r.checkpoints > 0 || r.signed_records > 3))
        same_or_abort(fixed->genuine.count(text) == 1);
    return 0;
}
