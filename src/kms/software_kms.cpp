// SoftwareKms: Botan keys, stored as PKCS#8 PEM encrypted with PBES2 (PBKDF2-SHA-256,
// AES-256/CBC, the combination every PKCS#8 reader understands).
#include "kakunin/software_kms.hpp"
#include "io/durable_file.hpp"

#include <botan/auto_rng.h>
#include <botan/data_src.h>
#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/ed25519.h>
#include <botan/pkcs8.h>
#include <botan/pubkey.h>
#include <botan/system_rng.h>
#include <botan/x509_key.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>

namespace kakunin {
namespace {

/// PBKDF2 iterations for stored keys: a key file is decrypted once per process and cached.
constexpr std::size_t pbkdf_iterations = 200'000;

void check_label(std::string_view label) {
    if (label.empty() || label.size() > 200)
        throw Error(ErrorCategory::invalid_input, "key label must be 1..200 bytes");
    for (char c : label)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            throw Error(ErrorCategory::invalid_input,
                        "key label '" + std::string(label) + "' holds control characters");
}

/// File name for a label: [A-Za-z0-9._-] kept, every other byte as %XX; never starts with '.'.
std::string file_name_for(std::string_view label) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (std::size_t i = 0; i < label.size(); ++i) {
        const auto c = static_cast<unsigned char>(label[i]);
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_' || c == '-' || (c == '.' && i > 0);
        if (keep) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }
    return out + ".key.pem";
}

std::optional<KeyAlgorithm> algorithm_of(const Botan::Private_Key& key) {
    if (key.algo_name() == "Ed25519") return KeyAlgorithm::ed25519;
    if (key.algo_name() == "ECDSA") {
        const auto* ec = dynamic_cast<const Botan::ECDSA_PrivateKey*>(&key);
        if (ec != nullptr && ec->domain() == Botan::EC_Group("secp256r1"))
            return KeyAlgorithm::ecdsa_p256;
    }
    return std::nullopt;
}

struct Entry {
    KeyHandle handle;
    std::shared_ptr<const Botan::Private_Key> key;
    std::vector<std::uint8_t> spki;
};

}  // namespace

struct SoftwareKms::Impl {
    std::string directory;  // empty: in memory
    std::string passphrase;
    std::mutex mutex;
    std::map<std::string, Entry, std::less<>> keys;

    std::string path_of(std::string_view label) const {
        return directory + "/" + file_name_for(label);
    }

    Entry make_entry(std::string_view label, std::string id,
                     std::shared_ptr<const Botan::Private_Key> key) {
        const auto algorithm = algorithm_of(*key);
        if (!algorithm)
            throw Error(ErrorCategory::kms, "key '" + std::string(label) + "' is a " +
                                                key->algo_name() +
                                                " key, not Ed25519 or ECDSA P-256");
        Entry e;
        e.handle = KeyHandle{std::string(label), std::move(id), *algorithm};
        e.spki = Botan::X509::BER_encode(*key);
        e.key = std::move(key);
        return e;
    }

    /// Loads a key file if it exists. Caller holds the mutex.
    const Entry* load(std::string_view label) {
        if (directory.empty()) return nullptr;
        const std::string path = path_of(label);
        std::ifstream in(path, std::ios::binary);
        if (!in) return nullptr;
        std::stringstream buf;
        buf << in.rdbuf();
        const std::string pem = buf.str();
        // Only keys sealed under the passphrase count: a plain key dropped into the directory by
        // someone without the passphrase must not become, say, an approver's key.
        if (pem.rfind("-----BEGIN ENCRYPTED PRIVATE KEY-----", 0) != 0)
            throw Error(ErrorCategory::kms,
                        "key file " + path + " is not an encrypted PKCS#8 PEM key: refused");
        std::shared_ptr<const Botan::Private_Key> key;
        try {
            Botan::DataSource_Memory src(pem);
            key.reset(Botan::PKCS8::load_key(src, passphrase).release());
        } catch (const std::exception& e) {
            throw Error(ErrorCategory::kms, "cannot decrypt key file " + path + " (wrong " +
                                                passphrase_variable + "?): " + e.what());
        }
        Entry entry = make_entry(label, file_name_for(label), std::move(key));
        auto [it, inserted] = keys.emplace(std::string(label), std::move(entry));
        (void)inserted;
        return &it->second;
    }

    const Entry& get(const KeyHandle& handle) {
        std::lock_guard<std::mutex> lock(mutex);
        auto it = keys.find(handle.label);
        const Entry* e = it != keys.end() ? &it->second : load(handle.label);
        if (e == nullptr)
            throw Error(ErrorCategory::not_found, "no key '" + handle.label + "' in the KMS");
        if (e->handle.id != handle.id || e->handle.algorithm != handle.algorithm)
            throw Error(ErrorCategory::not_found,
                        "key handle '" + handle.label + "' does not match the stored key");
        return *e;
    }
};

SoftwareKms::SoftwareKms(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
SoftwareKms::~SoftwareKms() = default;

std::unique_ptr<SoftwareKms> SoftwareKms::open(const std::string& directory) {
    const char* pass = std::getenv(passphrase_variable);
    if (pass == nullptr || *pass == '\0')
        throw Error(ErrorCategory::invalid_state,
                    std::string(passphrase_variable) +
                        " is not set: the software KMS needs it to encrypt and decrypt its keys");
    return open(directory, pass);
}

std::unique_ptr<SoftwareKms> SoftwareKms::open(const std::string& directory,
                                               const std::string& passphrase) {
    if (directory.empty())
        throw Error(ErrorCategory::invalid_input, "software KMS: empty directory path");
    if (passphrase.empty())
        throw Error(
            ErrorCategory::invalid_state,
            std::string("software KMS: empty passphrase (set ") + passphrase_variable + ")");
    if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST)
        throw Error(ErrorCategory::io,
                    "cannot create key directory " + directory + ": " + std::strerror(errno));
    struct stat st;
    if (::stat(directory.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(ErrorCategory::io, directory + " is not a directory");
    auto impl = std::make_unique<Impl>();
    impl->directory = directory;
    impl->passphrase = passphrase;
    return std::unique_ptr<SoftwareKms>(new SoftwareKms(std::move(impl)));
}

std::unique_ptr<SoftwareKms> SoftwareKms::in_memory() {
    return std::unique_ptr<SoftwareKms>(new SoftwareKms(std::make_unique<Impl>()));
}

const std::string& SoftwareKms::directory() const noexcept { return m_impl->directory; }

KeyHandle SoftwareKms::create_key(std::string_view label, KeyAlgorithm algorithm) {
    check_label(label);
    Botan::System_RNG rng;
    std::shared_ptr<const Botan::Private_Key> key;
    if (algorithm == KeyAlgorithm::ed25519)
        key = std::make_shared<Botan::Ed25519_PrivateKey>(rng);
    else
        key = std::make_shared<Botan::ECDSA_PrivateKey>(rng, Botan::EC_Group("secp256r1"));

    // The key derivation for the file is slow: done before taking the lock signers need.
    std::string pem;
    if (!m_impl->directory.empty())
        pem = Botan::PKCS8::PEM_encode_encrypted_pbkdf_iter(
            *key, rng, m_impl->passphrase, pbkdf_iterations, "AES-256/CBC", "SHA-256");

    std::lock_guard<std::mutex> lock(m_impl->mutex);
    if (m_impl->keys.count(label) != 0 || m_impl->load(label) != nullptr)
        throw Error(ErrorCategory::invalid_state,
                    "key '" + std::string(label) + "' already exists in the KMS");
    std::string id = "memory:" + std::string(label);
    if (!m_impl->directory.empty()) {
        id = file_name_for(label);
        const std::string path = m_impl->path_of(label);
        // Overwrite::refuse: two processes creating the same label cannot overwrite each
        // other's key.
        try {
            io::write_durable(path, pem, io::Overwrite::refuse, 0600);
        } catch (const Error& e) {
            if (e.category() == ErrorCategory::invalid_state)
                throw Error(ErrorCategory::invalid_state,
                            "key '" + std::string(label) + "' already exists in the KMS");
            throw;
        }
    }
    Entry entry = m_impl->make_entry(label, id, std::move(key));
    KeyHandle handle = entry.handle;
    m_impl->keys.emplace(std::string(label), std::move(entry));
    return handle;
}

KeyHandle SoftwareKms::find_key(std::string_view label) {
    check_label(label);
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto it = m_impl->keys.find(label);
    if (it != m_impl->keys.end()) return it->second.handle;
    const Entry* e = m_impl->load(label);
    if (e == nullptr)
        throw Error(ErrorCategory::not_found, "no key '" + std::string(label) + "' in the KMS");
    return e->handle;
}

std::vector<std::uint8_t> SoftwareKms::sign(const KeyHandle& handle, const std::uint8_t* message,
                                            std::size_t size) {
    std::shared_ptr<const Botan::Private_Key> key = m_impl->get(handle).key;
    try {
        Botan::System_RNG rng;
        if (handle.algorithm == KeyAlgorithm::ed25519) {
            Botan::PK_Signer signer(*key, rng, "Pure");
            return signer.sign_message(message, size, rng);
        }
        Botan::PK_Signer signer(*key, rng, "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
        return signer.sign_message(message, size, rng);
    } catch (const std::exception& e) {
        throw Error(ErrorCategory::kms,
                    "signing with key '" + handle.label + "' failed: " + e.what());
    }
}

PublicKeyInfo SoftwareKms::public_key(const KeyHandle& handle) {
    const Entry& e = m_impl->get(handle);
    return PublicKeyInfo{e.handle.algorithm, e.spki};
}

}  // namespace kakunin
