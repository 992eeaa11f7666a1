// Hardening of values: timestamps out of range are errors (never wrapped times), order fields too
// long to record whole are rejected (never cut), Decimals with a scale over 18 are refused before
// any arithmetic, and no command writes its output over a symbolic link, FIFO or device.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "kakunin/audit_sink.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/testing.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using namespace kakunin;
using test::good_order;
using test::monday;
namespace fs = std::filesystem;

namespace {

constexpr TimeNs time_max = std::numeric_limits<TimeNs>::max();

std::string timestamp_error(std::string_view text) {
    try {
        const TimeNs t = parse_timestamp(text);
        FAIL("accepted '" << text << "' as " << t);
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_input);
        return e.what();
    }
    return {};
}

std::string csv_error(const std::string& text) {
    std::istringstream in(text);
    try {
        const auto orders = read_orders_csv(in, "orders.csv");
        FAIL("accepted, first ts " << (orders.empty() ? 0 : orders.front().ts_ns));
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

const std::string header = "ts,instrument,counterparty,side,quantity,price,region\n";

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-hardening") {}
};

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct Run {
    int status;
    std::string out;
};

/// The kakunin program in `dir`, stderr folded into the output, the software KMS unlocked.
Run cli(const TempDir& dir, const std::string& args) {
    const std::string cmd = "cd '" + (dir / "") + "' && KAKUNIN_KMS_PASSPHRASE=hardening '" +
                            KAKUNIN_CLI_PATH + "' " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int status = ::pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool is_symlink(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

bool is_fifo(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
}

}  // namespace

// ---- item 13: one timestamp parser with range checks ----------------------------------------

TEST_CASE("timestamps after 2262 or before 1970 are errors, not wrapped times",
          "[hardening][values][time]") {
    CHECK_THAT(timestamp_error("2300-01-04T12:00:00Z"), Catch::Contains("after 2262-04-11"));
    CHECK_THAT(timestamp_error("2262-04-11T23:47:16.854775808Z"),
               Catch::Contains("after 2262-04-11"));
    CHECK_THAT(timestamp_error("9999-12-31T23:59:59Z"), Catch::Contains("after 2262-04-11"));
    CHECK_THAT(timestamp_error("1969-12-31T23:59:59Z"), Catch::Contains("before 1970"));
    CHECK_THAT(timestamp_error("0000-01-01T00:00:00Z"), Catch::Contains("before 1970"));
    // The edges themselves are times.
    CHECK(parse_timestamp("2262-04-11T23:47:16.854775807Z") == time_max);
    CHECK(parse_timestamp("1970-01-01T00:00:00Z") == 0);
}

TEST_CASE("epoch milliseconds of 14 or more digits are range checked",
          "[hardening][values][time]") {
    CHECK(parse_timestamp("9223372036854") == 9223372036854LL * 1'000'000);
    CHECK_THAT(timestamp_error("9223372036855"), Catch::Contains("after 2262-04-11"));
    CHECK_THAT(timestamp_error("10000000000000"), Catch::Contains("after 2262-04-11"));
    CHECK_THAT(timestamp_error("999999999999999"), Catch::Contains("after 2262-04-11"));
    CHECK_THAT(timestamp_error("99999999999999999999999"), Catch::Contains("after 2262-04-11"));
    // Leading zeros are still the same number.
    CHECK(parse_timestamp("0001704697200000") == utc(2024, 1, 8, 7, 0, 0));
}

TEST_CASE("an orders CSV row dated 2300 names its line and column",
          "[hardening][values][time][replay]") {
    const std::string e = csv_error(header +
                                    "2024-01-04T12:00:00Z,BTC_EUR,exchange_a,BUY,1,"
                                    "40000.00,eu-west-1\n" +
                                    "2300-01-04T12:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,"
                                    "eu-west-1\n");
    CHECK_THAT(e, Catch::StartsWith("orders.csv:3: ts: '2300-01-04T12:00:00Z'"));
    CHECK_THAT(e, Catch::Contains("after 2262-04-11"));
    CHECK_THAT(csv_error(header + "99999999999999,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"),
               Catch::StartsWith("orders.csv:2: ts: '99999999999999'"));
}

TEST_CASE("kakunin replay refuses a CSV row dated 2300 instead of allowing it in 1715",
          "[hardening][values][time][replay][cli]") {
    TempDir dir;
    write_text(dir / "scope.json", test::seed_scope_json);
    // 2300-01-04 12:00 wrapped to a Thursday noon in 1715, inside the seed's weekday window.
    write_text(dir / "orders.csv",
               header + "2300-01-04T12:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n");
    const Run r = cli(dir, "replay --scope scope.json --orders orders.csv --json");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("orders.csv:2: ts: '2300-01-04T12:00:00Z' is not a "
                                      "timestamp: after 2262-04-11"));
    CHECK_THAT(r.out, !Catch::Contains("\"allowed\""));
}

TEST_CASE("time options of the command line are range checked and named",
          "[hardening][values][time][cli]") {
    TempDir dir;
    write_text(dir / "orders.csv",
               header + "2024-01-08T12:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n");
    // The option is parsed before the state directory is opened.
    Run r = cli(dir,
                "replay --dir nowhere --agent agent-7 --orders orders.csv --observe-until "
                "2300-01-01T00:00:00Z");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("--observe-until: '2300-01-01T00:00:00Z' is not a "
                                      "timestamp: after 2262-04-11"));
    // export --to 2300 exported nothing, silently: now it is refused.
    r = cli(dir, "export --dir nowhere --agent agent-7 --out pkg --to 2300-01-01T00:00:00Z");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("'2300-01-01T00:00:00Z' is not a timestamp: after "
                                      "2262-04-11"));
    r = cli(dir, "export --dir nowhere --agent agent-7 --out pkg --from 99999999999999");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("'99999999999999' is not a timestamp"));
}

// ---- item 15: fields recorded whole, decimals in range, outputs never through a link ----------

TEST_CASE("order fields longer than a record holds are rejected with order_field_too_long",
          "[hardening][values][order]") {
    CHECK(std::string(to_string(ReasonCode::order_field_too_long)) == "order_field_too_long");
    CHECK(static_cast<int>(ReasonCode::order_field_too_long) == 405);
    CHECK(ReasonSet::index_of(ReasonCode::order_field_too_long) >= 0);

    ManualClock clock(monday(12));
    Guard guard(parse_scope_json(test::seed_scope_json), clock);
    const std::string fits(max_order_field_length, 'a');
    const std::string over_a = fits + "1", over_b = fits + "2";
    Order o = good_order();
    o.client_order_id = fits;
    CHECK(guard.check(o).allowed());
    for (const std::string& id : {over_a, over_b}) {
        o.client_order_id = id;
        const Decision d = guard.check(o);
        CHECK_FALSE(d.allowed());
        CHECK(d.reasons.contains(ReasonCode::order_field_too_long));
    }
    for (std::string_view Order::*field :
         {&Order::instrument, &Order::counterparty, &Order::region}) {
        o = good_order();
        const std::string longer = std::string(o.*field) + std::string(max_order_field_length, 'x');
        o.*field = longer;
        const Decision d = guard.check(o);
        CHECK_FALSE(d.allowed());
        CHECK(d.reasons.contains(ReasonCode::order_field_too_long));
    }
}

TEST_CASE("an audit record holds the whole id, and a longer one is a rejection on record",
          "[hardening][values][order][audit]") {
    TestAuthority authority;
    auto sink = std::make_shared<MemoryAuditSink>();
    GuardOptions options;
    options.audit = AuditTrailOptions{sink};
    Guard guard(authority.credentials_for(parse_scope_json(test::seed_scope_json)),
                authority.clock(), options);
    const std::string fits = std::string(max_order_field_length - 1, 'i') + "Z";
    const std::string over = fits + "!";
    Order o = good_order();
    o.client_order_id = fits;
    CHECK(guard.check(o).allowed());
    o.client_order_id = over;
    CHECK(guard.check(o).reasons.contains(ReasonCode::order_field_too_long));
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    std::vector<std::string> orders;
    for (const auto& line : sink->lines())
        if (line.find("\"order.") != std::string::npos) orders.push_back(line);
    REQUIRE(orders.size() == 2);
    CHECK_THAT(orders[0], Catch::Contains("\"" + fits + "\""));
    CHECK_THAT(orders[1], Catch::Contains("order_field_too_long"));
}

TEST_CASE("a Decimal with a scale over 18 is refused before any arithmetic",
          "[hardening][values][decimal]") {
    CHECK(Decimal{1, 18}.valid());
    CHECK_FALSE(Decimal{1, 19}.valid());
    CHECK_FALSE(Decimal{1, 255}.is_positive());
    CHECK_FALSE(Decimal{-1, 30}.is_negative());
    CHECK_FALSE(try_parse_decimal("0.0000000000000000001").has_value());  // 19 places

    ManualClock clock(monday(12));
    Guard guard(parse_scope_json(test::seed_scope_json), clock);  // price collar 500 bps
    Order o = good_order();
    // 4000000 x 10^-30 scaled to 10^-30 overflowed __int128 in the collar (UBSan).
    o.price = Decimal{4000000, 30};
    o.reference_price = Decimal{4000000, 2};
    Decision d = guard.check(o);
    CHECK_FALSE(d.allowed());
    CHECK(d.reasons.contains(ReasonCode::invalid_price));
    o = good_order();
    o.reference_price = Decimal{4000000, 30};
    d = guard.check(o);
    CHECK_FALSE(d.allowed());
    CHECK(d.reasons.contains(ReasonCode::invalid_reference_price));
    o = good_order();
    o.quantity = Decimal{1, 19};
    d = guard.check(o);
    CHECK_FALSE(d.allowed());
    CHECK(d.reasons.contains(ReasonCode::invalid_quantity));

    // A hand-built scope with such a limit does not compile into a Guard; the error names it.
    Scope s = parse_scope_json(test::seed_scope_json);
    s.max_transaction.amount = Decimal{50000000, 19};
    CHECK_THROWS_WITH(Guard(s, clock), Catch::Contains("max_transaction.amount: scale 19"));
    s = parse_scope_json(test::seed_scope_json);
    s.limits.max_order_quantity[0].second = Decimal{10, 40};
    CHECK_THROWS_WITH(Guard(s, clock),
                      Catch::Contains("limits.max_order_quantity.BTC_EUR: scale 40"));
}

TEST_CASE("no command writes its output through a symbolic link or over a FIFO",
          "[hardening][values][cli][out]") {
    TempDir dir;
    REQUIRE(cli(dir, "ca init --dir state").status == 0);
    write_text(dir / "precious.txt", "keep me\n");
    REQUIRE(::symlink((dir / "precious.txt").c_str(), (dir / "link.pem").c_str()) == 0);
    REQUIRE(::mkfifo((dir / "fifo.pem").c_str(), 0600) == 0);

    Run r = cli(dir, "crl --dir state --out link.pem");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("link.pem: exists and is a symbolic link"));
    CHECK(is_symlink(dir / "link.pem"));
    CHECK(read_text(dir / "precious.txt") == "keep me\n");

    r = cli(dir, "crl --dir state --out fifo.pem");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("fifo.pem: exists and is a FIFO"));
    CHECK(is_fifo(dir / "fifo.pem"));

    r = cli(dir, "crl --dir state --out state");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("state: exists and is a directory"));

    // A regular file is replaced, as before.
    write_text(dir / "crl.pem", "old\n");
    r = cli(dir, "crl --dir state --out crl.pem");
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK_THAT(read_text(dir / "crl.pem"), Catch::StartsWith("-----BEGIN X509 CRL-----"));

    // replay --decisions-out wrote through the link into its target.
    write_text(dir / "scope.json", test::seed_scope_json);
    write_text(dir / "orders.csv",
               header + "2024-01-08T12:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n");
    r = cli(dir, "replay --scope scope.json --orders orders.csv --decisions-out link.pem");
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK_THAT(r.out, Catch::Contains("link.pem: exists and is a symbolic link"));
    CHECK(read_text(dir / "precious.txt") == "keep me\n");
}
