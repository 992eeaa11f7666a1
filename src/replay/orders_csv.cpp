// The orders CSV of DESIGN §6 and the timestamps it uses.
#include <cctype>
#include <fstream>
#include <istream>
#include <limits>

#include "kakunin/replay.hpp"

namespace kakunin {
namespace {

[[noreturn]] void fail_at(const std::string& name, std::size_t line, const std::string& what) {
    throw Error(ErrorCategory::invalid_input, name + ":" + std::to_string(line) + ": " + what);
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

unsigned digits_value(std::string_view s) {
    unsigned v = 0;
    for (char c : s) v = v * 10 + static_cast<unsigned>(c - '0');
    return v;
}

/// Splits one CSV record (RFC 4180 quoting, no embedded newlines). Returns false on a quote error.
bool split_csv(const std::string& line, std::vector<std::string>& fields) {
    fields.clear();
    std::string field;
    std::size_t i = 0;
    for (;;) {
        field.clear();
        if (i < line.size() && line[i] == '"') {
            ++i;
            for (;;) {
                if (i >= line.size()) return false;  // unterminated
                if (line[i] == '"') {
                    if (i + 1 < line.size() && line[i + 1] == '"') {
                        field.push_back('"');
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                field.push_back(line[i++]);
            }
            if (i < line.size() && line[i] != ',') return false;  // text after closing quote
        } else {
            while (i < line.size() && line[i] != ',') {
                if (line[i] == '"') return false;
                field.push_back(line[i++]);
            }
        }
        fields.push_back(field);
        if (i >= line.size()) return true;
        ++i;  // the comma
    }
}

}  // namespace

TimeNs parse_timestamp(std::string_view t) {
    auto bad = [&](const std::string& why) -> Error {
        return Error(ErrorCategory::invalid_input,
                     "'" + std::string(t) + "' is not a timestamp: " + why);
    };
    // Every timestamp is a TimeNs from the epoch on: nothing before 1970 (no clock reads it, and
    // epoch milliseconds have no sign), nothing after 2262-04-11T23:47:16.854775807Z.
    constexpr const char* too_late =
        "after 2262-04-11T23:47:16.854775807Z, the last time representable";
    constexpr TimeNs highest = std::numeric_limits<TimeNs>::max();
    if (all_digits(t)) {
        constexpr std::int64_t max_ms = highest / 1'000'000;
        std::int64_t ms = 0;
        for (char c : t) {
            ms = ms * 10 + (c - '0');
            if (ms > max_ms) throw bad(std::string("epoch milliseconds ") + too_late);
        }
        return ms * 1'000'000;
    }
    // YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00|-00:00)
    if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't') ||
        t[13] != ':' || t[16] != ':')
        throw bad("expected RFC 3339 (2024-01-08T07:00:00Z) or epoch milliseconds");
    const std::string_view y = t.substr(0, 4), mo = t.substr(5, 2), d = t.substr(8, 2),
                           h = t.substr(11, 2), mi = t.substr(14, 2), s = t.substr(17, 2);
    for (auto part : {y, mo, d, h, mi, s})
        if (!all_digits(part)) throw bad("expected digits in date and time");
    const unsigned year = digits_value(y), month = digits_value(mo), day = digits_value(d),
                   hour = digits_value(h), minute = digits_value(mi), second = digits_value(s);
    static constexpr unsigned month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
        (month == 2 && day == 29 && !leap))
        throw bad("no such date");
    if (hour > 23 || minute > 59 || second > 59) throw bad("no such time of day");
    std::size_t i = 19;
    std::uint32_t nanos = 0;
    if (i < t.size() && t[i] == '.') {
        ++i;
        std::size_t digits = 0;
        while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) {
            if (digits == 9) throw bad("more than 9 fractional digits");
            nanos = nanos * 10 + static_cast<std::uint32_t>(t[i] - '0');
            ++digits;
            ++i;
        }
        if (digits == 0) throw bad("empty fraction");
        for (std::size_t k = digits; k < 9; ++k) nanos *= 10;
    }
    const std::string_view zone = t.substr(i);
    if (zone != "Z" && zone != "z" && zone != "+00:00" && zone != "-00:00")
        throw bad("the time must be UTC ('Z' or '+00:00')");
    if (year < 1970) throw bad("before 1970-01-01T00:00:00Z");
    // Seconds fit easily (year <= 9999); the nanoseconds may not.
    const std::int64_t seconds =
        ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second;
    TimeNs ns;
    if (__builtin_mul_overflow(seconds, std::int64_t{1'000'000'000}, &ns) ||
        __builtin_add_overflow(ns, static_cast<std::int64_t>(nanos), &ns))
        throw bad(too_late);
    return ns;
}

std::string format_timestamp(TimeNs t) {
    const CivilTime c = civil_from_ns(t);
    char buf[64];
    if (c.nanos == 0)
        std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02u:%02u:%02uZ",
                      static_cast<long long>(c.year), c.month, c.day, c.hour, c.minute, c.second);
    else
        std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02u:%02u:%02u.%09uZ",
                      static_cast<long long>(c.year), c.month, c.day, c.hour, c.minute, c.second,
                      c.nanos);
    return buf;
}

std::vector<ReplayOrder> read_orders_csv(std::istream& in, const std::string& name) {
    enum Column {
        ts,
        instrument,
        counterparty,
        side,
        quantity,
        price,
        region,
        reference_price,
        client_order_id,
        reasoning,
        column_count
    };
    static const char* const names[column_count] = {
        "ts",     "instrument",      "counterparty",    "side",     "quantity", "price",
        "region", "reference_price", "client_order_id", "reasoning"};
    constexpr int required = 7;

    std::string line;
    std::vector<std::string> fields;
    std::size_t line_no = 0;
    int where[column_count];
    std::fill(std::begin(where), std::end(where), -1);

    // Header.
    while (std::getline(in, line)) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line_no == 1 && line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0)
            line.erase(0, 3);  // UTF-8 byte order mark
        if (!line.empty()) break;
    }
    if (line.empty()) fail_at(name, line_no == 0 ? 1 : line_no, "empty file: no header line");
    if (!split_csv(line, fields)) fail_at(name, line_no, "malformed quoting in the header");
    for (std::size_t i = 0; i < fields.size(); ++i) {
        int col = -1;
        for (int c = 0; c < column_count; ++c)
            if (fields[i] == names[c]) col = c;
        if (col < 0) fail_at(name, line_no, "unknown column '" + fields[i] + "'");
        if (where[col] >= 0) fail_at(name, line_no, "duplicate column '" + fields[i] + "'");
        where[col] = static_cast<int>(i);
    }
    for (int c = 0; c < required; ++c)
        if (where[c] < 0)
            fail_at(name, line_no,
                    std::string("missing column '") + names[c] +
                        "' (header: ts,instrument,counterparty,side,quantity,price,region)");
    const std::size_t width = fields.size();

    std::vector<ReplayOrder> orders;
    TimeNs previous = INT64_MIN;
    while (std::getline(in, line)) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        if (!split_csv(line, fields)) fail_at(name, line_no, "malformed quoting");
        if (fields.size() != width)
            fail_at(name, line_no,
                    "expected " + std::to_string(width) + " fields, found " +
                        std::to_string(fields.size()));
        auto field = [&](Column c) -> const std::string& {
            return fields[static_cast<std::size_t>(where[c])];
        };
        auto decimal = [&](Column c) {
            auto d = try_parse_decimal(field(c));
            if (!d)
                fail_at(name, line_no,
                        std::string(names[c]) + ": '" + field(c) + "' is not a decimal number");
            return *d;
        };
        ReplayOrder o;
        o.line = line_no;
        try {
            o.ts_ns = parse_timestamp(field(ts));
        } catch (const Error& e) {
            fail_at(name, line_no, std::string("ts: ") + e.what());
        }
        if (o.ts_ns < previous)
            fail_at(name, line_no,
                    "rows must be in time order (this row is earlier than the one before)");
        previous = o.ts_ns;
        o.instrument = field(instrument);
        o.counterparty = field(counterparty);
        o.region = field(region);
        if (o.instrument.empty()) fail_at(name, line_no, "instrument: empty");
        if (field(side) == "BUY")
            o.side = Side::buy;
        else if (field(side) == "SELL")
            o.side = Side::sell;
        else
            fail_at(name, line_no, "side: '" + field(side) + "' is neither BUY nor SELL");
        o.quantity = decimal(quantity);
        o.price = decimal(price);
        if (where[reference_price] >= 0 && !field(reference_price).empty())
            o.reference_price = decimal(reference_price);
        if (where[client_order_id] >= 0) o.client_order_id = field(client_order_id);
        if (where[reasoning] >= 0) o.reasoning = field(reasoning);
        orders.push_back(std::move(o));
    }
    if (in.bad()) throw Error(ErrorCategory::io, name + ": read error");
    return orders;
}

std::vector<ReplayOrder> load_orders_csv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, path + ": cannot open orders file");
    return read_orders_csv(in, path);
}

}  // namespace kakunin
