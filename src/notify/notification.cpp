// Notification to JSON (the webhook body) and its kind names.

#include <algorithm>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "audit/json.hpp"
#include "kakunin/error.hpp"
#include "kakunin/notifier.hpp"
#include "notify/notification_json.hpp"

namespace kakunin {

const char* to_string(Notification::Kind kind) noexcept {
    switch (kind) {
        case Notification::Kind::warning: return "warning";
        case Notification::Kind::escalation: return "escalation";
        case Notification::Kind::revocation: return "revocation";
        case Notification::Kind::halt: return "halt";
        case Notification::Kind::incident: return "incident";
    }
    return "unknown";
}

namespace notify_detail {

const char* const component_names[score_component_count] = {"size", "frequency", "concentration",
                                                            "time_of_day", "origin"};

namespace {

using json = nlohmann::json;

constexpr int max_details_depth = 32;

/// Deepest bracket nesting of `text`, strings skipped; checked before parsing so that neither the
/// checks nor dump() below recurse without bound.
int nesting_depth(std::string_view text) noexcept {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c == '{' || c == '[')
            deepest = std::max(deepest, ++depth);
        else if (c == '}' || c == ']')
            --depth;
    }
    return deepest;
}

json parse_details(const std::string& text) {
    if (text.empty()) return json::object();
    if (nesting_depth(text) > max_details_depth)
        throw Error(ErrorCategory::invalid_input,
                    "Notification::details_json: nested deeper than " +
                        std::to_string(max_details_depth) + " levels");
    json details = audit_detail::parse_strict(text, "Notification::details_json");
    if (!details.is_object())
        throw Error(ErrorCategory::invalid_input,
                    std::string("Notification::details_json: a JSON object is required, not ") +
                        details.type_name());
    const std::string violation =
        audit_detail::precondition_violation(details, "Notification::details_json");
    if (!violation.empty()) throw Error(ErrorCategory::invalid_input, violation);
    return details;
}

}  // namespace

std::string notification_json(const Notification& n, std::string* details_error) {
    json j = json::object();
    j["kind"] = to_string(n.kind);
    j["agent"] = n.agent_id;
    j["incident"] = n.incident_id.empty() ? json(nullptr) : json(n.incident_id);
    j["at_ns"] = n.at_ns;
    j["score_ppm"] = n.score_ppm;
    json components = json::object();
    for (std::size_t i = 0; i < score_component_count; ++i)
        components[component_names[i]] = n.components_ppm[i];
    j["components_ppm"] = std::move(components);
    j["summary"] = n.summary;
    if (details_error == nullptr) {
        j["details"] = parse_details(n.details_json);
    } else {
        try {
            j["details"] = parse_details(n.details_json);
        } catch (const Error& e) {
            *details_error = e.what();
            j["details"] = json{{"invalid_details_json", e.what()}};
        }
    }
    // Agent ids and summaries come from certificates and strategies: replace invalid UTF-8
    // rather than lose the alert.
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace notify_detail

std::string to_json(const Notification& n) { return notify_detail::notification_json(n, nullptr); }

}  // namespace kakunin
