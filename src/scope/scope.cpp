// Scope validation, JSON parsing and printing. See include/kakunin/scope.hpp and DESIGN §3.
#include "kakunin/scope.hpp"

#include "kakunin/order.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace kakunin {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw Error(ErrorCategory::invalid_input, where + ": " + what);
}

constexpr const char* k_day_names[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

bool is_upper_alnum(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

bool is_identifier(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '.' || c == ':';
    });
}

bool is_instrument(const std::string& s) {
    if (s.size() < 3 || s.size() > 32) return false;
    const auto pos = s.find('_');
    if (pos == std::string::npos || pos == 0 || pos + 1 == s.size()) return false;
    if (s.find('_', pos + 1) != std::string::npos) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return c == '_' || is_upper_alnum(c); });
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

void validate_list(const std::vector<std::string>& list, const std::string& name,
                   bool (*well_formed)(const std::string&), const char* form) {
    if (list.empty()) fail(name, "must list at least one entry");
    if (list.size() > Scope::max_list_size)
        fail(name, "more than " + std::to_string(Scope::max_list_size) + " entries");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string where = name + "[" + std::to_string(i) + "]";
        if (!well_formed(list[i])) fail(where, quoted(list[i]) + " is not " + form);
        if (!seen.insert(list[i]).second) fail(where, "duplicate " + quoted(list[i]));
    }
}

/// A hand-built Decimal may carry any scale; the limits hold numbers only (scale <= 18).
void validate_scale(Decimal d, const std::string& where) {
    if (!d.valid())
        fail(where, "scale " + std::to_string(d.scale) + " is more than " +
                        std::to_string(Decimal::max_scale) + " decimal places");
}

void validate_money(const Money& m, const std::string& name) {
    if (m.currency.empty() || !is_iso4217(m.currency.code()))
        fail(name + ".currency", "not an ISO 4217 currency code");
    validate_scale(m.amount, name + ".amount");
    if (!m.amount.is_positive()) fail(name + ".amount", "must be greater than zero");
}

void validate_same_currency(const Money& m, const std::string& name, const Scope& s) {
    validate_money(m, name);
    if (m.currency != s.max_transaction.currency)
        fail(name + ".currency",
             "must equal the max_transaction currency " + s.max_transaction.currency.code());
}

/// The order lifecycle limits (docs/lifecycle.md).
void validate_lifecycle(const Scope& s) {
    const auto& l = s.limits;
    if (l.max_position.size() > Scope::max_list_size)
        fail("limits.max_position",
             "more than " + std::to_string(Scope::max_list_size) + " instruments");
    std::string previous;
    for (std::size_t i = 0; i < l.max_position.size(); ++i) {
        const auto& [instrument, limit] = l.max_position[i];
        const std::string where = "limits.max_position." + instrument;
        if (std::find(s.instruments.begin(), s.instruments.end(), instrument) ==
            s.instruments.end())
            fail(where, "instrument is not in 'instruments'");
        if (i > 0 && instrument <= previous) fail(where, "duplicate or unsorted instrument");
        if (limit.max_long.is_negative()) fail(where + ".long", "must not be negative");
        if (limit.max_short.is_negative()) fail(where + ".short", "must not be negative");
        previous = instrument;
    }
    if (l.max_open_orders &&
        (*l.max_open_orders < 1 || *l.max_open_orders > Scope::max_open_orders_limit))
        fail("limits.max_open_orders",
             "must be from 1 to " + std::to_string(Scope::max_open_orders_limit));
    if (l.max_messages_per_second &&
        (*l.max_messages_per_second < 1 || *l.max_messages_per_second > Scope::max_rate_limit))
        fail("limits.max_messages_per_second",
             "must be from 1 to " + std::to_string(Scope::max_rate_limit));
    if (l.max_working_notional)
        validate_same_currency(*l.max_working_notional, "limits.max_working_notional", s);
    if (l.max_daily_loss) validate_same_currency(*l.max_daily_loss, "limits.max_daily_loss", s);
}

std::string hhmm(unsigned minute) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02u:%02u", minute / 60, minute % 60);
    return buf;
}

}  // namespace

const char* day_name(int bit) noexcept { return bit >= 0 && bit < 7 ? k_day_names[bit] : "?"; }

void validate(const Scope& s) {
    if (s.version != Scope::current_version)
        fail("version", "unsupported version " + std::to_string(s.version) + " (this build reads " +
                            std::to_string(Scope::current_version) + ")");
    validate_money(s.max_transaction, "max_transaction");
    validate_list(s.instruments, "instruments", is_instrument, "BASE_QUOTE (A-Z, 0-9, one '_')");
    validate_list(s.counterparties, "counterparties", is_identifier,
                  "an identifier (1-64 of A-Z a-z 0-9 _ - . :)");
    validate_list(s.regions, "regions", is_identifier,
                  "an identifier (1-64 of A-Z a-z 0-9 _ - . :)");
    const std::string currency = s.max_transaction.currency.code();
    for (std::size_t i = 0; i < s.instruments.size(); ++i) {
        const std::string quote{quote_of(s.instruments[i])};
        if (quote != currency)
            fail("instruments[" + std::to_string(i) + "]",
                 quoted(s.instruments[i]) + " is quoted in " + quote +
                     ", not in the max_transaction currency " + currency +
                     " (amounts are never converted)");
    }
    if (s.trading_hours.empty()) fail("trading_hours", "must list at least one window");
    if (s.trading_hours.size() > Scope::max_list_size) fail("trading_hours", "too many windows");
    for (std::size_t i = 0; i < s.trading_hours.size(); ++i) {
        const auto& w = s.trading_hours[i];
        const std::string where = "trading_hours[" + std::to_string(i) + "]";
        if (w.days == 0 || w.days >= 128) fail(where + ".days", "must name at least one day");
        if (w.from_minute >= 1440) fail(where + ".from", "must be 00:00 to 23:59");
        if (w.to_minute > 1440 || w.to_minute <= w.from_minute)
            fail(where + ".to",
                 "must be after 'from' and at most 24:00 (split overnight windows "
                 "into two)");
    }
    const auto& l = s.limits;
    std::string previous;
    for (std::size_t i = 0; i < l.max_order_quantity.size(); ++i) {
        const auto& [instrument, quantity] = l.max_order_quantity[i];
        const std::string where = "limits.max_order_quantity." + instrument;
        if (std::find(s.instruments.begin(), s.instruments.end(), instrument) ==
            s.instruments.end())
            fail(where, "instrument is not in 'instruments'");
        if (i > 0 && instrument <= previous) fail(where, "duplicate or unsorted instrument");
        validate_scale(quantity, where);
        if (!quantity.is_positive()) fail(where, "must be greater than zero");
        previous = instrument;
    }
    if (l.price_collar_bps &&
        (*l.price_collar_bps < 1 || *l.price_collar_bps > Scope::max_collar_bps))
        fail("limits.price_collar_bps",
             "must be from 1 to " + std::to_string(Scope::max_collar_bps));
    if (l.max_orders_per_second &&
        (*l.max_orders_per_second < 1 || *l.max_orders_per_second > Scope::max_rate_limit))
        fail("limits.max_orders_per_second",
             "must be from 1 to " + std::to_string(Scope::max_rate_limit));
    if (l.max_daily_notional) {
        validate_money(*l.max_daily_notional, "limits.max_daily_notional");
        if (l.max_daily_notional->currency != s.max_transaction.currency)
            fail("limits.max_daily_notional.currency",
                 "must equal the max_transaction currency " + currency);
    }
    validate_lifecycle(s);
}

// ---- JSON ------------------------------------------------------------------------------------

namespace {

/// Tracks where the parser is, so duplicate members can be named with their path.
class PathTracker {
public:
    std::string path() const {
        std::string p;
        for (const auto& f : m_frames) {
            if (f.is_array) {
                if (f.index >= 0) p += "[" + std::to_string(f.index) + "]";
            } else if (!f.key.empty()) {
                if (!p.empty()) p += ".";
                p += f.key;
            }
        }
        return p;
    }
    bool on_event(json::parse_event_t event, const json& parsed) {
        using E = json::parse_event_t;
        switch (event) {
            case E::object_start:
                bump();
                m_frames.push_back({false, {}, -1, {}});
                break;
            case E::array_start:
                bump();
                m_frames.push_back({true, {}, -1, {}});
                break;
            case E::key: {
                auto& f = m_frames.back();
                f.key = parsed.get<std::string>();
                if (!f.keys.insert(f.key).second)
                    fail(path().empty() ? f.key : path(), "duplicate member");
                break;
            }
            case E::object_end:
            case E::array_end: m_frames.pop_back(); break;
            case E::value: bump(); break;
        }
        return true;
    }

private:
    void bump() {
        if (!m_frames.empty() && m_frames.back().is_array) ++m_frames.back().index;
    }
    struct Frame {
        bool is_array;
        std::string key;
        long index;
        std::set<std::string> keys;
    };
    std::vector<Frame> m_frames;
};

void only_members(const json& obj, const std::string& where,
                  std::initializer_list<const char*> allowed) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        bool ok = false;
        for (const char* a : allowed) ok = ok || it.key() == a;
        if (!ok) fail(where.empty() ? it.key() : where + "." + it.key(), "unknown member");
    }
}

const json& member(const json& obj, const std::string& where, const char* name) {
    auto it = obj.find(name);
    const std::string path = where.empty() ? name : where + "." + name;
    if (it == obj.end()) fail(path, "missing");
    return *it;
}

const json& object(const json& v, const std::string& where) {
    if (!v.is_object()) fail(where, "must be an object");
    return v;
}

std::string text(const json& v, const std::string& where) {
    if (!v.is_string()) fail(where, "must be a string");
    return v.get<std::string>();
}

Decimal decimal(const json& v, const std::string& where) {
    if (!v.is_string())
        fail(where, "must be a decimal string such as \"10.5\" (JSON numbers are not exact)");
    auto d = try_parse_decimal(v.get_ref<const std::string&>());
    if (!d)
        fail(where, quoted(v.get<std::string>()) +
                        " is not a decimal number (digits, optional '.', at most 18 fractional "
                        "digits, within 64 bits)");
    return *d;
}

std::uint32_t whole_number(const json& v, const std::string& where) {
    if (!v.is_number_integer()) fail(where, "must be a whole number");
    if (v.is_number_unsigned()) {
        auto u = v.get<std::uint64_t>();
        if (u > 0xffffffffu) fail(where, "too large");
        return static_cast<std::uint32_t>(u);
    }
    auto i = v.get<std::int64_t>();
    if (i < 0) fail(where, "must not be negative");
    if (i > 0xffffffffLL) fail(where, "too large");
    return static_cast<std::uint32_t>(i);
}

Money money(const json& v, const std::string& where) {
    object(v, where);
    only_members(v, where, {"currency", "amount"});
    Money m;
    const std::string code = text(member(v, where, "currency"), where + ".currency");
    if (!is_iso4217(code)) fail(where + ".currency", quoted(code) + " is not an ISO 4217 code");
    m.currency = Currency::parse(code);
    m.amount = decimal(member(v, where, "amount"), where + ".amount");
    if (!m.amount.is_positive()) fail(where + ".amount", "must be greater than zero");
    return m;
}

std::vector<std::string> string_list(const json& v, const std::string& where) {
    if (!v.is_array()) fail(where, "must be an array of strings");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < v.size(); ++i)
        out.push_back(text(v[i], where + "[" + std::to_string(i) + "]"));
    return out;
}

std::uint16_t clock_minute(const json& v, const std::string& where, bool allow_24) {
    const std::string t = text(v, where);
    const bool shape = t.size() == 5 && t[2] == ':' &&
                       std::isdigit(static_cast<unsigned char>(t[0])) &&
                       std::isdigit(static_cast<unsigned char>(t[1])) &&
                       std::isdigit(static_cast<unsigned char>(t[3])) &&
                       std::isdigit(static_cast<unsigned char>(t[4]));
    if (!shape) fail(where, quoted(t) + " is not HH:MM");
    const int h = (t[0] - '0') * 10 + (t[1] - '0');
    const int m = (t[3] - '0') * 10 + (t[4] - '0');
    if (allow_24 && h == 24 && m == 0) return 1440;
    if (h > 23 || m > 59)
        fail(where, quoted(t) + " is not a time of day" +
                        (allow_24 ? " (00:00 to 24:00)" : " (00:00 to 23:59)"));
    return static_cast<std::uint16_t>(h * 60 + m);
}

TradingWindow window(const json& v, const std::string& where) {
    object(v, where);
    only_members(v, where, {"days", "from", "to"});
    TradingWindow w;
    const json& days = member(v, where, "days");
    if (!days.is_array() || days.empty()) fail(where + ".days", "must be a non-empty array");
    for (std::size_t i = 0; i < days.size(); ++i) {
        const std::string d = text(days[i], where + ".days[" + std::to_string(i) + "]");
        int bit = -1;
        for (int b = 0; b < 7; ++b)
            if (d == k_day_names[b]) bit = b;
        if (bit < 0)
            fail(where + ".days[" + std::to_string(i) + "]",
                 quoted(d) + " is not one of Mon Tue Wed Thu Fri Sat Sun");
        if (w.days & (1u << bit)) fail(where + ".days[" + std::to_string(i) + "]", "duplicate day");
        w.days = static_cast<std::uint8_t>(w.days | (1u << bit));
    }
    w.from_minute = clock_minute(member(v, where, "from"), where + ".from", false);
    w.to_minute = clock_minute(member(v, where, "to"), where + ".to", true);
    return w;
}

/// limits.max_position: {"INSTRUMENT": {"long": "Q", "short": "Q"}, ...}, both sides required.
std::vector<std::pair<std::string, PositionLimit>> position_limits(const json& v) {
    const std::string where = "limits.max_position";
    object(v, where);
    std::vector<std::pair<std::string, PositionLimit>> out;
    for (auto e = v.begin(); e != v.end(); ++e) {  // nlohmann objects iterate sorted
        const std::string at = where + "." + e.key();
        object(e.value(), at);
        only_members(e.value(), at, {"long", "short"});
        PositionLimit limit;
        limit.max_long = decimal(member(e.value(), at, "long"), at + ".long");
        limit.max_short = decimal(member(e.value(), at, "short"), at + ".short");
        out.emplace_back(e.key(), limit);
    }
    return out;
}

/// The order lifecycle members of "limits".
void lifecycle_from_json(const json& l, PreTradeLimits& out) {
    if (auto p = l.find("max_position"); p != l.end()) out.max_position = position_limits(*p);
    if (auto o = l.find("max_open_orders"); o != l.end())
        out.max_open_orders = whole_number(*o, "limits.max_open_orders");
    if (auto w = l.find("max_working_notional"); w != l.end())
        out.max_working_notional = money(*w, "limits.max_working_notional");
    if (auto m = l.find("max_messages_per_second"); m != l.end())
        out.max_messages_per_second = whole_number(*m, "limits.max_messages_per_second");
    if (auto d = l.find("max_daily_loss"); d != l.end())
        out.max_daily_loss = money(*d, "limits.max_daily_loss");
}

Scope from_json(const json& root) {
    object(root, "scope");
    only_members(root, "",
                 {"version", "max_transaction", "instruments", "counterparties", "trading_hours",
                  "regions", "limits"});
    Scope s;
    const json& version = member(root, "", "version");
    if (!version.is_number_integer()) fail("version", "must be a whole number");
    s.version = static_cast<int>(whole_number(version, "version"));
    if (s.version != Scope::current_version)
        fail("version", "unsupported version " + std::to_string(s.version));
    s.max_transaction = money(member(root, "", "max_transaction"), "max_transaction");
    s.instruments = string_list(member(root, "", "instruments"), "instruments");
    s.counterparties = string_list(member(root, "", "counterparties"), "counterparties");
    s.regions = string_list(member(root, "", "regions"), "regions");
    const json& hours = member(root, "", "trading_hours");
    if (!hours.is_array()) fail("trading_hours", "must be an array of windows");
    for (std::size_t i = 0; i < hours.size(); ++i)
        s.trading_hours.push_back(window(hours[i], "trading_hours[" + std::to_string(i) + "]"));
    if (auto it = root.find("limits"); it != root.end()) {
        const json& l = object(*it, "limits");
        only_members(l, "limits",
                     {"max_order_quantity", "price_collar_bps", "max_orders_per_second",
                      "max_daily_notional", "max_position", "max_open_orders",
                      "max_working_notional", "max_messages_per_second", "max_daily_loss"});
        if (auto q = l.find("max_order_quantity"); q != l.end()) {
            object(*q, "limits.max_order_quantity");
            for (auto e = q->begin(); e != q->end(); ++e)  // nlohmann objects iterate sorted
                s.limits.max_order_quantity.emplace_back(
                    e.key(), decimal(e.value(), "limits.max_order_quantity." + e.key()));
        }
        if (auto c = l.find("price_collar_bps"); c != l.end())
            s.limits.price_collar_bps = whole_number(*c, "limits.price_collar_bps");
        if (auto r = l.find("max_orders_per_second"); r != l.end())
            s.limits.max_orders_per_second = whole_number(*r, "limits.max_orders_per_second");
        if (auto d = l.find("max_daily_notional"); d != l.end())
            s.limits.max_daily_notional = money(*d, "limits.max_daily_notional");
        lifecycle_from_json(l, s.limits);
    }
    validate(s);
    return s;
}

json money_json(const Money& m) {
    return json{{"currency", m.currency.code()}, {"amount", to_string(m.amount)}};
}

void lifecycle_to_json(const PreTradeLimits& limits, json& l) {
    if (!limits.max_position.empty()) {
        json p = json::object();
        for (const auto& [instrument, limit] : limits.max_position)
            p[instrument] =
                json{{"long", to_string(limit.max_long)}, {"short", to_string(limit.max_short)}};
        l["max_position"] = p;
    }
    if (limits.max_open_orders) l["max_open_orders"] = *limits.max_open_orders;
    if (limits.max_working_notional)
        l["max_working_notional"] = money_json(*limits.max_working_notional);
    if (limits.max_messages_per_second)
        l["max_messages_per_second"] = *limits.max_messages_per_second;
    if (limits.max_daily_loss) l["max_daily_loss"] = money_json(*limits.max_daily_loss);
}

json to_json_value(const Scope& s) {
    json j;
    j["version"] = s.version;
    j["max_transaction"] = money_json(s.max_transaction);
    j["instruments"] = s.instruments;
    j["counterparties"] = s.counterparties;
    j["regions"] = s.regions;
    j["trading_hours"] = json::array();
    for (const auto& w : s.trading_hours) {
        json days = json::array();
        for (int b = 0; b < 7; ++b)
            if (w.days & (1u << b)) days.push_back(k_day_names[b]);
        j["trading_hours"].push_back(
            json{{"days", days}, {"from", hhmm(w.from_minute)}, {"to", hhmm(w.to_minute)}});
    }
    if (!s.limits.empty()) {
        json l = json::object();
        if (!s.limits.max_order_quantity.empty()) {
            json q = json::object();
            for (const auto& [instrument, quantity] : s.limits.max_order_quantity)
                q[instrument] = to_string(quantity);
            l["max_order_quantity"] = q;
        }
        if (s.limits.price_collar_bps) l["price_collar_bps"] = *s.limits.price_collar_bps;
        if (s.limits.max_orders_per_second)
            l["max_orders_per_second"] = *s.limits.max_orders_per_second;
        if (s.limits.max_daily_notional)
            l["max_daily_notional"] = money_json(*s.limits.max_daily_notional);
        lifecycle_to_json(s.limits, l);
        j["limits"] = l;
    }
    return j;
}

}  // namespace

Scope parse_scope_json(std::string_view text_in) {
    PathTracker tracker;
    json root;
    try {
        root = json::parse(
            text_in.begin(), text_in.end(),
            [&tracker](int, json::parse_event_t e, json& parsed) {
                return tracker.on_event(e, parsed);
            },
            /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const json::exception& e) {
        // nlohmann's message carries the line and column; drop its "[json.exception...]" tag.
        const std::string what = e.what();
        const auto pos = what.find("] ");
        fail("scope JSON", pos == std::string::npos ? what : what.substr(pos + 2));
    }
    return from_json(root);
}

Scope load_scope_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, path + ": cannot open scope file");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return parse_scope_json(ss.str());
    } catch (const Error& e) {
        throw Error(e.category(), path + ": " + e.what());
    }
}

std::string to_json(const Scope& scope) { return to_json_value(scope).dump(); }

std::string to_pretty_json(const Scope& scope) { return to_json_value(scope).dump(2); }

}  // namespace kakunin
