// Helpers shared by the kakunin commands: the state directory, the KMS it was initialised with
// (STATE/kms.json), durations, files, and one-line error messages.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/ca.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/kms.hpp"

namespace kakunin::cli {

/// Which KMS a state directory uses, as saved in STATE/kms.json. Never holds a secret: the
/// software KMS passphrase and the PKCS#11 PIN come from the environment each time.
struct KmsConfig {
    enum class Backend { software, pkcs11 };
    Backend backend = Backend::software;
    std::string pkcs11_module;  ///< pkcs11 only
    std::string token_label;    ///< pkcs11 only
    /// Algorithm of the keys the command line creates on first use (approvers, agents): the CA's.
    KeyAlgorithm algorithm = KeyAlgorithm::ed25519;
};

const char* to_string(KmsConfig::Backend b) noexcept;

/// "ed25519" or "ecdsa-p256"; throws kakunin::Error (invalid_input) naming `what` otherwise.
KeyAlgorithm parse_algorithm(std::string_view text, std::string_view what);

/// STATE/kms.json
std::string kms_config_path(const std::string& state_dir);
/// STATE/keys (the software KMS's encrypted key files)
std::string software_key_dir(const std::string& state_dir);

void save_kms_config(const std::string& state_dir, const KmsConfig& config);
KmsConfig load_kms_config(const std::string& state_dir);

/// Throws kakunin::Error (not_found) unless `state_dir` exists and holds a CA made by
/// `kakunin ca init` (ca.pem, and kms.json when `need_kms`); the message says which.
void require_ca_dir(const std::string& state_dir, bool need_kms = true);

/// Checks, before anything is created, that the secret the backend needs is in the environment
/// (KAKUNIN_KMS_PASSPHRASE or KAKUNIN_PKCS11_PIN); throws kakunin::Error naming the variable.
void require_kms_secret(const KmsConfig& config);

/// Opens the KMS described by `config` for `state_dir`.
std::shared_ptr<Kms> open_kms(const std::string& state_dir, const KmsConfig& config);

/// An existing CA state directory with its KMS, opened on the system clock.
struct OpenedCa {
    KmsConfig config;
    std::shared_ptr<Kms> kms;
    std::unique_ptr<LocalCa> ca;
};
OpenedCa open_ca(const std::string& state_dir, const Clock& clock);

/// The scope extension's OID arc of a state directory (from STATE/ca.json), or the default.
std::string state_oid_arc(const std::string& state_dir);

/// "90s", "30m", "24h", "7d": a positive whole number and one unit. Throws kakunin::Error
/// (invalid_input) naming `what`.
std::chrono::seconds parse_duration(std::string_view text, std::string_view what);

std::string read_file(const std::string& path);
/// Every file a command writes is checked here first: throws kakunin::Error (invalid_input)
/// naming `path` if it exists and is not a regular file (a symbolic link, a directory, a device,
/// a FIFO), so an output never replaces or writes through one. A missing path is fine.
void require_output_file(const std::string& path);
/// Writes `text` to `path` durably (io::write_durable: temporary file, fsync, rename, fsync of
/// the directory); `path` must not be anything but a regular file (require_output_file).
void write_file(const std::string& path, const std::string& text);

/// The name of the user running the program (for "registered by"), or "" if unknown.
std::string login_name();

/// Runs a command body so that every failure reaches main() as one kakunin::Error whose
/// message is a single line (newlines from lower layers are folded into "; ").
void run_command(const std::function<void()>& body);

/// `message` with every run of CR/LF replaced by "; " and trailing whitespace removed.
std::string one_line(std::string_view message);

}  // namespace kakunin::cli
