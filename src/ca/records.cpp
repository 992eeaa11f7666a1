// Human records (registration, scope approval), their JSON form and the approval signature.
#include <botan/asn1_obj.h>
#include <botan/ber_dec.h>
#include <botan/data_src.h>
#include <botan/der_enc.h>
#include <botan/ecc_key.h>
#include <botan/pem.h>
#include <botan/pkcs10.h>
#include <botan/pkix_types.h>
#include <botan/system_rng.h>
#include <botan/x509_key.h>

#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "kakunin/ca.hpp"
#include "kms/kms_botan_key.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

json parse_object(std::string_view text, const std::string& what) {
    json j;
    try {
        j = json::parse(text.begin(), text.end());
    } catch (const json::parse_error& e) {
        throw Error(ErrorCategory::invalid_input, what + ": " + e.what());
    }
    if (!j.is_object()) throw Error(ErrorCategory::invalid_input, what + ": not a JSON object");
    return j;
}

std::string get_string(const json& j, const char* key, const std::string& what) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        throw Error(ErrorCategory::invalid_input, what + "." + key + ": missing or not a string");
    return it->get<std::string>();
}

TimeNs get_time(const json& j, const char* key, const std::string& what) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer())
        throw Error(ErrorCategory::invalid_input, what + "." + key + ": missing or not an integer");
    return it->get<TimeNs>();
}

void only_members(const json& j, std::initializer_list<const char*> allowed,
                  const std::string& what) {
    for (auto it = j.begin(); it != j.end(); ++it) {
        bool ok = false;
        for (const char* a : allowed) ok = ok || it.key() == a;
        if (!ok)
            throw Error(ErrorCategory::invalid_input, what + ": unknown member '" + it.key() + "'");
    }
}

}  // namespace

void validate_agent_id(std::string_view id) {
    bool ok = !id.empty() && id.size() <= 64;
    for (std::size_t i = 0; ok && i < id.size(); ++i) {
        const char c = id[i];
        const bool alnum =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        ok = alnum || (i > 0 && (c == '.' || c == '_' || c == '-'));
    }
    if (!ok)
        throw Error(ErrorCategory::invalid_input,
                    "agent id '" + std::string(id) +
                        "': 1..64 of [A-Za-z0-9._-], starting with a letter or digit");
}

std::string to_json(const AgentRegistration& r) {
    json j = {{"agent_id", r.agent_id},     {"owner", r.owner},
              {"purpose", r.purpose},       {"created_at_ns", r.created_at},
              {"created_by", r.created_by}, {"kind", "agent-registration/v1"}};
    return j.dump();
}

AgentRegistration agent_registration_from_json(std::string_view text) {
    const std::string what = "agent registration";
    const json j = parse_object(text, what);
    only_members(j, {"agent_id", "owner", "purpose", "created_at_ns", "created_by", "kind"}, what);
    if (get_string(j, "kind", what) != "agent-registration/v1")
        throw Error(ErrorCategory::invalid_input, what + ".kind: expected agent-registration/v1");
    AgentRegistration r;
    r.agent_id = get_string(j, "agent_id", what);
    validate_agent_id(r.agent_id);
    r.owner = get_string(j, "owner", what);
    r.purpose = get_string(j, "purpose", what);
    r.created_at = get_time(j, "created_at_ns", what);
    r.created_by = get_string(j, "created_by", what);
    return r;
}

std::string scope_sha256_hex(const Scope& scope) { return crypto::sha256_hex(to_json(scope)); }

std::string approver_key_label(std::string_view approver) {
    return "approver:" + std::string(approver);
}

std::string scope_approval_text(const ScopeApproval& a) {
    return "kakunin-scope-approval/v1\n" + a.agent_id + "\n" + a.approver + "\n" +
           std::to_string(a.approved_at) + "\n" + a.scope_sha256 + "\n";
}

ScopeApproval approve_scope(Kms& kms, std::string_view agent_id, std::string_view approver,
                            const Scope& scope, TimeNs approved_at, KeyAlgorithm algorithm) {
    validate_agent_id(agent_id);
    if (approver.empty() || approver.find('\n') != std::string_view::npos)
        throw Error(ErrorCategory::invalid_input, "approver name must be one non-empty line");
    validate(scope);
    const KeyHandle key = kms.find_or_create_key(approver_key_label(approver), algorithm);
    ScopeApproval a;
    a.agent_id = std::string(agent_id);
    a.approver = std::string(approver);
    a.approved_at = approved_at;
    a.scope_sha256 = scope_sha256_hex(scope);
    const PublicKeyInfo info = kms.public_key(key);
    a.algorithm = info.algorithm;
    a.approver_public_key = info.spki_der;
    a.signature = kms.sign(key, scope_approval_text(a));
    return a;
}

bool verify_scope_approval(const ScopeApproval& a, const Scope& scope) noexcept {
    try {
        if (a.scope_sha256 != scope_sha256_hex(scope)) return false;
        if (crypto::spki_algorithm(a.approver_public_key) != a.algorithm) return false;
        return crypto::verify_signature(a.approver_public_key, scope_approval_text(a), a.signature);
    } catch (...) {
        return false;
    }
}

std::string to_json(const ScopeApproval& a) {
    json j = {{"kind", "scope-approval/v1"},
              {"agent_id", a.agent_id},
              {"approver", a.approver},
              {"approved_at_ns", a.approved_at},
              {"scope_sha256", a.scope_sha256},
              {"algorithm", to_string(a.algorithm)},
              {"approver_public_key", crypto::base64_encode(a.approver_public_key)},
              {"signature", crypto::base64_encode(a.signature)}};
    return j.dump();
}

ScopeApproval scope_approval_from_json(std::string_view text) {
    const std::string what = "scope approval";
    const json j = parse_object(text, what);
    only_members(j,
                 {"kind", "agent_id", "approver", "approved_at_ns", "scope_sha256", "algorithm",
                  "approver_public_key", "signature"},
                 what);
    if (get_string(j, "kind", what) != "scope-approval/v1")
        throw Error(ErrorCategory::invalid_input, what + ".kind: expected scope-approval/v1");
    ScopeApproval a;
    a.agent_id = get_string(j, "agent_id", what);
    a.approver = get_string(j, "approver", what);
    a.approved_at = get_time(j, "approved_at_ns", what);
    a.scope_sha256 = get_string(j, "scope_sha256", what);
    const std::string algorithm = get_string(j, "algorithm", what);
    if (algorithm == "ed25519")
        a.algorithm = KeyAlgorithm::ed25519;
    else if (algorithm == "ecdsa-p256")
        a.algorithm = KeyAlgorithm::ecdsa_p256;
    else
        throw Error(ErrorCategory::invalid_input,
                    what + ".algorithm: '" + algorithm + "' is not ed25519 or ecdsa-p256");
    a.approver_public_key = crypto::base64_decode(get_string(j, "approver_public_key", what),
                                                  what + ".approver_public_key");
    a.signature = crypto::base64_decode(get_string(j, "signature", what), what + ".signature");
    return a;
}

namespace {

/// A PKCS#10 request as signed: the signed bytes, the signature and its algorithm, and the
/// requested key. Decoded here rather than by Botan::PKCS10_Request, which checks the signature
/// itself while decoding (with Botan's verifier, not Kakunin's) and then calls a request whose
/// signature fails "not a PKCS#10 request".
struct SignedRequest {
    std::vector<std::uint8_t> tbs;  ///< CertificationRequestInfo, DER, as signed
    Botan::AlgorithmIdentifier signature_algorithm;
    std::vector<std::uint8_t> signature;
    std::vector<std::uint8_t> spki;  ///< subjectPKInfo, DER
};

/// SEQUENCE { content }, DER.
std::vector<std::uint8_t> in_sequence(const std::uint8_t* content, std::size_t size) {
    std::vector<std::uint8_t> out;
    Botan::DER_Encoder(out).start_cons(Botan::SEQUENCE).raw_bytes(content, size).end_cons();
    return out;
}

SignedRequest decode_request(std::string_view text) {
    try {
        Botan::DataSource_Memory src(reinterpret_cast<const std::uint8_t*>(text.data()),
                                     text.size());
        std::vector<std::uint8_t> der;
        if (Botan::PEM_Code::matches(src)) {
            std::string label;
            const Botan::secure_vector<std::uint8_t> body = Botan::PEM_Code::decode(src, label);
            if (label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST")
                throw Error(ErrorCategory::invalid_input, "certificate request: a PEM '" + label +
                                                              "', not a 'CERTIFICATE REQUEST'");
            der.assign(body.begin(), body.end());
        } else {
            der.assign(text.begin(), text.end());
        }
        SignedRequest r;
        std::vector<std::uint8_t> info;
        Botan::BER_Decoder(der)
            .start_cons(Botan::SEQUENCE)
            .start_cons(Botan::SEQUENCE)
            .raw_bytes(info)
            .end_cons()
            .decode(r.signature_algorithm)
            .decode(r.signature, Botan::BIT_STRING)
            .end_cons()
            .verify_end();
        r.tbs = in_sequence(info.data(), info.size());
        std::size_t version = 0;
        Botan::X509_DN subject;
        Botan::BER_Decoder fields(info);
        fields.decode(version).decode(subject);
        const Botan::BER_Object key = fields.get_next_object();
        if (version != 0 || !key.is_a(Botan::SEQUENCE, Botan::CONSTRUCTED))
            throw Error(ErrorCategory::invalid_input,
                        "certificate request: not a version 1 request with a public key");
        r.spki = in_sequence(key.bits(), key.length());
        return r;
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(ErrorCategory::invalid_input,
                    std::string("certificate request: not a PKCS#10 request (") + e.what() + ")");
    }
}

/// What a request's key is, for a refusal: "RSA", "ECDSA on secp384r1".
std::string describe_key(const std::vector<std::uint8_t>& spki) {
    try {
        Botan::DataSource_Memory src(spki.data(), spki.size());
        const std::unique_ptr<Botan::Public_Key> key(Botan::X509::load_key(src));
        if (const auto* ec = dynamic_cast<const Botan::EC_PublicKey*>(key.get()))
            return key->algo_name() + " on " + ec->domain().get_curve_oid().to_formatted_string();
        return key->algo_name();
    } catch (const std::exception&) {
        return "of an algorithm Kakunin cannot read";
    }
}

}  // namespace

std::vector<std::uint8_t> public_key_from_csr(std::string_view pem) {
    const SignedRequest req = decode_request(pem);
    // The key first: the CA certifies Ed25519 and ECDSA P-256 keys only.
    const std::optional<KeyAlgorithm> algorithm = crypto::spki_algorithm(req.spki);
    if (!algorithm)
        throw Error(ErrorCategory::invalid_input,
                    "certificate request: its key is " + describe_key(req.spki) +
                        ": the CA certifies only Ed25519 and ECDSA P-256 keys");
    // Proof of possession: the self-signature, through Kakunin's one verifier (canonical
    // encodings only), with the signature algorithm that belongs to the key.
    const Botan::OID signed_with = req.signature_algorithm.get_oid();
    const Botan::OID expected = Botan::OID::from_string(
        *algorithm == KeyAlgorithm::ed25519 ? "Ed25519" : "ECDSA/EMSA1(SHA-256)");
    if (signed_with != expected)
        throw Error(ErrorCategory::invalid_input,
                    "certificate request: signed with " + signed_with.to_formatted_string() +
                        ", not " + expected.to_formatted_string() + " as its " +
                        kakunin::to_string(*algorithm) + " key needs");
    if (!crypto::verify_signature(req.spki, req.tbs.data(), req.tbs.size(), req.signature.data(),
                                  req.signature.size()))
        throw Error(ErrorCategory::invalid_input,
                    "certificate request: its self-signature does not verify (no proof that the "
                    "requester holds the key)");
    return req.spki;
}

std::string agent_certificate_request(Kms& kms, const KeyHandle& key, std::string_view agent_id) {
    validate_agent_id(agent_id);
    kms_botan::KmsPrivateKey signer_key(kms, key);
    Botan::System_RNG rng;
    try {
        const Botan::PKCS10_Request req =
            Botan::PKCS10_Request::create(signer_key, x509::agent_dn(std::string(agent_id), false),
                                          Botan::Extensions(), "SHA-256", rng);
        return req.PEM_encode();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(ErrorCategory::kms, "certificate request for key '" + key.label +
                                            "': cannot be signed: " + e.what());
    }
}

}  // namespace kakunin
