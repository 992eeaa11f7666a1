// kakunin/metrics.hpp — Prometheus metrics of a process's Guards, served over HTTP at /metrics.
// Pull model: a scrape reads what the Guards already keep (counters, the sampled check latency,
// the audit trail's queue, incidents, the certificate's expiry, the state); check() does no
// more than before. Every metric and its labels: docs/metrics.md.
//
//   kakunin::MetricsExporter metrics({"0.0.0.0:9464"});    // listens at once
//   metrics.add(guard);                                    // agent label: the certificate's
//   metrics.add(backtest_guard, "bt-1");                   // a limits-only Guard: named here
//   metrics.add_source("leases", [&](kakunin::MetricWriter& w) {
//       w.gauge("kakunin_lease_level", "units left in the lease", {{"lease", "l1"}}, 42);
//   });
//   ...
//   metrics.remove(guard);                                 // before the Guard is destroyed
//
// Built when prometheus-cpp is found (CMake option KAKUNIN_WITH_METRICS); its headers stay in
// src/metrics/.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kakunin/fwd.hpp"

namespace kakunin {

/// Label name and value pairs of one sample.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

/// What a metrics source writes its samples to, during a scrape (MetricsExporter::add_source).
/// Names follow Prometheus ([a-zA-Z_:][a-zA-Z0-9_:]*; a counter's ends in _total), label names
/// [a-zA-Z_][a-zA-Z0-9_]* not starting with "__". Samples of one name form one family: they
/// must keep its type and differ in their labels. Anything else throws kakunin::Error
/// (invalid_input, naming the metric), and the source's samples of that scrape are dropped.
class MetricWriter {
public:
    virtual ~MetricWriter() = default;
    /// A value that goes up and down (a lease's level, a queue's depth).
    virtual void gauge(std::string_view name, std::string_view help, const MetricLabels& labels,
                       double value) = 0;
    /// A count since the process started (finite, not negative; it never goes down).
    virtual void counter(std::string_view name, std::string_view help, const MetricLabels& labels,
                         double value) = 0;
};

struct MetricsExporterOptions {
    /// host:port to listen on; port 0 takes a free one (MetricsExporter::port()).
    std::string bind_address = "127.0.0.1:9464";
    /// HTTP threads; scrapes are answered one at a time whatever this is.
    std::size_t threads = 2;
    /// Told when a source throws (once, until it succeeds again) or a Guard cannot be read.
    /// Called from a scraping thread; must not throw, block for long, or call the exporter.
    std::function<void(std::string_view message)> error_handler;
};

/// Serves the metrics of the Guards and sources added to it at /metrics on its address.
///
/// Threading: every member may be called from any thread. Scrapes run on the exporter's HTTP
/// threads, one at a time; remove() and remove_source() wait for a scrape in progress, so once
/// they return nothing reads that Guard or calls that source again. A source, the error
/// handler and anything they call must not call back into the exporter (that would wait for
/// itself; it throws kakunin::Error invalid_state instead).
class MetricsExporter {
public:
    /// Listens on options.bind_address. Throws kakunin::Error (network) if it cannot.
    explicit MetricsExporter(MetricsExporterOptions options = {});
    /// Stops listening (waiting for a scrape in progress) before anything it reads goes.
    ~MetricsExporter();
    MetricsExporter(const MetricsExporter&) = delete;
    MetricsExporter& operator=(const MetricsExporter&) = delete;

    /// The port it listens on (the one taken for port 0).
    int port() const noexcept;

    /// Exports the Guard's metrics under its agent label: the certificate's agent id, or, for a
    /// limits-only Guard, `agent` (required there; for a Guard on a certificate it must be empty
    /// or that id). The Guard is borrowed: remove() it before it is destroyed. Throws
    /// kakunin::Error (invalid_input) for a missing or mismatched label, a Guard already added,
    /// or an agent label another added Guard has (its series would collide).
    void add(const Guard& guard, std::string agent = {});
    /// Stops exporting the Guard, after any scrape in progress; false if it was not added.
    bool remove(const Guard& guard);

    /// Adds a source called at every scrape to write its own samples (e.g. firm-lease levels).
    /// `name` (non-empty, unique; throws kakunin::Error invalid_input otherwise) labels its
    /// failures in kakunin_metrics_source_errors_total. A source that throws loses that scrape's
    /// samples only. It must be quick: scrapes wait for it.
    void add_source(std::string name, std::function<void(MetricWriter&)> source);
    /// Removes a source, after any scrape in progress; false if there was none of that name.
    bool remove_source(std::string_view name);

    /// The exposition text a scrape of /metrics gets now (Prometheus text format 0.0.4).
    std::string scrape() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

class PostgresFirmLimits;

/// Adds the firm leases of `firm` as the source `name` (docs/metrics.md §2.7): for every lease,
/// labelled agent and budget, kakunin_firm_lease_granted, _consumed and _acked (the budget's
/// units: 10^-6 of its currency, or orders) and kakunin_firm_lease_seconds_to_expiry (negative:
/// not in force). `firm` must stay alive until remove_source(name).
void add_firm_lease_metrics(MetricsExporter& metrics, std::string name,
                            std::shared_ptr<const PostgresFirmLimits> firm);

}  // namespace kakunin
