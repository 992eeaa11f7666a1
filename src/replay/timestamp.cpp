// The one parser of timestamps (the replay inputs and every command-line time option).
#include <cctype>
#include <cstdio>
#include <limits>

#include "kakunin/error.hpp"
#include "kakunin/replay.hpp"

namespace kakunin {
namespace {

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

}  // namespace kakunin
