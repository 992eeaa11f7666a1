// Test doubles for the audit trail: an in-memory Kms over Botan (Ed25519 / ECDSA P-256), a
// self-signed certificate for any of its keys, and a ready-made signed log fixture.
#pragma once

#include <botan/auto_rng.h>
#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/ed25519.h>
#include <botan/pubkey.h>
#include <botan/x509_key.h>
#include <botan/x509self.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kakunin/audit.hpp"
#include "kakunin/error.hpp"
#include "kakunin/kms.hpp"

namespace kakunin::test {

/// Keys in memory; signs like a real Kms (Ed25519 pure, ECDSA P-256 SHA-256 DER).
class AuditTestKms final : public Kms {
public:
    KeyHandle create_key(std::string_view label, KeyAlgorithm algorithm) override {
        std::lock_guard<std::mutex> lock(m_mutex);
        const std::string l(label);
        if (m_keys.count(l) != 0) throw Error(ErrorCategory::kms, "label taken: " + l);
        std::unique_ptr<Botan::Private_Key> key;
        if (algorithm == KeyAlgorithm::ed25519) {
            key = std::make_unique<Botan::Ed25519_PrivateKey>(m_rng);
        } else {
            key = std::make_unique<Botan::ECDSA_PrivateKey>(m_rng, Botan::EC_Group("secp256r1"));
        }
        m_keys[l] = Entry{algorithm, std::move(key)};
        return KeyHandle{l, l, algorithm};
    }
    KeyHandle find_key(std::string_view label) override {
        std::lock_guard<std::mutex> lock(m_mutex);
        auto it = m_keys.find(std::string(label));
        if (it == m_keys.end())
            throw Error(ErrorCategory::not_found, "no key " + std::string(label));
        return KeyHandle{it->first, it->first, it->second.algorithm};
    }
    std::vector<std::uint8_t> sign(const KeyHandle& key, const std::uint8_t* message,
                                   std::size_t size) override {
        std::lock_guard<std::mutex> lock(m_mutex);
        ++m_signatures;
        const Entry& e = entry(key);
        if (e.algorithm == KeyAlgorithm::ed25519) {
            Botan::PK_Signer signer(*e.key, m_rng, "Pure");
            return signer.sign_message(message, size, m_rng);
        }
        Botan::PK_Signer signer(*e.key, m_rng, "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
        return signer.sign_message(message, size, m_rng);
    }
    PublicKeyInfo public_key(const KeyHandle& key) override {
        std::lock_guard<std::mutex> lock(m_mutex);
        const Entry& e = entry(key);
        return PublicKeyInfo{e.algorithm, Botan::X509::BER_encode(*e.key)};
    }
    using Kms::sign;

    /// A self-signed certificate (DER) for the key: what the verifier maps fingerprints to.
    std::vector<std::uint8_t> self_signed_certificate(const KeyHandle& key,
                                                      const std::string& name) {
        std::lock_guard<std::mutex> lock(m_mutex);
        const Entry& e = entry(key);
        Botan::X509_Cert_Options opts(name);
        const std::string hash = e.algorithm == KeyAlgorithm::ed25519 ? "SHA-512" : "SHA-256";
        return Botan::X509::create_self_signed_cert(opts, *e.key, hash, m_rng).BER_encode();
    }
    std::uint64_t signatures() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_signatures;
    }

private:
    struct Entry {
        KeyAlgorithm algorithm = KeyAlgorithm::ed25519;
        std::unique_ptr<Botan::Private_Key> key;
    };
    const Entry& entry(const KeyHandle& key) const {
        auto it = m_keys.find(key.label);
        if (it == m_keys.end()) throw Error(ErrorCategory::not_found, "no key " + key.label);
        return it->second;
    }

    mutable std::mutex m_mutex;
    Botan::AutoSeeded_RNG m_rng;
    std::map<std::string, Entry> m_keys;
    std::uint64_t m_signatures = 0;
};

/// A key in the test Kms with its certificate: a ready AuditSigner.
struct TestIdentity {
    KeyHandle key;
    std::vector<std::uint8_t> cert_der;
    std::string fp;

    AuditSigner signer(AuditTestKms& kms) const { return AuditSigner{kms, key, fp}; }
};

inline TestIdentity make_identity(AuditTestKms& kms, const std::string& label,
                                  KeyAlgorithm algorithm = KeyAlgorithm::ed25519) {
    TestIdentity id;
    id.key = kms.create_key(label, algorithm);
    id.cert_der = kms.self_signed_certificate(id.key, label);
    id.fp = certificate_fingerprint(id.cert_der);
    return id;
}

/// A sink whose appends fail while `failing` is set (for durability tests).
class FlakyAuditSink final : public LockingAuditSink {
public:
    bool failing = false;
    std::string name() const override { return "flaky"; }
    std::vector<std::string> lines;

protected:
    void do_append(const std::string_view* l, std::size_t n) override {
        if (failing) throw Error(ErrorCategory::io, "flaky sink: down");
        for (std::size_t i = 0; i < n; ++i) lines.emplace_back(l[i]);
    }
    void do_flush() override {
        if (failing) throw Error(ErrorCategory::io, "flaky sink: down");
    }
};

}  // namespace kakunin::test
