// PostgresFleet (kakunin/fleet.hpp): every publish_interval one upsert of every added Guard's
// row (and of its incidents that changed) over the runtime's write connection; the fleet steps
// (kakunin_audit.fleet_steps, NOTIFY kakunin_fleet) read on a channel of the runtime's LISTEN
// connection and applied to the Guards on the fleet's own thread.
#include "kakunin/fleet.hpp"

#include <unistd.h>

#include <errno.h>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "postgres/listener.hpp"
#include "postgres/pg.hpp"
#include "postgres/runtime_core.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

constexpr const char* insert_step_sql =
    "INSERT INTO kakunin_audit.fleet_steps (action, by_person, reason, payload, ca_log_seq) "
    "VALUES ($1, $2, $3, $4, $5) RETURNING seq";

// As the other feeds': the steps committed since the snapshot `$1` (NULL: all of them), with
// the snapshot this statement reads under.
constexpr const char* catch_up_sql =
    "SELECT s.snap::text, f.seq, f.action, f.by_person, f.reason, f.payload "
    "FROM (SELECT pg_catalog.pg_current_snapshot() AS snap) s "
    "LEFT JOIN kakunin_audit.fleet_steps f ON ($1::pg_snapshot IS NULL OR "
    "(f.xact >= pg_catalog.pg_snapshot_xmin($1::pg_snapshot) AND "
    "NOT pg_catalog.pg_visible_in_snapshot(f.xact, $1::pg_snapshot))) "
    "ORDER BY f.seq";

// One statement for the whole process: every Guard's row ($1) and the incidents that changed
// ($2), each a JSON array of objects. The heartbeat is the server's clock at publication.
constexpr const char* publish_sql = R"sql(
WITH a AS (
    INSERT INTO kakunin_fleet.agents AS t (agent_id, host, pid, process, state, halt_id, halt_by,
        halt_reason, automatic, checks, allowed, rejected, serial, not_after, open_incidents,
        publish_interval_ms, heartbeat)
    SELECT x.agent_id, x.host, x.pid, x.process, x.state, x.halt_id, x.halt_by, x.halt_reason,
           x.automatic, x.checks, x.allowed, x.rejected, x.serial,
           pg_catalog.to_timestamp(x.not_after_s), x.open_incidents, x.publish_interval_ms,
           pg_catalog.clock_timestamp()
    FROM pg_catalog.json_to_recordset($1::json) AS x(agent_id text, host text, pid integer,
        process text, state text, halt_id text, halt_by text, halt_reason text,
        automatic boolean, checks bigint, allowed bigint, rejected bigint, serial text,
        not_after_s bigint, open_incidents integer, publish_interval_ms integer)
    ON CONFLICT (agent_id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
        process = EXCLUDED.process, state = EXCLUDED.state, halt_id = EXCLUDED.halt_id,
        halt_by = EXCLUDED.halt_by, halt_reason = EXCLUDED.halt_reason,
        automatic = EXCLUDED.automatic, checks = EXCLUDED.checks, allowed = EXCLUDED.allowed,
        rejected = EXCLUDED.rejected, serial = EXCLUDED.serial, not_after = EXCLUDED.not_after,
        open_incidents = EXCLUDED.open_incidents,
        publish_interval_ms = EXCLUDED.publish_interval_ms, heartbeat = EXCLUDED.heartbeat
    RETURNING 1
), i AS (
    INSERT INTO kakunin_fleet.incidents AS t (incident_id, agent_id, state, opened, deadline,
        escalated, score_ppm, warnings, acknowledged_by, resolved_by, updated)
    SELECT x.incident_id, x.agent_id, x.state, pg_catalog.to_timestamp(x.opened_ns / 1e9),
           pg_catalog.to_timestamp(x.deadline_ns / 1e9), x.escalated, x.score_ppm, x.warnings,
           x.acknowledged_by, x.resolved_by, pg_catalog.clock_timestamp()
    FROM pg_catalog.json_to_recordset($2::json) AS x(incident_id text, agent_id text,
        state text, opened_ns numeric, deadline_ns numeric, escalated boolean,
        score_ppm integer, warnings bigint, acknowledged_by text, resolved_by text)
    ON CONFLICT (incident_id) DO UPDATE SET state = EXCLUDED.state,
        deadline = EXCLUDED.deadline, escalated = EXCLUDED.escalated,
        score_ppm = EXCLUDED.score_ppm, warnings = EXCLUDED.warnings,
        acknowledged_by = EXCLUDED.acknowledged_by, resolved_by = EXCLUDED.resolved_by,
        updated = EXCLUDED.updated
    RETURNING 1
)
SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM i)
)sql";

/// The halt reason a fleet halt gives every Guard: the step's seq names it, and a restart
/// recognises it in the restored halt.
constexpr std::string_view fleet_halt_prefix = "fleet halt ";

std::string halt_reason(const FleetStep& s) {
    return std::string(fleet_halt_prefix) + std::to_string(s.seq) + ": " + s.reason;
}
std::string resume_reason(const FleetStep& s) {
    return "fleet resume " + std::to_string(s.seq) + ": " + s.reason;
}
bool is_fleet_halt(const GuardStatus& st) {
    return st.state == GuardStatus::State::halted && !st.automatic &&
           st.halt_reason.compare(0, fleet_halt_prefix.size(), fleet_halt_prefix) == 0;
}

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
    return buf;
}

std::string program_name() {
    // glibc's (<errno.h>): the program's name without its directory.
    return ::program_invocation_short_name != nullptr ? ::program_invocation_short_name : "kakunin";
}

json nullable(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

std::string by_of(const Incident& i, IncidentState state) {
    for (auto it = i.history.rbegin(); it != i.history.rend(); ++it)
        if (it->state == state) return it->by;
    return {};
}

}  // namespace

std::uint64_t publish_fleet_step(const std::string& conninfo, const FleetStep& step,
                                 std::uint64_t ca_log_seq) {
    const std::string problem = check_fleet_step(step);
    if (!problem.empty())
        throw Error(ErrorCategory::invalid_input, "fleet step refused: " + problem);
    pg::Connection c(conninfo, "kakunin-fleet-step");
    pg::Result r =
        c.exec(insert_step_sql,
               {std::string(to_string(step.action)), step.by, step.reason, to_json(step),
                ca_log_seq == 0 ? std::optional<std::string>() : std::to_string(ca_log_seq)});
    return static_cast<std::uint64_t>(pg::to_i64(pg::value(r.get(), 0, 0)));
}

namespace {

constexpr const char* read_agents_sql =
    "SELECT agent_id, host, pid, process, state, halt_id, halt_by, halt_reason, automatic, "
    "checks, allowed, rejected, serial, "
    "pg_catalog.to_char(not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "open_incidents, "
    "pg_catalog.to_char(heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "pg_catalog.clock_timestamp() - heartbeat > "
    "  3 * publish_interval_ms * interval '1 millisecond' "
    "FROM kakunin_fleet.agents ORDER BY agent_id";

constexpr const char* read_incidents_sql =
    "SELECT incident_id, agent_id, state, "
    "pg_catalog.to_char(opened AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "pg_catalog.to_char(deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "escalated, score_ppm, warnings, acknowledged_by, resolved_by, "
    "pg_catalog.to_char(updated AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
    "FROM kakunin_fleet.incidents ORDER BY opened, incident_id";

constexpr const char* read_latest_step_sql =
    "SELECT seq, payload FROM kakunin_audit.fleet_steps ORDER BY seq DESC LIMIT 1";

std::string text(const PGresult* r, int row, int col) {
    return std::string(pg::value(r, row, col));
}
std::uint64_t u64(const PGresult* r, int row, int col) {
    return static_cast<std::uint64_t>(pg::to_i64(pg::value(r, row, col)));
}

}  // namespace

FleetReading read_fleet(const std::string& conninfo) {
    pg::Connection c(conninfo, "kakunin-fleet-read");
    FleetReading out;
    {
        pg::Result r = c.exec(read_agents_sql);
        const PGresult* res = r.get();
        for (int i = 0; i < PQntuples(res); ++i) {
            FleetAgentRow a;
            a.agent_id = text(res, i, 0);
            a.host = text(res, i, 1);
            a.pid = static_cast<int>(pg::to_i64(pg::value(res, i, 2)));
            a.process = text(res, i, 3);
            a.state = text(res, i, 4);
            a.halt_id = text(res, i, 5);
            a.halt_by = text(res, i, 6);
            a.halt_reason = text(res, i, 7);
            a.automatic = pg::value(res, i, 8) == "t";
            a.checks = u64(res, i, 9);
            a.allowed = u64(res, i, 10);
            a.rejected = u64(res, i, 11);
            a.serial = text(res, i, 12);
            a.not_after = text(res, i, 13);
            a.open_incidents = static_cast<int>(pg::to_i64(pg::value(res, i, 14)));
            a.heartbeat = text(res, i, 15);
            a.stale = pg::value(res, i, 16) == "t";
            out.agents.push_back(std::move(a));
        }
    }
    {
        pg::Result r = c.exec(read_incidents_sql);
        const PGresult* res = r.get();
        for (int i = 0; i < PQntuples(res); ++i) {
            FleetIncidentRow n;
            n.incident_id = text(res, i, 0);
            n.agent_id = text(res, i, 1);
            n.state = text(res, i, 2);
            n.opened = text(res, i, 3);
            n.deadline = text(res, i, 4);
            n.escalated = pg::value(res, i, 5) == "t";
            n.score_ppm = static_cast<std::uint32_t>(pg::to_i64(pg::value(res, i, 6)));
            n.warnings = u64(res, i, 7);
            n.acknowledged_by = text(res, i, 8);
            n.resolved_by = text(res, i, 9);
            n.updated = text(res, i, 10);
            out.incidents.push_back(std::move(n));
        }
    }
    pg::Result r = c.exec(read_latest_step_sql);
    if (PQntuples(r.get()) > 0) {
        FleetStep s = fleet_step_from_json(pg::value(r.get(), 0, 1));
        s.seq = u64(r.get(), 0, 0);
        out.latest_step = std::move(s);
    }
    return out;
}

struct PostgresFleet::Impl {
    postgres_detail::RuntimeCore& core;
    PostgresFleetOptions options;
    std::string host, process;
    int pid = 0;

    struct Entry {
        Guard* guard;
        std::uint64_t applied = 0;  ///< the fleet step last applied to it
        std::string halt_id;        ///< the halt the fleet halt made (or restored), to lift
    };
    mutable std::mutex mutex;  ///< everything below; held while a Guard is touched
    std::condition_variable changed;
    std::vector<Entry> entries;
    std::optional<FleetStep> latest;  ///< the latest fleet step that verified
    bool step_pending = false;
    bool listening = false;
    bool stop = false;

    std::mutex publish_mutex;  ///< one publication at a time; published below
    std::unordered_map<std::string, std::string> published;  ///< incident id -> what was sent
    std::atomic<std::uint64_t> publications{0};

    std::optional<std::string> snapshot;  ///< the listener's thread only
    int channel = 0;
    std::thread thread;

    Impl(PostgresRuntime& runtime, PostgresFleetOptions o)
        : core(postgres_detail::core(runtime)), options(std::move(o)) {
        host = options.host.empty() ? host_name() : options.host;
        process = options.process_label.empty() ? program_name() : options.process_label;
        pid = static_cast<int>(::getpid());
        if (options.publish_interval <= std::chrono::milliseconds(0))
            throw Error(ErrorCategory::invalid_input,
                        "PostgresFleet: publish_interval must be positive");
    }

    void report(const std::string& message) noexcept {
        if (!options.error_handler) return;
        try {
            options.error_handler(message);
        } catch (...) {
        }
    }

    // ---- the fleet steps (listener thread) ----

    void catch_up(pg::Connection& c) {
        pg::Result r = c.exec(catch_up_sql, {snapshot});
        const PGresult* res = r.get();
        std::optional<FleetStep> newest;
        for (int i = 0; i < PQntuples(res); ++i) {
            if (pg::is_null(res, i, 1)) continue;
            const auto seq = static_cast<std::uint64_t>(pg::to_i64(pg::value(res, i, 1)));
            try {
                FleetStep s = fleet_step_from_json(pg::value(res, i, 5));
                std::string problem = check_fleet_step(s);
                if (problem.empty() &&
                    (to_string(s.action) != pg::value(res, i, 2) || s.by != pg::value(res, i, 3) ||
                     s.reason != pg::value(res, i, 4)))
                    problem = "its columns differ from the signed statement";
                if (problem.empty() && options.person_key_check) {
                    const std::string why = options.person_key_check(s.by, s.public_key);
                    if (!why.empty()) problem = "its key is not " + s.by + "'s: " + why;
                }
                if (!problem.empty()) {
                    report("fleet step " + std::to_string(seq) + " skipped: " + problem);
                    continue;
                }
                s.seq = seq;
                newest = std::move(s);
            } catch (const std::exception& e) {
                report("fleet step " + std::to_string(seq) + " skipped: " + e.what());
            }
        }
        if (PQntuples(res) > 0) snapshot = std::string(pg::value(res, 0, 0));
        if (!newest) return;
        std::lock_guard<std::mutex> lock(mutex);
        if (latest && latest->seq >= newest->seq) return;
        latest = std::move(newest);
        step_pending = true;
        changed.notify_all();
    }

    void set_listening(bool on) {
        std::lock_guard<std::mutex> lock(mutex);
        listening = on;
        changed.notify_all();
    }

    // ---- applying them (mutex held) ----

    void apply(Entry& e, const FleetStep& step) noexcept {
        if (e.applied == step.seq) return;
        e.applied = step.seq;
        Guard& g = *e.guard;
        std::string agent;
        try {
            const GuardStatus st = g.status();
            agent = st.agent_id;
            if (step.action == FleetStep::Action::halt) {
                if (!e.halt_id.empty()) return;  // already under a fleet halt
                if (st.state == GuardStatus::State::halted ||
                    st.state == GuardStatus::State::revoked) {
                    // Stopped already: a fleet halt it restored from its log is the fleet's
                    // to lift; any other halt stays its own (a resume leaves it halted).
                    if (is_fleet_halt(st)) e.halt_id = st.halt_id;
                    return;
                }
                e.halt_id = g.halt(halt_reason(step), step.by);
                return;
            }
            std::string id;
            std::swap(id, e.halt_id);
            if (id.empty() && is_fleet_halt(st)) id = st.halt_id;  // restored, resumed since
            if (id.empty()) return;
            if (!g.resume_halt(id, step.by, resume_reason(step)))
                report("fleet resume " + std::to_string(step.seq) + ": agent '" + st.agent_id +
                       "' stays halted (another halt is in force)");
        } catch (const std::exception& e2) {
            report("fleet step " + std::to_string(step.seq) + " on agent '" + agent +
                   "': " + e2.what());
        }
    }

    // ---- publication ----

    /// The statement's two parameters, read from the Guards under `mutex`.
    std::pair<std::string, std::string> collect() {
        json agents = json::array(), incidents = json::array();
        std::lock_guard<std::mutex> lock(mutex);
        std::vector<std::string> seen;
        for (const Entry& e : entries) {
            const GuardStatus st = e.guard->status();
            if (st.agent_id.empty()) continue;
            if (std::find(seen.begin(), seen.end(), st.agent_id) != seen.end()) continue;
            seen.push_back(st.agent_id);
            int open = 0;
            for (const Incident& i : e.guard->incidents()) {
                if (i.state == IncidentState::open || i.state == IncidentState::acknowledged)
                    ++open;
                json row = {{"incident_id", i.id},
                            {"agent_id", st.agent_id},
                            {"state", to_string(i.state)},
                            {"opened_ns", i.opened_at_ns},
                            {"deadline_ns", i.deadline_ns > 0 ? json(i.deadline_ns) : json()},
                            {"escalated", i.escalated},
                            {"score_ppm", i.score_ppm},
                            {"warnings", i.warnings},
                            {"acknowledged_by", nullable(by_of(i, IncidentState::acknowledged))},
                            {"resolved_by", nullable(by_of(i, IncidentState::resolved))}};
                std::string text = row.dump(-1, ' ', false, json::error_handler_t::replace);
                auto it = published.find(i.id);
                if (it != published.end() && it->second == text) continue;
                published[i.id] = text;
                incidents.push_back(std::move(row));
            }
            agents.push_back(
                {{"agent_id", st.agent_id},
                 {"host", host},
                 {"pid", pid},
                 {"process", process},
                 {"state", to_string(st.state)},
                 {"halt_id", nullable(st.halt_id)},
                 {"halt_by", nullable(st.halt_by)},
                 {"halt_reason", nullable(st.halt_reason)},
                 {"automatic", st.automatic},
                 {"checks", st.counters.checks},
                 {"allowed", st.counters.allowed},
                 {"rejected", st.counters.rejected},
                 {"serial", nullable(st.serial)},
                 {"not_after_s", st.serial.empty() ? json() : json(st.not_after_ns / 1000000000)},
                 {"open_incidents", open},
                 {"publish_interval_ms", options.publish_interval.count()}});
        }
        const auto text = [](const json& j) {
            return j.dump(-1, ' ', false, json::error_handler_t::replace);
        };
        return {text(agents), text(incidents)};
    }

    void publish() {
        std::lock_guard<std::mutex> pl(publish_mutex);
        std::unordered_map<std::string, std::string> before = published;
        const auto params = collect();
        if (params.first == "[]") return;
        try {
            for (int attempt = 0;; ++attempt) {
                try {
                    core.writer.with([&](pg::Connection& c) {
                        c.exec(publish_sql, {params.first, params.second});
                    });
                    break;
                } catch (const pg::DbError& e) {
                    // An upsert is safe to repeat: once on a new connection.
                    if (!e.connection_lost() || attempt > 0) throw;
                }
            }
        } catch (...) {
            published = std::move(before);  // the incidents go again next time
            throw;
        }
        ++publications;
    }

    void run() {
        std::unique_lock<std::mutex> lock(mutex);
        auto next = std::chrono::steady_clock::now();
        while (!stop) {
            changed.wait_until(lock, next, [&] { return stop || step_pending; });
            if (stop) break;
            const bool stepped = step_pending;
            step_pending = false;
            if (latest) {
                const FleetStep step = *latest;
                for (Entry& e : entries) apply(e, step);
            }
            if (!stepped && std::chrono::steady_clock::now() < next) continue;
            lock.unlock();
            try {
                publish();
            } catch (const std::exception& e) {
                report(std::string("fleet: publication failed: ") + e.what());
            }
            lock.lock();
            next = std::chrono::steady_clock::now() + options.publish_interval;
        }
    }
};

PostgresFleet::PostgresFleet(PostgresRuntime& runtime, PostgresFleetOptions options)
    : m_impl(std::make_unique<Impl>(runtime, std::move(options))) {
    Impl& d = *m_impl;
    // The notification carries only the seq: any one means a catch-up.
    d.channel = d.core.listener.add({"kakunin_fleet", [](const char*) { return true; },
                                     [&d](pg::Connection& c) { d.catch_up(c); },
                                     [&d](bool on) { d.set_listening(on); }});
    try {
        d.thread = std::thread([&d] { d.run(); });
    } catch (...) {
        d.core.listener.remove(d.channel);
        throw;
    }
}

PostgresFleet::~PostgresFleet() {
    Impl& d = *m_impl;
    d.core.listener.remove(d.channel);
    {
        std::lock_guard<std::mutex> lock(d.mutex);
        d.stop = true;
        d.changed.notify_all();
    }
    d.thread.join();
}

void PostgresFleet::add(Guard& guard) {
    Impl& d = *m_impl;
    std::lock_guard<std::mutex> lock(d.mutex);
    for (const Impl::Entry& e : d.entries)
        if (e.guard == &guard) return;
    d.entries.push_back({&guard, 0, {}});
    // Before the channel's first catch-up nothing is known: the thread applies it then.
    if (d.latest) d.apply(d.entries.back(), *d.latest);
    d.step_pending = true;  // published at once
    d.changed.notify_all();
}

void PostgresFleet::remove(Guard& guard) noexcept {
    Impl& d = *m_impl;
    std::lock_guard<std::mutex> pl(d.publish_mutex);  // a publication in progress ends first
    std::lock_guard<std::mutex> lock(d.mutex);
    auto& v = d.entries;
    v.erase(
        std::remove_if(v.begin(), v.end(), [&](const Impl::Entry& e) { return e.guard == &guard; }),
        v.end());
}

void PostgresFleet::publish_now() { m_impl->publish(); }

bool PostgresFleet::wait_until_listening(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(m_impl->mutex);
    return m_impl->changed.wait_for(lock, timeout, [this] { return m_impl->listening; });
}

std::optional<FleetStep> PostgresFleet::fleet_halt() const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    if (m_impl->latest && m_impl->latest->action == FleetStep::Action::halt) return m_impl->latest;
    return std::nullopt;
}

std::uint64_t PostgresFleet::publications() const noexcept { return m_impl->publications.load(); }

}  // namespace kakunin
