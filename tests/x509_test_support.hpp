// Shared fixtures for the certificate tests: a real LocalCa on an in-memory SoftwareKms with a
// ManualClock, a registered agent with an approved scope, and a forge that signs arbitrary
// certificates with the real CA key (for the refusal tests). No mocks.
#pragma once

#include <botan/system_rng.h>
#include <botan/x509cert.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include "kakunin/ca.hpp"
#include "kakunin/software_kms.hpp"
#include "kms/kms_botan_key.hpp"
#include "support.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin::test {

/// Temporary directories made by the tests, removed when the test program exits.
class TempDirs {
public:
    static TempDirs& instance() {
        static TempDirs dirs;
        return dirs;
    }
    std::string make(const std::string& name) {
        std::string tmpl = "/tmp/kakunin-" + name + "-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        std::lock_guard<std::mutex> lock(m_mutex);
        m_dirs.push_back(tmpl);
        return tmpl;
    }
    ~TempDirs() {
        std::error_code ec;
        for (const auto& d : m_dirs) std::filesystem::remove_all(d, ec);
    }

private:
    std::mutex m_mutex;
    std::vector<std::string> m_dirs;
};

inline std::string make_temp_dir(const std::string& name) {
    return TempDirs::instance().make(name);
}

inline void write_file(const std::string& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Runs a shell command, returns its exit status; output goes to `out` if given.
inline int run(const std::string& cmd, std::string* out = nullptr) {
    const std::string file = make_temp_dir("run") + "/out.txt";
    const int rc = std::system((cmd + " > '" + file + "' 2>&1").c_str());
    if (out) *out = read_file(file);
    return rc;
}

struct TestPki {
    ManualClock clock{utc(2024, 1, 8, 7, 0, 0)};
    std::shared_ptr<SoftwareKms> kms{SoftwareKms::in_memory()};
    std::unique_ptr<LocalCa> ca;
    std::string agent_id = "agent-7";
    KeyHandle agent_key;
    std::vector<std::uint8_t> agent_spki;
    Scope scope = parse_scope_json(seed_scope_json);

    explicit TestPki(KeyAlgorithm algorithm = KeyAlgorithm::ed25519,
                     const std::string& name = "Kakunin Test CA",
                     const std::string& state_dir = "") {
        LocalCaOptions options;
        options.state_dir = state_dir;
        CaInitOptions init;
        init.algorithm = algorithm;
        init.name = name;
        ca = LocalCa::init(kms, clock, options, init);
        ca->register_agent({agent_id, "Desk 3", "BTC market making", clock.now_ns(), "Jane Roe"});
        ca->record_approval(approve_scope(*kms, agent_id, "Jane Doe", scope, clock.now_ns()),
                            scope);
        agent_key = kms->create_key("agent:" + agent_id, algorithm);
        agent_spki = kms->public_key(agent_key).spki_der;
    }

    AgentCertificate issue() { return ca->issue_for_agent(agent_id, agent_spki); }

    TrustAnchor anchor() const { return ca->trust_anchor(); }

    CertificateCheck verify(const AgentCertificate& cert, const VerifyOptions& options = {}) {
        const CertificateRevocationList crl = ca->current_crl();
        return verify_certificate(cert, anchor(), &crl, clock.now_ns(), options);
    }

    /// A leaf like the CA's own, for the forge to alter.
    x509::LeafTemplate leaf_template() const {
        x509::LeafTemplate t;
        t.subject_public_key = agent_spki;
        t.agent_id = agent_id;
        t.not_before = clock.now_ns();
        t.not_after = clock.now_ns() + 3600'000'000'000LL;
        t.scope_oid = scope_extension_oid();
        t.scope_der = encode_scope_extension(scope);
        return t;
    }

    /// Signs `t` with the real CA key, bypassing LocalCa's rules.
    AgentCertificate forge(const x509::LeafTemplate& t) {
        kms_botan::KmsPrivateKey key(*kms, kms->find_key("ca"));
        Botan::System_RNG rng;
        Botan::AlgorithmIdentifier sig_algo;
        auto signer = kms_botan::x509_signer(key, rng, sig_algo);
        const auto cert =
            x509::make_agent_certificate(*signer, sig_algo, *anchor().impl().cert, t, rng);
        return AgentCertificate::from_der(cert.BER_encode());
    }
};

}  // namespace kakunin::test
