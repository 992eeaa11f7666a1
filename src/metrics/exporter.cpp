// MetricsExporter: prometheus-cpp's HTTP exposer with one collectable that reads the Guards and
// sources added at each scrape, under the exporter's lock (remove() waits for it).
#include <netdb.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "kakunin/error.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/metrics.hpp"
#include "metrics/family_writer.hpp"
#include "metrics/guard_metrics.hpp"

namespace kakunin {

namespace {

/// What prometheus-cpp's exposer calls at each scrape of /metrics.
class Collector final : public prometheus::Collectable {
public:
    using Fn = std::function<std::vector<prometheus::MetricFamily>()>;
    explicit Collector(Fn fn) : m_fn(std::move(fn)) {}
    std::vector<prometheus::MetricFamily> Collect() const override { return m_fn(); }

private:
    Fn m_fn;
};

/// Connects to the exporter's own address and closes at once, every 10 ms, until stopped:
/// civetweb's listening thread polls for 2 s between looks at its stop flag, so without a
/// connection to wake it, stopping the server takes up to 2 s. Best effort: if nothing can be
/// reached, stopping just takes that long.
class Waker {
public:
    Waker(const std::string& bind_address, int port) {
        std::string host = bind_address.substr(0, bind_address.rfind(':'));
        if (bind_address.find(':') == std::string::npos) host.clear();  // a port alone
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2);
        if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
        if (host == "::") host = "::1";
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        addrinfo* found = nullptr;
        if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return;
        struct Free {
            addrinfo* a;
            ~Free() {
                if (a != nullptr) ::freeaddrinfo(a);
            }
        } owned{found};
        m_thread = std::thread([this, found] {
            std::unique_lock<std::mutex> lock(m_mutex);
            while (
                !m_changed.wait_for(lock, std::chrono::milliseconds(10), [&] { return m_stop; })) {
                const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0) continue;
                (void)::connect(fd, found->ai_addr, found->ai_addrlen);
                ::close(fd);
            }
            ::freeaddrinfo(found);
        });
        owned.a = nullptr;  // the thread frees it
    }
    ~Waker() {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_stop = true;
        }
        m_changed.notify_all();
        if (m_thread.joinable()) m_thread.join();
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_changed;
    bool m_stop = false;
    std::thread m_thread;
};

}  // namespace

struct MetricsExporter::Impl {
    struct GuardEntry {
        const Guard* guard;
        std::string agent;
        bool certified;
    };
    struct Source {
        std::string name;
        std::function<void(MetricWriter&)> fn;
        std::uint64_t errors = 0;
        bool failing = false;  ///< the last call threw (reported once until it succeeds)
    };

    explicit Impl(MetricsExporterOptions o) : options(std::move(o)) {}

    /// Throws invalid_state when called from inside a scrape on this thread (it would wait for
    /// itself).
    void not_from_scrape(const char* what) const {
        if (collector.load(std::memory_order_acquire) == std::this_thread::get_id())
            throw Error(ErrorCategory::invalid_state, std::string("metrics: ") + what +
                                                          " from inside a scrape (a source or the "
                                                          "error handler) would wait for itself");
    }

    void report(const std::string& message) const noexcept {
        if (!options.error_handler) return;
        try {
            options.error_handler(message);
        } catch (...) {
        }
    }

    std::vector<prometheus::MetricFamily> collect() const noexcept {
        try {
            std::lock_guard<std::mutex> lock(mutex);
            collector.store(std::this_thread::get_id(), std::memory_order_release);
            struct Reset {
                const Impl& im;
                ~Reset() { im.collector.store(std::thread::id(), std::memory_order_release); }
            } reset{*this};
            metrics_detail::FamilyWriter all;
            for (const GuardEntry& g : guards) {
                try {
                    metrics_detail::FamilyWriter one;
                    metrics_detail::write_guard(one, *g.guard, g.agent, g.certified);
                    all.merge(std::move(one));
                } catch (const std::exception& e) {
                    report("metrics: agent " + g.agent + " not read: " + e.what());
                }
            }
            for (Source& s : sources) {
                try {
                    metrics_detail::FamilyWriter one;
                    s.fn(one);
                    all.merge(std::move(one));
                    s.failing = false;
                } catch (const std::exception& e) {
                    ++s.errors;
                    if (!s.failing) report("metrics source " + s.name + ": " + e.what());
                    s.failing = true;
                } catch (...) {
                    ++s.errors;
                    if (!s.failing) report("metrics source " + s.name + ": unknown exception");
                    s.failing = true;
                }
            }
            for (const Source& s : sources)
                all.counter("kakunin_metrics_source_errors_total",
                            "Scrapes in which a metrics source threw (its samples dropped).",
                            {{"source", s.name}}, static_cast<double>(s.errors));
            return std::move(all).take();
        } catch (const std::exception& e) {
            report(std::string("metrics: scrape failed: ") + e.what());
        } catch (...) {
            report("metrics: scrape failed");
        }
        return {};
    }

    MetricsExporterOptions options;
    mutable std::mutex mutex;  ///< guards, sources, and a scrape from start to end
    std::vector<GuardEntry> guards;
    mutable std::vector<Source> sources;               ///< error counts change in a scrape
    mutable std::atomic<std::thread::id> collector{};  ///< the thread scraping now
    std::shared_ptr<prometheus::Collectable> collectable;
    int port = 0;
    std::unique_ptr<prometheus::Exposer> exposer;  ///< last: stops before the rest goes
};

MetricsExporter::MetricsExporter(MetricsExporterOptions options)
    : m_impl(std::make_unique<Impl>(std::move(options))) {
    Impl& im = *m_impl;
    if (im.options.bind_address.empty())
        throw Error(ErrorCategory::invalid_input, "metrics: no bind address");
    im.collectable = std::make_shared<Collector>([&im] { return im.collect(); });
    try {
        im.exposer = std::make_unique<prometheus::Exposer>(
            im.options.bind_address, std::max<std::size_t>(im.options.threads, 1));
        im.exposer->RegisterCollectable(im.collectable, "/metrics");
        const std::vector<int> ports = im.exposer->GetListeningPorts();
        if (ports.empty()) throw std::runtime_error("no listening port");
        im.port = ports.front();
    } catch (const std::exception& e) {
        im.exposer.reset();
        throw Error(ErrorCategory::network,
                    "metrics: cannot listen on " + im.options.bind_address + ": " + e.what());
    }
}

MetricsExporter::~MetricsExporter() {
    try {
        Waker waker(m_impl->options.bind_address, m_impl->port);
        m_impl->exposer.reset();
    } catch (...) {  // no thread for the waker: stopping takes up to 2 s instead
        m_impl->exposer.reset();
    }
}

int MetricsExporter::port() const noexcept { return m_impl->port; }

void MetricsExporter::add(const Guard& guard, std::string agent) {
    Impl& im = *m_impl;
    im.not_from_scrape("add");
    const std::optional<AgentCertificate> cert = guard.certificate();
    if (cert) {
        const std::string id = cert->agent_id();
        if (!agent.empty() && agent != id)
            throw Error(ErrorCategory::invalid_input,
                        "metrics: the Guard runs on agent " + id + "'s certificate, not \"" +
                            agent + "\" (its agent label is the certificate's)");
        agent = id;
    } else if (agent.empty()) {
        throw Error(ErrorCategory::invalid_input,
                    "metrics: a limits-only Guard needs an agent label");
    }
    metrics_detail::check_label_value(agent, "agent label");
    std::lock_guard<std::mutex> lock(im.mutex);
    for (const Impl::GuardEntry& g : im.guards) {
        if (g.guard == &guard)
            throw Error(ErrorCategory::invalid_input,
                        "metrics: the Guard of agent " + g.agent + " is added already");
        if (g.agent == agent)
            throw Error(ErrorCategory::invalid_input,
                        "metrics: another Guard is exported as agent " + agent +
                            " (their series would collide)");
    }
    im.guards.push_back({&guard, std::move(agent), cert.has_value()});
}

bool MetricsExporter::remove(const Guard& guard) {
    Impl& im = *m_impl;
    im.not_from_scrape("remove");
    std::lock_guard<std::mutex> lock(im.mutex);  // waits for a scrape in progress
    const auto at = std::find_if(im.guards.begin(), im.guards.end(),
                                 [&](const Impl::GuardEntry& g) { return g.guard == &guard; });
    if (at == im.guards.end()) return false;
    im.guards.erase(at);
    return true;
}

void MetricsExporter::add_source(std::string name, std::function<void(MetricWriter&)> source) {
    Impl& im = *m_impl;
    im.not_from_scrape("add_source");
    if (name.empty()) throw Error(ErrorCategory::invalid_input, "metrics: a source needs a name");
    if (!source)
        throw Error(ErrorCategory::invalid_input, "metrics: source " + name + " has no function");
    metrics_detail::check_label_value(name, "source name");
    std::lock_guard<std::mutex> lock(im.mutex);
    for (const Impl::Source& s : im.sources)
        if (s.name == name)
            throw Error(ErrorCategory::invalid_input, "metrics: a source " + name + " exists");
    im.sources.push_back({std::move(name), std::move(source)});
}

bool MetricsExporter::remove_source(std::string_view name) {
    Impl& im = *m_impl;
    im.not_from_scrape("remove_source");
    std::function<void(MetricWriter&)> gone;  // destroyed after the lock is released
    {
        std::lock_guard<std::mutex> lock(im.mutex);
        const auto at = std::find_if(im.sources.begin(), im.sources.end(),
                                     [&](const Impl::Source& s) { return s.name == name; });
        if (at == im.sources.end()) return false;
        gone = std::move(at->fn);
        im.sources.erase(at);
    }
    return true;
}

std::string MetricsExporter::scrape() const {
    m_impl->not_from_scrape("scrape");
    return prometheus::TextSerializer().Serialize(m_impl->collect());
}

}  // namespace kakunin
