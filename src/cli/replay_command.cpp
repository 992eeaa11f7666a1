// kakunin replay (--scope scope.json | --dir STATE --agent ID) (--orders orders.csv |
//                --events events.csv [--halt-at TS] [--state-out FILE])
//                [--decisions-out FILE] [--json]
//
// --scope: the limits alone. --dir/--agent: the agent's approved scope in a simulation
// certificate, enforced by a Guard built from that certificate on the orders' own times.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/software_kms.hpp"

namespace kakunin::cli {
namespace {

void ensure_directory(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        throw Error(ErrorCategory::io, "cannot create " + path + ": " + std::strerror(errno));
}

struct ReplayArgs {
    std::string scope_path, dir, agent, orders_path, events_path, decisions_out, audit_out,
        observe_until, baseline_out, halt_at, state_out;
    bool json = false, auto_approve = false;
};

/// The name an automatic approval carries: never a person's.
constexpr const char* automatic_approver = "kakunin replay (automatic approval)";

void print_table(const ReplaySummary& s, const char* decided = "orders   ") {
    std::cout << decided << " " << s.orders << "\n"
              << "allowed   " << s.allowed << " (with warning: " << s.warned_orders << ")\n"
              << "rejected  " << s.rejected_orders << "\n";
    if (!s.rejected.empty()) {
        std::cout << "\n  " << std::left << std::setw(30) << "reason"
                  << "orders\n";
        for (const auto& [reason, count] : s.rejected)
            std::cout << "  " << std::left << std::setw(30) << reason << count << "\n";
    }
}

/// The events replay's own lines: requests per type, reports, the halt and what it cancelled.
void print_events_table(const EventReplaySummary& e) {
    std::cout << "\n  " << std::left << std::setw(10) << "request" << std::setw(10) << "allowed"
              << "rejected\n";
    for (const auto& [type, c] : {std::pair<const char*, const RequestCounts&>{"new", e.new_orders},
                                  {"amend", e.amends},
                                  {"cancel", e.cancels}})
        std::cout << "  " << std::left << std::setw(10) << type << std::setw(10) << c.allowed
                  << c.rejected << "\n";
    std::cout << "\nreports   " << e.reports.received << " (applied: " << e.reports.applied
              << ", unknown order: " << e.reports.unknown << ")\n";
    for (const auto& [problem, count] : e.reports.problems)
        std::cout << "  " << count << " x " << problem << "\n";
    if (e.halted_at_ns)
        std::cout << "\nhalted    " << format_timestamp(*e.halted_at_ns) << " (replay --halt-at)";
    if (e.halted_at_ns || !e.cancel_on_halt.empty()) {
        std::cout << (e.halted_at_ns ? "; " : "\n") << "cancel_on_halt: " << e.cancel_on_halt.size()
                  << " order(s)";
        for (const std::string& id : e.cancel_on_halt) std::cout << " " << id;
        std::cout << "\n";
    }
}

/// The Kms of a simulation CA: its own keys (CA, agent) live in memory and vanish with the
/// replay; approvers' keys are looked up in the state directory's Kms, so that the simulation CA
/// checks the real, signed approval exactly as the CA does.
class SimulationKms final : public Kms {
public:
    explicit SimulationKms(std::shared_ptr<Kms> state_kms)
        : m_state(std::move(state_kms)), m_memory(SoftwareKms::in_memory()) {}

    KeyHandle create_key(std::string_view label, KeyAlgorithm algorithm) override {
        if (is_approver(label))
            throw Error(
                ErrorCategory::invalid_state,
                "a simulation does not create approvers' keys ('" + std::string(label) + "')");
        return m_memory->create_key(label, algorithm);
    }
    KeyHandle find_key(std::string_view label) override {
        return is_approver(label) ? m_state->find_key(label) : m_memory->find_key(label);
    }
    std::vector<std::uint8_t> sign(const KeyHandle& key, const std::uint8_t* message,
                                   std::size_t size) override {
        if (is_approver(key.label))
            throw Error(ErrorCategory::invalid_state,
                        "a simulation does not sign with approvers' keys");
        return m_memory->sign(key, message, size);
    }
    PublicKeyInfo public_key(const KeyHandle& key) override {
        return is_approver(key.label) ? m_state->public_key(key) : m_memory->public_key(key);
    }
    using Kms::sign;

private:
    static bool is_approver(std::string_view label) {
        const std::string prefix = approver_key_label("");
        return label.substr(0, prefix.size()) == prefix;
    }
    std::shared_ptr<Kms> m_state;
    std::unique_ptr<SoftwareKms> m_memory;
};

constexpr TimeNs ns_per_s = 1'000'000'000;

/// The latest time of a record in the log at `path`, or nullopt for no log or no record.
std::optional<TimeNs> latest_record_time(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::optional<TimeNs> latest;
    std::uint64_t line_no = 0;
    for (std::string line; std::getline(in, line);) {
        ++line_no;
        if (line.find("\"kind\":\"record\"") == std::string::npos) continue;
        try {
            const TimeNs t = parse_audit_record(line).ts_ns;
            if (!latest || t > *latest) latest = t;
        } catch (const Error& e) {
            throw Error(ErrorCategory::invalid_input,
                        path + " line " + std::to_string(line_no) + ": " + e.what());
        }
    }
    return latest;
}

/// A Guard on a simulation certificate for `agent`, issued from its approved scope in `dir` by
/// an in-memory simulation CA and valid over [first, last] (whole seconds around them).
struct SimulatedAuthority {
    std::unique_ptr<ManualClock> ca_clock;  ///< the simulation CA's clock (it borrows it)
    std::shared_ptr<SimulationKms> kms;
    std::unique_ptr<LocalCa> ca;
    std::optional<AgentCertificate> certificate;
    std::optional<CertificateRevocationList> crl;
    KeyHandle agent_key;
    ScopeApproval approval;
};

SimulatedAuthority simulate_authority(const std::string& dir, const std::string& agent,
                                      TimeNs first, TimeNs last) {
    SystemClock system;
    OpenedCa state = open_ca(dir, system);
    validate_agent_id(agent);
    const auto registration = state.ca->registration(agent);
    if (!registration)
        throw Error(ErrorCategory::not_found, "unknown agent '" + agent + "': not registered in " +
                                                  dir + " (run 'kakunin agent register --dir " +
                                                  dir + " --agent " + agent + " ...')");
    const auto approved = state.ca->approved_scope(agent);
    if (!approved)
        throw Error(ErrorCategory::unauthorised,
                    "agent '" + agent +
                        "' has no approved scope: a named person must approve one first "
                        "('kakunin scope approve --dir " +
                        dir + " --agent " + agent + " --scope scope.json --approver NAME')");

    // X.509 times have one-second resolution: the simulation covers whole seconds.
    const TimeNs start = floor_div(first, ns_per_s) * ns_per_s;
    const std::int64_t span_s = floor_div(last, ns_per_s) - start / ns_per_s + 1;
    const std::chrono::seconds margin{2 * 86400};

    SimulatedAuthority sim;
    sim.kms = std::make_shared<SimulationKms>(state.kms);
    // The simulation CA lives at the start of the orders (its certificate and CRL must be valid
    // on the simulated times); it checks the approval at the real time it was given.
    sim.ca_clock = std::make_unique<ManualClock>(start);
    ManualClock& ca_clock = *sim.ca_clock;
    LocalCaOptions options;
    options.oid_arc = state.ca->options().oid_arc;
    options.crl_validity = std::chrono::seconds{span_s} + margin;
    CaInitOptions init;
    init.name = "Kakunin simulation CA";
    init.validity = std::chrono::seconds{span_s} + margin;
    sim.ca = LocalCa::init(sim.kms, ca_clock, options, init);
    sim.ca->register_agent(*registration);
    sim.agent_key = sim.kms->create_key("agent:" + agent, KeyAlgorithm::ed25519);

    IssueRequest request;
    request.agent_id = agent;
    request.scope = approved->scope;
    request.approval = approved->approval;
    request.public_key = sim.kms->public_key(sim.agent_key).spki_der;
    request.not_before = start;
    request.validity = std::chrono::seconds{span_s};
    request.simulation = true;
    ca_clock.set(std::max(system.now_ns(), approved->approval.approved_at));
    sim.certificate = sim.ca->issue(request);
    ca_clock.set(start);
    sim.crl = sim.ca->issue_crl();
    sim.approval = approved->approval;
    return sim;
}

/// Orders [begin, end) through `guard`, the clock set to each row's time; reference prices as
/// replay_scope() takes them (the previous row's price for the instrument when a row has none).
/// Incidents are handled after each order, on simulated time, so results are deterministic.
void replay_guard(Guard& guard, ManualClock& clock, std::vector<ReplayOrder>::const_iterator begin,
                  std::vector<ReplayOrder>::const_iterator end, const ReplayCallback& on_decision,
                  ReplaySummary& summary, std::unordered_map<std::string, Decimal>& last_price) {
    for (auto it = begin; it != end; ++it) {
        const ReplayOrder& row = *it;
        clock.set(row.ts_ns);
        Order order = row.view();
        if (!order.reference_price) {
            const auto p = last_price.find(row.instrument);
            if (p != last_price.end()) order.reference_price = p->second;
        }
        const Decision d = guard.check(order);
        guard.process_incidents();
        if (row.price.is_positive()) last_price[row.instrument] = row.price;
        summary.add(d);
        if (on_decision) on_decision(row, d);
    }
}

struct LearnedBaseline {
    Baseline baseline;
    std::optional<BaselineApproval> approval;
    std::string path, approval_path;
    bool stored = false;  ///< the state directory's approved baseline, not learned here
};

void run(const ReplayArgs& a) {
    const bool with_state = !a.dir.empty() || !a.agent.empty();
    if (with_state && !a.scope_path.empty())
        throw Error(ErrorCategory::invalid_input,
                    "give either --scope or --dir with --agent, not both");
    if (!with_state && a.scope_path.empty())
        throw Error(ErrorCategory::invalid_input,
                    "give --scope scope.json (limits alone) or --dir STATE --agent ID (the "
                    "agent's approved scope in a simulation certificate)");
    if (with_state && (a.dir.empty() || a.agent.empty()))
        throw Error(ErrorCategory::invalid_input,
                    a.dir.empty() ? "--agent needs --dir STATE" : "--dir needs --agent ID");

    const bool with_events = !a.events_path.empty();
    if (with_events == !a.orders_path.empty())
        throw Error(ErrorCategory::invalid_input,
                    "give either --orders orders.csv or --events events.csv (exactly one)");
    if (!with_events && !a.halt_at.empty())
        throw Error(ErrorCategory::invalid_input,
                    "--halt-at needs --events FILE (the kill switch cancels working orders)");
    if (!with_events && !a.state_out.empty())
        throw Error(ErrorCategory::invalid_input,
                    "--state-out needs --events FILE (positions come from fills)");
    EventReplayOptions event_options;
    if (!a.halt_at.empty()) {
        try {
            event_options.halt_at = parse_timestamp(a.halt_at);
        } catch (const Error& e) {
            throw Error(e.category(), std::string("--halt-at: ") + e.what());
        }
    }

    std::optional<Scope> scope;
    if (!with_state) scope = load_scope_file(a.scope_path);
    std::vector<ReplayOrder> orders;
    std::vector<ReplayEvent> events;
    if (with_events)
        events = load_events_csv(a.events_path);
    else
        orders = load_orders_csv(a.orders_path);
    if (with_state && orders.empty() && events.empty())
        throw Error(ErrorCategory::invalid_input,
                    (with_events ? a.events_path + ": no events" : a.orders_path + ": no orders") +
                        ", so no time span to issue a certificate for");
    if (!a.state_out.empty()) require_output_file(a.state_out);
    std::ofstream out;
    if (!a.decisions_out.empty()) {
        require_output_file(a.decisions_out);
        out.open(a.decisions_out, std::ios::binary | std::ios::trunc);
        if (!out) throw Error(ErrorCategory::io, a.decisions_out + ": cannot write");
    }
    const ReplayCallback write_decision = [&](const ReplayOrder& o, const Decision& d) {
        if (out.is_open()) out << decision_json(o.line, d) << '\n';
    };
    const EventCallback write_event_decision = [&](const ReplayEvent& e, const Decision& d) {
        if (out.is_open()) out << event_decision_json(e, d) << '\n';
    };
    EventReplay event_replay(event_options, write_event_decision);
    EventReplaySummary es;

    std::optional<TimeNs> observe_until;
    if (!a.observe_until.empty()) {
        if (!with_state)
            throw Error(ErrorCategory::invalid_input,
                        "--observe-until needs --dir STATE --agent ID (a baseline is the agent's)");
        try {
            observe_until = parse_timestamp(a.observe_until);
        } catch (const Error& e) {
            throw Error(e.category(), std::string("--observe-until: ") + e.what());
        }
    }
    if (a.auto_approve && !observe_until)
        throw Error(ErrorCategory::invalid_input,
                    "--auto-approve-baseline needs --observe-until TIMESTAMP");
    std::optional<LearnedBaseline> learned;
    std::vector<Incident> incidents;
    ReplaySummary s;
    std::optional<SimulatedAuthority> sim;
    std::string audit_written;
    if (!a.audit_out.empty() && !with_state)
        throw Error(
            ErrorCategory::invalid_input,
            "--audit-out needs --dir STATE --agent ID (records are signed by the agent's key)");
    if (with_state) {
        const TimeNs first = with_events ? events.front().ts_ns : orders.front().ts_ns;
        const TimeNs last = with_events ? events.back().ts_ns : orders.back().ts_ns;
        sim = simulate_authority(a.dir, a.agent, first,
                                 std::max(last, event_options.halt_at.value_or(last)));
        ManualClock clock(first);
        // The replay's own audit log (log_id "<agent>.replay"), so simulated records never mix
        // with the agent's production log; the simulation certificate is kept beside it.
        // The log (by default STATE/audit/ID.replay.jsonl, where export --log-id ID.replay
        // finds it) is continued by each run; one that goes back in time is refused below.
        const std::string audit_path =
            a.audit_out.empty() ? a.dir + "/audit/" + a.agent + ".replay.jsonl" : a.audit_out;
        if (a.audit_out.empty()) ensure_directory(a.dir + "/audit");
        require_output_file(audit_path);
        // A run appended to an existing log continues its state (the Guard restores it from
        // the log: the day's totals, a halt, working orders), so it must come after it in time.
        if (const std::optional<TimeNs> until = latest_record_time(audit_path);
            until && first < *until)
            throw Error(ErrorCategory::invalid_input,
                        audit_path + ": its records reach " + format_timestamp(*until) +
                            " and this run starts at " + format_timestamp(first) +
                            ": a replay appended to a log continues it and cannot go back in "
                            "time; give another --audit-out for a separate run");
        const std::string cert_dir = audit_path + ".certs";
        ensure_directory(cert_dir);
        write_file(cert_dir + "/" + sim->certificate->serial() + ".pem", sim->certificate->pem());
        // The throwaway simulation CA's certificate, so the simulation chain can be checked.
        write_file(audit_path + ".simulation-ca.pem", sim->ca->trust_anchor().pem());
        GuardOptions options;
        options.audit = AuditTrailOptions{std::make_shared<FileAuditSink>(audit_path)};
        options.audit->log_id = a.agent + ".replay";
        // A replay runs faster than any writer can sign: check() waits for room in the audit
        // queue instead of rejecting with audit_unavailable requests that live trading would
        // have recorded (a sink down for longer than the grace still fails closed, not hangs).
        options.audit->block_when_full = true;
        options.authority = std::shared_ptr<CertificateAuthority>(sim->ca.get(), [](auto*) {});
        options.incident_thread = false;
        options.observe = observe_until.has_value();
        if (!observe_until) {
            // The agent's latest approved baseline in the state directory, if any, is enforced
            // as the trading process would enforce it.
            FileBaselineStore store(a.dir);
            if (const auto stored = store.get_baseline(a.agent)) {
                if (const auto approval = store.get_approval(a.agent, stored->version)) {
                    Baseline b = parse_baseline_json(stored->json);
                    options.baseline = ApprovedBaseline{b, *approval};
                    learned = LearnedBaseline{std::move(b),
                                              *approval,
                                              a.dir + "/baselines/" + a.agent + "/" +
                                                  std::to_string(stored->version) + ".json",
                                              {}};
                    learned->stored = true;
                }
            }
        }
        if (with_events) event_replay.attach(options);
        {
            Guard guard(GuardCredentials{*sim->certificate, sim->ca->trust_anchor(), sim->crl,
                                         sim->kms, sim->agent_key},
                        clock, options);
            std::unordered_map<std::string, Decimal> last_price;
            auto split = orders.cbegin();
            auto event_split = events.cbegin();
            if (observe_until) {
                split =
                    std::lower_bound(orders.cbegin(), orders.cend(), *observe_until,
                                     [](const ReplayOrder& o, TimeNs t) { return o.ts_ns < t; });
                event_split =
                    std::lower_bound(events.cbegin(), events.cend(), *observe_until,
                                     [](const ReplayEvent& e, TimeNs t) { return e.ts_ns < t; });
            }
            // As replay_guard() does for orders: handle incidents on simulated time after each
            // row.
            event_replay.after_row = [&] { guard.process_incidents(); };
            if (with_events)
                event_replay.run(guard, clock, events.cbegin(), event_split);
            else
                replay_guard(guard, clock, orders.cbegin(), split, write_decision, s, last_price);
            if (observe_until) {
                clock.set(std::max(clock.now_ns(), *observe_until));
                learned =
                    LearnedBaseline{guard.observation()->finalize(*observe_until), {}, {}, {}};
                learned->path =
                    a.baseline_out.empty() ? audit_path + ".baseline.json" : a.baseline_out;
                write_file(learned->path, to_json(learned->baseline) + "\n");
                if (a.auto_approve) {
                    // Signed by a key that lives only as long as this replay, under a name that
                    // is no person's: an automatic approval, recorded as such.
                    auto approver_kms = SoftwareKms::in_memory();
                    learned->approval =
                        approve_baseline(*approver_kms, learned->baseline, automatic_approver,
                                         *observe_until, 0, true);
                    learned->approval_path = learned->path + ".approval.json";
                    write_file(learned->approval_path, to_json(*learned->approval) + "\n");
                    guard.enforce_baseline({learned->baseline, *learned->approval});
                }
            }
            if (with_events) {
                event_replay.run(guard, clock, event_split, events.cend());
                event_replay.finish(guard, clock);
            } else {
                replay_guard(guard, clock, split, orders.cend(), write_decision, s, last_price);
            }
            guard.process_incidents();
            incidents = guard.incidents();
            event_replay.before_request = nullptr;  // they refer to this Guard
            event_replay.after_row = nullptr;
        }  // closing the Guard drains the audit queue and writes the final checkpoint
        if (with_events) {
            es = event_replay.summary();
            s = es.decisions;
        }
        for (const Incident& i : incidents)
            if (i.warnings > 0) ++s.warnings;
        audit_written = audit_path;
    } else if (with_events) {
        es = replay_events(*scope, events, write_event_decision, event_options);
        s = es.decisions;
    } else {
        s = replay_scope(*scope, orders, write_decision);
    }
    if (with_events) es.decisions.warnings = s.warnings;
    if (out.is_open()) {
        out.flush();
        if (!out) throw Error(ErrorCategory::io, a.decisions_out + ": write failed");
    }
    if (!a.state_out.empty()) write_file(a.state_out, lifecycle_state_json(es.state) + "\n");

    if (a.json) {
        const std::string summary = with_events ? event_summary_json(es) : summary_json(s);
        if (!sim) {
            std::cout << summary << "\n";
            return;
        }
        nlohmann::json j = nlohmann::json::parse(summary);
        const AgentCertificate& c = *sim->certificate;
        j["audit_log"] = audit_written;
        if (learned) {
            const Baseline& b = learned->baseline;
            j["baseline"] = {{"path", learned->path},
                             {"sha256", baseline_sha256_hex(b)},
                             {"observed_from_ns", b.observed_from_ns},
                             {"observed_to_ns", b.observed_to_ns},
                             {"orders", b.orders},
                             {"enforced", learned->approval.has_value()},
                             {"approved_by", learned->approval ? learned->approval->approver : ""},
                             {"automatic", learned->approval && learned->approval->automatic},
                             {"from_state", learned->stored}};
        }
        j["incidents"] = nlohmann::json::array();
        for (const Incident& i : incidents)
            j["incidents"].push_back(nlohmann::json::parse(to_json(i)));
        j["certificate"] = {{"agent", c.agent_id()},
                            {"subject", c.subject()},
                            {"serial", c.serial()},
                            {"fingerprint", c.fingerprint()},
                            {"simulation", c.is_simulation()},
                            {"not_before", format_timestamp(c.not_before())},
                            {"not_after", format_timestamp(c.not_after())},
                            {"not_before_ns", c.not_before()},
                            {"not_after_ns", c.not_after()},
                            {"scope_sha256", sim->approval.scope_sha256},
                            {"approved_by", sim->approval.approver},
                            {"approved_at", format_timestamp(sim->approval.approved_at)}};
        std::cout << j.dump() << "\n";
        return;
    }
    if (sim) {
        const AgentCertificate& c = *sim->certificate;
        std::cout << "simulation certificate for agent '" << c.agent_id() << "' (" << c.subject()
                  << ")\n"
                  << "  serial    " << c.serial() << "\n"
                  << "  valid     " << format_timestamp(c.not_before()) << " .. "
                  << format_timestamp(c.not_after()) << "\n"
                  << "  scope     sha256:" << sim->approval.scope_sha256 << ", approved by "
                  << sim->approval.approver << " at " << format_timestamp(sim->approval.approved_at)
                  << "\n"
                  << "  audit log " << audit_written << "\n"
                  << "            (kakunin audit verify --log " << audit_written << " --certs "
                  << audit_written << ".certs)\n\n";
    }
    print_table(s, with_events ? "requests " : "orders   ");
    if (with_events) print_events_table(es);
    if (learned && learned->stored) {
        std::cout << "\nbaseline  " << learned->path << ", approved by "
                  << learned->approval->approver << " at "
                  << format_timestamp(learned->approval->approved_at) << ": enforced\n";
    } else if (learned) {
        std::cout << "\nbaseline  learned over " << learned->baseline.orders << " orders, "
                  << format_timestamp(learned->baseline.observed_from_ns) << " .. "
                  << format_timestamp(learned->baseline.observed_to_ns) << "\n          "
                  << learned->path << "\n";
        if (learned->approval)
            std::cout << "          approved automatically (" << automatic_approver
                      << "), enforced from then on\n";
        else
            std::cout
                << "          NOT enforced: a named person approves it first (kakunin baseline "
                   "approve --dir "
                << a.dir << " --agent " << a.agent << " --baseline " << learned->path
                << " --approver NAME), or replay with --auto-approve-baseline\n";
    }
    if (sim) {
        std::cout << "\nwarnings  " << s.warnings << " incident(s) opened, revocations "
                  << s.revocations << "\n";
        for (const Incident& i : incidents) {
            std::cout << "\nincident " << i.id << " (" << to_string(i.state) << ")\n";
            for (const IncidentTransition& t : i.history)
                std::cout << "  " << format_timestamp(t.at_ns) << "  " << std::left << std::setw(13)
                          << to_string(t.state) << " " << t.by << ": " << t.note << "\n";
        }
    }
}

}  // namespace

void add_replay_command(CLI::App& app) {
    auto args = std::make_shared<ReplayArgs>();
    CLI::App* cmd = app.add_subcommand(
        "replay",
        "What would this scope, or this agent's approved certificate, have done to these orders?");
    cmd->add_option("--scope", args->scope_path,
                    "Scope JSON (limits alone: no certificate, no baseline)")
        ->check(CLI::ExistingFile);
    cmd->add_option("--dir", args->dir,
                    "State directory: replay under the agent's approved scope, in a simulation "
                    "certificate (with --agent)");
    cmd->add_option("--agent", args->agent, "Registered agent id (with --dir)");
    cmd->add_option("--orders", args->orders_path,
                    "Orders CSV: ts,instrument,counterparty,side,quantity,price,region")
        ->check(CLI::ExistingFile);
    cmd->add_option("--events", args->events_path,
                    "Events CSV (an order lifecycle, instead of --orders): "
                    "ts,type,order_id,instrument,counterparty,side,quantity,price,region")
        ->check(CLI::ExistingFile);
    cmd->add_option("--halt-at", args->halt_at,
                    "With --events: pull the kill switch at this time (RFC 3339 UTC or epoch ms); "
                    "the summary lists the working orders it cancels (cancel_on_halt)");
    cmd->add_option("--state-out", args->state_out,
                    "With --events: write the final positions, working orders and daily totals "
                    "here (JSON)");
    cmd->add_option("--decisions-out", args->decisions_out,
                    "Write one JSON line per order (with --events: per request) here");
    cmd->add_option("--audit-out", args->audit_out,
                    "Audit log of the replay (default with --dir: STATE/audit/AGENT.replay.jsonl)");
    cmd->add_option("--observe-until", args->observe_until,
                    "With --dir: learn the baseline from the orders before this time (RFC 3339 "
                    "UTC or epoch ms; at least 7 days after the first order)");
    cmd->add_flag("--auto-approve-baseline", args->auto_approve,
                  "Approve the learned baseline automatically (recorded as automatic) and "
                  "enforce it on the remaining orders");
    cmd->add_option("--baseline-out", args->baseline_out,
                    "Where the learned baseline goes (default: the audit log's path + "
                    ".baseline.json)");
    cmd->add_flag("--json", args->json, "Print the summary as JSON");
    cmd->callback([args] { run_command([&] { run(*args); }); });
}

}  // namespace kakunin::cli
