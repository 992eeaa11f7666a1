// kakunin replay --scope scope.json --orders orders.csv [--decisions-out FILE] [--json]
#include <fstream>
#include <iomanip>
#include <iostream>

#include "cli/commands.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::cli {
namespace {

struct ReplayArgs {
    std::string scope_path, orders_path, decisions_out;
    bool json = false;
};

void print_table(const ReplaySummary& s) {
    std::cout << "orders    " << s.orders << "\n"
              << "allowed   " << s.allowed << " (with warning: " << s.warned_orders << ")\n"
              << "rejected  " << s.rejected_orders << "\n";
    if (!s.rejected.empty()) {
        std::cout << "\n  " << std::left << std::setw(30) << "reason"
                  << "orders\n";
        for (const auto& [reason, count] : s.rejected)
            std::cout << "  " << std::left << std::setw(30) << reason << count << "\n";
    }
}

void run(const ReplayArgs& a) {
    const Scope scope = load_scope_file(a.scope_path);
    const auto orders = load_orders_csv(a.orders_path);
    std::ofstream out;
    if (!a.decisions_out.empty()) {
        out.open(a.decisions_out, std::ios::binary | std::ios::trunc);
        if (!out) throw Error(ErrorCategory::io, a.decisions_out + ": cannot write");
    }
    const ReplaySummary s =
        replay_scope(scope, orders, [&](const ReplayOrder& o, const Decision& d) {
            if (out.is_open()) out << decision_json(o.line, d) << '\n';
        });
    if (out.is_open()) {
        out.flush();
        if (!out) throw Error(ErrorCategory::io, a.decisions_out + ": write failed");
    }
    if (a.json)
        std::cout << summary_json(s) << "\n";
    else
        print_table(s);
}

}  // namespace

void add_replay_command(CLI::App& app) {
    auto args = std::make_shared<ReplayArgs>();
    CLI::App* cmd =
        app.add_subcommand("replay", "What would this scope have done to these orders?");
    cmd->add_option("--scope", args->scope_path,
                    "Scope JSON (limits alone: no certificate, no baseline)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--orders", args->orders_path,
                    "Orders CSV: ts,instrument,counterparty,side,quantity,price,region")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--decisions-out", args->decisions_out, "Write one JSON line per order here");
    cmd->add_flag("--json", args->json, "Print the summary as JSON");
    cmd->callback([args] { run(*args); });
}

}  // namespace kakunin::cli
