// kakunin/software_kms.hpp — a Kms whose keys are Botan keys in this process: Ed25519 and ECDSA
// P-256, stored as encrypted PKCS#8 PEM files (PBES2, passphrase from KAKUNIN_KMS_PASSPHRASE),
// or held only in memory for tests.
//
//   auto kms = kakunin::SoftwareKms::open("state/keys");    // reads KAKUNIN_KMS_PASSPHRASE
//   kakunin::KeyHandle ca = kms->find_or_create_key("ca", kakunin::KeyAlgorithm::ed25519);
//   auto tests = kakunin::SoftwareKms::in_memory();           // no files, no passphrase
#pragma once

#include <memory>
#include <string>

#include "kakunin/kms.hpp"

namespace kakunin {

/// Threading: every member may be called from several threads at once (one internal mutex
/// guards the key table; signing runs outside it on a per-call signer). Calls may block on file
/// I/O and on the key-derivation function the first time a stored key is used.
class SoftwareKms final : public Kms {
public:
    /// The environment variable holding the key-file passphrase.
    static constexpr const char* passphrase_variable = "KAKUNIN_KMS_PASSPHRASE";

    /// Keys in `directory` (created with mode 0700 if missing), encrypted under the passphrase in
    /// KAKUNIN_KMS_PASSPHRASE. Throws kakunin::Error (invalid_state) naming the variable when it
    /// is unset or empty, (io) when the directory cannot be created.
    static std::unique_ptr<SoftwareKms> open(const std::string& directory);
    /// Same with an explicit passphrase (must not be empty).
    static std::unique_ptr<SoftwareKms> open(const std::string& directory,
                                             const std::string& passphrase);
    /// Keys live in this object only and vanish with it. For tests and simulations.
    static std::unique_ptr<SoftwareKms> in_memory();

    ~SoftwareKms() override;
    SoftwareKms(const SoftwareKms&) = delete;
    SoftwareKms& operator=(const SoftwareKms&) = delete;

    /// Throws kakunin::Error (invalid_state) if the label is taken, (invalid_input) if the label
    /// is empty, longer than 200 bytes or holds control characters.
    KeyHandle create_key(std::string_view label, KeyAlgorithm algorithm) override;
    KeyHandle find_key(std::string_view label) override;
    std::vector<std::uint8_t> sign(const KeyHandle& key, const std::uint8_t* message,
                                   std::size_t size) override;
    PublicKeyInfo public_key(const KeyHandle& key) override;
    using Kms::sign;

    /// The directory, or empty for an in-memory Kms.
    const std::string& directory() const noexcept;

private:
    struct Impl;
    explicit SoftwareKms(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
