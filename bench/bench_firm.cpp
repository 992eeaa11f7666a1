// Firm-wide budgets (docs/operations.md): how long a lease top-up takes, from the refill
// thread's statement to its answer, with 30 Guards' leases on one PostgreSQL budget (three
// PostgresFirmLimits standing for three processes), beside a plain round trip on the same
// server (SELECT 1) as the yardstick. Needs KAKUNIN_TEST_PG (scripts/bench starts a server).
#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kakunin/postgres.hpp"
#include "kakunin/postgres_firm_limits.hpp"
#include "kakunin/postgres_runtime.hpp"

namespace kakunin::bench {
namespace {

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return -1;
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

void BM_firm_lease_refill(benchmark::State& state) {
    const char* base = std::getenv("KAKUNIN_TEST_PG");
    if (base == nullptr)
        return state.SkipWithError("KAKUNIN_TEST_PG is not set: run scripts/bench");
    const std::string name = "kakunin_bench_firm_" + std::to_string(::getpid());
    PGconn* admin = PQconnectdb(base);
    if (PQstatus(admin) != CONNECTION_OK) {
        PQfinish(admin);
        return state.SkipWithError("cannot connect to KAKUNIN_TEST_PG");
    }
    PQclear(PQexec(admin, ("DROP DATABASE IF EXISTS " + name).c_str()));
    PQclear(PQexec(admin, ("CREATE DATABASE " + name).c_str()));
    const std::string conninfo = std::string(base) + " dbname=" + name;
    std::vector<double> refill, yardstick;
    try {
        AuditDbOptions o;
        o.owner_role = "kakunin_bench_owner";
        o.app_role = "kakunin_bench_app";
        init_audit_database(conninfo, o);
        FirmBudget b;
        b.id = "bench-firm";
        b.kind = FirmBudgetKind::daily_notional;
        b.currency = "EUR";
        b.amount = INT64_MAX / 4;
        b.chunk = 100 * 1000000;  // 100 EUR: small leases, so they are topped up all the time
        b.set_by = "Bench Officer";
        b.reason = "benchmark";
        set_firm_budget(conninfo, b, [] { return std::uint64_t{1}; });
        SystemClock clock;
        for (auto _ : state) {
            std::vector<std::unique_ptr<PostgresRuntime>> runtimes;
            std::vector<std::shared_ptr<PostgresFirmLimits>> firms;
            std::vector<std::vector<std::shared_ptr<FirmLease>>> leases;
            for (int p = 0; p < 3; ++p) {
                runtimes.push_back(std::make_unique<PostgresRuntime>(conninfo));
                firms.push_back(std::make_shared<PostgresFirmLimits>(
                    *runtimes.back(), PostgresFirmLimitsOptions{{"bench-firm"}}));
                for (int g = 0; g < 10; ++g)
                    leases.push_back(firms.back()->attach("bench-" + std::to_string(g), clock));
            }
            for (auto& f : firms) f->wait_granted(std::chrono::seconds(10));
            // Consume like Guards trading: each lease runs low and is topped up, for 2 s.
            const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
            while (std::chrono::steady_clock::now() < until) {
                for (auto& ls : leases)
                    for (auto& l : ls)
                        if (l->refuses(l->consumed() + 10 * 1000000, clock.now_ns()) == 0)
                            l->consume(l->consumed() + 10 * 1000000);
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            for (auto& f : firms) {
                const auto v = f->refill_latencies_us();
                refill.insert(refill.end(), v.begin(), v.end());
            }
            for (std::size_t i = 0; i < leases.size(); ++i) firms[i / 10]->detach(leases[i]);
        }
        PGconn* c = PQconnectdb(conninfo.c_str());
        for (int i = 0; i < 2000; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            PQclear(PQexec(c, "SELECT 1"));
            yardstick.push_back(
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                    .count());
        }
        PQfinish(c);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    }
    PQclear(PQexec(admin, ("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)").c_str()));
    PQfinish(admin);
    state.counters["refills"] = static_cast<double>(refill.size());
    state.counters["p50_us"] = percentile(refill, 0.50);
    state.counters["p99_us"] = percentile(refill, 0.99);
    state.counters["select1_p99_us"] = percentile(yardstick, 0.99);
}

}  // namespace

BENCHMARK(BM_firm_lease_refill)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace kakunin::bench
