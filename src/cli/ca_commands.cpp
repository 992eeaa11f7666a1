// The CA side of the command line (DESIGN §6):
//   kakunin ca init        --dir STATE [--algorithm ed25519|ecdsa-p256] [--kms software|pkcs11 ...]
//   kakunin agent register --dir STATE --agent ID --owner NAME --purpose TEXT [--by NAME]
//   kakunin agent keygen   --agent ID --keys DIR | --kms pkcs11 --pkcs11-module LIB --token LABEL
//                          [--algorithm ed25519|ecdsa-p256] [--label L] [--reuse-key] --csr-out F
//   kakunin scope approve  --dir STATE --agent ID --scope scope.json --approver NAME
//   kakunin cert issue     --dir STATE --agent ID [--validity 24h] [--csr FILE] --out agent.pem
//                          [--postgres CONNINFO]
//   kakunin cert inspect   agent.pem
//   kakunin cert verify    --dir STATE agent.pem [--json]
//   kakunin cert revoke    --dir STATE --serial HEX --reason TEXT
//   kakunin crl            --dir STATE --out crl.pem [--postgres CONNINFO]
#include <sys/stat.h>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "cli/credential_commands.hpp"
#include "crypto/encoding.hpp"
#include "io/durable_file.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/pkcs11_kms.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/postgres_credentials.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/software_kms.hpp"

namespace kakunin::cli {
namespace {

using json = nlohmann::json;

/// Certificates may carry names that are not UTF-8: they are printed with U+FFFD, not refused.
std::string print_json(const json& j, int indent = 2) {
    return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string agent_key_label(std::string_view agent_id) { return "agent:" + std::string(agent_id); }

/// The agent must be registered in this CA; the message says how to do it.
void require_registered(const LocalCa& ca, const std::string& dir, const std::string& agent) {
    validate_agent_id(agent);
    if (!ca.registration(agent))
        throw Error(ErrorCategory::not_found, "unknown agent '" + agent + "': not registered in " +
                                                  dir + " (run 'kakunin agent register --dir " +
                                                  dir + " --agent " + agent + " ...')");
}

std::string describe_kms(const KmsConfig& c, const std::string& dir) {
    if (c.backend == KmsConfig::Backend::pkcs11)
        return "PKCS#11 token '" + c.token_label + "' (" + c.pkcs11_module + ")";
    return "software KMS (" + software_key_dir(dir) + ", encrypted under " +
           SoftwareKms::passphrase_variable + ")";
}

// ---- ca init ----------------------------------------------------------------------------------

struct CaInitArgs {
    std::string dir, algorithm = "ed25519", kms = "software", module, token, name = "Kakunin CA",
                     oid_arc = std::string(default_oid_arc);
};

void ca_init(const CaInitArgs& a) {
    if (a.dir.empty()) throw Error(ErrorCategory::invalid_input, "--dir: empty path");
    KmsConfig config;
    config.algorithm = parse_algorithm(a.algorithm, "--algorithm");
    if (a.kms == "software") {
        config.backend = KmsConfig::Backend::software;
        if (!a.module.empty() || !a.token.empty())
            throw Error(ErrorCategory::invalid_input,
                        "--pkcs11-module and --token belong to --kms pkcs11");
    } else if (a.kms == "pkcs11") {
        config.backend = KmsConfig::Backend::pkcs11;
        if (a.module.empty())
            throw Error(ErrorCategory::invalid_input,
                        "--kms pkcs11 needs --pkcs11-module PATH (the token's PKCS#11 library)");
        if (a.token.empty())
            throw Error(ErrorCategory::invalid_input, "--kms pkcs11 needs --token LABEL");
        config.pkcs11_module = a.module;
        config.token_label = a.token;
    } else {
        throw Error(ErrorCategory::invalid_input,
                    "--kms: '" + a.kms + "' is neither software nor pkcs11");
    }
    (void)scope_extension_oid(a.oid_arc);

    struct stat st;
    if (::stat(a.dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            throw Error(ErrorCategory::invalid_input,
                        "state directory '" + a.dir + "' is not a directory");
        if (::stat((a.dir + "/ca.pem").c_str(), &st) == 0 ||
            ::stat(kms_config_path(a.dir).c_str(), &st) == 0)
            throw Error(ErrorCategory::invalid_state, "'" + a.dir + "' already holds a CA");
    }
    // The secret is checked before anything is created; a token is opened before the directory
    // is made, and a directory made here is removed again if the CA cannot be created in it.
    require_kms_secret(config);
    std::shared_ptr<Kms> kms;
    if (config.backend == KmsConfig::Backend::pkcs11) kms = open_kms(a.dir, config);
    bool created = false;
    if (::mkdir(a.dir.c_str(), 0700) == 0)
        created = true;
    else if (errno != EEXIST)
        throw Error(ErrorCategory::io,
                    "cannot create state directory '" + a.dir + "': " + std::strerror(errno));

    std::unique_ptr<LocalCa> ca;
    SystemClock clock;
    try {
        if (!kms) kms = open_kms(a.dir, config);
        LocalCaOptions options;
        options.state_dir = a.dir;
        options.oid_arc = a.oid_arc;
        CaInitOptions init;
        init.algorithm = config.algorithm;
        init.name = a.name;
        ca = LocalCa::init(kms, clock, options, init);
        save_kms_config(a.dir, config);
    } catch (...) {
        if (created) {
            std::error_code ec;
            std::filesystem::remove_all(a.dir, ec);
        }
        throw;
    }

    const TrustAnchor anchor = ca->trust_anchor();
    std::cout << "CA initialised in " << a.dir << "\n"
              << "  subject    " << anchor.subject() << "\n"
              << "  key        'ca' (" << kakunin::to_string(config.algorithm) << ") in the "
              << describe_kms(config, a.dir) << "\n"
              << "  anchor     " << a.dir << "/ca.pem " << anchor.fingerprint() << "\n"
              << "  crl        " << a.dir << "/crl.pem\n"
              << "  log        " << ca->audit_log_path()
              << " (signed; verify with 'kakunin audit verify --log " << ca->audit_log_path()
              << " --ca " << a.dir << "/ca.pem')\n";
}

// ---- agent register ---------------------------------------------------------------------------

struct RegisterArgs {
    std::string dir, agent, owner, purpose, by;
};

void agent_register(const RegisterArgs& a) {
    validate_agent_id(a.agent);
    std::string by = a.by.empty() ? login_name() : a.by;
    if (by.empty())
        throw Error(ErrorCategory::invalid_input,
                    "--by: cannot tell who is registering the agent; give --by NAME");
    SystemClock clock;
    OpenedCa opened = open_ca(a.dir, clock);
    AgentRegistration r;
    r.agent_id = a.agent;
    r.owner = a.owner;
    r.purpose = a.purpose;
    r.created_at = clock.now_ns();
    r.created_by = by;
    opened.ca->register_agent(r);
    std::cout << "agent '" << r.agent_id << "' registered by " << r.created_by << " at "
              << format_timestamp(r.created_at) << " (owner: " << r.owner
              << "; purpose: " << r.purpose << ")\n";
}

// ---- agent keygen -----------------------------------------------------------------------------

struct KeygenArgs {
    std::string agent, keys, kms = "software", module, token, algorithm, label, csr_out;
    bool reuse_key = false;
    bool json = false;
};

bool exists_path(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

/// A trading host's key store must not be the CA's: refuses DIR when it is a CA state directory
/// or anywhere inside one (STATE/keys, below the CA's kms.json or ca.json).
void refuse_ca_state_dir(const std::string& dir) {
    std::error_code ec;
    std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::path(dir), ec);
    if (ec) p = std::filesystem::absolute(std::filesystem::path(dir), ec);
    for (std::filesystem::path candidate = p; !candidate.empty();
         candidate = candidate.parent_path()) {
        // Not ca.pem: a trading host keeps its copy of the trust anchor beside its keys.
        for (const char* marker : {"kms.json", "ca.json"}) {
            if (exists_path((candidate / marker).string()))
                throw Error(ErrorCategory::invalid_input,
                            "--keys: '" + dir + "' is " +
                                (candidate == p ? "a CA state directory"
                                                : "inside the CA state directory '" +
                                                      candidate.string() + "'") +
                                " (it holds " + marker +
                                "): an agent's key store is its own, on the trading host, "
                                "never the CA's keys directory");
        }
        if (candidate == candidate.root_path()) break;
    }
}

/// The missing parents of a new key store, each mode 0700 (the software KMS makes DIR itself).
void make_parent_dirs(const std::string& dir) {
    const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
    if (parent.empty() || exists_path(parent.string())) return;
    make_parent_dirs(parent.string());
    if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST)
        throw Error(ErrorCategory::io, "--keys: cannot create directory '" + parent.string() +
                                           "': " + std::strerror(errno));
}

void agent_keygen(const KeygenArgs& a) {
    try {
        validate_agent_id(a.agent);
    } catch (const Error& e) {
        throw Error(e.category(), std::string("--agent: ") + e.what());
    }
    const std::string default_label = agent_key_label(a.agent);
    const std::string label = a.label.empty() ? default_label : a.label;
    if (label != default_label && label.rfind(default_label + "/", 0) != 0)
        throw Error(ErrorCategory::invalid_input,
                    "--label: '" + label + "' must be '" + default_label + "' or '" +
                        default_label + "/SUFFIX' (a key of this agent, never the CA's)");
    if (label.size() > 200 || label == default_label + "/")
        throw Error(ErrorCategory::invalid_input,
                    "--label: '" + label + "' needs a suffix after '/' and at most 200 bytes");
    const std::optional<KeyAlgorithm> algorithm =
        a.algorithm.empty()
            ? std::nullopt
            : std::optional<KeyAlgorithm>(parse_algorithm(a.algorithm, "--algorithm"));
    if (a.csr_out.empty()) throw Error(ErrorCategory::invalid_input, "--csr-out: empty path");
    KmsConfig config;
    std::string where;
    if (a.kms == "software") {
        config.backend = KmsConfig::Backend::software;
        if (!a.module.empty() || !a.token.empty())
            throw Error(ErrorCategory::invalid_input,
                        "--pkcs11-module and --token belong to --kms pkcs11");
        if (a.keys.empty())
            throw Error(ErrorCategory::invalid_input,
                        "--kms software needs --keys DIR (the agent's own key store on the trading "
                        "host)");
        where = "software KMS (" + a.keys + ", encrypted under " +
                SoftwareKms::passphrase_variable + ")";
    } else if (a.kms == "pkcs11") {
        config.backend = KmsConfig::Backend::pkcs11;
        if (!a.keys.empty())
            throw Error(ErrorCategory::invalid_input,
                        "--keys belongs to --kms software (a PKCS#11 key lives on the token)");
        if (a.module.empty())
            throw Error(ErrorCategory::invalid_input,
                        "--kms pkcs11 needs --pkcs11-module PATH (the token's PKCS#11 library)");
        if (a.token.empty())
            throw Error(ErrorCategory::invalid_input, "--kms pkcs11 needs --token LABEL");
        config.pkcs11_module = a.module;
        config.token_label = a.token;
        where = "PKCS#11 token '" + a.token + "' (" + a.module + ")";
    } else {
        throw Error(ErrorCategory::invalid_input,
                    "--kms: '" + a.kms + "' is neither software nor pkcs11");
    }
    require_kms_secret(config);
    require_output_file(a.csr_out);

    std::shared_ptr<Kms> kms;
    if (config.backend == KmsConfig::Backend::software) {
        refuse_ca_state_dir(a.keys);
        make_parent_dirs(a.keys);
        kms = SoftwareKms::open(a.keys);
    } else {
        kms = Pkcs11Kms::open(config.pkcs11_module, config.token_label, Pkcs11Kms::pin_from_env());
    }
    // The request's file is made ready before a key is created (after the key store, which may
    // be the directory it goes in).
    io::DurableFile out = io::DurableFile::prepare(a.csr_out);

    // A key store that holds a CA key is a CA's, whatever its path (even one this passphrase
    // cannot open): the CA and approver keys stay on the CA host.
    bool holds_ca = true;
    std::string unreadable;
    try {
        (void)kms->find_key("ca");
    } catch (const Error& e) {
        if (e.category() == ErrorCategory::not_found)
            holds_ca = false;
        else
            unreadable = std::string(" (") + e.what() + ")";
    }
    if (holds_ca)
        throw Error(
            ErrorCategory::invalid_input,
            std::string(config.backend == KmsConfig::Backend::software ? "--keys: " : "--token: ") +
                "the " + where + " holds the CA key 'ca'" + unreadable +
                ": an agent's key store is its own, never the CA's");

    std::optional<KeyHandle> key;
    try {
        key = kms->find_key(label);
    } catch (const Error& e) {
        if (e.category() != ErrorCategory::not_found) throw;
    }
    bool created = false;
    if (key) {
        if (!a.reuse_key)
            throw Error(ErrorCategory::invalid_state,
                        "key '" + label + "' already exists in the " + where +
                            ": refusing to replace it (a Guard may sign with it); --reuse-key "
                            "writes a new request for it (a certificate renewal), --label " +
                            default_label + "/2 makes a new key beside it (a key rotation)");
        if (algorithm && key->algorithm != *algorithm)
            throw Error(ErrorCategory::invalid_input, "--algorithm: key '" + label + "' is " +
                                                          kakunin::to_string(key->algorithm) +
                                                          ", not " +
                                                          kakunin::to_string(*algorithm));
    } else {
        if (a.reuse_key)
            throw Error(ErrorCategory::not_found,
                        "--reuse-key: no key '" + label + "' in the " + where + " to reuse");
        key = kms->create_key(label, algorithm.value_or(KeyAlgorithm::ed25519));
        created = true;
    }

    const std::string pem = agent_certificate_request(*kms, *key, a.agent);
    const std::vector<std::uint8_t> spki = public_key_from_csr(pem);  // what the CA will check
    try {
        out.commit(pem);
    } catch (const Error& e) {
        throw Error(e.category(), "key '" + label + "' is in the " + where + ", but " + a.csr_out +
                                      " was not written (" + e.what() +
                                      "); run again with --reuse-key");
    }
    const std::string key_sha256 = crypto::sha256_hex(
        std::string_view(reinterpret_cast<const char*>(spki.data()), spki.size()));
    if (a.json) {
        json j = {{"agent", a.agent},
                  {"label", label},
                  {"algorithm", kakunin::to_string(key->algorithm)},
                  {"created", created},
                  {"kms", a.kms},
                  {"csr", a.csr_out},
                  {"public_key_sha256", key_sha256}};
        if (config.backend == KmsConfig::Backend::software)
            j["keys"] = a.keys;
        else
            j["token"] = a.token;
        std::cout << print_json(j) << "\n";
        return;
    }
    std::cout << (created ? "key '" : "existing key '") << label << "' ("
              << kakunin::to_string(key->algorithm) << ") in the " << where << "\n"
              << "  request    " << a.csr_out << " (CN=" << a.agent
              << ", signed by the key; public key sha256:" << key_sha256 << ")\n"
              << "  next       on the CA: kakunin cert issue --dir STATE --agent " << a.agent
              << " --csr " << a.csr_out << " --out " << a.agent << ".pem\n";
}

// ---- scope approve ----------------------------------------------------------------------------

struct ApproveArgs {
    std::string dir, agent, scope_path, approver;
};

void scope_approve(const ApproveArgs& a) {
    SystemClock clock;
    OpenedCa opened = open_ca(a.dir, clock);
    require_registered(*opened.ca, a.dir, a.agent);
    const Scope scope = load_scope_file(a.scope_path);
    const ScopeApproval approval = approve_scope(*opened.kms, a.agent, a.approver, scope,
                                                 clock.now_ns(), opened.config.algorithm);
    opened.ca->record_approval(approval, scope);
    std::cout << "scope for agent '" << a.agent << "' approved by " << approval.approver << " at "
              << format_timestamp(approval.approved_at) << "\n"
              << "  scope      sha256:" << approval.scope_sha256 << " (" << a.scope_path << ")\n"
              << "  signed by  key '" << approver_key_label(approval.approver) << "' ("
              << kakunin::to_string(approval.algorithm) << ")\n";
}

// ---- cert issue -------------------------------------------------------------------------------

struct IssueArgs {
    std::string dir, agent, validity, csr, scope_path, out, postgres;
    bool json = false;
};

json certificate_summary(const AgentCertificate& c) {
    return {{"agent", c.agent_id()},
            {"serial", c.serial()},
            {"fingerprint", c.fingerprint()},
            {"not_before", format_timestamp(c.not_before())},
            {"not_after", format_timestamp(c.not_after())}};
}

void cert_issue(const IssueArgs& a) {
    const std::chrono::seconds validity =
        a.validity.empty() ? std::chrono::seconds{0} : parse_duration(a.validity, "--validity");
    if (a.out.empty()) throw Error(ErrorCategory::invalid_input, "--out: empty path");
    // The output is made ready before anything is issued: a certificate that cannot be written
    // is refused, not issued and logged behind the caller's back.
    require_output_file(a.out);
    io::DurableFile out = io::DurableFile::prepare(a.out);
    // Connected before anything is issued, like the output.
    std::optional<PostgresCredentialPublisher> publisher;
    if (!a.postgres.empty()) publisher.emplace(a.postgres);
    SystemClock clock;
    OpenedCa opened = open_ca(a.dir, clock);
    require_registered(*opened.ca, a.dir, a.agent);
    const auto approved = opened.ca->approved_scope(a.agent);
    if (!approved)
        throw Error(ErrorCategory::unauthorised,
                    "agent '" + a.agent +
                        "' has no approved scope: a named person must approve one first "
                        "('kakunin scope approve --dir " +
                        a.dir + " --agent " + a.agent + " --scope scope.json --approver NAME')");

    IssueRequest request;
    request.agent_id = a.agent;
    request.scope = approved->scope;
    request.approval = approved->approval;
    request.validity = validity;
    if (!a.scope_path.empty()) {
        // The caller names the scope the certificate must carry: it must be the approved one.
        request.scope = load_scope_file(a.scope_path);
        const std::string wanted = scope_sha256_hex(request.scope);
        if (wanted != approved->approval.scope_sha256)
            throw Error(ErrorCategory::unauthorised,
                        a.scope_path + " (sha256:" + wanted +
                            ") is not the scope approved for agent '" + a.agent + "' by " +
                            approved->approval.approver + " at " +
                            format_timestamp(approved->approval.approved_at) +
                            " (sha256:" + approved->approval.scope_sha256 +
                            "): a changed scope needs a new 'kakunin scope approve'");
    }
    if (!a.csr.empty()) {
        request.public_key = public_key_from_csr(read_file(a.csr));
    } else {
        const KeyHandle key =
            opened.kms->find_or_create_key(agent_key_label(a.agent), opened.config.algorithm);
        request.public_key = opened.kms->public_key(key).spki_der;
    }
    const AgentCertificate cert = opened.ca->issue(request);
    try {
        out.commit(cert.pem());
    } catch (const Error& e) {
        throw Error(e.category(), "certificate serial " + cert.serial() + " for agent '" + a.agent +
                                      "' was issued and recorded in the CA log, but " + a.out +
                                      " was not written (" + e.what() +
                                      "); the certificate is kept as " + a.dir + "/certs/" +
                                      cert.serial() + ".pem");
    }
    std::optional<PublishedCredential> published;
    try {
        if (publisher) published = publisher->publish(cert);  // running Guards rotate to it
    } catch (const Error& e) {
        throw Error(e.category(), "certificate serial " + cert.serial() + " for agent '" + a.agent +
                                      "' was issued and written to " + a.out +
                                      ", but not published to PostgreSQL (" + e.what() + ")");
    }
    if (a.json) {
        json j = certificate_summary(cert);
        j["out"] = a.out;
        if (published) j["published_seq"] = published->seq;
        j["key"] = a.csr.empty() ? "kms:" + agent_key_label(a.agent) : "csr:" + a.csr;
        std::cout << print_json(j) << "\n";
        return;
    }
    std::cout << "certificate for agent '" << a.agent << "' written to " << a.out << "\n"
              << "  serial      " << cert.serial() << "\n"
              << "  fingerprint " << cert.fingerprint() << "\n"
              << "  valid       " << format_timestamp(cert.not_before()) << " .. "
              << format_timestamp(cert.not_after()) << "\n"
              << "  key         "
              << (a.csr.empty() ? "'" + agent_key_label(a.agent) + "' in the " +
                                      describe_kms(opened.config, a.dir)
                                : "from the request " + a.csr)
              << "\n"
              << "  scope       sha256:" << scope_sha256_hex(cert.scope()) << ", approved by "
              << approved->approval.approver << "\n";
    if (published) std::cout << "  " << publication_line(*published) << "\n";
}

// ---- cert inspect -----------------------------------------------------------------------------

struct InspectArgs {
    std::string path, oid_arc = std::string(default_oid_arc);
};

void cert_inspect(const InspectArgs& a) {
    const AgentCertificate cert = AgentCertificate::load_file(a.path, a.oid_arc);
    json j = certificate_summary(cert);
    j["subject"] = cert.subject();
    j["issuer"] = cert.issuer();
    j["not_before_ns"] = cert.not_before();
    j["not_after_ns"] = cert.not_after();
    j["simulation"] = cert.is_simulation();
    j["scope_oid"] = cert.scope_oid();
    if (cert.has_scope()) {
        j["scope"] = json::parse(to_json(cert.scope()));
        j["scope_critical"] = cert.scope_critical();
    } else {
        j["scope_error"] = cert.scope_error();
    }
    std::cout << print_json(j) << "\n";
}

// ---- cert verify ------------------------------------------------------------------------------

struct VerifyArgs {
    std::string dir, path;
    bool json = false;
};

/// crl.pem must be the latest CRL that the CA log (verified with ca.pem) records: an older copy
/// is still signed by the CA, and until its nextUpdate it would hide every later revocation.
void require_logged_crl(const std::string& dir, const TrustAnchor& anchor,
                        const CertificateRevocationList& crl) {
    const std::string log = dir + "/audit/ca.jsonl";
    struct stat st;
    if (::stat(log.c_str(), &st) != 0)
        throw Error(ErrorCategory::invalid_state,
                    dir + "/crl.pem cannot be checked against the CA log: " + log + " is missing");
    AuditCertificates certs;
    certs.add_der(anchor.der());
    AuditVerifyOptions options;
    options.expected_log_id = "ca";
    options.require_record_signatures = true;
    options.require_closed = false;
    const AuditVerifyResult verdict = verify_audit_log_file(log, certs, options);
    if (!verdict.ok)
        throw Error(ErrorCategory::invalid_state,
                    log + " does not verify with the key of ca.pem: " + verdict.message);
    std::string latest;
    std::istringstream lines(read_file(log));
    for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        const json j = json::parse(line);
        if (j.at("kind") == "record" && j.at("event") == "crl.issued")
            latest = j.at("payload").at("crl").get<std::string>();
    }
    if (latest.empty() || crypto::base64_decode(latest, "crl") != crl.der())
        throw Error(ErrorCategory::invalid_state,
                    dir +
                        "/crl.pem is not the latest CRL in the CA log: it was restored from an "
                        "older state or altered");
}

void cert_verify(const VerifyArgs& a) {
    require_ca_dir(a.dir, false);
    const TrustAnchor anchor = TrustAnchor::load_file(a.dir + "/ca.pem");
    std::optional<CertificateRevocationList> crl;
    struct stat st;
    if (::stat((a.dir + "/crl.pem").c_str(), &st) == 0) {
        crl = CertificateRevocationList::load_file(a.dir + "/crl.pem");
        require_logged_crl(a.dir, anchor, *crl);
    }
    const std::string text = read_file(a.path);
    const std::vector<std::uint8_t> bytes(text.begin(), text.end());
    const SystemClock clock;
    const CertificateCheck check = verify_certificate(bytes, anchor, crl ? &*crl : nullptr,
                                                      clock.now_ns(), {}, state_oid_arc(a.dir));
    const std::string detail = one_line(check.detail);
    if (a.json) {
        json j = {{"valid", check.ok()}, {"status", to_string(check.status)}, {"detail", detail}};
        std::cout << print_json(j, -1) << "\n";
    }
    if (!check.ok())
        throw Error(ErrorCategory::unauthorised,
                    std::string(to_string(check.status)) + ": " +
                        (detail.empty() ? a.path : a.path + ": " + detail));
    if (!a.json) {
        const AgentCertificate cert = AgentCertificate::load_file(a.path, state_oid_arc(a.dir));
        std::cout << a.path << ": valid (agent '" << cert.agent_id() << "', serial "
                  << cert.serial() << ", until " << format_timestamp(cert.not_after()) << ")\n";
    }
}

// ---- cert revoke ------------------------------------------------------------------------------

struct RevokeArgs {
    std::string dir, serial, reason, postgres;
};

void cert_revoke(const RevokeArgs& a) {
    if (a.reason.empty()) throw Error(ErrorCategory::invalid_input, "--reason: empty");
    SystemClock clock;
    OpenedCa opened = open_ca(a.dir, clock);
    const auto cert = opened.ca->find_certificate(a.serial);
    if (!cert)
        throw Error(ErrorCategory::not_found,
                    "unknown serial '" + a.serial +
                        "': no certificate with it was issued by the CA in " + a.dir);
    const bool already = opened.ca->is_revoked(cert->serial());
    opened.ca->revoke(cert->serial(), a.reason);
    if (!a.postgres.empty()) {
        // Every Guard of this agent listening on the database halts (LISTEN/NOTIFY).
        const std::uint64_t seq = publish_revocation(
            a.postgres, Revocation{cert->serial(), cert->agent_id(), a.reason, clock.now_ns()});
        std::cout << "published to PostgreSQL as revocation #" << seq << "\n";
    }
    if (already) {
        std::cout << "serial " << cert->serial() << " (agent '" << cert->agent_id()
                  << "') was already revoked\n";
        return;
    }
    std::cout << "revoked serial " << cert->serial() << " (agent '" << cert->agent_id()
              << "'): " << a.reason << "\n"
              << "  crl        " << a.dir << "/crl.pem\n";
}

// ---- crl --------------------------------------------------------------------------------------

struct CrlArgs {
    std::string dir, out, postgres;
};

void crl_command(const CrlArgs& a) {
    if (a.out.empty()) throw Error(ErrorCategory::invalid_input, "--out: empty path");
    require_output_file(a.out);
    io::DurableFile out = io::DurableFile::prepare(a.out);  // before a CRL may be issued
    std::optional<PostgresCredentialPublisher> publisher;
    if (!a.postgres.empty()) publisher.emplace(a.postgres);  // likewise
    SystemClock clock;
    OpenedCa opened = open_ca(a.dir, clock);
    const CertificateRevocationList crl = opened.ca->current_crl();
    out.commit(crl.pem());
    std::cout << "CRL written to " << a.out << ": " << crl.revoked_serials().size()
              << " revoked, this update " << format_timestamp(crl.this_update()) << ", next update "
              << format_timestamp(crl.next_update()) << "\n";
    if (!publisher) return;
    try {
        // Every Guard following the database takes it up (update_crl); the same CRL twice is
        // stored once.
        std::cout << "  CRL number " << crl.number() << " "
                  << publication_line(publisher->publish(crl)) << "\n";
    } catch (const Error& e) {
        throw Error(e.category(), "CRL number " + std::to_string(crl.number()) + " written to " +
                                      a.out + ", but not published to PostgreSQL (" + e.what() +
                                      ")");
    }
}

CLI::Option* add_dir(CLI::App* cmd, std::string& dir) {
    return cmd->add_option("--dir", dir, "State directory of the CA")->required();
}

}  // namespace

void add_ca_commands(CLI::App& app) {
    {
        CLI::App* ca = app.add_subcommand("ca", "The certificate authority");
        ca->require_subcommand(1);
        auto args = std::make_shared<CaInitArgs>();
        CLI::App* cmd = ca->add_subcommand(
            "init", "Create a CA (key in the KMS, ca.pem, crl.pem) in a new state directory");
        add_dir(cmd, args->dir);
        cmd->add_option("--algorithm", args->algorithm,
                        "Key algorithm of the CA and of the keys made later: ed25519 or "
                        "ecdsa-p256")
            ->capture_default_str();
        cmd->add_option("--kms", args->kms,
                        "software (keys encrypted under STATE/keys with KAKUNIN_KMS_PASSPHRASE) "
                        "or pkcs11 (PIN from KAKUNIN_PKCS11_PIN)")
            ->capture_default_str();
        cmd->add_option("--pkcs11-module", args->module, "PKCS#11 library (with --kms pkcs11)");
        cmd->add_option("--token", args->token, "PKCS#11 token label (with --kms pkcs11)");
        cmd->add_option("--name", args->name, "Common name of the CA")->capture_default_str();
        cmd->add_option("--oid-arc", args->oid_arc,
                        "OID arc of the scope extension (set your own registered arc)")
            ->capture_default_str();
        cmd->callback([args] { run_command([&] { ca_init(*args); }); });
    }
    {
        CLI::App* agent = app.add_subcommand("agent", "Agents known to the CA");
        agent->require_subcommand(1);
        auto args = std::make_shared<RegisterArgs>();
        CLI::App* cmd = agent->add_subcommand(
            "register", "Record who creates an agent, when, and for what purpose");
        add_dir(cmd, args->dir);
        cmd->add_option("--agent", args->agent, "Agent id ([A-Za-z0-9._-], up to 64)")->required();
        cmd->add_option("--owner", args->owner, "Who answers for the agent")->required();
        cmd->add_option("--purpose", args->purpose, "What the agent is for")->required();
        cmd->add_option("--by", args->by, "Who registers it (default: the login name)");
        cmd->callback([args] { run_command([&] { agent_register(*args); }); });

        auto keygen = std::make_shared<KeygenArgs>();
        CLI::App* gen = agent->add_subcommand(
            "keygen",
            "On the trading host: create the agent's key in its own key store (not the CA's) and "
            "write a certificate request signed by it for 'cert issue --csr'");
        gen->add_option("--agent", keygen->agent, "Agent id ([A-Za-z0-9._-], up to 64)")
            ->required();
        gen->add_option("--keys", keygen->keys,
                        "The agent's key store (software KMS: a directory, encrypted under "
                        "KAKUNIN_KMS_PASSPHRASE); never the CA's STATE/keys");
        gen->add_option("--kms", keygen->kms,
                        "software (--keys DIR) or pkcs11 (--pkcs11-module, --token; PIN from "
                        "KAKUNIN_PKCS11_PIN)")
            ->capture_default_str();
        gen->add_option("--pkcs11-module", keygen->module, "PKCS#11 library (with --kms pkcs11)");
        gen->add_option("--token", keygen->token, "PKCS#11 token label (with --kms pkcs11)");
        gen->add_option("--algorithm", keygen->algorithm,
                        "ed25519 (default, as the CA's) or ecdsa-p256");
        gen->add_option("--label", keygen->label,
                        "Key label: agent:ID (default) or agent:ID/SUFFIX (a new key beside the "
                        "old one)");
        gen->add_flag("--reuse-key", keygen->reuse_key,
                      "The key exists: write a new request for it instead of refusing");
        gen->add_option("--csr-out", keygen->csr_out, "Where to write the request (PEM)")
            ->required();
        gen->add_flag("--json", keygen->json, "Print the key and the request as JSON");
        gen->callback([keygen] { run_command([&] { agent_keygen(*keygen); }); });
    }
    {
        CLI::App* scope = app.add_subcommand("scope", "Authority limits");
        scope->require_subcommand(1);
        auto args = std::make_shared<ApproveArgs>();
        CLI::App* cmd = scope->add_subcommand(
            "approve", "Sign a scope for an agent with the approver's own key in the KMS");
        add_dir(cmd, args->dir);
        cmd->add_option("--agent", args->agent, "Registered agent id")->required();
        cmd->add_option("--scope", args->scope_path, "Scope JSON (DESIGN §3)")->required();
        cmd->add_option("--approver", args->approver,
                        "The approving person (key 'approver:NAME', created on first use)")
            ->required();
        cmd->callback([args] { run_command([&] { scope_approve(*args); }); });
    }
    {
        CLI::App* cert = app.add_subcommand("cert", "Agent certificates");
        cert->require_subcommand(1);
        {
            auto args = std::make_shared<IssueArgs>();
            CLI::App* cmd = cert->add_subcommand(
                "issue", "Issue an agent certificate carrying its approved scope");
            add_dir(cmd, args->dir);
            cmd->add_option("--agent", args->agent, "Registered agent id")->required();
            cmd->add_option("--validity", args->validity, "Lifetime: 90s, 30m, 24h (default), 7d");
            cmd->add_option("--csr", args->csr,
                            "Take the public key from this PKCS#10 request (PEM, from 'agent "
                            "keygen') instead of the KMS key 'agent:ID', after checking its "
                            "self-signature; nothing else in it is used");
            cmd->add_option("--scope", args->scope_path,
                            "Refuse unless this scope JSON is the approved one");
            cmd->add_option("--out", args->out, "Where to write the certificate (PEM)")->required();
            cmd->add_option("--postgres", args->postgres,
                            "Also publish it to this database (libpq conninfo): running Guards of "
                            "the agent and key rotate to it");
            cmd->add_flag("--json", args->json, "Print serial, fingerprint and validity as JSON");
            cmd->callback([args] { run_command([&] { cert_issue(*args); }); });
        }
        {
            auto args = std::make_shared<InspectArgs>();
            CLI::App* cmd = cert->add_subcommand(
                "inspect", "Print a certificate's agent, validity and scope as JSON");
            cmd->add_option("certificate", args->path, "Certificate (PEM or DER)")->required();
            cmd->add_option("--oid-arc", args->oid_arc, "OID arc of the scope extension")
                ->capture_default_str();
            cmd->callback([args] { run_command([&] { cert_inspect(*args); }); });
        }
        {
            auto args = std::make_shared<VerifyArgs>();
            CLI::App* cmd = cert->add_subcommand(
                "verify",
                "Chain to STATE/ca.pem, validity now, revocation against STATE/crl.pem; exit 0 "
                "only if valid");
            add_dir(cmd, args->dir);
            cmd->add_option("certificate", args->path, "Certificate (PEM or DER)")->required();
            cmd->add_flag("--json", args->json, "Print {\"valid\",\"status\",\"detail\"}");
            cmd->callback([args] { run_command([&] { cert_verify(*args); }); });
        }
        {
            auto args = std::make_shared<RevokeArgs>();
            CLI::App* cmd =
                cert->add_subcommand("revoke", "Revoke a certificate and publish a new CRL");
            add_dir(cmd, args->dir);
            cmd->add_option("--serial", args->serial, "Serial number (hex)")->required();
            cmd->add_option("--postgres", args->postgres,
                            "Also publish the revocation to this database (libpq conninfo): "
                            "running Guards halt");
            cmd->add_option("--reason", args->reason,
                            "Why; a first word such as keyCompromise or superseded sets the CRL "
                            "reason code")
                ->required();
            cmd->callback([args] { run_command([&] { cert_revoke(*args); }); });
        }
    }
    {
        auto args = std::make_shared<CrlArgs>();
        CLI::App* cmd = app.add_subcommand(
            "crl", "Write the CA's current CRL (reissued when past half its lifetime)");
        add_dir(cmd, args->dir);
        cmd->add_option("--out", args->out, "Where to write the CRL (PEM)")->required();
        cmd->add_option("--postgres", args->postgres,
                        "Also publish it to this database (libpq conninfo): running Guards take "
                        "it up");
        cmd->callback([args] { run_command([&] { crl_command(*args); }); });
    }
}

}  // namespace kakunin::cli
