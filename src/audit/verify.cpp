// Offline verification of an audit log (DESIGN §5; docs/audit-format.md "Verifying a log").
#include "kakunin/audit_verify.hpp"

#include <botan/data_src.h>
#include <botan/x509cert.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include <botan/pk_keys.h>
#include "audit/json.hpp"

#include "crypto/signature.hpp"
#include "kakunin/error.hpp"

namespace kakunin {

// ---- certificates ----------------------------------------------------------------------------

namespace {

/// The one agent id a certificate's subject names (its one CN), else empty.
std::string subject_agent(const Botan::X509_Certificate& cert) {
    const std::vector<std::string> cn = cert.subject_info("X520.CommonName");
    return cn.size() == 1 ? cn.front() : std::string();
}

constexpr std::string_view ca_log_id = "ca";

}  // namespace

struct AuditCertificates::Impl {
    struct Key {
        crypto::SignatureChecker checker;
        std::size_t entry;  // index into entries
    };
    std::map<std::string, Key, std::less<>> keys;
    std::vector<Entry> entries;
    std::vector<std::string> notes;

    std::string add(const Botan::X509_Certificate& cert, const std::string& source,
                    std::optional<std::string_view> agent = std::nullopt) {
        const std::vector<std::uint8_t> der = cert.BER_encode();
        std::string fp = certificate_fingerprint(der);
        const bool ca = cert.is_CA_cert();
        if (agent && ca)
            throw Error(ErrorCategory::invalid_input,
                        "certificate " + fp + " is a CA certificate: it signs the CA log only");
        if (agent && agent->empty())
            throw Error(ErrorCategory::invalid_input, "certificate " + fp + ": empty agent id");
        std::unique_ptr<Botan::Public_Key> key(cert.load_subject_public_key());
        crypto::SignatureChecker checker(std::move(key));
        const auto it = keys.find(fp);
        if (it != keys.end()) {
            // The same certificate again (e.g. in two files): an explicit agent overrides.
            if (agent) entries[it->second.entry].agent = std::string(*agent);
            return fp;
        }
        Entry e;
        e.fingerprint = fp;
        e.der = der;
        e.source = source;
        e.ca = ca;
        if (!ca) e.agent = agent ? std::string(*agent) : subject_agent(cert);
        entries.push_back(std::move(e));
        keys.emplace(fp, Key{std::move(checker), entries.size() - 1});
        return fp;
    }
};

AuditCertificates::AuditCertificates() : m_impl(std::make_unique<Impl>()) {}
AuditCertificates::~AuditCertificates() = default;
AuditCertificates::AuditCertificates(AuditCertificates&&) noexcept = default;
AuditCertificates& AuditCertificates::operator=(AuditCertificates&&) noexcept = default;

namespace {

Botan::X509_Certificate certificate_from_der(const std::vector<std::uint8_t>& der) {
    try {
        return Botan::X509_Certificate(der);
    } catch (const std::exception& e) {
        throw Error(ErrorCategory::invalid_input, std::string("certificate: ") + e.what());
    }
}

}  // namespace

std::string AuditCertificates::add_der(const std::vector<std::uint8_t>& der) {
    return m_impl->add(certificate_from_der(der), "");
}

std::string AuditCertificates::add_der(const std::vector<std::uint8_t>& der,
                                       std::string_view agent) {
    return m_impl->add(certificate_from_der(der), "", agent);
}

void AuditCertificates::add_file(const std::string& path) {
    std::vector<Botan::X509_Certificate> certs;
    try {
        Botan::DataSource_Stream src(path, true);
        while (!src.end_of_data()) {
            try {
                certs.emplace_back(src);
            } catch (const Botan::Exception&) {
                if (certs.empty()) throw;
                break;  // trailing text after the last PEM block
            }
        }
    } catch (const Botan::Stream_IO_Error& e) {
        throw Error(ErrorCategory::io, "certificate file " + path + ": " + e.what());
    } catch (const std::exception& e) {
        throw Error(ErrorCategory::invalid_input, "certificate file " + path + ": " + e.what());
    }
    for (const auto& c : certs) {
        try {
            m_impl->add(c, path);
        } catch (const Error&) {
            // A certificate whose key cannot sign audit lines (e.g. an RSA root) is not needed.
        }
    }
}

AuditCertificates AuditCertificates::from_directory(const std::string& dir) {
    AuditCertificates out;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) throw Error(ErrorCategory::io, "certificate directory " + dir + ": " + ec.message());
    std::vector<std::string> files;
    for (const auto& entry : it) {
        const std::string ext = entry.path().extension().string();
        if (entry.is_regular_file() &&
            (ext == ".pem" || ext == ".crt" || ext == ".cer" || ext == ".der")) {
            files.push_back(entry.path().string());
        }
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        try {
            out.add_file(f);
        } catch (const Error& e) {
            if (e.category() != ErrorCategory::invalid_input) throw;
            // A CRL, a key or anything else that is no certificate signs nothing: say so, and
            // go on (signatures by a certificate that is not loaded do not verify).
            std::string why = e.what();
            const std::string prefix = "certificate file " + f + ": ";
            if (why.rfind(prefix, 0) == 0) why.erase(0, prefix.size());
            out.m_impl->notes.push_back(f + ": skipped, not a certificate (" + why + ")");
        }
    }
    return out;
}

bool AuditCertificates::contains(std::string_view fingerprint) const {
    return m_impl->keys.find(fingerprint) != m_impl->keys.end();
}

std::size_t AuditCertificates::size() const { return m_impl->keys.size(); }

bool AuditCertificates::verify(std::string_view fingerprint, const std::uint8_t* message,
                               std::size_t size, const std::uint8_t* sig,
                               std::size_t sig_size) const {
    auto it = m_impl->keys.find(fingerprint);
    return it != m_impl->keys.end() && it->second.checker.verify(message, size, sig, sig_size);
}

std::string AuditCertificates::signer_problem(std::string_view fingerprint, std::string_view log_id,
                                              std::string_view agent) const {
    auto it = m_impl->keys.find(fingerprint);
    if (it == m_impl->keys.end())
        return std::string(fingerprint) + ", which is not among the certificates given";
    const Entry& e = m_impl->entries[it->second.entry];
    const std::string who =
        std::string(fingerprint) + (e.source.empty() ? std::string() : " (" + e.source + ")");
    if (log_id == ca_log_id) {
        if (e.ca) return {};
        return who + ", not a CA certificate: only the CA key signs the CA log";
    }
    if (e.ca)
        return who +
               ", a CA certificate: the CA key signs the CA log only, never the log of agent '" +
               std::string(agent) + "'";
    if (e.agent.empty())
        return who + ", which names no agent (its subject has not exactly one CN): it signs no log";
    if (e.agent != agent)
        return who + ", the certificate of '" + e.agent + "', not of agent '" + std::string(agent) +
               "'";
    return {};
}

std::vector<AuditCertificates::Entry> AuditCertificates::entries() const { return m_impl->entries; }

const std::vector<std::string>& AuditCertificates::notes() const noexcept { return m_impl->notes; }

std::string audit_log_agent_problem(std::string_view log_id, std::string_view agent) {
    if (log_id == ca_log_id) {
        if (agent == ca_log_id) return {};
        return "the CA log \"ca\" holds a record of agent \"" + std::string(agent) + "\"";
    }
    if (log_id == agent) return {};
    if (log_id.size() > agent.size() + 1 && log_id.compare(0, agent.size(), agent) == 0 &&
        log_id[agent.size()] == '.' && !agent.empty())
        return {};
    return "log \"" + std::string(log_id) + "\" is not the log of agent \"" + std::string(agent) +
           "\" (a log's id is its agent's id, or that id followed by \".\" and a suffix)";
}

bool verify_audit_signature(const PublicKeyInfo& key, const std::uint8_t* message, std::size_t size,
                            const std::uint8_t* sig, std::size_t sig_size) {
    const auto checker = crypto::SignatureChecker::from_spki(key.spki_der);
    if (checker.algorithm() != key.algorithm) {
        throw Error(ErrorCategory::crypto, std::string("signature: key is ") +
                                               to_string(checker.algorithm()) + ", expected " +
                                               to_string(key.algorithm));
    }
    return checker.verify(message, size, sig, sig_size);
}

const char* to_string(AuditProblem p) noexcept {
    switch (p) {
        case AuditProblem::none: return "none";
        case AuditProblem::empty_log: return "empty_log";
        case AuditProblem::malformed_line: return "malformed_line";
        case AuditProblem::wrong_log_id: return "wrong_log_id";
        case AuditProblem::seq_gap: return "seq_gap";
        case AuditProblem::unknown_certificate: return "unknown_certificate";
        case AuditProblem::bad_record_signature: return "bad_record_signature";
        case AuditProblem::missing_record_signature: return "missing_record_signature";
        case AuditProblem::bad_checkpoint_signature: return "bad_checkpoint_signature";
        case AuditProblem::checkpoint_regressed: return "checkpoint_regressed";
        case AuditProblem::checkpoint_beyond_records: return "checkpoint_beyond_records";
        case AuditProblem::root_mismatch: return "root_mismatch";
        case AuditProblem::not_covered: return "not_covered";
        case AuditProblem::known_checkpoint_mismatch: return "known_checkpoint_mismatch";
        case AuditProblem::wrong_agent: return "wrong_agent";
        case AuditProblem::wrong_signer: return "wrong_signer";
    }
    return "unknown";
}

// ---- the verifier ----------------------------------------------------------------------------

struct AuditLogVerifier::Impl {
    Impl(const AuditCertificates& c, AuditVerifyOptions o) : certs(c), options(std::move(o)) {
        result.log_id = options.expected_log_id;
    }

    const AuditCertificates& certs;
    AuditVerifyOptions options;
    AuditVerifyResult result;
    MerkleTree tree;
    audit_detail::ParsedLine parsed;
    std::string error;
    std::vector<std::uint8_t> sig;
    std::uint64_t line_no = 0;
    bool failed = false;
    std::string allowed_signer;  ///< the last fingerprint found allowed to sign this log

    bool fail(AuditProblem p, std::uint64_t seq, const std::string& message) {
        failed = true;
        result.ok = false;
        result.problem = p;
        result.first_bad_seq = seq;
        result.line = line_no;
        result.message = message;
        return false;
    }

    std::string at() const { return "line " + std::to_string(line_no) + ": "; }

    bool check_log_id(const std::string& log_id, std::uint64_t seq, const char* what) {
        if (result.log_id.empty()) result.log_id = log_id;
        if (log_id == result.log_id) return true;
        return fail(AuditProblem::wrong_log_id, seq,
                    at() + what + " of log \"" + log_id + "\" in log \"" + result.log_id +
                        "\" (seq " + std::to_string(seq) + ")");
    }

    /// The log's agent is the one its first record names, and the log's id must be that
    /// agent's; every later record must name the same agent.
    bool check_agent(const std::string& agent, std::uint64_t seq) {
        if (result.agent.empty()) {
            const std::string problem = audit_log_agent_problem(result.log_id, agent);
            if (!problem.empty())
                return fail(AuditProblem::wrong_agent, seq,
                            at() + "seq " + std::to_string(seq) + ": " + problem);
            result.agent = agent;
            allowed_signer.clear();  // found allowed for the log id alone
            return true;
        }
        if (agent == result.agent) return true;
        return fail(AuditProblem::wrong_agent, seq,
                    at() + "seq " + std::to_string(seq) + " concerns agent \"" + agent +
                        "\" in the log of agent \"" + result.agent + "\"");
    }

    /// Who signed a line must be allowed to sign this log (docs/audit-format.md §5). `what`
    /// names the line for the message: a record's seq, or a checkpoint's size.
    bool check_signer(const std::string& fp, const std::string& agent, std::uint64_t seq,
                      const char* what, std::uint64_t number) {
        if (fp == allowed_signer) return true;  // the usual case: the same key line after line
        const std::string problem = certs.signer_problem(fp, result.log_id, agent);
        if (problem.empty()) {
            allowed_signer = fp;
            return true;
        }
        return fail(AuditProblem::wrong_signer, seq,
                    at() + what + std::to_string(number) + " is signed by " + problem);
    }

    /// The agent whose certificates sign this log: "ca" for the CA log; before the first record
    /// (a checkpoint of size 0) the one the log id names.
    const std::string& log_agent() const {
        return result.agent.empty() ? result.log_id : result.agent;
    }

    bool record(const AuditRecord& r, std::string_view canonical, const std::string& agent,
                const std::string& cert_fp) {
        const std::uint64_t expected = tree.size();
        if (!check_log_id(r.log_id, expected, "record")) return false;
        if (r.seq != expected) {
            return fail(AuditProblem::seq_gap, expected,
                        at() + "expected seq " + std::to_string(expected) + ", found seq " +
                            std::to_string(r.seq) +
                            (r.seq > expected ? " (records missing)"
                                              : " (record repeated or out of order)"));
        }
        // The agent whose certificates may sign: the log's, or for its first record the one the
        // record names (checked against the log id below). The signature is checked first, so
        // that an altered record is reported as altered.
        const std::string& signer_agent = result.agent.empty() ? agent : result.agent;
        if (!r.sig.empty()) {
            if (!certs.contains(cert_fp)) {
                return fail(AuditProblem::unknown_certificate, r.seq,
                            at() + "seq " + std::to_string(r.seq) + " is signed by " + cert_fp +
                                ", which is not among the certificates given");
            }
            try {
                sig = base64_decode(r.sig);
            } catch (const Error&) {
                return fail(AuditProblem::malformed_line, r.seq,
                            at() + "seq " + std::to_string(r.seq) + ": sig is not base64");
            }
            const auto* msg = reinterpret_cast<const std::uint8_t*>(canonical.data());
            if (!certs.verify(cert_fp, msg, canonical.size(), sig.data(), sig.size())) {
                return fail(AuditProblem::bad_record_signature, r.seq,
                            at() + "seq " + std::to_string(r.seq) +
                                ": record signature does not verify (record altered or not "
                                "signed by " +
                                cert_fp + ")");
            }
            // A genuine signature, but is it by one who may sign this log?
            if (!check_signer(cert_fp, signer_agent, r.seq, "seq ", r.seq)) return false;
            ++result.signed_records;
        } else if (options.require_record_signatures) {
            return fail(AuditProblem::missing_record_signature, r.seq,
                        at() + "seq " + std::to_string(r.seq) + " is not signed");
        }
        if (!check_agent(agent, r.seq)) return false;
        tree.append(merkle_leaf_hash(canonical));
        ++result.records;
        return true;
    }

    bool checkpoint(const AuditCheckpoint& c) {
        const std::uint64_t from = result.covered;
        if (!check_log_id(c.log_id, tree.size(), "checkpoint")) return false;
        const std::string range = "[" + std::to_string(from) + ", " + std::to_string(c.size) + ")";
        if (c.size < result.covered) {
            return fail(AuditProblem::checkpoint_regressed, c.size,
                        at() + "checkpoint of size " + std::to_string(c.size) +
                            " after one of size " + std::to_string(result.covered));
        }
        if (!certs.contains(c.key_fp)) {
            return fail(AuditProblem::unknown_certificate, from,
                        at() + "checkpoint of size " + std::to_string(c.size) + " is signed by " +
                            c.key_fp + ", which is not among the certificates given");
        }
        const std::string text = c.signed_text();
        if (!certs.verify(c.key_fp, reinterpret_cast<const std::uint8_t*>(text.data()), text.size(),
                          c.sig.data(), c.sig.size())) {
            return fail(AuditProblem::bad_checkpoint_signature, from,
                        at() + "checkpoint of size " + std::to_string(c.size) +
                            ": signature does not verify, so records " + range +
                            " are not vouched for");
        }
        if (!check_signer(c.key_fp, log_agent(), from, "checkpoint of size ", c.size)) return false;
        if (c.size > tree.size()) {
            return fail(AuditProblem::checkpoint_beyond_records, tree.size(),
                        at() + "checkpoint covers " + std::to_string(c.size) +
                            " records but only " + std::to_string(tree.size()) +
                            " precede it: seq " + std::to_string(tree.size()) + " onwards missing");
        }
        if (tree.root(c.size) != c.root) {
            return fail(AuditProblem::root_mismatch, from,
                        at() + "checkpoint of size " + std::to_string(c.size) + " has root " +
                            to_hex(c.root) + " but the records give " + to_hex(tree.root(c.size)) +
                            ": a record in " + range + " was altered, removed or added");
        }
        result.covered = c.size;
        result.root = c.root;
        ++result.checkpoints;
        return true;
    }

    bool add(std::string_view line) {
        if (failed) return false;
        ++line_no;
        if (!audit_detail::parse_line(line, parsed, error)) {
            return fail(AuditProblem::malformed_line, tree.size(),
                        at() + "(after seq " + std::to_string(tree.size()) + " records) " + error);
        }
        if (parsed.kind == audit_detail::LineKind::record) {
            return record(parsed.record, parsed.canonical, parsed.agent, parsed.cert_fp);
        }
        return checkpoint(parsed.checkpoint);
    }

    AuditVerifyResult finish() {
        if (failed) return result;
        line_no = 0;
        if (result.records == 0 && result.checkpoints == 0) {
            fail(AuditProblem::empty_log, 0, "the log is empty");
            return result;
        }
        result.uncovered_records = tree.size() - result.covered;
        if (options.known_checkpoint) {
            const AuditCheckpoint& k = *options.known_checkpoint;
            const std::string text = k.signed_text();
            if (k.log_id != result.log_id || k.size > tree.size() || tree.root(k.size) != k.root ||
                !certs.signer_problem(k.key_fp, result.log_id, log_agent()).empty() ||
                !certs.verify(k.key_fp, reinterpret_cast<const std::uint8_t*>(text.data()),
                              text.size(), k.sig.data(), k.sig.size())) {
                fail(AuditProblem::known_checkpoint_mismatch, std::min(k.size, tree.size()),
                     "the log (" + std::to_string(tree.size()) +
                         " records) does not extend the known checkpoint of size " +
                         std::to_string(k.size) + " with root " + to_hex(k.root));
                return result;
            }
        }
        if (result.uncovered_records != 0 && options.require_closed) {
            fail(AuditProblem::not_covered, result.covered,
                 "records [" + std::to_string(result.covered) + ", " + std::to_string(tree.size()) +
                     ") are not covered by a checkpoint");
            return result;
        }
        result.ok = true;
        return result;
    }
};

AuditLogVerifier::AuditLogVerifier(const AuditCertificates& certificates,
                                   AuditVerifyOptions options)
    : m_impl(std::make_unique<Impl>(certificates, std::move(options))) {}
AuditLogVerifier::~AuditLogVerifier() = default;

bool AuditLogVerifier::add_line(std::string_view line) { return m_impl->add(line); }

void AuditLogVerifier::add_torn_tail(std::string_view tail) {
    Impl& d = *m_impl;
    if (d.failed) return;
    ++d.line_no;
    d.fail(AuditProblem::malformed_line, d.tree.size(),
           d.at() + std::to_string(tail.size()) +
               " bytes without a final newline (an interrupted write; reopening the log with the "
               "writer cuts and records it)");
}
AuditVerifyResult AuditLogVerifier::finish() { return m_impl->finish(); }
const MerkleTree& AuditLogVerifier::tree() const noexcept { return m_impl->tree; }

std::string verify_audit_record_inclusion(std::string_view record_line,
                                          const std::vector<MerkleHash>& proof,
                                          const AuditCheckpoint& checkpoint,
                                          const AuditCertificates& certificates) {
    audit_detail::ParsedLine parsed;
    std::string error;
    if (!audit_detail::parse_line(record_line, parsed, error)) return "record: " + error;
    if (parsed.kind != audit_detail::LineKind::record) return "record: the line is a checkpoint";
    const AuditRecord& r = parsed.record;
    if (r.log_id != checkpoint.log_id) {
        return "record of log \"" + r.log_id + "\" against a checkpoint of log \"" +
               checkpoint.log_id + "\"";
    }
    const std::string text = checkpoint.signed_text();
    if (!certificates.contains(checkpoint.key_fp)) {
        return "checkpoint signed by " + checkpoint.key_fp +
               ", which is not among the certificates given";
    }
    if (std::string p = audit_log_agent_problem(r.log_id, parsed.agent); !p.empty()) return p;
    if (std::string p = certificates.signer_problem(checkpoint.key_fp, r.log_id, parsed.agent);
        !p.empty())
        return "checkpoint signed by " + p;
    if (!certificates.verify(checkpoint.key_fp, reinterpret_cast<const std::uint8_t*>(text.data()),
                             text.size(), checkpoint.sig.data(), checkpoint.sig.size())) {
        return "checkpoint signature does not verify";
    }
    if (!verify_inclusion(r.seq, checkpoint.size, merkle_leaf_hash(parsed.canonical), proof,
                          checkpoint.root)) {
        return "seq " + std::to_string(r.seq) + " is not included in the checkpoint of size " +
               std::to_string(checkpoint.size) + " (record altered or wrong proof)";
    }
    if (!r.sig.empty()) {
        if (std::string p = certificates.signer_problem(parsed.cert_fp, r.log_id, parsed.agent);
            !p.empty())
            return "seq " + std::to_string(r.seq) + " signed by " + p;
        std::vector<std::uint8_t> sig;
        try {
            sig = base64_decode(r.sig);
        } catch (const Error&) {
            return "record sig is not base64";
        }
        if (!certificates.verify(parsed.cert_fp,
                                 reinterpret_cast<const std::uint8_t*>(parsed.canonical.data()),
                                 parsed.canonical.size(), sig.data(), sig.size())) {
            return "seq " + std::to_string(r.seq) + ": record signature does not verify with " +
                   parsed.cert_fp;
        }
    }
    return {};
}

AuditVerifyResult verify_audit_log_file(const std::string& path,
                                        const AuditCertificates& certificates,
                                        const AuditVerifyOptions& options) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw Error(ErrorCategory::io, "audit log " + path + ": cannot open");
    AuditLogVerifier v(certificates, options);
    std::string buf(1 << 20, '\0');
    std::string carry;
    bool going = true;
    while (going) {
        const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
        if (n == 0) break;
        std::size_t start = 0;
        for (std::size_t pos; going && (pos = std::string_view(buf.data(), n).find('\n', start)) !=
                                           std::string_view::npos;
             start = pos + 1) {
            if (carry.empty()) {
                going = v.add_line(std::string_view(buf.data() + start, pos - start));
            } else {
                carry.append(buf, start, pos - start);
                going = v.add_line(carry);
                carry.clear();
            }
        }
        if (going) carry.append(buf, start, n - start);
    }
    if (std::ferror(f.get())) throw Error(ErrorCategory::io, "audit log " + path + ": read error");
    if (going && !carry.empty()) v.add_torn_tail(carry);
    return v.finish();
}

AuditVerifyResult verify_audit_lines(const std::vector<std::string>& lines,
                                     const AuditCertificates& certificates,
                                     const AuditVerifyOptions& options) {
    AuditLogVerifier v(certificates, options);
    for (const auto& l : lines) {
        if (!v.add_line(l)) break;
    }
    return v.finish();
}

}  // namespace kakunin
