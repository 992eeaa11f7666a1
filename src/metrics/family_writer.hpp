// The MetricWriter behind a scrape: collects samples into prometheus-cpp metric families,
// refusing what Prometheus would refuse (bad names, a type changed, a series twice).
#pragma once

#include <prometheus/metric_family.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/metrics.hpp"

namespace kakunin::metrics_detail {

/// Throws kakunin::Error (invalid_input) naming `what` unless `name` is a valid metric name.
void check_metric_name(std::string_view name, std::string_view what);
/// Throws kakunin::Error (invalid_input) unless `value` is valid UTF-8 (a label value).
void check_label_value(std::string_view value, std::string_view what);

class FamilyWriter final : public MetricWriter {
public:
    void gauge(std::string_view name, std::string_view help, const MetricLabels& labels,
               double value) override;
    void counter(std::string_view name, std::string_view help, const MetricLabels& labels,
                 double value) override;
    /// A histogram: `counts` per bucket (not cumulative), the last one above every bound.
    void histogram(std::string_view name, std::string_view help, const MetricLabels& labels,
                   const std::vector<double>& upper_bounds,
                   const std::vector<std::uint64_t>& counts, double sum);

    /// Adds everything `other` holds, or (throwing kakunin::Error invalid_input) nothing: a
    /// family of another type, or a series both hold.
    void merge(FamilyWriter&& other);

    std::vector<prometheus::MetricFamily> take() && { return std::move(m_families); }

private:
    using Series = std::vector<std::pair<std::string, std::string>>;
    prometheus::ClientMetric& add(std::string_view name, std::string_view help,
                                  prometheus::MetricType type, const MetricLabels& labels);
    std::vector<prometheus::MetricFamily> m_families;
    std::map<std::string, std::size_t, std::less<>> m_index;  ///< name -> m_families
    std::map<std::string, std::set<Series>, std::less<>> m_series;
};

}  // namespace kakunin::metrics_detail
