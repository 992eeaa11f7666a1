// kakunin/pkcs11_kms.hpp — a Kms whose keys live on a PKCS#11 token (an HSM, a smart card, or
// SoftHSM2 in tests). Keys are generated on the token, sensitive and non-extractable; Kakunin only
// ever asks the token to sign.
//
//   kakunin::Pkcs11Kms kms("/usr/lib/softhsm/libsofthsm2.so", "kakunin",
//                          kakunin::Pkcs11Kms::pin_from_env());
//   kakunin::KeyHandle ca = kms.create_key("ca", kakunin::KeyAlgorithm::ecdsa_p256);
//   std::vector<std::uint8_t> sig = kms.sign(ca, bytes);   // DER ECDSA-Sig-Value
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/kms.hpp"

namespace kakunin {

/// How a key is protected on the token, as the token itself reports it.
struct Pkcs11KeyProtection {
    bool token = false;              ///< CKA_TOKEN: persistent on the token
    bool private_object = false;     ///< CKA_PRIVATE: visible only after login
    bool sensitive = false;          ///< CKA_SENSITIVE
    bool extractable = true;         ///< CKA_EXTRACTABLE
    bool always_sensitive = false;   ///< CKA_ALWAYS_SENSITIVE
    bool never_extractable = false;  ///< CKA_NEVER_EXTRACTABLE
    bool value_readable = true;      ///< whether C_GetAttributeValue(CKA_VALUE) returned bytes
};

/// A Kms backed by any PKCS#11 module, loaded with dlopen at run time.
///
/// One instance holds one read-write session on the token whose label it was given, logged in as
/// the normal user. Several instances may share a module in one process (the module is
/// initialised once and finalised when the last instance goes away).
///
/// Algorithms: ECDSA P-256 (CKM_EC_KEY_PAIR_GEN; signing is CKM_ECDSA over a SHA-256 digest
/// computed by Kakunin, the token's raw r||s returned as DER ECDSA-Sig-Value) and Ed25519
/// (CKM_EC_EDWARDS_KEY_PAIR_GEN / CKM_EDDSA) when the token offers those mechanisms.
///
/// Threading: every member may be called from several threads at once; calls are serialised on
/// the instance's session. Calls block while the token works.
/// Errors: kakunin::Error; the message names the PKCS#11 function and the CKR_ code
/// ("C_Login: CKR_PIN_INCORRECT"). Category unauthorised for PIN failures, not_found for a
/// missing key, invalid_state for a label that is already taken, kms for everything else.
class Pkcs11Kms final : public Kms {
public:
    /// The environment variable the command-line program reads the user PIN from.
    static constexpr const char* pin_variable = "KAKUNIN_PKCS11_PIN";

    /// Loads `module_path`, finds the token labelled `token_label`, opens a read-write session
    /// and logs in with `pin`. Throws kakunin::Error (kms, or unauthorised for a bad PIN).
    Pkcs11Kms(const std::string& module_path, const std::string& token_label,
              const std::string& pin);
    /// Closes the session; the module is finalised and unloaded with its last user.
    ~Pkcs11Kms() override;

    Pkcs11Kms(const Pkcs11Kms&) = delete;
    Pkcs11Kms& operator=(const Pkcs11Kms&) = delete;

    /// Same as the constructor, for callers that want an owning pointer.
    static std::unique_ptr<Pkcs11Kms> open(const std::string& module_path,
                                           const std::string& token_label, const std::string& pin);

    /// The value of KAKUNIN_PKCS11_PIN; throws kakunin::Error (unauthorised) naming the variable
    /// when it is unset or empty.
    static std::string pin_from_env();

    /// Generates the key pair on the token. Throws invalid_state if any key object already has
    /// this label, kms if the token lacks the algorithm's mechanisms.
    KeyHandle create_key(std::string_view label, KeyAlgorithm algorithm) override;
    /// The private key labelled `label`; throws not_found if there is none, kms if two private
    /// keys carry the label or the key is extractable or not sensitive (Kakunin signs only with
    /// keys that cannot leave the token, whoever made them).
    KeyHandle find_key(std::string_view label) override;
    /// Ed25519: 64 raw bytes. ECDSA P-256: DER ECDSA-Sig-Value over SHA-256(message).
    std::vector<std::uint8_t> sign(const KeyHandle& key, const std::uint8_t* message,
                                   std::size_t size) override;
    /// SubjectPublicKeyInfo built from the public key object's CKA_EC_POINT and CKA_EC_PARAMS.
    PublicKeyInfo public_key(const KeyHandle& key) override;
    using Kms::sign;

    /// Whether the token offers the mechanisms `algorithm` needs.
    bool supports(KeyAlgorithm algorithm);
    /// The private key's protection attributes as the token reports them.
    Pkcs11KeyProtection key_protection(const KeyHandle& key);

    const std::string& module_path() const noexcept;
    const std::string& token_label() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
