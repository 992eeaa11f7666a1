// kakunin/notifier.hpp — telling people about warnings, escalations, revocations, halts and
// incidents: the Notifier interface the Guard calls from its background incident thread, and the
// implementations that ship with Kakunin (callback, log line, in-memory, fan-out, HTTP webhook).
//
//   kakunin::WebhookOptions hook;
//   hook.url = "https://alerts.example.com/kakunin";
//   hook.headers = {"Authorization: Bearer " + token};
//   hook.error_handler = [](std::string_view what) { std::cerr << what << "\n"; };
//   auto notifier = std::make_shared<kakunin::WebhookNotifier>(hook);   // POSTs JSON, retries
//   notifier->notify(notification);                                      // returns at once
//
// The JSON a webhook receives, the retry policy and the threading contract are in
// docs/notifier.md. libcurl stays in src/notify/.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"

namespace kakunin {

/// One thing a human must hear about.
struct Notification {
    enum class Kind {
        warning,     ///< anomaly score over the warning threshold; an incident is opened
        escalation,  ///< an open incident got worse or was not acknowledged in time
        revocation,  ///< the agent's certificate was revoked (automatically, by CRL or feed)
        halt,        ///< the Guard halted (kill switch, automatic halt, revocation);
                     ///< details.halt is the id a signed re-enable names
        incident,    ///< an incident was closed (resolved, or reviewed after a revocation)
    };
    Kind kind = Kind::warning;
    std::string agent_id;
    std::string incident_id;  ///< may be empty
    TimeNs at_ns = 0;         ///< when the triggering event happened (Guard clock)
    std::uint32_t score_ppm = 0;
    std::array<std::uint32_t, score_component_count> components_ppm{};
    std::string summary;       ///< one human line, e.g. "agent-7: anomaly score 0.81 (size 0.79)"
    std::string details_json;  ///< a JSON object (text) with whatever else applies, or empty
};

/// "warning", "escalation", "revocation", "halt", "incident".
const char* to_string(Notification::Kind kind) noexcept;

/// The JSON a webhook receives, one object with members in this (sorted) order:
///   {"agent":"agent-7","at_ns":1704697200000000000,
///    "components_ppm":{"concentration":..,"frequency":..,"origin":..,"size":..,"time_of_day":..},
///    "details":{...},"incident":"inc-1"|null,"kind":"warning","score_ppm":810000,
///    "summary":"..."}
/// Integers only, no floats (DESIGN §2). `details` is details_json parsed (`{}` when empty).
/// Invalid UTF-8 in strings is replaced with U+FFFD.
/// Throws kakunin::Error (invalid_input) when details_json is not a JSON object, holds a
/// floating-point number, or nests deeper than 32 levels (the message names where).
std::string to_json(const Notification& n);

/// Told about warnings, escalations, revocations, halts and incidents.
///
/// Threading contract: called from the Guard's background incident thread (or from
/// Guard::process_incidents() when GuardOptions::incident_thread is off), never from check(),
/// halt() or a revocation feed's publisher, which only queue; a Notifier shared by several Guards
/// is called from several threads at once, so notify() must be thread-safe. notify() must not block
/// for long (implementations whose delivery is slow queue and deliver on their own thread) and must
/// not throw.
class Notifier {
public:
    virtual ~Notifier() = default;
    virtual void notify(const Notification& n) noexcept = 0;
};

/// Ignores everything.
class NullNotifier final : public Notifier {
public:
    void notify(const Notification&) noexcept override {}
};

/// Calls a function on the notifying thread. The function should return quickly; an exception
/// it throws is caught and ignored (counted in exceptions()). Calls are not serialised: a
/// callback shared by several Guards must be thread-safe itself.
class CallbackNotifier final : public Notifier {
public:
    using Callback = std::function<void(const Notification&)>;
    /// Throws kakunin::Error (invalid_input) for an empty function.
    explicit CallbackNotifier(Callback callback);
    void notify(const Notification& n) noexcept override;
    std::uint64_t exceptions() const noexcept;

private:
    Callback m_callback;
    std::atomic<std::uint64_t> m_exceptions{0};
};

/// Writes one line per notification to a stream (default std::cerr) or appends it to a file.
/// Thread-safe: lines from concurrent calls never interleave. Each line is flushed.
///
/// text:       2024-01-08T07:00:00Z kakunin warning agent=agent-7 incident=inc-1
///             score_ppm=810000 summary="agent-7: anomaly score 0.81 (size 0.79)"
///             (one line; control characters in the summary become spaces, '"' and '\' are
///             escaped)
/// json_lines: the to_json() object on one line.
class LoggingNotifier final : public Notifier {
public:
    enum class Format { text, json_lines };
    /// Borrows `out`, which must outlive the notifier.
    explicit LoggingNotifier(std::ostream& out, Format format = Format::text);
    LoggingNotifier();  ///< std::cerr, text
    /// Appends to the file at `path` (created when missing). Throws kakunin::Error (io) when it
    /// cannot be opened.
    explicit LoggingNotifier(const std::string& path, Format format = Format::text);
    ~LoggingNotifier() override;
    LoggingNotifier(const LoggingNotifier&) = delete;
    LoggingNotifier& operator=(const LoggingNotifier&) = delete;

    void notify(const Notification& n) noexcept override;
    /// Lines that could not be written (stream in a failed state, out of memory).
    std::uint64_t write_failures() const noexcept;

    /// The text line for `n`, without the newline.
    static std::string format_line(const Notification& n);

private:
    struct File;
    std::unique_ptr<File> m_file;
    std::ostream* m_out;
    Format m_format;
    mutable std::mutex m_mutex;
    std::uint64_t m_write_failures = 0;
};

/// Keeps every notification in memory; for tests and for tools that show them. Thread-safe.
class MemoryNotifier final : public Notifier {
public:
    void notify(const Notification& n) noexcept override;
    std::vector<Notification> notifications() const;
    std::size_t size() const;
    /// Waits until at least `count` notifications arrived; true if they did within `timeout`.
    bool wait_for(std::size_t count, std::chrono::milliseconds timeout) const;

private:
    mutable std::mutex m_mutex;
    mutable std::condition_variable m_arrived;
    std::vector<Notification> m_notifications;
};

/// Hands each notification to several notifiers in turn (e.g. a webhook and a log file).
class MultiNotifier final : public Notifier {
public:
    /// Throws kakunin::Error (invalid_input) for a null entry.
    explicit MultiNotifier(std::vector<std::shared_ptr<Notifier>> notifiers);
    void notify(const Notification& n) noexcept override;

private:
    std::vector<std::shared_ptr<Notifier>> m_notifiers;
};

struct WebhookOptions {
    std::string url;  ///< http:// or https://
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds request_timeout{2000};  ///< whole request, connecting included
    unsigned max_attempts = 5;                        ///< first try + retries
    std::chrono::milliseconds initial_backoff{100};   ///< doubles each retry, capped at max_backoff
    std::chrono::milliseconds max_backoff{2000};
    /// Pending notifications; beyond it new ones are dropped AND counted AND reported.
    std::size_t queue_capacity = 1024;
    /// "Name: value", e.g. an Authorization header. Sent with every request, never reported.
    std::vector<std::string> headers;
    /// Told about delivery failures (after the last attempt), drops, and notifications sent
    /// without their invalid details. Called on the delivery thread, or (for drops, at most once
    /// a second) on the thread calling notify(); never concurrently. Must not block for long;
    /// an exception it throws is ignored.
    std::function<void(std::string_view)> error_handler;
    /// How long the destructor keeps delivering what is queued (attempts, backoff and an
    /// in-flight request all end by then); what is still queued at that point counts as failed.
    std::chrono::milliseconds shutdown_timeout{2000};
    /// Verify the server's TLS certificate and host name (https). Leave on outside tests.
    bool verify_tls = true;
    /// PEM file of trusted CAs for https; empty: the system's.
    std::string ca_file;
};

/// Counters, readable from any thread. queued = delivered + failed + still pending.
struct WebhookCounters {
    std::uint64_t queued;     ///< accepted by notify()
    std::uint64_t delivered;  ///< answered 2xx
    std::uint64_t retries;    ///< attempts after the first
    std::uint64_t failed;     ///< given up: attempts exhausted, not retryable, or shut down
    std::uint64_t dropped;    ///< refused by notify() because the queue was full
};

/// POSTs each notification's to_json() to an HTTP(S) endpoint, from its own thread.
///
/// A 2xx answer is delivered. 5xx, 429, timeouts and connection errors are retried with
/// exponential backoff (a Retry-After of 429/503 lengthens the wait, up to max_backoff); other
/// answers (4xx, 3xx: redirects are not followed) fail at once. Every failure is reported to
/// error_handler. Each request carries `Content-Type: application/json`, the configured headers,
/// and `Kakunin-Notification-Id`, the same on every attempt, so the receiver can drop duplicates
/// (a request that timed out may have arrived).
///
/// Threading: notify(), counters() and flush() may be called from any thread.
class WebhookNotifier final : public Notifier {
public:
    /// Throws kakunin::Error (invalid_input) for a bad URL, header or option.
    explicit WebhookNotifier(WebhookOptions options);
    /// Delivers what is queued within shutdown_timeout, then stops.
    ~WebhookNotifier() override;
    WebhookNotifier(const WebhookNotifier&) = delete;
    WebhookNotifier& operator=(const WebhookNotifier&) = delete;

    /// Enqueues a copy and returns at once; never waits for the network.
    void notify(const Notification& n) noexcept override;
    WebhookCounters counters() const noexcept;
    /// Waits until everything queued has been delivered or given up; false on timeout.
    bool flush(std::chrono::milliseconds timeout);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
