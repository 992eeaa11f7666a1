// kakunin — the command-line program (DESIGN §6). Every command exits 0 on success and non-zero
// with a one-line reason on stderr otherwise.
#include <iostream>

#include "cli/commands.hpp"
#include "kakunin/error.hpp"
#include "kakunin/version.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Kakunin: authority, behaviour and audit for trading agents"};
    app.set_version_flag("--version", kakunin::version_string);
    app.require_subcommand(1);
    kakunin::cli::add_ca_commands(app);
    kakunin::cli::add_credential_commands(app);
    kakunin::cli::add_replay_command(app);
    kakunin::cli::add_audit_commands(app);
    kakunin::cli::add_behaviour_commands(app);
    kakunin::cli::add_baseline_show_command(app);
    kakunin::cli::add_export_command(app);
    kakunin::cli::add_firm_commands(app);
    kakunin::cli::add_fleet_commands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const kakunin::Error& e) {
        std::cerr << "kakunin: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "kakunin: unexpected error: " << e.what() << "\n";
        return 2;
    }
    return 0;
}
