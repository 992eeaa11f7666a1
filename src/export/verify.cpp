// kakunin export verify: checks a package offline and names the first problem (docs/export.md).
#include <botan/pk_keys.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "export/export_internal.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/export.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/version.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin {
namespace {

using namespace export_detail;

/// The first problem: thrown inside the verifier, turned into the result at the top.
struct Problem {
    std::string file;
    std::uint64_t line = 0;
    std::optional<std::uint64_t> seq;
    std::string what;
};

[[noreturn]] void fail(const std::string& file, const std::string& what, std::uint64_t line = 0,
                       std::optional<std::uint64_t> seq = std::nullopt) {
    throw Problem{file, line, seq, what};
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

json parse_json_file(const std::string& dir, const std::string& rel) {
    std::string text;
    try {
        text = read_file_bytes(dir + "/" + rel);
    } catch (const Error&) {
        fail(rel, "missing or unreadable");
    }
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        fail(rel, std::string("not JSON (") + e.what() + ")");
    }
}

std::string get_string(const json& j, const char* key, const std::string& file) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        fail(file, std::string("member '") + key + "' missing or not a string");
    return it->get<std::string>();
}

std::uint64_t get_uint(const json& j, const char* key, const std::string& file,
                       std::uint64_t line = 0) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned())
        fail(file, std::string("member '") + key + "' missing or not an unsigned integer", line);
    return it->get<std::uint64_t>();
}

MerkleHash get_hash(const json& j, const char* key, const std::string& file, std::uint64_t line,
                    std::optional<std::uint64_t> seq = std::nullopt) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        fail(file, std::string("member '") + key + "' missing or not a string", line, seq);
    try {
        return merkle_hash_from_hex(it->get<std::string>());
    } catch (const Error&) {
        fail(file, std::string("member '") + key + "' is not a SHA-256 in hex", line, seq);
    }
}

std::vector<MerkleHash> get_path(const json& j, const std::string& file, std::uint64_t line,
                                 std::optional<std::uint64_t> seq) {
    const auto it = j.find("path");
    if (it == j.end() || !it->is_array())
        fail(file, "member 'path' missing or not an array", line, seq);
    std::vector<MerkleHash> out;
    for (const auto& h : *it) {
        if (!h.is_string()) fail(file, "a path element is not a string", line, seq);
        try {
            out.push_back(merkle_hash_from_hex(h.get<std::string>()));
        } catch (const Error&) {
            fail(file, "a path element is not a SHA-256 in hex", line, seq);
        }
    }
    return out;
}

/// Every regular file under `dir`, as relative paths; anything else (links, devices) is named.
void walk(const std::string& dir, std::set<std::string>& files) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
         !ec && it != end; it.increment(ec)) {
        const std::string rel = fs::relative(it->path(), dir).generic_string();
        const fs::file_status st = it->symlink_status();
        if (fs::is_directory(st)) continue;
        if (!fs::is_regular_file(st))
            fail(rel, "not a regular file (links and devices are refused)");
        files.insert(rel);
    }
    if (ec) fail(".", "cannot list the package directory: " + ec.message());
}

bool safe_relative(const std::string& p) {
    if (p.empty() || p.front() == '/' || p.back() == '/') return false;
    std::size_t start = 0;
    while (start <= p.size()) {
        std::size_t end = p.find('/', start);
        if (end == std::string::npos) end = p.size();
        const std::string part = p.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") return false;
        start = end + 1;
    }
    return p.find('\\') == std::string::npos && p.find('\0') == std::string::npos;
}

std::optional<TimeNs> optional_time(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer())
        fail(manifest_file, std::string("period.") + key + " is not an integer");
    return it->get<TimeNs>();
}

class Verifier {
public:
    Verifier(std::string dir, const ExportVerifyOptions& options, ExportVerifyResult& result)
        : m_dir(std::move(dir)), m_options(options), m_r(result) {}

    void run() {
        if (!is_dir(m_dir)) fail(".", "not a directory: " + m_dir);
        check_signature();
        check_files();
        check_certificates();
        check_crl();
        check_approvals();
        check_baselines();
        check_extract();
        check_ca_log();
        check_derived();
    }

private:
    std::string path(const std::string& rel) const { return m_dir + "/" + rel; }

    // 1. manifest.sig over manifest.json, by the CA certificate's key (pinned if asked).
    void check_signature() {
        if (!file_exists(path(manifest_file))) fail(manifest_file, "missing");
        if (!file_exists(path(signature_file))) fail(signature_file, "missing");
        if (!file_exists(path(ca_certificate_file))) fail(ca_certificate_file, "missing");
        try {
            m_anchor.emplace(TrustAnchor::load_file(path(ca_certificate_file)));
        } catch (const Error& e) {
            fail(ca_certificate_file, std::string("not a certificate: ") + e.what());
        }
        m_r.ca_fingerprint = m_anchor->fingerprint();
        if (!m_options.pinned_ca.empty()) {
            std::optional<TrustAnchor> pinned;
            try {
                const std::string text(m_options.pinned_ca.begin(), m_options.pinned_ca.end());
                pinned.emplace(text.find("-----BEGIN") != std::string::npos
                                   ? TrustAnchor::from_pem(text)
                                   : TrustAnchor::from_der(m_options.pinned_ca));
            } catch (const Error& e) {
                fail("--ca", std::string("the pinned CA certificate does not load: ") + e.what());
            }
            if (pinned->der() != m_anchor->der())
                fail(ca_certificate_file, "is not the pinned CA certificate (package " +
                                              m_anchor->fingerprint() + ", pinned " +
                                              pinned->fingerprint() + ")");
            m_r.ca_pinned = true;
        }
        m_manifest_text = read_file_bytes(path(manifest_file));
        const json sig = parse_json_file(m_dir, signature_file);
        if (get_string(sig, "format", signature_file) != signature_format)
            fail(signature_file, std::string("format is not ") + signature_format);
        if (get_string(sig, "key_fp", signature_file) != m_anchor->fingerprint())
            fail(signature_file, "names signer " + sig["key_fp"].get<std::string>() +
                                     ", not the CA certificate " + m_anchor->fingerprint());
        const std::string hash = sha256_hex(m_manifest_text);
        if (get_string(sig, "manifest_sha256", signature_file) != hash)
            fail(manifest_file, "its SHA-256 (" + hash +
                                    ") is not the one signed in manifest.sig: the manifest was "
                                    "altered after it was signed");
        std::vector<std::uint8_t> signature;
        try {
            signature =
                crypto::base64_decode(get_string(sig, "signature", signature_file), "signature");
        } catch (const Error&) {
            fail(signature_file, "signature is not base64");
        }
        const std::string text =
            std::string(export_manifest_signature_context) + "\n" + hash + "\n";
        if (!crypto::verify_signature(m_anchor->public_key(), text, signature))
            fail(signature_file, "the signature does not verify with the key of " +
                                     std::string(ca_certificate_file) + " (" +
                                     m_anchor->fingerprint() + ")");
        try {
            m_manifest = json::parse(m_manifest_text);
        } catch (const json::exception& e) {
            fail(manifest_file, std::string("not JSON (") + e.what() + ")");
        }
        if (!m_manifest.is_object() || m_manifest.value("format", "") != export_format)
            fail(manifest_file, std::string("format is not ") + export_format);
        m_agent = get_string(m_manifest, "agent", manifest_file);
        m_log_id = get_string(m_manifest, "log_id", manifest_file);
        m_r.agent = m_agent;
        m_r.log_id = m_log_id;
        const json period = m_manifest.value("period", json::object());
        if (!period.is_object()) fail(manifest_file, "period is not an object");
        m_from = optional_time(period, "from_ns");
        m_to = optional_time(period, "to_ns");
    }

    // 2. Every file hashed, none missing, none extra.
    void check_files() {
        const auto it = m_manifest.find("files");
        if (it == m_manifest.end() || !it->is_array()) fail(manifest_file, "no 'files' array");
        for (const auto& f : *it) {
            if (!f.is_object()) fail(manifest_file, "a 'files' entry is not an object");
            const std::string p = get_string(f, "path", manifest_file);
            const std::string want = get_string(f, "sha256", manifest_file);
            if (!safe_relative(p) || p == manifest_file || p == signature_file)
                fail(manifest_file, "lists an unacceptable path '" + p + "'");
            if (!m_listed.insert(p).second) fail(manifest_file, "lists '" + p + "' twice");
            if (!file_exists(path(p))) fail(p, "listed in the manifest but missing");
            std::string bytes;
            try {
                bytes = read_file_bytes(path(p));
            } catch (const Error&) {
                fail(p, "unreadable");
            }
            if (sha256_hex(bytes) != want)
                fail(p, "its SHA-256 differs from the manifest's (the file was altered)");
        }
        for (const std::string& required : required_files())
            if (m_listed.count(required) == 0) fail(required, "missing: every package has it");
        std::set<std::string> present;
        walk(m_dir, present);
        for (const std::string& p : present)
            if (m_listed.count(p) == 0 && p != manifest_file && p != signature_file)
                fail(p, "not listed in the manifest (an extra file)");
        m_r.files = m_listed.size();
    }

    // 3. Certificates: each agent certificate chains to the CA; its JSON is its decoding.
    void check_certificates() {
        const std::string arc = m_manifest.value("oid_arc", std::string(default_oid_arc));
        m_audit_certs.add_der(m_anchor->der());
        for (const std::string& p : m_listed) {
            if (p.rfind(certificates_dir, 0) != 0 || p == ca_certificate_file) continue;
            if (ends_with(p, ".json")) {
                if (m_listed.count(p.substr(0, p.size() - 5) + ".pem") == 0)
                    fail(p, "has no certificate beside it");
                continue;
            }
            if (!ends_with(p, ".pem")) fail(p, "unexpected file among the certificates");
            const std::string info_path = p.substr(0, p.size() - 4) + ".json";
            if (m_listed.count(info_path) == 0)
                fail(info_path, "missing: every certificate has its decoded scope");
            std::optional<AgentCertificate> cert;
            try {
                cert.emplace(AgentCertificate::load_file(path(p), arc));
            } catch (const Error& e) {
                fail(p, std::string("not a certificate: ") + e.what());
            }
            if (cert->agent_id() != m_agent)
                fail(p, "is the certificate of '" + cert->agent_id() + "', not of agent '" +
                            m_agent + "'");
            if (cert->is_simulation()) {
                if (!ends_with(m_log_id, ".replay"))
                    fail(p, "is a simulation certificate, in the package of a production log");
                m_simulation = true;
            } else {
                VerifyOptions vo;
                vo.require_crl = false;
                const CertificateCheck c =
                    verify_certificate(*cert, *m_anchor, nullptr, cert->not_before(), vo);
                if (!c.ok())
                    fail(p, std::string("does not chain to the CA: ") + to_string(c.status) + ": " +
                                c.detail);
            }
            const json info = parse_json_file(m_dir, info_path);
            if (info.value("serial", "") != cert->serial() ||
                info.value("fingerprint", "") != cert->fingerprint())
                fail(info_path, "does not describe " + p + " (serial or fingerprint differ)");
            if (!cert->has_scope()) fail(p, "has no readable scope: " + cert->scope_error());
            if (!info.contains("scope") || info["scope"] != json::parse(to_json(cert->scope())))
                fail(info_path, "its scope is not the scope decoded from " + p);
            if (info.value("scope_sha256", "") != scope_sha256_hex(cert->scope()))
                fail(info_path, "its scope_sha256 is not the hash of the decoded scope");
            if (info.value("not_before_ns", TimeNs{0}) != cert->not_before() ||
                info.value("not_after_ns", TimeNs{0}) != cert->not_after())
                fail(info_path, "its validity is not the certificate's");
            m_audit_certs.add_der(cert->der());
            m_certs.emplace_back(p, *cert);
            ++m_r.certificates;
        }
        if (m_simulation)
            m_r.notes.push_back(
                "the log is a replay: its simulation certificate (OU=simulation) does not chain to "
                "the CA");
    }

    // 4. The CRL is the CA's, and the revocations the certificates' JSON states match it.
    void check_crl() {
        std::optional<CertificateRevocationList> crl;
        try {
            crl.emplace(CertificateRevocationList::load_file(path(crl_file)));
        } catch (const Error& e) {
            fail(crl_file, std::string("not a CRL: ") + e.what());
        }
        const auto& botan_crl = *crl->impl().crl;
        const auto& ca = *m_anchor->impl().cert;
        if (!(botan_crl.issuer_dn() == ca.subject_dn())) fail(crl_file, "not issued by the CA");
        bool signature_ok = false;
        try {
            std::unique_ptr<Botan::Public_Key> key(ca.subject_public_key());
            signature_ok = botan_crl.check_signature(*key);
        } catch (const std::exception&) {
            signature_ok = false;
        }
        if (!signature_ok) fail(crl_file, "its signature does not verify with the CA's key");
        for (const auto& [p, cert] : m_certs) {
            if (cert.is_simulation()) continue;
            const std::string info_path = p.substr(0, p.size() - 4) + ".json";
            const json info = parse_json_file(m_dir, info_path);
            const bool says_revoked = info.contains("revocation");
            if (says_revoked != crl->lists(cert.serial()))
                fail(info_path, says_revoked ? "says revoked, but the CRL does not list it"
                                             : "does not say revoked, but the CRL lists it");
        }
    }

    // 5. The scope approval: its signature, and that it is for this agent.
    void check_approvals() {
        if (m_listed.count(scope_approval_file) == 0) return;
        const json j = parse_json_file(m_dir, scope_approval_file);
        try {
            const ScopeApproval a = scope_approval_from_json(j.at("approval").dump());
            const Scope scope = parse_scope_json(j.at("scope").get<std::string>());
            if (a.agent_id != m_agent)
                fail(scope_approval_file, "is for agent '" + a.agent_id + "'");
            if (!verify_scope_approval(a, scope))
                fail(scope_approval_file,
                     "the approval by '" + a.approver +
                         "' does not verify over the scope (hash or signature)");
            m_scope_hashes_approved.insert(a.scope_sha256);
        } catch (const Error& e) {
            fail(scope_approval_file, e.what());
        } catch (const json::exception& e) {
            fail(scope_approval_file, e.what());
        }
    }

    // 6. Baselines: each approval's hash is the baseline's and its signature verifies.
    void check_baselines() {
        for (const std::string& p : m_listed) {
            if (p.rfind(baselines_dir, 0) != 0 || ends_with(p, ".approval.json")) continue;
            if (!ends_with(p, ".json")) fail(p, "unexpected file among the baselines");
            const std::string stem = p.substr(std::string(baselines_dir).size(),
                                              p.size() - std::string(baselines_dir).size() - 5);
            const std::string approval_path = std::string(baselines_dir) + stem + ".approval.json";
            const std::string bytes = read_file_bytes(path(p));
            json baseline;
            try {
                baseline = json::parse(bytes);
            } catch (const json::exception& e) {
                fail(p, std::string("not JSON (") + e.what() + ")");
            }
            if (baseline.value("format", "") != "kakunin-baseline/v1")
                fail(p, "format is not kakunin-baseline/v1");
            const std::string agent = baseline.contains("agent") ? baseline.value("agent", "")
                                                                 : baseline.value("agent_id", "");
            if (agent != m_agent) fail(p, "is the baseline of '" + agent + "'");
            ++m_r.baselines;
            if (m_listed.count(approval_path) == 0) {
                m_r.notes.push_back(p + " has no approval");
                continue;
            }
            const json a = parse_json_file(m_dir, approval_path);
            const std::string a_agent = a.contains("agent")
                                            ? get_string(a, "agent", approval_path)
                                            : get_string(a, "agent_id", approval_path);
            if (a_agent != m_agent) fail(approval_path, "is for agent '" + a_agent + "'");
            const std::uint64_t version = get_uint(a, "version", approval_path);
            if (std::to_string(version) != stem)
                fail(approval_path,
                     "approves version " + std::to_string(version) + ", not " + stem);
            const std::string hash = get_string(a, "baseline_sha256", approval_path);
            std::string canonical;
            try {
                canonical = canonical_json(bytes);
            } catch (const Error&) {
                canonical.clear();
            }
            if (hash != sha256_hex(bytes) && (canonical.empty() || hash != sha256_hex(canonical)))
                fail(p, "its SHA-256 is not the one " + approval_path +
                            " approved (the baseline was altered)");
            const std::string approver = get_string(a, "approver", approval_path);
            const auto at = a.find("approved_at_ns");
            if (at == a.end() || !at->is_number_integer())
                fail(approval_path, "member 'approved_at_ns' missing or not an integer");
            const std::string text = "kakunin-baseline-approval/v1\n" + m_agent + "\n" +
                                     std::to_string(version) + "\n" + approver + "\n" +
                                     std::to_string(at->get<TimeNs>()) + "\n" + hash + "\n";
            std::vector<std::uint8_t> key, signature;
            try {
                key = crypto::base64_decode(get_string(a, "approver_public_key", approval_path),
                                            "key");
                signature =
                    crypto::base64_decode(get_string(a, "signature", approval_path), "signature");
            } catch (const Error&) {
                fail(approval_path, "approver_public_key or signature is not base64");
            }
            const std::string algorithm = get_string(a, "algorithm", approval_path);
            const auto actual = crypto::spki_algorithm(key);
            if (!actual || algorithm != kakunin::to_string(*actual))
                fail(approval_path, "the approver's key is not an " + algorithm + " key");
            if (!crypto::verify_signature(key, text, signature))
                fail(approval_path, "the signature by '" + approver + "' does not verify");
        }
    }

    // 7. The extract: records, signatures, checkpoints, inclusion and consistency proofs.
    void check_extract() {
        if (const std::string p = audit_log_agent_problem(m_log_id, m_agent); !p.empty())
            fail(manifest_file, p);
        std::vector<LogLine> lines;
        try {
            lines = parse_json_lines(read_file_bytes(path(extract_file)), extract_file);
        } catch (const Error& e) {
            fail(extract_file, e.what());
        }
        const json audit = m_manifest.value("audit", json::object());
        struct Rec {
            std::uint64_t seq, line;
            MerkleHash leaf;
            TimeNs ts;
        };
        std::vector<Rec> records;
        std::vector<std::pair<AuditCheckpoint, std::uint64_t>> checkpoints;  // with line
        std::optional<std::uint64_t> expected;
        if (audit.contains("first_seq") && audit["first_seq"].is_number_unsigned())
            expected = audit["first_seq"].get<std::uint64_t>();
        for (const LogLine& l : lines) {
            if (l.is_record()) {
                AuditRecord r;
                try {
                    r = parse_audit_record(l.text);
                } catch (const Error& e) {
                    fail(extract_file, std::string("malformed record: ") + e.what(), l.number);
                }
                if (r.log_id != m_log_id)
                    fail(extract_file, "belongs to log '" + r.log_id + "', not '" + m_log_id + "'",
                         l.number, r.seq);
                if (l.value.value("agent", "") != m_agent)
                    fail(extract_file, "concerns agent '" + l.value.value("agent", "") + "'",
                         l.number, r.seq);
                if (!expected || r.seq != *expected)
                    fail(extract_file,
                         "expected seq " +
                             (expected ? std::to_string(*expected) : std::string("(none)")) +
                             ", found " + std::to_string(r.seq) +
                             " (records removed, added or reordered)",
                         l.number, r.seq);
                ++*expected;
                if (!r.sig.empty()) {
                    std::vector<std::uint8_t> sig;
                    try {
                        sig = base64_decode(r.sig);
                    } catch (const Error&) {
                        fail(extract_file, "the record's sig is not base64", l.number, r.seq);
                    }
                    const std::string fp = l.value.value("cert_fp", "");
                    if (!m_audit_certs.contains(fp))
                        fail(extract_file, "signed by " + fp + ", a certificate not in the package",
                             l.number, r.seq);
                    check_signer(fp, extract_file, l.number, r.seq);
                    if (!m_audit_certs.verify(
                            fp, reinterpret_cast<const std::uint8_t*>(r.canonical.data()),
                            r.canonical.size(), sig.data(), sig.size()))
                        fail(extract_file,
                             "the record's signature does not verify (the record was altered)",
                             l.number, r.seq);
                }
                records.push_back({r.seq, l.number, r.leaf_hash(), r.ts_ns});
            } else {
                AuditCheckpoint c;
                try {
                    c = parse_audit_checkpoint(l.text);
                } catch (const Error& e) {
                    fail(extract_file, std::string("malformed line: ") + e.what(), l.number);
                }
                if (c.log_id != m_log_id)
                    fail(extract_file, "a checkpoint of log '" + c.log_id + "'", l.number);
                check_checkpoint_signature(c, extract_file, l.number);
                if (!checkpoints.empty() && c.size < checkpoints.back().first.size)
                    fail(extract_file,
                         "checkpoint size " + std::to_string(c.size) +
                             " is smaller than the one before",
                         l.number);
                checkpoints.emplace_back(std::move(c), l.number);
            }
        }
        m_r.records = records.size();
        m_r.checkpoints = checkpoints.size();
        if (get_uint(audit, "records", manifest_file) != records.size())
            fail(manifest_file, "audit.records says " + audit["records"].dump() +
                                    ", the extract has " + std::to_string(records.size()));
        if (get_uint(audit, "checkpoints", manifest_file) != checkpoints.size())
            fail(manifest_file, "audit.checkpoints does not match the extract");
        if (!records.empty()) {
            const json last = audit.value("last_seq", json());
            if (!last.is_number_unsigned() || last.get<std::uint64_t>() != records.back().seq)
                fail(manifest_file, "audit.last_seq does not match the extract");
            if ((m_from && records.front().ts < *m_from) || (m_to && records.back().ts > *m_to))
                fail(extract_file, "the extract starts or ends outside the period",
                     records.front().line, records.front().seq);
            if (checkpoints.empty() || checkpoints.back().first.size <= records.back().seq)
                fail(extract_file,
                     "the last records are not covered by a checkpoint in the extract",
                     records.back().line, records.back().seq);
        }

        // Inclusion proofs: one per record, in order.
        std::vector<LogLine> proofs;
        try {
            proofs = parse_json_lines(read_file_bytes(path(inclusion_file)), inclusion_file);
        } catch (const Error& e) {
            fail(inclusion_file, e.what());
        }
        if (proofs.size() != records.size())
            fail(inclusion_file, "has " + std::to_string(proofs.size()) + " proofs for " +
                                     std::to_string(records.size()) + " records");
        for (std::size_t i = 0; i < proofs.size(); ++i) {
            const json& p = proofs[i].value;
            const Rec& rec = records[i];
            const std::uint64_t n = proofs[i].number;
            if (get_uint(p, "seq", inclusion_file, n) != rec.seq)
                fail(inclusion_file,
                     "is the proof of seq " + p["seq"].dump() + ", expected " +
                         std::to_string(rec.seq),
                     n, rec.seq);
            if (get_hash(p, "leaf_hash", inclusion_file, n, rec.seq) != rec.leaf)
                fail(inclusion_file,
                     "its leaf hash is not the record's (line " + std::to_string(rec.line) +
                         " of " + extract_file + ")",
                     n, rec.seq);
            const std::uint64_t size = get_uint(p, "checkpoint_size", inclusion_file, n);
            const auto cp = std::find_if(checkpoints.begin(), checkpoints.end(),
                                         [&](const auto& c) { return c.first.size == size; });
            if (cp == checkpoints.end() || size <= rec.seq)
                fail(inclusion_file,
                     "names a checkpoint of size " + std::to_string(size) +
                         " that the extract does not have",
                     n, rec.seq);
            if (get_hash(p, "checkpoint_root", inclusion_file, n, rec.seq) != cp->first.root)
                fail(inclusion_file, "its checkpoint_root is not the root of that checkpoint", n,
                     rec.seq);
            if (!verify_inclusion(rec.seq, size, rec.leaf, get_path(p, inclusion_file, n, rec.seq),
                                  cp->first.root))
                fail(inclusion_file,
                     "the inclusion proof does not lead to the root of the checkpoint of size " +
                         std::to_string(size),
                     n, rec.seq);
            ++m_r.inclusion_proofs;
        }

        // The latest checkpoint of the log at export time.
        std::optional<std::pair<AuditCheckpoint, std::uint64_t>> latest;
        if (m_listed.count(latest_checkpoint_file) != 0) {
            std::vector<LogLine> l;
            try {
                l = parse_json_lines(read_file_bytes(path(latest_checkpoint_file)),
                                     latest_checkpoint_file);
            } catch (const Error& e) {
                fail(latest_checkpoint_file, e.what());
            }
            if (l.size() != 1) fail(latest_checkpoint_file, "must hold exactly one checkpoint");
            AuditCheckpoint c;
            try {
                c = parse_audit_checkpoint(l[0].text);
            } catch (const Error& e) {
                fail(latest_checkpoint_file, e.what(), 1);
            }
            if (c.log_id != m_log_id)
                fail(latest_checkpoint_file, "a checkpoint of log '" + c.log_id + "'", 1);
            check_checkpoint_signature(c, latest_checkpoint_file, 1);
            if (!checkpoints.empty() && c.size < checkpoints.back().first.size)
                fail(latest_checkpoint_file, "is older than the extract's last checkpoint", 1);
            latest.emplace(std::move(c), 1);
        } else if (!checkpoints.empty()) {
            fail(latest_checkpoint_file,
                 "missing: the log's latest checkpoint belongs in the package");
        }

        // Consistency: between consecutive checkpoints, then to the latest one.
        std::vector<const AuditCheckpoint*> chain;
        for (const auto& c : checkpoints) chain.push_back(&c.first);
        if (latest && !chain.empty() && latest->first.size > chain.back()->size)
            chain.push_back(&latest->first);
        std::vector<LogLine> cons;
        try {
            cons = parse_json_lines(read_file_bytes(path(consistency_file)), consistency_file);
        } catch (const Error& e) {
            fail(consistency_file, e.what());
        }
        const std::size_t expected_proofs = chain.empty() ? 0 : chain.size() - 1;
        if (cons.size() != expected_proofs)
            fail(consistency_file, "has " + std::to_string(cons.size()) + " proofs for " +
                                       std::to_string(chain.size()) + " consecutive checkpoints");
        for (std::size_t i = 0; i < cons.size(); ++i) {
            const json& p = cons[i].value;
            const std::uint64_t n = cons[i].number;
            const AuditCheckpoint& a = *chain[i];
            const AuditCheckpoint& b = *chain[i + 1];
            if (get_uint(p, "from_size", consistency_file, n) != a.size ||
                get_uint(p, "to_size", consistency_file, n) != b.size ||
                get_hash(p, "from_root", consistency_file, n) != a.root ||
                get_hash(p, "to_root", consistency_file, n) != b.root)
                fail(consistency_file,
                     "does not name the checkpoints of sizes " + std::to_string(a.size) + " and " +
                         std::to_string(b.size),
                     n);
            if (!verify_consistency(a.size, b.size, a.root, b.root,
                                    get_path(p, consistency_file, n, std::nullopt)))
                fail(consistency_file,
                     "the checkpoint of size " + std::to_string(b.size) +
                         " is not shown to extend the one of size " + std::to_string(a.size),
                     n);
            ++m_r.consistency_proofs;
        }
    }

    /// The agent's log is signed by the agent's certificates only: never by the CA key, nor by
    /// another agent's (docs/audit-format.md §5, the same binding as the log verifier's).
    void check_signer(const std::string& fp, const std::string& file, std::uint64_t line,
                      std::optional<std::uint64_t> seq = std::nullopt) {
        const std::string problem = m_audit_certs.signer_problem(fp, m_log_id, m_agent);
        if (!problem.empty()) fail(file, "signed by " + problem, line, seq);
    }

    void check_checkpoint_signature(const AuditCheckpoint& c, const std::string& file,
                                    std::uint64_t line) {
        if (!m_audit_certs.contains(c.key_fp))
            fail(file, "checkpoint signed by " + c.key_fp + ", a certificate not in the package",
                 line);
        check_signer(c.key_fp, file, line);
        const std::string text = c.signed_text();
        if (!m_audit_certs.verify(c.key_fp, reinterpret_cast<const std::uint8_t*>(text.data()),
                                  text.size(), c.sig.data(), c.sig.size()))
            fail(file, "the checkpoint's signature does not verify (the checkpoint was altered)",
                 line);
    }

    // 8. The CA log, whole, against the CA certificate.
    void check_ca_log() {
        if (m_listed.count(ca_log_file) == 0) {
            m_r.notes.push_back("no CA log in the package");
            return;
        }
        const std::string text = read_file_bytes(path(ca_log_file));
        std::vector<std::string> lines;
        std::size_t start = 0;
        while (start < text.size()) {
            const std::size_t end = text.find('\n', start);
            if (end == std::string::npos) fail(ca_log_file, "the last line has no newline");
            lines.push_back(text.substr(start, end - start));
            start = end + 1;
        }
        AuditCertificates certs;
        certs.add_der(m_anchor->der());
        AuditVerifyOptions vo;
        vo.require_closed = false;
        vo.expected_log_id = "ca";
        const AuditVerifyResult r = verify_audit_lines(lines, certs, vo);
        if (!r.ok)
            fail(ca_log_file, std::string(to_string(r.problem)) + ": " + r.message, r.line,
                 r.problem == AuditProblem::empty_log
                     ? std::nullopt
                     : std::optional<std::uint64_t>(r.first_bad_seq));
        m_r.ca_log_records = r.records;
        // The scopes the CA log shows approved for this agent, to match certificates against.
        for (const std::string& line : lines) {
            try {
                const json j = json::parse(line);
                if (j.value("kind", "") != "record" || j.value("event", "") != "scope.approved")
                    continue;
                const json p = j.value("payload", json::object());
                if (p.is_object() && p.value("agent", "") == m_agent)
                    m_scope_hashes_approved.insert(p.value("scope_sha256", ""));
            } catch (const json::exception&) {
                // verified above: every line is a canonical JSON object
            }
        }
        for (const auto& [p, cert] : m_certs)
            if (!cert.is_simulation() &&
                m_scope_hashes_approved.count(scope_sha256_hex(cert.scope())) == 0)
                m_r.notes.push_back(p + ": its scope matches no scope approval in the package");
        if (r.uncovered_records > 0)
            m_r.notes.push_back(
                std::to_string(r.uncovered_records) +
                " CA log records follow its last checkpoint (vouched for by their own signatures)");
    }

    // 9. timeline.json and report.html are what this package's evidence produces.
    void check_derived() {
        PackageView view;
        try {
            view = load_package_view(m_dir, m_manifest);
        } catch (const Error& e) {
            fail(".", e.what());
        }
        m_r.timeline_entries = view.timeline.is_array() ? view.timeline.size() : 0;
        // Always re-derived: the generator's version is a claim inside the package, and a check
        // skipped on its say-so would let anyone skip it. A package of another version whose
        // derivation differs fails here, saying so.
        const json generator = m_manifest.value("generator", json::object());
        const std::string version = generator.is_object() && generator.contains("version") &&
                                            generator["version"].is_string()
                                        ? generator["version"].get<std::string>()
                                        : std::string();
        const std::string made_by = version == version_string
                                        ? std::string()
                                        : " (the package says it was made by kakunin '" + version +
                                              "', this is " + version_string + ")";
        const json timeline = build_timeline(m_agent, view.extract, view.ca_log, m_from, m_to);
        if (!view.timeline.is_array()) fail(timeline_file, "not a JSON array");
        for (std::size_t i = 0; i < std::max(timeline.size(), view.timeline.size()); ++i)
            if (i >= timeline.size() || i >= view.timeline.size() ||
                timeline[i] != view.timeline[i])
                fail(timeline_file, "entry " + std::to_string(i + 1) +
                                        " differs from the timeline the records produce" + made_by);
        if (render_report(view) != read_file_bytes(path(report_file)))
            fail(report_file, "differs from the report the package's evidence produces" + made_by);
    }

    std::string m_dir;
    const ExportVerifyOptions& m_options;
    ExportVerifyResult& m_r;
    std::optional<TrustAnchor> m_anchor;
    std::string m_manifest_text;
    json m_manifest;
    std::string m_agent, m_log_id;
    std::optional<TimeNs> m_from, m_to;
    std::set<std::string> m_listed;
    AuditCertificates m_audit_certs;
    std::vector<std::pair<std::string, AgentCertificate>> m_certs;
    std::set<std::string> m_scope_hashes_approved;  ///< scope_sha256 of approvals seen
    bool m_simulation = false;
};

}  // namespace

ExportVerifyResult verify_export_package(const std::string& dir,
                                         const ExportVerifyOptions& options) {
    ExportVerifyResult r;
    try {
        Verifier(dir, options, r).run();
        r.ok = true;
        r.message = "ok";
    } catch (const Problem& p) {
        r.ok = false;
        r.file = p.file;
        r.line = p.line;
        r.seq = p.seq;
        r.message = p.file;
        if (p.line != 0) r.message += " line " + std::to_string(p.line);
        if (p.seq) r.message += " (seq " + std::to_string(*p.seq) + ")";
        r.message += ": " + p.what;
    } catch (const std::exception& e) {
        r.ok = false;
        r.file = ".";
        r.message = std::string("cannot verify: ") + e.what();
    }
    return r;
}

}  // namespace kakunin
