// Audit records and checkpoints (DESIGN §5).
#include <botan/base64.h>

#include "audit/canonical_scan.hpp"
#include "audit/json.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/error.hpp"

namespace kakunin {

namespace {

constexpr std::string_view kDocumentedEvents[] = {
    audit_event::order_allowed,
    audit_event::order_warned,
    audit_event::order_rejected,
    audit_event::guard_halted,
    audit_event::guard_resumed,
    audit_event::certificate_issued,
    audit_event::certificate_revoked,
    audit_event::scope_approved,
    audit_event::baseline_approved,
    audit_event::review_signed,
    audit_event::log_truncated_tail,
    audit_event::log_recovered,
    audit_event::log_gap,
    audit_event::log_accepted,
    audit_event::guard_rotated,
    audit_event::guard_crl_updated,
    audit_event::ca_initialised,
    audit_event::agent_registered,
    audit_event::crl_issued,
    audit_event::amend_allowed,
    audit_event::amend_rejected,
    audit_event::cancel_allowed,
    audit_event::cancel_rejected,
    audit_event::execution_ack,
    audit_event::execution_reject,
    audit_event::execution_fill,
    audit_event::execution_cancelled,
    audit_event::execution_expired,
    audit_event::execution_mark,
    audit_event::guard_cancel_all,
    audit_event::guard_reduce_only,
    audit_event::guard_reduce_only_lifted,
    audit_event::firm_budget_set,
    audit_event::firm_orphans_released,
    audit_event::fleet_halted,
    audit_event::fleet_resumed,
};

}  // namespace

bool is_valid_audit_event(std::string_view name) noexcept {
    for (std::string_view e : kDocumentedEvents) {
        if (name == e) return true;
    }
    if (name == audit_event::audit_unrecorded_rejections) return true;
    constexpr std::string_view incident = "incident.";
    if (name.size() <= incident.size() || name.substr(0, incident.size()) != incident) return false;
    for (char c : name.substr(incident.size())) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
        if (!ok) return false;
    }
    return true;
}

std::string canonical_json(std::string_view text) {
    if (audit_detail::is_canonical_json(text)) return std::string(text);
    const audit_detail::json value = audit_detail::parse_strict(text, "JSON");
    const std::string violation = audit_detail::precondition_violation(value, "$");
    if (!violation.empty()) throw Error(ErrorCategory::invalid_input, violation);
    return value.dump();
}

std::string AuditRecord::line() const { return audit_detail::record_line(canonical, sig); }

AuditRecord make_audit_record(std::uint64_t seq, TimeNs ts_ns, std::string_view log_id,
                              std::string_view agent, std::string_view cert_fp,
                              std::string_view event, std::string_view payload_json) {
    if (!is_valid_audit_event(event)) {
        throw Error(ErrorCategory::invalid_input,
                    "audit record: unknown event \"" + std::string(event) + "\"");
    }
    if (log_id.empty()) throw Error(ErrorCategory::invalid_input, "audit record: empty log_id");
    const audit_detail::json payload = audit_detail::parse_strict(payload_json, "payload");
    if (!payload.is_object()) {
        throw Error(ErrorCategory::invalid_input, "payload: not a JSON object");
    }
    const std::string violation = audit_detail::precondition_violation(payload, "payload");
    if (!violation.empty()) throw Error(ErrorCategory::invalid_input, violation);

    AuditRecord r;
    r.seq = seq;
    r.ts_ns = ts_ns;
    r.log_id = std::string(log_id);
    r.event = std::string(event);
    audit_detail::build_record_text(audit_detail::make_record_template(log_id, agent, cert_fp),
                                    event, payload.dump(), seq, ts_ns, r.canonical);
    return r;
}

AuditRecord parse_audit_record(std::string_view line) {
    audit_detail::ParsedLine parsed;
    std::string error;
    if (!audit_detail::parse_line(line, parsed, error)) {
        throw Error(ErrorCategory::invalid_input, "audit record: " + error);
    }
    if (parsed.kind != audit_detail::LineKind::record) {
        throw Error(ErrorCategory::invalid_input, "audit record: line is a checkpoint");
    }
    if (parsed.canonical.data() != parsed.record.canonical.data()) {
        parsed.record.canonical.assign(parsed.canonical.data(), parsed.canonical.size());
    }
    return std::move(parsed.record);
}

std::string AuditCheckpoint::signed_text() const {
    std::string s = "kakunin-checkpoint/v1\n";
    s += log_id;
    s += '\n';
    s += std::to_string(size);
    s += '\n';
    s += to_hex(root);
    s += '\n';
    s += std::to_string(ts_ns);
    s += '\n';
    return s;
}

std::string AuditCheckpoint::line() const {
    audit_detail::json j = audit_detail::json::object();
    j["kind"] = "checkpoint";
    j["log_id"] = log_id;
    j["size"] = size;
    j["root"] = to_hex(root);
    j["ts_ns"] = ts_ns;
    j["key_fp"] = key_fp;
    j["sig"] = base64_encode(sig.data(), sig.size());
    return j.dump();
}

AuditCheckpoint parse_audit_checkpoint(std::string_view line) {
    audit_detail::ParsedLine parsed;
    std::string error;
    if (!audit_detail::parse_line(line, parsed, error)) {
        throw Error(ErrorCategory::invalid_input, "audit checkpoint: " + error);
    }
    if (parsed.kind != audit_detail::LineKind::checkpoint) {
        throw Error(ErrorCategory::invalid_input, "audit checkpoint: line is a record");
    }
    return std::move(parsed.checkpoint);
}

std::string certificate_fingerprint(const std::vector<std::uint8_t>& certificate_der) {
    return "sha256:" + to_hex(sha256(certificate_der.data(), certificate_der.size()));
}

void sign_audit_record(const AuditSigner& signer, AuditRecord& record) {
    const std::vector<std::uint8_t> sig = signer.kms.get().sign(signer.key, record.canonical);
    record.sig = base64_encode(sig.data(), sig.size());
}

AuditCheckpoint sign_audit_checkpoint(const AuditSigner& signer, std::string_view log_id,
                                      std::uint64_t size, const MerkleHash& root, TimeNs ts_ns) {
    AuditCheckpoint c;
    c.log_id = std::string(log_id);
    c.size = size;
    c.root = root;
    c.ts_ns = ts_ns;
    c.key_fp = signer.key_fp;
    c.sig = signer.kms.get().sign(signer.key, c.signed_text());
    return c;
}

std::string base64_encode(const std::uint8_t* data, std::size_t size) {
    return Botan::base64_encode(data, size);
}

std::vector<std::uint8_t> base64_decode(std::string_view text) {
    Botan::secure_vector<std::uint8_t> decoded;
    try {
        decoded = Botan::base64_decode(text.data(), text.size(), false);
    } catch (const std::exception&) {
        throw Error(ErrorCategory::invalid_input, "base64: malformed");
    }
    // Strict: only the one canonical encoding is accepted (no whitespace, canonical padding).
    if (Botan::base64_encode(decoded.data(), decoded.size()) != text) {
        throw Error(ErrorCategory::invalid_input, "base64: not in canonical form");
    }
    return std::vector<std::uint8_t>(decoded.begin(), decoded.end());
}

}  // namespace kakunin
