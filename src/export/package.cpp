// kakunin export: builds the evidence package of one agent (docs/export.md).
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "crypto/encoding.hpp"
#include "export/export_internal.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/export.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/version.hpp"

namespace kakunin {
namespace {

using namespace export_detail;
using LineFn = std::function<void(std::string_view)>;

std::vector<std::string> sorted_names(const std::string& dir) {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return out;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") out.push_back(name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The agent's log, read without taking the writer's lock or repairing anything: a file (a
/// torn last line, which a running writer may be in the middle of, is left out and noted) or a
/// PostgreSQL log.
class LogSource {
public:
    LogSource(const ExportOptions& o, const std::string& log_id) : m_log_id(log_id) {
        if (o.postgres.empty()) {
            m_path = o.state_dir + "/audit/" + log_id + ".jsonl";
            if (!file_exists(m_path))
                throw Error(ErrorCategory::not_found,
                            "no audit log '" + log_id + "' in " + o.state_dir + " (" + m_path +
                                " does not exist; give --log-id or --postgres)");
            m_name = m_path;
        } else {
            PostgresAuditSinkOptions so;
            so.log_id = log_id;
            m_sink = std::make_unique<PostgresAuditSink>(o.postgres, so);
            m_name = m_sink->name();
        }
    }

    void for_each_line(const LineFn& fn) {
        if (m_sink) {
            m_sink->for_each_line(fn);
            return;
        }
        std::ifstream in(m_path, std::ios::binary);
        if (!in) throw Error(ErrorCategory::io, m_path + ": cannot read");
        std::string line;
        m_torn_tail = 0;
        while (std::getline(in, line)) {
            if (in.eof()) {  // no newline after it: a write in progress or a crash
                m_torn_tail = line.size();
                break;
            }
            fn(line);
        }
        if (in.bad()) throw Error(ErrorCategory::io, m_path + ": read failed");
    }

    const std::string& name() const { return m_name; }
    bool from_postgres() const { return m_sink != nullptr; }
    std::size_t torn_tail() const { return m_torn_tail; }

private:
    std::string m_log_id, m_path, m_name;
    std::unique_ptr<PostgresAuditSink> m_sink;
    std::size_t m_torn_tail = 0;
};

struct Checkpoint {
    std::uint64_t line = 0;  ///< in the source
    AuditCheckpoint value;
    std::string text;
};

json checkpoint_json(const AuditCheckpoint& c) {
    return {{"size", c.size}, {"root", to_hex(c.root)}, {"ts_ns", c.ts_ns}};
}

json hex_path(const std::vector<MerkleHash>& path) {
    json out = json::array();
    for (const auto& h : path) out.push_back(to_hex(h));
    return out;
}

/// What the exporter writes, relative path -> bytes; written out in one go.
class PackageWriter {
public:
    explicit PackageWriter(std::string dir) : m_dir(std::move(dir)) {}
    void add(const std::string& rel, std::string bytes) {
        const std::size_t slash = rel.rfind('/');
        if (slash != std::string::npos) make_dirs(m_dir + "/" + rel.substr(0, slash));
        write_file_bytes(m_dir + "/" + rel, bytes);
        m_files[rel] = std::move(bytes);
    }
    const std::map<std::string, std::string>& files() const { return m_files; }
    const std::string& dir() const { return m_dir; }

private:
    std::string m_dir;
    std::map<std::string, std::string> m_files;
};

std::string strip_slashes(std::string s) {
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
}

/// Removes what a failed export created.
class Cleanup {
public:
    Cleanup(std::string dir, std::string tarball)
        : m_dir(std::move(dir)), m_tar(std::move(tarball)) {}
    ~Cleanup() {
        if (m_done) return;
        std::error_code ec;
        if (m_created_dir)
            std::filesystem::remove_all(m_dir, ec);
        else
            for (const auto& e : std::filesystem::directory_iterator(m_dir, ec))
                std::filesystem::remove_all(e.path(), ec);
        std::filesystem::remove(m_tar, ec);
    }
    void created_dir() { m_created_dir = true; }
    void done() { m_done = true; }

private:
    std::string m_dir, m_tar;
    bool m_created_dir = false;
    bool m_done = false;
};

}  // namespace

ExportSummary export_package(LocalCa& ca, Kms& kms, const ExportOptions& o, const Clock& clock) {
    validate_agent_id(o.agent);
    const std::string log_id = o.log_id.empty() ? o.agent : o.log_id;
    validate_agent_id(log_id);  // it names a file; the same character rules apply
    if (o.state_dir.empty())
        throw Error(ErrorCategory::invalid_input, "export: no state directory");
    if (o.out_dir.empty()) throw Error(ErrorCategory::invalid_input, "export: --out: empty path");
    if (o.from_ns && o.to_ns && *o.from_ns > *o.to_ns)
        throw Error(ErrorCategory::invalid_input, "export: --from " + format_timestamp(*o.from_ns) +
                                                      " is after --to " +
                                                      format_timestamp(*o.to_ns));
    const auto registration = ca.registration(o.agent);
    if (!registration)
        throw Error(ErrorCategory::not_found,
                    "unknown agent '" + o.agent + "': not registered in " + o.state_dir);

    json mapping;
    try {
        mapping = json::parse(o.regulatory_mapping_json.empty() ? default_regulatory_mapping_json()
                                                                : o.regulatory_mapping_json);
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input,
                    std::string("regulatory mapping: not JSON (") + e.what() + ")");
    }
    if (!mapping.is_array())
        throw Error(ErrorCategory::invalid_input, "regulatory mapping: must be a JSON array");
    for (std::size_t i = 0; i < mapping.size(); ++i)
        for (const char* key : {"requirement", "instrument", "provision", "evidence"})
            if (!mapping[i].is_object() || !mapping[i].contains(key))
                throw Error(ErrorCategory::invalid_input, "regulatory mapping: entry " +
                                                              std::to_string(i + 1) +
                                                              " has no member '" + key + "'");

    const std::string out_dir = strip_slashes(o.out_dir);
    const std::string tarball = out_dir + ".tar.gz";
    if (file_exists(out_dir) || (is_dir(out_dir) && !sorted_names(out_dir).empty()))
        throw Error(ErrorCategory::invalid_state,
                    out_dir +
                        " already exists and is not empty: evidence is never overwritten; "
                        "choose a new --out directory");
    if (o.write_tarball && std::filesystem::exists(tarball))
        throw Error(ErrorCategory::invalid_state,
                    tarball + " already exists: evidence is never overwritten");

    // ---- the CA and its key -------------------------------------------------------------------
    const TrustAnchor anchor = ca.trust_anchor();
    const KeyHandle ca_key = kms.find_key(ca.options().key_label);
    const PublicKeyInfo ca_public = kms.public_key(ca_key);
    if (ca_public.spki_der != anchor.public_key())
        throw Error(ErrorCategory::invalid_state, "the Kms key '" + ca.options().key_label +
                                                      "' is not the key of the CA "
                                                      "certificate: cannot sign the manifest");

    // ---- certificates that may have signed the agent's log ------------------------------------
    std::vector<AgentCertificate> certificates = ca.issued_certificates(o.agent);
    const std::string sim_dir = o.state_dir + "/audit/" + log_id + ".jsonl.certs";
    for (const std::string& name : sorted_names(sim_dir))
        if (ends_with(name, ".pem"))
            certificates.push_back(
                AgentCertificate::load_file(sim_dir + "/" + name, ca.options().oid_arc));
    AuditCertificates audit_certs;
    for (const auto& c : certificates) audit_certs.add_der(c.der());

    // ---- pass 1: verify the whole log, find the period and the covering checkpoint ------------
    LogSource source(o, log_id);
    AuditVerifyOptions vo;
    vo.require_closed = false;
    vo.expected_log_id = log_id;
    AuditLogVerifier verifier(audit_certs, vo);
    std::vector<Checkpoint> checkpoints;
    std::optional<std::uint64_t> first_seq, last_seq;
    std::uint64_t first_line = 0, last_line = 0, line_no = 0;
    bool stopped = false;
    auto in_period = [&](TimeNs t) {
        return (!o.from_ns || t >= *o.from_ns) && (!o.to_ns || t <= *o.to_ns);
    };
    source.for_each_line([&](std::string_view line) {
        if (stopped) return;
        ++line_no;
        if (!verifier.add_line(line)) {
            stopped = true;
            return;
        }
        // The verifier accepted the line: it is canonical, so its first member tells its kind.
        if (line.rfind("{\"key_fp\"", 0) == 0) {
            checkpoints.push_back({line_no, parse_audit_checkpoint(line), std::string(line)});
        } else {
            const AuditRecord r = parse_audit_record(line);
            if (in_period(r.ts_ns)) {
                if (!first_seq) {
                    first_seq = r.seq;
                    first_line = line_no;
                }
                last_seq = r.seq;
                last_line = line_no;
            }
        }
    });
    const AuditVerifyResult verdict = verifier.finish();
    if (!verdict.ok)
        throw Error(ErrorCategory::invalid_input,
                    "the audit log " + source.name() + " does not verify (" +
                        to_string(verdict.problem) + ": " + verdict.message +
                        "): a log that does not verify is not exported");
    const MerkleTree& tree = verifier.tree();

    std::optional<std::size_t> cover;  // index into checkpoints
    if (last_seq) {
        for (std::size_t i = 0; i < checkpoints.size(); ++i)
            if (checkpoints[i].line > last_line) {
                cover = i;
                break;
            }
        if (!cover)
            throw Error(ErrorCategory::invalid_state,
                        "records " + std::to_string(verdict.covered) + " to " +
                            std::to_string(*last_seq) + " of " + source.name() +
                            " are not covered by a signed checkpoint yet (the log is still "
                            "being written, or its writer stopped without closing it): retry "
                            "after the next checkpoint, or end the period with --to before "
                            "those records");
    }

    // ---- pass 2: the extract -------------------------------------------------------------------
    std::string extract;
    std::vector<const Checkpoint*> extract_checkpoints;
    std::vector<std::uint64_t> extract_seqs;
    std::uint64_t unsigned_records = 0;
    if (last_seq) {
        std::size_t next_cp = 0;
        line_no = 0;
        bool done = false;
        source.for_each_line([&](std::string_view line) {
            if (done) return;
            ++line_no;
            if (line_no < first_line) return;
            if (line.rfind("{\"key_fp\"", 0) == 0) {
                while (next_cp < checkpoints.size() && checkpoints[next_cp].line < line_no)
                    ++next_cp;
                if (next_cp >= checkpoints.size() || checkpoints[next_cp].text != line)
                    throw Error(ErrorCategory::invalid_state,
                                source.name() + " changed while it was exported (line " +
                                    std::to_string(line_no) + ")");
                extract_checkpoints.push_back(&checkpoints[next_cp]);
                extract.append(line.data(), line.size()).push_back('\n');
                if (line_no == checkpoints[*cover].line) done = true;
                return;
            }
            const AuditRecord r = parse_audit_record(line);
            if (r.seq > *last_seq) return;
            if (r.sig.empty()) ++unsigned_records;
            extract_seqs.push_back(r.seq);
            extract.append(line.data(), line.size()).push_back('\n');
        });
        if (!done || extract_seqs.size() != *last_seq - *first_seq + 1)
            throw Error(ErrorCategory::invalid_state,
                        source.name() + " changed while it was exported");
    }

    // ---- proofs ---------------------------------------------------------------------------------
    std::string inclusion, consistency;
    {
        std::size_t c = 0;
        for (std::uint64_t seq : extract_seqs) {
            while (extract_checkpoints[c]->value.size <= seq) ++c;
            const AuditCheckpoint& cp = extract_checkpoints[c]->value;
            json j = {{"seq", seq},
                      {"leaf_hash", to_hex(tree.leaf(seq))},
                      {"checkpoint_size", cp.size},
                      {"checkpoint_root", to_hex(cp.root)},
                      {"path", hex_path(tree.inclusion_proof(seq, cp.size))}};
            inclusion += j.dump() + "\n";
        }
        std::vector<const AuditCheckpoint*> chain;
        for (const Checkpoint* cp : extract_checkpoints) chain.push_back(&cp->value);
        if (!chain.empty() && !checkpoints.empty() &&
            checkpoints.back().value.size > chain.back()->size)
            chain.push_back(&checkpoints.back().value);
        for (std::size_t i = 0; i + 1 < chain.size(); ++i) {
            json j = {
                {"from_size", chain[i]->size},
                {"from_root", to_hex(chain[i]->root)},
                {"to_size", chain[i + 1]->size},
                {"to_root", to_hex(chain[i + 1]->root)},
                {"path", hex_path(tree.consistency_proof(chain[i]->size, chain[i + 1]->size))}};
            consistency += j.dump() + "\n";
        }
    }

    // ---- the CRL (a reissue is itself a CA log record), then the CA log ---------------------
    const CertificateRevocationList crl = ca.current_crl();
    const std::string ca_log_path = o.state_dir + "/audit/ca.jsonl";
    std::optional<std::string> ca_log;
    json ca_log_info = nullptr;
    if (file_exists(ca_log_path)) {
        std::string text = read_file_bytes(ca_log_path);
        // Read after the CRL's turn: a line without its newline is a write another process
        // sharing the state directory has in progress (or one that failed): leave it out.
        const std::size_t end = text.rfind('\n');
        text.resize(end == std::string::npos ? 0 : end + 1);
        AuditCertificates ca_certs;
        ca_certs.add_der(anchor.der());
        AuditVerifyOptions cvo;
        cvo.require_closed = false;
        cvo.expected_log_id = "ca";
        std::vector<std::string> lines;
        for (const LogLine& l : parse_json_lines(text, ca_log_path)) lines.push_back(l.text);
        const AuditVerifyResult r = verify_audit_lines(lines, ca_certs, cvo);
        if (!r.ok && !(r.problem == AuditProblem::empty_log && lines.empty()))
            throw Error(ErrorCategory::invalid_input,
                        "the CA log " + ca_log_path + " does not verify (" + to_string(r.problem) +
                            ": " + r.message + "): it is not exported");
        ca_log_info = {{"records", r.records},
                       {"checkpoints", r.checkpoints},
                       {"uncovered_records", r.uncovered_records}};
        ca_log = std::move(text);
    }

    // ---- notes: what the package cannot show
    // -------------------------------------------------------
    json notes = json::array();
    if (!last_seq) notes.push_back("The log has no record in the requested period.");
    if (unsigned_records > 0)
        notes.push_back(std::to_string(unsigned_records) +
                        " exported records carry no signature of their own; they are vouched for "
                        "by the signed checkpoints through their inclusion proofs.");
    if (verdict.uncovered_records > 0)
        notes.push_back(
            "The log was still open at export: " + std::to_string(verdict.uncovered_records) +
            " records after its latest checkpoint (outside the period) are not in "
            "the package.");
    if (source.torn_tail() > 0)
        notes.push_back("The log file ended in an unfinished line (" +
                        std::to_string(source.torn_tail()) +
                        " bytes, a write in progress or a crash); it is not in the package.");
    bool simulation = false;
    for (const auto& c : certificates) simulation = simulation || c.is_simulation();
    if (simulation)
        notes.push_back(
            "This is a replay log: its records were made on simulated time under a "
            "simulation certificate (OU=simulation) from a throwaway simulation CA, "
            "not by production trading; that certificate does not chain to the CA.");
    if (!ca_log)
        notes.push_back(
            "The state directory has no CA log (audit/ca.jsonl): approvals are "
            "shown from the CA's state files, which are signed one by one but not "
            "logged.");
    else if (ca_log_info["uncovered_records"].get<std::uint64_t>() > 0)
        notes.push_back("The CA log's last " +
                        std::to_string(ca_log_info["uncovered_records"].get<std::uint64_t>()) +
                        " records follow its latest checkpoint: they are vouched for by their "
                        "own signatures only.");

    // ---- write
    // ------------------------------------------------------------------------------------
    Cleanup cleanup(out_dir, o.write_tarball ? tarball : out_dir + ".tar.gz.unused");
    if (!is_dir(out_dir)) {
        make_dirs(out_dir);
        cleanup.created_dir();
    }
    PackageWriter w(out_dir);

    const std::string reg_path = o.state_dir + "/registrations/" + o.agent + ".json";
    w.add(registration_file,
          file_exists(reg_path) ? read_file_bytes(reg_path) : to_json(*registration) + "\n");
    w.add(ca_certificate_file, anchor.pem());
    w.add(crl_file, crl.pem());
    std::map<std::string, Revocation> revocations;
    for (const auto& r : ca.revocations()) revocations[r.serial] = r;
    for (const auto& c : certificates) {
        std::string serial = c.serial();
        json info = {{"serial", serial},
                     {"fingerprint", c.fingerprint()},
                     {"subject", c.subject()},
                     {"issuer", c.issuer()},
                     {"agent", c.agent_id()},
                     {"not_before", format_timestamp(c.not_before())},
                     {"not_before_ns", c.not_before()},
                     {"not_after", format_timestamp(c.not_after())},
                     {"not_after_ns", c.not_after()},
                     {"simulation", c.is_simulation()},
                     {"scope_critical", c.scope_critical()}};
        if (c.has_scope()) {
            info["scope"] = json::parse(to_json(c.scope()));
            info["scope_sha256"] = scope_sha256_hex(c.scope());
        } else {
            info["scope"] = nullptr;
            info["scope_error"] = c.scope_error();
        }
        if (!c.is_simulation() && crl.lists(serial)) {
            json rv = {{"listed_on_crl", true}};
            const auto it = revocations.find(serial);
            if (it != revocations.end()) {
                rv["reason"] = it->second.reason;
                rv["revoked_at_ns"] = it->second.revoked_at;
            }
            info["revocation"] = rv;
        }
        if (w.files().count(certificates_dir + serial + ".pem") != 0)
            serial += "-" + c.fingerprint().substr(7, 8);
        w.add(certificates_dir + serial + ".pem", c.pem());
        w.add(certificates_dir + serial + ".json", info.dump(2) + "\n");
    }
    const std::string approval_path = o.state_dir + "/approvals/" + o.agent + ".json";
    if (file_exists(approval_path))
        w.add(scope_approval_file, read_file_bytes(approval_path));
    else
        notes.push_back("The agent has no approved scope in the state directory.");
    const std::string baseline_dir = o.state_dir + "/baselines/" + o.agent;
    bool approved_baseline = false;
    for (const std::string& name : sorted_names(baseline_dir)) {
        if (!ends_with(name, ".json")) continue;
        const std::string stem = name.substr(0, name.find('.'));
        if (stem.empty() || stem.find_first_not_of("0123456789") != std::string::npos ||
            stem[0] == '0' || (name != stem + ".json" && name != stem + ".approval.json"))
            continue;
        approved_baseline = approved_baseline || name == stem + ".approval.json";
        w.add(baselines_dir + name, read_file_bytes(baseline_dir + "/" + name));
    }
    if (!approved_baseline)
        notes.push_back(
            "No approved baseline: orders were checked against the certified limits "
            "only, not scored against approved behaviour.");

    w.add(extract_file, extract);
    if (!checkpoints.empty()) w.add(latest_checkpoint_file, checkpoints.back().text + "\n");
    if (ca_log) w.add(ca_log_file, *ca_log);
    w.add(inclusion_file, inclusion);
    w.add(consistency_file, consistency);

    const std::vector<LogLine> extract_lines = parse_json_lines(extract, extract_file);
    const std::vector<LogLine> ca_lines =
        ca_log ? parse_json_lines(*ca_log, ca_log_file) : std::vector<LogLine>{};
    const json timeline = build_timeline(o.agent, extract_lines, ca_lines, o.from_ns, o.to_ns);
    w.add(timeline_file, timeline.dump(2) + "\n");

    const TimeNs now = clock.now_ns();
    json manifest = {
        {"format", export_format},
        {"generator", {{"name", "kakunin"}, {"version", version_string}}},
        {"generated_at_ns", now},
        {"generated_at", format_timestamp(now)},
        {"agent", o.agent},
        {"log_id", log_id},
        {"source", source.from_postgres() ? "postgres" : "file"},
        {"oid_arc", ca.options().oid_arc},
        {"period",
         {{"from_ns", o.from_ns ? json(*o.from_ns) : json(nullptr)},
          {"to_ns", o.to_ns ? json(*o.to_ns) : json(nullptr)}}},
        {"audit",
         {{"records", extract_seqs.size()},
          {"first_seq", first_seq ? json(*first_seq) : json(nullptr)},
          {"last_seq", last_seq ? json(*last_seq) : json(nullptr)},
          {"checkpoints", extract_checkpoints.size()},
          {"log_records", verdict.records},
          {"unsigned_records", unsigned_records},
          {"covering_checkpoint",
           cover ? checkpoint_json(checkpoints[*cover].value) : json(nullptr)},
          {"latest_checkpoint",
           checkpoints.empty() ? json(nullptr) : checkpoint_json(checkpoints.back().value)}}},
        {"ca",
         {{"certificate", ca_certificate_file},
          {"fingerprint", anchor.fingerprint()},
          {"subject", anchor.subject()},
          {"key_label", ca.options().key_label}}},
        {"ca_log", ca_log_info},
        {"notes", notes},
        {"regulatory_mapping", mapping}};

    PackageView view = load_package_view(out_dir, manifest);
    view.timeline = timeline;
    w.add(report_file, render_report(view));

    json files = json::array();
    for (const auto& [path, bytes] : w.files())
        files.push_back({{"path", path}, {"sha256", sha256_hex(bytes)}, {"bytes", bytes.size()}});
    manifest["files"] = files;
    const std::string manifest_text = manifest.dump(2) + "\n";
    write_file_bytes(out_dir + "/" + manifest_file, manifest_text);
    const std::string manifest_hash = sha256_hex(manifest_text);
    const std::string signed_text =
        std::string(export_manifest_signature_context) + "\n" + manifest_hash + "\n";
    const json sig = {{"format", signature_format},
                      {"algorithm", to_string(ca_public.algorithm)},
                      {"key_fp", anchor.fingerprint()},
                      {"manifest_sha256", manifest_hash},
                      {"signature", crypto::base64_encode(kms.sign(ca_key, signed_text))}};
    write_file_bytes(out_dir + "/" + signature_file, sig.dump(2) + "\n");

    // The exporter never hands out a package that does not verify.
    ExportVerifyOptions pin;
    pin.pinned_ca = anchor.der();
    const ExportVerifyResult check = verify_export_package(out_dir, pin);
    if (!check.ok)
        throw Error(ErrorCategory::invalid_state,
                    "the package written to " + out_dir + " does not verify: " + check.message);

    ExportSummary summary;
    summary.out_dir = out_dir;
    if (o.write_tarball) {
        std::vector<std::string> entries;
        std::vector<std::string> all;
        for (const auto& [path, bytes] : w.files()) all.push_back(path);
        all.push_back(manifest_file);
        all.push_back(signature_file);
        std::sort(all.begin(), all.end());
        std::string last_dir;
        for (const std::string& path : all) {
            const std::size_t slash = path.rfind('/');
            const std::string d = slash == std::string::npos ? "" : path.substr(0, slash + 1);
            if (!d.empty() && d != last_dir) entries.push_back(d);
            last_dir = d;
            entries.push_back(path);
        }
        const std::string top = std::filesystem::path(out_dir).filename().string();
        write_tar_gz(out_dir, top, entries, tarball, now / 1'000'000'000);
        summary.tarball = tarball;
    }
    cleanup.done();

    summary.log_id = log_id;
    summary.records = extract_seqs.size();
    summary.first_seq = first_seq.value_or(0);
    summary.last_seq = last_seq.value_or(0);
    summary.checkpoints = extract_checkpoints.size();
    summary.log_records = verdict.records;
    summary.timeline_entries = timeline.size();
    summary.files = files.size();
    summary.manifest_sha256 = manifest_hash;
    for (const auto& n : notes) summary.notes.push_back(n.get<std::string>());
    return summary;
}

}  // namespace kakunin
