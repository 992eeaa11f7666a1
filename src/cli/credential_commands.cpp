// Renewal of every active agent's certificate in one command, published for running Guards:
//   kakunin cert renew --dir STATE (--all | --agent ID ...) [--validity 24h]
//                      [--postgres CONNINFO] [--out-dir DIR]
// An agent is active when its newest certificate is not revoked; its renewal certifies the same
// public key (the agent's key may live on its host only, not in the CA's KMS) under its
// approved scope. A line per agent; the exit status is non-zero, naming them, if any failed.
#include <sys/stat.h>

#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "cli/credential_commands.hpp"
#include "io/durable_file.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/postgres_credentials.hpp"
#include "kakunin/replay.hpp"

#include <nlohmann/json.hpp>

namespace kakunin::cli {

std::string publication_line(const PublishedCredential& published) {
    return std::string(published.already_published ? "already published" : "published") +
           " to PostgreSQL as credential #" + std::to_string(published.seq);
}

namespace {

struct RenewArgs {
    std::string dir, validity, postgres, out_dir;
    std::vector<std::string> agents;
    bool all = false;
};

/// Each agent's newest certificate (the last issued), by agent id.
std::map<std::string, AgentCertificate> newest_certificates(const LocalCa& ca) {
    std::map<std::string, AgentCertificate> newest;
    for (const AgentCertificate& c : ca.issued_certificates()) {
        auto it = newest.find(c.agent_id());
        if (it == newest.end())
            newest.emplace(c.agent_id(), c);
        else
            it->second = c;
    }
    return newest;
}

/// One agent's renewal; returns its line. Throws kakunin::Error naming what failed.
std::string renew_one(LocalCa& ca, const AgentCertificate& current, std::chrono::seconds validity,
                      PostgresCredentialPublisher* publisher, const std::string& out_dir) {
    const std::string agent = current.agent_id();
    std::optional<io::DurableFile> out;
    if (!out_dir.empty()) {
        // Made ready first: a renewal that cannot be written is not issued.
        const std::string path = out_dir + "/" + agent + ".pem";
        require_output_file(path);
        out.emplace(io::DurableFile::prepare(path));
    }
    const AgentCertificate renewed = ca.issue_for_agent(agent, current.public_key(), validity);
    std::string line =
        "renewed: serial " + renewed.serial() + " valid " + format_timestamp(renewed.not_before()) +
        " .. " + format_timestamp(renewed.not_after()) + " (replaces " + current.serial() + ")";
    const std::string kept =
        "; it is issued, recorded in the CA log and kept as certs/" + renewed.serial() + ".pem";
    if (out) {
        try {
            out->commit(renewed.pem());
        } catch (const Error& e) {
            throw Error(e.category(), "serial " + renewed.serial() + " not written to " +
                                          out->path() + " (" + e.what() + ")" + kept);
        }
        line += ", written to " + out->path();
    }
    if (publisher) {
        try {
            line += ", " + publication_line(publisher->publish(renewed));
        } catch (const Error& e) {
            throw Error(e.category(), "serial " + renewed.serial() +
                                          " not published to PostgreSQL (" + e.what() + ")" + kept);
        }
    }
    return line;
}

void cert_renew(const RenewArgs& a) {
    if (a.all == !a.agents.empty())
        throw Error(ErrorCategory::invalid_input,
                    "cert renew: give --all (every active agent) or --agent ID, not both");
    if (a.postgres.empty() && a.out_dir.empty())
        throw Error(ErrorCategory::invalid_input,
                    "cert renew: the renewals would reach no Guard: give --postgres CONNINFO "
                    "(running Guards take them up) and/or --out-dir DIR");
    const std::chrono::seconds validity =
        a.validity.empty() ? std::chrono::seconds{0} : parse_duration(a.validity, "--validity");
    if (!a.out_dir.empty()) {
        struct stat st;
        if (::stat(a.out_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            throw Error(ErrorCategory::invalid_input,
                        "--out-dir: " + a.out_dir + " is not a directory");
    }
    // Connected before anything is issued: a database that cannot be reached renews nothing.
    std::unique_ptr<PostgresCredentialPublisher> publisher;
    if (!a.postgres.empty()) publisher = std::make_unique<PostgresCredentialPublisher>(a.postgres);
    SystemClock clock;
    OpenedCa opened = open_ca(a.dir, clock);
    const std::map<std::string, AgentCertificate> newest = newest_certificates(*opened.ca);

    std::vector<std::string> agents = a.agents;
    if (a.all)
        for (const auto& [agent, cert] : newest) agents.push_back(agent);
    if (agents.empty()) {
        std::cout << "no agent has a certificate to renew in " << a.dir << "\n";
        return;
    }
    std::vector<std::string> failed;
    std::size_t renewed = 0, skipped = 0;
    for (const std::string& agent : agents) {
        std::string line;
        try {
            validate_agent_id(agent);
            if (!opened.ca->registration(agent))
                throw Error(ErrorCategory::not_found, "not registered in " + a.dir);
            const auto it = newest.find(agent);
            if (it == newest.end())
                throw Error(ErrorCategory::not_found,
                            "no certificate to renew (issue the first with 'kakunin cert issue')");
            const AgentCertificate& current = it->second;
            if (opened.ca->is_revoked(current.serial())) {
                // Not active: a revoked agent is renewed by nobody (a new key, cert issue).
                if (a.all) {
                    std::cout << agent << ": skipped: its certificate " << current.serial()
                              << " is revoked\n";
                    ++skipped;
                    continue;
                }
                throw Error(ErrorCategory::invalid_state,
                            "its certificate " + current.serial() +
                                " is revoked: a revoked agent is not renewed (issue for a new "
                                "key with 'kakunin cert issue')");
            }
            line = renew_one(*opened.ca, current, validity, publisher.get(), a.out_dir);
            ++renewed;
        } catch (const std::exception& e) {
            failed.push_back(agent);
            line = std::string("FAILED: ") + one_line(e.what());
        }
        std::cout << agent << ": " << line << "\n";
    }
    std::cout.flush();
    if (!failed.empty()) {
        std::string names;
        for (const std::string& f : failed) names += (names.empty() ? "" : ", ") + f;
        throw Error(ErrorCategory::invalid_state, "cert renew: " + std::to_string(failed.size()) +
                                                      " of " + std::to_string(agents.size()) +
                                                      " agents failed: " + names + " (" +
                                                      std::to_string(renewed) + " renewed, " +
                                                      std::to_string(skipped) + " skipped)");
    }
}

}  // namespace

namespace {

struct ListArgs {
    std::string dir, agent;
    bool json = false;
};

// Every certificate the CA issued, oldest first, with whether it is revoked and whether it is
// the agent's newest (the one `cert renew` renews).
void cert_list(const ListArgs& a) {
    SystemClock clock;
    OpenedCa state = open_ca(a.dir, clock);
    std::map<std::string, const Revocation*> revoked;
    const std::vector<Revocation> revocations = state.ca->revocations();
    for (const Revocation& r : revocations) revoked[r.serial] = &r;
    const auto newest = newest_certificates(*state.ca);
    nlohmann::json out = nlohmann::json::array();
    for (const AgentCertificate& c : state.ca->issued_certificates(a.agent)) {
        const auto r = revoked.find(c.serial());
        const bool is_newest = newest.at(c.agent_id()).serial() == c.serial();
        const TimeNs now = clock.now_ns();
        const char* status = r != revoked.end()     ? "revoked"
                             : c.not_after() < now  ? "expired"
                             : c.not_before() > now ? "not_yet_valid"
                                                    : "valid";
        nlohmann::json j = {{"agent_id", c.agent_id()},
                            {"serial", c.serial()},
                            {"fingerprint", c.fingerprint()},
                            {"not_before", format_timestamp(c.not_before())},
                            {"not_after", format_timestamp(c.not_after())},
                            {"status", status},
                            {"newest", is_newest}};
        if (r != revoked.end()) {
            j["revoked_at"] = format_timestamp(r->second->revoked_at);
            j["revocation_reason"] = r->second->reason;
        }
        out.push_back(std::move(j));
    }
    if (a.json) {
        std::cout << nlohmann::json{{"certificates", out}}.dump(2) << "\n";
        return;
    }
    std::cout << std::left << std::setw(22) << "AGENT" << std::setw(42) << "SERIAL" << std::setw(24)
              << "NOT AFTER"
              << "STATUS\n";
    for (const auto& j : out)
        std::cout << std::setw(22) << j["agent_id"].get<std::string>() << std::setw(42)
                  << j["serial"].get<std::string>() << std::setw(24)
                  << j["not_after"].get<std::string>() << j["status"].get<std::string>()
                  << (j["newest"].get<bool>() ? "" : " (superseded)") << "\n";
}

}  // namespace

void add_credential_commands(CLI::App& app) {
    CLI::App* cert = app.get_subcommand("cert");
    {
        auto a = std::make_shared<ListArgs>();
        CLI::App* cmd = cert->add_subcommand(
            "list", "Every certificate the CA issued: agent, serial, validity, revoked or not");
        cmd->add_option("--dir", a->dir, "State directory of the CA")->required();
        cmd->add_option("--agent", a->agent, "Only this agent's");
        cmd->add_flag("--json", a->json, "As JSON: {\"certificates\": [...]}");
        cmd->callback([a] { run_command([&] { cert_list(*a); }); });
    }
    auto args = std::make_shared<RenewArgs>();
    CLI::App* cmd = cert->add_subcommand(
        "renew",
        "Renew active agents' certificates for the same key under their approved scope, and "
        "publish them for running Guards");
    cmd->add_option("--dir", args->dir, "State directory of the CA")->required();
    cmd->add_flag("--all", args->all, "Every agent whose newest certificate is not revoked");
    cmd->add_option("--agent", args->agents, "This agent (repeatable) instead of --all");
    cmd->add_option("--validity", args->validity, "Lifetime: 90s, 30m, 24h (default), 7d");
    cmd->add_option("--postgres", args->postgres,
                    "Publish each renewal to this database (libpq conninfo): running Guards "
                    "rotate to it");
    cmd->add_option("--out-dir", args->out_dir, "Also write each renewal to DIR/ID.pem");
    cmd->callback([args] { run_command([&] { cert_renew(*args); }); });
}

}  // namespace kakunin::cli
