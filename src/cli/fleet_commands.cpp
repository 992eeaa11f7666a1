// Fleet state and the fleet halt (docs/operations.md, docs/cli.md):
//   kakunin fleet halt|resume --dir STATE --postgres CONNINFO --by NAME --reason TEXT [--json]
//   kakunin fleet status (--postgres CONNINFO | --dir STATE) [--json]
//   kakunin agent list (--postgres CONNINFO | --dir STATE) [--json]
//   kakunin incident list (--postgres CONNINFO | --dir STATE) [--agent ID] [--json]
// A fleet step is signed with the person's key in the CA's KMS, recorded in the CA log, then
// stored in kakunin_audit.fleet_steps, which NOTIFYs every PostgresFleet. The lists read the
// fleet's tables, or, for a file setup, the CA's registry and what the agents' logs under
// STATE/audit say.
#include <sys/stat.h>

#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "audit/json.hpp"
#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/fleet.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::cli {
namespace {

using json = nlohmann::json;

struct Args {
    std::string dir, postgres, by, reason, agent;
    bool json = false;
};

// ---- fleet halt | resume ----

void fleet_step(const Args& a, FleetStep::Action action) {
    if (a.by.empty()) throw Error(ErrorCategory::invalid_input, "--by: the person must be named");
    if (a.reason.empty()) throw Error(ErrorCategory::invalid_input, "--reason: say why");
    SystemClock clock;
    OpenedCa state = open_ca(a.dir, clock);
    FleetStep step =
        sign_fleet_step(*state.kms, action, a.by, a.reason, clock.now_ns(), state.config.algorithm);
    const std::uint64_t ca_seq = state.ca->record_event(
        action == FleetStep::Action::halt ? audit_event::fleet_halted : audit_event::fleet_resumed,
        to_json(step));
    try {
        step.seq = publish_fleet_step(a.postgres, step, ca_seq);
    } catch (const std::exception& e) {
        throw Error(ErrorCategory::database,
                    std::string("fleet ") + to_string(action) + ": recorded in the CA log (seq " +
                        std::to_string(ca_seq) + ") but not published through PostgreSQL: " +
                        e.what() + " (no Guard has it: run the command again)");
    }
    if (a.json) {
        json out = json::parse(to_json(step));
        out["seq"] = step.seq;
        out["ca_log_seq"] = ca_seq;
        std::cout << out.dump() << "\n";
        return;
    }
    std::cout << "fleet " << to_string(action) << " " << step.seq << " signed by " << a.by
              << " (CA log seq " << ca_seq << ")\n  reason     " << a.reason
              << "\n  every PostgresFleet on the database applies it within a second"
              << (action == FleetStep::Action::resume
                      ? "; Guards halted for another reason stay halted"
                      : "")
              << "\n";
}

// ---- reading: PostgreSQL ----

json agent_json(const FleetAgentRow& r) {
    const auto opt = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    return {{"agent_id", r.agent_id},
            {"state", r.state},
            {"stale", r.stale},
            {"host", opt(r.host)},
            {"pid", r.pid == 0 ? json(nullptr) : json(r.pid)},
            {"process", opt(r.process)},
            {"halt_id", opt(r.halt_id)},
            {"halt_by", opt(r.halt_by)},
            {"halt_reason", opt(r.halt_reason)},
            {"automatic", r.automatic},
            {"checks", r.checks},
            {"allowed", r.allowed},
            {"rejected", r.rejected},
            {"serial", opt(r.serial)},
            {"not_after", opt(r.not_after)},
            {"open_incidents", r.open_incidents},
            {"heartbeat", opt(r.heartbeat)}};
}

json incident_json(const FleetIncidentRow& r) {
    const auto opt = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    return {{"incident_id", r.incident_id},
            {"agent_id", r.agent_id},
            {"state", r.state},
            {"opened", opt(r.opened)},
            {"deadline", opt(r.deadline)},
            {"escalated", r.escalated},
            {"score_ppm", r.score_ppm},
            {"warnings", r.warnings},
            {"acknowledged_by", opt(r.acknowledged_by)},
            {"resolved_by", opt(r.resolved_by)},
            {"updated", opt(r.updated)}};
}

// ---- reading: a state directory ----

std::vector<std::string> complete_lines(const std::string& path) {
    std::vector<std::string> out;
    std::ifstream in(path, std::ios::binary);
    if (!in) return out;
    std::stringstream text;
    text << in.rdbuf();
    const std::string all = text.str();
    std::size_t start = 0;
    // Complete lines only: a last line without its newline is a write in progress.
    for (std::size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1)
        out.push_back(all.substr(start, nl - start));
    return out;
}

struct Record {
    std::string event;
    TimeNs ts = 0;
    json payload;
};

std::vector<Record> records(const std::vector<std::string>& lines, const std::string& what) {
    std::vector<Record> out;
    for (const std::string& line : lines) {
        audit_detail::ParsedLine parsed;
        std::string error;
        if (!audit_detail::parse_line(line, parsed, error) ||
            parsed.kind != audit_detail::LineKind::record)
            continue;
        try {
            const json record = audit_detail::parse_strict(parsed.canonical, what);
            out.push_back({parsed.record.event, parsed.record.ts_ns,
                           record.contains("payload") ? record.at("payload") : json()});
        } catch (const Error&) {
            // Not a record this listing can read: audit verify says why.
        }
    }
    return out;
}

std::string member(const json& p, const char* key) {
    if (!p.is_object()) return {};
    auto it = p.find(key);
    return it != p.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// The state directory's view: every registered agent, and what its log says.
FleetReading read_dir(const std::string& dir) {
    SystemClock clock;
    OpenedCa state = open_ca(dir, clock);
    FleetReading out;
    std::vector<std::string> agents;
    for (const Record& r : records(state.ca->audit_log_lines(), "CA log")) {
        if (r.event == audit_event::agent_registered) agents.push_back(member(r.payload, "agent"));
        if (r.event == audit_event::fleet_halted || r.event == audit_event::fleet_resumed) {
            try {
                out.latest_step = fleet_step_from_json(r.payload.dump());
            } catch (const Error&) {
            }
        }
    }
    std::sort(agents.begin(), agents.end());
    const std::vector<Revocation> revoked = state.ca->revocations();
    for (const std::string& id : agents) {
        if (id.empty()) continue;
        FleetAgentRow a;
        a.agent_id = id;
        a.state = "trading";
        const auto certs = state.ca->issued_certificates(id);
        if (!certs.empty()) {
            const AgentCertificate& latest = certs.back();
            a.serial = latest.serial();
            a.not_after = format_timestamp(latest.not_after());
        }
        bool cert_revoked = false;
        for (const Revocation& r : revoked)
            if (!a.serial.empty() && canonical_serial(r.serial) == canonical_serial(a.serial))
                cert_revoked = true;
        const std::string log = dir + "/audit/" + id + ".jsonl";
        bool reduce_only = false, halted = false, log_revoked = false;
        std::map<std::string, FleetIncidentRow> incidents;
        std::vector<std::string> order;
        TimeNs last = 0;
        for (const Record& r : records(complete_lines(log), log)) {
            last = std::max(last, r.ts);
            const std::string& e = r.event;
            if (e == audit_event::order_allowed || e == audit_event::order_warned) {
                ++a.checks;
                ++a.allowed;
            } else if (e == audit_event::order_rejected) {
                ++a.checks;
                ++a.rejected;
            } else if (e == audit_event::guard_halted || e == audit_event::certificate_revoked) {
                halted = true;
                if (e == audit_event::certificate_revoked) log_revoked = true;
                a.halt_id = member(r.payload, "halt");
                a.halt_by = member(r.payload, "by");
                a.halt_reason = member(r.payload, "reason");
                a.automatic = r.payload.is_object() && r.payload.value("automatic", false);
            } else if (e == audit_event::guard_resumed) {
                halted = log_revoked = a.automatic = false;
                a.halt_id = a.halt_by = a.halt_reason = "";
            } else if (e == audit_event::guard_rotated) {
                log_revoked = false;
            } else if (e == audit_event::guard_reduce_only) {
                reduce_only = true;
            } else if (e == audit_event::guard_reduce_only_lifted) {
                reduce_only = false;
            } else if (e == audit_event::incident_opened) {
                FleetIncidentRow n;
                n.incident_id = member(r.payload, "incident");
                n.agent_id = id;
                n.state = "open";
                n.opened = n.updated = format_timestamp(r.ts);
                if (r.payload.contains("window_ms") && r.payload["window_ms"].is_number_unsigned())
                    n.deadline = format_timestamp(
                        r.ts +
                        static_cast<TimeNs>(r.payload["window_ms"].get<std::uint64_t>()) * 1000000);
                if (r.payload.contains("trigger") && r.payload["trigger"].is_object())
                    n.score_ppm = r.payload["trigger"].value("score_ppm", 0u);
                n.warnings = 1;
                if (incidents.emplace(n.incident_id, n).second) order.push_back(n.incident_id);
            } else if (e.compare(0, 9, "incident.") == 0 || e == audit_event::review_signed) {
                const std::string iid =
                    member(r.payload, e == audit_event::review_signed ? "incident_id" : "incident");
                auto it = incidents.find(iid);
                if (it == incidents.end()) continue;
                FleetIncidentRow& n = it->second;
                n.updated = format_timestamp(r.ts);
                if (e == "incident.acknowledged") {
                    n.state = "acknowledged";
                    n.acknowledged_by = member(r.payload, "by");
                } else if (e == "incident.resolved") {
                    n.state = "resolved";
                    n.resolved_by = member(r.payload, "by");
                } else if (e == "incident.escalated") {
                    n.escalated = true;
                } else if (e == "incident.revoked") {
                    n.state = "revoked";
                } else if (e == audit_event::review_signed) {
                    n.state = "reviewed";
                }
            }
        }
        if (cert_revoked || log_revoked)
            a.state = "revoked";
        else if (halted)
            a.state = "halted";
        else if (reduce_only)
            a.state = "reduce_only";
        for (const std::string& iid : order) {
            const FleetIncidentRow& n = incidents[iid];
            if (n.state == "open" || n.state == "acknowledged") ++a.open_incidents;
            out.incidents.push_back(n);
        }
        if (last > 0) a.heartbeat = format_timestamp(last);  // the log's latest record
        out.agents.push_back(std::move(a));
    }
    return out;
}

FleetReading read(const Args& a) {
    if (a.dir.empty() == a.postgres.empty())
        throw Error(ErrorCategory::invalid_input, "give either --dir STATE or --postgres CONNINFO");
    return a.postgres.empty() ? read_dir(a.dir) : read_fleet(a.postgres);
}

json step_json(const std::optional<FleetStep>& s) {
    if (!s) return json(nullptr);
    json j = {{"action", to_string(s->action)},
              {"by", s->by},
              {"reason", s->reason},
              {"signed_at", format_timestamp(s->signed_at_ns)}};
    if (s->seq > 0) j["seq"] = s->seq;
    return j;
}

bool halt_in_force(const FleetReading& r) {
    return r.latest_step && r.latest_step->action == FleetStep::Action::halt;
}

std::string dash(const std::string& s) { return s.empty() ? "-" : s; }

void print_agents(const std::vector<FleetAgentRow>& agents) {
    std::cout << std::left << std::setw(24) << "AGENT" << std::setw(12) << "STATE" << std::setw(6)
              << "STALE" << std::setw(10) << "CHECKS" << std::setw(10) << "ALLOWED" << std::setw(10)
              << "REJECTED" << std::setw(6) << "INC" << std::setw(26) << "HEARTBEAT"
              << "HALT\n";
    for (const FleetAgentRow& r : agents)
        std::cout << std::left << std::setw(24) << r.agent_id << std::setw(12) << r.state
                  << std::setw(6) << (r.stale ? "yes" : "no") << std::setw(10) << r.checks
                  << std::setw(10) << r.allowed << std::setw(10) << r.rejected << std::setw(6)
                  << r.open_incidents << std::setw(26) << dash(r.heartbeat)
                  << (r.halt_id.empty() ? std::string("-")
                                        : r.halt_id + " by " + r.halt_by + ": " + r.halt_reason)
                  << "\n";
}

void agent_list(const Args& a) {
    const FleetReading r = read(a);
    if (a.json) {
        json agents = json::array();
        for (const FleetAgentRow& x : r.agents) agents.push_back(agent_json(x));
        std::cout
            << json{{"source", a.postgres.empty() ? "dir" : "postgres"}, {"agents", agents}}.dump()
            << "\n";
        return;
    }
    print_agents(r.agents);
}

void incident_list(const Args& a) {
    FleetReading r = read(a);
    std::vector<FleetIncidentRow> rows;
    for (const FleetIncidentRow& n : r.incidents)
        if (a.agent.empty() || n.agent_id == a.agent) rows.push_back(n);
    if (a.json) {
        json out = json::array();
        for (const FleetIncidentRow& n : rows) out.push_back(incident_json(n));
        std::cout
            << json{{"source", a.postgres.empty() ? "dir" : "postgres"}, {"incidents", out}}.dump()
            << "\n";
        return;
    }
    std::cout << std::left << std::setw(56) << "INCIDENT" << std::setw(24) << "AGENT"
              << std::setw(14) << "STATE" << std::setw(26) << "OPENED" << std::setw(26)
              << "DEADLINE"
              << "ACKNOWLEDGED BY\n";
    for (const FleetIncidentRow& n : rows)
        std::cout << std::left << std::setw(56) << n.incident_id << std::setw(24) << n.agent_id
                  << std::setw(14) << n.state << std::setw(26) << dash(n.opened) << std::setw(26)
                  << dash(n.deadline) << dash(n.acknowledged_by) << "\n";
}

void fleet_status(const Args& a) {
    const FleetReading r = read(a);
    std::map<std::string, std::size_t> counts{
        {"trading", 0}, {"reduce_only", 0}, {"halted", 0}, {"revoked", 0}, {"stale", 0}};
    for (const FleetAgentRow& x : r.agents) ++counts[x.stale ? "stale" : x.state];
    if (a.json) {
        json agents = json::array();
        for (const FleetAgentRow& x : r.agents) agents.push_back(agent_json(x));
        std::cout << json{{"source", a.postgres.empty() ? "dir" : "postgres"},
                          {"fleet_halt", halt_in_force(r)},
                          {"latest_step", step_json(r.latest_step)},
                          {"total", r.agents.size()},
                          {"counts", counts},
                          {"agents", agents}}
                         .dump()
                  << "\n";
        return;
    }
    std::cout << "fleet      " << r.agents.size() << " agents: " << counts["trading"]
              << " trading, " << counts["reduce_only"] << " reduce-only, " << counts["halted"]
              << " halted, " << counts["revoked"] << " revoked, " << counts["stale"] << " stale\n";
    if (halt_in_force(r))
        std::cout << "fleet halt IN FORCE (" << r.latest_step->seq << ") by " << r.latest_step->by
                  << ": " << r.latest_step->reason << "\n";
    else
        std::cout << "fleet halt none in force\n";
    print_agents(r.agents);
}

void add_source(CLI::App* cmd, Args& a) {
    CLI::Option* dir = cmd->add_option(
        "--dir", a.dir,
        "State directory (kakunin ca init): the CA's registry and the agents' logs");
    cmd->add_option("--postgres", a.postgres, "The fleet's tables (libpq conninfo)")->excludes(dir);
    cmd->add_flag("--json", a.json, "Print JSON (docs/cli.md)");
}

}  // namespace

void add_fleet_commands(CLI::App& app) {
    CLI::App* fleet = app.add_subcommand("fleet", "Every agent's state; the fleet-wide halt");
    fleet->require_subcommand(1);
    for (const FleetStep::Action action : {FleetStep::Action::halt, FleetStep::Action::resume}) {
        auto a = std::make_shared<Args>();
        CLI::App* cmd = fleet->add_subcommand(
            to_string(action), action == FleetStep::Action::halt
                                   ? "A named person halts every Guard of the fleet (liftable)"
                                   : "A named person lifts the fleet halt (other halts stay)");
        cmd->add_option("--dir", a->dir, "State directory (kakunin ca init): the KMS and CA log")
            ->required();
        cmd->add_option("--postgres", a->postgres, "Where the fleet listens (libpq conninfo)")
            ->required();
        cmd->add_option("--by", a->by, "The person deciding")->required();
        cmd->add_option("--reason", a->reason, "Why")->required();
        cmd->add_flag("--json", a->json, "Print the signed step as JSON");
        cmd->callback([a, action] { run_command([&] { fleet_step(*a, action); }); });
    }
    {
        auto a = std::make_shared<Args>();
        CLI::App* cmd = fleet->add_subcommand("status", "Counts by state, one line per agent");
        add_source(cmd, *a);
        cmd->callback([a] { run_command([&] { fleet_status(*a); }); });
    }
    {
        auto a = std::make_shared<Args>();
        CLI::App* cmd = app.get_subcommand("agent")->add_subcommand("list", "Every agent's state");
        add_source(cmd, *a);
        cmd->callback([a] { run_command([&] { agent_list(*a); }); });
    }
    {
        auto a = std::make_shared<Args>();
        CLI::App* cmd = app.get_subcommand("incident")->add_subcommand("list", "Incidents");
        add_source(cmd, *a);
        cmd->add_option("--agent", a->agent, "Only this agent's");
        cmd->callback([a] { run_command([&] { incident_list(*a); }); });
    }
}

}  // namespace kakunin::cli
