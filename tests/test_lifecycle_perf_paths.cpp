// The lifecycle engine's fast paths (detail::OrderLimits): the self-trade index (a heap per
// instrument, counterparty and side, its levels from per-level pools, its groups in a table
// that they enter and leave), the id table, and evaluate_new given the scope's indices. The
// differential test of test_lifecycle_differential.cpp keeps at most 12 orders; here books of
// thousands in a few groups, and many groups over a small table, against a scan of every
// working order.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "kakunin/detail/order_limits.hpp"
#include "support.hpp"

using namespace kakunin;
using detail::OrderLimits;

namespace {

/// A scope with these instruments and counterparties and only `limits`.
Scope scope_of(const std::vector<std::string>& instruments, const std::vector<std::string>& venues,
               const std::string& limits) {
    auto list = [](const std::vector<std::string>& v) {
        std::string s = "[";
        for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
        return s + "]";
    };
    std::string json = test::seed_with(R"("instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"])",
                                       "\"instruments\": " + list(instruments));
    auto replace = [&json](const std::string& from, const std::string& to) {
        const auto pos = json.find(from);
        REQUIRE(pos != std::string::npos);
        json.replace(pos, from.size(), to);
    };
    replace(R"("counterparties": ["exchange_a", "exchange_b"])",
            "\"counterparties\": " + list(venues));
    const auto from = json.find("\"limits\"");
    REQUIRE(from != std::string::npos);
    json = json.substr(0, from) + "\"limits\": " + limits + "\n}";
    return parse_scope_json(json);
}

/// A price in 10^-18 units, computed here on its own.
int128 e18(Decimal d) {
    int128 v = d.units;
    for (unsigned s = d.scale; s < 18; ++s) v *= 10;
    return v;
}

std::string names(const std::set<ReasonCode>& rs) {
    std::string s;
    for (auto r : rs) s += std::string(to_string(r)) + " ";
    return s;
}

std::set<ReasonCode> set_of(ReasonSet r) { return std::set<ReasonCode>(r.begin(), r.end()); }

/// What a working order is for self-trade: docs/lifecycle.md, Amends and the self_trade row.
struct Model {
    std::string id;
    int instrument = 0, venue = 0;
    bool buy = true;
    int128 latest = 0, high = 0, low = 0;  // prices since the terms last settled
    bool acked = false;
    int pending = 0;
};

/// Random requests and reports against the engine and a vector of every working order, which
/// is scanned for each self-trade question. Venue index -1 is a counterparty not in the scope.
class Run {
public:
    Run(const std::vector<std::string>& instruments, const std::vector<std::string>& venues,
        std::size_t max_open, std::uint64_t seed, std::size_t ids, std::int64_t overlap_cents)
        : m_overlap(overlap_cents),
          m_instruments(instruments),
          m_venues(venues),
          m_max_open(max_open),
          m_engine(scope_of(instruments, venues,
                            "{\"max_open_orders\": " + std::to_string(max_open) + "}")),
          m_rng(seed) {
        for (std::size_t i = 0; i < ids; ++i) m_ids.push_back("o-" + std::to_string(i));
    }

    long disagreements = 0, allowed = 0, self_trades = 0, full = 0, closed = 0, amends = 0;
    std::size_t largest_book = 0;

    void events(long n) {
        for (long i = 0; i < n; ++i) {
            m_now += 1'000'000;
            const auto kind = below(100);
            if (kind < 50)
                new_order();
            else if (kind < 62)
                amend();
            else if (kind < 77)
                ack();
            else if (kind < 95)
                close(kind < 85   ? ExecutionType::cancelled
                      : kind < 90 ? ExecutionType::expired
                                  : ExecutionType::reject);
            else
                fill();
            if (m_engine.working_count() != m_book.size())
                disagree("working count " + std::to_string(m_engine.working_count()) + " vs " +
                         std::to_string(m_book.size()));
            largest_book = std::max(largest_book, m_book.size());
            if (i % 997 == 0) probe_every_group();
        }
    }

    /// For every group, orders at its keenest price and one tick less keen: the first crosses,
    /// the second does not (evaluated only).
    void probe_every_group() {
        for (int ins = 0; ins < static_cast<int>(m_instruments.size()); ++ins)
            for (int v = 0; v < static_cast<int>(m_venues.size()); ++v)
                for (bool buy_side : {true, false}) {
                    bool any = false;
                    int128 best = 0;  // the keenest of the working orders of this side
                    for (const Model& m : m_book) {
                        if (m.instrument != ins || m.venue != v || m.buy != buy_side) continue;
                        const int128 p = buy_side ? m.high : m.low;
                        if (!any || (buy_side ? p > best : p < best)) best = p;
                        any = true;
                    }
                    if (!any) continue;
                    // best is at scale 3 at most (prices below): probe at 10^-3 either side.
                    const int128 tick = e18(Decimal{1, 3});
                    for (int128 at : {best, buy_side ? best + tick : best - tick}) {
                        Order o;
                        o.client_order_id = "probe";
                        o.instrument = m_instruments[static_cast<std::size_t>(ins)];
                        o.counterparty = m_venues[static_cast<std::size_t>(v)];
                        o.side = buy_side ? Side::sell : Side::buy;
                        o.quantity = Decimal{1, 0};
                        o.price = Decimal{static_cast<std::int64_t>(at / e18(Decimal{1, 3})), 3};
                        OrderLimits::NewPlan plan;
                        const bool crossed = m_engine.evaluate_new(o, ins, v, m_now, plan)
                                                 .contains(ReasonCode::self_trade);
                        if (crossed != (at == best))
                            disagree("probe of group " + std::to_string(ins) + "/" +
                                     std::to_string(v) + (buy_side ? " buys" : " sells"));
                    }
                }
    }

private:
    std::uint64_t below(std::uint64_t n) { return m_rng() % n; }

    void disagree(const std::string& what) {
        if (++disagreements <= 5) UNSCOPED_INFO("after " << m_last << ": " << what);
    }

    /// A price at scale 2 or 3 from 90.00 to 110.00: buys below 100.00 and sells above it,
    /// but for the overlap of both ranges around 100.00 where they may cross.
    Decimal price(bool buy) {
        const auto span = static_cast<std::uint64_t>(1000 + m_overlap / 2);
        const std::int64_t cents = buy ? 9000 + static_cast<std::int64_t>(below(span))
                                       : 11000 - static_cast<std::int64_t>(below(span));
        if (below(2)) return Decimal{cents, 2};
        return Decimal{cents * 10 + static_cast<std::int64_t>(below(10)), 3};
    }

    Model* working(const std::string& id) {
        auto it = m_where.find(id);
        return it == m_where.end() ? nullptr : &m_book[it->second];
    }
    void remove(const std::string& id) {
        const std::size_t at = m_where.at(id);
        m_where.erase(id);
        if (at + 1 != m_book.size()) {
            m_book[at] = std::move(m_book.back());
            m_where[m_book[at].id] = at;
        }
        m_book.pop_back();
    }

    bool crosses(int instrument, int venue, bool buy, int128 p) const {
        for (const Model& m : m_book)
            if (m.instrument == instrument && m.venue == venue && m.buy != buy &&
                (buy ? m.low <= p : m.high >= p))
                return true;
        return false;
    }

    /// Mostly a working order's id, else any id of the pool.
    const std::string& some_id() {
        if (!m_book.empty() && below(5) != 0) return m_book[below(m_book.size())].id;
        return m_ids[below(m_ids.size())];
    }

    void new_order() {
        const std::string& id = m_ids[below(m_ids.size())];
        const int instrument = static_cast<int>(below(m_instruments.size()));
        const int venue = below(20) == 0 ? -1 : static_cast<int>(below(m_venues.size()));
        Order o;
        o.client_order_id = id;
        o.instrument = m_instruments[static_cast<std::size_t>(instrument)];
        o.counterparty = venue < 0 ? std::string_view("venue_not_listed")
                                   : std::string_view(m_venues[static_cast<std::size_t>(venue)]);
        o.side = below(2) ? Side::buy : Side::sell;
        o.quantity = Decimal{1, 0};
        o.price = price(o.side == Side::buy);
        m_last = "new " + id + " " + std::string(o.instrument) + " " + std::string(o.counterparty) +
                 " " + to_string(o.side) + " @ " + to_string(o.price);
        const bool buy = o.side == Side::buy;
        std::set<ReasonCode> expected;
        if (working(id)) expected.insert(ReasonCode::duplicate_order_id);
        if (m_book.size() >= m_max_open) expected.insert(ReasonCode::max_open_orders_exceeded);
        if (venue >= 0 && crosses(instrument, venue, buy, e18(o.price)))
            expected.insert(ReasonCode::self_trade);

        OrderLimits::NewPlan by_name, by_index;
        ReasonSet r = m_engine.evaluate_new(o, m_now, by_name);
        const ReasonSet r_index = m_engine.evaluate_new(o, instrument, venue, m_now, by_index);
        if (set_of(r) != set_of(r_index) || by_name.hash != by_index.hash ||
            by_name.instrument != by_index.instrument ||
            by_name.counterparty != by_index.counterparty || by_name.valid != by_index.valid ||
            by_name.quantity != by_index.quantity || by_name.notional != by_index.notional)
            disagree("evaluate_new by name and by index");
        if (set_of(r) != expected)
            disagree("reasons: engine " + names(set_of(r)) + "reference " + names(expected));
        if (venue < 0) r.add(ReasonCode::counterparty_not_allowed);  // the Guard's scope check
        m_engine.count_message(m_now);
        self_trades += r.contains(ReasonCode::self_trade);
        full += r.contains(ReasonCode::max_open_orders_exceeded);
        if (!r.empty()) return;
        m_engine.commit_new(o, by_index, m_now);
        ++allowed;
        Model m;
        m.id = id;
        m.instrument = instrument;
        m.venue = venue;
        m.buy = buy;
        m.latest = m.high = m.low = e18(o.price);
        m_where[id] = m_book.size();
        m_book.push_back(m);
    }

    void amend() {
        const std::string id = some_id();
        Model* m = working(id);
        Amend a;
        a.client_order_id = id;
        const bool buy = m ? m->buy : below(2) == 0;
        a.price = price(buy);
        m_last = "amend " + id + " @ " + to_string(*a.price);
        std::set<ReasonCode> expected;
        if (!m)
            expected.insert(ReasonCode::unknown_order_id);
        else if (crosses(m->instrument, m->venue, buy, e18(*a.price)))
            expected.insert(ReasonCode::self_trade);
        OrderLimits::AmendPlan plan;
        const ReasonSet r = m_engine.evaluate_amend(a, m_now, plan);
        m_engine.count_message(m_now);
        if (set_of(r) != expected)
            disagree("amend reasons: engine " + names(set_of(r)) + "reference " + names(expected));
        if (!r.empty() || !m) return;
        m_engine.commit_amend(plan, m_now);
        ++amends;
        const int128 p = e18(*a.price);
        m->latest = p;
        m->high = std::max(m->high, p);
        m->low = std::min(m->low, p);
        ++m->pending;
    }

    void ack() {
        const std::string id = some_id();
        m_last = "ack " + id;
        ExecutionReport e;
        e.type = ExecutionType::ack;
        e.client_order_id = id;
        const ExecutionResult r = m_engine.apply(e, m_now);
        if (r.order_closed) disagree("an ack closed an unfilled order");
        Model* m = working(id);
        if (!m) return;
        if (!m->acked) {
            m->acked = true;
        } else if (m->pending > 0 && --m->pending == 0) {
            m->high = m->low = m->latest;  // every request acknowledged: the latest terms
        }
    }

    void close(ExecutionType type) {
        const std::string id = some_id();
        m_last = std::string(to_string(type)) + " " + id;
        ExecutionReport e;
        e.type = type;
        e.client_order_id = id;
        const ExecutionResult r = m_engine.apply(e, m_now);
        const bool was_working = working(id) != nullptr;
        if (r.order_closed != was_working) disagree("order_closed");
        if (was_working) {
            remove(id);
            ++closed;
        }
    }

    /// A fill of the whole quantity (1) closes a working order.
    void fill() {
        const std::string id = some_id();
        Model* m = working(id);
        m_last = "fill " + id;
        ExecutionReport e;
        e.type = ExecutionType::fill;
        e.client_order_id = id;
        e.instrument = m_instruments[m ? static_cast<std::size_t>(m->instrument) : 0];
        e.side = m && !m->buy ? Side::sell : Side::buy;
        e.quantity = Decimal{1, 0};
        e.price = Decimal{10000, 2};
        const ExecutionResult r = m_engine.apply(e, m_now);
        if (r.order_closed != (m != nullptr)) disagree("a full fill's order_closed");
        if (m) {
            remove(id);
            ++closed;
        }
    }

    std::int64_t m_overlap;
    std::vector<std::string> m_instruments, m_venues;
    std::size_t m_max_open;
    OrderLimits m_engine;
    std::mt19937_64 m_rng;
    std::vector<std::string> m_ids;
    std::vector<Model> m_book;
    std::unordered_map<std::string, std::size_t> m_where;
    TimeNs m_now = test::monday(12);
    std::string m_last;
};

}  // namespace

TEST_CASE(
    "books of thousands in a few groups: self-trade, duplicates and a full table agree "
    "with a scan of every working order",
    "[lifecycle][lifecycle_perf]") {
    Run run({"BTC_EUR", "ETH_EUR", "SOL_EUR"}, {"exchange_a", "exchange_b"}, 3000, 20240108, 12000,
            60);
    run.events(150'000);
    CHECK(run.disagreements == 0);
    INFO("allowed " << run.allowed << ", self-trades " << run.self_trades << ", full " << run.full
                    << ", closed " << run.closed << ", amends " << run.amends << ", largest book "
                    << run.largest_book);
    CHECK(run.largest_book == 3000);  // heaps of hundreds, the table and the pools full
    CHECK(run.full > 1000);
    CHECK(run.self_trades > 1000);
    CHECK(run.amends > 5000);
    CHECK(run.closed > 20'000);
}

TEST_CASE(
    "a thousand groups over a table of 128 slots: groups enter and leave it and "
    "self-trade still agrees with the scan",
    "[lifecycle][lifecycle_perf]") {
    std::vector<std::string> instruments, venues;
    for (int i = 0; i < 40; ++i) instruments.push_back("X" + std::to_string(i) + "_EUR");
    for (int i = 0; i < 13; ++i) venues.push_back("venue_" + std::to_string(i));
    // 40 x 13 x 2 = 1,040 groups, at most 64 working orders: the group table has 128 slots.
    Run run(instruments, venues, 64, 7, 200, 2000);  // buys and sells over the same range
    run.events(150'000);
    CHECK(run.disagreements == 0);
    INFO("allowed " << run.allowed << ", self-trades " << run.self_trades << ", closed "
                    << run.closed);
    CHECK(run.largest_book == 64);
    CHECK(run.allowed > 20'000);
    CHECK(run.self_trades > 1000);
}

TEST_CASE(
    "one group takes the whole capacity, empties in random order, and another group "
    "takes it again: the keenest order is right after every removal",
    "[lifecycle][lifecycle_perf]") {
    constexpr int n = 1024;  // the last order opens level 10, whose pool has one block
    OrderLimits engine(scope_of({"BTC_EUR", "ETH_EUR"}, {"exchange_a", "exchange_b"},
                                "{\"max_open_orders\": " + std::to_string(n) + "}"));
    std::mt19937_64 rng(42);
    TimeNs now = test::monday(12);
    auto order = [](const std::string& id, const char* instrument, const char* venue, Side side,
                    std::int64_t cents) {
        Order o;
        o.client_order_id = id;
        o.instrument = instrument;
        o.counterparty = venue;
        o.side = side;
        o.quantity = Decimal{1, 0};
        o.price = Decimal{cents, 2};
        return o;
    };
    auto decide = [&](const Order& o, bool commit) {
        OrderLimits::NewPlan plan;
        const ReasonSet r = engine.evaluate_new(o, now, plan);
        if (commit && r.empty()) engine.commit_new(o, plan, now);
        return r;
    };
    for (int round = 0; round < 2; ++round) {
        // Round 0: sells of BTC on exchange_a; round 1: buys of ETH on exchange_b.
        const char* instrument = round == 0 ? "BTC_EUR" : "ETH_EUR";
        const char* venue = round == 0 ? "exchange_a" : "exchange_b";
        const Side side = round == 0 ? Side::sell : Side::buy;
        const Side other = round == 0 ? Side::buy : Side::sell;
        std::vector<std::int64_t> prices(n);
        for (int i = 0; i < n; ++i) prices[static_cast<std::size_t>(i)] = 100'000 + 3 * i;
        std::shuffle(prices.begin(), prices.end(), rng);
        std::multiset<std::int64_t> working;
        std::vector<std::string> ids;
        for (int i = 0; i < n; ++i) {
            ids.push_back("r" + std::to_string(round) + "-" + std::to_string(i));
            REQUIRE(decide(order(ids.back(), instrument, venue, side,
                                 prices[static_cast<std::size_t>(i)]),
                           true)
                        .empty());
            working.insert(prices[static_cast<std::size_t>(i)]);
        }
        REQUIRE(engine.working_count() == static_cast<std::size_t>(n));
        CHECK(decide(order("one-more", instrument, venue, side, 100'000), false)
                  .contains(ReasonCode::max_open_orders_exceeded));
        // Amends that settle: every 7th order moves to a price less keen by 1000 cents, every
        // 11th to a keener one (its key down and up through the heap).
        for (int i = 0; i < n; i += 7) {
            const std::int64_t from = prices[static_cast<std::size_t>(i)];
            const std::int64_t to =
                (i % 11 == 0) == (side == Side::sell) ? from - 1001 : from + 1001;
            Amend a;
            a.client_order_id = ids[static_cast<std::size_t>(i)];
            a.price = Decimal{to, 2};
            OrderLimits::AmendPlan plan;
            if (!engine.evaluate_amend(a, now, plan).empty()) continue;
            engine.commit_amend(plan, now);
            ExecutionReport ack;
            ack.type = ExecutionType::ack;
            ack.client_order_id = a.client_order_id;
            engine.apply(ack, now);  // the new order
            engine.apply(ack, now);  // the amend: the latest price is the order's price
            working.erase(working.find(from));
            working.insert(to);
            prices[static_cast<std::size_t>(i)] = to;
        }
        std::vector<int> order_of_removal(n);
        for (int i = 0; i < n; ++i) order_of_removal[static_cast<std::size_t>(i)] = i;
        std::shuffle(order_of_removal.begin(), order_of_removal.end(), rng);
        long wrong = 0;
        for (int i : order_of_removal) {
            const std::int64_t keenest = side == Side::sell ? *working.begin() : *working.rbegin();
            const std::int64_t short_of = side == Side::sell ? keenest - 1 : keenest + 1;
            wrong += !decide(order("probe", instrument, venue, other, keenest), false)
                          .contains(ReasonCode::self_trade);
            wrong += decide(order("probe", instrument, venue, other, short_of), false)
                         .contains(ReasonCode::self_trade);
            ExecutionReport cancelled;
            cancelled.type = ExecutionType::cancelled;
            cancelled.client_order_id = ids[static_cast<std::size_t>(i)];
            REQUIRE(engine.apply(cancelled, now).order_closed);
            working.erase(working.find(prices[static_cast<std::size_t>(i)]));
        }
        CHECK(wrong == 0);
        CHECK(engine.working_count() == 0);
        CHECK_FALSE(decide(order("probe", instrument, venue, other, 100'000), false)
                        .contains(ReasonCode::self_trade));
        now += 1'000'000'000;
    }
}

TEST_CASE(
    "evaluate_new given indices: an index outside the scope's lists counts as a name not "
    "in it and enters nothing",
    "[lifecycle][lifecycle_perf]") {
    OrderLimits engine(scope_of({"BTC_EUR", "ETH_EUR"}, {"exchange_a", "exchange_b"},
                                R"({"max_open_orders": 10})"));
    const TimeNs now = test::monday(12);
    Order o;
    o.client_order_id = "x-1";
    o.instrument = "BTC_EUR";
    o.counterparty = "exchange_a";
    o.side = Side::sell;
    o.quantity = Decimal{1, 0};
    o.price = Decimal{10000, 2};
    OrderLimits::NewPlan plan;
    REQUIRE(engine.evaluate_new(o, 0, 0, now, plan).empty());
    engine.commit_new(o, plan, now);
    REQUIRE(engine.working_count() == 1);
    o.side = Side::buy;
    o.price = Decimal{10001, 2};
    for (const auto& [instrument, venue] :
         std::vector<std::pair<int, int>>{{2, 0}, {-7, 0}, {1'000'000, 0}, {0, 2}, {0, -3}}) {
        INFO("instrument " << instrument << ", counterparty " << venue);
        o.client_order_id = "x-2";
        const ReasonSet r = engine.evaluate_new(o, instrument, venue, now, plan);
        CHECK_FALSE(r.contains(ReasonCode::self_trade));  // not the sell's group
        CHECK((instrument == 0 ? plan.instrument == 0 : plan.instrument == -1));
        CHECK((venue == 0 ? plan.counterparty == 0 : plan.counterparty == -1));
        engine.commit_new(o, plan, now);
        CHECK(engine.working_count() == 1);
    }
    // The same order with the right indices crosses the sell.
    CHECK(engine.evaluate_new(o, 0, 0, now, plan).contains(ReasonCode::self_trade));
}
