// Human steps through PostgreSQL: an INSERT into kakunin_audit.human_steps NOTIFYs
// kakunin_human_steps; PostgresHumanStepFeed LISTENs, catches up on what committed since its last
// snapshot (as PostgresRevocationFeed does), and delivers each step once, by seq.

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "kakunin/postgres.hpp"
#include "postgres/listener.hpp"
#include "postgres/pg.hpp"
#include "postgres/runtime_core.hpp"

namespace kakunin {

namespace {

constexpr const char* insert_step_sql =
    "INSERT INTO kakunin_audit.human_steps (agent_id, event, payload) VALUES ($1, $2, $3) "
    "RETURNING seq";

// As the revocation feed's: everything committed since the snapshot `$1` (NULL: everything),
// with the snapshot this statement reads under.
constexpr const char* catch_up_sql =
    "SELECT s.snap::text, h.seq, h.event, h.payload "
    "FROM (SELECT pg_catalog.pg_current_snapshot() AS snap) s "
    "LEFT JOIN kakunin_audit.human_steps h ON ($1::pg_snapshot IS NULL OR "
    "(h.xact >= pg_catalog.pg_snapshot_xmin($1::pg_snapshot) AND "
    "NOT pg_catalog.pg_visible_in_snapshot(h.xact, $1::pg_snapshot))) "
    "ORDER BY h.seq";

TimeNs wall_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

std::uint64_t publish_human_step(const std::string& conninfo, const HumanStep& step) {
    if (step.agent_id.empty())
        throw Error(ErrorCategory::invalid_input, "human step: the agent is required");
    pg::Connection c(conninfo, "kakunin-human-steps");
    pg::Result r = c.exec(insert_step_sql, {step.agent_id, std::string(human_step_event(step.kind)),
                                            human_step_payload(step)});
    return static_cast<std::uint64_t>(pg::to_i64(pg::value(r.get(), 0, 0)));
}

struct PostgresHumanStepFeed::Impl {
    PostgresHumanStepFeedOptions options;

    std::mutex mutex;  ///< listeners, steps, delivered; held while delivering
    std::condition_variable changed;
    struct Listener {
        HumanStepListener* listener;
        TimeNs since;  ///< steps taken before this are history to it
    };
    std::vector<Listener> listeners;
    std::vector<HumanStep> steps;
    std::unordered_set<std::uint64_t> delivered;
    std::optional<std::string> snapshot;  ///< listener thread only

    pg::FeedChannel channel;

    void report(const std::string& message) {
        if (!options.error_handler) return;
        try {
            options.error_handler(message);
        } catch (...) {
        }
    }

    void deliver(std::uint64_t seq, std::string_view event, std::string_view payload) {
        std::optional<HumanStep> step;
        try {
            step = human_step_from_record(event, payload);
        } catch (const std::exception& e) {
            report("human step feed: row " + std::to_string(seq) + " skipped: " + e.what());
            return;
        }
        if (!step) return;
        step->source = "postgres human step " + std::to_string(seq);
        step->seq = seq;
        std::lock_guard<std::mutex> lock(mutex);
        if (!delivered.insert(seq).second) return;
        for (const Listener& l : listeners) {
            HumanStep s = *step;
            s.history = s.at_ns < l.since;
            l.listener->on_human_step(s);
        }
        steps.push_back(std::move(*step));
        changed.notify_all();
    }

    void catch_up(pg::Connection& c) {
        pg::Result r = c.exec(catch_up_sql, {snapshot});
        const PGresult* res = r.get();
        for (int i = 0; i < PQntuples(res); ++i) {
            if (pg::is_null(res, i, 1)) continue;
            deliver(static_cast<std::uint64_t>(pg::to_i64(pg::value(res, i, 1))),
                    pg::value(res, i, 2), pg::value(res, i, 3));
        }
        if (PQntuples(res) > 0) snapshot = std::string(pg::value(res, 0, 0));
    }

    void start(pg::Listener& l, std::unique_ptr<pg::Listener> own = {}) {
        // The notification carries only the seq: any one means a catch-up.
        channel.open(l,
                     {"kakunin_human_steps", [](const char*) { return true; },
                      [this](pg::Connection& c) { catch_up(c); }},
                     std::move(own));
    }
};

PostgresHumanStepFeed::PostgresHumanStepFeed(std::string conninfo,
                                             PostgresHumanStepFeedOptions options)
    : m_impl(std::make_unique<Impl>()) {
    Impl& d = *m_impl;
    d.options = std::move(options);
    auto own = pg::FeedChannel::own(std::move(conninfo), "kakunin-human-step-feed", d.options);
    pg::Listener& listener = *own;
    d.start(listener, std::move(own));
}

PostgresHumanStepFeed::PostgresHumanStepFeed(PostgresRuntime& runtime,
                                             PostgresHumanStepFeedOptions options)
    : m_impl(std::make_unique<Impl>()) {
    m_impl->options = std::move(options);
    m_impl->start(postgres_detail::core(runtime).listener);
}

PostgresHumanStepFeed::~PostgresHumanStepFeed() { m_impl->channel.close(); }

void PostgresHumanStepFeed::subscribe(HumanStepListener* listener) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    m_impl->listeners.reserve(m_impl->listeners.size() + 1);
    for (HumanStep s : m_impl->steps) {
        s.history = true;
        listener->on_human_step(s);
    }
    m_impl->listeners.push_back({listener, wall_now()});
}

void PostgresHumanStepFeed::unsubscribe(HumanStepListener* listener) noexcept {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto& l = m_impl->listeners;
    l.erase(std::remove_if(l.begin(), l.end(),
                           [listener](const Impl::Listener& x) { return x.listener == listener; }),
            l.end());
}

bool PostgresHumanStepFeed::wait_until_listening(std::chrono::milliseconds timeout) {
    return m_impl->channel.wait_until_listening(timeout);
}

}  // namespace kakunin
