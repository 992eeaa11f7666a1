// bench/evaluate.hpp — anomaly scoring evaluated on a real bot (issue 5, "Replay and
// evaluation on a real bot"), shared by bench/evaluate.cpp (kakunin_evaluate, run by
// scripts/evaluate) and tests/test_evaluation.cpp.
//
//   kakunin::evaluation::EvaluationOptions o;
//   o.data_dir = "../shared/data/hummingbot-edg-mm";
//   o.cli = "build/kakunin";
//   auto r = kakunin::evaluation::evaluate(o);      // throws kakunin::Error on setup failures
//   std::cout << kakunin::evaluation::markdown(r);  // and figures_json(r)
//
// The real `kakunin` program does the work, as an integrator would run it: a throwaway state
// directory (ca init, agent register, scope approve), then `kakunin replay --observe-until
// --auto-approve-baseline --json --decisions-out` over the converted orders: the first
// `learn_days` are observed and become the baseline, the rest is enforced. One run on the bot's
// orders as they were (false alarms), then one run per injected anomaly.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hummingbot_orders.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/replay.hpp"

extern char** environ;

namespace kakunin::evaluation {

inline constexpr TimeNs minute_ns = 60'000'000'000LL;
inline constexpr TimeNs hour_ns = 60 * minute_ns;
inline constexpr TimeNs day_ns = 24 * hour_ns;

struct EvaluationOptions {
    std::string data_dir = "../shared/data/hummingbot-edg-mm";
    std::string cli;       ///< the kakunin program
    std::string work_dir;  ///< empty: a fresh temporary directory, removed afterwards
    /// Orders before this are left out: the EDG-USDT run of 1-4 Nov 2022 is followed by ten days
    /// without a single fill, which would teach the baseline a silence the bot never kept again.
    std::string from = "2022-11-14T00:00:00Z";
    unsigned learn_days = 14;     ///< observation from the first order kept
    std::ostream* log = nullptr;  ///< progress lines, if wanted
};

/// Statistics of one score component over the enforced orders of the normal run.
struct ComponentStats {
    std::string name;
    std::uint32_t p50_ppm = 0, p99_ppm = 0, max_ppm = 0;
    std::uint64_t at_or_above_half = 0;  ///< orders with this component >= 0.5
    std::uint64_t at_or_above_warn = 0;  ///< ... >= the warning level
    std::uint64_t top_of_warned = 0;     ///< anomalies (warn, revocation) it was the largest in
};

struct RunFigures {
    std::uint64_t orders = 0, enforced_orders = 0, warned_orders = 0, warnings = 0, revocations = 0,
                  rejected_orders = 0;
    std::uint32_t max_score_ppm = 0;
    std::string first_revocation;  ///< RFC 3339, empty if none
};

struct NormalResult {
    TimeNs replay_from_ns = 0, replay_to_ns = 0;
    double days = 0;                ///< length of the enforced span
    std::uint64_t active_days = 0;  ///< UTC days in it with at least one order
    RunFigures run;
    double warnings_per_day = 0, warned_orders_per_day = 0;
    std::vector<ComponentStats> components;
    bool goal_met = false;  ///< no revocation, at most one warning incident per day
};

struct AnomalyResult {
    std::string id, name, injected;  ///< injected: what exactly was added
    bool applicable = true;          ///< false: the data hold no such case (note says why)
    bool evaluated = true;  ///< false: there was no normal time to inject at (note says why)
    std::string note;       ///< why not applicable, or what else to know
    TimeNs at_ns = 0;       ///< the injected order (the burst's first)
    std::size_t rows = 0;
    std::string verdict;  ///< at the injected order, or at the next if that one was allowed
    std::uint32_t score_ppm = 0;
    std::array<std::uint32_t, score_component_count> components_ppm{};
    std::optional<std::int64_t> delay_ms;         ///< burst: first warning or rejection after start
    std::uint64_t warnings = 0, revocations = 0;  ///< in the whole run
    bool caught = false;
};

struct BaselineFacts {
    TimeNs observed_from_ns = 0, observed_to_ns = 0;
    std::uint64_t orders = 0;
    double hourly_mean = 0, hourly_sd = 0, short_mean = 0, short_sd = 0;
    std::map<std::string, std::pair<std::uint64_t, std::string>> instruments;  ///< orders, p99
    std::string overall_p99;
    unsigned active_hours_of_week = 0;
    unsigned least_active_hour = 0;
    std::uint32_t least_active_orders = 0;
    std::string sha256;
};

struct EvaluationResult {
    std::string data_dir;
    std::uint64_t fills = 0, orders_kept = 0;
    std::vector<PairMapping> mappings;
    BaselineFacts baseline;
    NormalResult normal;
    std::vector<AnomalyResult> anomalies;
    bool goals_met = false;
};

namespace detail {

inline void say(const EvaluationOptions& o, const std::string& line) {
    if (o.log != nullptr) *o.log << line << std::endl;
}

inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw Error(ErrorCategory::io, path + ": cannot write");
}

/// Runs argv[0] (no shell) with stdout and stderr into files and the passphrase of the
/// throwaway state's software KMS in its environment. Returns the exit status (-1: abnormal).
inline int run_program(const std::vector<std::string>& argv, const std::string& out_path,
                       const std::string& err_path) {
    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e)
        if (std::string_view(*e).rfind("KAKUNIN_KMS_PASSPHRASE=", 0) != 0)
            env_text.emplace_back(*e);
    env_text.emplace_back("KAKUNIN_KMS_PASSPHRASE=evaluation state, thrown away afterwards");
    std::vector<char*> envp, args;
    for (auto& s : env_text) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_copy = argv;
    for (auto& s : argv_copy) args.push_back(s.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw Error(ErrorCategory::io, "cannot run " + argv[0] + ": " + std::strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) throw Error(ErrorCategory::io, "waitpid failed");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct Cli {
    std::string program, dir;
    int calls = 0;

    /// Runs `kakunin args...` in the work directory; throws with its stderr on failure.
    std::string operator()(const std::vector<std::string>& args) {
        std::vector<std::string> argv{program};
        argv.insert(argv.end(), args.begin(), args.end());
        const std::string out = dir + "/cli-" + std::to_string(++calls) + ".out";
        const std::string err = dir + "/cli-" + std::to_string(calls) + ".err";
        const int code = run_program(argv, out, err);
        if (code != 0) {
            std::string line;
            for (const auto& a : args) line += " " + a;
            throw Error(
                ErrorCategory::invalid_state,
                "kakunin" + line + " failed (exit " + std::to_string(code) + "): " + slurp(err));
        }
        return slurp(out);
    }
};

inline std::string day_hour_name(unsigned how) {
    static const char* days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s %02u:00-%02u:59 UTC", days[how / 24 % 7], how % 24,
                  how % 24);
    return buf;
}

inline std::uint32_t ppm_quantile(std::vector<std::uint32_t> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    auto rank = static_cast<std::size_t>(std::ceil(q * double(v.size())));
    if (rank == 0) rank = 1;
    return v[rank - 1];
}

struct DecisionLine {
    std::size_t line = 0;
    TimeNs ts_ns = 0;
    std::string decision;
    bool anomaly = false;  ///< warned, or rejected for the anomaly score (not for a halt after it)
    std::uint32_t score_ppm = 0;
    std::array<std::uint32_t, score_component_count> components{};
};

inline std::vector<DecisionLine> read_decisions(const std::string& path) {
    std::vector<DecisionLine> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line);
        DecisionLine d;
        d.line = j.at("line").get<std::size_t>();
        d.ts_ns = j.at("ts_ns").get<TimeNs>();
        d.decision = j.at("decision").get<std::string>();
        d.anomaly = d.decision == "warn";
        for (const auto& reason : j.at("reasons"))
            if (reason == "anomaly_revocation") d.anomaly = true;
        d.score_ppm = j.at("score_ppm").get<std::uint32_t>();
        for (std::size_t i = 0; i < score_component_count; ++i)
            d.components[i] = j.at("components_ppm").at(component_name(i)).get<std::uint32_t>();
        out.push_back(d);
    }
    return out;
}

struct Replay {
    nlohmann::json summary;
    std::vector<DecisionLine> decisions;  ///< in file order; decisions[i] is CSV line i + 2
};

inline RunFigures figures_of(const Replay& r, TimeNs enforced_from) {
    RunFigures f;
    const auto& s = r.summary;
    f.orders = s.at("orders").get<std::uint64_t>();
    f.warned_orders = s.at("warned_orders").get<std::uint64_t>();
    f.warnings = s.at("warnings").get<std::uint64_t>();
    f.revocations = s.at("revocations").get<std::uint64_t>();
    f.rejected_orders = s.at("rejected_orders").get<std::uint64_t>();
    f.max_score_ppm = s.at("max_score_ppm").get<std::uint32_t>();
    if (!s.at("first_revocation_ts_ns").is_null())
        f.first_revocation = format_timestamp(s.at("first_revocation_ts_ns").get<TimeNs>());
    for (const auto& d : r.decisions)
        if (d.ts_ns >= enforced_from) ++f.enforced_orders;
    return f;
}

/// A row like `like` (instrument, side, price) with a notional of at least `notional` EUR.
inline OrderRow sized_like(const OrderRow& like, double notional) {
    OrderRow r = like;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4f",
                  std::ceil(notional / like.price.to_double() * 1e4) / 1e4);
    r.quantity = parse_decimal(buf);
    // The scorer compares doubles: make sure of ">=" there, whatever the rounding above did.
    while (r.quantity.to_double() * r.price.to_double() < notional) r.quantity.units += 1;
    return r;
}

}  // namespace detail

/// Runs the evaluation. Throws kakunin::Error when the data, the program or a replay fails; the
/// result says whether the goals are met (it does not throw for that).
inline EvaluationResult evaluate(const EvaluationOptions& opt) {
    namespace fs = std::filesystem;
    using detail::say;
    if (opt.cli.empty() || !fs::exists(opt.cli))
        throw Error(ErrorCategory::not_found,
                    "the kakunin program is needed (" +
                        (opt.cli.empty() ? std::string("none given") : opt.cli + " is missing") +
                        "): build with -DKAKUNIN_BUILD_CLI=ON");
    EvaluationResult result;
    result.data_dir = opt.data_dir;
    result.mappings = default_mappings();

    // A work directory of our own, removed at the end unless the caller gave one.
    std::string work = opt.work_dir;
    const bool temporary = work.empty();
    if (temporary) {
        std::string t = (fs::temp_directory_path() / "kakunin-evaluate-XXXXXX").string();
        if (::mkdtemp(t.data()) == nullptr)
            throw Error(ErrorCategory::io, "cannot create a temporary directory");
        work = t;
    } else {
        fs::create_directories(work);
    }
    struct Cleanup {
        std::string path;
        bool on;
        ~Cleanup() {
            std::error_code ec;
            if (on) fs::remove_all(path, ec);
        }
    } cleanup{work, temporary};

    // 1. The bot's orders.
    say(opt, "reading " + opt.data_dir);
    const auto fills = read_hummingbot_dir(opt.data_dir);
    result.fills = fills.size();
    const TimeNs from = parse_timestamp(opt.from);
    std::vector<OrderRow> orders;
    for (auto& o : orders_from_fills(fills, result.mappings))
        if (o.ts_ns >= from) orders.push_back(std::move(o));
    if (orders.size() < 100)
        throw Error(ErrorCategory::invalid_input,
                    opt.data_dir + ": fewer than 100 orders from " + opt.from);
    result.orders_kept = orders.size();
    const TimeNs observe_until = orders.front().ts_ns + TimeNs(opt.learn_days) * day_ns;
    if (observe_until >= orders.back().ts_ns)
        throw Error(ErrorCategory::invalid_input, "nothing left to replay after " +
                                                      std::to_string(opt.learn_days) +
                                                      " days of observation");

    // 2. A throwaway CA, the agent, and a scope that allows everything the bot did plus one
    //    instrument and one region it never used, around the clock.
    detail::Cli cli{opt.cli, work};
    std::set<std::string> instruments;
    for (const auto& o : orders) instruments.insert(o.instrument);
    const std::string extra_instrument = "ETH_EUR", extra_region = "eu-central-1";
    instruments.insert(extra_instrument);
    nlohmann::json scope = {
        {"version", 1},
        {"max_transaction", {{"currency", "EUR"}, {"amount", "1000000.00"}}},
        {"instruments", std::vector<std::string>(instruments.begin(), instruments.end())},
        {"counterparties", {default_counterparty}},
        {"trading_hours",
         {{{"days", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}},
           {"from", "00:00"},
           {"to", "24:00"}}}},
        {"regions", {default_region, extra_region}}};
    detail::write_text(work + "/scope.json", scope.dump(2) + "\n");
    const std::string state = work + "/state", agent = "edg-mm-bot";
    say(opt, "state directory " + state);
    cli({"ca", "init", "--dir", state});
    cli({"agent", "register", "--dir", state, "--agent", agent, "--owner", "Evaluation",
         "--purpose", "Hummingbot pure market making, EDG on KuCoin (replayed)"});
    cli({"scope", "approve", "--dir", state, "--agent", agent, "--scope", work + "/scope.json",
         "--approver", "Evaluation (throwaway state)"});

    int runs = 0;
    auto replay = [&](const std::vector<OrderRow>& rows, const std::string& name) {
        const std::string base = work + "/" + std::to_string(++runs) + "-" + name;
        detail::write_text(base + ".csv", orders_csv(rows));
        say(opt, "replay " + name + " (" + std::to_string(rows.size()) + " orders)");
        detail::Replay r;
        r.summary = nlohmann::json::parse(
            cli({"replay", "--dir", state, "--agent", agent, "--orders", base + ".csv",
                 "--observe-until", format_timestamp(observe_until), "--auto-approve-baseline",
                 "--json", "--decisions-out", base + ".decisions.jsonl", "--audit-out",
                 base + ".audit.jsonl", "--baseline-out", base + ".baseline.json"}));
        r.decisions = detail::read_decisions(base + ".decisions.jsonl");
        if (r.decisions.size() != rows.size())
            throw Error(ErrorCategory::invalid_state,
                        name + ": " + std::to_string(r.decisions.size()) + " decisions for " +
                            std::to_string(rows.size()) + " orders");
        return r;
    };

    // 3. The bot as it was: false alarms.
    const detail::Replay normal = replay(orders, "normal");
    const Baseline baseline = parse_baseline_json(
        detail::slurp(normal.summary.at("baseline").at("path").get<std::string>()));
    {
        BaselineFacts& b = result.baseline;
        b.observed_from_ns = baseline.observed_from_ns;
        b.observed_to_ns = baseline.observed_to_ns;
        b.orders = baseline.orders;
        b.hourly_mean = double(baseline.hourly_mean_milli) / 1000;
        b.hourly_sd = double(baseline.hourly_sd_milli) / 1000;
        b.short_mean = double(baseline.short_mean_milli) / 1000;
        b.short_sd = double(baseline.short_sd_milli) / 1000;
        for (const auto& i : baseline.instruments)
            b.instruments[i.instrument] = {i.orders, i.notional_p99};
        b.overall_p99 = baseline.notional_p99;
        b.least_active_orders = UINT32_MAX;
        for (unsigned h = 0; h < 168; ++h) {
            if (baseline.hour_of_week_orders[h] != 0) ++b.active_hours_of_week;
            if (baseline.hour_of_week_orders[h] < b.least_active_orders) {
                b.least_active_orders = baseline.hour_of_week_orders[h];
                b.least_active_hour = h;
            }
        }
        b.sha256 = baseline_sha256_hex(baseline);
    }
    NormalResult& n = result.normal;
    n.replay_from_ns = observe_until;
    n.replay_to_ns = orders.back().ts_ns;
    n.days = double(n.replay_to_ns - n.replay_from_ns) / double(day_ns);
    n.run = detail::figures_of(normal, observe_until);
    std::set<std::int64_t> days;
    for (const auto& o : orders)
        if (o.ts_ns >= observe_until) days.insert(floor_div(o.ts_ns, day_ns));
    n.active_days = days.size();
    n.warnings_per_day = double(n.run.warnings) / n.days;
    n.warned_orders_per_day = double(n.run.warned_orders) / n.days;
    n.goal_met = n.run.revocations == 0 && n.warnings_per_day <= 1.0;
    {
        const double warn = double(baseline.policy.warn_ppm);
        std::array<std::vector<std::uint32_t>, score_component_count> values;
        n.components.resize(score_component_count);
        for (std::size_t c = 0; c < score_component_count; ++c)
            n.components[c].name = component_name(c);
        for (const auto& d : normal.decisions) {
            if (d.ts_ns < observe_until) continue;
            std::size_t top = 0;
            for (std::size_t c = 0; c < score_component_count; ++c) {
                values[c].push_back(d.components[c]);
                if (d.components[c] >= 500'000) ++n.components[c].at_or_above_half;
                if (d.components[c] >= warn) ++n.components[c].at_or_above_warn;
                if (d.components[c] > d.components[top]) top = c;
            }
            if (d.anomaly) ++n.components[top].top_of_warned;
        }
        for (std::size_t c = 0; c < score_component_count; ++c) {
            n.components[c].p50_ppm = detail::ppm_quantile(values[c], 0.50);
            n.components[c].p99_ppm = detail::ppm_quantile(values[c], 0.99);
            n.components[c].max_ppm = detail::ppm_quantile(values[c], 1.0);
        }
    }
    say(opt, "normal: " + std::to_string(n.run.warnings) + " warning incident(s), " +
                 std::to_string(n.run.revocations) + " revocation(s) in " + std::to_string(n.days) +
                 " days");

    // 4. Anomalies, each injected into its own copy of the orders. The anchor is an order of
    //    the enforced span at a normal time: in an hour of the week at least as active as the
    //    median one in observation, nothing raised within an hour either side in the normal
    //    run, as close as possible to the middle of the span.
    std::vector<std::uint32_t> how(baseline.hour_of_week_orders.begin(),
                                   baseline.hour_of_week_orders.end());
    const std::uint32_t median_hour = detail::ppm_quantile(how, 0.5);
    std::vector<TimeNs> raised;
    for (const auto& d : normal.decisions)
        if (d.decision != "allow") raised.push_back(d.ts_ns);
    const TimeNs middle = observe_until + (orders.back().ts_ns - observe_until) / 2;
    std::optional<std::size_t> anchor;
    for (std::size_t i = 0; i < orders.size(); ++i) {
        const TimeNs t = orders[i].ts_ns;
        if (t < observe_until + day_ns || t > orders.back().ts_ns - day_ns) continue;
        if (baseline.hour_of_week_orders[minute_of_week(t) / 60] < median_hour) continue;
        const auto near = std::lower_bound(raised.begin(), raised.end(), t - hour_ns);
        if (near != raised.end() && *near <= t + hour_ns) continue;
        if (!anchor || std::llabs(t - middle) < std::llabs(orders[*anchor].ts_ns - middle))
            anchor = i;
    }
    if (!anchor) {
        // Nothing normal left to compare with (e.g. the normal run was revoked): say so.
        std::string why =
            "no normal time to inject at: the normal run raised a warning or "
            "rejection within an hour of every candidate order";
        if (!n.run.first_revocation.empty())
            why += " (it was revoked at " + n.run.first_revocation + ")";
        for (const char* id : {"size", "instrument", "region", "hour", "burst"}) {
            AnomalyResult a;
            a.id = id;
            a.name = id;
            a.evaluated = false;
            a.note = why;
            result.anomalies.push_back(a);
        }
        result.goals_met = false;
        return result;
    }
    const OrderRow& like = orders[*anchor];
    const TimeNs at = like.ts_ns + 1'000'000'000;  // one second after the anchor order
    say(opt, "anchor: " + like.client_order_id + " at " + format_timestamp(like.ts_ns));

    auto with = [&](std::vector<OrderRow> extra) {
        std::vector<OrderRow> rows = orders;
        rows.insert(rows.end(), extra.begin(), extra.end());
        std::stable_sort(rows.begin(), rows.end(),
                         [](const OrderRow& a, const OrderRow& b) { return a.ts_ns < b.ts_ns; });
        return rows;
    };
    auto single = [&](AnomalyResult a, OrderRow row) {
        row.client_order_id = "inject-" + a.id;
        a.at_ns = row.ts_ns;
        a.rows = 1;
        const auto rows = with({row});
        const detail::Replay r = replay(rows, a.id);
        std::size_t k = 0;
        while (rows[k].client_order_id != row.client_order_id) ++k;
        // That order, or the next one, warned or was rejected.
        const detail::DecisionLine* hit = &r.decisions[k];
        if (hit->decision == "allow" && k + 1 < r.decisions.size()) hit = &r.decisions[k + 1];
        a.verdict = hit->decision;
        a.score_ppm = hit->score_ppm;
        a.components_ppm = hit->components;
        a.caught = hit->decision != "allow";
        const RunFigures f = detail::figures_of(r, observe_until);
        a.warnings = f.warnings;
        a.revocations = f.revocations;
        return a;
    };
    auto p99_of = [&](const std::string& instrument) {
        // The reference the scorer uses: the instrument's own p99 from 100 orders on, else all.
        const auto it = result.baseline.instruments.find(instrument);
        if (it != result.baseline.instruments.end() && it->second.first >= 100)
            return parse_decimal(it->second.second).to_double();
        return parse_decimal(baseline.notional_p99).to_double();
    };

    {
        AnomalyResult a;
        a.id = "size";
        a.name = "size 10x the p99";
        const double p99 = p99_of(like.instrument);
        OrderRow row = detail::sized_like(like, 10.0 * p99);
        row.ts_ns = at;
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s notional %.2f EUR = 10 x the learned p99 %.2f EUR",
                      like.instrument.c_str(), row.quantity.to_double() * row.price.to_double(),
                      p99);
        a.injected = buf;
        result.anomalies.push_back(single(a, row));
    }
    {
        AnomalyResult a;
        a.id = "instrument";
        a.name = "an instrument never traded";
        OrderRow row = like;
        row.instrument = extra_instrument;
        row.price = parse_decimal("1100");  // ETH in EUR, late 2022: a plausible order
        row = detail::sized_like(row, like.quantity.to_double() * like.price.to_double());
        row.ts_ns = at;
        a.injected = extra_instrument + " (in the scope, never traded), the anchor's notional";
        result.anomalies.push_back(single(a, row));
    }
    {
        AnomalyResult a;
        a.id = "region";
        a.name = "a region never seen";
        OrderRow row = like;
        row.region = extra_region;
        row.ts_ns = at;
        a.injected =
            "the anchor order again, signed in " + extra_region + " (in the scope, never seen)";
        result.anomalies.push_back(single(a, row));
    }
    {
        AnomalyResult a;
        a.id = "hour";
        a.name = "an hour never active";
        std::optional<unsigned> quiet;
        for (unsigned h = 0; h < 168 && !quiet; ++h)
            if (baseline.hour_of_week_orders[h] == 0) quiet = h;
        if (!quiet) {
            a.applicable = false;
            a.note =
                "the bot was active in all 168 hours of the week during observation (least "
                "active: " +
                detail::day_hour_name(result.baseline.least_active_hour) + ", " +
                std::to_string(result.baseline.least_active_orders) +
                " orders): no such hour exists in this data";
            result.anomalies.push_back(a);
        } else {
            // The first such hour of the week in the enforced span, half past.
            TimeNs t = floor_div(observe_until, hour_ns) * hour_ns + 30 * minute_ns;
            while (minute_of_week(t) / 60 != *quiet) t += hour_ns;
            OrderRow row = like;
            row.ts_ns = t;
            a.injected = "the anchor order at " + format_timestamp(t) + " (" +
                         detail::day_hour_name(*quiet) + ": no order in observation)";
            result.anomalies.push_back(single(a, row));
        }
    }
    {
        AnomalyResult a;
        a.id = "burst";
        a.name = "a burst at 20x the hourly rate";
        const double per_hour = 20.0 * result.baseline.hourly_mean;
        const auto count = static_cast<std::size_t>(std::ceil(per_hour / 2));  // 30 minutes
        const TimeNs step = static_cast<TimeNs>(double(hour_ns) / per_hour);
        std::vector<OrderRow> burst;
        for (std::size_t k = 0; k < count; ++k) {
            OrderRow row = like;
            row.ts_ns = at + TimeNs(k) * step;
            char id[32];
            std::snprintf(id, sizeof id, "inject-burst-%04zu", k);
            row.client_order_id = id;
            burst.push_back(row);
        }
        char buf[200];
        std::snprintf(buf, sizeof buf,
                      "%zu copies of the anchor order over 30 min, one every %.1f s (%.0f/h = 20 x "
                      "the learned %.2f/h)",
                      count, double(step) / 1e9, per_hour, result.baseline.hourly_mean);
        a.injected = buf;
        a.at_ns = at;
        a.rows = count;
        const detail::Replay r = replay(with(burst), a.id);
        for (const auto& d : r.decisions) {
            if (d.ts_ns < at || d.decision == "allow") continue;
            a.delay_ms = (d.ts_ns - at) / 1'000'000;
            a.verdict = d.decision;
            a.score_ppm = d.score_ppm;
            a.components_ppm = d.components;
            break;
        }
        a.caught = a.delay_ms && *a.delay_ms <= 10 * 60'000;
        if (!a.delay_ms) a.verdict = "allow";
        const RunFigures f = detail::figures_of(r, observe_until);
        a.warnings = f.warnings;
        a.revocations = f.revocations;
        result.anomalies.push_back(a);
    }

    result.goals_met = n.goal_met;
    for (const auto& a : result.anomalies)
        if (!a.evaluated || (a.applicable && !a.caught)) result.goals_met = false;
    return result;
}

namespace detail {

inline std::string fixed(double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

inline std::string score(std::uint32_t ppm) { return fixed(double(ppm) / 1e6, 2); }

inline std::string strongest(const std::array<std::uint32_t, score_component_count>& c) {
    std::size_t top = 0;
    for (std::size_t i = 1; i < c.size(); ++i)
        if (c[i] > c[top]) top = i;
    return c[top] == 0 ? "-" : std::string(component_name(top)) + " " + score(c[top]);
}

inline std::string day_text(TimeNs t) { return format_timestamp(t).substr(0, 16) + "Z"; }

}  // namespace detail

/// The report: what was learned, the false-alarm figures, per-component statistics and the
/// detection table, in markdown.
inline std::string markdown(const EvaluationResult& r) {
    using detail::fixed;
    using detail::score;
    std::ostringstream o;
    const BaselineFacts& b = r.baseline;
    const NormalResult& n = r.normal;
    o << "Data: " << r.fills << " fills of a Hummingbot pure market-making bot on KuCoin ("
      << r.orders_kept << " orders from " << detail::day_text(b.observed_from_ns) << ")";
    for (const auto& m : r.mappings)
        o << "; " << m.symbol << " -> " << m.instrument << " at " << m.eur_rate;
    o << ".\n\nLearned over "
      << fixed(double(b.observed_to_ns - b.observed_from_ns) / double(day_ns), 1) << " days ("
      << detail::day_text(b.observed_from_ns) << " .. " << detail::day_text(b.observed_to_ns)
      << ", " << b.orders << " orders): " << fixed(b.hourly_mean, 1) << " orders/h (sd "
      << fixed(b.hourly_sd, 1) << "), p99 notional";
    for (const auto& [name, v] : b.instruments)
        o << " " << name << " " << fixed(std::stod(v.second), 2);
    o << " EUR, active in " << b.active_hours_of_week << " of 168 hours of the week.\n\n";

    o << "| normal activity (" << detail::day_text(n.replay_from_ns) << " .. "
      << detail::day_text(n.replay_to_ns) << ", " << fixed(n.days, 1) << " days, "
      << n.run.enforced_orders << " orders) | measured | goal |\n|---|---|---|\n"
      << "| warning incidents per day | " << fixed(n.warnings_per_day, 2) << " (" << n.run.warnings
      << " in " << fixed(n.days, 1) << " days) | <= 1 |\n"
      << "| warned orders per day | " << fixed(n.warned_orders_per_day, 2) << " ("
      << n.run.warned_orders << ") | |\n"
      << "| automatic revocations | " << n.run.revocations << " | 0 |\n"
      << "| highest score | " << score(n.run.max_score_ppm)
      << " | < 0.75 warns, < 0.85 revokes |\n\n";

    o << "| component (enforced orders) | p50 | p99 | max | >= 0.5 | >= warning | largest in a "
         "warning |\n|---|---|---|---|---|---|---|\n";
    for (const auto& c : n.components)
        o << "| " << c.name << " | " << score(c.p50_ppm) << " | " << score(c.p99_ppm) << " | "
          << score(c.max_ppm) << " | " << c.at_or_above_half << " | " << c.at_or_above_warn << " | "
          << c.top_of_warned << " |\n";

    o << "\n| injected anomaly | what | at | verdict | score | strongest component | caught |\n"
         "|---|---|---|---|---|---|---|\n";
    for (const auto& a : r.anomalies) {
        if (!a.evaluated) {
            o << "| " << a.name << " | - | - | - | - | - | NOT evaluated: " << a.note << " |\n";
            continue;
        }
        if (!a.applicable) {
            o << "| " << a.name << " | - | - | - | - | - | not applicable: " << a.note << " |\n";
            continue;
        }
        o << "| " << a.name << " | " << a.injected << " | " << format_timestamp(a.at_ns) << " | "
          << a.verdict << " | " << score(a.score_ppm) << " | "
          << detail::strongest(a.components_ppm) << " | ";
        if (a.id == "burst")
            o << (a.caught ? "yes" : "NO") << ", "
              << (a.delay_ms ? "first warning after " + fixed(double(*a.delay_ms) / 1000, 0) + " s"
                             : std::string("never warned"))
              << " (goal: <= 600 s)";
        else
            o << (a.caught ? "yes" : "NO");
        o << " |\n";
    }
    o << "\nGoals " << (r.goals_met ? "met" : "NOT met") << ".\n";
    return o.str();
}

/// The figures as one JSON object (written by scripts/evaluate).
inline nlohmann::json figures_json(const EvaluationResult& r) {
    using nlohmann::json;
    const BaselineFacts& b = r.baseline;
    const NormalResult& n = r.normal;
    json mappings = json::array();
    for (const auto& m : r.mappings)
        mappings.push_back({{"symbol", m.symbol},
                            {"instrument", m.instrument},
                            {"eur_rate", m.eur_rate},
                            {"source", m.source}});
    json instruments = json::object();
    for (const auto& [name, v] : b.instruments)
        instruments[name] = {{"orders", v.first}, {"notional_p99", v.second}};
    json components = json::object();
    for (const auto& c : n.components)
        components[c.name] = {{"p50_ppm", c.p50_ppm},
                              {"p99_ppm", c.p99_ppm},
                              {"max_ppm", c.max_ppm},
                              {"at_or_above_half", c.at_or_above_half},
                              {"at_or_above_warn", c.at_or_above_warn},
                              {"largest_in_warning", c.top_of_warned}};
    json anomalies = json::array();
    for (const auto& a : r.anomalies) {
        json comp = json::object();
        for (std::size_t i = 0; i < score_component_count; ++i)
            comp[component_name(i)] = a.components_ppm[i];
        json j = {{"id", a.id},
                  {"name", a.name},
                  {"applicable", a.applicable},
                  {"evaluated", a.evaluated},
                  {"caught", a.caught}};
        if (!a.applicable || !a.evaluated) {
            j["note"] = a.note;
        } else {
            j.update({{"injected", a.injected},
                      {"at", format_timestamp(a.at_ns)},
                      {"rows", a.rows},
                      {"verdict", a.verdict},
                      {"score_ppm", a.score_ppm},
                      {"components_ppm", comp},
                      {"warning_incidents", a.warnings},
                      {"revocations", a.revocations}});
            if (a.id == "burst")
                j["delay_s"] = a.delay_ms ? json(double(*a.delay_ms) / 1000) : json();
        }
        anomalies.push_back(j);
    }
    return {{"data", r.data_dir},
            {"fills", r.fills},
            {"orders", r.orders_kept},
            {"mappings", mappings},
            {"baseline",
             {{"observed_from", format_timestamp(b.observed_from_ns)},
              {"observed_to", format_timestamp(b.observed_to_ns)},
              {"orders", b.orders},
              {"sha256", b.sha256},
              {"hourly_mean", b.hourly_mean},
              {"hourly_sd", b.hourly_sd},
              {"short_mean", b.short_mean},
              {"short_sd", b.short_sd},
              {"notional_p99", b.overall_p99},
              {"instruments", instruments},
              {"active_hours_of_week", b.active_hours_of_week}}},
            {"normal",
             {{"from", format_timestamp(n.replay_from_ns)},
              {"to", format_timestamp(n.replay_to_ns)},
              {"days", n.days},
              {"active_days", n.active_days},
              {"orders", n.run.enforced_orders},
              {"warning_incidents", n.run.warnings},
              {"warning_incidents_per_day", n.warnings_per_day},
              {"warned_orders", n.run.warned_orders},
              {"warned_orders_per_day", n.warned_orders_per_day},
              {"revocations", n.run.revocations},
              {"max_score_ppm", n.run.max_score_ppm},
              {"components", components},
              {"goal_met", n.goal_met}}},
            {"anomalies", anomalies},
            {"goals_met", r.goals_met}};
}

}  // namespace kakunin::evaluation
