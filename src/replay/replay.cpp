// Replaying an orders file through a Guard, and the JSON forms of its results (DESIGN §6).
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "kakunin/guard.hpp"
#include "kakunin/replay.hpp"
#include "replay/replay_json.hpp"

namespace kakunin {

const char* component_name(std::size_t i) noexcept {
    static constexpr const char* names[score_component_count] = {
        "size", "frequency", "concentration", "time_of_day", "origin"};
    return i < score_component_count ? names[i] : "unknown";
}

void ReplaySummary::add(const Decision& d) {
    ++orders;
    if (d.allowed()) {
        ++allowed;
        if (d.verdict == Verdict::warn) ++warned_orders;
    } else {
        ++rejected_orders;
        for (ReasonCode r : d.reasons) ++rejected[to_string(r)];
    }
    if (d.reasons.contains(ReasonCode::anomaly_revocation)) {
        ++revocations;
        if (!first_revocation_ts_ns) first_revocation_ts_ns = d.ts_ns;
    }
    if (d.score_ppm > max_score_ppm) max_score_ppm = d.score_ppm;
}

ReplaySummary replay_scope(const Scope& scope, const std::vector<ReplayOrder>& orders,
                           const ReplayCallback& on_decision, ReplayOptions options) {
    ManualClock clock(orders.empty() ? 0 : orders.front().ts_ns);
    Guard guard(scope, clock);
    ReplaySummary summary;
    std::unordered_map<std::string, Decimal> last_price;
    for (const ReplayOrder& row : orders) {
        clock.set(row.ts_ns);
        Order order = row.view();
        if (!order.reference_price && options.reference_from_previous_price) {
            auto it = last_price.find(row.instrument);
            if (it != last_price.end()) order.reference_price = it->second;
        }
        const Decision d = guard.check(order);
        if (options.reference_from_previous_price && row.price.is_positive())
            last_price[row.instrument] = row.price;
        summary.add(d);
        if (on_decision) on_decision(row, d);
    }
    return summary;
}

nlohmann::json detail::decision_object(std::size_t line, const Decision& d) {
    nlohmann::json j;
    j["line"] = line;
    j["ts_ns"] = d.ts_ns;
    j["decision"] = to_string(d.verdict);
    j["reasons"] = nlohmann::json::array();
    for (ReasonCode r : d.reasons) j["reasons"].push_back(to_string(r));
    j["score_ppm"] = d.score_ppm;
    j["components_ppm"] = nlohmann::json::object();
    for (std::size_t i = 0; i < score_component_count; ++i)
        j["components_ppm"][component_name(i)] = d.components_ppm[i];
    return j;
}

std::string decision_json(std::size_t line, const Decision& d) {
    return detail::decision_object(line, d).dump();
}

nlohmann::json detail::summary_object(const ReplaySummary& s) {
    nlohmann::json j;
    j["orders"] = s.orders;
    j["allowed"] = s.allowed;
    j["warned_orders"] = s.warned_orders;
    j["rejected"] = nlohmann::json::object();
    for (const auto& [reason, count] : s.rejected) j["rejected"][reason] = count;
    j["rejected_orders"] = s.rejected_orders;
    j["warnings"] = s.warnings;
    j["revocations"] = s.revocations;
    j["first_revocation_ts_ns"] =
        s.first_revocation_ts_ns ? nlohmann::json(*s.first_revocation_ts_ns) : nlohmann::json();
    j["max_score_ppm"] = s.max_score_ppm;
    return j;
}

std::string summary_json(const ReplaySummary& s) { return detail::summary_object(s).dump(); }

}  // namespace kakunin
