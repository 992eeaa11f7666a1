// PostgreSQL figures of DESIGN §7, each against a yardstick on the same server in the same run:
// audit records/s through PostgresAuditSink (one log, and 50 logs on one PostgresRuntime) vs a
// plain COPY of identical rows, and revocation latency from one process to a Guard in another vs
// a raw LISTEN/NOTIFY round trip (and, beside it, a NOTIFY sent with a durable INSERT: what a
// revocation that must be durable first costs).
// Rates are over wall-clock time (UseRealTime): most of the work happens in the server process,
// which the benchmark thread's CPU time would not count.
// Needs KAKUNIN_TEST_PG (a superuser conninfo); scripts/bench starts a throwaway server.
#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kakunin/audit_writer.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"

namespace kakunin::bench {
namespace {

using Steady = std::chrono::steady_clock;

const char* const payload =
    R"({"components_ppm":{"concentration":0,"frequency":0,"origin":0,"size":0,"time_of_day":0},)"
    R"("decision":"allow","order":{"client_order_id":"c-000123","counterparty":"exchange_b",)"
    R"("instrument":"ETH_EUR","price":"2500.12","quantity":"0.001","reference_price":"2500.00",)"
    R"("region":"eu-central-1","side":"BUY"},"reasoning":"mean reversion after a 2.1 sigma move",)"
    R"("reasons":[],"score_ppm":0})";

/// A database of its own with the audit schema installed, made once per process.
struct Database {
    std::string super, app;
    bool ok = false;
    std::string error;
};

PGconn* connect(const std::string& conninfo) {
    PGconn* c = PQconnectdb(conninfo.c_str());
    if (PQstatus(c) != CONNECTION_OK) {
        const std::string e = PQerrorMessage(c);
        PQfinish(c);
        throw Error(ErrorCategory::database, e);
    }
    return c;
}

void exec(PGconn* c, const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    const auto s = PQresultStatus(r);
    const std::string e = PQresultErrorMessage(r);
    PQclear(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) throw Error(ErrorCategory::database, e);
}

const Database& database() {
    static Database db = [] {
        Database d;
        const char* base = std::getenv("KAKUNIN_TEST_PG");
        if (base == nullptr) {
            d.error = "KAKUNIN_TEST_PG is not set: run scripts/bench, which starts PostgreSQL";
            return d;
        }
        try {
            const std::string name = "kakunin_bench_" + std::to_string(getpid());
            PGconn* admin = connect(base);
            exec(admin, "DROP DATABASE IF EXISTS " + name);
            exec(admin, "CREATE DATABASE " + name);
            PQfinish(admin);
            d.super = std::string(base) + " dbname=" + name;
            AuditDbOptions options;
            options.owner_role = "kakunin_bench_owner";
            options.app_role = "kakunin_bench_app";
            init_audit_database(d.super, options);
            d.app = d.super + " user=" + options.app_role;
            PGconn* c = connect(d.super);
            exec(c,
                 "CREATE TABLE raw_copy (log_id text, seq bigint, ts_ns bigint, event text, "
                 "canonical text, sig text, line text)");
            exec(c, "CREATE TABLE durable_probe (id bigserial PRIMARY KEY, note text)");
            PQfinish(c);
            d.ok = true;
        } catch (const std::exception& e) {
            d.error = e.what();
        }
        return d;
    }();
    return db;
}

void BM_audit_pg(benchmark::State& state) {
    const Database& db = database();
    if (!db.ok) return state.SkipWithError(db.error.c_str());
    auto kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    const KeyHandle key = kms->create_key("agent:bench", KeyAlgorithm::ed25519);
    ManualClock clock(utc(2026, 11, 26, 12));
    std::uint64_t total = 0;
    int run = 0;
    for (auto _ : state) {
        state.PauseTiming();
        const std::string log_id = "bench-" + std::to_string(run++);
        PostgresAuditSink sink(db.app, {log_id});
        AuditWriterOptions options;
        options.log_id = log_id;
        options.checkpoint_every = 1000;
        AuditLogWriter writer(sink, clock, AuditSigner{*kms, key, "sha256:bench"}, options);
        state.ResumeTiming();
        const std::size_t n = static_cast<std::size_t>(state.range(0));
        for (std::size_t i = 0; i < n; ++i) {
            writer.append("order.allowed", payload);
            if ((i + 1) % 4096 == 0) writer.flush();
        }
        writer.close();
        total += n;
    }
    state.counters["records_per_s"] =
        benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}

/// 50 logs on one PostgresRuntime, each a PostgresAuditSink and an AuditLogWriter (checkpoint
/// mode, a checkpoint every 1,000 records), named PREFIX-RUN-I.
struct FiftyLogs {
    static constexpr int logs = 50;
    std::vector<std::unique_ptr<PostgresAuditSink>> sinks;
    std::vector<std::unique_ptr<AuditLogWriter>> writers;
    FiftyLogs(PostgresRuntime& runtime, Kms& kms, const KeyHandle& key, const Clock& clock,
              const std::string& prefix, int run) {
        for (int i = 0; i < logs; ++i) {
            const std::string log_id = prefix + "-" + std::to_string(run) + "-" + std::to_string(i);
            sinks.push_back(
                std::make_unique<PostgresAuditSink>(runtime, PostgresAuditSinkOptions{log_id}));
            AuditWriterOptions options;
            options.log_id = log_id;
            options.checkpoint_every = 1000;
            writers.push_back(std::make_unique<AuditLogWriter>(
                *sinks.back(), clock, AuditSigner{kms, key, "sha256:bench"}, options));
        }
    }
};

/// `range(0)` records over 50 logs (one AuditLogWriter each, on a thread of its own, flushing
/// every 200 records as a trail flushes what it took from its queue) on one PostgresRuntime:
/// the sinks share its write connection and commit together. Against BM_raw_copy of the same
/// record count (bench_main: audit_pg_50_guards_vs_raw_copy).
void BM_audit_pg_50_guards(benchmark::State& state) {
    const Database& db = database();
    if (!db.ok) return state.SkipWithError(db.error.c_str());
    constexpr int logs = FiftyLogs::logs;
    auto kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    const KeyHandle key = kms->create_key("agent:bench", KeyAlgorithm::ed25519);
    ManualClock clock(utc(2026, 11, 26, 12));
    PostgresRuntimeOptions ro;
    ro.application_name = "kakunin-bench";
    PostgresRuntime runtime(db.app, ro);
    const std::size_t per_log = static_cast<std::size_t>(state.range(0)) / logs;
    std::uint64_t total = 0;
    int run = 0;
    std::string error;
    for (auto _ : state) {
        state.PauseTiming();
        FiftyLogs fifty(runtime, *kms, key, clock, "bench50", run++);
        auto& writers = fifty.writers;
        state.ResumeTiming();
        std::vector<std::thread> threads;
        std::mutex error_mutex;
        for (int i = 0; i < logs; ++i) {
            threads.emplace_back([&, w = writers[static_cast<std::size_t>(i)].get()] {
                try {
                    for (std::size_t k = 0; k < per_log; ++k) {
                        w->append("order.allowed", payload);
                        if ((k + 1) % 200 == 0) w->flush();
                    }
                    w->close();
                } catch (const std::exception& e) {
                    std::lock_guard<std::mutex> lock(error_mutex);
                    error = e.what();
                }
            });
        }
        for (auto& t : threads) t.join();
        total += per_log * logs;
    }
    if (!error.empty()) return state.SkipWithError(error.c_str());
    if (runtime.write_connections() != 1) return state.SkipWithError("more than one connection");
    state.counters["records_per_s"] =
        benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}

/// The same 50 logs written as SharedThreads' one audit-writer thread writes them: in rounds,
/// each appending up to 200 records per log and handing every log's lines to its sink before
/// the first flush, so one group commit carries many logs (bench_main:
/// audit_pg_50_guards_shared_vs_raw_copy).
void BM_audit_pg_50_guards_shared(benchmark::State& state) {
    const Database& db = database();
    if (!db.ok) return state.SkipWithError(db.error.c_str());
    constexpr int logs = FiftyLogs::logs;
    auto kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    const KeyHandle key = kms->create_key("agent:bench", KeyAlgorithm::ed25519);
    ManualClock clock(utc(2026, 11, 26, 12));
    PostgresRuntimeOptions ro;
    ro.application_name = "kakunin-bench";
    PostgresRuntime runtime(db.app, ro);
    const std::size_t per_log = static_cast<std::size_t>(state.range(0)) / logs;
    std::uint64_t total = 0;
    int run = 0;
    for (auto _ : state) {
        state.PauseTiming();
        FiftyLogs fifty(runtime, *kms, key, clock, "bench50s", run++);
        auto& writers = fifty.writers;
        state.ResumeTiming();
        try {
            for (std::size_t done = 0; done < per_log;) {
                const std::size_t n = std::min<std::size_t>(200, per_log - done);
                for (auto& w : writers) {
                    for (std::size_t k = 0; k < n; ++k) w->append("order.allowed", payload);
                    w->hand_over();
                }
                for (auto& w : writers) w->flush();
                done += n;
            }
            for (auto& w : writers) w->close();
        } catch (const std::exception& e) {
            return state.SkipWithError(e.what());
        }
        total += per_log * logs;
    }
    if (runtime.write_connections() != 1) return state.SkipWithError("more than one connection");
    state.counters["records_per_s"] =
        benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}

/// The record lines the writer makes for `n` records of the benchmark's log (checkpoint mode,
/// a checkpoint every 1,000 records), checkpoints left out: the rows BM_audit_pg stores.
std::vector<std::string> record_lines(std::size_t n) {
    auto kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    const KeyHandle key = kms->create_key("agent:bench", KeyAlgorithm::ed25519);
    ManualClock clock(utc(2026, 11, 26, 12));
    MemoryAuditSink sink;
    AuditWriterOptions options;
    options.log_id = "bench-0";
    options.checkpoint_every = 1000;
    AuditLogWriter writer(sink, clock, AuditSigner{*kms, key, "sha256:bench"}, options);
    for (std::size_t i = 0; i < n; ++i) writer.append("order.allowed", payload);
    writer.close();
    std::vector<std::string> out;
    for (std::string& line : sink.lines())
        if (line.compare(0, 17, R"({"agent":"bench-0)") == 0) out.push_back(std::move(line));
    return out;
}

/// COPY of identical rows (the same log_id, seq, ts_ns, event, canonical text and line as
/// BM_audit_pg's records) into a plain table without index or trigger, a transaction per 4,096
/// rows as the sink commits per flush.
void BM_raw_copy(benchmark::State& state) {
    const Database& db = database();
    if (!db.ok) return state.SkipWithError(db.error.c_str());
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    const std::vector<std::string> lines = record_lines(n);
    if (lines.size() != n) return state.SkipWithError("record_lines made the wrong count");
    const std::string ts = "\t" + std::to_string(utc(2026, 11, 26, 12)) + "\torder.allowed\t";
    PGconn* c = connect(db.super);
    std::uint64_t total = 0;
    for (auto _ : state) {
        state.PauseTiming();
        exec(c, "TRUNCATE raw_copy");
        state.ResumeTiming();
        for (std::size_t start = 0; start < n; start += 4096) {
            exec(c, "BEGIN");
            PGresult* r = PQexec(c, "COPY raw_copy FROM STDIN");
            const bool copying = PQresultStatus(r) == PGRES_COPY_IN;
            PQclear(r);
            if (!copying) return state.SkipWithError("COPY did not start");
            std::string buf;
            for (std::size_t i = start; i < std::min(n, start + 4096); ++i) {
                // Unsigned records: the canonical text is the line (no tab, newline or
                // backslash in them to escape).
                buf += "bench-0\t" + std::to_string(i) + ts;
                buf += lines[i];
                buf += "\t\\N\t";
                buf += lines[i];
                buf += '\n';
                if (buf.size() > 1 << 16) {
                    PQputCopyData(c, buf.data(), static_cast<int>(buf.size()));
                    buf.clear();
                }
            }
            PQputCopyData(c, buf.data(), static_cast<int>(buf.size()));
            PQputCopyEnd(c, nullptr);
            bool copied = true;
            while (PGresult* rr = PQgetResult(c)) {
                copied = copied && PQresultStatus(rr) == PGRES_COMMAND_OK;
                PQclear(rr);
            }
            exec(c, "COMMIT");
            if (!copied) return state.SkipWithError(PQerrorMessage(c));
        }
        total += n;
    }
    PGresult* count = PQexec(c, "SELECT count(*) FROM raw_copy");
    const long rows =
        PQresultStatus(count) == PGRES_TUPLES_OK ? std::atol(PQgetvalue(count, 0, 0)) : -1;
    PQclear(count);
    PQfinish(c);
    if (rows != static_cast<long>(n)) return state.SkipWithError("COPY stored fewer rows");
    state.counters["rows_per_s"] =
        benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}

double p99(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? -1 : v[static_cast<std::size_t>(0.99 * static_cast<double>(v.size() - 1))];
}

/// Raw LISTEN/NOTIFY round trip between two connections.
void BM_notify_rtt(benchmark::State& state) {
    const Database& db = database();
    if (!db.ok) return state.SkipWithError(db.error.c_str());
    PGconn* listener = connect(db.super);
    PGconn* sender = connect(db.super);
    exec(listener, "LISTEN kakunin_bench");
    std::vector<double> us;
    for (auto _ : state) {
        for (int i = 0; i < 300; ++i) {
            const auto t0 = Steady::now();
            exec(sender, "NOTIFY kakunin_bench, 'x'");
            bool got = false;
            while (!got) {
                pollfd p{PQsocket(listener), POLLIN, 0};
                poll(&p, 1, 1000);
                PQconsumeInput(listener);
                while (PGnotify* n = PQnotifies(listener)) {
                    got = true;
                    PQfreemem(n);
                }
            }
            us.push_back(std::chrono::duration<double, std::micro>(Steady::now() - t0).count());
        }
    }
    PQfinish(listener);
    PQfinish(sender);
    state.counters["p99_us"] = p99(us);
}

/// The same round trip when the NOTIFY rides on a durable INSERT (one transaction, delivered at
/// its commit, after the WAL flush): the least a revocation that is durable before anyone acts
/// on it can cost on this server.
void BM_notify_durable_rtt(benchmark::State& state) {
    const Database& db = database();
    if (!db.ok) return state.SkipWithError(db.error.c_str());
    PGconn* listener = connect(db.super);
    PGconn* sender = connect(db.super);
    exec(listener, "LISTEN kakunin_bench");
    std::vector<double> us;
    for (auto _ : state) {
        for (int i = 0; i < 300; ++i) {
            const auto t0 = Steady::now();
            exec(sender, "BEGIN");
            exec(sender, "INSERT INTO durable_probe (note) VALUES ('revoked')");
            exec(sender, "NOTIFY kakunin_bench, 'x'");
            exec(sender, "COMMIT");
            bool got = false;
            while (!got) {
                pollfd p{PQsocket(listener), POLLIN, 0};
                poll(&p, 1, 1000);
                PQconsumeInput(listener);
                while (PGnotify* n = PQnotifies(listener)) {
                    got = true;
                    PQfreemem(n);
                }
            }
            us.push_back(std::chrono::duration<double, std::micro>(Steady::now() - t0).count());
        }
    }
    PQfinish(listener);
    PQfinish(sender);
    state.counters["p99_us"] = p99(us);
    std::sort(us.begin(), us.end());
    state.counters["p50_us"] = us[us.size() / 2];
}

/// A Guard in a child process subscribed to PostgresRevocationFeed; the parent publishes the
/// revocation of its certificate; the child reports when check() first rejects.
void BM_revocation_cross_process(benchmark::State& state) {
    const Database& db = database();
    if (!db.ok) return state.SkipWithError(db.error.c_str());
    std::vector<double> us, publish_us;
    for (auto _ : state) {
        constexpr int samples = 100;
        int to_parent[2], to_child[2];
        if (pipe(to_parent) != 0 || pipe(to_child) != 0) return state.SkipWithError("pipe");
        const pid_t child = fork();
        if (child == 0) {
            close(to_parent[0]);
            close(to_child[1]);
            try {
                TestAuthority authority(utc(2026, 11, 26, 12));
                auto feed = std::make_shared<PostgresRevocationFeed>(db.app);
                feed->wait_until_listening(std::chrono::seconds(10));
                Scope scope = parse_scope_json(R"({"version":1,
                  "max_transaction":{"currency":"EUR","amount":"1000000.00"},"instruments":["BTC_EUR"],
                  "counterparties":["exchange_a"],"regions":["eu-west-1"],
                  "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri"],"from":"00:00","to":"24:00"}]})");
                Order o;
                o.instrument = "BTC_EUR";
                o.counterparty = "exchange_a";
                o.region = "eu-west-1";
                o.quantity = Decimal{1, 3};
                o.price = Decimal{4000000, 2};
                for (int i = 0; i < samples; ++i) {
                    GuardCredentials c = authority.credentials_for(scope);
                    c.revocation_feed = feed;
                    Guard guard(c, authority.clock());
                    char serial[64] = {};
                    const std::string s = c.certificate.serial();
                    std::copy(s.begin(), s.end(), serial);
                    if (write(to_parent[1], serial, sizeof serial) != sizeof serial) _exit(2);
                    char go;
                    if (read(to_child[0], &go, 1) != 1) _exit(2);
                    // Check as a strategy would, without starving the feed's thread of a core.
                    while (guard.check(o).allowed()) std::this_thread::yield();
                    const std::int64_t t1 = Steady::now().time_since_epoch().count();
                    if (write(to_parent[1], &t1, sizeof t1) != sizeof t1) _exit(2);
                }
                _exit(0);
            } catch (...) {
                _exit(3);
            }
        }
        close(to_parent[1]);
        close(to_child[0]);
        PostgresRevocationPublisher publisher(db.app);
        for (int i = 0; i < samples; ++i) {
            char serial[64];
            if (read(to_parent[0], serial, sizeof serial) != sizeof serial) break;
            const char go = 1;
            if (write(to_child[1], &go, 1) != 1) break;
            const std::int64_t t0 = Steady::now().time_since_epoch().count();
            publisher.publish(Revocation{serial, "bench", "benchmark", utc(2026, 11, 26, 12)});
            publish_us.push_back(
                static_cast<double>(Steady::now().time_since_epoch().count() - t0) / 1000.0);
            std::int64_t t1 = 0;
            if (read(to_parent[0], &t1, sizeof t1) != sizeof t1) break;
            us.push_back(static_cast<double>(t1 - t0) / 1000.0);
        }
        close(to_parent[0]);
        close(to_child[1]);
        int status = 0;
        waitpid(child, &status, 0);
        if (us.size() < samples) return state.SkipWithError("the child process failed");
    }
    state.counters["p99_us"] = p99(us);
    // How much of it is the publisher's durable INSERT (commit and WAL flush included).
    state.counters["publish_p99_us"] = p99(publish_us);
    std::sort(us.begin(), us.end());
    state.counters["p50_us"] = us[us.size() / 2];
}

BENCHMARK(BM_audit_pg)->Arg(50000)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_audit_pg_50_guards_shared)
    ->Arg(50000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();
BENCHMARK(BM_audit_pg_50_guards)
    ->Arg(50000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();
BENCHMARK(BM_raw_copy)->Arg(50000)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_notify_rtt)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_notify_durable_rtt)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_revocation_cross_process)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace kakunin::bench
