// One Guard's samples in a scrape.
#pragma once

#include <string>

#include "kakunin/fwd.hpp"
#include "metrics/family_writer.hpp"

namespace kakunin::metrics_detail {

/// Writes the Guard's metrics under agent label `agent`; `certified`: it runs on a certificate.
/// Throws what the Guard's cold reads throw (std::bad_alloc).
void write_guard(FamilyWriter& w, const Guard& guard, const std::string& agent, bool certified);

}  // namespace kakunin::metrics_detail
