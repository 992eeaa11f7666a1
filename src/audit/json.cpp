// Strict JSON helpers for the audit trail (see json.hpp).
#include "audit/json.hpp"

#include "audit/canonical_scan.hpp"

#include <set>
#include <vector>

#include "kakunin/error.hpp"

namespace kakunin::audit_detail {

namespace {

bool is_ascii(std::string_view s) {
    for (char c : s) {
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    }
    return true;
}

std::string quoted(std::string_view s) { return json(std::string(s)).dump(); }

std::string too_deep() {
    return "objects and arrays nested deeper than " + std::to_string(max_json_depth) + " levels";
}

}  // namespace

bool json_depth_within(std::string_view text, std::size_t limit) noexcept {
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;  // the escaped character cannot end the string
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > limit) return false;
        } else if ((c == '}' || c == ']') && depth > 0) {
            --depth;
        }
    }
    return true;
}

json parse_strict(std::string_view text, const std::string& what) {
    if (!json_depth_within(text))
        throw Error(ErrorCategory::invalid_input, what + ": malformed JSON: " + too_deep());
    // One parse; the callback sees member names in document order, so a stack of the names seen
    // per open object finds duplicates (which nlohmann would otherwise resolve silently).
    std::vector<std::set<std::string>> open;
    std::string duplicate;
    auto callback = [&](int, json::parse_event_t event, json& parsed) {
        switch (event) {
            case json::parse_event_t::object_start: open.emplace_back(); break;
            case json::parse_event_t::array_start: open.emplace_back(); break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end: open.pop_back(); break;
            case json::parse_event_t::key:
                if (!open.empty() && !open.back().insert(parsed.get<std::string>()).second &&
                    duplicate.empty()) {
                    duplicate = parsed.get<std::string>();
                }
                break;
            case json::parse_event_t::value: break;
        }
        return true;
    };
    json value;
    try {
        value = json::parse(text.begin(), text.end(), callback);
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, what + ": malformed JSON: " + e.what());
    }
    if (!duplicate.empty()) {
        throw Error(ErrorCategory::invalid_input,
                    what + ": duplicate member name \"" + duplicate + "\"");
    }
    return value;
}

std::string precondition_violation(const json& value, const std::string& path) {
    switch (value.type()) {
        case json::value_t::number_float:
            return path + ": floating-point number " + value.dump() +
                   " (decimals must be strings, scores integers)";
        case json::value_t::object:
            for (auto it = value.begin(); it != value.end(); ++it) {
                const std::string child = path + "." + it.key();
                if (!is_ascii(it.key())) return child + ": member name is not ASCII";
                std::string v = precondition_violation(it.value(), child);
                if (!v.empty()) return v;
            }
            return {};
        case json::value_t::array:
            for (std::size_t i = 0; i < value.size(); ++i) {
                std::string v =
                    precondition_violation(value[i], path + "[" + std::to_string(i) + "]");
                if (!v.empty()) return v;
            }
            return {};
        default: return {};
    }
}

RecordTemplate make_record_template(std::string_view log_id, std::string_view agent,
                                    std::string_view cert_fp) {
    RecordTemplate t;
    try {
        t.head =
            "{\"agent\":" + quoted(agent) + ",\"cert_fp\":" + quoted(cert_fp) + ",\"event\":\"";
        t.mid = "\",\"kind\":\"record\",\"log_id\":" + quoted(log_id) + ",\"payload\":";
    } catch (const json::exception& e) {
        throw Error(
            ErrorCategory::invalid_input,
            std::string("audit record: log_id, agent or cert_fp is not UTF-8: ") + e.what());
    }
    return t;
}

void build_record_text(const RecordTemplate& t, std::string_view event,
                       std::string_view canonical_payload, std::uint64_t seq, TimeNs ts_ns,
                       std::string& out) {
    out += t.head;
    out += event;
    out += t.mid;
    out += canonical_payload;
    out += ",\"seq\":";
    out += std::to_string(seq);
    out += ",\"ts_ns\":";
    out += std::to_string(ts_ns);
    out += '}';
}

std::string record_line(std::string_view canonical, std::string_view sig_b64) {
    if (sig_b64.empty()) return std::string(canonical);
    static constexpr std::string_view ts_member = ",\"ts_ns\":";
    const std::size_t pos = canonical.rfind(ts_member);
    std::string line;
    line.reserve(canonical.size() + sig_b64.size() + 10);
    line.append(canonical.substr(0, pos));
    line += ",\"sig\":\"";
    line += sig_b64;
    line += '"';
    line.append(canonical.substr(pos));
    return line;
}

namespace {

bool fail(std::string& error, std::string message) {
    error = std::move(message);
    return false;
}

bool get_string(const json& j, const char* name, std::string& out, std::string& error) {
    auto it = j.find(name);
    if (it == j.end()) return fail(error, std::string("missing member \"") + name + "\"");
    if (!it->is_string())
        return fail(error, std::string("member \"") + name + "\" is not a string");
    out = it->get<std::string>();
    return true;
}

bool get_u64(const json& j, const char* name, std::uint64_t& out, std::string& error) {
    auto it = j.find(name);
    if (it == j.end()) return fail(error, std::string("missing member \"") + name + "\"");
    if (!it->is_number_unsigned()) {
        return fail(error, std::string("member \"") + name + "\" is not a non-negative integer");
    }
    out = it->get<std::uint64_t>();
    return true;
}

bool get_i64(const json& j, const char* name, std::int64_t& out, std::string& error) {
    auto it = j.find(name);
    if (it == j.end()) return fail(error, std::string("missing member \"") + name + "\"");
    if (it->is_number_unsigned()) {
        if (it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
            return fail(error, std::string("member \"") + name + "\" is out of range");
        }
    } else if (!it->is_number_integer()) {
        return fail(error, std::string("member \"") + name + "\" is not an integer");
    }
    out = it->get<std::int64_t>();
    return true;
}

bool parse_record(const json& j, std::string_view line, ParsedLine& out, std::string& error) {
    const bool has_sig = j.contains("sig");
    if (j.size() != (has_sig ? 9u : 8u)) {
        for (auto it = j.begin(); it != j.end(); ++it) {
            static const std::set<std::string> known = {
                "agent", "cert_fp", "event", "kind", "log_id", "payload", "seq", "sig", "ts_ns"};
            if (known.count(it.key()) == 0) {
                return fail(error, "record has unknown member \"" + it.key() + "\"");
            }
        }
    }
    AuditRecord& r = out.record;
    if (!get_string(j, "agent", out.agent, error) ||
        !get_string(j, "cert_fp", out.cert_fp, error) || !get_string(j, "event", r.event, error) ||
        !get_string(j, "log_id", r.log_id, error) || !get_u64(j, "seq", r.seq, error) ||
        !get_i64(j, "ts_ns", r.ts_ns, error)) {
        return false;
    }
    if (!is_valid_audit_event(r.event)) return fail(error, "unknown event \"" + r.event + "\"");
    if (r.log_id.empty()) return fail(error, "empty log_id");
    auto payload = j.find("payload");
    if (payload == j.end()) return fail(error, "missing member \"payload\"");
    if (!payload->is_object()) return fail(error, "member \"payload\" is not an object");
    std::string violation = precondition_violation(*payload, "payload");
    if (!violation.empty()) return fail(error, violation);
    r.sig.clear();
    if (has_sig && !get_string(j, "sig", r.sig, error)) return false;
    if (has_sig && !is_base64_text(r.sig)) return fail(error, "\"sig\" is not base64");
    // The stored line must be the canonical text itself, so that every tool derives the same
    // bytes from it (this also refuses duplicate members, whitespace and escaped ASCII).
    if (j.dump() != line) return fail(error, "line is not in canonical form (RFC 8785)");
    if (has_sig) {
        static constexpr std::string_view sig_member = ",\"sig\":\"";
        const std::size_t begin = line.rfind(sig_member);
        const std::size_t end = begin + sig_member.size() + r.sig.size() + 1;
        r.canonical.assign(line.data(), begin);
        r.canonical.append(line.substr(end));
    } else {
        r.canonical.assign(line.data(), line.size());
    }
    out.canonical = r.canonical;
    return true;
}

bool parse_checkpoint(const json& j, std::string_view line, ParsedLine& out, std::string& error) {
    AuditCheckpoint& c = out.checkpoint;
    std::string root_hex;
    std::string sig_b64;
    if (j.size() != 7) return fail(error, "checkpoint must have exactly 7 members");
    if (!get_string(j, "log_id", c.log_id, error) || !get_u64(j, "size", c.size, error) ||
        !get_string(j, "root", root_hex, error) || !get_i64(j, "ts_ns", c.ts_ns, error) ||
        !get_string(j, "key_fp", c.key_fp, error) || !get_string(j, "sig", sig_b64, error)) {
        return false;
    }
    try {
        c.root = merkle_hash_from_hex(root_hex);
        c.sig = base64_decode(sig_b64);
    } catch (const Error& e) {
        return fail(error, std::string("checkpoint: ") + e.what());
    }
    if (j.dump() != line) return fail(error, "line is not in canonical form (RFC 8785)");
    return true;
}

}  // namespace

namespace {

bool hex_digest(std::string_view hex, MerkleHash& out) {
    if (hex.size() != 64) return false;
    for (std::size_t i = 0; i < 32; ++i) {
        int v = 0;
        for (int k = 0; k < 2; ++k) {
            const char c = hex[2 * i + static_cast<std::size_t>(k)];
            int d;
            if (c >= '0' && c <= '9') {
                d = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                d = c - 'a' + 10;
            } else {
                return false;
            }
            v = v * 16 + d;
        }
        out[i] = static_cast<std::uint8_t>(v);
    }
    return true;
}

bool names_are(const CanonicalMember* m, std::size_t n,
               std::initializer_list<std::string_view> names) {
    if (n != names.size()) return false;
    std::size_t i = 0;
    for (std::string_view name : names) {
        if (m[i++].name != name) return false;
    }
    return true;
}

bool is_string(std::string_view v) { return !v.empty() && v.front() == '"'; }

}  // namespace

std::string_view record_payload_text(std::string_view canonical) noexcept {
    constexpr std::string_view open = ",\"payload\":", close = ",\"seq\":";
    const std::size_t from = canonical.find(open);
    const std::size_t to = canonical.rfind(close);
    if (from == std::string_view::npos || to == std::string_view::npos || to <= from + open.size())
        return {};
    return canonical.substr(from + open.size(), to - from - open.size());
}

std::string_view record_cert_fp(std::string_view canonical) noexcept {
    constexpr std::string_view open = "\",\"cert_fp\":\"";
    const std::size_t from = canonical.find(open);
    if (from == std::string_view::npos) return {};
    const std::size_t start = from + open.size();
    const std::size_t end = canonical.find('"', start);
    if (end == std::string_view::npos) return {};
    return canonical.substr(start, end - start);
}

bool is_base64_text(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
        if (!ok) return false;
    }
    return true;
}

namespace {}  // namespace

bool parse_line_fast(std::string_view line, ParsedLine& out) {
    CanonicalMember m[10];
    std::size_t n = 0;
    if (!scan_canonical_object(line, m, 10, n)) return false;
    if (n == 8 || n == 9) {
        const bool has_sig = n == 9;
        if (!(has_sig ? names_are(m, n,
                                  {"agent", "cert_fp", "event", "kind", "log_id", "payload", "seq",
                                   "sig", "ts_ns"})
                      : names_are(m, n,
                                  {"agent", "cert_fp", "event", "kind", "log_id", "payload", "seq",
                                   "ts_ns"}))) {
            return false;
        }
        if (m[3].value != "\"record\"") return false;
        AuditRecord& r = out.record;
        if (!is_string(m[0].value) || !decode_canonical_string(m[0].value, out.agent) ||
            !is_string(m[1].value) || !decode_canonical_string(m[1].value, out.cert_fp) ||
            !is_string(m[2].value) || !decode_canonical_string(m[2].value, r.event) ||
            !is_string(m[4].value) || !decode_canonical_string(m[4].value, r.log_id) ||
            m[5].value.front() != '{' || !parse_canonical_u64(m[6].value, r.seq) ||
            !parse_canonical_i64(m[n - 1].value, r.ts_ns)) {
            return false;
        }
        if (!is_valid_audit_event(r.event) || r.log_id.empty()) return false;
        if (has_sig) {
            if (!is_string(m[7].value) || !decode_canonical_string(m[7].value, r.sig) ||
                !is_base64_text(r.sig)) {
                return false;
            }
            // Canonical bytes: the line without ',"sig":"..."' (the comma before the name).
            const std::size_t cut_begin =
                static_cast<std::size_t>(m[7].name.data() - 2 - line.data());
            const std::size_t cut_end =
                static_cast<std::size_t>(m[7].value.data() + m[7].value.size() - line.data());
            r.canonical.assign(line.data(), cut_begin);
            r.canonical.append(line.substr(cut_end));
            out.canonical = r.canonical;
        } else {
            r.sig.clear();
            out.canonical = line;  // no copy: the line is the canonical text
        }
        out.kind = LineKind::record;
        return true;
    }
    if (n == 7 && names_are(m, n, {"key_fp", "kind", "log_id", "root", "sig", "size", "ts_ns"})) {
        if (m[1].value != "\"checkpoint\"") return false;
        AuditCheckpoint& c = out.checkpoint;
        std::string root_hex;
        std::string sig_b64;
        if (!is_string(m[0].value) || !decode_canonical_string(m[0].value, c.key_fp) ||
            !is_string(m[2].value) || !decode_canonical_string(m[2].value, c.log_id) ||
            !is_string(m[3].value) || !decode_canonical_string(m[3].value, root_hex) ||
            !hex_digest(root_hex, c.root) || !is_string(m[4].value) ||
            !decode_canonical_string(m[4].value, sig_b64) ||
            !parse_canonical_u64(m[5].value, c.size) || !parse_canonical_i64(m[6].value, c.ts_ns)) {
            return false;
        }
        try {
            c.sig = base64_decode(sig_b64);
        } catch (const Error&) {
            return false;
        }
        out.kind = LineKind::checkpoint;
        return true;
    }
    return false;
}

bool parse_line_detailed(std::string_view line, ParsedLine& out, std::string& error) {
    if (!json_depth_within(line)) return fail(error, too_deep());
    json j = json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded()) return fail(error, "not valid JSON");
    if (!j.is_object()) return fail(error, "not a JSON object");
    auto kind = j.find("kind");
    if (kind == j.end() || !kind->is_string()) return fail(error, "missing member \"kind\"");
    const auto& k = kind->get_ref<const std::string&>();
    if (k == "record") {
        out.kind = LineKind::record;
        return parse_record(j, line, out, error);
    }
    if (k == "checkpoint") {
        out.kind = LineKind::checkpoint;
        return parse_checkpoint(j, line, out, error);
    }
    return fail(error, "unknown kind \"" + k + "\"");
}

bool parse_line(std::string_view line, ParsedLine& out, std::string& error) {
    if (parse_line_fast(line, out)) return true;
    if (!parse_line_detailed(line, out, error)) return false;
    // The detailed path accepts only canonical text, so the scanner should have: refuse
    // rather than let the two disagree.
    return fail(error, "line is not in canonical form (RFC 8785)");
}

}  // namespace kakunin::audit_detail
