// kakunin_bench [--out FILE] [Google Benchmark flags]: runs every benchmark, prints the usual
// table, and writes the figures of DESIGN §7 as one JSON object (medians over repetitions).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_support.hpp"

namespace {
std::atomic<std::uint64_t> g_allocations{0};
}

void* operator new(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

std::uint64_t kakunin::bench::allocation_count() noexcept {
    return g_allocations.load(std::memory_order_relaxed);
}

namespace {

/// Keeps every run for the figures while the console reporter prints as usual.
class CollectingReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs) {
            if (r.error_occurred) {
                m_errors.push_back(r.benchmark_name() + ": " + r.error_message);
                continue;
            }
            if (r.run_type == Run::RT_Iteration) {
                const std::string name = r.run_name.function_name;
                const double unit = r.time_unit == benchmark::kMillisecond   ? 1e6
                                    : r.time_unit == benchmark::kMicrosecond ? 1e3
                                                                             : 1.0;
                m_time_ns[name].push_back(r.GetAdjustedRealTime() * unit);
                for (const auto& [counter, value] : r.counters)
                    m_counters[name + "." + counter].push_back(value.value);
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }

    static double median(std::vector<double> v) {
        if (v.empty()) return -1;
        std::sort(v.begin(), v.end());
        return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    }
    double time(const std::string& name) const {
        auto it = m_time_ns.find(name);
        return it == m_time_ns.end() ? -1 : median(it->second);
    }
    double counter(const std::string& name) const {
        auto it = m_counters.find(name);
        return it == m_counters.end() ? -1 : median(it->second);
    }
    const std::vector<std::string>& errors() const { return m_errors; }

private:
    std::map<std::string, std::vector<double>> m_time_ns, m_counters;
    std::vector<std::string> m_errors;
};

}  // namespace

int main(int argc, char** argv) {
    std::string out = "bench-results.json";
    std::vector<char*> args;
    bool repetitions_given = false;
    for (int i = 0; i < argc; ++i) {
        if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
            continue;
        }
        if (std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0) repetitions_given = true;
        args.push_back(argv[i]);
    }
    static char default_repetitions[] = "--benchmark_repetitions=7";
    if (!repetitions_given) args.push_back(default_repetitions);
    int n = static_cast<int>(args.size());
    benchmark::Initialize(&n, args.data());
    CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);

    nlohmann::json figures = nlohmann::json::object();
    auto put = [&](const char* name, double v) {
        if (v >= 0) figures[name] = std::round(v * 100) / 100;
    };
    put("check_allowed_median_ns", reporter.time("BM_check_allowed"));
    put("check_rejected_median_ns", reporter.time("BM_check_rejected"));
    put("check_allowed_firm_median_ns", reporter.time("BM_check_allowed_firm"));
    put("firm_lease_refill_p50_us", reporter.counter("BM_firm_lease_refill.p50_us"));
    put("firm_lease_refill_p99_us", reporter.counter("BM_firm_lease_refill.p99_us"));
    put("firm_lease_select1_p99_us", reporter.counter("BM_firm_lease_refill.select1_p99_us"));
    put("check_limits_only_median_ns", reporter.time("BM_check_allowed_limits_only"));
    put("check_allowed_p50_ns", reporter.counter("BM_check_allowed_latency.p50_ns"));
    put("check_allowed_p99_ns", reporter.counter("BM_check_allowed_latency.p99_ns"));
    put("check_allowed_p999_ns", reporter.counter("BM_check_allowed_latency.p999_ns"));
    put("check_allocations_per_call",
        std::max(reporter.counter("BM_check_allowed.allocations_per_call"),
                 reporter.counter("BM_check_rejected.allocations_per_call")));
    put("ed25519_sign_median_ns", reporter.time("BM_ed25519_sign"));
    put("check_allowed_journal_median_ns", reporter.time("BM_check_allowed_journal"));
    put("check_allowed_audited_median_ns", reporter.time("BM_check_allowed_audited"));
    put("journal_recovery_records_per_s", reporter.counter("BM_journal_recovery.records_per_s"));
    put("cert_load_validate_us", reporter.time("BM_cert_load_validate") / 1000.0);
    put("audit_file_records_per_s", reporter.counter("BM_audit_file.records_per_s"));
    put("audit_signed_records_per_s", reporter.counter("BM_audit_signed.records_per_s"));
    put("verify_records_per_s", reporter.counter("BM_verify.records_per_s"));
    put("audit_pg_records_per_s", reporter.counter("BM_audit_pg.records_per_s"));
    put("raw_copy_rows_per_s", reporter.counter("BM_raw_copy.rows_per_s"));
    put("audit_pg_50_guards_records_per_s",
        reporter.counter("BM_audit_pg_50_guards.records_per_s"));
    // The goal: 50 Guards' logs on one runtime at least half the raw COPY rate (same run).
    if (figures.contains("audit_pg_50_guards_records_per_s") &&
        figures.contains("raw_copy_rows_per_s"))
        put("audit_pg_50_guards_vs_raw_copy",
            figures["audit_pg_50_guards_records_per_s"].get<double>() /
                figures["raw_copy_rows_per_s"].get<double>());
    // The same logs written in rounds by one thread, as SharedThreads' audit writer does.
    put("audit_pg_50_guards_shared_records_per_s",
        reporter.counter("BM_audit_pg_50_guards_shared.records_per_s"));
    if (figures.contains("audit_pg_50_guards_shared_records_per_s") &&
        figures.contains("raw_copy_rows_per_s"))
        put("audit_pg_50_guards_shared_vs_raw_copy",
            figures["audit_pg_50_guards_shared_records_per_s"].get<double>() /
                figures["raw_copy_rows_per_s"].get<double>());
    put("notify_rtt_p99_us", reporter.counter("BM_notify_rtt.p99_us"));
    put("revocation_cross_process_p99_us", reporter.counter("BM_revocation_cross_process.p99_us"));
    put("revocation_publish_p99_us",
        reporter.counter("BM_revocation_cross_process.publish_p99_us"));
    put("notify_durable_rtt_p99_us", reporter.counter("BM_notify_durable_rtt.p99_us"));
    put("check_lifecycle_median_ns", reporter.time("BM_guard_check_lifecycle"));
    put("on_execution_median_ns", reporter.time("BM_guard_on_execution"));
    put("check_lifecycle_engine_median_ns", reporter.time("BM_check_lifecycle"));
    put("check_lifecycle_evaluate_median_ns", reporter.time("BM_check_lifecycle_evaluate"));
    put("check_lifecycle_with_release_median_ns", reporter.time("BM_check_lifecycle_with_release"));
    put("on_execution_engine_median_ns", reporter.time("BM_on_execution"));
    put("lifecycle_allocations_per_call",
        std::max({reporter.counter("BM_check_lifecycle_with_release.allocations_per_call"),
                  reporter.counter("BM_on_execution.allocations_per_call"),
                  reporter.counter("BM_guard_check_lifecycle.allocations_per_call"),
                  reporter.counter("BM_guard_on_execution.allocations_per_call")}));
    // The lifecycle goal is a new order at most 1/150 of a signature: at least 150.
    if (figures.contains("check_lifecycle_median_ns") && figures.contains("ed25519_sign_median_ns"))
        put("ed25519_sign_per_check_lifecycle",
            figures["ed25519_sign_median_ns"].get<double>() /
                figures["check_lifecycle_median_ns"].get<double>());
    // The goal is a check with a firm lease within 10 % of the same check without: at most 1.10.
    if (figures.contains("check_allowed_firm_median_ns") &&
        figures.contains("check_allowed_median_ns"))
        put("check_firm_per_check_allowed", figures["check_allowed_firm_median_ns"].get<double>() /
                                                figures["check_allowed_median_ns"].get<double>());
    // The goal is a check at most 1/200 of a signature: this ratio must be at least 200.
    if (figures.contains("check_allowed_median_ns") && figures.contains("ed25519_sign_median_ns"))
        put("ed25519_sign_per_check_allowed", figures["ed25519_sign_median_ns"].get<double>() /
                                                  figures["check_allowed_median_ns"].get<double>());

    std::ofstream f(out);
    f << figures.dump(2) << "\n";
    if (!f) {
        std::cerr << "kakunin_bench: cannot write " << out << "\n";
        return 1;
    }
    std::cout << "\nfigures written to " << out << "\n" << figures.dump(2) << "\n";
    for (const auto& e : reporter.errors()) std::cerr << "benchmark error: " << e << "\n";
    return reporter.errors().empty() ? 0 : 1;
}
