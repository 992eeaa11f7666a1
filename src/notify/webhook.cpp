// WebhookNotifier: a bounded queue filled by notify() and one delivery thread that POSTs each
// notification with libcurl, retrying with exponential backoff.
//
// The worker drives its one easy handle through a multi handle, so that the destructor can
// interrupt a hung request at once (curl_multi_wakeup) instead of waiting for libcurl's next
// progress call; the multi handle also keeps the connection open between notifications.

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "kakunin/error.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/version.hpp"
#include "notify/notification_json.hpp"

namespace kakunin {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// curl_global_init is not thread-safe in every libcurl build: once per process, never cleaned
/// up (other libraries in the process may use libcurl too).
void global_init() {
    static std::once_flag once;
    static CURLcode result = CURLE_OK;
    std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (result != CURLE_OK)
        throw Error(
            ErrorCategory::network,
            std::string("WebhookNotifier: curl_global_init failed: ") + curl_easy_strerror(result));
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

constexpr std::string_view id_header = "Kakunin-Notification-Id";

/// Parses and checks the URL; returns it without user, password, query and fragment, for
/// messages (which must not leak credentials).
std::string check_url(const std::string& url) {
    const auto bad = [&](const std::string& why) {
        return Error(ErrorCategory::invalid_input, "WebhookOptions::url: " + why);
    };
    if (url.empty()) throw bad("empty");
    for (char c : url)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            throw bad("contains a space or control character");
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), &curl_url_cleanup);
    if (!u) throw std::bad_alloc();
    if (CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0); rc != CURLUE_OK)
        throw bad(std::string("not an absolute URL (") + curl_url_strerror(rc) + ")");
    const auto part = [&](CURLUPart which) {
        char* text = nullptr;
        std::string out;
        if (curl_url_get(u.get(), which, &text, 0) == CURLUE_OK && text != nullptr) out = text;
        curl_free(text);
        return out;
    };
    const std::string scheme = part(CURLUPART_SCHEME);
    if (scheme != "http" && scheme != "https")
        throw bad("scheme must be http or https, not \"" + scheme + "\"");
    // libcurl forgives "http:/host" and "http:///host"; a configured alert URL should not.
    const std::size_t authority = scheme.size() + 3;
    if (url.size() <= authority || url.compare(scheme.size(), 3, "://") != 0 ||
        url[authority] == '/')
        throw bad("expected " + scheme + "://host[:port]/path");
    const std::string host = part(CURLUPART_HOST);
    if (host.empty()) throw bad("no host");
    const std::string port = part(CURLUPART_PORT);
    return scheme + "://" + host + (port.empty() ? "" : ":" + port) + part(CURLUPART_PATH);
}

void check_headers(const std::vector<std::string>& headers) {
    for (std::size_t i = 0; i < headers.size(); ++i) {
        const std::string& h = headers[i];
        const std::string where = "WebhookOptions::headers[" + std::to_string(i) + "]";
        const auto colon = h.find(':');
        if (colon == std::string::npos || colon == 0)
            throw Error(ErrorCategory::invalid_input, where + ": not \"Name: value\"");
        for (std::size_t k = 0; k < colon; ++k) {
            const auto c = static_cast<unsigned char>(h[k]);
            if (c <= 0x20 || c >= 0x7f || std::strchr("()<>@,;:\\\"/[]?={}", c) != nullptr)
                throw Error(ErrorCategory::invalid_input,
                            where + ": the name contains a character not allowed in a header name");
        }
        for (char c : h)
            if (c == '\r' || c == '\n' || c == '\0')
                throw Error(ErrorCategory::invalid_input,
                            where + ": contains a line break or NUL character");
        const std::string_view name(h.data(), colon);
        for (std::string_view reserved :
             {std::string_view("Content-Type"), std::string_view("Content-Length"),
              std::string_view("Transfer-Encoding"), std::string_view("Host"),
              std::string_view("Expect"), id_header})
            if (iequals(name, reserved))
                throw Error(ErrorCategory::invalid_input,
                            where + ": " + std::string(reserved) + " is set by the notifier");
    }
}

void check_options(const WebhookOptions& o) {
    const auto bad = [](const std::string& why) {
        return Error(ErrorCategory::invalid_input, "WebhookOptions::" + why);
    };
    if (o.max_attempts < 1) throw bad("max_attempts must be at least 1");
    if (o.queue_capacity < 1) throw bad("queue_capacity must be at least 1");
    if (o.connect_timeout.count() <= 0) throw bad("connect_timeout must be positive");
    if (o.request_timeout.count() <= 0) throw bad("request_timeout must be positive");
    if (o.initial_backoff.count() < 0) throw bad("initial_backoff must not be negative");
    if (o.max_backoff.count() < 0) throw bad("max_backoff must not be negative");
    if (o.shutdown_timeout.count() < 0) throw bad("shutdown_timeout must not be negative");
}

std::string random_hex64() {
    std::random_device rd;
    const std::uint64_t v = (std::uint64_t{rd()} << 32) ^ rd();
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

size_t discard_body(char*, size_t size, size_t nmemb, void*) { return size * nmemb; }

struct SlistDeleter {
    void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

struct Entry {
    Notification n;
    std::uint64_t id = 0;
};

/// What one attempt came to.
struct Attempt {
    enum class Result { delivered, retry, fail, shutdown } result = Result::fail;
    std::string error;            ///< for anything but delivered
    milliseconds retry_after{0};  ///< from a Retry-After header
};

}  // namespace

struct WebhookNotifier::Impl {
    WebhookOptions o;
    std::string display_url;
    std::string id_prefix = random_hex64();

    mutable std::mutex mutex;      ///< queue, in_flight, stopping, deadline
    std::condition_variable work;  ///< the worker waits for entries, stop, or a backoff to end
    std::condition_variable idle;  ///< flush() waits for an empty queue
    std::deque<Entry> queue;
    bool in_flight = false;
    bool stopping = false;
    steady::time_point deadline{};
    std::uint64_t next_id = 0;
    /// Mirrors of stopping/deadline for the transfer loop, which must not take the mutex.
    std::atomic<bool> stop_flag{false};
    std::atomic<steady::rep> stop_deadline{0};

    std::atomic<std::uint64_t> queued{0}, delivered{0}, retries{0}, failed{0}, dropped{0};

    std::mutex report_mutex;  ///< serialises error_handler calls; guards last_drop_report
    std::atomic<std::uint64_t> unreported_drops{0};
    steady::time_point last_drop_report{};
    bool drop_reported = false;

    CURLM* multi = nullptr;
    std::thread worker;

    // ---- reporting ---------------------------------------------------------------------------

    void call_handler(const std::string& message) noexcept {
        if (!o.error_handler) return;
        try {
            o.error_handler(message);
        } catch (...) {
            // The handler must not throw; delivery continues regardless.
        }
    }

    void report(const std::string& message) noexcept {
        std::lock_guard<std::mutex> lock(report_mutex);
        call_handler(message);
    }

    /// Reports drops not reported yet, at most once a second unless `force`. Called with
    /// report_mutex held.
    void report_drops_locked(bool force, const Notification* last) noexcept {
        const auto now = steady::now();
        if (!force && drop_reported && now - last_drop_report < std::chrono::seconds(1)) return;
        const std::uint64_t n = unreported_drops.exchange(0);
        if (n == 0) return;
        drop_reported = true;
        last_drop_report = now;
        try {
            std::string m = "webhook " + display_url + ": queue full (capacity " +
                            std::to_string(o.queue_capacity) + "): " + std::to_string(n) +
                            " notification(s) dropped";
            if (last != nullptr)
                m += ", the last a " + std::string(to_string(last->kind)) + " for agent \"" +
                     last->agent_id + "\"";
            m += "; " + std::to_string(dropped.load()) + " dropped in total";
            call_handler(m);
        } catch (...) {
            unreported_drops.fetch_add(n);  // out of memory: try again later
        }
    }

    /// From notify(): never waits for the handler (the worker reports what is left).
    void report_drop_from_notify(const Notification& n) noexcept {
        std::unique_lock<std::mutex> lock(report_mutex, std::try_to_lock);
        if (lock.owns_lock()) report_drops_locked(false, &n);
    }

    void report_drops(bool force) noexcept {
        std::lock_guard<std::mutex> lock(report_mutex);
        report_drops_locked(force, nullptr);
    }

    std::string describe(const Entry& e) const {
        return "webhook " + display_url + ": " + to_string(e.n.kind) + " for agent \"" +
               e.n.agent_id + "\" (" + std::string(id_header) + " " + id_prefix + "-" +
               std::to_string(e.id) + ")";
    }

    // ---- shutdown deadline -------------------------------------------------------------------

    bool past_deadline() const noexcept {
        return stop_flag.load(std::memory_order_acquire) &&
               steady::now().time_since_epoch().count() >=
                   stop_deadline.load(std::memory_order_acquire);
    }

    /// How long the transfer loop may sleep: a second, or until the shutdown deadline.
    int poll_timeout_ms() const noexcept {
        if (!stop_flag.load(std::memory_order_acquire)) return 1000;
        const auto left = std::chrono::duration_cast<milliseconds>(
            steady::duration(stop_deadline.load(std::memory_order_acquire)) -
            steady::now().time_since_epoch());
        return static_cast<int>(std::clamp<milliseconds::rep>(left.count() + 1, 0, 1000));
    }

    /// Waits until `t`; false when the shutdown deadline comes first.
    bool sleep_until(steady::time_point t) {
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            const auto now = steady::now();
            if (stopping && now >= deadline) return false;
            if (now >= t) return true;
            const bool was_stopping = stopping;
            work.wait_until(lock, stopping ? std::min(t, deadline) : t,
                            [&] { return stopping != was_stopping; });
        }
    }

    // ---- delivery ----------------------------------------------------------------------------

    void setup(CURL* easy, char* error_buffer) {
        curl_easy_setopt(easy, CURLOPT_URL, o.url.c_str());
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM (threads)
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &discard_body);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
        curl_easy_setopt(easy, CURLOPT_USERAGENT,
                         (std::string("kakunin/") + version_string).c_str());
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, o.verify_tls ? 1L : 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, o.verify_tls ? 2L : 0L);
        if (!o.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, o.ca_file.c_str());
    }

    Attempt attempt(CURL* easy, char* error_buffer) {
        Attempt a;
        auto timeout = o.request_timeout;
        if (stop_flag.load(std::memory_order_acquire)) {
            const auto left = std::chrono::duration_cast<milliseconds>(
                steady::time_point(steady::duration(stop_deadline.load())) - steady::now());
            if (left.count() <= 0) {
                a.result = Attempt::Result::shutdown;
                return a;
            }
            timeout = std::min(timeout, left);
        }
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(std::min(o.connect_timeout, timeout).count()));
        error_buffer[0] = '\0';

        if (CURLMcode mc = curl_multi_add_handle(multi, easy); mc != CURLM_OK) {
            a.result = Attempt::Result::retry;
            a.error = std::string("libcurl: ") + curl_multi_strerror(mc);
            return a;
        }
        bool done = false, aborted = false;
        CURLcode code = CURLE_OK;
        while (!done) {
            int running = 0;
            if (CURLMcode mc = curl_multi_perform(multi, &running); mc != CURLM_OK) {
                a.error = std::string("libcurl: ") + curl_multi_strerror(mc);
                break;
            }
            int left = 0;
            while (CURLMsg* msg = curl_multi_info_read(multi, &left))
                if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
                    code = msg->data.result;
                    done = true;
                }
            if (done) break;
            if (past_deadline()) {
                aborted = true;
                break;
            }
            // Returns on socket activity, libcurl's own timers (the request timeout among
            // them), or curl_multi_wakeup from the destructor.
            curl_multi_poll(multi, nullptr, 0, poll_timeout_ms(), nullptr);
        }
        curl_multi_remove_handle(multi, easy);

        if (aborted) {
            a.result = Attempt::Result::shutdown;
            return a;
        }
        if (!done) {
            a.result = Attempt::Result::retry;
            return a;
        }
        if (code != CURLE_OK) {
            a.error = curl_easy_strerror(code);
            if (error_buffer[0] != '\0') a.error += std::string(" (") + error_buffer + ")";
            switch (code) {
                // Retrying cannot help: the URL, the build or the TLS configuration is wrong.
                case CURLE_UNSUPPORTED_PROTOCOL:
                case CURLE_URL_MALFORMAT:
                case CURLE_NOT_BUILT_IN:
                case CURLE_PEER_FAILED_VERIFICATION:
                case CURLE_SSL_CACERT_BADFILE:
                case CURLE_SSL_CERTPROBLEM:
                case CURLE_SSL_CIPHER:
                case CURLE_SSL_ENGINE_NOTFOUND:
                case CURLE_SSL_ENGINE_SETFAILED:
                case CURLE_SSL_ISSUER_ERROR:
                case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                case CURLE_SSL_INVALIDCERTSTATUS:
                case CURLE_SSL_CRL_BADFILE: a.result = Attempt::Result::fail; break;
                default: a.result = Attempt::Result::retry; break;
            }
            return a;
        }
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            a.result = Attempt::Result::delivered;
            return a;
        }
        a.error = "HTTP " + std::to_string(status);
        if (status == 429 || (status >= 500 && status < 600)) {
            a.result = Attempt::Result::retry;
            curl_off_t after = 0;
            if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
                a.retry_after = milliseconds(std::min<curl_off_t>(after, 3600) * 1000);
        } else {
            a.result = Attempt::Result::fail;
            a.error +=
                status >= 300 && status < 400 ? " (redirects are not followed)" : " (not retried)";
        }
        return a;
    }

    void deliver(CURL* easy, char* error_buffer, const Entry& e) {
        if (easy == nullptr) {
            failed.fetch_add(1);
            report(describe(e) + ": failed: libcurl could not create a handle");
            return;
        }
        std::string details_error;
        const std::string body = notify_detail::notification_json(e.n, &details_error);
        if (!details_error.empty())
            report(describe(e) + ": sent without its details: " + details_error);

        Slist headers;
        const auto add = [&](const std::string& h) {
            curl_slist* l = curl_slist_append(headers.get(), h.c_str());
            if (l == nullptr) throw std::bad_alloc();
            (void)headers.release();
            headers.reset(l);
        };
        add("Content-Type: application/json");
        add("Expect:");  // no 100-continue round trip for large bodies
        add(std::string(id_header) + ": " + id_prefix + "-" + std::to_string(e.id));
        for (const std::string& h : o.headers) add(h);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers.get());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());

        milliseconds backoff = o.initial_backoff;
        for (unsigned n = 1;; ++n) {
            if (n > 1) retries.fetch_add(1);
            const Attempt a = attempt(easy, error_buffer);
            if (a.result == Attempt::Result::delivered) {
                delivered.fetch_add(1);
                break;
            }
            if (a.result == Attempt::Result::shutdown) {
                failed.fetch_add(1);
                report(describe(e) + ": failed: abandoned at shutdown during attempt " +
                       std::to_string(n));
                break;
            }
            if (a.result == Attempt::Result::fail) {
                failed.fetch_add(1);
                report(describe(e) + ": failed: " + a.error);
                break;
            }
            if (n >= o.max_attempts) {
                failed.fetch_add(1);
                report(describe(e) + ": failed after " + std::to_string(n) +
                       " attempt(s): " + a.error);
                break;
            }
            const milliseconds wait = std::max(backoff, std::min(a.retry_after, o.max_backoff));
            backoff = std::min(backoff * 2, o.max_backoff);
            if (!sleep_until(steady::now() + wait)) {
                failed.fetch_add(1);
                report(describe(e) + ": failed: shut down after " + std::to_string(n) +
                       " attempt(s): " + a.error);
                break;
            }
        }
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, nullptr);
    }

    void run() noexcept {
        char error_buffer[CURL_ERROR_SIZE] = {};
        CURL* easy = curl_easy_init();
        if (easy != nullptr) setup(easy, error_buffer);
        for (;;) {
            Entry e;
            {
                std::unique_lock<std::mutex> lock(mutex);
                work.wait(lock, [&] { return !queue.empty() || stopping; });
                if (queue.empty()) break;
                if (stopping && steady::now() >= deadline) {
                    const std::size_t left = queue.size();
                    queue.clear();
                    failed.fetch_add(left);
                    lock.unlock();
                    idle.notify_all();
                    report("webhook " + display_url + ": " + std::to_string(left) +
                           " queued notification(s) failed: not delivered within shutdown_timeout");
                    break;
                }
                e = std::move(queue.front());
                queue.pop_front();
                in_flight = true;
            }
            try {
                deliver(easy, error_buffer, e);
            } catch (...) {  // out of memory building the request
                failed.fetch_add(1);
                report("webhook " + display_url + ": a notification failed: out of memory");
            }
            {
                std::lock_guard<std::mutex> lock(mutex);
                in_flight = false;
            }
            idle.notify_all();
            report_drops(false);
        }
        report_drops(true);
        if (easy != nullptr) curl_easy_cleanup(easy);
    }
};

WebhookNotifier::WebhookNotifier(WebhookOptions options) : m_impl(std::make_unique<Impl>()) {
    global_init();
    check_options(options);
    check_headers(options.headers);
    m_impl->display_url = check_url(options.url);
    m_impl->o = std::move(options);
    m_impl->multi = curl_multi_init();
    if (m_impl->multi == nullptr)
        throw Error(ErrorCategory::network, "WebhookNotifier: curl_multi_init failed");
    try {
        m_impl->worker = std::thread([impl = m_impl.get()] { impl->run(); });
    } catch (...) {
        curl_multi_cleanup(m_impl->multi);
        throw;
    }
}

WebhookNotifier::~WebhookNotifier() {
    Impl& m = *m_impl;
    {
        std::lock_guard<std::mutex> lock(m.mutex);
        m.stopping = true;
        m.deadline = steady::now() + m.o.shutdown_timeout;
        m.stop_deadline.store(m.deadline.time_since_epoch().count(), std::memory_order_release);
        m.stop_flag.store(true, std::memory_order_release);
    }
    m.work.notify_all();
    curl_multi_wakeup(m.multi);
    m.worker.join();
    curl_multi_cleanup(m.multi);
}

void WebhookNotifier::notify(const Notification& n) noexcept {
    Impl& m = *m_impl;
    try {
        Entry e{n, 0};  // copy before taking the lock
        {
            std::lock_guard<std::mutex> lock(m.mutex);
            if (m.queue.size() < m.o.queue_capacity && !m.stopping) {
                e.id = ++m.next_id;
                m.queue.push_back(std::move(e));
                m.queued.fetch_add(1);
                m.work.notify_one();
                return;
            }
        }
    } catch (...) {
        // out of memory: counted as a drop below
    }
    m.dropped.fetch_add(1);
    m.unreported_drops.fetch_add(1);
    m.report_drop_from_notify(n);
}

WebhookCounters WebhookNotifier::counters() const noexcept {
    const Impl& m = *m_impl;
    // delivered/failed before queued, so that a reader never sees more finished than queued.
    WebhookCounters c{};
    c.delivered = m.delivered.load();
    c.failed = m.failed.load();
    c.retries = m.retries.load();
    c.dropped = m.dropped.load();
    c.queued = m.queued.load();
    return c;
}

bool WebhookNotifier::flush(std::chrono::milliseconds timeout) {
    Impl& m = *m_impl;
    std::unique_lock<std::mutex> lock(m.mutex);
    return m.idle.wait_for(lock, timeout, [&] { return m.queue.empty() && !m.in_flight; });
}

}  // namespace kakunin
