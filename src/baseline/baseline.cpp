// Baselines: the JSON document, approvals, the builder's finalisation and the scorer's
// compilation. The per-order work is inline in kakunin/baseline.hpp and AnomalyScorer::score.
#include "kakunin/baseline.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/money.hpp"
#include "kakunin/replay.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& member, const std::string& problem) {
    throw Error(ErrorCategory::invalid_input, "baseline: " + member + ": " + problem);
}

const json& member(const json& j, const char* name, const std::string& path) {
    auto it = j.find(name);
    if (it == j.end()) bad(path + name, "missing");
    return *it;
}

std::uint64_t get_u64(const json& j, const char* name, const std::string& path) {
    const json& v = member(j, name, path);
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0))
        bad(path + name, "must be a non-negative integer");
    return v.get<std::uint64_t>();
}

std::uint32_t get_u32(const json& j, const char* name, const std::string& path) {
    const std::uint64_t v = get_u64(j, name, path);
    if (v > UINT32_MAX) bad(path + name, "too large");
    return static_cast<std::uint32_t>(v);
}

std::int64_t get_i64(const json& j, const char* name, const std::string& path) {
    const json& v = member(j, name, path);
    if (!v.is_number_integer()) bad(path + name, "must be an integer");
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > INT64_MAX) bad(path + name, "too large");
    return v.get<std::int64_t>();
}

std::string get_str(const json& j, const char* name, const std::string& path) {
    const json& v = member(j, name, path);
    if (!v.is_string()) bad(path + name, "must be a string");
    return v.get<std::string>();
}

bool get_bool(const json& j, const char* name, const std::string& path) {
    const json& v = member(j, name, path);
    if (!v.is_boolean()) bad(path + name, "must be true or false");
    return v.get<bool>();
}

std::string get_decimal(const json& j, const char* name, const std::string& path) {
    std::string s = get_str(j, name, path);
    const auto d = try_parse_decimal(s);
    if (!d || d->is_negative()) bad(path + name, "must be a non-negative decimal string");
    return s;
}

void only(const json& j, std::initializer_list<const char*> names, const std::string& path) {
    if (!j.is_object())
        bad(path.empty() ? "(document)" : path.substr(0, path.size() - 1), "must be an object");
    for (auto it = j.begin(); it != j.end(); ++it) {
        bool known = false;
        for (const char* n : names) known = known || it.key() == n;
        if (!known) bad(path + it.key(), "unknown member");
    }
}

/// A positive double as a decimal string with about 9 significant digits, no exponent.
std::string decimal_text(double v) {
    if (!(v > 0)) return "0";
    int digits = 8 - static_cast<int>(std::floor(std::log10(v)));
    digits = std::clamp(digits, 0, 18);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    std::string s(buf);
    if (s.find('.') != std::string::npos) {
        while (s.back() == '0') s.pop_back();
        if (s.back() == '.') s.pop_back();
    }
    return s;
}

double to_double(const std::string& decimal) {
    const auto d = try_parse_decimal(decimal);
    return d ? d->to_double() : 0.0;
}

json policy_json(const ScoringPolicy& p) {
    json w = json::object();
    for (std::size_t i = 0; i < score_component_count; ++i) w[component_name(i)] = p.weights_ppm[i];
    return {{"weights_ppm", w},
            {"warn_ppm", p.warn_ppm},
            {"revoke_ppm", p.revoke_ppm},
            {"unseen_ppm", p.unseen_ppm},
            {"size_warn_ratio", p.size_warn_ratio},
            {"frequency_warn_ratio", p.frequency_warn_ratio},
            {"concentration_warn_ratio", p.concentration_warn_ratio},
            {"short_window_minutes", p.short_window_minutes},
            {"concentration_window", p.concentration_window},
            {"min_observation_days", p.min_observation_days},
            {"investigation_window_s", p.investigation_window_s},
            {"halt_on_escalation", p.halt_on_escalation}};
}

ScoringPolicy policy_from(const json& j, const std::string& path) {
    only(j,
         {"weights_ppm", "warn_ppm", "revoke_ppm", "unseen_ppm", "size_warn_ratio",
          "frequency_warn_ratio", "concentration_warn_ratio", "short_window_minutes",
          "concentration_window", "min_observation_days", "investigation_window_s",
          "halt_on_escalation"},
         path);
    ScoringPolicy p;
    const json& w = member(j, "weights_ppm", path);
    const std::string wpath = path + "weights_ppm.";
    only(w, {"size", "frequency", "concentration", "time_of_day", "origin"}, wpath);
    for (std::size_t i = 0; i < score_component_count; ++i)
        p.weights_ppm[i] = get_u32(w, component_name(i), wpath);
    p.warn_ppm = get_u32(j, "warn_ppm", path);
    p.revoke_ppm = get_u32(j, "revoke_ppm", path);
    p.unseen_ppm = get_u32(j, "unseen_ppm", path);
    p.size_warn_ratio = get_u32(j, "size_warn_ratio", path);
    p.frequency_warn_ratio = get_u32(j, "frequency_warn_ratio", path);
    p.concentration_warn_ratio = get_u32(j, "concentration_warn_ratio", path);
    p.short_window_minutes = get_u32(j, "short_window_minutes", path);
    p.concentration_window = get_u32(j, "concentration_window", path);
    p.min_observation_days = get_u32(j, "min_observation_days", path);
    p.investigation_window_s = get_u32(j, "investigation_window_s", path);
    p.halt_on_escalation = get_bool(j, "halt_on_escalation", path);
    try {
        validate(p);
    } catch (const Error& e) {
        bad(path.substr(0, path.size() - 1), e.what());
    }
    return p;
}

}  // namespace

void validate(const ScoringPolicy& p) {
    auto fail = [](const char* m, const char* why) {
        throw Error(ErrorCategory::invalid_input, std::string(m) + ": " + why);
    };
    for (std::size_t i = 0; i < score_component_count; ++i)
        if (p.weights_ppm[i] > 1'000'000) fail("weights_ppm", "each weight is at most 1000000");
    if (p.warn_ppm == 0 || p.warn_ppm > 1'000'000) fail("warn_ppm", "must be in 1..1000000");
    if (p.revoke_ppm < p.warn_ppm || p.revoke_ppm > 1'000'000)
        fail("revoke_ppm", "must be in warn_ppm..1000000");
    if (p.unseen_ppm > 1'000'000) fail("unseen_ppm", "at most 1000000");
    if (p.size_warn_ratio < 2) fail("size_warn_ratio", "must be at least 2");
    if (p.frequency_warn_ratio < 2) fail("frequency_warn_ratio", "must be at least 2");
    if (p.concentration_warn_ratio < 2) fail("concentration_warn_ratio", "must be at least 2");
    if (p.short_window_minutes < 1 || p.short_window_minutes > 60)
        fail("short_window_minutes", "must be in 1..60");
    if (p.concentration_window < 10 || p.concentration_window > 10'000)
        fail("concentration_window", "must be in 10..10000");
    if (p.min_observation_days < 7 || p.min_observation_days > 14)
        fail("min_observation_days", "must be in 7..14 (DESIGN §4)");
    if (p.investigation_window_s < 1) fail("investigation_window_s", "must be at least 1");
}

std::string to_json(const Baseline& b) {
    json instruments = json::array();
    for (const auto& i : b.instruments)
        instruments.push_back({{"instrument", i.instrument},
                               {"orders", i.orders},
                               {"notional_p50", i.notional_p50},
                               {"notional_p99", i.notional_p99}});
    json regions = json::array();
    for (const auto& r : b.regions) regions.push_back({{"region", r.region}, {"orders", r.orders}});
    json j = {{"format", std::string(Baseline::format)},
              {"agent", b.agent_id},
              {"currency", b.currency},
              {"observed_from_ns", b.observed_from_ns},
              {"observed_to_ns", b.observed_to_ns},
              {"orders", b.orders},
              {"notional_p50", b.notional_p50},
              {"notional_p99", b.notional_p99},
              {"sketch_relative_error_ppm", b.sketch_relative_error_ppm},
              {"instruments", instruments},
              {"regions", regions},
              {"hourly_mean_milli", b.hourly_mean_milli},
              {"hourly_sd_milli", b.hourly_sd_milli},
              {"short_mean_milli", b.short_mean_milli},
              {"short_sd_milli", b.short_sd_milli},
              {"hour_of_week_orders", b.hour_of_week_orders},
              {"policy", policy_json(b.policy)}};
    return j.dump();
}

Baseline parse_baseline_json(std::string_view text) {
    json j;
    try {
        j = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, std::string("baseline: ") + e.what());
    }
    only(j,
         {"format", "agent", "currency", "observed_from_ns", "observed_to_ns", "orders",
          "notional_p50", "notional_p99", "sketch_relative_error_ppm", "instruments", "regions",
          "hourly_mean_milli", "hourly_sd_milli", "short_mean_milli", "short_sd_milli",
          "hour_of_week_orders", "policy"},
         "");
    Baseline b;
    if (get_str(j, "format", "") != Baseline::format)
        bad("format", "expected \"" + std::string(Baseline::format) + "\"");
    b.agent_id = get_str(j, "agent", "");
    validate_agent_id(b.agent_id);
    b.currency = get_str(j, "currency", "");
    try {
        (void)Currency::parse(b.currency);
    } catch (const Error& e) {
        bad("currency", e.what());
    }
    b.observed_from_ns = get_i64(j, "observed_from_ns", "");
    b.observed_to_ns = get_i64(j, "observed_to_ns", "");
    if (b.observed_to_ns < b.observed_from_ns) bad("observed_to_ns", "before observed_from_ns");
    b.orders = get_u64(j, "orders", "");
    b.notional_p50 = get_decimal(j, "notional_p50", "");
    b.notional_p99 = get_decimal(j, "notional_p99", "");
    b.sketch_relative_error_ppm = get_u32(j, "sketch_relative_error_ppm", "");
    const json& instruments = member(j, "instruments", "");
    if (!instruments.is_array()) bad("instruments", "must be an array");
    for (std::size_t k = 0; k < instruments.size(); ++k) {
        const std::string path = "instruments[" + std::to_string(k) + "].";
        const json& e = instruments[k];
        only(e, {"instrument", "orders", "notional_p50", "notional_p99"}, path);
        InstrumentBaseline ib;
        ib.instrument = get_str(e, "instrument", path);
        if (quote_of(ib.instrument).empty()) bad(path + "instrument", "not BASE_QUOTE");
        ib.orders = get_u64(e, "orders", path);
        ib.notional_p50 = get_decimal(e, "notional_p50", path);
        ib.notional_p99 = get_decimal(e, "notional_p99", path);
        for (const auto& seen : b.instruments)
            if (seen.instrument == ib.instrument) bad(path + "instrument", "listed twice");
        b.instruments.push_back(std::move(ib));
    }
    const json& regions = member(j, "regions", "");
    if (!regions.is_array()) bad("regions", "must be an array");
    for (std::size_t k = 0; k < regions.size(); ++k) {
        const std::string path = "regions[" + std::to_string(k) + "].";
        only(regions[k], {"region", "orders"}, path);
        RegionBaseline rb{get_str(regions[k], "region", path), get_u64(regions[k], "orders", path)};
        if (rb.region.empty()) bad(path + "region", "empty");
        for (const auto& seen : b.regions)
            if (seen.region == rb.region) bad(path + "region", "listed twice");
        b.regions.push_back(std::move(rb));
    }
    b.hourly_mean_milli = get_u64(j, "hourly_mean_milli", "");
    b.hourly_sd_milli = get_u64(j, "hourly_sd_milli", "");
    b.short_mean_milli = get_u64(j, "short_mean_milli", "");
    b.short_sd_milli = get_u64(j, "short_sd_milli", "");
    const json& how = member(j, "hour_of_week_orders", "");
    if (!how.is_array() || how.size() != 168) bad("hour_of_week_orders", "must be 168 integers");
    for (std::size_t h = 0; h < 168; ++h) {
        if (!how[h].is_number_unsigned() || how[h].get<std::uint64_t>() > UINT32_MAX)
            bad("hour_of_week_orders[" + std::to_string(h) + "]", "must be a non-negative integer");
        b.hour_of_week_orders[h] = how[h].get<std::uint32_t>();
    }
    b.policy = policy_from(member(j, "policy", ""), "policy.");
    return b;
}

std::string baseline_sha256_hex(const Baseline& b) { return crypto::sha256_hex(to_json(b)); }

std::string baseline_approval_text(const BaselineApproval& a) {
    return "kakunin-baseline-approval/v1\n" + a.agent_id + "\n" + std::to_string(a.version) + "\n" +
           a.approver + "\n" + std::to_string(a.approved_at) + "\n" + a.baseline_sha256 + "\n";
}

BaselineApproval approve_baseline(Kms& kms, const Baseline& b, std::string_view approver,
                                  TimeNs approved_at, std::uint64_t version, bool automatic,
                                  KeyAlgorithm algorithm) {
    if (approver.empty() || approver.find('\n') != std::string_view::npos)
        throw Error(ErrorCategory::invalid_input,
                    "baseline approval: the approver must be named on one line");
    validate_agent_id(b.agent_id);
    BaselineApproval a;
    a.agent_id = b.agent_id;
    a.version = version;
    a.approver = std::string(approver);
    a.approved_at = approved_at;
    a.baseline_sha256 = baseline_sha256_hex(b);
    a.automatic = automatic;
    const KeyHandle key = kms.find_or_create_key(approver_key_label(approver), algorithm);
    const PublicKeyInfo info = kms.public_key(key);
    a.algorithm = to_string(info.algorithm);
    a.approver_public_key = crypto::base64_encode(info.spki_der);
    a.signature = crypto::base64_encode(kms.sign(key, baseline_approval_text(a)));
    return a;
}

std::string check_baseline_approval(const BaselineApproval& a, const Baseline& b) noexcept {
    try {
        if (a.agent_id != b.agent_id)
            return "the approval is for agent '" + a.agent_id + "', the baseline for '" +
                   b.agent_id + "'";
        if (a.approver.empty()) return "the approval names no approver";
        const std::string hash = baseline_sha256_hex(b);
        if (a.baseline_sha256 != hash)
            return "the baseline's SHA-256 " + hash + " is not the approved " + a.baseline_sha256;
        const auto key = crypto::base64_decode(a.approver_public_key, "approver_public_key");
        const auto alg = crypto::spki_algorithm(key);
        if (!alg || to_string(*alg) != a.algorithm)
            return "the approver key is not a " + a.algorithm + " key";
        const auto sig = crypto::base64_decode(a.signature, "signature");
        if (!crypto::verify_signature(key, baseline_approval_text(a), sig))
            return "the approval signature does not verify";
        return {};
    } catch (const std::exception& e) {
        return std::string("malformed approval: ") + e.what();
    }
}

std::string to_json(const BaselineApproval& a) {
    json j = {{"agent", a.agent_id},
              {"version", a.version},
              {"baseline_sha256", a.baseline_sha256},
              {"approver", a.approver},
              {"approved_at_ns", a.approved_at},
              {"automatic", a.automatic},
              {"algorithm", a.algorithm},
              {"approver_public_key", a.approver_public_key},
              {"signature", a.signature}};
    return j.dump();
}

BaselineApproval baseline_approval_from_json(std::string_view text) {
    json j;
    try {
        j = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, std::string("baseline approval: ") + e.what());
    }
    try {
        only(j,
             {"agent", "version", "baseline_sha256", "approver", "approved_at_ns", "automatic",
              "algorithm", "approver_public_key", "signature"},
             "");
        BaselineApproval a;
        a.agent_id = get_str(j, "agent", "");
        a.version = get_u64(j, "version", "");
        a.baseline_sha256 = get_str(j, "baseline_sha256", "");
        a.approver = get_str(j, "approver", "");
        a.approved_at = get_i64(j, "approved_at_ns", "");
        a.automatic = get_bool(j, "automatic", "");
        a.algorithm = get_str(j, "algorithm", "");
        a.approver_public_key = get_str(j, "approver_public_key", "");
        a.signature = get_str(j, "signature", "");
        return a;
    } catch (const Error& e) {
        std::string m = e.what();
        throw Error(ErrorCategory::invalid_input,
                    "baseline approval" + m.substr(std::string("baseline").size()));
    }
}

// ---- sketch ----

namespace detail {

QuantileSketch::QuantileSketch() {
    m_gamma = (1 + alpha) / (1 - alpha);
    m_log_min = std::log(min_value);
    m_inv_log_gamma = 1.0 / std::log(m_gamma);
    const auto n =
        static_cast<std::size_t>(std::ceil((std::log(max_value) - m_log_min) * m_inv_log_gamma)) +
        2;
    m_counts.assign(n, 0);
}

double QuantileSketch::quantile(double q) const noexcept {
    if (m_total == 0) return 0.0;
    q = std::clamp(q, 0.0, 1.0);
    auto rank = static_cast<std::uint64_t>(std::ceil(q * double(m_total)));
    if (rank == 0) rank = 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < m_counts.size(); ++i) {
        seen += m_counts[i];
        if (seen >= rank) {
            if (i == 0) return min_value;
            // Bucket i holds (min * gamma^(i-1), min * gamma^i]; the estimate below is within
            // alpha of both ends.
            return 2.0 * std::exp(m_log_min + double(i) / m_inv_log_gamma) / (m_gamma + 1.0);
        }
    }
    return max_value;
}

}  // namespace detail

// ---- builder ----

BaselineBuilder::BaselineBuilder(const Scope& scope, std::string agent_id, ScoringPolicy policy)
    : m_agent(std::move(agent_id)),
      m_currency(scope.max_transaction.currency.code()),
      m_policy(policy),
      m_instruments(scope.instruments),
      m_regions(scope.regions),
      m_per_instrument(scope.instruments.size()),
      m_region_orders(scope.regions.size(), 0),
      m_hourly(3'600'000'000'000LL),
      m_short(static_cast<TimeNs>(policy.short_window_minutes) * 60'000'000'000LL) {
    validate_agent_id(m_agent);
    validate(m_policy);
}

Baseline BaselineBuilder::finalize(TimeNs now) const {
    const TimeNs min_ns = static_cast<TimeNs>(m_policy.min_observation_days) * 86'400'000'000'000LL;
    if (m_count == 0)
        throw Error(ErrorCategory::invalid_state,
                    "baseline for " + m_agent + ": no orders observed yet");
    if (now - m_first < min_ns) {
        const double days = double(now - m_first) / 86'400e9;
        char buf[160];
        std::snprintf(buf, sizeof buf,
                      ": observed for %.2f days; the policy requires at least %u days before "
                      "the baseline can be finalised",
                      days, m_policy.min_observation_days);
        throw Error(ErrorCategory::invalid_state, "baseline for " + m_agent + buf);
    }
    Baseline b;
    b.agent_id = m_agent;
    b.currency = m_currency;
    b.observed_from_ns = m_first;
    b.observed_to_ns = now;
    b.orders = m_count;
    b.notional_p50 = decimal_text(m_overall.quantile(0.50));
    b.notional_p99 = decimal_text(m_overall.quantile(0.99));
    b.sketch_relative_error_ppm = static_cast<std::uint32_t>(detail::QuantileSketch::alpha * 1e6);
    for (std::size_t i = 0; i < m_instruments.size(); ++i) {
        const auto& s = m_per_instrument[i];
        if (s.total() == 0) continue;
        b.instruments.push_back({m_instruments[i], s.total(), decimal_text(s.quantile(0.50)),
                                 decimal_text(s.quantile(0.99))});
    }
    for (std::size_t r = 0; r < m_regions.size(); ++r)
        if (m_region_orders[r] != 0) b.regions.push_back({m_regions[r], m_region_orders[r]});
    // The hours from the start of observation to `now` count, quiet ones as zeros: rates over
    // the whole period, not only over the hours that had orders.
    detail::BucketRate hourly = m_hourly, short_rate = m_short;
    hourly.add(now);  // closes the open bucket (the marker itself lands in a new one)
    short_rate.add(now);
    b.hourly_mean_milli = static_cast<std::uint64_t>(std::llround(hourly.mean() * 1000));
    b.hourly_sd_milli = static_cast<std::uint64_t>(std::llround(hourly.sd() * 1000));
    b.short_mean_milli = static_cast<std::uint64_t>(std::llround(short_rate.mean() * 1000));
    b.short_sd_milli = static_cast<std::uint64_t>(std::llround(short_rate.sd() * 1000));
    b.hour_of_week_orders = m_hour_of_week;
    b.policy = m_policy;
    return b;
}

// ---- scorer ----

namespace detail {

namespace {
std::vector<std::string> names_of(const std::vector<InstrumentBaseline>& v) {
    std::vector<std::string> out;
    for (const auto& i : v) out.push_back(i.instrument);
    return out;
}
std::vector<std::string> names_of(const std::vector<RegionBaseline>& v) {
    std::vector<std::string> out;
    for (const auto& r : v) out.push_back(r.region);
    return out;
}

/// How many times each hour of the week lies wholly inside [from, to].
std::array<std::uint32_t, 168> whole_hours_of_week(TimeNs from, TimeNs to) {
    constexpr TimeNs hour = 3'600'000'000'000LL;
    std::array<std::uint32_t, 168> n{};
    const std::int64_t first = floor_div(from, hour) + (floor_mod(from, hour) != 0 ? 1 : 0);
    const std::int64_t last = floor_div(to, hour);
    if (last - first >= 168 * 1000) {  // a document can claim any span: count whole weeks
        n.fill(static_cast<std::uint32_t>((last - first) / 168));
        return n;
    }
    for (std::int64_t k = first; k < last; ++k) ++n[minute_of_week(k * hour) / 60];
    return n;
}

}  // namespace

AnomalyScorer::AnomalyScorer(const Baseline& b)
    : m_policy(b.policy), m_instruments(names_of(b.instruments)), m_regions(names_of(b.regions)) {
    validate(m_policy);
    m_overall_p99 = to_double(b.notional_p99);
    std::uint64_t total = 0;
    for (const auto& i : b.instruments) total += i.orders;
    for (const auto& i : b.instruments) {
        // An instrument's own p99 once it has enough orders to have one (100: the p99 is then
        // at least the second-largest order); before that, the overall p99.
        m_p99.push_back(i.orders >= 100 ? to_double(i.notional_p99) : 0.0);
        m_share.push_back(total == 0 ? 0.0 : double(i.orders) / double(total));
    }
    const double hm = double(b.hourly_mean_milli) / 1000, hs = double(b.hourly_sd_milli) / 1000;
    const double sm = double(b.short_mean_milli) / 1000, ss = double(b.short_sd_milli) / 1000;
    m_hour_ref = std::max(1.0, hm + 3 * hs);
    m_short_ref = std::max(1.0, sm + 3 * ss);
    // Time of day, per hour of the week, so that scoring is one lookup. An hour of the week
    // with orders in observation scores 0. One without scores `unseen` when the evidence that
    // the agent keeps away from it is strong: that hour of the day was quiet on every day
    // observed, or that hour of the week was observed whole at least twice (a weekly habit,
    // e.g. weekends off). A single quiet hour in a single week, while the agent was active at
    // that time on other days, is weak evidence (a 24/7 agent has such hours by chance: see
    // docs/anomaly-scoring.md) and scores unseen / 2, below the warning level on its own.
    std::array<std::uint64_t, 24> hour_of_day{};
    for (std::size_t h = 0; h < 168; ++h) hour_of_day[h % 24] += b.hour_of_week_orders[h];
    const auto weeks = whole_hours_of_week(b.observed_from_ns, b.observed_to_ns);
    const double unseen = double(m_policy.unseen_ppm) / 1e6;
    for (std::size_t h = 0; h < 168; ++h) {
        if (b.hour_of_week_orders[h] != 0) continue;
        m_time_of_day[h] = hour_of_day[h % 24] == 0 || weeks[h] >= 2 ? unseen : unseen / 2;
    }
    for (std::size_t i = 0; i < score_component_count; ++i)
        m_weights[i] = double(m_policy.weights_ppm[i]) / 1e6;
    m_warn = double(m_policy.warn_ppm) / 1e6;
    m_log_size_ratio = std::log(double(m_policy.size_warn_ratio));
    m_log_freq_ratio = std::log(double(m_policy.frequency_warn_ratio));
    m_log_conc_ratio = std::log(double(m_policy.concentration_warn_ratio));
    m_recent.assign(m_policy.concentration_window, -1);
    m_recent_count.assign(m_instruments.size() + 1, 0);  // last slot: unseen instruments
}

void AnomalyScorer::advance_minutes(std::int64_t minute) noexcept {
    if (m_minute == INT64_MIN || minute - m_minute >= 60) {
        m_minute_counts.fill(0);
        m_hour_total = 0;
    } else if (minute > m_minute) {
        for (std::int64_t m = m_minute + 1; m <= minute; ++m) {
            auto& slot = m_minute_counts[static_cast<std::size_t>(floor_mod(m, 60))];
            m_hour_total -= slot;
            slot = 0;
        }
    }
    if (m_minute == INT64_MIN || minute > m_minute) m_minute = minute;
}

double AnomalyScorer::size_component(const Order& o, int instrument) const noexcept {
    double ref = m_overall_p99;
    if (instrument >= 0 && m_p99[static_cast<std::size_t>(instrument)] > 0)
        ref = m_p99[static_cast<std::size_t>(instrument)];
    if (!(ref > 0)) return 0.0;
    return excess(notional_of(o) / ref, m_log_size_ratio, m_warn);
}

void AnomalyScorer::score(const Order& o, TimeNs t, Decision& d) noexcept {
    const double unseen = double(m_policy.unseen_ppm) / 1e6;
    const int instrument = m_instruments.find(o.instrument);
    double c[score_component_count] = {};

    // size: the notional against the p99 of the instrument (or of all orders).
    c[0] = size_component(o, instrument);

    // frequency: orders in the last hour and in the short window (this one included), against
    // the baseline's mean + 3 sd for windows of that length.
    const std::int64_t minute = floor_div(t, 60'000'000'000LL);
    advance_minutes(minute);
    // One division for the ring position; the short window walks back from it.
    const auto now_slot = static_cast<std::size_t>(floor_mod(m_minute, 60));
    if (minute == m_minute) {  // an order from the past (clock stepped back) is not counted
        ++m_minute_counts[now_slot];
        ++m_hour_total;
    }
    std::uint32_t recent = 0;
    for (std::size_t k = 0, i = now_slot; k < m_policy.short_window_minutes; ++k) {
        recent += m_minute_counts[i];
        i = i == 0 ? 59 : i - 1;
    }
    // excess() is increasing: one logarithm for the larger of the two ratios.
    c[1] = excess(std::max(double(m_hour_total) / m_hour_ref, double(recent) / m_short_ref),
                  m_log_freq_ratio, m_warn);

    // concentration: this instrument's share of the recent window against its baseline share;
    // an instrument never traded in observation is unseen.
    const std::size_t slot =
        instrument >= 0 ? static_cast<std::size_t>(instrument) : m_instruments.size();
    if (m_recent_filled == m_recent.size()) {
        const std::int32_t old = m_recent[m_recent_next];
        --m_recent_count[old >= 0 ? static_cast<std::size_t>(old) : m_instruments.size()];
    } else {
        ++m_recent_filled;
    }
    m_recent[m_recent_next] = instrument;
    ++m_recent_count[slot];
    if (++m_recent_next == m_recent.size()) m_recent_next = 0;
    if (instrument < 0) {
        c[2] = unseen;
    } else if (m_recent_filled == m_recent.size()) {
        const double share = double(m_recent_count[slot]) / double(m_recent_filled);
        c[2] = excess(share / m_share[slot], m_log_conc_ratio, m_warn);
    }

    // time of day: an hour of the week never active in observation (see the constructor).
    // (minute_of_week from the minute already computed: 1970-01-01 was a Thursday.)
    c[3] = m_time_of_day[static_cast<std::size_t>(floor_mod(minute + 3 * 1440, 7 * 1440) / 60)];

    // origin: a signing region never seen.
    if (m_regions.find(o.region) < 0) c[4] = unseen;

    // Noisy-OR: 1 - prod (1 - c_i)^w_i. One component at its warning level warns on its own;
    // several moderate ones add up; weights below 1 damp a component.
    double keep = 1.0;
    for (std::size_t i = 0; i < score_component_count; ++i) {
        d.components_ppm[i] = static_cast<std::uint32_t>(std::lround(c[i] * 1e6));
        if (c[i] <= 0.0) continue;
        const double k = 1.0 - c[i];
        keep *= m_weights[i] == 1.0 ? k : std::pow(k, m_weights[i]);
    }
    const double s = 1.0 - keep;
    d.score_ppm = static_cast<std::uint32_t>(std::lround(std::clamp(s, 0.0, 1.0) * 1e6));
}

}  // namespace detail

}  // namespace kakunin
