// Notifiers: the webhook JSON, and WebhookNotifier against a real HTTP server on 127.0.0.1
// (tests/http_test_server.hpp): delivery latency, retries, failures, a hung endpoint, overflow,
// shutdown. Also the callback, logging, memory and fan-out notifiers.

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "http_test_server.hpp"
#include "kakunin/error.hpp"
#include "kakunin/kakunin.hpp"
#include "kakunin/notifier.hpp"

using namespace std::chrono_literals;
using kakunin::Notification;
using kakunin::WebhookNotifier;
using kakunin::WebhookOptions;
using kakunin::test::HttpTestServer;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

Notification sample(std::string agent = "agent-7") {
    Notification n;
    n.kind = Notification::Kind::warning;
    n.agent_id = std::move(agent);
    n.incident_id = "inc-42";
    n.at_ns = 1704697200123456789;
    n.score_ppm = 810000;
    n.components_ppm = {790000, 120000, 30000, 0, 5};
    n.summary = "agent-7: anomaly score 0.81 (size 0.79)";
    n.details_json =
        R"({"order":{"instrument":"BTC_EUR","quantity":"12.5"},"threshold_ppm":750000})";
    return n;
}

/// Collects error_handler messages; thread-safe.
struct Reports {
    mutable std::mutex mutex;
    std::vector<std::string> messages;

    std::function<void(std::string_view)> handler() {
        return [this](std::string_view m) {
            std::lock_guard<std::mutex> lock(mutex);
            messages.emplace_back(m);
        };
    }
    std::vector<std::string> all() const {
        std::lock_guard<std::mutex> lock(mutex);
        return messages;
    }
    bool any_contains(const std::string& needle) const {
        for (const auto& m : all())
            if (m.find(needle) != std::string::npos) return true;
        return false;
    }
    std::string joined() const {
        std::string s;
        for (const auto& m : all()) s += m + "\n";
        return s;
    }
};

WebhookOptions fast_options(const std::string& url, Reports& reports) {
    WebhookOptions o;
    o.url = url;
    o.connect_timeout = 500ms;
    o.request_timeout = 1000ms;
    o.initial_backoff = 10ms;
    o.max_backoff = 50ms;
    o.shutdown_timeout = 1000ms;
    o.error_handler = reports.handler();
    return o;
}

double ms_since(steady::time_point t) {
    return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

}  // namespace

// ---- the JSON ---------------------------------------------------------------------------------

TEST_CASE("Notification kinds have stable names", "[notifier]") {
    CHECK(std::string(to_string(Notification::Kind::warning)) == "warning");
    CHECK(std::string(to_string(Notification::Kind::escalation)) == "escalation");
    CHECK(std::string(to_string(Notification::Kind::revocation)) == "revocation");
    CHECK(std::string(to_string(Notification::Kind::halt)) == "halt");
    CHECK(std::string(to_string(Notification::Kind::incident)) == "incident");
}

TEST_CASE("to_json gives the documented webhook body with integers only", "[notifier]") {
    const std::string text = kakunin::to_json(sample());
    CHECK(
        text ==
        R"({"agent":"agent-7","at_ns":1704697200123456789,"components_ppm":{"concentration":30000,)"
        R"("frequency":120000,"origin":5,"size":790000,"time_of_day":0},"details":{"order":)"
        R"({"instrument":"BTC_EUR","quantity":"12.5"},"threshold_ppm":750000},"incident":"inc-42",)"
        R"x("kind":"warning","score_ppm":810000,"summary":"agent-7: anomaly score 0.81 (size 0.79)"})x");
    const json j = json::parse(text);
    CHECK(j.at("at_ns").get<std::int64_t>() == 1704697200123456789);
    CHECK(j.at("components_ppm").size() == kakunin::score_component_count);

    Notification bare;
    bare.kind = Notification::Kind::halt;
    bare.agent_id = "agent-1";
    const json b = json::parse(kakunin::to_json(bare));
    CHECK(b.at("incident").is_null());
    CHECK(b.at("details") == json::object());
    CHECK(b.at("kind") == "halt");
    CHECK(b.at("summary") == "");
}

TEST_CASE("to_json replaces invalid UTF-8 instead of failing", "[notifier]") {
    Notification n = sample();
    n.agent_id = std::string("agent-\xff-7");
    const json j = json::parse(kakunin::to_json(n));
    CHECK(j.at("agent") == "agent-\xEF\xBF\xBD-7");
}

TEST_CASE("to_json refuses details that are not an integer-only JSON object", "[notifier]") {
    const auto rejects = [](const std::string& details, const std::string& needle) {
        Notification n = sample();
        n.details_json = details;
        try {
            (void)kakunin::to_json(n);
            FAIL("accepted details " << details);
        } catch (const kakunin::Error& e) {
            CHECK(e.category() == kakunin::ErrorCategory::invalid_input);
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    rejects("[1,2]", "a JSON object is required");
    rejects("\"text\"", "a JSON object is required");
    rejects("{\"a\":", "malformed JSON");
    rejects("{\"ratio\":0.81}", "details_json.ratio: floating-point number");
    rejects("{\"a\":{\"b\":[1,2.5]}}", "details_json.a.b[1]: floating-point number");
    rejects("{\"a\":1,\"a\":2}", "duplicate member name \"a\"");
    rejects(std::string(40, '[') + std::string(40, ']'), "nested deeper than 32 levels");
    rejects("{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}",
            "nested deeper than 32 levels");
    // Brackets inside strings do not count.
    Notification n = sample();
    n.details_json = "{\"text\":\"" + std::string(100, '[') + "\"}";
    CHECK(json::parse(kakunin::to_json(n)).at("details").at("text").get<std::string>().size() ==
          100);
}

// ---- WebhookNotifier against a real server -----------------------------------------------------

TEST_CASE("Webhook: a warning reaches a healthy endpoint within 5 s as the documented JSON",
          "[notifier][webhook]") {
    HttpTestServer server;
    Reports reports;
    WebhookOptions o = fast_options(server.url("/alerts/kakunin"), reports);
    o.headers = {"Authorization: Bearer s3cret", "X-Desk: crypto-eu"};
    WebhookNotifier notifier(o);

    const Notification n = sample();
    const auto sent = steady::now();
    notifier.notify(n);
    REQUIRE(server.wait_for_requests(1, 5s));
    const auto r = server.requests().at(0);
    const double latency_ms = std::chrono::duration<double, std::milli>(r.received - sent).count();
    // RTS 6 Art. 16 expects alerts within five seconds; on a quiet machine this is ~1 ms.
    CHECK(latency_ms < 5000.0);
    WARN("notify() to request received: " << latency_ms << " ms");

    CHECK(r.method == "POST");
    CHECK(r.target == "/alerts/kakunin");
    CHECK(r.header("Content-Type") == "application/json");
    CHECK(r.header("Authorization") == "Bearer s3cret");
    CHECK(r.header("X-Desk") == "crypto-eu");
    CHECK(r.header("User-Agent") == std::string("kakunin/") + kakunin::version_string);
    CHECK(!r.header("Kakunin-Notification-Id").empty());
    CHECK(!r.has_header("Expect"));
    CHECK(r.body == kakunin::to_json(n));
    const json body = json::parse(r.body);
    CHECK(body.at("kind") == "warning");
    CHECK(body.at("agent") == "agent-7");
    CHECK(body.at("incident") == "inc-42");
    CHECK(body.at("score_ppm") == 810000);
    CHECK(body.at("components_ppm").at("size") == 790000);
    CHECK(body.at("details").at("threshold_ppm") == 750000);

    REQUIRE(notifier.flush(5s));
    // A second one goes over the open connection.
    const auto sent2 = steady::now();
    notifier.notify(n);
    REQUIRE(server.wait_for_requests(2, 5s));
    const double warm_ms =
        std::chrono::duration<double, std::milli>(server.requests().at(1).received - sent2).count();
    CHECK(warm_ms < 5000.0);
    WARN("notify() to request received, connection open: " << warm_ms << " ms");
    CHECK(server.connection_count() == 1);

    REQUIRE(notifier.flush(5s));
    const auto c = notifier.counters();
    CHECK(c.queued == 2);
    CHECK(c.delivered == 2);
    CHECK(c.retries == 0);
    CHECK(c.failed == 0);
    CHECK(c.dropped == 0);
    CHECK(reports.all().empty());
}

TEST_CASE("Webhook: notifications reuse one connection and carry distinct ids",
          "[notifier][webhook]") {
    HttpTestServer server;
    Reports reports;
    WebhookNotifier notifier(fast_options(server.url(), reports));
    for (int i = 0; i < 5; ++i) {
        Notification n = sample("agent-" + std::to_string(i));
        notifier.notify(n);
        REQUIRE(notifier.flush(5s));  // one after the other, so keep-alive can be observed
    }
    REQUIRE(server.request_count() == 5);
    CHECK(server.connection_count() == 1);
    const auto requests = server.requests();
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < requests.size(); ++i) {
        CHECK(json::parse(requests[i].body).at("agent") == "agent-" + std::to_string(i));
        ids.push_back(requests[i].header("Kakunin-Notification-Id"));
    }
    std::sort(ids.begin(), ids.end());
    CHECK(std::unique(ids.begin(), ids.end()) == ids.end());
    CHECK(notifier.counters().delivered == 5);
}

TEST_CASE("Webhook: 500 twice then 200 is delivered once after 2 retries", "[notifier][webhook]") {
    HttpTestServer server;
    server.fail_first(2, 500);
    Reports reports;
    WebhookNotifier notifier(fast_options(server.url(), reports));
    notifier.notify(sample());
    REQUIRE(notifier.flush(5s));
    const auto c = notifier.counters();
    CHECK(c.delivered == 1);
    CHECK(c.retries == 2);
    CHECK(c.failed == 0);
    const auto requests = server.requests();
    REQUIRE(requests.size() == 3);
    // The same notification, the same id on every attempt: the receiver can drop duplicates.
    CHECK(requests[0].body == requests[2].body);
    CHECK(requests[0].header("Kakunin-Notification-Id") ==
          requests[2].header("Kakunin-Notification-Id"));
    // Backoff: 10 ms, then 20 ms.
    CHECK(requests[1].received - requests[0].received >= 10ms);
    CHECK(requests[2].received - requests[1].received >= 20ms);
    CHECK(reports.all().empty());
}

TEST_CASE("Webhook: 429 and 503 are retried and Retry-After lengthens the wait up to max_backoff",
          "[notifier][webhook]") {
    HttpTestServer server;
    server.fail_first(1, 429);
    server.set_retry_after(1);  // 1 s, capped by max_backoff (300 ms)
    Reports reports;
    WebhookOptions o = fast_options(server.url(), reports);
    o.max_backoff = 300ms;
    WebhookNotifier notifier(o);
    notifier.notify(sample());
    REQUIRE(notifier.flush(5s));
    CHECK(notifier.counters().delivered == 1);
    CHECK(notifier.counters().retries == 1);
    const auto requests = server.requests();
    REQUIRE(requests.size() == 2);
    const auto gap = requests[1].received - requests[0].received;
    CHECK(gap >= 300ms);
    CHECK(gap < 1000ms);

    server.fail_first(3, 503);  // the next request (the third) is answered 503, then 200
    notifier.notify(sample());
    REQUIRE(notifier.flush(5s));
    CHECK(notifier.counters().delivered == 2);
    CHECK(notifier.counters().retries == 2);
}

TEST_CASE("Webhook: other 4xx fail at once without retry and are reported", "[notifier][webhook]") {
    for (int status : {400, 401, 404}) {
        HttpTestServer server;
        server.set_status(status);
        Reports reports;
        WebhookNotifier notifier(fast_options(server.url(), reports));
        notifier.notify(sample());
        REQUIRE(notifier.flush(5s));
        const auto c = notifier.counters();
        CHECK(c.failed == 1);
        CHECK(c.retries == 0);
        CHECK(c.delivered == 0);
        CHECK(server.request_count() == 1);
        INFO(reports.joined());
        CHECK(reports.any_contains("HTTP " + std::to_string(status) + " (not retried)"));
        CHECK(reports.any_contains("agent \"agent-7\""));
        CHECK_FALSE(reports.any_contains("s3cret"));
    }
}

TEST_CASE("Webhook: a redirect is not followed", "[notifier][webhook]") {
    HttpTestServer server;
    server.set_status(301);
    Reports reports;
    WebhookNotifier notifier(fast_options(server.url(), reports));
    notifier.notify(sample());
    REQUIRE(notifier.flush(5s));
    CHECK(notifier.counters().failed == 1);
    CHECK(server.request_count() == 1);
    CHECK(reports.any_contains("redirects are not followed"));
}

TEST_CASE(
    "Webhook: endpoint down fails after max_attempts and is reported while notify() stays fast",
    "[notifier][webhook]") {
    std::string url;
    {
        HttpTestServer server;
        url = server.url();
        server.close();  // nothing listens on that port any more
    }
    Reports reports;
    WebhookOptions o = fast_options(url, reports);
    o.max_attempts = 3;
    WebhookNotifier notifier(o);

    const auto t0 = steady::now();
    notifier.notify(sample());
    const double notify_ms = ms_since(t0);
    CHECK(notify_ms < 5.0);  // enqueue only (typically a few microseconds)

    REQUIRE(notifier.flush(10s));
    const auto c = notifier.counters();
    CHECK(c.queued == 1);
    CHECK(c.failed == 1);
    CHECK(c.retries == 2);
    CHECK(c.delivered == 0);
    INFO(reports.joined());
    REQUIRE(reports.all().size() == 1);
    CHECK(reports.any_contains("failed after 3 attempt(s)"));
    CHECK(reports.any_contains("onnect"));  // "Couldn't connect to server"
}

TEST_CASE("Webhook: a hung endpoint never slows notify() and the request times out",
          "[notifier][webhook]") {
    HttpTestServer server;
    server.set_delay(10s);
    Reports reports;
    WebhookOptions o = fast_options(server.url(), reports);
    o.request_timeout = 300ms;
    o.max_attempts = 1;
    o.queue_capacity = 2048;
    o.shutdown_timeout = 200ms;
    auto notifier = std::make_unique<WebhookNotifier>(o);

    notifier->notify(sample());
    REQUIRE(server.wait_for_requests(1, 5s));  // the worker is now waiting on the hung server

    std::vector<double> each_us;
    each_us.reserve(1000);
    const Notification n = sample();
    const auto t0 = steady::now();
    for (int i = 0; i < 1000; ++i) {
        const auto s = steady::now();
        notifier->notify(n);
        each_us.push_back(std::chrono::duration<double, std::micro>(steady::now() - s).count());
    }
    const double total_ms = ms_since(t0);
    std::sort(each_us.begin(), each_us.end());
    WARN("1000 notify() calls while the endpoint hangs: " << total_ms << " ms total, median "
                                                          << each_us[500] << " us, max "
                                                          << each_us.back() << " us");
    CHECK(total_ms < 50.0);
    CHECK(each_us[500] < 50.0);
    CHECK(notifier->counters().queued == 1001);
    CHECK(notifier->counters().dropped == 0);

    // The first request times out after request_timeout and fails (max_attempts = 1).
    const auto deadline = steady::now() + 5s;
    while (notifier->counters().failed == 0 && steady::now() < deadline)
        std::this_thread::sleep_for(5ms);
    INFO(reports.joined());
    CHECK(notifier->counters().failed >= 1);
    CHECK(reports.any_contains("Timeout was reached"));
    CHECK_FALSE(notifier->flush(10ms));  // hundreds still queued behind a hung endpoint

    // The destructor gives up within shutdown_timeout (plus scheduling slack).
    const auto d0 = steady::now();
    notifier.reset();
    const double destroy_ms = ms_since(d0);
    WARN("destructor with 1000 queued on a hung endpoint: " << destroy_ms << " ms");
    CHECK(destroy_ms < 200.0 + 800.0);
    CHECK(reports.any_contains("not delivered within shutdown_timeout"));
}

TEST_CASE("Webhook: the destructor returns within shutdown_timeout with a hung endpoint",
          "[notifier][webhook]") {
    HttpTestServer server;
    server.set_delay(30s);
    Reports reports;
    WebhookOptions o = fast_options(server.url(), reports);
    o.request_timeout = 20s;  // far longer than the shutdown budget
    o.shutdown_timeout = 300ms;
    auto notifier = std::make_unique<WebhookNotifier>(o);
    for (int i = 0; i < 3; ++i) notifier->notify(sample());
    REQUIRE(server.wait_for_requests(1, 5s));

    const auto d0 = steady::now();
    notifier.reset();
    const double destroy_ms = ms_since(d0);
    WARN("destructor, request in flight on a hung endpoint: " << destroy_ms << " ms");
    CHECK(destroy_ms >= 250.0);  // it did keep trying until the deadline
    CHECK(destroy_ms < 300.0 + 700.0);
    INFO(reports.joined());
    CHECK(reports.any_contains("abandoned at shutdown during attempt 1"));
    CHECK(reports.any_contains("2 queued notification(s) failed"));
}

TEST_CASE("Webhook: the destructor delivers what is queued to a healthy endpoint",
          "[notifier][webhook]") {
    HttpTestServer server;
    Reports reports;
    {
        WebhookNotifier notifier(fast_options(server.url(), reports));
        for (int i = 0; i < 20; ++i) notifier.notify(sample("agent-" + std::to_string(i)));
    }
    CHECK(server.request_count() == 20);
    CHECK(reports.all().empty());
}

TEST_CASE("Webhook: queue overflow drops and counts and reports", "[notifier][webhook]") {
    HttpTestServer server;
    server.set_delay(10s);
    Reports reports;
    WebhookOptions o = fast_options(server.url(), reports);
    o.queue_capacity = 4;
    o.request_timeout = 20s;
    o.shutdown_timeout = 100ms;
    auto notifier = std::make_unique<WebhookNotifier>(o);
    notifier->notify(sample());
    REQUIRE(server.wait_for_requests(1, 5s));  // in flight: the queue is empty again
    for (int i = 0; i < 4; ++i) notifier->notify(sample());
    CHECK(notifier->counters().dropped == 0);
    CHECK(reports.all().empty());

    for (int i = 0; i < 3; ++i) notifier->notify(sample("agent-late"));
    const auto c = notifier->counters();
    CHECK(c.queued == 5);
    CHECK(c.dropped == 3);
    // The first drop is reported at once, from notify(); the next two within the same second
    // are reported together later.
    INFO(reports.joined());
    REQUIRE(reports.all().size() == 1);
    CHECK(
        reports.any_contains("queue full (capacity 4): 1 notification(s) dropped, the last a "
                             "warning for agent \"agent-late\""));

    notifier.reset();
    INFO(reports.joined());
    CHECK(reports.any_contains("2 notification(s) dropped; 3 dropped in total"));
}

TEST_CASE("Webhook: invalid details still deliver the alert and are reported",
          "[notifier][webhook]") {
    HttpTestServer server;
    Reports reports;
    WebhookNotifier notifier(fast_options(server.url(), reports));
    Notification n = sample();
    n.details_json = "{\"score\":0.81}";
    notifier.notify(n);
    REQUIRE(notifier.flush(5s));
    CHECK(notifier.counters().delivered == 1);
    REQUIRE(server.request_count() == 1);
    const json body = json::parse(server.requests()[0].body);
    CHECK(body.at("summary") == n.summary);
    CHECK(body.at("details").at("invalid_details_json").get<std::string>().find("floating-point") !=
          std::string::npos);
    CHECK(reports.any_contains("sent without its details"));
}

TEST_CASE("Webhook: an error handler that throws does not stop delivery", "[notifier][webhook]") {
    HttpTestServer server;
    server.fail_first(1, 404);
    WebhookOptions o;
    o.url = server.url();
    std::atomic<int> calls{0};
    o.error_handler = [&](std::string_view) {
        ++calls;
        throw std::runtime_error("handler bug");
    };
    WebhookNotifier notifier(o);
    notifier.notify(sample());
    notifier.notify(sample());
    REQUIRE(notifier.flush(5s));
    CHECK(calls == 1);
    CHECK(notifier.counters().failed == 1);
    CHECK(notifier.counters().delivered == 1);
}

TEST_CASE("Webhook: many threads notify at once", "[notifier][webhook]") {
    HttpTestServer server;
    Reports reports;
    WebhookNotifier notifier(fast_options(server.url(), reports));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 25; ++i)
                notifier.notify(sample("agent-" + std::to_string(t) + "-" + std::to_string(i)));
        });
    for (auto& t : threads) t.join();
    REQUIRE(notifier.flush(20s));
    CHECK(notifier.counters().delivered == 100);
    CHECK(server.request_count() == 100);
}

TEST_CASE("Webhook: bad URLs and headers and options are refused", "[notifier][webhook]") {
    const auto refused = [](WebhookOptions o, const std::string& needle) {
        try {
            const std::string url = o.url;
            WebhookNotifier n(std::move(o));
            FAIL("accepted " << url << " (expected: " << needle << ")");
        } catch (const kakunin::Error& e) {
            CHECK(e.category() == kakunin::ErrorCategory::invalid_input);
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    const auto with_url = [](const std::string& url) {
        WebhookOptions o;
        o.url = url;
        return o;
    };
    refused(with_url(""), "WebhookOptions::url: empty");
    refused(with_url("example.com/hook"), "WebhookOptions::url: not an absolute URL");
    refused(with_url("ftp://example.com/hook"), "scheme must be http or https");
    refused(with_url("file:///etc/passwd"), "WebhookOptions::url");
    refused(with_url("http://exa mple.com/"), "space or control character");
    refused(with_url("http:///path"), "WebhookOptions::url");

    WebhookOptions o = with_url("http://127.0.0.1:9/hook");
    o.headers = {"Authorization: Bearer x", "X-Evil: a\r\nHost: b"};
    refused(o, "WebhookOptions::headers[1]: contains a line break");
    o.headers = {"no colon here"};
    refused(o, "WebhookOptions::headers[0]: not \"Name: value\"");
    o.headers = {"Bad Name: v"};
    refused(o, "headers[0]: the name contains a character");
    o.headers = {"content-type: text/plain"};
    refused(o, "Content-Type is set by the notifier");
    o.headers = {};
    o.max_attempts = 0;
    refused(o, "max_attempts must be at least 1");
    o.max_attempts = 1;
    o.queue_capacity = 0;
    refused(o, "queue_capacity must be at least 1");
    o.queue_capacity = 1;
    o.request_timeout = 0ms;
    refused(o, "request_timeout must be positive");

    o.request_timeout = 100ms;
    CHECK_NOTHROW(WebhookNotifier(o));  // and its destructor, with nothing queued
    CHECK_NOTHROW(WebhookNotifier(with_url("https://alerts.example.com:8443/k?token=1")));
}

// ---- the simple notifiers ---------------------------------------------------------------------

TEST_CASE("CallbackNotifier calls the function and contains its exceptions", "[notifier]") {
    std::vector<Notification> seen;
    kakunin::CallbackNotifier cb([&](const Notification& n) {
        seen.push_back(n);
        if (n.kind == Notification::Kind::halt) throw std::runtime_error("callback bug");
    });
    cb.notify(sample());
    Notification h = sample();
    h.kind = Notification::Kind::halt;
    cb.notify(h);  // must not throw
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].summary == sample().summary);
    CHECK(seen[1].kind == Notification::Kind::halt);
    CHECK(cb.exceptions() == 1);
    CHECK_THROWS_AS(kakunin::CallbackNotifier(nullptr), kakunin::Error);
}

TEST_CASE("LoggingNotifier writes one line per notification", "[notifier]") {
    std::ostringstream out;
    kakunin::LoggingNotifier log(out);
    Notification n = sample();
    n.summary = "line one\nline \"two\"";
    log.notify(n);
    Notification bare;
    bare.kind = Notification::Kind::revocation;
    bare.agent_id = "agent-9";
    bare.at_ns = kakunin::utc(2024, 1, 8, 7, 0, 0);
    log.notify(bare);
    CHECK(out.str() ==
          "2024-01-08T07:00:00.123456789Z kakunin warning agent=\"agent-7\" incident=\"inc-42\" "
          "score_ppm=810000 summary=\"line one line \\\"two\\\"\"\n"
          "2024-01-08T07:00:00Z kakunin revocation agent=\"agent-9\" score_ppm=0 summary=\"\"\n");
    CHECK(log.write_failures() == 0);

    std::ostringstream jl;
    kakunin::LoggingNotifier json_log(jl, kakunin::LoggingNotifier::Format::json_lines);
    json_log.notify(sample());
    CHECK(jl.str() == kakunin::to_json(sample()) + "\n");
}

TEST_CASE("LoggingNotifier appends to a file and keeps concurrent lines whole", "[notifier]") {
    const auto dir =
        std::filesystem::temp_directory_path() / ("kakunin-notifier-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "alerts.log").string();
    {
        kakunin::LoggingNotifier log(path);
        log.notify(sample());
    }
    {
        kakunin::LoggingNotifier log(path);  // appends, never truncates
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&, t] {
                for (int i = 0; i < 200; ++i) {
                    Notification n = sample("agent-" + std::to_string(t));
                    n.summary = std::string(300, static_cast<char>('a' + t));
                    log.notify(n);
                }
            });
        for (auto& t : threads) t.join();
    }
    std::ifstream in(path);
    std::string line;
    std::size_t lines = 0;
    while (std::getline(in, line)) {
        ++lines;
        if (lines == 1) {
            CHECK(line == kakunin::LoggingNotifier::format_line(sample()));
            continue;
        }
        // Each line is exactly one notification: its agent and its 300-letter summary agree.
        const auto agent_pos = line.find("agent=\"agent-");
        REQUIRE(agent_pos != std::string::npos);
        const char letter = static_cast<char>('a' + (line[agent_pos + 13] - '0'));
        CHECK(line.substr(line.size() - 302) == "\"" + std::string(300, letter) + "\"");
    }
    CHECK(lines == 801);
    std::filesystem::remove_all(dir);

    try {
        kakunin::LoggingNotifier bad("/nonexistent-dir-kakunin/x/alerts.log");
        FAIL("opened a file in a missing directory");
    } catch (const kakunin::Error& e) {
        CHECK(e.category() == kakunin::ErrorCategory::io);
        CHECK(std::string(e.what()).find("/nonexistent-dir-kakunin/x/alerts.log") !=
              std::string::npos);
    }
}

TEST_CASE("MemoryNotifier and MultiNotifier", "[notifier]") {
    auto memory = std::make_shared<kakunin::MemoryNotifier>();
    std::atomic<int> callbacks{0};
    auto cb =
        std::make_shared<kakunin::CallbackNotifier>([&](const Notification&) { ++callbacks; });
    kakunin::MultiNotifier multi({memory, cb, std::make_shared<kakunin::NullNotifier>()});

    std::thread later([&] {
        std::this_thread::sleep_for(20ms);
        multi.notify(sample());
        multi.notify(sample("agent-8"));
    });
    CHECK(memory->wait_for(2, 5s));
    later.join();
    CHECK(callbacks == 2);
    const auto all = memory->notifications();
    REQUIRE(all.size() == 2);
    CHECK(all[1].agent_id == "agent-8");
    CHECK_FALSE(memory->wait_for(3, 10ms));

    CHECK_THROWS_AS(kakunin::MultiNotifier({memory, nullptr}), kakunin::Error);
}

TEST_CASE("A WebhookNotifier and a log behind one MultiNotifier", "[notifier][webhook]") {
    HttpTestServer server;
    Reports reports;
    auto hook = std::make_shared<WebhookNotifier>(fast_options(server.url(), reports));
    std::ostringstream out;
    auto log = std::make_shared<kakunin::LoggingNotifier>(out);
    kakunin::MultiNotifier multi({hook, log});
    multi.notify(sample());
    REQUIRE(hook->flush(5s));
    CHECK(server.request_count() == 1);
    CHECK(out.str().find("kakunin warning agent=\"agent-7\"") != std::string::npos);
}
