// kakunin baseline show: prints an agent's approved behaviour baseline for the person who reviews
// it (docs/cli.md): who approved it and when, its hash, the observation period, the scoring
// policy (thresholds and weights), the notional quantiles per instrument, the regions and the
// hour-of-week activity; as a table or with --json.
//
//   kakunin baseline show (--dir STATE | --postgres CONNINFO) --agent ID [--version N] [--json]
//
// Only an approved baseline whose approval verifies (signature and hash) is shown as approved;
// anything else is refused with one line saying why.
#include <algorithm>
#include <array>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_support.hpp"
#include "cli/commands.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::cli {
namespace {

using json = nlohmann::json;

struct ShowArgs {
    std::string dir, postgres, agent;
    std::uint64_t version = 0;
    bool json = false;
};

constexpr std::array<const char*, score_component_count> component_names = {
    "size", "frequency", "concentration", "time_of_day", "origin"};
constexpr std::array<const char*, 7> day_names = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

/// 0.750 from 750000 ppm.
std::string ppm_text(std::uint64_t ppm) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(ppm / 1'000'000),
                  static_cast<unsigned long long>(ppm % 1'000'000 / 1000));
    return buf;
}

/// 13.763 from 13763 thousandths.
std::string milli_text(std::uint64_t milli) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(milli / 1000),
                  static_cast<unsigned long long>(milli % 1000));
    return buf;
}

std::string hour_text(unsigned h) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02u:00", h);
    return buf;
}

/// One day of the hour-of-week counters: orders, the first and last active hour.
struct DayActivity {
    std::uint64_t orders = 0;
    int first = -1, last = -1;  ///< hours with orders; -1 when none
};

DayActivity day_activity(const Baseline& b, unsigned day) {
    DayActivity a;
    for (unsigned h = 0; h < 24; ++h) {
        const std::uint32_t n = b.hour_of_week_orders[day * 24 + h];
        a.orders += n;
        if (n == 0) continue;
        if (a.first < 0) a.first = static_cast<int>(h);
        a.last = static_cast<int>(h);
    }
    return a;
}

json to_show_json(const Baseline& b, const BaselineApproval& a, std::uint64_t version,
                  const std::vector<std::uint64_t>& unapproved) {
    json policy = json::parse(to_json(b))["policy"];
    json instruments = json::array();
    for (const auto& i : b.instruments)
        instruments.push_back({{"instrument", i.instrument},
                               {"orders", i.orders},
                               {"notional_p50", i.notional_p50},
                               {"notional_p99", i.notional_p99}});
    json regions = json::array();
    for (const auto& r : b.regions) regions.push_back({{"region", r.region}, {"orders", r.orders}});
    json days = json::array();
    for (unsigned d = 0; d < 7; ++d) {
        const DayActivity act = day_activity(b, d);
        json j = {{"day", day_names[d]}, {"orders", act.orders}};
        j["active_from"] = act.first < 0 ? json(nullptr) : json(hour_text(act.first));
        j["active_to"] = act.last < 0 ? json(nullptr) : json(hour_text(act.last + 1));
        days.push_back(j);
    }
    return {{"agent", b.agent_id},
            {"version", version},
            {"approved", true},
            {"approval",
             {{"approver", a.approver},
              {"approved_at_ns", a.approved_at},
              {"approved_at", format_timestamp(a.approved_at)},
              {"automatic", a.automatic},
              {"algorithm", a.algorithm},
              {"signature_verifies", true}}},
            {"baseline_sha256", a.baseline_sha256},
            {"observed_from_ns", b.observed_from_ns},
            {"observed_from", format_timestamp(b.observed_from_ns)},
            {"observed_to_ns", b.observed_to_ns},
            {"observed_to", format_timestamp(b.observed_to_ns)},
            {"orders", b.orders},
            {"currency", b.currency},
            {"notional_p50", b.notional_p50},
            {"notional_p99", b.notional_p99},
            {"sketch_relative_error_ppm", b.sketch_relative_error_ppm},
            {"hourly_mean_milli", b.hourly_mean_milli},
            {"hourly_sd_milli", b.hourly_sd_milli},
            {"short_mean_milli", b.short_mean_milli},
            {"short_sd_milli", b.short_sd_milli},
            {"policy", policy},
            {"instruments", instruments},
            {"regions", regions},
            {"hour_of_week_orders", b.hour_of_week_orders},
            {"days", days},
            {"newer_unapproved_versions", unapproved}};
}

void print_table(const Baseline& b, const BaselineApproval& a, std::uint64_t version,
                 const std::vector<std::uint64_t>& unapproved) {
    std::ostringstream o;
    const ScoringPolicy& p = b.policy;
    o << "baseline version " << version << " of agent '" << b.agent_id << "' (approved)\n"
      << "  approved by   " << a.approver << " at " << format_timestamp(a.approved_at)
      << (a.automatic ? " (automatic approval by a replay, not a person)" : "") << "\n"
      << "  signature     " << a.algorithm << ", verifies; sha256 " << a.baseline_sha256 << "\n"
      << "  observed      " << format_timestamp(b.observed_from_ns) << " .. "
      << format_timestamp(b.observed_to_ns) << " (" << b.orders << " orders)\n"
      << "  notional      p50 " << b.notional_p50 << " " << b.currency << ", p99 " << b.notional_p99
      << " " << b.currency << " (all instruments; quantiles within "
      << ppm_text(b.sketch_relative_error_ppm * 100) << " %)\n"
      << "  rate          " << milli_text(b.hourly_mean_milli) << " orders per hour (sd "
      << milli_text(b.hourly_sd_milli) << "), " << milli_text(b.short_mean_milli) << " per "
      << p.short_window_minutes << " minutes (sd " << milli_text(b.short_sd_milli) << ")\n"
      << "policy\n"
      << "  thresholds    warn " << ppm_text(p.warn_ppm) << ", revoke " << ppm_text(p.revoke_ppm)
      << ", unseen " << ppm_text(p.unseen_ppm) << "\n  weights      ";
    for (std::size_t i = 0; i < component_names.size(); ++i)
        o << " " << component_names[i] << " " << ppm_text(p.weights_ppm[i]);
    o << "\n  ratios        size " << p.size_warn_ratio << "x p99, frequency "
      << p.frequency_warn_ratio << " sd, concentration " << p.concentration_warn_ratio
      << "x share (over " << p.concentration_window << " orders)\n"
      << "  incidents     investigation window " << p.investigation_window_s << " s, on escalation "
      << (p.halt_on_escalation ? "halt" : "notify") << "; observation at least "
      << p.min_observation_days << " days\n";
    o << "instruments\n";
    char line[256];
    std::snprintf(line, sizeof line, "  %-16s %10s %20s %20s\n", "INSTRUMENT", "ORDERS",
                  ("P50 " + b.currency).c_str(), ("P99 " + b.currency).c_str());
    o << line;
    for (const auto& i : b.instruments) {
        std::snprintf(line, sizeof line, "  %-16s %10llu %20s %20s\n", i.instrument.c_str(),
                      static_cast<unsigned long long>(i.orders), i.notional_p50.c_str(),
                      i.notional_p99.c_str());
        o << line;
    }
    if (b.instruments.empty()) o << "  (none traded in observation)\n";
    o << "regions\n";
    for (const auto& r : b.regions) {
        std::snprintf(line, sizeof line, "  %-16s %10llu orders\n", r.region.c_str(),
                      static_cast<unsigned long long>(r.orders));
        o << line;
    }
    if (b.regions.empty()) o << "  (none seen in observation)\n";
    std::uint32_t busiest = 0;
    for (std::uint32_t n : b.hour_of_week_orders) busiest = std::max(busiest, n);
    o << "hour of week (UTC; . no orders, 1-9 tenths of the busiest hour, " << busiest
      << " orders)\n       0     6     12    18\n";
    for (unsigned d = 0; d < 7; ++d) {
        std::string cells;
        for (unsigned h = 0; h < 24; ++h) {
            const std::uint32_t n = b.hour_of_week_orders[d * 24 + h];
            if (n == 0) {
                cells += '.';
                continue;
            }
            const std::uint64_t level = (std::uint64_t{n} * 9 + busiest - 1) / busiest;
            cells += static_cast<char>('0' + std::clamp<std::uint64_t>(level, 1, 9));
        }
        const DayActivity act = day_activity(b, d);
        o << "  " << day_names[d] << "  " << cells << "  " << act.orders << " orders";
        if (act.first >= 0)
            o << ", active " << hour_text(static_cast<unsigned>(act.first)) << "-"
              << hour_text(static_cast<unsigned>(act.last + 1));
        o << "\n";
    }
    for (std::uint64_t v : unapproved)
        o << "note: version " << v
          << " is newer and not approved; the Guard enforces only an approved baseline\n";
    std::cout << o.str();
}

void show(const ShowArgs& a) {
    validate_agent_id(a.agent);
    if (a.dir.empty() == a.postgres.empty())
        throw Error(ErrorCategory::invalid_input, "give either --dir STATE or --postgres CONNINFO");
    std::unique_ptr<BaselineStore> store;
    std::string where;
    if (!a.dir.empty()) {
        require_ca_dir(a.dir, false);
        store = std::make_unique<FileBaselineStore>(a.dir);
        where = a.dir;
    } else {
        store = std::make_unique<PostgresBaselineStore>(a.postgres);
        where = "the PostgreSQL store";
    }
    const auto latest = store->get_baseline(a.agent, 0);
    if (!latest)
        throw Error(ErrorCategory::not_found, "agent '" + a.agent + "' has no baseline in " +
                                                  where +
                                                  " (approve one with 'kakunin baseline approve')");
    std::optional<StoredBaseline> chosen;
    std::optional<BaselineApproval> approval;
    std::vector<std::uint64_t> unapproved;
    if (a.version != 0) {
        chosen = store->get_baseline(a.agent, a.version);
        if (!chosen)
            throw Error(ErrorCategory::not_found,
                        "agent '" + a.agent + "' has no baseline version " +
                            std::to_string(a.version) + " (the latest is " +
                            std::to_string(latest->version) + ")");
        approval = store->get_approval(a.agent, a.version);
        if (!approval)
            throw Error(ErrorCategory::invalid_state,
                        "baseline version " + std::to_string(a.version) + " of agent '" + a.agent +
                            "' is not approved: nobody signed it, so no Guard enforces it "
                            "('kakunin baseline approve' first)");
    } else {
        for (std::uint64_t v = latest->version; v >= 1 && !approval; --v) {
            approval = store->get_approval(a.agent, v);
            if (approval)
                chosen = store->get_baseline(a.agent, v);
            else
                unapproved.push_back(v);
        }
        if (!approval || !chosen)
            throw Error(ErrorCategory::invalid_state,
                        "agent '" + a.agent + "' has no approved baseline in " + where + " (" +
                            std::to_string(latest->version) +
                            " version(s), none approved: 'kakunin baseline approve' first)");
        std::reverse(unapproved.begin(), unapproved.end());
    }
    const std::string what = "baseline version " + std::to_string(chosen->version);
    Baseline b;
    try {
        b = parse_baseline_json(chosen->json);
    } catch (const Error& e) {
        throw Error(ErrorCategory::invalid_input, what + ": " + e.what());
    }
    if (b.agent_id != a.agent)
        throw Error(ErrorCategory::invalid_input,
                    what + " is agent '" + b.agent_id + "'s, not '" + a.agent + "'s");
    if (approval->version != chosen->version)
        throw Error(ErrorCategory::invalid_input,
                    what + ": its approval is for version " + std::to_string(approval->version));
    const std::string problem = check_baseline_approval(*approval, b);
    if (!problem.empty())
        throw Error(ErrorCategory::invalid_input, what + ": the approval does not verify (" +
                                                      problem + "): not shown as approved");
    if (a.json)
        std::cout << to_show_json(b, *approval, chosen->version, unapproved).dump() << "\n";
    else
        print_table(b, *approval, chosen->version, unapproved);
}

}  // namespace

void add_baseline_show_command(CLI::App& app) {
    CLI::App* baseline = app.get_subcommand("baseline");
    auto a = std::make_shared<ShowArgs>();
    CLI::App* cmd = baseline->add_subcommand(
        "show", "Print an approved baseline: approval, policy, quantiles, regions, hours");
    cmd->add_option("--dir", a->dir, "State directory (kakunin ca init)");
    cmd->add_option("--postgres", a->postgres, "libpq conninfo of the baseline store");
    cmd->add_option("--agent", a->agent, "Agent id")->required();
    cmd->add_option("--version", a->version, "Baseline version (default: the latest approved)")
        ->check(CLI::PositiveNumber);
    cmd->add_flag("--json", a->json, "Print as JSON");
    cmd->callback([a] { run_command([&] { show(*a); }); });
}

}  // namespace kakunin::cli
