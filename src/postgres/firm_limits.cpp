// PostgresFirmLimits: leases of firm-wide budgets, kept by kakunin_audit.firm_lease()
// (firm_schema.cpp) and topped up by one thread over the runtime's write connection.
#include "kakunin/postgres_firm_limits.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "postgres/pg.hpp"
#include "postgres/runtime_core.hpp"

namespace kakunin {

namespace {

// One statement for every lease due: each row calls firm_lease() in the order given (sorted by
// budget, so two processes lock budget rows in the same order).
constexpr const char* refill_sql =
    "SELECT r.i, f.granted, f.acked, f.ttl_ms FROM unnest($1::text[], $2::text[], $3::text[], "
    "$4::bigint[], $5::bigint[], $6::bigint[]) WITH ORDINALITY AS r(budget, holder, agent, "
    "consumed, want, slice, i) CROSS JOIN LATERAL kakunin_audit.firm_lease(r.budget, r.holder, "
    "r.agent, r.consumed, r.want, r.slice, $7::integer, $8::boolean) f ORDER BY r.i";

bool valid_budget_id(const std::string& id) {
    if (id.empty() || id.size() > 64) return false;
    for (std::size_t i = 0; i < id.size(); ++i) {
        const char c = id[i];
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!(alnum || (i > 0 && (c == '.' || c == '_' || c == '-')))) return false;
    }
    return true;
}

// A text[] literal: every element double-quoted, with " and \ escaped.
std::string array_literal(const std::vector<std::string>& items) {
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += ',';
        out += '"';
        for (char c : items[i]) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

std::string array_literal(const std::vector<std::int64_t>& items) {
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += ',';
        out += std::to_string(items[i]);
    }
    return out + "}";
}

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
    return buf;
}

}  // namespace

struct PostgresFirmLimits::Impl {
    postgres_detail::RuntimeCore& core;
    PostgresFirmLimitsOptions options;

    struct Budget {
        std::string id;
        FirmBudgetKind kind;
        std::string currency;
        std::int64_t chunk;
    };
    std::vector<Budget> budgets;

    struct Entry {
        std::shared_ptr<FirmLease> lease;
        std::string holder;
        std::string agent;
        const Clock* clock;
        std::int64_t chunk;
        bool granted = false;
    };

    mutable std::mutex mutex;  ///< entries, latencies, failing
    std::condition_variable changed;
    std::vector<Entry> entries;
    std::vector<double> latencies;
    std::size_t latency_next = 0;
    bool failing = false;
    std::uint64_t next_holder = 0;
    std::string holder_prefix;

    std::mutex batch;  ///< held while a refill or a release talks to the database
    std::atomic<bool> stop{false};
    std::thread thread;

    Impl(postgres_detail::RuntimeCore& c, PostgresFirmLimitsOptions o)
        : core(c), options(std::move(o)) {}

    void report(const std::string& message) noexcept {
        if (!options.error_handler) return;
        try {
            options.error_handler(message);
        } catch (...) {
        }
    }

    void load_budgets() {
        if (options.budgets.empty())
            throw Error(ErrorCategory::invalid_input, "firm limits: no budget named");
        for (const std::string& id : options.budgets) {
            if (!valid_budget_id(id))
                throw Error(ErrorCategory::invalid_input,
                            "firm limits: \"" + id +
                                "\" is not a budget id (a-z, 0-9, then also . _ -; at most 64)");
        }
        core.writer.with([&](pg::Connection& c) {
            pg::Result r = c.exec(
                "SELECT budget_id, kind, currency, chunk FROM kakunin_audit.firm_budgets WHERE "
                "budget_id = ANY($1::text[])",
                {array_literal(options.budgets)});
            for (const std::string& id : options.budgets) {
                bool found = false;
                for (int i = 0; i < PQntuples(r.get()); ++i) {
                    if (pg::value(r.get(), i, 0) != id) continue;
                    const auto kind = firm_budget_kind(pg::value(r.get(), i, 1));
                    if (!kind)
                        throw Error(ErrorCategory::database,
                                    "firm limits: budget " + id + " has an unknown kind");
                    const std::int64_t chunk = pg::to_i64(pg::value(r.get(), i, 3));
                    if (chunk <= 0 || chunk > (std::int64_t{1} << 60))
                        throw Error(ErrorCategory::database,
                                    "firm limits: budget " + id + " has a chunk out of range");
                    budgets.push_back({id, *kind, std::string(pg::value(r.get(), i, 2)), chunk});
                    found = true;
                }
                if (!found)
                    throw Error(
                        ErrorCategory::invalid_input,
                        "firm limits: budget " + id + " is not set (kakunin firm budget set)");
            }
        });
    }

    // Under `mutex`: whether the lease should be topped up or renewed now.
    bool due(const Entry& e) const {
        if (!e.granted) return true;
        const FirmLease& l = *e.lease;
        const TimeNs now = e.clock->now_ns();
        const auto renew_ns = static_cast<TimeNs>(options.renew_before.count()) * 1000000;
        if (l.expires_ns() - now < renew_ns) return true;
        const std::int64_t consumed = l.consumed();
        if (consumed - l.acked() >= l.slice() / 2) return true;
        return l.granted() - consumed < e.chunk;
    }

    // One statement for `rows` (entries' copies); applies what it returns. Throws DbError.
    void run(std::vector<Entry>& rows, bool release) {
        std::sort(rows.begin(), rows.end(), [](const Entry& a, const Entry& b) {
            return a.lease->budget_id() != b.lease->budget_id()
                       ? a.lease->budget_id() < b.lease->budget_id()
                       : a.holder < b.holder;
        });
        std::vector<std::string> budget_ids, holders, agents;
        std::vector<std::int64_t> consumed, want, slice;
        std::vector<TimeNs> started;
        for (const Entry& e : rows) {
            budget_ids.push_back(e.lease->budget_id());
            holders.push_back(e.holder);
            agents.push_back(e.agent);
            consumed.push_back(e.lease->consumed());
            want.push_back(2 * e.chunk);
            slice.push_back(e.lease->slice());
            started.push_back(e.clock->now_ns());
        }
        const auto t0 = std::chrono::steady_clock::now();
        core.writer.with([&](pg::Connection& c) {
            pg::Result r =
                c.exec(refill_sql,
                       {array_literal(budget_ids), array_literal(holders), array_literal(agents),
                        array_literal(consumed), array_literal(want), array_literal(slice),
                        std::to_string(options.lease_ttl.count()), release ? "true" : "false"});
            if (release) return;
            for (int i = 0; i < PQntuples(r.get()); ++i) {
                const auto k = static_cast<std::size_t>(pg::to_i64(pg::value(r.get(), i, 0)) - 1);
                if (k >= rows.size()) continue;
                const std::int64_t granted = pg::to_i64(pg::value(r.get(), i, 1));
                const std::int64_t acked = pg::to_i64(pg::value(r.get(), i, 2));
                const std::int64_t ttl_ms = pg::to_i64(pg::value(r.get(), i, 3));
                // The database counts the lease from its own now(), which is after `started`;
                // the Guard's side ends a tenth earlier still, against a step of its clock.
                rows[k].lease->grant(granted, acked, started[k] + ttl_ms * 900000);
                rows[k].granted = true;
            }
        });
        const double us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                .count();
        std::lock_guard<std::mutex> lock(mutex);
        if (latencies.size() < 4096)
            latencies.push_back(us);
        else
            latencies[latency_next++ % latencies.size()] = us;
        for (const Entry& done : rows) {
            if (!done.granted) continue;
            for (Entry& e : entries)
                if (e.lease == done.lease) e.granted = true;
        }
        changed.notify_all();
    }

    void loop() {
        while (!stop.load()) {
            std::vector<Entry> rows;
            {
                std::lock_guard<std::mutex> lock(mutex);
                for (const Entry& e : entries)
                    if (due(e)) rows.push_back(e);
            }
            bool failed = false;
            if (!rows.empty()) {
                std::lock_guard<std::mutex> b(batch);
                try {
                    // A lease detached meanwhile is no longer in `entries`: skip it.
                    {
                        std::lock_guard<std::mutex> lock(mutex);
                        rows.erase(std::remove_if(rows.begin(), rows.end(),
                                                  [&](const Entry& r) {
                                                      return std::none_of(
                                                          entries.begin(), entries.end(),
                                                          [&](const Entry& e) {
                                                              return e.lease == r.lease;
                                                          });
                                                  }),
                                   rows.end());
                    }
                    if (!rows.empty()) run(rows, false);
                    if (failing) report("firm limits: leases renewed again");
                    failing = false;
                } catch (const std::exception& e) {
                    failed = true;
                    if (!failing)
                        report(std::string("firm limits: cannot renew leases: ") + e.what() +
                               "; Guards refuse new orders once their leases run out");
                    failing = true;
                }
            }
            const auto wait = failed ? core.options.reconnect_delay : options.poll_interval;
            std::unique_lock<std::mutex> lock(mutex);
            changed.wait_for(lock, wait, [&] { return stop.load(); });
        }
    }
};

PostgresFirmLimits::PostgresFirmLimits(PostgresRuntime& runtime, PostgresFirmLimitsOptions options)
    : m_impl(std::make_unique<Impl>(postgres_detail::core(runtime), std::move(options))) {
    if (m_impl->options.lease_ttl <= m_impl->options.renew_before ||
        m_impl->options.renew_before.count() <= 0)
        throw Error(ErrorCategory::invalid_input,
                    "firm limits: renew_before must be positive and below lease_ttl");
    m_impl->load_budgets();
    // Unique across processes, restarts and the PostgresFirmLimits of one process: a holder
    // names one lease row, and two Guards on one row would each consume it in full.
    static std::atomic<std::uint64_t> instances{0};
    std::random_device random;
    m_impl->holder_prefix = "@" + host_name() + ":" + std::to_string(::getpid()) + ":" +
                            std::to_string(instances.fetch_add(1)) + "-" +
                            std::to_string(random()) + ":";
    m_impl->thread = std::thread([d = m_impl.get()] { d->loop(); });
}

PostgresFirmLimits::~PostgresFirmLimits() {
    {
        std::lock_guard<std::mutex> lock(m_impl->mutex);
        m_impl->stop.store(true);
        m_impl->changed.notify_all();
    }
    if (m_impl->thread.joinable()) m_impl->thread.join();
}

bool PostgresFirmLimits::holds_working_orders() const noexcept {
    return std::any_of(m_impl->budgets.begin(), m_impl->budgets.end(),
                       [](const Impl::Budget& b) { return firm_budget_held(b.kind); });
}

std::vector<std::shared_ptr<FirmLease>> PostgresFirmLimits::attach(std::string_view agent_id,
                                                                   const Clock& clock) {
    std::vector<std::shared_ptr<FirmLease>> out;
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    const std::string agent = agent_id.empty() ? std::string("unnamed") : std::string(agent_id);
    const std::string holder =
        agent + m_impl->holder_prefix + std::to_string(++m_impl->next_holder);
    for (const Impl::Budget& b : m_impl->budgets) {
        auto lease = std::make_shared<FirmLease>(b.id, b.kind, b.currency, b.chunk);
        m_impl->entries.push_back({lease, holder, agent, &clock, b.chunk, false});
        out.push_back(std::move(lease));
    }
    m_impl->changed.notify_all();
    return out;
}

void PostgresFirmLimits::detach(const std::vector<std::shared_ptr<FirmLease>>& leases) noexcept {
    std::vector<Impl::Entry> rows;
    try {
        std::lock_guard<std::mutex> b(m_impl->batch);  // no refill of these is in flight
        {
            std::lock_guard<std::mutex> lock(m_impl->mutex);
            auto& e = m_impl->entries;
            for (const auto& l : leases) {
                l->withdraw();
                auto it = std::find_if(e.begin(), e.end(),
                                       [&](const Impl::Entry& x) { return x.lease == l; });
                if (it == e.end()) continue;
                // Released even if no grant was seen: one may have committed with its answer
                // lost (releasing a lease the keeper does not hold does nothing).
                rows.push_back(*it);
                e.erase(it);
            }
        }
        // What it did not consume goes back now; if this fails it ages out instead.
        if (!rows.empty()) m_impl->run(rows, true);
    } catch (const std::exception& e) {
        m_impl->report(std::string("firm limits: cannot give leases back: ") + e.what() +
                       "; they age out");
    } catch (...) {
    }
}

bool PostgresFirmLimits::wait_granted(std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(m_impl->mutex);
    return m_impl->changed.wait_for(lock, timeout, [&] {
        return std::all_of(m_impl->entries.begin(), m_impl->entries.end(),
                           [](const Impl::Entry& e) { return e.granted; });
    });
}

std::vector<FirmLeaseLevel> PostgresFirmLimits::levels() const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    std::vector<FirmLeaseLevel> out;
    for (const Impl::Entry& e : m_impl->entries) {
        const FirmLease& l = *e.lease;
        out.push_back({l.budget_id(), e.agent, l.kind(), l.consumed(), l.granted(), l.acked(),
                       l.slice(), l.expires_ns()});
    }
    return out;
}

std::vector<double> PostgresFirmLimits::refill_latencies_us() const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->latencies;
}

std::uint64_t set_firm_budget(const std::string& conninfo, const FirmBudget& b,
                              const std::function<std::uint64_t()>& record) {
    if (!valid_budget_id(b.id))
        throw Error(ErrorCategory::invalid_input,
                    "firm budget: \"" + b.id +
                        "\" is not a budget id (a-z, 0-9, then also . _ -; at most 64)");
    if (b.set_by.empty() || b.reason.empty())
        throw Error(ErrorCategory::invalid_input,
                    "firm budget: the person and reason are required");
    constexpr std::int64_t most = std::int64_t{1} << 60;  // sums of a few never overflow
    if (b.amount < 0 || b.amount > most || b.chunk <= 0 || b.chunk > most)
        throw Error(ErrorCategory::invalid_input,
                    "firm budget: the amount must be 0 to 2^60 and the chunk 1 to 2^60 units");
    pg::Connection c(conninfo, "kakunin-firm");
    const char* insert =
        "INSERT INTO kakunin_audit.firm_budget_steps (budget_id, kind, currency, amount, chunk, "
        "set_by, reason, set_at_ns, ca_log_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    auto params = [&](std::uint64_t seq) {
        return pg::Params{b.id,
                          std::string(to_string(b.kind)),
                          b.currency,
                          std::to_string(b.amount),
                          std::to_string(b.chunk),
                          b.set_by,
                          b.reason,
                          std::to_string(b.set_at_ns),
                          std::to_string(seq)};
    };
    c.command("BEGIN");
    try {
        // The database's checks first (a kind that cannot change, a bad currency), so that a
        // refused step is not recorded; then the record, then the step naming it.
        c.command("SAVEPOINT check_step");
        c.exec(insert, params(0));
        c.command("ROLLBACK TO SAVEPOINT check_step");
        const std::uint64_t seq = record();
        c.exec(insert, params(seq));
        c.command("COMMIT");
        return seq;
    } catch (...) {
        if (c.ok()) PQclear(PQexec(c.get(), "ROLLBACK"));
        throw;
    }
}

std::size_t release_firm_orphans(const std::string& conninfo, const std::string& budget_id,
                                 const std::function<std::uint64_t()>& record) {
    if (!valid_budget_id(budget_id))
        throw Error(ErrorCategory::invalid_input,
                    "firm budget: \"" + budget_id + "\" is not a budget id");
    pg::Connection c(conninfo, "kakunin-firm");
    c.command("BEGIN");
    try {
        if (PQntuples(
                c.exec("SELECT 1 FROM kakunin_audit.firm_budgets WHERE budget_id = $1", {budget_id})
                    .get()) == 0)
            throw Error(ErrorCategory::invalid_input, "firm budget " + budget_id + " is not set");
        record();
        pg::Result r = c.exec("SELECT kakunin_audit.firm_release_orphans($1)", {budget_id});
        const auto n = static_cast<std::size_t>(pg::to_i64(pg::value(r.get(), 0, 0)));
        c.command("COMMIT");
        return n;
    } catch (...) {
        if (c.ok()) PQclear(PQexec(c.get(), "ROLLBACK"));
        throw;
    }
}

std::vector<FirmBudgetState> firm_budget_states(const std::string& conninfo) {
    pg::Connection c(conninfo, "kakunin-firm");
    pg::Result r = c.exec(
        "SELECT b.budget_id, b.kind, b.currency, b.amount, b.chunk, s.set_by, s.reason, "
        "s.set_at_ns, b.spent, coalesce(sum(l.granted - l.base), 0)::bigint, count(l.holder), "
        "b.day::text, count(l.holder) FILTER (WHERE l.orphaned) FROM kakunin_audit.firm_budgets b "
        "JOIN kakunin_audit.firm_budget_steps s "
        "ON s.seq = b.step_seq LEFT JOIN kakunin_audit.firm_leases l ON l.budget_id = "
        "b.budget_id AND (l.expires_at >= now() OR l.orphaned) GROUP BY b.budget_id, s.seq ORDER "
        "BY b.budget_id");
    std::vector<FirmBudgetState> out;
    const PGresult* res = r.get();
    for (int i = 0; i < PQntuples(res); ++i) {
        FirmBudgetState st;
        st.budget.id = std::string(pg::value(res, i, 0));
        st.budget.kind =
            firm_budget_kind(pg::value(res, i, 1)).value_or(FirmBudgetKind::daily_notional);
        st.budget.currency = std::string(pg::value(res, i, 2));
        st.budget.amount = pg::to_i64(pg::value(res, i, 3));
        st.budget.chunk = pg::to_i64(pg::value(res, i, 4));
        st.budget.set_by = std::string(pg::value(res, i, 5));
        st.budget.reason = std::string(pg::value(res, i, 6));
        st.budget.set_at_ns = pg::to_i64(pg::value(res, i, 7));
        st.spent = pg::to_i64(pg::value(res, i, 8));
        st.leased = pg::to_i64(pg::value(res, i, 9));
        st.leases = static_cast<std::size_t>(pg::to_i64(pg::value(res, i, 10)));
        st.day = std::string(pg::value(res, i, 11));
        st.orphaned = static_cast<std::size_t>(pg::to_i64(pg::value(res, i, 12)));
        out.push_back(std::move(st));
    }
    return out;
}

}  // namespace kakunin
