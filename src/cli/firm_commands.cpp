// kakunin firm budget set | firm status (docs/operations.md, "Firm-wide limits"):
//   kakunin firm budget set --dir STATE --postgres CONNINFO --budget firm-daily
//       --kind daily_notional --amount 5000000 --currency EUR --by "Jane Doe" --reason "..."
//   kakunin firm status --postgres CONNINFO [--json]
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/firm_limits.hpp"
#include "kakunin/postgres_firm_limits.hpp"

namespace kakunin::cli {

namespace {

struct FirmArgs {
    std::string dir, postgres, budget, kind, amount, currency, chunk, by, reason;
    bool json = false;
};

// A decimal amount in the budget's unit: money in 10^-6 (at most 6 decimals), orders whole.
std::int64_t budget_units(const std::string& text, FirmBudgetKind kind, const char* option) {
    const auto d = try_parse_decimal(text);
    const unsigned scale = kind == FirmBudgetKind::open_orders ? 0 : firm_money_scale;
    if (!d || d->units < 0 || d->scale > scale)
        throw Error(ErrorCategory::invalid_input,
                    std::string(option) + ": \"" + text + "\" is not a non-negative " +
                        (scale == 0 ? "whole number" : "amount with at most 6 decimals"));
    __int128 v = d->units;
    for (unsigned s = d->scale; s < scale; ++s) v *= 10;
    if (v > INT64_MAX)
        throw Error(ErrorCategory::invalid_input, std::string(option) + ": too large");
    return static_cast<std::int64_t>(v);
}

std::string units_text(std::int64_t units, const std::string& kind) {
    if (kind == "open_orders") return std::to_string(units);
    std::ostringstream out;
    out << units / 1000000;
    const std::int64_t frac = units % 1000000;
    if (frac != 0) {
        std::string f = std::to_string(1000000 + frac).substr(1);
        while (!f.empty() && f.back() == '0') f.pop_back();
        out << '.' << f;
    }
    return out.str();
}

void budget_set(const FirmArgs& a) {
    if (a.by.empty()) throw Error(ErrorCategory::invalid_input, "--by: the person must be named");
    if (a.reason.empty()) throw Error(ErrorCategory::invalid_input, "--reason: say why");
    const auto kind = firm_budget_kind(a.kind);
    if (!kind)
        throw Error(
            ErrorCategory::invalid_input,
            "--kind: \"" + a.kind + "\" is not daily_notional, working_notional or open_orders");
    if (*kind == FirmBudgetKind::open_orders ? !a.currency.empty() : a.currency.empty())
        throw Error(ErrorCategory::invalid_input,
                    *kind == FirmBudgetKind::open_orders
                        ? "--currency: an open_orders budget counts orders, not money"
                        : "--currency: a money budget needs its currency (the instruments' "
                          "quote currency, e.g. EUR)");
    const std::int64_t amount = budget_units(a.amount, *kind, "--amount");
    // Default chunk: a hundredth of the budget (at least one unit).
    const std::int64_t chunk = a.chunk.empty() ? std::max<std::int64_t>(1, amount / 100)
                                               : budget_units(a.chunk, *kind, "--chunk");
    if (chunk <= 0) throw Error(ErrorCategory::invalid_input, "--chunk: must be above zero");
    SystemClock clock;
    OpenedCa state = open_ca(a.dir, clock);
    FirmBudget b{a.budget, *kind, a.currency, amount, chunk, a.by, a.reason, clock.now_ns()};
    const nlohmann::json payload = {{"budget", a.budget},
                                    {"kind", a.kind},
                                    {"currency", a.currency},
                                    {"amount", units_text(amount, a.kind)},
                                    {"chunk", units_text(chunk, a.kind)},
                                    {"by", a.by},
                                    {"reason", a.reason},
                                    {"at_ns", b.set_at_ns}};
    const std::uint64_t seq = set_firm_budget(a.postgres, b, [&] {
        return state.ca->record_event(audit_event::firm_budget_set, payload.dump());
    });
    std::cout << "budget " << a.budget << " (" << a.kind << ") set to "
              << units_text(amount, a.kind) << (a.currency.empty() ? "" : " " + a.currency)
              << " by " << a.by << " (CA log seq " << seq << "); leases of "
              << units_text(chunk, a.kind) << " at a time\n";
}

void firm_release(const FirmArgs& a) {
    if (a.by.empty()) throw Error(ErrorCategory::invalid_input, "--by: the person must be named");
    if (a.reason.empty()) throw Error(ErrorCategory::invalid_input, "--reason: say why");
    SystemClock clock;
    OpenedCa state = open_ca(a.dir, clock);
    const nlohmann::json payload = {
        {"budget", a.budget}, {"by", a.by}, {"reason", a.reason}, {"at_ns", clock.now_ns()}};
    std::uint64_t seq = 0;
    const std::size_t n = release_firm_orphans(a.postgres, a.budget, [&] {
        return seq = state.ca->record_event(audit_event::firm_orphans_released, payload.dump());
    });
    std::cout << n << " orphaned lease(s) of " << a.budget << " released by " << a.by
              << " (CA log seq " << seq << ")\n";
}

void firm_status(const FirmArgs& a) {
    nlohmann::json out = nlohmann::json::array();
    for (const FirmBudgetState& st : firm_budget_states(a.postgres)) {
        const std::string kind = to_string(st.budget.kind);
        out.push_back(
            {{"budget", st.budget.id},
             {"kind", kind},
             {"currency", st.budget.currency},
             {"amount", units_text(st.budget.amount, kind)},
             {"chunk", units_text(st.budget.chunk, kind)},
             {"spent", units_text(st.spent, kind)},
             {"leased", units_text(st.leased, kind)},
             {"free",
              units_text(std::max<std::int64_t>(0, st.budget.amount - st.spent - st.leased), kind)},
             {"day", st.day},
             {"leases", st.leases},
             {"orphaned", st.orphaned},
             {"set_by", st.budget.set_by},
             {"reason", st.budget.reason}});
    }
    if (a.json) {
        std::cout << out.dump(2) << "\n";
        return;
    }
    std::cout << std::left << std::setw(24) << "BUDGET" << std::setw(18) << "KIND" << std::setw(22)
              << "AMOUNT" << std::setw(18) << "SPENT" << std::setw(18) << "LEASED" << std::setw(8)
              << "LEASES"
              << "SET BY\n";
    for (const auto& r : out) {
        const std::string cur = r["currency"].get<std::string>();
        std::cout << std::setw(24) << r["budget"].get<std::string>() << std::setw(18)
                  << r["kind"].get<std::string>() << std::setw(22)
                  << (r["amount"].get<std::string>() + (cur.empty() ? "" : " " + cur))
                  << std::setw(18) << r["spent"].get<std::string>() << std::setw(18)
                  << r["leased"].get<std::string>() << std::setw(8)
                  << r["leases"].get<std::size_t>() << r["set_by"].get<std::string>() << "\n";
    }
}

}  // namespace

void add_firm_commands(CLI::App& app) {
    CLI::App* firm = app.add_subcommand("firm", "Desk and firm budgets shared by many Guards");
    firm->require_subcommand(1);
    {
        CLI::App* budget = firm->add_subcommand("budget", "Set a desk or firm budget");
        budget->require_subcommand(1);
        auto a = std::make_shared<FirmArgs>();
        CLI::App* cmd = budget->add_subcommand(
            "set", "A named person sets a budget (recorded in the CA log and in PostgreSQL)");
        cmd->add_option("--dir", a->dir, "State directory of the CA (its log records the step)")
            ->required();
        cmd->add_option("--postgres", a->postgres, "PostgreSQL conninfo")->required();
        cmd->add_option("--budget", a->budget, "Budget id, e.g. firm-daily")->required();
        cmd->add_option("--kind", a->kind, "daily_notional, working_notional or open_orders")
            ->required();
        cmd->add_option("--amount", a->amount, "The limit (money, or orders)")->required();
        cmd->add_option("--currency", a->currency, "Quote currency of a money budget");
        cmd->add_option("--chunk", a->chunk,
                        "How much a Guard takes at a time (default: a hundredth)");
        cmd->add_option("--by", a->by, "The person setting it")->required();
        cmd->add_option("--reason", a->reason, "Why")->required();
        cmd->callback([a] { run_command([&] { budget_set(*a); }); });
    }
    {
        auto a = std::make_shared<FirmArgs>();
        CLI::App* cmd = firm->add_subcommand(
            "release",
            "A named person releases a held budget's orphaned leases (their orders "
            "are gone)");
        cmd->add_option("--dir", a->dir, "State directory of the CA (its log records the step)")
            ->required();
        cmd->add_option("--postgres", a->postgres, "PostgreSQL conninfo")->required();
        cmd->add_option("--budget", a->budget, "Budget id")->required();
        cmd->add_option("--by", a->by, "The person releasing them")->required();
        cmd->add_option("--reason", a->reason, "Why (e.g. the orders were cancelled at the venue)")
            ->required();
        cmd->callback([a] { run_command([&] { firm_release(*a); }); });
    }
    {
        auto a = std::make_shared<FirmArgs>();
        CLI::App* cmd = firm->add_subcommand("status", "Budgets, what is spent and leased");
        cmd->add_option("--postgres", a->postgres, "PostgreSQL conninfo")->required();
        cmd->add_flag("--json", a->json, "As JSON");
        cmd->callback([a] { run_command([&] { firm_status(*a); }); });
    }
}

}  // namespace kakunin::cli
