// Private to src/notify: the webhook body with a fallback for invalid details, so that a
// malformed details_json never costs the alert itself.
#pragma once

#include <string>

#include "kakunin/notifier.hpp"

namespace kakunin::notify_detail {

/// The member names of components_ppm, in Decision::components_ppm order.
extern const char* const component_names[score_component_count];

/// As to_json(n); when details_json is invalid and `details_error` is not null, "details" becomes
/// {"invalid_details_json": "<reason>"} and `details_error` receives the reason instead of a
/// throw. Never throws kakunin::Error then (std::bad_alloc still can).
std::string notification_json(const Notification& n, std::string* details_error);

}  // namespace kakunin::notify_detail
