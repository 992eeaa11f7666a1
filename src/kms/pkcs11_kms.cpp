// Pkcs11Kms: kakunin::Kms over any PKCS#11 module, loaded with dlopen, using p11-kit's pkcs11.h
// for the type definitions only (Debian's Botan is built without its PKCS#11 wrapper).
#include "kakunin/pkcs11_kms.hpp"

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <botan/auto_rng.h>
#include <botan/ber_dec.h>
#include <botan/bigint.h>
#include <botan/der_enc.h>
#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/ed25519.h>
#include <botan/hash.h>
#include <botan/hex.h>
#include <botan/x509_key.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

namespace kakunin {
namespace {

// ---------------------------------------------------------------------------------------------
// Errors

const char* ckr_name(CK_RV rv) {
    switch (rv) {
#define KAKUNIN_CKR(name) \
    case name: return #name;
        KAKUNIN_CKR(CKR_OK)
        KAKUNIN_CKR(CKR_CANCEL)
        KAKUNIN_CKR(CKR_HOST_MEMORY)
        KAKUNIN_CKR(CKR_SLOT_ID_INVALID)
        KAKUNIN_CKR(CKR_GENERAL_ERROR)
        KAKUNIN_CKR(CKR_FUNCTION_FAILED)
        KAKUNIN_CKR(CKR_ARGUMENTS_BAD)
        KAKUNIN_CKR(CKR_NO_EVENT)
        KAKUNIN_CKR(CKR_NEED_TO_CREATE_THREADS)
        KAKUNIN_CKR(CKR_CANT_LOCK)
        KAKUNIN_CKR(CKR_ATTRIBUTE_READ_ONLY)
        KAKUNIN_CKR(CKR_ATTRIBUTE_SENSITIVE)
        KAKUNIN_CKR(CKR_ATTRIBUTE_TYPE_INVALID)
        KAKUNIN_CKR(CKR_ATTRIBUTE_VALUE_INVALID)
        KAKUNIN_CKR(CKR_ACTION_PROHIBITED)
        KAKUNIN_CKR(CKR_DATA_INVALID)
        KAKUNIN_CKR(CKR_DATA_LEN_RANGE)
        KAKUNIN_CKR(CKR_DEVICE_ERROR)
        KAKUNIN_CKR(CKR_DEVICE_MEMORY)
        KAKUNIN_CKR(CKR_DEVICE_REMOVED)
        KAKUNIN_CKR(CKR_FUNCTION_CANCELED)
        KAKUNIN_CKR(CKR_FUNCTION_NOT_PARALLEL)
        KAKUNIN_CKR(CKR_FUNCTION_NOT_SUPPORTED)
        KAKUNIN_CKR(CKR_KEY_HANDLE_INVALID)
        KAKUNIN_CKR(CKR_KEY_SIZE_RANGE)
        KAKUNIN_CKR(CKR_KEY_TYPE_INCONSISTENT)
        KAKUNIN_CKR(CKR_KEY_FUNCTION_NOT_PERMITTED)
        KAKUNIN_CKR(CKR_KEY_UNEXTRACTABLE)
        KAKUNIN_CKR(CKR_MECHANISM_INVALID)
        KAKUNIN_CKR(CKR_MECHANISM_PARAM_INVALID)
        KAKUNIN_CKR(CKR_OBJECT_HANDLE_INVALID)
        KAKUNIN_CKR(CKR_OPERATION_ACTIVE)
        KAKUNIN_CKR(CKR_OPERATION_NOT_INITIALIZED)
        KAKUNIN_CKR(CKR_PIN_INCORRECT)
        KAKUNIN_CKR(CKR_PIN_INVALID)
        KAKUNIN_CKR(CKR_PIN_LEN_RANGE)
        KAKUNIN_CKR(CKR_PIN_EXPIRED)
        KAKUNIN_CKR(CKR_PIN_LOCKED)
        KAKUNIN_CKR(CKR_SESSION_CLOSED)
        KAKUNIN_CKR(CKR_SESSION_COUNT)
        KAKUNIN_CKR(CKR_SESSION_HANDLE_INVALID)
        KAKUNIN_CKR(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
        KAKUNIN_CKR(CKR_SESSION_READ_ONLY)
        KAKUNIN_CKR(CKR_SESSION_EXISTS)
        KAKUNIN_CKR(CKR_SESSION_READ_ONLY_EXISTS)
        KAKUNIN_CKR(CKR_SESSION_READ_WRITE_SO_EXISTS)
        KAKUNIN_CKR(CKR_SIGNATURE_INVALID)
        KAKUNIN_CKR(CKR_SIGNATURE_LEN_RANGE)
        KAKUNIN_CKR(CKR_TEMPLATE_INCOMPLETE)
        KAKUNIN_CKR(CKR_TEMPLATE_INCONSISTENT)
        KAKUNIN_CKR(CKR_TOKEN_NOT_PRESENT)
        KAKUNIN_CKR(CKR_TOKEN_NOT_RECOGNIZED)
        KAKUNIN_CKR(CKR_TOKEN_WRITE_PROTECTED)
        KAKUNIN_CKR(CKR_USER_ALREADY_LOGGED_IN)
        KAKUNIN_CKR(CKR_USER_NOT_LOGGED_IN)
        KAKUNIN_CKR(CKR_USER_PIN_NOT_INITIALIZED)
        KAKUNIN_CKR(CKR_USER_TYPE_INVALID)
        KAKUNIN_CKR(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
        KAKUNIN_CKR(CKR_USER_TOO_MANY_TYPES)
        KAKUNIN_CKR(CKR_RANDOM_SEED_NOT_SUPPORTED)
        KAKUNIN_CKR(CKR_RANDOM_NO_RNG)
        KAKUNIN_CKR(CKR_DOMAIN_PARAMS_INVALID)
        KAKUNIN_CKR(CKR_CURVE_NOT_SUPPORTED)
        KAKUNIN_CKR(CKR_BUFFER_TOO_SMALL)
        KAKUNIN_CKR(CKR_INFORMATION_SENSITIVE)
        KAKUNIN_CKR(CKR_CRYPTOKI_NOT_INITIALIZED)
        KAKUNIN_CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED)
        KAKUNIN_CKR(CKR_MUTEX_BAD)
        KAKUNIN_CKR(CKR_MUTEX_NOT_LOCKED)
        KAKUNIN_CKR(CKR_FIPS_SELF_TEST_FAILED)
        KAKUNIN_CKR(CKR_LIBRARY_LOAD_FAILED)
        KAKUNIN_CKR(CKR_PIN_TOO_WEAK)
        KAKUNIN_CKR(CKR_PUBLIC_KEY_INVALID)
        KAKUNIN_CKR(CKR_FUNCTION_REJECTED)
#undef KAKUNIN_CKR
        default: return nullptr;
    }
}

std::string rv_string(CK_RV rv) {
    if (const char* name = ckr_name(rv)) return name;
    char buf[32];
    std::snprintf(buf, sizeof buf, "CKR_0x%08lx", static_cast<unsigned long>(rv));
    return buf;
}

/// A failed PKCS#11 call: the message names the function and the return code.
class P11Error : public Error {
public:
    P11Error(const char* function, CK_RV rv, const std::string& context)
        : Error(category_for(rv), message(function, rv, context)), m_rv(rv) {}
    CK_RV rv() const noexcept { return m_rv; }

private:
    static ErrorCategory category_for(CK_RV rv) {
        switch (rv) {
            case CKR_PIN_INCORRECT:
            case CKR_PIN_INVALID:
            case CKR_PIN_LEN_RANGE:
            case CKR_PIN_EXPIRED:
            case CKR_PIN_LOCKED:
            case CKR_USER_PIN_NOT_INITIALIZED: return ErrorCategory::unauthorised;
            default: return ErrorCategory::kms;
        }
    }
    static std::string message(const char* function, CK_RV rv, const std::string& context) {
        std::string m = std::string(function) + ": " + rv_string(rv);
        if (!context.empty()) m += " (" + context + ")";
        return m;
    }
    CK_RV m_rv;
};

void check_rv(CK_RV rv, const char* function, const std::string& context = {}) {
    if (rv != CKR_OK) throw P11Error(function, rv, context);
}

/// Codes after which a fresh session (and login) may succeed where the old one failed.
bool session_recoverable(CK_RV rv) {
    switch (rv) {
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_DEVICE_REMOVED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_HANDLE_INVALID: return true;
        default: return false;
    }
}

// ---------------------------------------------------------------------------------------------
// Constants

// DER OBJECT IDENTIFIERs, as CKA_EC_PARAMS carries them.
const std::vector<std::uint8_t> k_p256_params = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                                 0xce, 0x3d, 0x03, 0x01, 0x07};
const std::vector<std::uint8_t> k_ed25519_params = {0x06, 0x03, 0x2b, 0x65, 0x70};
// PKCS#11 3.0 also allows the curve name as a PrintableString.
const std::vector<std::uint8_t> k_ed25519_params_name = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                                         'd',  's',  '2', '5', '5', '1', '9'};

struct Mechanisms {
    CK_MECHANISM_TYPE generate;
    CK_MECHANISM_TYPE sign;
    const char* generate_name;
    const char* sign_name;
};

Mechanisms mechanisms_for(KeyAlgorithm algorithm) {
    if (algorithm == KeyAlgorithm::ecdsa_p256)
        return {CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, "CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA"};
    return {CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, "CKM_EC_EDWARDS_KEY_PAIR_GEN", "CKM_EDDSA"};
}

std::string trim_padded(const unsigned char* text, std::size_t size) {
    std::string s(reinterpret_cast<const char*>(text), size);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// ---------------------------------------------------------------------------------------------
// Loaded modules, shared by every Pkcs11Kms in the process. C_Initialize and C_Finalize are
// process-wide in PKCS#11, so the module is initialised by its first user and finalised by its
// last, under one lock so that a load never races a finalise.

struct LoadedModule {
    void* dl = nullptr;
    CK_FUNCTION_LIST_PTR functions = nullptr;
    bool finalize_on_release = false;  ///< false when someone else in the process initialised it
    std::size_t users = 0;
    /// SHA-256 of the PIN each slot was logged in with by a Kakunin session, to tell whether a
    /// CKR_USER_ALREADY_LOGGED_IN login proved anything.
    std::map<CK_SLOT_ID, std::array<std::uint8_t, 32>> login_pin_hash;
};

std::mutex g_modules_mutex;
std::map<void*, LoadedModule> g_modules;  // keyed by dlopen handle: one entry per loaded library

std::array<std::uint8_t, 32> pin_hash(const std::string& pin) {
    auto sha = Botan::HashFunction::create_or_throw("SHA-256");
    sha->update(reinterpret_cast<const std::uint8_t*>(pin.data()), pin.size());
    std::array<std::uint8_t, 32> out{};
    sha->final(out.data());
    return out;
}

class ModuleRef {
public:
    explicit ModuleRef(const std::string& path) {
        std::lock_guard<std::mutex> lock(g_modules_mutex);
        dlerror();
        void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (dl == nullptr) {
            const char* why = dlerror();
            throw Error(ErrorCategory::kms, "cannot load PKCS#11 module " + quoted(path) + ": " +
                                                (why != nullptr ? why : "dlopen failed"));
        }
        LoadedModule& m = g_modules[dl];
        if (m.users == 0) {
            try {
                initialise(m, dl, path);
            } catch (...) {
                g_modules.erase(dl);
                dlclose(dl);
                throw;
            }
        }
        ++m.users;
        m_dl = dl;
        m_functions = m.functions;
    }
    ~ModuleRef() {
        std::lock_guard<std::mutex> lock(g_modules_mutex);
        auto it = g_modules.find(m_dl);
        if (it != g_modules.end() && --it->second.users == 0) {
            if (it->second.finalize_on_release) it->second.functions->C_Finalize(nullptr);
            g_modules.erase(it);
        }
        dlclose(m_dl);
    }
    ModuleRef(const ModuleRef&) = delete;
    ModuleRef& operator=(const ModuleRef&) = delete;

    CK_FUNCTION_LIST_PTR functions() const noexcept { return m_functions; }

    /// Records a successful login on `slot`; call with the PIN that the token accepted.
    void remember_login(CK_SLOT_ID slot, const std::array<std::uint8_t, 32>& hash) {
        std::lock_guard<std::mutex> lock(g_modules_mutex);
        g_modules[m_dl].login_pin_hash[slot] = hash;
    }
    /// Whether a Kakunin session logged in to `slot` with this PIN.
    bool logged_in_with(CK_SLOT_ID slot, const std::array<std::uint8_t, 32>& hash) {
        std::lock_guard<std::mutex> lock(g_modules_mutex);
        const auto& known = g_modules[m_dl].login_pin_hash;
        auto it = known.find(slot);
        if (it == known.end()) return false;
        std::uint8_t diff = 0;
        for (std::size_t i = 0; i < hash.size(); ++i)
            diff = static_cast<std::uint8_t>(diff | (it->second[i] ^ hash[i]));
        return diff == 0;
    }
    void forget_login(CK_SLOT_ID slot) {
        std::lock_guard<std::mutex> lock(g_modules_mutex);
        g_modules[m_dl].login_pin_hash.erase(slot);
    }

private:
    static void initialise(LoadedModule& m, void* dl, const std::string& path) {
        auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
        if (get_list == nullptr)
            throw Error(ErrorCategory::kms,
                        "PKCS#11 module " + quoted(path) + " does not export C_GetFunctionList");
        CK_FUNCTION_LIST_PTR functions = nullptr;
        check_rv(get_list(&functions), "C_GetFunctionList", path);
        if (functions == nullptr)
            throw Error(ErrorCategory::kms,
                        "C_GetFunctionList returned no function list (" + path + ")");
        CK_C_INITIALIZE_ARGS args{};
        args.flags = CKF_OS_LOCKING_OK;
        CK_RV rv = functions->C_Initialize(&args);
        if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
            m.finalize_on_release = false;
        } else {
            check_rv(rv, "C_Initialize", path);
            m.finalize_on_release = true;
        }
        m.dl = dl;
        m.functions = functions;
    }

    void* m_dl = nullptr;
    CK_FUNCTION_LIST_PTR m_functions = nullptr;
};

/// Ends a C_FindObjectsInit on every path.
class FindGuard {
public:
    FindGuard(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s) : m_f(f), m_s(s) {}
    ~FindGuard() { m_f->C_FindObjectsFinal(m_s); }
    FindGuard(const FindGuard&) = delete;
    FindGuard& operator=(const FindGuard&) = delete;

private:
    CK_FUNCTION_LIST_PTR m_f;
    CK_SESSION_HANDLE m_s;
};

std::vector<std::uint8_t> unwrap_ec_point(const std::vector<std::uint8_t>& ec_point) {
    // CKA_EC_POINT is a DER OCTET STRING per the standard; a few modules return the bare point.
    try {
        std::vector<std::uint8_t> inner;
        Botan::BER_Decoder(ec_point).decode(inner, Botan::OCTET_STRING).verify_end();
        return inner;
    } catch (const Botan::Exception&) {
        return ec_point;
    }
}

std::vector<std::uint8_t> ecdsa_raw_to_der(const std::uint8_t* raw, std::size_t size) {
    if (size != 64)
        throw Error(ErrorCategory::kms, "C_Sign: CKM_ECDSA returned " + std::to_string(size) +
                                            " bytes, expected 64 (r||s for P-256)");
    const Botan::BigInt r(raw, 32);
    const Botan::BigInt s(raw + 32, 32);
    std::vector<std::uint8_t> der;
    Botan::DER_Encoder(der).start_cons(Botan::SEQUENCE).encode(r).encode(s).end_cons();
    return der;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Pkcs11Kms::Impl {
    std::string module_path;
    std::string token_label;
    std::string pin;
    std::array<std::uint8_t, 32> pin_sha{};
    std::unique_ptr<ModuleRef> module;
    CK_FUNCTION_LIST_PTR f = nullptr;
    CK_SLOT_ID slot = 0;

    std::mutex mutex;  // guards everything below and every use of the session
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    // Keyed by cache_key(): a handle that names the right key with the wrong algorithm misses the
    // cache and is refused by the lookup.
    std::map<std::string, CK_OBJECT_HANDLE> private_handles;
    std::map<std::string, std::vector<std::uint8_t>> spki_cache;

    static std::string cache_key(const KeyHandle& key) {
        return key.label + '\n' + key.id + '\n' + to_string(key.algorithm);
    }

    ~Impl() {
        close_session();
        std::fill(pin.begin(), pin.end(), '\0');
    }

    // -- session ----------------------------------------------------------------------------

    void find_slot() {
        CK_ULONG count = 0;
        check_rv(f->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
        std::vector<CK_SLOT_ID> slots(count);
        if (count > 0) check_rv(f->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
        slots.resize(count);
        std::vector<CK_SLOT_ID> matches;
        std::string seen;
        for (CK_SLOT_ID s : slots) {
            CK_TOKEN_INFO info{};
            check_rv(f->C_GetTokenInfo(s, &info), "C_GetTokenInfo");
            if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
            const std::string label = trim_padded(info.label, sizeof info.label);
            if (label == token_label) matches.push_back(s);
            seen += (seen.empty() ? "" : ", ") + quoted(label);
        }
        if (matches.empty())
            throw Error(ErrorCategory::kms, "no PKCS#11 token labelled " + quoted(token_label) +
                                                " in module " + quoted(module_path) +
                                                " (tokens present: " +
                                                (seen.empty() ? std::string("none") : seen) + ")");
        if (matches.size() > 1)
            throw Error(ErrorCategory::kms, std::to_string(matches.size()) +
                                                " PKCS#11 tokens are labelled " +
                                                quoted(token_label) + " in module " +
                                                quoted(module_path) + "; labels must be unique");
        slot = matches.front();
    }

    void close_session() noexcept {
        if (session != CK_INVALID_HANDLE) f->C_CloseSession(session);
        session = CK_INVALID_HANDLE;
        private_handles.clear();
    }

    void login() {
        CK_RV rv = f->C_Login(session, CKU_USER,
                              reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data())),
                              static_cast<CK_ULONG>(pin.size()));
        if (rv == CKR_USER_ALREADY_LOGGED_IN) {
            // Login state is shared by all sessions of the process on this token: the token did
            // not check this PIN. Accept it only if a Kakunin session logged in with the same
            // PIN; otherwise log out and let the token judge it.
            if (module->logged_in_with(slot, pin_sha)) return;
            f->C_Logout(session);
            module->forget_login(slot);
            rv = f->C_Login(session, CKU_USER,
                            reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data())),
                            static_cast<CK_ULONG>(pin.size()));
        }
        check_rv(rv, "C_Login", "token " + quoted(token_label));
        module->remember_login(slot, pin_sha);
    }

    void open_session() {
        close_session();
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        CK_RV rv =
            f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s);
        if (rv == CKR_SLOT_ID_INVALID || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED) {
            // A re-inserted or re-enumerated token may sit in another slot now: find it by label.
            find_slot();
            rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s);
        }
        check_rv(rv, "C_OpenSession", "token " + quoted(token_label));
        session = s;
        try {
            login();
        } catch (...) {
            close_session();
            throw;
        }
    }

    /// A live, logged-in read-write session.
    void ensure_session() {
        if (session == CK_INVALID_HANDLE) {
            open_session();
            return;
        }
        CK_SESSION_INFO info{};
        CK_RV rv = f->C_GetSessionInfo(session, &info);
        if (rv != CKR_OK) {
            if (!session_recoverable(rv)) check_rv(rv, "C_GetSessionInfo");
            open_session();
            return;
        }
        if (info.state != CKS_RW_USER_FUNCTIONS) login();
    }

    /// Runs `op` on a logged-in session; if the session or login was lost (token re-inserted,
    /// logout by another user of the module), reopens it and tries once more.
    template <typename Op>
    auto with_session(Op&& op) -> decltype(op()) {
        ensure_session();
        try {
            return op();
        } catch (const P11Error& e) {
            if (!session_recoverable(e.rv())) throw;
        }
        open_session();
        return op();
    }

    // -- objects ----------------------------------------------------------------------------

    std::vector<CK_OBJECT_HANDLE> find_objects(std::vector<CK_ATTRIBUTE> tmpl) {
        check_rv(f->C_FindObjectsInit(session, tmpl.data(), static_cast<CK_ULONG>(tmpl.size())),
                 "C_FindObjectsInit");
        FindGuard guard(f, session);
        std::vector<CK_OBJECT_HANDLE> found;
        for (;;) {
            CK_OBJECT_HANDLE batch[16];
            CK_ULONG n = 0;
            check_rv(f->C_FindObjects(session, batch, 16, &n), "C_FindObjects");
            if (n == 0) break;
            found.insert(found.end(), batch, batch + n);
        }
        return found;
    }

    std::vector<CK_OBJECT_HANDLE> find_keys(CK_OBJECT_CLASS cls, std::string_view label,
                                            const std::vector<std::uint8_t>* id) {
        std::vector<CK_ATTRIBUTE> tmpl = {
            {CKA_CLASS, &cls, sizeof cls},
            {CKA_LABEL, const_cast<char*>(label.data()), static_cast<CK_ULONG>(label.size())}};
        if (id != nullptr && !id->empty())
            tmpl.push_back(
                {CKA_ID, const_cast<std::uint8_t*>(id->data()), static_cast<CK_ULONG>(id->size())});
        return find_objects(std::move(tmpl));
    }

    /// The attribute's value, or nothing when the token will not reveal it.
    std::optional<std::vector<std::uint8_t>> attribute(CK_OBJECT_HANDLE obj,
                                                       CK_ATTRIBUTE_TYPE type) {
        CK_ATTRIBUTE a = {type, nullptr, 0};
        CK_RV rv = f->C_GetAttributeValue(session, obj, &a, 1);
        if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID) return std::nullopt;
        check_rv(rv, "C_GetAttributeValue");
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return std::nullopt;
        std::vector<std::uint8_t> value(a.ulValueLen);
        a.pValue = value.data();
        rv = f->C_GetAttributeValue(session, obj, &a, 1);
        if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID) return std::nullopt;
        check_rv(rv, "C_GetAttributeValue");
        value.resize(a.ulValueLen);
        return value;
    }

    std::vector<std::uint8_t> required_attribute(CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                                                 const char* name, std::string_view label) {
        auto v = attribute(obj, type);
        if (!v)
            throw Error(ErrorCategory::kms, std::string("C_GetAttributeValue: key ") +
                                                quoted(label) + " has no readable " + name);
        return *v;
    }

    template <typename T>
    std::optional<T> scalar_attribute(CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type) {
        auto v = attribute(obj, type);
        if (!v || v->size() != sizeof(T)) return std::nullopt;
        T out;
        std::memcpy(&out, v->data(), sizeof(T));
        return out;
    }

    /// Fail closed on keys made by other tools: Kakunin signs only with keys that cannot leave
    /// the token.
    void require_protected(CK_OBJECT_HANDLE obj, std::string_view label) {
        const auto sensitive = scalar_attribute<CK_BBOOL>(obj, CKA_SENSITIVE);
        const auto extractable = scalar_attribute<CK_BBOOL>(obj, CKA_EXTRACTABLE);
        auto text = [](const std::optional<CK_BBOOL>& v) {
            return !v ? "unknown" : (*v == CK_TRUE ? "true" : "false");
        };
        if (sensitive && *sensitive == CK_TRUE && extractable && *extractable == CK_FALSE) return;
        throw Error(ErrorCategory::kms,
                    "key " + quoted(label) + " on token " + quoted(token_label) +
                        " is not sensitive and non-extractable (CKA_SENSITIVE=" + text(sensitive) +
                        ", CKA_EXTRACTABLE=" + text(extractable) +
                        "); Kakunin signs only with keys that cannot leave "
                        "the token");
    }

    KeyAlgorithm algorithm_of(CK_OBJECT_HANDLE obj, std::string_view label) {
        auto type = scalar_attribute<CK_KEY_TYPE>(obj, CKA_KEY_TYPE);
        if (!type) throw Error(ErrorCategory::kms, "key " + quoted(label) + " has no CKA_KEY_TYPE");
        if (*type == CKK_EC_EDWARDS) return KeyAlgorithm::ed25519;
        if (*type == CKK_EC) {
            auto params = attribute(obj, CKA_EC_PARAMS);
            if (params && *params == k_p256_params) return KeyAlgorithm::ecdsa_p256;
            throw Error(ErrorCategory::kms,
                        "key " + quoted(label) + " is an EC key on a curve other than P-256");
        }
        throw Error(ErrorCategory::kms, "key " + quoted(label) + " has an unsupported key type (" +
                                            std::to_string(*type) + ")");
    }

    static std::vector<std::uint8_t> id_bytes(const KeyHandle& key) {
        try {
            return Botan::hex_decode(key.id);
        } catch (const Botan::Exception&) {
            throw Error(ErrorCategory::invalid_input, "key handle " + quoted(key.label) +
                                                          " has a malformed id " + quoted(key.id));
        }
    }

    /// The private key object the handle names. The cache holds only keys that passed
    /// require_protected(); key_protection() looks without that check so it can report.
    CK_OBJECT_HANDLE private_key(const KeyHandle& key, bool require_protection = true) {
        const std::string cached_as = cache_key(key);
        auto cached = private_handles.find(cached_as);
        if (cached != private_handles.end()) return cached->second;
        const auto id = id_bytes(key);
        auto found = find_keys(CKO_PRIVATE_KEY, key.label, &id);
        if (found.empty())
            throw Error(ErrorCategory::not_found, "no private key labelled " + quoted(key.label) +
                                                      " with id " + quoted(key.id) + " on token " +
                                                      quoted(token_label));
        if (found.size() > 1)
            throw Error(ErrorCategory::kms, "several private keys labelled " + quoted(key.label) +
                                                " with id " + quoted(key.id) + " on token " +
                                                quoted(token_label));
        if (algorithm_of(found.front(), key.label) != key.algorithm)
            throw Error(ErrorCategory::kms, "key " + quoted(key.label) + " on token " +
                                                quoted(token_label) + " is not " +
                                                to_string(key.algorithm));
        if (!require_protection) return found.front();
        require_protected(found.front(), key.label);
        private_handles.emplace(cached_as, found.front());
        return found.front();
    }

    bool mechanism_ok(CK_MECHANISM_TYPE mech, CK_FLAGS needed) {
        CK_MECHANISM_INFO info{};
        CK_RV rv = f->C_GetMechanismInfo(slot, mech, &info);
        if (rv == CKR_MECHANISM_INVALID) return false;
        check_rv(rv, "C_GetMechanismInfo");
        return (info.flags & needed) == needed;
    }

    bool supports(KeyAlgorithm algorithm) {
        const Mechanisms m = mechanisms_for(algorithm);
        return mechanism_ok(m.generate, CKF_GENERATE_KEY_PAIR) && mechanism_ok(m.sign, CKF_SIGN);
    }

    // -- operations -------------------------------------------------------------------------

    KeyHandle create_key(std::string_view label, KeyAlgorithm algorithm) {
        if (label.empty()) throw Error(ErrorCategory::invalid_input, "key label must not be empty");
        const Mechanisms mech = mechanisms_for(algorithm);
        if (!supports(algorithm))
            throw Error(ErrorCategory::kms,
                        std::string("token ") + quoted(token_label) + " in module " +
                            quoted(module_path) + " does not support " + to_string(algorithm) +
                            " (needs " + mech.generate_name + " and " + mech.sign_name + ")");
        if (!find_keys(CKO_PRIVATE_KEY, label, nullptr).empty() ||
            !find_keys(CKO_PUBLIC_KEY, label, nullptr).empty())
            throw Error(ErrorCategory::invalid_state, "a key labelled " + quoted(label) +
                                                          " already exists on token " +
                                                          quoted(token_label));

        Botan::AutoSeeded_RNG rng;
        std::vector<std::uint8_t> id(16);
        rng.randomize(id.data(), id.size());
        const std::vector<std::uint8_t>& params =
            algorithm == KeyAlgorithm::ecdsa_p256 ? k_p256_params : k_ed25519_params;

        CK_BBOOL yes = CK_TRUE;
        CK_BBOOL no = CK_FALSE;
        auto label_ptr = const_cast<char*>(label.data());
        const auto label_len = static_cast<CK_ULONG>(label.size());
        CK_ATTRIBUTE pub[] = {
            {CKA_TOKEN, &yes, sizeof yes},
            {CKA_PRIVATE, &no, sizeof no},
            {CKA_VERIFY, &yes, sizeof yes},
            {CKA_LABEL, label_ptr, label_len},
            {CKA_ID, id.data(), static_cast<CK_ULONG>(id.size())},
            {CKA_EC_PARAMS, const_cast<std::uint8_t*>(params.data()),
             static_cast<CK_ULONG>(params.size())},
        };
        CK_ATTRIBUTE priv[] = {
            {CKA_TOKEN, &yes, sizeof yes},
            {CKA_PRIVATE, &yes, sizeof yes},
            {CKA_SENSITIVE, &yes, sizeof yes},
            {CKA_EXTRACTABLE, &no, sizeof no},
            {CKA_SIGN, &yes, sizeof yes},
            {CKA_LABEL, label_ptr, label_len},
            {CKA_ID, id.data(), static_cast<CK_ULONG>(id.size())},
        };
        CK_MECHANISM gen = {mech.generate, nullptr, 0};
        CK_OBJECT_HANDLE pub_h = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE priv_h = CK_INVALID_HANDLE;
        check_rv(f->C_GenerateKeyPair(session, &gen, pub, sizeof pub / sizeof pub[0], priv,
                                      sizeof priv / sizeof priv[0], &pub_h, &priv_h),
                 "C_GenerateKeyPair", std::string(mech.generate_name) + ", key " + quoted(label));

        // Fail closed: a token that silently ignored the protection attributes does not get to
        // keep a key that Kakunin would then trust.
        try {
            require_protected(priv_h, label);
        } catch (const Error& e) {
            f->C_DestroyObject(session, priv_h);
            f->C_DestroyObject(session, pub_h);
            throw Error(ErrorCategory::kms, std::string(e.what()) + "; the new key was destroyed");
        }
        KeyHandle handle{std::string(label), Botan::hex_encode(id, false), algorithm};
        private_handles.emplace(cache_key(handle), priv_h);
        return handle;
    }

    KeyHandle find_key(std::string_view label) {
        auto found = find_keys(CKO_PRIVATE_KEY, label, nullptr);
        if (found.empty())
            throw Error(ErrorCategory::not_found,
                        "no key labelled " + quoted(label) + " on token " + quoted(token_label));
        if (found.size() > 1)
            throw Error(ErrorCategory::kms, std::to_string(found.size()) +
                                                " private keys are labelled " + quoted(label) +
                                                " on token " + quoted(token_label));
        const auto id = required_attribute(found.front(), CKA_ID, "CKA_ID", label);
        KeyHandle handle{std::string(label), Botan::hex_encode(id, false),
                         algorithm_of(found.front(), label)};
        require_protected(found.front(), label);
        private_handles[cache_key(handle)] = found.front();
        return handle;
    }

    std::vector<std::uint8_t> sign_prepared(const KeyHandle& key, const std::uint8_t* data,
                                            std::size_t size) {
        const CK_OBJECT_HANDLE obj = private_key(key);
        const Mechanisms m = mechanisms_for(key.algorithm);
        CK_MECHANISM mech = {m.sign, nullptr, 0};
        check_rv(f->C_SignInit(session, &mech, obj), "C_SignInit",
                 std::string(m.sign_name) + ", key " + quoted(key.label));
        // 64 bytes for both algorithms; the spare room keeps a token that pads from failing
        // with CKR_BUFFER_TOO_SMALL, which would leave the operation active.
        std::vector<std::uint8_t> sig(512);
        CK_ULONG sig_len = static_cast<CK_ULONG>(sig.size());
        check_rv(f->C_Sign(session, const_cast<std::uint8_t*>(data), static_cast<CK_ULONG>(size),
                           sig.data(), &sig_len),
                 "C_Sign", std::string(m.sign_name) + ", key " + quoted(key.label));
        sig.resize(sig_len);
        if (key.algorithm == KeyAlgorithm::ecdsa_p256) return ecdsa_raw_to_der(sig.data(), sig_len);
        if (sig.size() != 64)
            throw Error(ErrorCategory::kms, "C_Sign: CKM_EDDSA returned " +
                                                std::to_string(sig.size()) + " bytes, expected 64");
        return sig;
    }

    std::vector<std::uint8_t> public_key_spki(const KeyHandle& key) {
        const std::string cached_as = cache_key(key);
        auto cached = spki_cache.find(cached_as);
        if (cached != spki_cache.end()) return cached->second;

        const auto id = id_bytes(key);
        auto found = find_keys(CKO_PUBLIC_KEY, key.label, &id);
        if (found.empty())
            throw Error(ErrorCategory::not_found,
                        "no public key object labelled " + quoted(key.label) + " with id " +
                            quoted(key.id) + " on token " + quoted(token_label));
        if (found.size() > 1)
            throw Error(ErrorCategory::kms, "several public keys labelled " + quoted(key.label) +
                                                " with id " + quoted(key.id));
        const auto params =
            required_attribute(found.front(), CKA_EC_PARAMS, "CKA_EC_PARAMS", key.label);
        const auto point = unwrap_ec_point(
            required_attribute(found.front(), CKA_EC_POINT, "CKA_EC_POINT", key.label));

        std::vector<std::uint8_t> spki;
        try {
            if (key.algorithm == KeyAlgorithm::ecdsa_p256) {
                if (params != k_p256_params)
                    throw Error(ErrorCategory::kms,
                                "public key " + quoted(key.label) + " is not on P-256");
                const Botan::EC_Group group("secp256r1");
                const Botan::ECDSA_PublicKey pk(group, group.OS2ECP(point));
                spki = Botan::X509::BER_encode(pk);
            } else {
                if (params != k_ed25519_params && params != k_ed25519_params_name)
                    throw Error(ErrorCategory::kms,
                                "public key " + quoted(key.label) + " is not an Ed25519 key");
                if (point.size() != 32)
                    throw Error(ErrorCategory::kms,
                                "public key " + quoted(key.label) + " has a CKA_EC_POINT of " +
                                    std::to_string(point.size()) + " bytes, expected 32");
                const Botan::Ed25519_PublicKey pk(point);
                spki = Botan::X509::BER_encode(pk);
            }
        } catch (const Botan::Exception& e) {
            throw Error(ErrorCategory::kms, "public key " + quoted(key.label) + " on token " +
                                                quoted(token_label) + " is malformed: " + e.what());
        }
        spki_cache.emplace(cached_as, spki);
        return spki;
    }

    Pkcs11KeyProtection protection(const KeyHandle& key) {
        const CK_OBJECT_HANDLE obj = private_key(key, false);
        auto flag = [&](CK_ATTRIBUTE_TYPE t, bool absent) {
            auto v = scalar_attribute<CK_BBOOL>(obj, t);
            return v ? *v == CK_TRUE : absent;
        };
        Pkcs11KeyProtection p;
        p.token = flag(CKA_TOKEN, false);
        p.private_object = flag(CKA_PRIVATE, false);
        p.sensitive = flag(CKA_SENSITIVE, false);
        p.extractable = flag(CKA_EXTRACTABLE, true);
        p.always_sensitive = flag(CKA_ALWAYS_SENSITIVE, false);
        p.never_extractable = flag(CKA_NEVER_EXTRACTABLE, false);
        const auto value = attribute(obj, CKA_VALUE);
        p.value_readable = value.has_value() && !value->empty();
        return p;
    }
};

Pkcs11Kms::Pkcs11Kms(const std::string& module_path, const std::string& token_label,
                     const std::string& pin)
    : m_impl(std::make_unique<Impl>()) {
    Impl& i = *m_impl;
    i.module_path = module_path;
    i.token_label = token_label;
    i.pin = pin;
    i.pin_sha = pin_hash(pin);
    i.module = std::make_unique<ModuleRef>(module_path);
    i.f = i.module->functions();
    std::lock_guard<std::mutex> lock(i.mutex);
    i.find_slot();
    i.open_session();
}

Pkcs11Kms::~Pkcs11Kms() = default;

std::unique_ptr<Pkcs11Kms> Pkcs11Kms::open(const std::string& module_path,
                                           const std::string& token_label, const std::string& pin) {
    return std::make_unique<Pkcs11Kms>(module_path, token_label, pin);
}

std::string Pkcs11Kms::pin_from_env() {
    const char* pin = std::getenv(pin_variable);
    if (pin == nullptr || *pin == '\0')
        throw Error(ErrorCategory::unauthorised,
                    std::string("the PKCS#11 user PIN is not set: set ") + pin_variable);
    return pin;
}

KeyHandle Pkcs11Kms::create_key(std::string_view label, KeyAlgorithm algorithm) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->with_session([&] { return m_impl->create_key(label, algorithm); });
}

KeyHandle Pkcs11Kms::find_key(std::string_view label) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->with_session([&] { return m_impl->find_key(label); });
}

std::vector<std::uint8_t> Pkcs11Kms::sign(const KeyHandle& key, const std::uint8_t* message,
                                          std::size_t size) {
    // Tokens such as SoftHSM2 offer CKM_ECDSA (sign a digest) but not CKM_ECDSA_SHA256, so the
    // digest is computed here; Ed25519 signs the message itself.
    std::vector<std::uint8_t> digest;
    const std::uint8_t* data = message;
    std::size_t data_size = size;
    if (key.algorithm == KeyAlgorithm::ecdsa_p256) {
        auto sha = Botan::HashFunction::create_or_throw("SHA-256");
        sha->update(message, size);
        digest = sha->final_stdvec();
        data = digest.data();
        data_size = digest.size();
    }
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->with_session([&] { return m_impl->sign_prepared(key, data, data_size); });
}

PublicKeyInfo Pkcs11Kms::public_key(const KeyHandle& key) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    PublicKeyInfo info;
    info.algorithm = key.algorithm;
    info.spki_der = m_impl->with_session([&] { return m_impl->public_key_spki(key); });
    return info;
}

bool Pkcs11Kms::supports(KeyAlgorithm algorithm) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->supports(algorithm);
}

Pkcs11KeyProtection Pkcs11Kms::key_protection(const KeyHandle& key) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->with_session([&] { return m_impl->protection(key); });
}

const std::string& Pkcs11Kms::module_path() const noexcept { return m_impl->module_path; }
const std::string& Pkcs11Kms::token_label() const noexcept { return m_impl->token_label; }

}  // namespace kakunin
