// The human steps of behaviour monitoring (DESIGN §4, §6), each signed and recorded in the CA's
// audit log (STATE/audit/ca.jsonl), from where running Guards take them (FileHumanStepFeed; with
// --postgres also through kakunin_audit.human_steps and NOTIFY):
//   kakunin baseline approve --dir STATE --agent ID --baseline baseline.json --approver NAME
//   kakunin incident ack|resolve --dir STATE --agent ID --incident ID --by NAME --note TEXT
//   kakunin incident review --dir STATE --agent ID --incident ID --by NAME --root-cause TEXT
//   kakunin agent reenable --dir STATE --agent ID --halt HALT_ID --by NAME --reason TEXT
//                          [--out FILE]
//   kakunin agent lift-reduce-only --dir STATE --agent ID --by NAME --reason TEXT
// A step is taken only when the agent's own audit log (--log PATH, default STATE/audit/ID.jsonl,
// or --postgres CONNINFO) and the steps already recorded say it applies; else nothing is recorded.
#include <sys/stat.h>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "audit/json.hpp"
#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "guard/step_ledger.hpp"
#include "io/durable_file.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/human_steps.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::cli {
namespace {

using json = nlohmann::json;

struct Args {
    std::string dir, agent, baseline, approver, incident, by, note, root_cause, reason, out, halt;
    std::string log, postgres;  ///< the agent's audit log the step is checked against
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

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

/// What the agent's own log says of its incidents, halts and reduce-only mode, with the steps
/// the CA log holds for it that the agent's log does not show yet (its Guard was down, or has
/// not read them): what a step is checked against.
detail::HumanStepLedger agent_ledger(const Args& a, const OpenedCa& state) {
    detail::HumanStepLedger ledger(a.agent);
    if (!a.postgres.empty()) {
        PostgresAuditSinkOptions so;
        so.log_id = a.agent;
        PostgresAuditSink sink(a.postgres, so);
        std::uint64_t n = 0;
        sink.for_each_line([&](std::string_view line) {
            ledger.add_agent_line(line, sink.name() + " line " + std::to_string(++n));
        });
    } else {
        const std::string path = a.log.empty() ? a.dir + "/audit/" + a.agent + ".jsonl" : a.log;
        if (!exists(path))
            throw Error(ErrorCategory::not_found,
                        "no audit log of agent '" + a.agent + "': " + path +
                            " does not exist (give --log PATH or --postgres CONNINFO: the step is "
                            "checked against what the agent's Guard recorded)");
        std::ifstream in(path, std::ios::binary);
        if (!in) throw Error(ErrorCategory::io, path + ": cannot be read");
        std::stringstream text;
        text << in.rdbuf();
        const std::string all = text.str();
        std::size_t start = 0, n = 0;
        // Complete lines only: a last line without its newline is a write in progress.
        for (std::size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1)
            ledger.add_agent_line(std::string_view(all).substr(start, nl - start),
                                  path + " line " + std::to_string(++n));
    }
    for (const std::string& line : state.ca->audit_log_lines()) {
        audit_detail::ParsedLine parsed;
        std::string error;
        if (!audit_detail::parse_line(line, parsed, error) ||
            parsed.kind != audit_detail::LineKind::record)
            continue;
        try {
            const auto record = audit_detail::parse_strict(parsed.canonical, "CA log");
            std::optional<HumanStep> step =
                human_step_from_record(parsed.record.event, record.at("payload").dump());
            if (!step) continue;
            step->source = "CA log seq " + std::to_string(parsed.record.seq);
            ledger.add_recorded_step(*step);
        } catch (const Error&) {
            // A record no Guard can take (an older tool's) is no step anybody waits for.
        }
    }
    return ledger;
}

/// Refuses (kakunin::Error, nothing recorded) unless `step` applies to the agent now.
void require_applies(const Args& a, const OpenedCa& state, const HumanStep& step) {
    const std::string why = agent_ledger(a, state).refusal(step);
    if (!why.empty())
        throw Error(ErrorCategory::invalid_state,
                    std::string(to_string(step.kind)) + " refused: " + why + "; nothing recorded");
}

/// Records the step in the CA log (where FileHumanStepFeed finds it) and, with --postgres, in
/// kakunin_audit.human_steps (PostgresHumanStepFeed). Returns its CA log seq.
std::uint64_t record_step(const Args& a, OpenedCa& state, HumanStep& step) {
    const std::uint64_t seq =
        state.ca->record_event(human_step_event(step.kind), human_step_payload(step));
    step.source = "CA log seq " + std::to_string(seq);
    if (!a.postgres.empty()) {
        try {
            publish_human_step(a.postgres, step);
        } catch (const std::exception& e) {
            throw Error(ErrorCategory::database,
                        std::string(to_string(step.kind)) + ": recorded in the CA log (seq " +
                            std::to_string(seq) + ") but not published through PostgreSQL: " +
                            e.what() + " (Guards following the CA log have it)");
        }
    }
    return seq;
}

HumanStep new_step(const Args& a, HumanStep::Kind kind, TimeNs at) {
    HumanStep s;
    s.kind = kind;
    s.agent_id = a.agent;
    s.by = a.by;
    s.at_ns = at;
    return s;
}

void incident_step(const Args& a, HumanStep::Kind kind) {
    if (a.by.empty()) throw Error(ErrorCategory::invalid_input, "--by: the person must be named");
    if (a.incident.empty())
        throw Error(ErrorCategory::invalid_input, "--incident: an incident id is required");
    SystemClock clock;
    OpenedCa state = open_for_agent(a, clock);
    HumanStep step = new_step(a, kind, clock.now_ns());
    step.target = a.incident;
    step.note = a.note;
    require_applies(a, state, step);
    const std::uint64_t seq = record_step(a, state, step);
    std::cout << human_step_event(kind) << ": " << a.incident << " by " << a.by << " (CA log seq "
              << seq << "; running Guards of '" << a.agent << "' apply it)\n";
}

void incident_review(const Args& a) {
    if (a.incident.empty())
        throw Error(ErrorCategory::invalid_input, "--incident: an incident id is required");
    SystemClock clock;
    OpenedCa state = open_for_agent(a, clock);
    HumanStep step = new_step(a, HumanStep::Kind::review, clock.now_ns());
    step.target = a.incident;
    step.note = a.root_cause;
    require_applies(a, state, step);  // before signing: a refused review signs nothing
    step.review =
        sign_incident_review(*state.kms, a.agent, a.incident, a.by, a.root_cause, step.at_ns);
    const std::uint64_t seq = record_step(a, state, step);
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
    HumanStep step = new_step(a, HumanStep::Kind::reenable, clock.now_ns());
    step.target = a.halt;
    step.note = a.reason;
    const TimeNs signed_at = step.at_ns;
    const std::string out =
        a.out.empty() ? a.dir + "/reenable-" + a.agent + "-" + std::to_string(signed_at) + ".json"
                      : a.out;
    // Ready before the statement is signed and recorded: an unwritable --out refuses first.
    require_output_file(out);
    io::DurableFile file = io::DurableFile::prepare(out);  // removed again if refused below
    require_applies(a, state, step);
    step.reenable = sign_reenable(*state.kms, a.agent, a.halt, a.by, a.reason, signed_at);
    const Reenable& r = *step.reenable;
    const std::uint64_t seq = record_step(a, state, step);
    file.commit(to_json(r) + "\n");
    std::cout << "re-enable of '" << a.agent << "' signed by " << a.by << " (CA log seq " << seq
              << ")\n  lifts      halt " << r.halt_id << " (and no other)\n  statement  " << out
              << "\n  running Guards of '" << a.agent
              << "' apply it (GuardOptions::human_steps); or pass it to "
                 "Guard::reenable(reenable_from_json(...))\n";
}

void agent_lift_reduce_only(const Args& a) {
    if (a.by.empty()) throw Error(ErrorCategory::invalid_input, "--by: the person must be named");
    if (a.reason.empty()) throw Error(ErrorCategory::invalid_input, "--reason: say why");
    SystemClock clock;
    OpenedCa state = open_for_agent(a, clock);
    HumanStep step = new_step(a, HumanStep::Kind::lift_reduce_only, clock.now_ns());
    step.note = a.reason;
    require_applies(a, state, step);
    const std::uint64_t seq = record_step(a, state, step);
    std::cout << "reduce-only mode of '" << a.agent << "' lifted by " << a.by << " (CA log seq "
              << seq << "; running Guards of '" << a.agent << "' apply it)\n";
}

void add_agent_log(CLI::App* cmd, Args& a) {
    CLI::Option* log = cmd->add_option("--log", a.log,
                                       "The agent's audit log the step is checked against "
                                       "(default STATE/audit/AGENT.jsonl)");
    cmd->add_option("--postgres", a.postgres,
                    "The agent's audit log is in PostgreSQL (libpq conninfo); the step is also "
                    "published there for PostgresHumanStepFeed")
        ->excludes(log);
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
            add_agent_log(cmd, *a);
            const HumanStep::Kind kind = std::string(step) == "ack" ? HumanStep::Kind::acknowledge
                                                                    : HumanStep::Kind::resolve;
            cmd->callback([a, kind] { run_command([&] { incident_step(*a, kind); }); });
        }
        auto a = std::make_shared<Args>();
        CLI::App* cmd = incident->add_subcommand(
            "review", "Sign the root cause of an incident (post-incident review)");
        add_common(cmd, *a);
        cmd->add_option("--incident", a->incident, "Incident id")->required();
        cmd->add_option("--by", a->by, "The reviewer")->required();
        cmd->add_option("--root-cause", a->root_cause, "The root cause, as signed")->required();
        add_agent_log(cmd, *a);
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
        add_agent_log(cmd, *a);
        cmd->callback([a] { run_command([&] { agent_reenable(*a); }); });
    }
    {
        CLI::App* agent = app.get_subcommand("agent");
        auto a = std::make_shared<Args>();
        CLI::App* cmd = agent->add_subcommand("lift-reduce-only",
                                              "A named person lifts the agent's reduce-only mode");
        add_common(cmd, *a);
        cmd->add_option("--by", a->by, "The person deciding")->required();
        cmd->add_option("--reason", a->reason, "Why")->required();
        add_agent_log(cmd, *a);
        cmd->callback([a] { run_command([&] { agent_lift_reduce_only(*a); }); });
    }
}

}  // namespace kakunin::cli
