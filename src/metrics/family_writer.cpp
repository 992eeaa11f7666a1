// FamilyWriter: Prometheus names, types and series checked as samples arrive.
#include "metrics/family_writer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "kakunin/error.hpp"

namespace kakunin::metrics_detail {

namespace {

bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

[[noreturn]] void refuse(std::string_view what, const std::string& why) {
    throw Error(ErrorCategory::invalid_input, "metric " + std::string(what) + ": " + why);
}

void check_label_name(std::string_view label, std::string_view metric) {
    bool ok = !label.empty() && (is_alpha(label[0]) || label[0] == '_');
    for (char c : label) ok = ok && (is_alpha(c) || is_digit(c) || c == '_');
    if (!ok) refuse(metric, "invalid label name \"" + std::string(label) + "\"");
    if (label.size() >= 2 && label[0] == '_' && label[1] == '_')
        refuse(metric,
               "label names starting with __ are reserved (\"" + std::string(label) + "\")");
}

bool valid_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1fu;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0fu;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07u;
        } else {
            return false;
        }
        if (i + n >= s.size()) return false;  // truncated
        for (std::size_t k = 1; k <= n; ++k) {
            const auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3fu);
        }
        const std::uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n + 1;
    }
    return true;
}

}  // namespace

void check_metric_name(std::string_view name, std::string_view what) {
    bool ok = !name.empty() && (is_alpha(name[0]) || name[0] == '_' || name[0] == ':');
    for (char c : name) ok = ok && (is_alpha(c) || is_digit(c) || c == '_' || c == ':');
    if (!ok) refuse(what, "invalid metric name \"" + std::string(name) + "\"");
}

void check_label_value(std::string_view value, std::string_view what) {
    if (!valid_utf8(value)) refuse(what, "a label value is not valid UTF-8");
}

prometheus::ClientMetric& FamilyWriter::add(std::string_view name, std::string_view help,
                                            prometheus::MetricType type,
                                            const MetricLabels& labels) {
    check_metric_name(name, name);
    Series series;
    series.reserve(labels.size());
    for (const auto& [label, value] : labels) {
        check_label_name(label, name);
        check_label_value(value, name);
        series.emplace_back(label, value);
    }
    std::sort(series.begin(), series.end());
    for (std::size_t i = 1; i < series.size(); ++i)
        if (series[i].first == series[i - 1].first)
            refuse(name, "label \"" + series[i].first + "\" given twice");
    auto at = m_index.find(name);
    if (at == m_index.end()) {
        prometheus::MetricFamily f;
        f.name = std::string(name);
        f.help = std::string(help);
        f.type = type;
        at = m_index.emplace(f.name, m_families.size()).first;
        m_families.push_back(std::move(f));
    }
    prometheus::MetricFamily& family = m_families[at->second];
    if (family.type != type) refuse(name, "written as two types of metric");
    auto& seen = m_series[family.name];
    if (!seen.insert(series).second) refuse(name, "the same labels twice (one series, two values)");
    prometheus::ClientMetric m;
    for (const auto& [label, value] : labels) m.label.push_back({label, value});
    family.metric.push_back(std::move(m));
    return family.metric.back();
}

void FamilyWriter::gauge(std::string_view name, std::string_view help, const MetricLabels& labels,
                         double value) {
    add(name, help, prometheus::MetricType::Gauge, labels).gauge.value = value;
}

void FamilyWriter::counter(std::string_view name, std::string_view help, const MetricLabels& labels,
                           double value) {
    constexpr std::string_view suffix = "_total";
    if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix)
        refuse(name, "a counter's name ends in _total");
    if (!std::isfinite(value) || value < 0) refuse(name, "a counter is finite and not negative");
    add(name, help, prometheus::MetricType::Counter, labels).counter.value = value;
}

void FamilyWriter::histogram(std::string_view name, std::string_view help,
                             const MetricLabels& labels, const std::vector<double>& upper_bounds,
                             const std::vector<std::uint64_t>& counts, double sum) {
    if (counts.size() != upper_bounds.size() + 1)
        refuse(name, "a histogram needs one count per bound and one above them");
    prometheus::ClientMetric& m = add(name, help, prometheus::MetricType::Histogram, labels);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        prometheus::ClientMetric::Bucket b;
        b.cumulative_count = cumulative;
        b.upper_bound =
            i < upper_bounds.size() ? upper_bounds[i] : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back(b);
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = sum;
}

void FamilyWriter::merge(FamilyWriter&& other) {
    for (const prometheus::MetricFamily& f : other.m_families) {
        const auto at = m_index.find(f.name);
        if (at == m_index.end()) continue;
        if (m_families[at->second].type != f.type) refuse(f.name, "written as two types of metric");
        const auto& mine = m_series[f.name];
        for (const Series& s : other.m_series[f.name])
            if (mine.count(s) != 0)
                refuse(f.name, "the same labels twice (one series, two values)");
    }
    for (prometheus::MetricFamily& f : other.m_families) {
        auto& seen = m_series[f.name];
        for (const Series& s : other.m_series[f.name]) seen.insert(s);
        const auto at = m_index.find(f.name);
        if (at == m_index.end()) {
            m_index.emplace(f.name, m_families.size());
            m_families.push_back(std::move(f));
        } else {
            auto& into = m_families[at->second].metric;
            for (auto& m : f.metric) into.push_back(std::move(m));
        }
    }
    other.m_families.clear();
    other.m_index.clear();
    other.m_series.clear();
}

}  // namespace kakunin::metrics_detail
