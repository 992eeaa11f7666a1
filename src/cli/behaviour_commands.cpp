// The human steps of behaviour monitoring (DESIGN §4, §6), each signed and recorded in the CA's
// audit log (STATE/audit/ca.jsonl):
//   kakunin baseline approve --dir STATE --agent ID --baseline baseline.json --approver NAME
//   kakunin incident ack|resolve --dir STATE --agent ID --incident ID --by NAME --note TEXT
//   kakunin incident review --dir STATE --agent ID --incident ID --by NAME --root-cause TEXT
//   kakunin agent reenable --dir STATE --agent ID --halt HALT_ID --by NAME --reason TEXT
//                          [--out FILE]
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "io/durable_file.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::cli {
namespace {

using json = nlohmann::json;

struct Args {
    std::string dir, agent, baseline, approver, incident, by, note, root_cause, reason, out, halt;
    bool json = false;
};

OpenedCa open_for_agent(const Args& a, const Clock& clock) {
    validate_agent_id(a.agent);
    OpenedCa state = open_ca(a.dir, clock);
    if (!state.ca->registration(a.agent))
        throw Error(ErrorCategory::not_found,
                    "unknown agent '" + a.agent + "': not registered in " + a.dir);
    return state;
}

void baseline_approve(const Args& a) {
    SystemClock clock;
    OpenedCa state = open_for_agent(a, clock);
    const Baseline b = parse_baseline_json(read_file(a.baseline));
    if (b.agent_id != a.agent)
        throw Error(ErrorCategory::invalid_input, a.baseline + ": the baseline is agent '" +
                                                      b.agent_id + "'s, not '" + a.agent + "'s");
    // Signed and checked first, stored last: a failure leaves the store as it was (an unapproved
    // latest version would stop replay from enforcing the approved one). The state directory's
    // lock is held until the approval is recorded, so no other process stores a version
    // meanwhile and the next version is known.
    const LocalCa::Hold held = state.ca->hold();
    FileBaselineStore store(a.dir);
    const auto latest = store.get_baseline(a.agent);
    const std::uint64_t version = latest ? latest->version + 1 : 1;
    const BaselineApproval approval = approve_baseline(*state.kms, b, a.approver, clock.now_ns(),
                                                       version, false, state.config.algorithm);
    const std::string problem = check_baseline_approval(approval, b);
    if (!problem.empty()) throw Error(ErrorCategory::kms, "approval does not verify: " + problem);
    // Stored as canonical JSON: the bytes the approval's hash covers.
    const StoredBaseline stored = store.put_baseline(a.agent, to_json(b));
    if (stored.version != version)
        throw Error(ErrorCategory::invalid_state,
                    "baseline store: version " + std::to_string(stored.version) +
                        " was stored where " + std::to_string(version) + " was expected");
    store.put_approval(approval);
    json record = json::parse(to_json(approval));
    record["observed_from_ns"] = b.observed_from_ns;
    record["observed_to_ns"] = b.observed_to_ns;
    record["orders"] = b.orders;
    const std::uint64_t seq = state.ca->record_event("baseline.approved", record.dump());
    if (a.json) {
        record["ca_log_seq"] = seq;
        std::cout << record.dump() << "\n";
        return;
    }
    std::cout << "baseline version " << stored.version << " of agent '" << a.agent
              << "' approved by " << a.approver << "\n  sha256     " << approval.baseline_sha256
              << "\n  observed   " << format_timestamp(b.observed_from_ns) << " .. "
              << format_timestamp(b.observed_to_ns) << " (" << b.orders << " orders)"
              << "\n  stored     " << a.dir << "/baselines/" << a.agent << "/" << stored.version
              << ".json (+ .approval.json)\n  recorded   CA log seq " << seq << "\n";
}

void incident_step(const Args& a, const char* event) {
    if (a.by.empty()) throw Error(ErrorCategory::invalid_input, "--by: the person must be named");
    SystemClock clock;
    OpenedCa state = open_for_agent(a, clock);
    const json record = {{"agent", a.agent},
                         {"incident", a.incident},
                         {"by", a.by},
                         {"note", a.note},
                         {"at_ns", clock.now_ns()}};
    const std::uint64_t seq = state.ca->record_event(event, record.dump());
    std::cout << event << ": " << a.incident << " by " << a.by << " (CA log seq " << seq << ")\n";
}

void incident_review(const Args& a) {
    SystemClock clock;
    OpenedCa state = open_for_agent(a, clock);
    const IncidentReview r =
        sign_incident_review(*state.kms, a.agent, a.incident, a.by, a.root_cause, clock.now_ns());
    const std::uint64_t seq = state.ca->record_event("review.signed", to_json(r));
    std::cout << "review of " << a.incident << " signed by " << a.by << " (CA log seq " << seq
              << ")\n";
}

void agent_reenable(const Args& a) {
    // A halt id names its agent: catch a statement for another agent's halt before signing.
    const std::string prefix = "halt-" + a.agent + "-";
    if (a.halt.compare(0, prefix.size(), prefix) != 0)
        throw Error(ErrorCategory::invalid_input,
                    "--halt: '" + a.halt + "' is not a halt of agent '" + a.agent +
                        "' (a halt id reads " + prefix +
                        "YYYYMMDDTHHMMSSZ-TAG-N: see the halt notification, the guard.halted "
                        "record of the agent's log or Guard::current_halt())");
    SystemClock clock;
    OpenedCa state = open_for_agent(a, clock);
    const TimeNs signed_at = clock.now_ns();
    const std::string out =
        a.out.empty() ? a.dir + "/reenable-" + a.agent + "-" + std::to_string(signed_at) + ".json"
                      : a.out;
    // Ready before the statement is signed and recorded: an unwritable --out refuses first.
    require_output_file(out);
    io::DurableFile file = io::DurableFile::prepare(out);
    const Reenable r = sign_reenable(*state.kms, a.agent, a.halt, a.by, a.reason, signed_at);
    const std::uint64_t seq = state.ca->record_event("guard.resumed", to_json(r));
    file.commit(to_json(r) + "\n");
    std::cout << "re-enable of '" << a.agent << "' signed by " << a.by << " (CA log seq " << seq
              << ")\n  lifts      halt " << r.halt_id << " (and no other)\n  statement  " << out
              << "\n  the trading process passes it to Guard::reenable(reenable_from_json(...))\n";
}

void add_common(CLI::App* cmd, Args& a) {
    cmd->add_option("--dir", a.dir, "State directory (kakunin ca init)")->required();
    cmd->add_option("--agent", a.agent, "Agent id")->required();
}

}  // namespace

void add_behaviour_commands(CLI::App& app) {
    {
        CLI::App* baseline = app.add_subcommand("baseline", "Behaviour baselines");
        baseline->require_subcommand(1);
        auto a = std::make_shared<Args>();
        CLI::App* cmd = baseline->add_subcommand(
            "approve", "A named person approves a learned baseline; the Guard then enforces it");
        add_common(cmd, *a);
        cmd->add_option("--baseline", a->baseline, "Baseline JSON (kakunin-baseline/v1)")
            ->required()
            ->check(CLI::ExistingFile);
        cmd->add_option("--approver", a->approver, "The approving compliance officer")->required();
        cmd->add_flag("--json", a->json, "Print the approval as JSON");
        cmd->callback([a] { run_command([&] { baseline_approve(*a); }); });
    }
    {
        CLI::App* incident = app.add_subcommand("incident", "Human steps on incidents");
        incident->require_subcommand(1);
        for (const char* step : {"ack", "resolve"}) {
            auto a = std::make_shared<Args>();
            CLI::App* cmd = incident->add_subcommand(
                step, std::string(step) == "ack" ? "Acknowledge an incident (stops escalation)"
                                                 : "Close an incident");
            add_common(cmd, *a);
            cmd->add_option("--incident", a->incident, "Incident id")->required();
            cmd->add_option("--by", a->by, "Who")->required();
            cmd->add_option("--note", a->note, "What they found or did");
            const char* event =
                std::string(step) == "ack" ? "incident.acknowledged" : "incident.resolved";
            cmd->callback([a, event] { run_command([&] { incident_step(*a, event); }); });
        }
        auto a = std::make_shared<Args>();
        CLI::App* cmd = incident->add_subcommand(
            "review", "Sign the root cause of an incident (post-incident review)");
        add_common(cmd, *a);
        cmd->add_option("--incident", a->incident, "Incident id")->required();
        cmd->add_option("--by", a->by, "The reviewer")->required();
        cmd->add_option("--root-cause", a->root_cause, "The root cause, as signed")->required();
        cmd->callback([a] { run_command([&] { incident_review(*a); }); });
    }
    {
        CLI::App* agent = app.get_subcommand("agent");
        auto a = std::make_shared<Args>();
        CLI::App* cmd = agent->add_subcommand(
            "reenable", "Sign the decision to let a halted agent trade again (RTS 6 Art. 15(3))");
        add_common(cmd, *a);
        cmd->add_option("--halt", a->halt,
                        "The halt it lifts: its id from the halt notification, the agent's audit "
                        "log (guard.halted) or Guard::current_halt()")
            ->required();
        cmd->add_option("--by", a->by, "The person deciding")->required();
        cmd->add_option("--reason", a->reason, "Why it is safe again")->required();
        cmd->add_option("--out", a->out, "Where the signed statement goes");
        cmd->callback([a] { run_command([&] { agent_reenable(*a); }); });
    }
}

}  // namespace kakunin::cli
