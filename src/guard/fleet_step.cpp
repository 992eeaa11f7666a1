// A fleet-wide halt or resume as a named person signs it (kakunin fleet halt|resume): the text
// signed, the signature, and its JSON form (kakunin_audit.fleet_steps.payload, the CA log).
#include "audit/json.hpp"
#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/error.hpp"
#include "kakunin/fleet.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

std::string member(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        throw Error(ErrorCategory::invalid_input,
                    std::string("fleet step.") + key + ": missing or not a string");
    return it->get<std::string>();
}

}  // namespace

const char* to_string(FleetStep::Action a) noexcept {
    return a == FleetStep::Action::halt ? "halt" : "resume";
}

std::string fleet_step_text(const FleetStep& s) {
    return std::string("kakunin-fleet-step/v1\n") + to_string(s.action) + "\n" + s.by + "\n" +
           std::to_string(s.signed_at_ns) + "\n" + s.reason + "\n";
}

FleetStep sign_fleet_step(Kms& kms, FleetStep::Action action, std::string_view by,
                          std::string_view reason, TimeNs at, KeyAlgorithm algorithm) {
    if (by.empty() || reason.empty())
        throw Error(ErrorCategory::invalid_input,
                    std::string("fleet ") + to_string(action) +
                        ": the person (by) and the reason are required");
    FleetStep s;
    s.action = action;
    s.by = std::string(by);
    s.reason = std::string(reason);
    s.signed_at_ns = at;
    const KeyHandle key = kms.find_or_create_key(approver_key_label(by), algorithm);
    const PublicKeyInfo info = kms.public_key(key);
    s.algorithm = to_string(info.algorithm);
    s.public_key = crypto::base64_encode(info.spki_der);
    s.signature = crypto::base64_encode(kms.sign(key, fleet_step_text(s)));
    return s;
}

std::string check_fleet_step(const FleetStep& s) noexcept {
    if (s.by.empty() || s.reason.empty()) return "the person and the reason are required";
    try {
        const auto key = crypto::base64_decode(s.public_key, "public_key");
        const auto alg = crypto::spki_algorithm(key);
        if (!alg || to_string(*alg) != s.algorithm)
            return "the signer's key is not a " + s.algorithm + " key";
        const auto sig = crypto::base64_decode(s.signature, "signature");
        if (!crypto::verify_signature(key, fleet_step_text(s), sig))
            return "the signature does not verify";
        return {};
    } catch (const std::exception& e) {
        return std::string("malformed statement: ") + e.what();
    }
}

std::string to_json(const FleetStep& s) {
    return json{{"action", to_string(s.action)},
                {"by", s.by},
                {"reason", s.reason},
                {"signed_at_ns", s.signed_at_ns},
                {"algorithm", s.algorithm},
                {"public_key", s.public_key},
                {"signature", s.signature}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

FleetStep fleet_step_from_json(std::string_view text) {
    const json j = audit_detail::parse_strict(text, "fleet step");
    if (!j.is_object()) throw Error(ErrorCategory::invalid_input, "fleet step: not a JSON object");
    FleetStep s;
    const std::string action = member(j, "action");
    if (action == "halt")
        s.action = FleetStep::Action::halt;
    else if (action == "resume")
        s.action = FleetStep::Action::resume;
    else
        throw Error(ErrorCategory::invalid_input,
                    "fleet step.action: '" + action + "' is neither halt nor resume");
    s.by = member(j, "by");
    s.reason = member(j, "reason");
    auto at = j.find("signed_at_ns");
    if (at == j.end() || !at->is_number_integer())
        throw Error(ErrorCategory::invalid_input,
                    "fleet step.signed_at_ns: missing or not an integer");
    s.signed_at_ns = at->get<TimeNs>();
    s.algorithm = member(j, "algorithm");
    s.public_key = member(j, "public_key");
    s.signature = member(j, "signature");
    return s;
}

}  // namespace kakunin
