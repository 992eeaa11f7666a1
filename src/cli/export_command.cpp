// kakunin export --dir STATE --agent ID [--from TS] [--to TS] [--log-id ID] [--postgres CONNINFO]
//                --out DIR [--no-tarball] [--mapping FILE] [--json]
// kakunin export verify DIR [--ca FILE] [--json]
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "kakunin/export.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::cli {
namespace {

using json = nlohmann::json;

struct ExportArgs {
    std::string dir, agent, from, to, log_id, postgres, out, mapping;
    bool no_tarball = false;
    bool json = false;
};

struct VerifyArgs {
    std::string dir, ca;
    bool json = false;
};

void run_export(const ExportArgs& a) {
    if (a.dir.empty()) throw Error(ErrorCategory::invalid_input, "export: --dir STATE is required");
    if (a.agent.empty())
        throw Error(ErrorCategory::invalid_input, "export: --agent ID is required");
    if (a.out.empty()) throw Error(ErrorCategory::invalid_input, "export: --out DIR is required");
    ExportOptions o;
    o.state_dir = a.dir;
    o.agent = a.agent;
    if (!a.from.empty()) o.from_ns = parse_timestamp(a.from);
    if (!a.to.empty()) o.to_ns = parse_timestamp(a.to);
    o.log_id = a.log_id;
    o.postgres = a.postgres;
    o.out_dir = a.out;
    o.write_tarball = !a.no_tarball;
    if (!a.mapping.empty()) o.regulatory_mapping_json = read_file(a.mapping);
    SystemClock clock;
    OpenedCa opened = open_ca(a.dir, clock);
    const ExportSummary s = export_package(*opened.ca, *opened.kms, o, clock);
    if (a.json) {
        json j = {{"out", s.out_dir},
                  {"tarball", s.tarball},
                  {"log_id", s.log_id},
                  {"records", s.records},
                  {"first_seq", s.first_seq},
                  {"last_seq", s.last_seq},
                  {"checkpoints", s.checkpoints},
                  {"log_records", s.log_records},
                  {"timeline_entries", s.timeline_entries},
                  {"files", s.files},
                  {"manifest_sha256", s.manifest_sha256},
                  {"notes", s.notes}};
        std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        return;
    }
    std::cout << "evidence package for agent '" << a.agent << "' written to " << s.out_dir << "\n"
              << "  log        " << s.log_id << ": " << s.records << " records";
    if (s.records > 0) std::cout << " (seq " << s.first_seq << " to " << s.last_seq << ")";
    std::cout << " of " << s.log_records << ", " << s.checkpoints << " checkpoints\n"
              << "  timeline   " << s.timeline_entries << " entries\n"
              << "  manifest   " << s.files << " files, sha256 " << s.manifest_sha256
              << ", signed by the CA key\n";
    if (!s.tarball.empty()) std::cout << "  archive    " << s.tarball << "\n";
    for (const auto& n : s.notes) std::cout << "  note       " << n << "\n";
    std::cout << "  verify     kakunin export verify " << s.out_dir << " --ca " << a.dir
              << "/ca.pem\n";
}

void run_verify(const VerifyArgs& a) {
    ExportVerifyOptions o;
    if (!a.ca.empty()) {
        const std::string text = read_file(a.ca);
        o.pinned_ca.assign(text.begin(), text.end());
    }
    const ExportVerifyResult r = verify_export_package(a.dir, o);
    if (a.json) {
        json j = {{"ok", r.ok},
                  {"message", r.message},
                  {"agent", r.agent},
                  {"log_id", r.log_id},
                  {"ca_fingerprint", r.ca_fingerprint},
                  {"ca_pinned", r.ca_pinned},
                  {"files", r.files},
                  {"records", r.records},
                  {"checkpoints", r.checkpoints},
                  {"inclusion_proofs", r.inclusion_proofs},
                  {"consistency_proofs", r.consistency_proofs},
                  {"certificates", r.certificates},
                  {"baselines", r.baselines},
                  {"ca_log_records", r.ca_log_records},
                  {"timeline_entries", r.timeline_entries},
                  {"notes", r.notes}};
        if (!r.ok) {
            j["file"] = r.file;
            j["line"] = r.line;
            j["seq"] = r.seq ? json(*r.seq) : json(nullptr);
        }
        std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    } else if (r.ok) {
        std::cout << a.dir << ": ok: agent '" << r.agent << "', log '" << r.log_id
                  << "': " << r.files << " files, " << r.records
                  << " records with inclusion proofs, " << r.checkpoints << " checkpoints, "
                  << r.consistency_proofs << " consistency proofs, " << r.certificates
                  << " certificates, " << r.baselines << " baselines, " << r.ca_log_records
                  << " CA log records\n"
                  << "  CA " << r.ca_fingerprint
                  << (r.ca_pinned ? " (the pinned CA)"
                                  : " (not pinned: give --ca with the CA certificate obtained "
                                    "independently)")
                  << "\n";
        for (const auto& n : r.notes) std::cout << "  note: " << n << "\n";
    }
    if (!r.ok)
        throw Error(ErrorCategory::invalid_input, "export verify: " + a.dir + ": " + r.message);
}

}  // namespace

void add_export_command(CLI::App& app) {
    auto args = std::make_shared<ExportArgs>();
    CLI::App* cmd = app.add_subcommand(
        "export", "Evidence package of one agent for a supervisor, verifiable offline");
    cmd->add_option("--dir", args->dir, "State directory of the CA");
    cmd->add_option("--agent", args->agent, "Registered agent id");
    cmd->add_option("--from", args->from, "Start of the period (RFC 3339 UTC or epoch ms)");
    cmd->add_option("--to", args->to, "End of the period, inclusive (RFC 3339 UTC or epoch ms)");
    cmd->add_option("--log-id", args->log_id,
                    "Log to export (default: the agent id; e.g. ID.replay for a replay log)");
    cmd->add_option("--postgres", args->postgres,
                    "Read the agent's log from this PostgreSQL database (libpq conninfo)");
    cmd->add_option("--out", args->out, "Package directory to create (DIR.tar.gz goes beside it)");
    cmd->add_option("--mapping", args->mapping,
                    "Regulatory mapping JSON replacing the built-in one (docs/export.md)")
        ->check(CLI::ExistingFile);
    cmd->add_flag("--no-tarball", args->no_tarball, "Do not write DIR.tar.gz");
    cmd->add_flag("--json", args->json, "Print the summary as JSON");

    auto vargs = std::make_shared<VerifyArgs>();
    CLI::App* verify = cmd->add_subcommand(
        "verify", "Check a package offline: signature, hashes, proofs, chains, approvals");
    verify->add_option("DIR", vargs->dir, "Package directory")->required();
    verify
        ->add_option("--ca", vargs->ca,
                     "CA certificate obtained independently: the package's must be this one")
        ->check(CLI::ExistingFile);
    verify->add_flag("--json", vargs->json, "Print the result as JSON");
    verify->callback([vargs] { run_command([&] { run_verify(*vargs); }); });

    cmd->callback([cmd, verify, args] {
        if (cmd->got_subcommand(verify)) return;
        run_command([&] { run_export(*args); });
    });
}

}  // namespace kakunin::cli
