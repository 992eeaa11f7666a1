// The kakunin command line: each command family registers itself on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

namespace kakunin::cli {

/// `kakunin replay ...` (DESIGN §6).
void add_replay_command(CLI::App& app);

/// `kakunin ca init`, `agent register`, `agent keygen`, `scope approve`, `cert
/// issue|inspect|verify|revoke` and `crl` (DESIGN §6).
void add_ca_commands(CLI::App& app);

/// `kakunin audit verify` (DESIGN §6).
void add_audit_commands(CLI::App& app);

/// `kakunin export` and `kakunin export verify` (DESIGN §6, docs/export.md).
void add_export_command(CLI::App& app);

/// `kakunin baseline approve`, `incident ack|resolve|review`, `agent reenable` (docs/behaviour.md).
/// Registers `agent reenable` under the `agent` command: call after add_ca_commands().
void add_behaviour_commands(CLI::App& app);

/// `kakunin baseline show` (docs/cli.md). Registers under `baseline`: call after
/// add_behaviour_commands().
void add_baseline_show_command(CLI::App& app);

/// `kakunin firm budget set` and `firm status` (docs/operations.md).
void add_firm_commands(CLI::App& app);

/// `kakunin cert renew` (docs/cli.md). Registers under `cert`: call after add_ca_commands().
void add_credential_commands(CLI::App& app);

/// `kakunin fleet halt|resume|status`, `agent list`, `incident list` (docs/cli.md). Registers
/// under `agent` and `incident`: call after add_behaviour_commands().
void add_fleet_commands(CLI::App& app);

}  // namespace kakunin::cli
