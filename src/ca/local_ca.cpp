// LocalCa: a CA over any Kms, state in a directory (or memory). All times come from the Clock.
#include <botan/ber_dec.h>
#include <botan/der_enc.h>
#include <botan/system_rng.h>
#include <botan/x509_ca.h>
#include <botan/x509_ext.h>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "kakunin/ca.hpp"
#include "kms/kms_botan_key.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

// ---- files ------------------------------------------------------------------------------------

bool exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

void make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        throw Error(ErrorCategory::io, "cannot create " + path + ": " + std::strerror(errno));
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, "cannot read " + path);
    std::stringstream buf;
    buf << in.rdbuf();
    return buf.str();
}

/// Write to a temporary file, then rename: a reader never sees half a file.
void write_atomic(const std::string& path, const std::string& content) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << content;
        out.flush();
        if (!out) throw Error(ErrorCategory::io, "cannot write " + tmp);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        throw Error(ErrorCategory::io, "cannot rename " + tmp + ": " + std::strerror(errno));
}

std::vector<std::string> list_dir(const std::string& dir, const std::string& suffix) {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return out;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name.size() > suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
            out.push_back(name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

std::string normalise_serial(std::string_view hex) {
    const auto bytes = crypto::from_hex(hex, "serial");
    if (bytes.empty()) throw Error(ErrorCategory::invalid_input, "serial: empty");
    return crypto::to_hex(bytes);
}

/// RFC 5280 reasonCode from the first word of a free-text reason ("keyCompromise: ...").
Botan::CRL_Code reason_code(std::string_view reason) {
    std::string word;
    for (char c : reason) {
        if (c == ':' || c == ' ' || c == ',') break;
        if (c != '_' && c != '-')
            word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    if (word == "keycompromise") return Botan::KEY_COMPROMISE;
    if (word == "cacompromise") return Botan::CA_COMPROMISE;
    if (word == "affiliationchanged") return Botan::AFFILIATION_CHANGED;
    if (word == "superseded") return Botan::SUPERSEDED;
    if (word == "cessationofoperation") return Botan::CESSATION_OF_OPERATION;
    if (word == "privilegewithdrawn") return Botan::PRIVLEDGE_WITHDRAWN;
    return Botan::UNSPECIFIED;
}

/// A CRL entry dated by the Clock (Botan's CRL_Entry(cert, reason) would read the system clock).
Botan::CRL_Entry crl_entry(const std::string& serial_hex, TimeNs at, Botan::CRL_Code code) {
    const auto bytes = crypto::from_hex(serial_hex, "serial");
    Botan::Extensions ext;
    ext.add(new Botan::Cert_Extension::CRL_ReasonCode(code));
    std::vector<std::uint8_t> der;
    Botan::DER_Encoder(der)
        .start_cons(Botan::SEQUENCE)
        .encode(Botan::BigInt(bytes.data(), bytes.size()))
        .encode(Botan::X509_Time(x509::to_time_point(at)))
        .start_cons(Botan::SEQUENCE)
        .encode(ext)
        .end_cons()
        .end_cons();
    Botan::CRL_Entry entry;
    Botan::BER_Decoder(der).decode(entry).verify_end();
    return entry;
}

json revocation_json(const Revocation& r) {
    return {{"serial", r.serial},
            {"agent_id", r.agent_id},
            {"reason", r.reason},
            {"revoked_at_ns", r.revoked_at}};
}

}  // namespace

struct LocalCa::Impl {
    std::shared_ptr<Kms> kms;
    const Clock& clock;
    LocalCaOptions options;
    KeyHandle ca_key;
    std::shared_ptr<const Botan::X509_Certificate> ca_cert;
    std::vector<std::uint8_t> ca_der;

    mutable std::mutex mutex;
    std::map<std::string, AgentRegistration, std::less<>> registrations;
    std::map<std::string, ApprovedScope, std::less<>> approvals;
    std::vector<AgentCertificate> issued;  // oldest first
    std::vector<Revocation> revoked;
    std::optional<CertificateRevocationList> crl;

    Impl(std::shared_ptr<Kms> k, const Clock& c, LocalCaOptions o)
        : kms(std::move(k)), clock(c), options(std::move(o)) {}

    bool persistent() const { return !options.state_dir.empty(); }
    std::string path(const std::string& rel) const { return options.state_dir + "/" + rel; }

    void save_config() const {
        json j = {{"kind", "kakunin-ca/v1"},
                  {"key_label", options.key_label},
                  {"algorithm", to_string(ca_key.algorithm)},
                  {"oid_arc", options.oid_arc}};
        write_atomic(path("ca.json"), j.dump(2) + "\n");
    }

    void save_revocations() const {
        if (!persistent()) return;
        json arr = json::array();
        for (const auto& r : revoked) arr.push_back(revocation_json(r));
        write_atomic(path("revocations.json"), arr.dump(2) + "\n");
    }

    void set_crl(const Botan::X509_CRL& c) {
        crl = CertificateRevocationList::from_der(c.BER_encode());
        if (persistent()) write_atomic(path("crl.pem"), crl->pem());
    }

    /// Caller holds the mutex.
    CertificateRevocationList reissue_crl(const std::vector<Botan::CRL_Entry>& new_entries) {
        kms_botan::KmsPrivateKey key(*kms, ca_key);
        Botan::System_RNG rng;
        Botan::X509_CA ca(*ca_cert, key, "SHA-256", rng);
        const auto now = x509::to_time_point(clock.now_ns());
        if (crl)
            set_crl(ca.update_crl(*crl->impl().crl, new_entries, rng, now, options.crl_validity));
        else if (new_entries.empty())
            set_crl(ca.new_crl(rng, now, options.crl_validity));
        else
            set_crl(ca.update_crl(ca.new_crl(rng, now, options.crl_validity), new_entries, rng, now,
                                  options.crl_validity));
        return *crl;
    }

    /// The approval must cover exactly this agent and scope and be signed by the approver's key
    /// held in this CA's Kms. Caller holds the mutex.
    void check_approval(const ScopeApproval& a, std::string_view agent_id, const Scope& scope) {
        auto refuse = [&](const std::string& why) {
            throw Error(ErrorCategory::unauthorised,
                        "agent '" + std::string(agent_id) + "': " + why);
        };
        if (registrations.count(agent_id) == 0) refuse("not registered");
        if (a.agent_id != agent_id) refuse("the scope approval is for agent '" + a.agent_id + "'");
        if (a.scope_sha256 != scope_sha256_hex(scope))
            refuse("the approved scope hash " + a.scope_sha256 +
                   " does not match the scope to certify (" + scope_sha256_hex(scope) + ")");
        if (!verify_scope_approval(a, scope))
            refuse("the approval signature by '" + a.approver + "' does not verify");
        if (a.approved_at > clock.now_ns()) refuse("the approval is dated in the future");
        KeyHandle approver_key;
        try {
            approver_key = kms->find_key(approver_key_label(a.approver));
        } catch (const Error& e) {
            if (e.category() != ErrorCategory::not_found) throw;
            refuse("approver '" + a.approver + "' has no key in the CA's KMS");
        }
        if (kms->public_key(approver_key).spki_der != a.approver_public_key)
            refuse("the approval was not signed with approver '" + a.approver + "''s key");
    }

    void load() {
        for (const auto& name : list_dir(path("registrations"), ".json")) {
            auto r = agent_registration_from_json(read_text(path("registrations/" + name)));
            registrations.emplace(r.agent_id, std::move(r));
        }
        for (const auto& name : list_dir(path("approvals"), ".json")) {
            const std::string file = path("approvals/" + name);
            const json j = json::parse(read_text(file));
            ApprovedScope as{scope_approval_from_json(j.at("approval").dump()),
                             parse_scope_json(j.at("scope").get<std::string>())};
            if (as.approval.scope_sha256 != scope_sha256_hex(as.scope))
                throw Error(ErrorCategory::invalid_input,
                            file + ": the stored scope does not match its approval's hash");
            approvals.emplace(as.approval.agent_id, std::move(as));
        }
        std::vector<AgentCertificate> certs;
        for (const auto& name : list_dir(path("certs"), ".pem"))
            certs.push_back(AgentCertificate::load_file(path("certs/" + name), options.oid_arc));
        std::sort(certs.begin(), certs.end(), [](const auto& a, const auto& b) {
            return a.not_before() != b.not_before() ? a.not_before() < b.not_before()
                                                    : a.serial() < b.serial();
        });
        issued = std::move(certs);
        if (exists(path("revocations.json"))) {
            const json arr = json::parse(read_text(path("revocations.json")));
            for (const auto& r : arr)
                revoked.push_back(Revocation{
                    r.at("serial").get<std::string>(), r.at("agent_id").get<std::string>(),
                    r.at("reason").get<std::string>(), r.at("revoked_at_ns").get<TimeNs>()});
        }
        if (exists(path("crl.pem"))) crl = CertificateRevocationList::load_file(path("crl.pem"));
    }

    const AgentCertificate* find_issued(const std::string& serial) const {
        for (const auto& c : issued)
            if (c.serial() == serial) return &c;
        return nullptr;
    }
};

LocalCa::LocalCa(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
LocalCa::~LocalCa() = default;

std::unique_ptr<LocalCa> LocalCa::init(std::shared_ptr<Kms> kms, const Clock& clock,
                                       LocalCaOptions options, const CaInitOptions& init) {
    if (!kms) throw Error(ErrorCategory::invalid_input, "LocalCa: no Kms");
    (void)scope_extension_oid(options.oid_arc);
    auto impl = std::make_unique<Impl>(std::move(kms), clock, std::move(options));
    if (impl->persistent()) {
        make_dir(impl->options.state_dir);
        if (exists(impl->path("ca.pem")))
            throw Error(ErrorCategory::invalid_state,
                        impl->options.state_dir + " already holds a CA (ca.pem)");
    }
    impl->ca_key = impl->kms->find_or_create_key(impl->options.key_label, init.algorithm);
    if (impl->ca_key.algorithm != init.algorithm)
        throw Error(ErrorCategory::invalid_state,
                    "the Kms already holds key '" + impl->options.key_label + "' as " +
                        to_string(impl->ca_key.algorithm) + ", not " + to_string(init.algorithm));

    kms_botan::KmsPrivateKey key(*impl->kms, impl->ca_key);
    Botan::System_RNG rng;
    Botan::AlgorithmIdentifier sig_algo;
    auto signer = kms_botan::x509_signer(key, rng, sig_algo);
    Botan::X509_DN dn;
    dn.add_attribute("X520.CommonName", init.name);
    dn.add_attribute("X520.Organization", "Kakunin");
    const TimeNs now = clock.now_ns();
    const auto cert = x509::make_ca_certificate(
        *signer, sig_algo, key.public_info().spki_der, dn, now,
        now + std::chrono::duration_cast<std::chrono::nanoseconds>(init.validity).count(), rng);
    impl->ca_der = cert.BER_encode();
    impl->ca_cert = std::make_shared<const Botan::X509_Certificate>(cert);
    if (impl->persistent()) {
        for (const char* sub : {"certs", "registrations", "approvals"}) make_dir(impl->path(sub));
        impl->save_config();
        write_atomic(impl->path("ca.pem"), cert.PEM_encode());
        impl->save_revocations();
    }
    std::lock_guard<std::mutex> lock(impl->mutex);
    impl->reissue_crl({});
    return std::unique_ptr<LocalCa>(new LocalCa(std::move(impl)));
}

std::unique_ptr<LocalCa> LocalCa::open(std::shared_ptr<Kms> kms, const Clock& clock,
                                       LocalCaOptions options) {
    if (!kms) throw Error(ErrorCategory::invalid_input, "LocalCa: no Kms");
    if (options.state_dir.empty())
        throw Error(ErrorCategory::invalid_input, "LocalCa::open needs a state directory");
    auto impl = std::make_unique<Impl>(std::move(kms), clock, std::move(options));
    if (!exists(impl->path("ca.pem")))
        throw Error(ErrorCategory::not_found,
                    impl->options.state_dir + " holds no CA (run 'kakunin ca init')");
    try {
        const json config = json::parse(read_text(impl->path("ca.json")));
        impl->options.key_label = config.at("key_label").get<std::string>();
        impl->options.oid_arc = config.at("oid_arc").get<std::string>();
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, impl->path("ca.json") + ": " + e.what());
    }
    const TrustAnchor anchor = TrustAnchor::load_file(impl->path("ca.pem"));
    impl->ca_cert = anchor.impl().cert;
    impl->ca_der = anchor.der();
    impl->ca_key = impl->kms->find_key(impl->options.key_label);
    if (impl->kms->public_key(impl->ca_key).spki_der != impl->ca_cert->subject_public_key_info())
        throw Error(ErrorCategory::invalid_state,
                    "the Kms key '" + impl->options.key_label + "' is not the key of ca.pem");
    try {
        impl->load();
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input,
                    impl->options.state_dir + ": malformed state file: " + e.what());
    }
    return std::unique_ptr<LocalCa>(new LocalCa(std::move(impl)));
}

const LocalCaOptions& LocalCa::options() const noexcept { return m_impl->options; }

TrustAnchor LocalCa::trust_anchor() const { return TrustAnchor::from_der(m_impl->ca_der); }

void LocalCa::register_agent(const AgentRegistration& r) {
    validate_agent_id(r.agent_id);
    if (r.owner.empty() || r.purpose.empty() || r.created_by.empty())
        throw Error(ErrorCategory::invalid_input,
                    "agent registration: owner, purpose and created_by are required");
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    if (m_impl->registrations.count(r.agent_id) != 0)
        throw Error(ErrorCategory::invalid_state,
                    "agent '" + r.agent_id + "' is already registered");
    if (m_impl->persistent())
        write_atomic(m_impl->path("registrations/" + r.agent_id + ".json"), to_json(r) + "\n");
    m_impl->registrations.emplace(r.agent_id, r);
}

std::optional<AgentRegistration> LocalCa::registration(std::string_view agent_id) const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto it = m_impl->registrations.find(agent_id);
    if (it == m_impl->registrations.end()) return std::nullopt;
    return it->second;
}

void LocalCa::record_approval(const ScopeApproval& approval, const Scope& scope) {
    validate_agent_id(approval.agent_id);
    validate(scope);
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    m_impl->check_approval(approval, approval.agent_id, scope);
    if (m_impl->persistent()) {
        json j = {{"approval", json::parse(to_json(approval))}, {"scope", to_json(scope)}};
        write_atomic(m_impl->path("approvals/" + approval.agent_id + ".json"), j.dump(2) + "\n");
    }
    m_impl->approvals[approval.agent_id] = ApprovedScope{approval, scope};
}

std::optional<LocalCa::ApprovedScope> LocalCa::approved_scope(std::string_view agent_id) const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto it = m_impl->approvals.find(agent_id);
    if (it == m_impl->approvals.end()) return std::nullopt;
    return it->second;
}

AgentCertificate LocalCa::issue(const IssueRequest& request) {
    validate_agent_id(request.agent_id);
    const std::vector<std::uint8_t> scope_der = encode_scope_extension(request.scope);
    if (!crypto::spki_algorithm(request.public_key))
        throw Error(ErrorCategory::invalid_input,
                    "agent '" + request.agent_id +
                        "': the public key is not an Ed25519 or ECDSA P-256 SubjectPublicKeyInfo");
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    m_impl->check_approval(request.approval, request.agent_id, request.scope);

    const TimeNs now = m_impl->clock.now_ns();
    const TimeNs not_before = request.not_before.value_or(now);
    const auto validity =
        request.validity.count() > 0 ? request.validity : m_impl->options.default_validity;
    const TimeNs not_after =
        not_before + std::chrono::duration_cast<std::chrono::nanoseconds>(validity).count();
    if (not_after > x509::to_time_ns(m_impl->ca_cert->not_after()))
        throw Error(
            ErrorCategory::invalid_state,
            "agent '" + request.agent_id + "': the certificate would outlive the CA certificate");

    x509::LeafTemplate leaf;
    leaf.subject_public_key = request.public_key;
    leaf.agent_id = request.agent_id;
    leaf.simulation = request.simulation;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    leaf.scope_oid = scope_extension_oid(m_impl->options.oid_arc);
    leaf.scope_der = scope_der;
    leaf.scope_critical = true;

    kms_botan::KmsPrivateKey key(*m_impl->kms, m_impl->ca_key);
    Botan::System_RNG rng;
    Botan::AlgorithmIdentifier sig_algo;
    auto signer = kms_botan::x509_signer(key, rng, sig_algo);
    const auto cert = x509::make_agent_certificate(*signer, sig_algo, *m_impl->ca_cert, leaf, rng);
    AgentCertificate out = AgentCertificate::from_der(cert.BER_encode(), m_impl->options.oid_arc);
    if (m_impl->persistent())
        write_atomic(m_impl->path("certs/" + out.serial() + ".pem"), out.pem());
    m_impl->issued.push_back(out);
    return out;
}

AgentCertificate LocalCa::issue_for_agent(std::string_view agent_id,
                                          const std::vector<std::uint8_t>& public_key,
                                          std::chrono::seconds validity) {
    const auto approved = approved_scope(agent_id);
    if (!approved)
        throw Error(ErrorCategory::unauthorised,
                    "agent '" + std::string(agent_id) + "' has no approved scope");
    IssueRequest req;
    req.agent_id = std::string(agent_id);
    req.scope = approved->scope;
    req.approval = approved->approval;
    req.public_key = public_key;
    req.validity = validity;
    return issue(req);
}

void LocalCa::revoke(std::string_view serial_hex, std::string_view reason) {
    const std::string serial = normalise_serial(serial_hex);
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    const AgentCertificate* cert = m_impl->find_issued(serial);
    if (cert == nullptr)
        throw Error(ErrorCategory::not_found,
                    "no certificate with serial " + serial + " was issued by this CA");
    for (const auto& r : m_impl->revoked)
        if (r.serial == serial) return;
    const TimeNs now = m_impl->clock.now_ns();
    Revocation r{serial, cert->agent_id(), std::string(reason), now};
    const Botan::CRL_Entry entry = crl_entry(serial, now, reason_code(reason));
    m_impl->revoked.push_back(r);
    try {
        m_impl->reissue_crl({entry});
        m_impl->save_revocations();
    } catch (...) {
        m_impl->revoked.pop_back();
        throw;
    }
}

CertificateRevocationList LocalCa::current_crl() {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    const TimeNs now = m_impl->clock.now_ns();
    const auto half =
        std::chrono::duration_cast<std::chrono::nanoseconds>(m_impl->options.crl_validity).count() /
        2;
    if (!m_impl->crl || now < m_impl->crl->this_update() ||
        now >= m_impl->crl->this_update() + half)
        return m_impl->reissue_crl({});
    return *m_impl->crl;
}

CertificateRevocationList LocalCa::issue_crl() {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->reissue_crl({});
}

std::vector<Revocation> LocalCa::revocations() const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->revoked;
}

bool LocalCa::is_revoked(std::string_view serial_hex) const {
    const std::string serial = normalise_serial(serial_hex);
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    for (const auto& r : m_impl->revoked)
        if (r.serial == serial) return true;
    return false;
}

std::vector<AgentCertificate> LocalCa::issued_certificates(std::string_view agent_id) const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    std::vector<AgentCertificate> out;
    for (const auto& c : m_impl->issued)
        if (agent_id.empty() || c.agent_id() == agent_id) out.push_back(c);
    return out;
}

std::optional<AgentCertificate> LocalCa::find_certificate(std::string_view serial_hex) const {
    const std::string serial = normalise_serial(serial_hex);
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    const AgentCertificate* c = m_impl->find_issued(serial);
    if (c == nullptr) return std::nullopt;
    return *c;
}

}  // namespace kakunin
