#include "cli/cli_support.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "io/durable_file.hpp"
#include "kakunin/pkcs11_kms.hpp"
#include "kakunin/scope_extension.hpp"
#include "kakunin/software_kms.hpp"

namespace kakunin::cli {
namespace {

using json = nlohmann::json;

constexpr const char* kms_config_kind = "kakunin-kms/v1";

bool is_directory(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string member_string(const json& j, const char* name, const std::string& what) {
    const auto it = j.find(name);
    if (it == j.end() || !it->is_string())
        throw Error(ErrorCategory::invalid_input, what + ": " + name + ": missing or not a string");
    return it->get<std::string>();
}

}  // namespace

const char* to_string(KmsConfig::Backend b) noexcept {
    return b == KmsConfig::Backend::software ? "software" : "pkcs11";
}

KeyAlgorithm parse_algorithm(std::string_view text, std::string_view what) {
    if (text == "ed25519") return KeyAlgorithm::ed25519;
    if (text == "ecdsa-p256") return KeyAlgorithm::ecdsa_p256;
    throw Error(ErrorCategory::invalid_input, std::string(what) + ": '" + std::string(text) +
                                                  "' is neither ed25519 nor ecdsa-p256");
}

std::string kms_config_path(const std::string& state_dir) { return state_dir + "/kms.json"; }
std::string software_key_dir(const std::string& state_dir) { return state_dir + "/keys"; }

void save_kms_config(const std::string& state_dir, const KmsConfig& config) {
    json j = {{"kind", kms_config_kind},
              {"backend", to_string(config.backend)},
              {"algorithm", kakunin::to_string(config.algorithm)}};
    if (config.backend == KmsConfig::Backend::pkcs11) {
        j["pkcs11_module"] = config.pkcs11_module;
        j["token"] = config.token_label;
    } else {
        j["key_dir"] = "keys";
    }
    write_file(kms_config_path(state_dir), j.dump(2) + "\n");
}

KmsConfig load_kms_config(const std::string& state_dir) {
    const std::string path = kms_config_path(state_dir);
    json j;
    try {
        j = json::parse(read_file(path));
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, path + ": not JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw Error(ErrorCategory::invalid_input, path + ": not a JSON object");
    if (member_string(j, "kind", path) != kms_config_kind)
        throw Error(ErrorCategory::invalid_input,
                    path + ": kind: expected " + std::string(kms_config_kind));
    KmsConfig c;
    const std::string backend = member_string(j, "backend", path);
    if (backend == "software") {
        c.backend = KmsConfig::Backend::software;
    } else if (backend == "pkcs11") {
        c.backend = KmsConfig::Backend::pkcs11;
        c.pkcs11_module = member_string(j, "pkcs11_module", path);
        c.token_label = member_string(j, "token", path);
    } else {
        throw Error(ErrorCategory::invalid_input,
                    path + ": backend: '" + backend + "' is neither software nor pkcs11");
    }
    c.algorithm = parse_algorithm(member_string(j, "algorithm", path), path + ": algorithm");
    return c;
}

void require_ca_dir(const std::string& state_dir, bool need_kms) {
    if (state_dir.empty()) throw Error(ErrorCategory::invalid_input, "--dir: empty path");
    struct stat st;
    if (::stat(state_dir.c_str(), &st) != 0)
        throw Error(ErrorCategory::not_found, "state directory '" + state_dir +
                                                  "' does not exist (create a CA with 'kakunin "
                                                  "ca init --dir " +
                                                  state_dir + "')");
    if (!S_ISDIR(st.st_mode))
        throw Error(ErrorCategory::invalid_input,
                    "state directory '" + state_dir + "' is not a directory");
    if (!is_file(state_dir + "/ca.pem"))
        throw Error(ErrorCategory::not_found,
                    "'" + state_dir +
                        "' is not a Kakunin CA directory (no ca.pem; create one with "
                        "'kakunin ca init --dir " +
                        state_dir + "')");
    if (need_kms && !is_file(kms_config_path(state_dir)))
        throw Error(ErrorCategory::not_found,
                    "'" + state_dir +
                        "' has no kms.json: it was not set up by 'kakunin ca init', so the "
                        "command line does not know which KMS holds its keys");
}

void require_kms_secret(const KmsConfig& config) {
    if (config.backend == KmsConfig::Backend::pkcs11) {
        (void)Pkcs11Kms::pin_from_env();
        return;
    }
    const char* pass = std::getenv(SoftwareKms::passphrase_variable);
    if (pass == nullptr || *pass == '\0')
        throw Error(ErrorCategory::invalid_state,
                    std::string(SoftwareKms::passphrase_variable) +
                        " is not set: the software KMS needs it to encrypt and decrypt its keys");
}

std::shared_ptr<Kms> open_kms(const std::string& state_dir, const KmsConfig& config) {
    require_kms_secret(config);
    if (config.backend == KmsConfig::Backend::pkcs11)
        return Pkcs11Kms::open(config.pkcs11_module, config.token_label, Pkcs11Kms::pin_from_env());
    return SoftwareKms::open(software_key_dir(state_dir));
}

OpenedCa open_ca(const std::string& state_dir, const Clock& clock) {
    require_ca_dir(state_dir);
    OpenedCa out;
    out.config = load_kms_config(state_dir);
    out.kms = open_kms(state_dir, out.config);
    LocalCaOptions options;
    options.state_dir = state_dir;
    out.ca = LocalCa::open(out.kms, clock, options);
    return out;
}

std::string state_oid_arc(const std::string& state_dir) {
    const std::string path = state_dir + "/ca.json";
    if (!is_file(path)) return std::string(default_oid_arc);
    try {
        const json j = json::parse(read_file(path));
        const auto it = j.find("oid_arc");
        if (it != j.end() && it->is_string()) return it->get<std::string>();
        return std::string(default_oid_arc);
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, path + ": not JSON (" + e.what() + ")");
    }
}

std::chrono::seconds parse_duration(std::string_view text, std::string_view what) {
    auto bad = [&](const char* why) {
        return Error(ErrorCategory::invalid_input, std::string(what) + ": '" + std::string(text) +
                                                       "' " + why +
                                                       " (write a whole number and a unit: 90s, "
                                                       "30m, 24h, 7d)");
    };
    if (text.size() < 2) throw bad("is not a duration");
    const char unit = text.back();
    std::int64_t per = 0;
    switch (unit) {
        case 's': per = 1; break;
        case 'm': per = 60; break;
        case 'h': per = 3600; break;
        case 'd': per = 86400; break;
        default: throw bad("has no unit");
    }
    const std::string_view digits = text.substr(0, text.size() - 1);
    if (digits.size() > 9) throw bad("is too long");
    std::int64_t n = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') throw bad("is not a duration");
        n = n * 10 + (c - '0');
    }
    if (n == 0) throw bad("must be positive");
    if (n * per > 100LL * 366 * 86400) throw bad("is longer than 100 years");
    return std::chrono::seconds{n * per};
}

std::string read_file(const std::string& path) {
    if (is_directory(path)) throw Error(ErrorCategory::io, path + ": is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, path + ": cannot read (" + std::strerror(errno) + ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(ErrorCategory::io, path + ": read failed");
    return ss.str();
}

void require_output_file(const std::string& path) {
    if (path.empty()) throw Error(ErrorCategory::invalid_input, "output path is empty");
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        throw Error(ErrorCategory::io, path + ": cannot write (" + std::strerror(errno) + ")");
    }
    if (S_ISREG(st.st_mode)) return;
    const char* kind = S_ISLNK(st.st_mode)                          ? "a symbolic link"
                       : S_ISDIR(st.st_mode)                        ? "a directory"
                       : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                       : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                                    : "not a regular file";
    throw Error(ErrorCategory::invalid_input,
                path + ": exists and is " + kind +
                    ", not a regular file: refusing to write over it (remove it or name "
                    "another file)");
}

void write_file(const std::string& path, const std::string& text) {
    require_output_file(path);
    io::write_durable(path, text);
}

std::string login_name() {
    if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr)
        return pw->pw_name;
    const char* user = std::getenv("USER");
    return user != nullptr ? user : "";
}

std::string one_line(std::string_view message) {
    std::string out;
    out.reserve(message.size());
    bool in_break = false;
    for (char c : message) {
        if (c == '\n' || c == '\r') {
            in_break = true;
            continue;
        }
        if (in_break) {
            while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
            if (!out.empty()) out += "; ";
            in_break = false;
        }
        out += c;
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
    return out;
}

void run_command(const std::function<void()>& body) {
    try {
        body();
    } catch (const Error& e) {
        throw Error(e.category(), one_line(e.what()));
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, one_line(e.what()));
    } catch (const std::exception& e) {
        throw std::runtime_error(one_line(e.what()));
    }
}

}  // namespace kakunin::cli
