// Test support for PKCS#11: a real SoftHSM2 token store in a temporary directory, and a raw
// PKCS#11 session (independent of Pkcs11Kms) to inspect what the token really holds.
#pragma once

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

// The test targets do not carry p11-kit's include directory; its pkcs11.h is self-contained.
#include <p11-kit-1/p11-kit/pkcs11.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace kakunin_test {

namespace fs = std::filesystem;

inline constexpr const char* k_user_pin = "20261126";
inline constexpr const char* k_so_pin = "so-20261126";

inline std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

inline std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
}

inline void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr
};

/// Runs a shell command line, capturing its output through a file in `scratch`.
inline CommandResult run_command(const std::string& command, const fs::path& scratch) {
    const fs::path out = scratch / "command-output.txt";
    const int status = std::system((command + " >" + shell_quote(out.string()) + " 2>&1").c_str());
    CommandResult r;
    r.exit_code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    r.output = read_text(out);
    return r;
}

inline bool on_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
    }
    return false;
}

/// The SoftHSM2 module under test: $KAKUNIN_SOFTHSM_MODULE, or Debian's location.
inline std::string softhsm_module() {
    const char* env = std::getenv("KAKUNIN_SOFTHSM_MODULE");
    if (env != nullptr && *env != '\0') return env;
    return "/usr/lib/softhsm/libsofthsm2.so";
}

/// One SoftHSM2 token directory for the whole test process. SOFTHSM2_CONF is read by the module
/// in C_Initialize, so it is set once, before any test loads the module, and never changed.
class SoftHsm {
public:
    static SoftHsm& instance() {
        static SoftHsm s;
        return s;
    }

    /// Fails the running test (never skips it) when SoftHSM2 is not installed.
    void require_installed() const {
        if (!on_path("softhsm2-util"))
            FAIL("softhsm2-util is not installed: run scripts/test, which installs softhsm2");
        if (!fs::exists(softhsm_module()))
            FAIL("the SoftHSM2 module " << softhsm_module()
                                        << " is not installed: run scripts/test, which installs "
                                           "softhsm2 (or set KAKUNIN_SOFTHSM_MODULE)");
        if (!m_ready) FAIL("could not prepare the SoftHSM2 token directory: " << m_problem);
    }

    /// Initialises a fresh token with a unique label derived from `name` and returns its label.
    std::string new_token(const std::string& name) {
        require_installed();
        const std::string label = name + "-" + std::to_string(++m_tokens);
        const CommandResult r = run_command(
            "softhsm2-util --init-token --free --label " + shell_quote(label) + " --pin " +
                shell_quote(k_user_pin) + " --so-pin " + shell_quote(k_so_pin),
            m_dir);
        if (r.exit_code != 0)
            FAIL("softhsm2-util --init-token failed (exit " << r.exit_code << "): " << r.output);
        return label;
    }

    const fs::path& dir() const noexcept { return m_dir; }
    std::string module() const { return softhsm_module(); }

    ~SoftHsm() {
        std::error_code ec;
        if (!m_dir.empty()) fs::remove_all(m_dir, ec);
    }

private:
    SoftHsm() {
        std::string templ = (fs::temp_directory_path() / "kakunin-p11-XXXXXX").string();
        if (::mkdtemp(templ.data()) == nullptr) {
            m_problem = "mkdtemp failed";
            return;
        }
        m_dir = templ;
        fs::create_directories(m_dir / "tokens");
        const fs::path conf = m_dir / "softhsm2.conf";
        write_text(conf, "directories.tokendir = " + (m_dir / "tokens").string() +
                             "\nobjectstore.backend = file\nlog.level = ERROR\n"
                             "slots.removable = false\n");
        ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);
        m_ready = true;
    }

    fs::path m_dir;
    bool m_ready = false;
    std::string m_problem;
    int m_tokens = 0;
};

/// The module loaded and initialised by the test itself, independent of Pkcs11Kms: dlopen,
/// C_GetFunctionList and plain PKCS#11 calls. If Pkcs11Kms already initialised the module in this
/// process, C_Initialize says so and this leaves finalisation to it.
class RawModule {
public:
    explicit RawModule(const std::string& module) {
        m_dl = dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL);
        REQUIRE(m_dl != nullptr);
        auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(m_dl, "C_GetFunctionList"));
        REQUIRE(get_list != nullptr);
        REQUIRE(get_list(&m_f) == CKR_OK);
        const CK_RV init = m_f->C_Initialize(nullptr);
        REQUIRE((init == CKR_OK || init == CKR_CRYPTOKI_ALREADY_INITIALIZED));
        m_finalize = init == CKR_OK;
    }
    ~RawModule() {
        if (m_finalize) m_f->C_Finalize(nullptr);
        dlclose(m_dl);
    }
    RawModule(const RawModule&) = delete;
    RawModule& operator=(const RawModule&) = delete;

    CK_FUNCTION_LIST_PTR f() const { return m_f; }

    CK_SLOT_ID slot_of(const std::string& token) {
        CK_ULONG n = 0;
        REQUIRE(m_f->C_GetSlotList(CK_TRUE, nullptr, &n) == CKR_OK);
        std::vector<CK_SLOT_ID> slots(n);
        REQUIRE(m_f->C_GetSlotList(CK_TRUE, slots.data(), &n) == CKR_OK);
        for (CK_ULONG i = 0; i < n; ++i) {
            CK_TOKEN_INFO info{};
            REQUIRE(m_f->C_GetTokenInfo(slots[i], &info) == CKR_OK);
            std::string label(reinterpret_cast<const char*>(info.label), sizeof info.label);
            while (!label.empty() && label.back() == ' ') label.pop_back();
            if (label == token) return slots[i];
        }
        FAIL("no token labelled " << token);
        return 0;
    }

    CK_SESSION_HANDLE open_session(const std::string& token, bool read_write = false) {
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        const CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
        REQUIRE(m_f->C_OpenSession(slot_of(token), flags, nullptr, nullptr, &s) == CKR_OK);
        return s;
    }

    /// Generates a P-256 key pair as another tool might, with the protection it is told.
    void generate_p256(CK_SESSION_HANDLE s, const std::string& label, const std::string& id,
                       bool sensitive, bool extractable) {
        static const std::uint8_t p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                            0xce, 0x3d, 0x03, 0x01, 0x07};
        CK_BBOOL yes = CK_TRUE;
        CK_BBOOL sens = sensitive ? CK_TRUE : CK_FALSE;
        CK_BBOOL extr = extractable ? CK_TRUE : CK_FALSE;
        auto lbl = const_cast<char*>(label.data());
        auto idp = const_cast<char*>(id.data());
        CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, sizeof yes},
                              {CKA_VERIFY, &yes, sizeof yes},
                              {CKA_LABEL, lbl, static_cast<CK_ULONG>(label.size())},
                              {CKA_ID, idp, static_cast<CK_ULONG>(id.size())},
                              {CKA_EC_PARAMS, const_cast<std::uint8_t*>(p256), sizeof p256}};
        CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, sizeof yes},
                               {CKA_PRIVATE, &yes, sizeof yes},
                               {CKA_SIGN, &yes, sizeof yes},
                               {CKA_SENSITIVE, &sens, sizeof sens},
                               {CKA_EXTRACTABLE, &extr, sizeof extr},
                               {CKA_LABEL, lbl, static_cast<CK_ULONG>(label.size())},
                               {CKA_ID, idp, static_cast<CK_ULONG>(id.size())}};
        CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, nullptr, 0};
        CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE hpriv = CK_INVALID_HANDLE;
        REQUIRE(m_f->C_GenerateKeyPair(s, &mech, pub, 5, priv, 7, &hpub, &hpriv) == CKR_OK);
    }

    CK_RV login(CK_SESSION_HANDLE s, const std::string& pin) {
        return m_f->C_Login(s, CKU_USER,
                            reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data())),
                            static_cast<CK_ULONG>(pin.size()));
    }

private:
    void* m_dl = nullptr;
    CK_FUNCTION_LIST_PTR m_f = nullptr;
    bool m_finalize = false;
};

/// What a raw PKCS#11 session sees of a private key: the token's answers, not Pkcs11Kms's.
struct RawKeyView {
    bool found = false;
    CK_RV value_rv = CKR_OK;  ///< C_GetAttributeValue(CKA_VALUE)
    CK_ULONG value_len = 0;
    CK_BBOOL sensitive = CK_FALSE;
    CK_BBOOL extractable = CK_TRUE;
    CK_BBOOL token = CK_FALSE;
    CK_BBOOL private_object = CK_FALSE;
};

/// Opens its own session on the token labelled `token`, logs in, and reads the private key
/// labelled `key_label`.
inline RawKeyView raw_inspect_private_key(const std::string& module, const std::string& token,
                                          const std::string& pin, const std::string& key_label) {
    RawKeyView view;
    RawModule raw(module);
    CK_FUNCTION_LIST_PTR f = raw.f();
    const CK_SESSION_HANDLE s = raw.open_session(token);
    const CK_RV login = raw.login(s, pin);
    REQUIRE((login == CKR_OK || login == CKR_USER_ALREADY_LOGGED_IN));

    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, const_cast<char*>(key_label.data()), static_cast<CK_ULONG>(key_label.size())}};
    REQUIRE(f->C_FindObjectsInit(s, tmpl, 2) == CKR_OK);
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_ULONG count = 0;
    REQUIRE(f->C_FindObjects(s, &obj, 1, &count) == CKR_OK);
    REQUIRE(f->C_FindObjectsFinal(s) == CKR_OK);
    view.found = count == 1;
    if (view.found) {
        CK_ATTRIBUTE flags[] = {{CKA_SENSITIVE, &view.sensitive, sizeof(CK_BBOOL)},
                                {CKA_EXTRACTABLE, &view.extractable, sizeof(CK_BBOOL)},
                                {CKA_TOKEN, &view.token, sizeof(CK_BBOOL)},
                                {CKA_PRIVATE, &view.private_object, sizeof(CK_BBOOL)}};
        REQUIRE(f->C_GetAttributeValue(s, obj, flags, 4) == CKR_OK);
        std::vector<std::uint8_t> buffer(4096);
        CK_ATTRIBUTE value = {CKA_VALUE, buffer.data(), static_cast<CK_ULONG>(buffer.size())};
        view.value_rv = f->C_GetAttributeValue(s, obj, &value, 1);
        view.value_len = value.ulValueLen;
    }
    f->C_CloseSession(s);
    return view;
}

}  // namespace kakunin_test
