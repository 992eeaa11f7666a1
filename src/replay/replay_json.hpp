// The JSON objects behind decision_json() and summary_json(), which the events replay extends.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>

#include "kakunin/replay.hpp"

namespace kakunin::detail {

nlohmann::json decision_object(std::size_t line, const Decision& d);
nlohmann::json summary_object(const ReplaySummary& s);

}  // namespace kakunin::detail
