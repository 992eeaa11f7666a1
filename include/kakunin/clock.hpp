// kakunin/clock.hpp — time is injected. Everything in Kakunin that reads time takes a Clock.
//
// Live trading uses SystemClock; tests and backtests use ManualClock and move it explicitly:
//
//   kakunin::ManualClock clock(kakunin::utc(2024, 1, 8, 7, 0, 0));   // Monday 07:00:00 UTC
//   kakunin::Guard guard(scope, clock);
//   clock.advance(std::chrono::seconds(1));
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>

namespace kakunin {

/// Nanoseconds since the Unix epoch, UTC (leap seconds ignored, as POSIX time does).
using TimeNs = std::int64_t;

/// Threading: now_ns() may be called from any thread at any time; it must not block or throw.
class Clock {
public:
    virtual ~Clock() = default;
    virtual TimeNs now_ns() const noexcept = 0;
};

class SystemClock final : public Clock {
public:
    TimeNs now_ns() const noexcept override {
        timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return static_cast<TimeNs>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    }
};

/// A clock that moves only when told. Safe to read from many threads while one thread sets it.
class ManualClock final : public Clock {
public:
    explicit ManualClock(TimeNs start = 0) noexcept : m_now(start) {}
    TimeNs now_ns() const noexcept override { return m_now.load(std::memory_order_acquire); }
    void set(TimeNs t) noexcept { m_now.store(t, std::memory_order_release); }
    template <class Rep, class Period>
    void advance(std::chrono::duration<Rep, Period> d) noexcept {
        m_now.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(),
                        std::memory_order_acq_rel);
    }

private:
    std::atomic<TimeNs> m_now;
};

// ---- calendar arithmetic (proleptic Gregorian, UTC) ------------------------------------------

/// Days since 1970-01-01 for a civil date (H. Hinnant's days_from_civil algorithm).
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct CivilTime {
    std::int64_t year;
    unsigned month, day, hour, minute, second;
    std::uint32_t nanos;
};

constexpr CivilTime civil_from_ns(TimeNs t) noexcept {
    constexpr std::int64_t ns_per_day = 86'400'000'000'000;
    std::int64_t days = t / ns_per_day;
    std::int64_t rem = t % ns_per_day;
    if (rem < 0) {
        rem += ns_per_day;
        --days;
    }
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t secs = rem / 1'000'000'000;
    return CivilTime{static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2),
                     m,
                     d,
                     static_cast<unsigned>(secs / 3600),
                     static_cast<unsigned>(secs / 60 % 60),
                     static_cast<unsigned>(secs % 60),
                     static_cast<std::uint32_t>(rem % 1'000'000'000)};
}

/// UTC civil time to nanoseconds since the epoch.
constexpr TimeNs utc(std::int64_t year, unsigned month, unsigned day, unsigned hour = 0,
                     unsigned minute = 0, unsigned second = 0, std::uint32_t nanos = 0) noexcept {
    return ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60'000'000'000 +
           static_cast<TimeNs>(second) * 1'000'000'000 + nanos;
}

/// Floor division of a time by a unit, correct for times before the epoch.
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

/// UTC day number since the epoch.
/// a mod b in [0, b) for b > 0.
constexpr std::int64_t floor_mod(std::int64_t a, std::int64_t b) noexcept {
    return a - floor_div(a, b) * b;
}

constexpr std::int64_t utc_day(TimeNs t) noexcept { return floor_div(t, 86'400'000'000'000); }

/// Minute of the UTC week, Monday 00:00 = 0 ... Sunday 23:59 = 10079. 1970-01-01 was a Thursday.
constexpr unsigned minute_of_week(TimeNs t) noexcept {
    const std::int64_t minutes = floor_div(t, 60'000'000'000);
    const std::int64_t days = floor_div(minutes, 1440);
    const std::int64_t dow = ((days + 3) % 7 + 7) % 7;  // Monday = 0
    return static_cast<unsigned>(dow * 1440 + (minutes - days * 1440));
}

}  // namespace kakunin
