// The Prometheus metrics (include/kakunin/metrics.hpp, docs/metrics.md): /metrics scraped over
// real HTTP after known checks; a real Prometheus server (Debian's prometheus) scraping the
// exporter and answering a query with what the Guards counted; sources; and Guards removed while
// scrapes run.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "audit_test_support.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/detail/latency_sampler.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/metrics.hpp"
#include "kakunin/postgres_firm_limits.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "kakunin/testing.hpp"
#include "pg_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

extern char** environ;

using namespace kakunin;
using namespace std::chrono_literals;

namespace {

// ---- HTTP, the exposition text ----

struct HttpAnswer {
    int status = 0;
    std::string headers;
    std::string body;
};

/// GET http://127.0.0.1:port/target over a fresh connection (HTTP/1.0: the server closes).
HttpAnswer http_get(int port, const std::string& target) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
    }
    const std::string request =
        "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    std::size_t sent = 0;
    while (sent < request.size()) {
        const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
    }
    std::string raw;
    char buf[8192];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    HttpAnswer a;
    const auto end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/", 0) != 0 || end == std::string::npos) return a;
    a.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
    a.headers = raw.substr(0, end);
    a.body = raw.substr(end + 4);
    return a;
}

int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    ::close(fd);
    return ntohs(addr.sin_port);
}

using Labels = std::map<std::string, std::string>;

/// One sample of the exposition text: its name and labels, and its value.
struct Sample {
    std::string name;
    Labels labels;
    double value = 0;
};

std::vector<Sample> parse_exposition(const std::string& text) {
    std::vector<Sample> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.empty() || line[0] == '#') continue;
        Sample s;
        std::size_t i = line.find_first_of("{ ");
        s.name = line.substr(0, i);
        if (i != std::string::npos && line[i] == '{') {
            ++i;
            while (i < line.size() && line[i] != '}') {
                const std::size_t eq = line.find('=', i);
                const std::string label = line.substr(i, eq - i);
                std::string value;
                std::size_t j = eq + 2;  // past ="
                for (; j < line.size() && line[j] != '"'; ++j) {
                    if (line[j] == '\\' && j + 1 < line.size()) ++j;
                    value += line[j];
                }
                s.labels[label] = value;
                i = j + 1;
                if (i < line.size() && line[i] == ',') ++i;
            }
            ++i;
        }
        const std::string value = line.substr(line.find_first_not_of(' ', i));
        s.value = value == "+Inf" ? INFINITY : value == "-Inf" ? -INFINITY : std::stod(value);
        out.push_back(std::move(s));
    }
    return out;
}

/// The value of the one sample with that name and exactly those labels; nullopt if none.
std::optional<double> value_of(const std::vector<Sample>& samples, const std::string& name,
                               const Labels& labels) {
    std::optional<double> found;
    for (const Sample& s : samples) {
        if (s.name != name || s.labels != labels) continue;
        if (found) throw std::logic_error("two samples " + name);
        found = s.value;
    }
    return found;
}

/// The "# TYPE name type" line's type, or "" when there is none.
std::string type_of(const std::string& text, const std::string& name) {
    const std::string key = "# TYPE " + name + " ";
    const auto at = text.find(key);
    if (at == std::string::npos) return {};
    return text.substr(at + key.size(), text.find('\n', at) - at - key.size());
}

std::vector<Sample> scrape_http(const MetricsExporter& exporter) {
    const HttpAnswer a = http_get(exporter.port(), "/metrics");
    REQUIRE(a.status == 200);
    return parse_exposition(a.body);
}

// ---- orders ----

Order small_order() {
    Order o = test::good_order();
    o.quantity = parse_decimal("0.01");  // 400 EUR: far inside the day's notional
    return o;
}

Order wrong_counterparty() {
    Order o = small_order();
    o.counterparty = "exchange_z";
    return o;
}

Order wrong_instrument_and_counterparty() {
    Order o = wrong_counterparty();
    o.instrument = "DOGE_EUR";
    return o;
}

/// 100 allowed, 30 rejected for the counterparty, 20 for instrument and counterparty: 150 checks,
/// the clock moving 50 ms each (under 50 orders/s).
void known_checks(Guard& guard, ManualClock& clock) {
    for (int i = 0; i < 150; ++i) {
        clock.advance(50ms);
        const Order o = i < 100   ? small_order()
                        : i < 130 ? wrong_counterparty()
                                  : wrong_instrument_and_counterparty();
        const Decision d = guard.check(o);
        REQUIRE(d.allowed() == (i < 100));
    }
}

const Labels& none() {
    static const Labels l;
    return l;
}

double state_of(const std::vector<Sample>& s, const std::string& agent, const std::string& st) {
    return value_of(s, "kakunin_guard_state", {{"agent", agent}, {"state", st}}).value_or(-1);
}

// ---- a real Prometheus server ----

/// Debian's prometheus, started on a config scraping one target every second, its storage in
/// a temporary directory; terminated (and waited for) at the end.
class PrometheusServer {
public:
    PrometheusServer(const test::TempDir& dir, int target_port) {
        const char* path = "/usr/bin/prometheus";
        if (::access(path, X_OK) != 0)
            FAIL(
                "Debian's prometheus is not installed at /usr/bin/prometheus: scripts/test "
                "installs it (scripts/lib/common.sh), or apt-get install prometheus");
        m_log = dir / "prometheus.log";
        const std::string config = dir / "prometheus.yml";
        std::ofstream(config) << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                                 "scrape_configs:\n  - job_name: kakunin\n    static_configs:\n"
                                 "      - targets: ['127.0.0.1:"
                              << target_port << "']\n";
        m_port = free_port();
        std::vector<std::string> argv = {
            path, "--config.file=" + config, "--storage.tsdb.path=" + (dir / "data"),
            "--web.listen-address=127.0.0.1:" + std::to_string(m_port), "--log.level=warn"};
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, m_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        const int rc = ::posix_spawn(&m_pid, path, &actions, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        REQUIRE(rc == 0);
    }
    ~PrometheusServer() {
        if (m_pid <= 0) return;
        ::kill(m_pid, SIGTERM);
        const auto until = std::chrono::steady_clock::now() + 20s;
        int status = 0;
        while (::waitpid(m_pid, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > until) {
                ::kill(m_pid, SIGKILL);
                ::waitpid(m_pid, &status, 0);
                break;
            }
            std::this_thread::sleep_for(50ms);
        }
    }
    PrometheusServer(const PrometheusServer&) = delete;
    PrometheusServer& operator=(const PrometheusServer&) = delete;

    /// GET of the HTTP API (`target` is the path and query, already encoded); its JSON, or null
    /// while the server does not answer.
    nlohmann::json api(const std::string& target) const {
        try {
            const HttpAnswer a = http_get(m_port, target);
            if (a.status != 200) return nullptr;
            return nlohmann::json::parse(a.body);
        } catch (const std::exception&) {
            return nullptr;
        }
    }
    /// The value of an instant query with one result, or nullopt (none yet, or not answering).
    std::optional<std::string> query(const std::string& promql) const {
        const nlohmann::json j = api("/api/v1/query?query=" + encode(promql));
        if (j.is_null() || j.value("status", "") != "success") return std::nullopt;
        const auto& result = j["data"]["result"];
        if (!result.is_array() || result.size() != 1) return std::nullopt;
        return result[0]["value"][1].get<std::string>();
    }
    /// Polls query() until it answers `expected`, for at most `patience`; the last answer.
    std::optional<std::string> wait_for(const std::string& promql, const std::string& expected,
                                        std::chrono::seconds patience) const {
        const auto until = std::chrono::steady_clock::now() + patience;
        std::optional<std::string> last;
        while (std::chrono::steady_clock::now() < until) {
            last = query(promql);
            if (last == expected) return last;
            if (exited()) return last;
            std::this_thread::sleep_for(200ms);
        }
        return last;
    }
    bool exited() const {
        int status = 0;
        return ::waitpid(m_pid, &status, WNOHANG) == m_pid ? (m_pid = -1, true) : m_pid <= 0;
    }
    std::string log() const {
        std::ifstream in(m_log);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    /// What the server says of its targets (health, lastError), for failure messages.
    std::string targets() const { return api("/api/v1/targets").dump(); }

private:
    static std::string encode(const std::string& s) {
        static const char* hex = "0123456789ABCDEF";
        std::string out;
        for (unsigned char c : s) {
            if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
                out += static_cast<char>(c);
            } else {
                out += '%';
                out += hex[c >> 4];
                out += hex[c & 15];
            }
        }
        return out;
    }
    mutable pid_t m_pid = -1;
    int m_port = 0;
    std::string m_log;
};

/// A sink that fails while told to (and counts its appends), for the audit's figures.
class SwitchedSink final : public LockingAuditSink {
public:
    std::atomic<bool> failing{false};
    std::string name() const override { return "switched"; }

protected:
    void do_append(const std::string_view*, std::size_t) override {
        if (failing.load()) throw Error(ErrorCategory::io, "switched sink: down");
    }
    void do_flush() override {
        if (failing.load()) throw Error(ErrorCategory::io, "switched sink: down");
    }
};

}  // namespace

TEST_CASE(
    "/metrics over HTTP: checks, allowed, rejections by reason, the latency histogram, the "
    "certificate's time to expiry and the state",
    "[metrics]") {
    TestAuthority authority;
    auto guard = authority.guard_for(test::seed_scope_json);
    const std::string agent = guard->certificate()->agent_id();
    MetricsExporter exporter({"127.0.0.1:0"});
    REQUIRE(exporter.port() > 0);
    exporter.add(*guard);

    known_checks(*guard, authority.clock());

    const HttpAnswer answer = http_get(exporter.port(), "/metrics");
    REQUIRE(answer.status == 200);
    CHECK(answer.headers.find("text/plain") != std::string::npos);
    const std::vector<Sample> s = parse_exposition(answer.body);
    const Labels a{{"agent", agent}};
    CHECK(value_of(s, "kakunin_checks_total", a) == 150.0);
    CHECK(value_of(s, "kakunin_checks_allowed_total", a) == 100.0);
    CHECK(value_of(s, "kakunin_checks_rejected_total", a) == 50.0);
    CHECK(type_of(answer.body, "kakunin_checks_total") == "counter");
    auto rejected = [&](const char* reason) {
        return value_of(s, "kakunin_rejections_total", {{"agent", agent}, {"reason", reason}});
    };
    CHECK(rejected("counterparty_not_allowed") == 50.0);
    CHECK(rejected("instrument_not_allowed") == 20.0);
    CHECK(rejected("halted") == 0.0);
    CHECK(rejected("certificate_expired") == 0.0);
    CHECK_FALSE(rejected("anomaly_warning"));  // a warning never rejects
    int reasons = 0;
    for (const Sample& x : s) reasons += x.name == "kakunin_rejections_total";
    CHECK(reasons == static_cast<int>(all_reason_codes.size()) - 1);

    // One check in 64 timed: calls 1, 65 and 129 of 150.
    CHECK(type_of(answer.body, "kakunin_check_duration_seconds") == "histogram");
    CHECK(value_of(s, "kakunin_check_duration_seconds_count", a) == 3.0);
    CHECK(value_of(s, "kakunin_check_duration_seconds_bucket",
                   {{"agent", agent}, {"le", "+Inf"}}) == 3.0);
    const auto sum = value_of(s, "kakunin_check_duration_seconds_sum", a);
    REQUIRE(sum);
    CHECK(*sum > 0.0);
    CHECK(*sum < 3.0);
    double previous = 0;
    int buckets = 0;
    for (const Sample& x : s) {
        if (x.name != "kakunin_check_duration_seconds_bucket") continue;
        CHECK(x.value >= previous);  // cumulative
        previous = x.value;
        ++buckets;
    }
    CHECK(buckets == static_cast<int>(detail::latency_bounds_ns.size()) + 1);
    CHECK(guard->check_latency().count() == 3);

    // 24 h certificate, 7.5 s of checks: the seconds to expiry by the Guard's clock.
    const double left = (guard->certificate()->not_after() - authority.clock().now_ns()) / 1e9;
    const auto to_expiry = value_of(s, "kakunin_certificate_time_to_expiry_seconds", a);
    REQUIRE(to_expiry);
    CHECK(std::abs(*to_expiry - left) < 1e-3);
    CHECK(*to_expiry > 86400 - 60);
    CHECK(*to_expiry <= 86400 - 7.5);
    CHECK(value_of(s, "kakunin_certificate_expiry_timestamp_seconds", a) ==
          Approx(guard->certificate()->not_after() / 1e9));
    authority.clock().advance(2h);
    CHECK(value_of(scrape_http(exporter), "kakunin_certificate_time_to_expiry_seconds", a) ==
          Approx(left - 7200).margin(1e-3));

    // The state, one of four.
    CHECK(state_of(s, agent, "trading") == 1.0);
    CHECK(state_of(s, agent, "halted") == 0.0);
    CHECK(state_of(s, agent, "reduce_only") == 0.0);
    CHECK(state_of(s, agent, "revoked") == 0.0);
    guard->halt("desk kill switch", "M. Rossi");
    guard->check(small_order());
    auto halted = scrape_http(exporter);
    CHECK(state_of(halted, agent, "halted") == 1.0);
    CHECK(state_of(halted, agent, "trading") == 0.0);
    CHECK(value_of(halted, "kakunin_rejections_total", {{"agent", agent}, {"reason", "halted"}}) ==
          1.0);
    guard->resume("A. Schmidt");
    CHECK(state_of(scrape_http(exporter), agent, "trading") == 1.0);
    authority.revoke(*guard->certificate(), "keyCompromise");
    guard->check(small_order());  // the pushed revocation is in force before this check
    auto revoked = scrape_http(exporter);
    CHECK(state_of(revoked, agent, "revoked") == 1.0);
    CHECK(state_of(revoked, agent, "halted") == 0.0);
    CHECK(value_of(revoked, "kakunin_checks_total", a) == 152.0);

    // No audit trail: no audit series. scrape() serves the same text as /metrics.
    CHECK_FALSE(value_of(s, "kakunin_audit_queue_depth", a));
    // (Over HTTP prometheus-cpp adds its own exposer_* series.)
    auto kakunin_only = [](const std::vector<Sample>& all) {
        std::map<std::pair<std::string, Labels>, double> out;
        for (const Sample& x : all)
            if (x.name.rfind("kakunin_", 0) == 0) out[{x.name, x.labels}] = x.value;
        return out;
    };
    const auto served = kakunin_only(scrape_http(exporter));
    CHECK(served.size() > 60);
    CHECK(kakunin_only(parse_exposition(exporter.scrape())) == served);
    CHECK(exporter.remove(*guard));
    CHECK_FALSE(value_of(scrape_http(exporter), "kakunin_checks_total", a));
    CHECK_FALSE(exporter.remove(*guard));
}

TEST_CASE("a limits-only Guard in reduce-only mode, under the label given at add()", "[metrics]") {
    ManualClock clock(test::monday(10));
    Guard guard(
        parse_scope_json(test::seed_with(R"("max_orders_per_second": 50)",
                                         R"("max_orders_per_second": 50, "max_open_orders": 8)")),
        clock);
    MetricsExporter exporter({"127.0.0.1:0"});
    CHECK_THROWS_AS(exporter.add(guard), Error);  // a limits-only Guard has no agent of its own
    exporter.add(guard, "backtest-1");
    CHECK_THROWS_AS(exporter.add(guard, "backtest-2"), Error);  // added already
    Guard other(parse_scope_json(test::seed_scope_json), clock);
    CHECK_THROWS_AS(exporter.add(other, "backtest-1"), Error);  // its series would collide
    exporter.add(other, "backtest-2");

    guard.reduce_only("desk decision", "R. Risk");
    auto s = scrape_http(exporter);
    CHECK(state_of(s, "backtest-1", "reduce_only") == 1.0);
    CHECK(state_of(s, "backtest-1", "trading") == 0.0);
    CHECK(state_of(s, "backtest-2", "trading") == 1.0);
    // No certificate, no audit trail: neither's series.
    CHECK_FALSE(
        value_of(s, "kakunin_certificate_time_to_expiry_seconds", {{"agent", "backtest-1"}}));
    CHECK(value_of(s, "kakunin_checks_total", {{"agent", "backtest-2"}}) == 0.0);
    CHECK(value_of(s, "kakunin_incidents", {{"agent", "backtest-1"}, {"state", "open"}}) == 0.0);

    TestAuthority authority;
    auto certified = authority.guard_for(test::seed_scope_json);
    CHECK_THROWS_AS(exporter.add(*certified, "not-its-agent"), Error);
    exporter.add(*certified, certified->certificate()->agent_id());  // its own id: accepted
}

TEST_CASE("the audit trail's queue depth, pending records, durable lag and sink failures",
          "[metrics][audit]") {
    TestAuthority authority;
    auto sink = std::make_shared<SwitchedSink>();
    GuardOptions options;
    options.audit = AuditTrailOptions{sink};
    options.audit->record_signatures = false;
    options.audit->sink_failure_grace = 500ms;
    options.audit->error_handler = [](std::string_view) {};
    Guard guard(authority.credentials_for(parse_scope_json(test::seed_scope_json)),
                authority.clock(), options);
    const std::string agent = guard.certificate()->agent_id();
    const Labels a{{"agent", agent}};
    MetricsExporter exporter({"127.0.0.1:0"});
    exporter.add(guard);

    known_checks(guard, authority.clock());
    REQUIRE(guard.audit()->wait_durable(10s));
    auto s = scrape_http(exporter);
    const AuditTrailCounters c = guard.audit()->counters();
    CHECK(c.queued >= 150);  // the decisions, and what the trail records of itself
    CHECK(value_of(s, "kakunin_audit_queued_records_total", a) == static_cast<double>(c.queued));
    CHECK(value_of(s, "kakunin_audit_durable_records_total", a) == static_cast<double>(c.queued));
    CHECK(value_of(s, "kakunin_audit_pending_records", a) == 0.0);
    CHECK(value_of(s, "kakunin_audit_queue_depth", a) == 0.0);
    CHECK(value_of(s, "kakunin_audit_durable_lag_seconds", a) == 0.0);
    CHECK(value_of(s, "kakunin_audit_sink_failures_total", a) == 0.0);
    CHECK(value_of(s, "kakunin_audit_unrecorded_total",
                   {{"agent", agent}, {"kind", "rejection"}}) == 0.0);
    CHECK(value_of(s, "kakunin_audit_healthy", a) == 1.0);

    // The sink goes down: entries wait, the lag grows, failures count, the trail turns unhealthy.
    sink->failing = true;
    authority.clock().advance(50ms);
    guard.check(small_order());
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Sample> down;
    while (std::chrono::steady_clock::now() - t0 < 10s) {
        down = scrape_http(exporter);
        if (value_of(down, "kakunin_audit_healthy", a) == 0.0 &&
            value_of(down, "kakunin_audit_durable_lag_seconds", a).value_or(0) >= 0.5)
            break;
        std::this_thread::sleep_for(50ms);
    }
    CHECK(value_of(down, "kakunin_audit_healthy", a) == 0.0);
    CHECK(value_of(down, "kakunin_audit_pending_records", a).value_or(0) >= 1.0);
    CHECK(value_of(down, "kakunin_audit_sink_failures_total", a).value_or(0) >= 1.0);
    const double lag = value_of(down, "kakunin_audit_durable_lag_seconds", a).value_or(0);
    CHECK(lag >= 0.5);
    CHECK(lag < 10.5);
    CHECK(value_of(down, "kakunin_audit_queued_records_total", a) ==
          static_cast<double>(c.queued + 1));

    sink->failing = false;
    REQUIRE(guard.audit()->wait_durable(10s));
    auto back = scrape_http(exporter);
    CHECK(value_of(back, "kakunin_audit_pending_records", a) == 0.0);
    CHECK(value_of(back, "kakunin_audit_durable_lag_seconds", a) == 0.0);
    exporter.remove(guard);
}

TEST_CASE("incidents by state, and an automatic revocation's rejection and state", "[metrics]") {
    const char* scope_json = R"({
      "version": 1,
      "max_transaction": {"currency": "EUR", "amount": "50000000.00"},
      "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
      "counterparties": ["exchange_a"],
      "trading_hours": [{"days": ["Mon","Tue","Wed","Thu","Fri","Sat","Sun"], "from": "00:00", "to": "24:00"}],
      "regions": ["eu-west-1", "eu-central-1"],
      "limits": {"max_orders_per_second": 50}
    })";
    const TimeNs minute = 60'000'000'000LL, day = 24 * 60 * minute;
    const TimeNs start = utc(2024, 1, 8, 0, 0, 0);
    auto order = [](const char* instrument, const char* region, const std::string& quantity) {
        Order o;
        o.client_order_id = "t";
        o.instrument = instrument;
        o.counterparty = "exchange_a";
        o.region = region;
        o.quantity = parse_decimal(quantity);
        o.price = parse_decimal("40000");
        return o;
    };
    TestAuthority authority(start + 7 * day + 10 * 60 * minute);  // the next Monday 10:00
    GuardCredentials credentials = authority.credentials_for(parse_scope_json(scope_json));
    const std::string agent = credentials.certificate.agent_id();
    // Seven days of BTC_EUR in eu-west-1 every 2 minutes, 06:00 to 21:59.
    BaselineBuilder builder(parse_scope_json(scope_json), agent);
    builder.start(start);
    unsigned n = 0;
    for (TimeNs t = start; t < start + 7 * day; t += 2 * minute) {
        const auto h = floor_div(floor_mod(t, day), 60 * minute);
        if (h < 6 || h >= 22) continue;
        builder.observe(order("BTC_EUR", "eu-west-1", "0." + std::to_string(n++ % 10) + "5"), t);
    }
    const Baseline baseline = builder.finalize(start + 7 * day);
    GuardOptions o;
    o.baseline = ApprovedBaseline{
        baseline, approve_baseline(*authority.kms(), baseline, "C. Officer", start + 7 * day, 1)};
    o.incident_thread = false;
    Guard guard(credentials, authority.clock(), o);
    MetricsExporter exporter({"127.0.0.1:0"});
    exporter.add(guard);
    auto incidents = [&](const std::vector<Sample>& s, const char* state) {
        return value_of(s, "kakunin_incidents", {{"agent", agent}, {"state", state}});
    };
    auto before = scrape_http(exporter);
    for (const char* st : {"open", "acknowledged", "resolved", "revoked", "reviewed"})
        CHECK(incidents(before, st) == 0.0);

    // Another instrument in another region, 100 times the usual size: revoked in this call.
    REQUIRE(guard.check(order("SOL_EUR", "eu-central-1", "100"))
                .reasons.contains(ReasonCode::anomaly_revocation));
    guard.process_incidents();
    REQUIRE(guard.incidents().size() == 1);
    auto after = scrape_http(exporter);
    CHECK(incidents(after, guard.incidents()[0].state == IncidentState::revoked ? "revoked"
                                                                                : "open") == 1.0);
    CHECK(incidents(after, "revoked") == 1.0);
    CHECK(incidents(after, "open") == 0.0);
    CHECK(value_of(after, "kakunin_rejections_total",
                   {{"agent", agent}, {"reason", "anomaly_revocation"}}) == 1.0);
    CHECK(state_of(after, agent, "revoked") == 1.0);
    exporter.remove(guard);
}

TEST_CASE(
    "sources add their gauges and counters at each scrape, and one that throws loses only "
    "its own samples",
    "[metrics][source]") {
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    MetricsExporterOptions options{"127.0.0.1:0"};
    options.error_handler = [&](std::string_view m) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors.emplace_back(m);
    };
    MetricsExporter exporter(options);
    std::atomic<int> level{42};
    exporter.add_source("leases", [&](MetricWriter& w) {
        w.gauge("kakunin_lease_level", "Units left in the lease.", {{"lease", "l1"}}, level.load());
        w.gauge("kakunin_lease_level", "Units left in the lease.", {{"lease", "l2"}}, 7);
        w.counter("kakunin_lease_refills_total", "Refills.", {{"lease", "l1"}}, 3);
    });
    std::atomic<bool> broken{true};
    exporter.add_source("flaky", [&](MetricWriter& w) {
        w.gauge("kakunin_flaky_up", "Written before it throws.", {}, 1);
        if (broken.load()) throw std::runtime_error("backend unreachable");
    });
    CHECK_THROWS_AS(exporter.add_source("leases", [](MetricWriter&) {}), Error);
    CHECK_THROWS_AS(exporter.add_source("", [](MetricWriter&) {}), Error);

    auto s = scrape_http(exporter);
    CHECK(value_of(s, "kakunin_lease_level", {{"lease", "l1"}}) == 42.0);
    CHECK(value_of(s, "kakunin_lease_level", {{"lease", "l2"}}) == 7.0);
    CHECK(value_of(s, "kakunin_lease_refills_total", {{"lease", "l1"}}) == 3.0);
    CHECK_FALSE(value_of(s, "kakunin_flaky_up", none()));  // dropped with the rest of its scrape
    CHECK(value_of(s, "kakunin_metrics_source_errors_total", {{"source", "flaky"}}) == 1.0);
    CHECK(value_of(s, "kakunin_metrics_source_errors_total", {{"source", "leases"}}) == 0.0);
    level = 41;
    s = scrape_http(exporter);
    CHECK(value_of(s, "kakunin_lease_level", {{"lease", "l1"}}) == 41.0);
    CHECK(value_of(s, "kakunin_metrics_source_errors_total", {{"source", "flaky"}}) == 2.0);
    {
        std::lock_guard<std::mutex> lock(errors_mutex);
        REQUIRE(errors.size() == 1);  // said once while it keeps failing
        CHECK(errors[0].find("flaky") != std::string::npos);
        CHECK(errors[0].find("backend unreachable") != std::string::npos);
    }
    broken = false;
    s = scrape_http(exporter);
    CHECK(value_of(s, "kakunin_flaky_up", none()) == 1.0);
    CHECK(value_of(s, "kakunin_metrics_source_errors_total", {{"source", "flaky"}}) == 2.0);

    CHECK(exporter.remove_source("flaky"));
    CHECK_FALSE(exporter.remove_source("flaky"));
    s = scrape_http(exporter);
    CHECK_FALSE(value_of(s, "kakunin_flaky_up", none()));
    CHECK_FALSE(value_of(s, "kakunin_metrics_source_errors_total", {{"source", "flaky"}}));
}

TEST_CASE("what Prometheus would refuse from a source is refused by the writer, with the reason",
          "[metrics][source]") {
    struct Case {
        const char* name;
        std::function<void(MetricWriter&)> write;
        const char* why;
    };
    const std::vector<Case> cases = {
        {"counter", [](MetricWriter& w) { w.counter("kakunin_refills", "", {}, 1); }, "_total"},
        {"name", [](MetricWriter& w) { w.gauge("kakunin lease", "", {}, 1); }, "metric name"},
        {"digit", [](MetricWriter& w) { w.gauge("1kakunin", "", {}, 1); }, "metric name"},
        {"label",
         [](MetricWriter& w) {
             w.gauge("kakunin_x", "", {{"le-ase", "a"}}, 1);
         },
         "label name"},
        {"reserved",
         [](MetricWriter& w) {
             w.gauge("kakunin_x", "", {{"__name", "a"}}, 1);
         },
         "reserved"},
        {"twice",
         [](MetricWriter& w) {
             w.gauge("kakunin_x", "", {{"a", "1"}, {"a", "2"}}, 1);
         },
         "twice"},
        {"series",
         [](MetricWriter& w) {
             w.gauge("kakunin_x", "", {{"a", "1"}}, 1);
             w.gauge("kakunin_x", "", {{"a", "1"}}, 2);
         },
         "same labels"},
        {"type",
         [](MetricWriter& w) {
             w.gauge("kakunin_x_total", "", {{"a", "1"}}, 1);
             w.counter("kakunin_x_total", "", {{"a", "2"}}, 2);
         },
         "two types"},
        {"negative", [](MetricWriter& w) { w.counter("kakunin_x_total", "", {}, -1); },
         "not negative"},
        {"nan", [](MetricWriter& w) { w.counter("kakunin_x_total", "", {}, NAN); }, "finite"},
        {"utf8",
         [](MetricWriter& w) {
             w.gauge("kakunin_x", "", {{"a", "\xff"}}, 1);
         },
         "UTF-8"},
        // A source's series may not repeat a built-in one (here: another source's).
        {"collide",
         [](MetricWriter& w) {
             w.gauge("kakunin_lease_level", "", {{"lease", "l1"}}, 1);
         },
         "same labels"},
    };
    for (const Case& c : cases) {
        DYNAMIC_SECTION(c.name) {
            std::vector<std::string> errors;
            MetricsExporterOptions options{"127.0.0.1:0"};
            options.error_handler = [&](std::string_view m) { errors.emplace_back(m); };
            MetricsExporter exporter(options);
            exporter.add_source("first", [](MetricWriter& w) {
                w.gauge("kakunin_lease_level", "", {{"lease", "l1"}}, 5);
            });
            exporter.add_source("bad", c.write);
            const auto s = parse_exposition(exporter.scrape());
            CHECK(value_of(s, "kakunin_metrics_source_errors_total", {{"source", "bad"}}) == 1.0);
            CHECK(value_of(s, "kakunin_lease_level", {{"lease", "l1"}}) == 5.0);
            CHECK_FALSE(value_of(s, "kakunin_x", {{"a", "1"}}));
            REQUIRE(errors.size() == 1);
            INFO(errors[0]);
            CHECK(errors[0].find(c.why) != std::string::npos);
        }
    }
}

TEST_CASE(
    "remove() and remove_source() wait for a scrape in progress, and a source cannot call "
    "back into the exporter",
    "[metrics][threads]") {
    ManualClock clock(test::monday(10));
    auto guard = std::make_unique<Guard>(parse_scope_json(test::seed_scope_json), clock);
    MetricsExporter exporter({"127.0.0.1:0"});
    exporter.add(*guard, "slow-1");
    std::atomic<bool> in_scrape{false}, slow_done{false};
    std::string from_inside;
    exporter.add_source("slow", [&](MetricWriter& w) {
        in_scrape = true;
        if (from_inside.empty()) {  // the first scrape only: the Guard is gone after it
            try {
                exporter.remove(*guard);
            } catch (const Error& e) {
                from_inside = e.what();
            }
        }
        std::this_thread::sleep_for(300ms);
        w.gauge("kakunin_slow", "", {}, 1);
        slow_done = true;
    });
    std::thread scraper([&] { (void)http_get(exporter.port(), "/metrics"); });
    while (!in_scrape) std::this_thread::sleep_for(1ms);
    CHECK(exporter.remove(*guard));  // waits until the scrape, which reads the Guard, is done
    CHECK(slow_done);
    guard.reset();
    scraper.join();
    CHECK(from_inside.find("from inside a scrape") != std::string::npos);

    in_scrape = false;
    slow_done = false;
    std::thread again([&] { (void)http_get(exporter.port(), "/metrics"); });
    while (!in_scrape) std::this_thread::sleep_for(1ms);
    CHECK(exporter.remove_source("slow"));
    CHECK(slow_done);
    again.join();
}

TEST_CASE(
    "Guards added and removed while scrapes run concurrently: every scrape answers, "
    "nothing reads a Guard that is gone",
    "[metrics][threads]") {
    TestAuthority authority;
    MetricsExporter exporter({"127.0.0.1:0", 2});
    std::atomic<bool> stop{false};
    std::atomic<long> scrapes{0}, bad{0};
    std::vector<std::thread> scrapers;
    for (int i = 0; i < 2; ++i)
        scrapers.emplace_back([&] {
            while (!stop) {
                try {
                    const HttpAnswer a = http_get(exporter.port(), "/metrics");
                    (a.status == 200 ? scrapes : bad)++;
                } catch (const std::exception&) {
                    bad++;
                }
            }
        });
    scrapers.emplace_back([&] {
        while (!stop) {
            (void)exporter.scrape();
            scrapes++;
        }
    });
    for (int i = 0; i < 40; ++i) {
        GuardOptions options;
        options.audit = AuditTrailOptions{std::make_shared<MemoryAuditSink>()};
        options.audit->record_signatures = false;
        auto certified = std::make_unique<Guard>(
            authority.credentials_for(parse_scope_json(test::seed_scope_json)), authority.clock(),
            options);
        auto limits_only =
            std::make_unique<Guard>(parse_scope_json(test::seed_scope_json), authority.clock());
        exporter.add(*certified);
        exporter.add(*limits_only, "limits-" + std::to_string(i));
        for (int k = 0; k < 20; ++k) {
            authority.clock().advance(50ms);
            certified->check(small_order());
            limits_only->check(wrong_counterparty());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(i % 5));
        CHECK(exporter.remove(*certified));
        certified.reset();
        CHECK(exporter.remove(*limits_only));
        limits_only.reset();
    }
    const auto s = parse_exposition(exporter.scrape());
    for (const Sample& x : s) CHECK(x.name.rfind("kakunin_checks", 0) != 0);  // none left
    stop = true;
    for (auto& t : scrapers) t.join();
    CHECK(bad == 0);
    CHECK(scrapes > 40);
}

TEST_CASE("a real Prometheus server scrapes the exporter and answers with what the Guards counted",
          "[metrics][prometheus]") {
    TestAuthority authority;
    auto guard = authority.guard_for(test::seed_scope_json);
    const std::string agent = guard->certificate()->agent_id();
    MetricsExporter exporter({"127.0.0.1:0"});
    exporter.add(*guard);
    known_checks(*guard, authority.clock());

    test::TempDir dir("kakunin-prometheus");
    PrometheusServer prometheus(dir, exporter.port());
    const auto up = prometheus.wait_for("up{job=\"kakunin\"}", "1", 90s);
    INFO("prometheus log: " << prometheus.log());
    INFO("targets: " << prometheus.targets());
    REQUIRE(up == std::string("1"));

    const std::string checks = "kakunin_checks_total{agent=\"" + agent + "\"}";
    CHECK(prometheus.wait_for(checks, "150", 30s) == std::string("150"));
    CHECK(prometheus.wait_for(
              "kakunin_rejections_total{agent=\"" + agent + "\",reason=\"instrument_not_allowed\"}",
              "20", 30s) == std::string("20"));
    CHECK(prometheus.wait_for("kakunin_check_duration_seconds_count{agent=\"" + agent + "\"}", "3",
                              30s) == std::string("3"));
    CHECK(prometheus.wait_for("kakunin_guard_state{agent=\"" + agent + "\",state=\"trading\"}", "1",
                              30s) == std::string("1"));

    // Live: more checks and a halt reach the server at its next scrapes.
    for (int i = 0; i < 10; ++i) {
        authority.clock().advance(50ms);
        guard->check(small_order());
    }
    guard->halt("desk kill switch", "M. Rossi");
    CHECK(prometheus.wait_for(checks, "160", 30s) == std::string("160"));
    CHECK(prometheus.wait_for("kakunin_guard_state{agent=\"" + agent + "\",state=\"halted\"}", "1",
                              30s) == std::string("1"));
    exporter.remove(*guard);
}

TEST_CASE("an exporter stops at once, not after its HTTP server's 2 s poll", "[metrics]") {
    for (const char* address : {"127.0.0.1:0", "0.0.0.0:0"}) {
        INFO(address);
        auto exporter = std::make_unique<MetricsExporter>(MetricsExporterOptions{address});
        REQUIRE(http_get(exporter->port(), "/metrics").status == 200);
        std::this_thread::sleep_for(300ms);  // its listening thread is in its poll now
        const auto t0 = std::chrono::steady_clock::now();
        exporter.reset();
        CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    }
    CHECK_THROWS_AS(MetricsExporter(MetricsExporterOptions{"127.0.0.1:99999"}), Error);
}

TEST_CASE("firm leases: their levels reach the metrics, and an expired one shows as not in force",
          "[metrics][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    FirmBudget b;
    b.id = "metrics-daily";
    b.currency = "EUR";
    b.amount = 10000LL * 1000000;
    b.chunk = 100LL * 1000000;
    b.set_by = "Jane Doe";
    b.reason = "metrics test";
    set_firm_budget(db.app(), b, [] { return std::uint64_t{1}; });
    PostgresRuntime runtime(db.app());
    auto firm =
        std::make_shared<PostgresFirmLimits>(runtime, PostgresFirmLimitsOptions{{"metrics-daily"}});
    TestAuthority authority(SystemClock().now_ns());
    SystemClock clock;
    GuardOptions o;
    o.firm_limits = firm;
    const Scope scope = parse_scope_json(test::seed_with(
        R"({"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "07:00", "to": "20:00"})",
        R"({"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "from": "00:00", "to": "24:00"})"));
    {
        Guard guard(authority.credentials_for(scope), clock, o);
        REQUIRE(firm->wait_granted(10s));
        Order order = test::good_order();
        order.quantity = Decimal{1, 0};
        order.price = Decimal{40, 0};
        order.reference_price = order.price;
        REQUIRE(guard.check(order).allowed());
        MetricsExporter exporter({"127.0.0.1:0"});
        add_firm_lease_metrics(exporter, "leases", firm);
        const std::string text = exporter.scrape();
        const std::string agent = guard.certificate()->agent_id();
        const std::string labels = "{agent=\"" + agent + "\",budget=\"metrics-daily\"}";
        INFO(text);
        CHECK_THAT(text, Catch::Contains("kakunin_firm_lease_consumed" + labels + " 40000000"));
        CHECK_THAT(text, Catch::Contains("kakunin_firm_lease_granted" + labels));
        const auto at = text.find("kakunin_firm_lease_seconds_to_expiry" + labels + " ");
        REQUIRE(at != std::string::npos);
        const double left = std::stod(text.substr(at + text.substr(at).find(' ') + 1));
        CHECK(left > 0);
        CHECK(left <= 3.0);
        exporter.remove_source("leases");
    }
}
