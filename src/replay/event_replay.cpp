// Replaying an order lifecycle (the events CSV) through a Guard on simulated time, and the JSON
// forms of its results (docs/cli.md).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "kakunin/guard.hpp"
#include "kakunin/replay.hpp"
#include "replay/replay_json.hpp"

namespace kakunin {

EventReplay::EventReplay(EventReplayOptions options, EventCallback on_decision)
    : m_options(std::move(options)), m_on_decision(std::move(on_decision)) {}

void EventReplay::attach(GuardOptions& options) {
    if (options.working_order_capacity == 0)
        options.working_order_capacity = m_options.working_order_capacity;
    options.on_cancel_all = [this,
                             previous = std::move(options.on_cancel_all)](const CancelAll& c) {
        {
            std::lock_guard<std::mutex> lock(m_cancel_mutex);
            m_summary.cancel_on_halt.insert(m_summary.cancel_on_halt.end(), c.order_ids.begin(),
                                            c.order_ids.end());
        }
        if (previous) previous(c);
    };
}

void EventReplay::halt(Guard& guard, ManualClock& clock) {
    clock.set(std::max(clock.now_ns(), *m_options.halt_at));
    m_halted = true;
    m_summary.halted_at_ns = clock.now_ns();
    guard.halt("replay --halt-at", "replay");
    if (after_row) after_row();
}

void EventReplay::run(Guard& guard, ManualClock& clock, Iterator begin, Iterator end) {
    for (auto it = begin; it != end; ++it) {
        const ReplayEvent& row = *it;
        if (m_options.halt_at && !m_halted && row.ts_ns >= *m_options.halt_at) halt(guard, clock);
        clock.set(row.ts_ns);
        if (is_request(row.type)) {
            if (before_request) before_request();
            Decision d;
            RequestCounts* counts = nullptr;
            // A new order, or an amend's new price, without a reference price takes the latest
            // price seen for the instrument.
            auto reference = [&](std::optional<Decimal>& r) {
                if (r || !m_options.reference_from_previous_price) return;
                const auto p = m_last_price.find(row.instrument);
                if (p != m_last_price.end()) r = p->second;
            };
            switch (row.type) {
                case EventType::new_order: {
                    Order order = row.order();
                    reference(order.reference_price);
                    d = guard.check(order);
                    counts = &m_summary.new_orders;
                    break;
                }
                case EventType::amend: {
                    Amend amend = row.amend();
                    if (amend.price) reference(amend.reference_price);
                    d = guard.amend(amend);
                    counts = &m_summary.amends;
                    break;
                }
                default:
                    d = guard.cancel(row.cancel());
                    counts = &m_summary.cancels;
                    break;
            }
            ++(d.allowed() ? counts->allowed : counts->rejected);
            m_summary.decisions.add(d);
            if (m_on_decision) m_on_decision(row, d);
        } else {
            const ExecutionResult r = guard.on_execution(row.report());
            ++m_summary.reports.received;
            if (r.applied) ++m_summary.reports.applied;
            if (r.unknown_order) ++m_summary.reports.unknown;
            if (r.problem != nullptr) ++m_summary.reports.problems[r.problem];
        }
        // The latest price the agent saw for the instrument: its own quotes, fills and marks.
        if (m_options.reference_from_previous_price && row.price && row.price->is_positive() &&
            !row.instrument.empty() && row.type != EventType::cancel)
            m_last_price[row.instrument] = *row.price;
        if (after_row) after_row();
    }
}

void EventReplay::finish(Guard& guard, ManualClock& clock) {
    if (m_options.halt_at && !m_halted) halt(guard, clock);
    m_summary.state = guard.lifecycle_state();
}

EventReplaySummary replay_events(const Scope& scope, const std::vector<ReplayEvent>& events,
                                 const EventCallback& on_decision, EventReplayOptions options) {
    ManualClock clock(events.empty() ? 0 : events.front().ts_ns);
    EventReplay replay(std::move(options), on_decision);
    GuardOptions guard_options;
    guard_options.observe = false;  // limits alone, as Guard(scope, clock)
    replay.attach(guard_options);
    Guard guard(scope, clock, std::move(guard_options));
    replay.run(guard, clock, events.cbegin(), events.cend());
    replay.finish(guard, clock);
    EventReplaySummary s = replay.summary();
    return s;
}

std::string event_decision_json(const ReplayEvent& e, const Decision& d) {
    nlohmann::json j = detail::decision_object(e.line, d);
    j["type"] = to_string(e.type);
    j["order_id"] = e.order_id;
    return j.dump();
}

std::string event_summary_json(const EventReplaySummary& s) {
    nlohmann::json j = detail::summary_object(s.decisions);
    auto counts = [](const RequestCounts& c) {
        return nlohmann::json{{"allowed", c.allowed}, {"rejected", c.rejected}};
    };
    j["requests"] = {
        {"new", counts(s.new_orders)}, {"amend", counts(s.amends)}, {"cancel", counts(s.cancels)}};
    nlohmann::json problems = nlohmann::json::object();
    for (const auto& [problem, count] : s.reports.problems) problems[problem] = count;
    j["reports"] = {{"received", s.reports.received},
                    {"applied", s.reports.applied},
                    {"unknown", s.reports.unknown},
                    {"problems", problems}};
    if (s.halted_at_ns) j["halted_at_ns"] = *s.halted_at_ns;
    // An automatic halt (on an anomaly) hands its working ids over too.
    if (s.halted_at_ns || !s.cancel_on_halt.empty()) j["cancel_on_halt"] = s.cancel_on_halt;
    return j.dump();
}

std::string lifecycle_state_json(const LifecycleState& state) {
    nlohmann::json positions = nlohmann::json::object();
    for (const auto& p : state.positions) positions[p.instrument] = p.position;
    return nlohmann::json{{"positions", positions},
                          {"working_orders", state.working_orders},
                          {"daily",
                           {{"filled_today", state.filled_today},
                            {"working_notional", state.working_notional},
                            {"daily_pnl", state.daily_pnl},
                            {"reduce_only", state.reduce_only}}}}
        .dump();
}

}  // namespace kakunin
