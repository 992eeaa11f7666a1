// The Guard's side of GuardOptions::human_steps: a step people took elsewhere (the command line)
// is applied through the Guard's own public calls, which check and record it as if it had been
// called here.
#include "kakunin/human_steps.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"

namespace kakunin {

void Guard::on_human_step(const HumanStep& step) noexcept {
    if (step.agent_id != m_agent_id) return;  // another agent's
    // Incident and halt ids carry the instance tag of the Guard that made them: a step for an
    // id of another Guard of the agent (another process, an earlier run) is not this one's.
    const bool ours = step.target.find("-" + m_instance + "-") != std::string::npos;
    try {
        const std::string what = std::string("human step ") + to_string(step.kind) +
                                 (step.target.empty() ? "" : " " + step.target) + " by " + step.by +
                                 " (" + step.source + ")";
        try {
            switch (step.kind) {
                case HumanStep::Kind::acknowledge:
                    acknowledge_incident(step.target, step.by, step.note);
                    return;
                case HumanStep::Kind::resolve:
                    resolve_incident(step.target, step.by, step.note);
                    return;
                case HumanStep::Kind::review:
                    if (!step.review) break;
                    review_incident(*step.review);
                    return;
                case HumanStep::Kind::reenable: {
                    if (!step.reenable) break;
                    bool lifted_before = false;
                    std::string in_force;
                    {
                        std::lock_guard<std::mutex> admin(m_admin);
                        if (m_halt) in_force = m_halt->halt_id;
                        for (const PastHalt& past : m_past_halts)
                            if (past.id == step.reenable->halt_id) lifted_before = true;
                    }
                    // Not halted, or that halt was lifted or superseded here already: it no
                    // longer applies. A halt of an earlier Guard (the history) neither.
                    if (in_force.empty() || lifted_before) return;
                    if (in_force != step.reenable->halt_id && (step.history || !ours)) return;
                    reenable(*step.reenable);
                    return;
                }
                case HumanStep::Kind::lift_reduce_only:
                    // A lift names no mode: one from the history lifts only a reduce-only
                    // mode entered before it, never one the restart restored from later.
                    if (step.history && step.at_ns <= m_restored_reduce_only_ns) return;
                    lift_reduce_only(step.by);
                    return;
            }
            report(what + " not applied: the step carries no signed statement");
        } catch (const Error& e) {
            // No longer applies (already acknowledged, resolved, lifted): skipped quietly. So is
            // an incident this Guard never had: another Guard's, or from before it started.
            if (e.category() == ErrorCategory::invalid_state) return;
            if (e.category() == ErrorCategory::not_found && (step.history || !ours)) return;
            report(what + " not applied: " + e.what());
        } catch (const std::exception& e) {
            report(what + " not applied: " + e.what());
        }
    } catch (...) {
        report("human step: out of memory");
    }
}

}  // namespace kakunin
