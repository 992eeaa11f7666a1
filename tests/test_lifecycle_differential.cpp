// A differential property test of the order lifecycle engine: over a million random requests and
// execution reports, detail::OrderLimits and a deliberately simple reference written here from
// docs/lifecycle.md alone must never disagree. The reference keeps working orders in a std::map,
// computes in arbitrary precision (Botan::BigInt) instead of 128-bit fixed point, scans every
// working order instead of keeping totals, an ordered index or a hash table, and recomputes the
// day's profit and loss from positions and cash flows each time it is asked.
#include <botan/bigint.h>
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kakunin/detail/order_limits.hpp"
#include "support.hpp"

using namespace kakunin;
using Botan::BigInt;
using detail::OrderLimits;

namespace {

BigInt big(std::int64_t v) {
    BigInt b(static_cast<std::uint64_t>(v < 0 ? -(v + 1) : v));
    if (v < 0) {
        b += 1;
        b.flip_sign();
    }
    return b;
}

BigInt pow10(unsigned n) {
    BigInt r(1);
    for (unsigned i = 0; i < n; ++i) r *= 10;
    return r;
}

/// A decimal in 10^-18 units.
BigInt e18(Decimal d) { return big(d.units) * pow10(18 - d.scale); }

/// floor(a / b) for b > 0.
BigInt floor_div(const BigInt& a, const BigInt& b) {
    BigInt q = a / b;  // Botan truncates toward zero
    if (a.is_negative() && q * b != a) q -= 1;
    return q;
}
BigInt ceil_div(const BigInt& a, const BigInt& b) { return -floor_div(-a, b); }

BigInt from128(int128 v) {
    const bool neg = v < 0;
    unsigned __int128 u =
        neg ? static_cast<unsigned __int128>(-(v + 1)) + 1 : static_cast<unsigned __int128>(v);
    BigInt r = BigInt(static_cast<std::uint64_t>(u >> 64)) << 64;
    r += BigInt(static_cast<std::uint64_t>(u));
    if (neg) r.flip_sign();
    return r;
}

const std::vector<std::string> k_instruments = {"BTC_EUR", "ETH_EUR", "SOL_EUR"};
const std::vector<std::string> k_venues = {"exchange_a", "exchange_b"};

class Reference {
public:
    struct Working {
        std::string instrument, venue;
        bool buy = true;
        BigInt filled, reserved, latest_q, latest_p, high, low;  // 10^-18 units
        bool acked = false;
        int pending = 0;
    };

    explicit Reference(const Scope& s) : m_scope(s) {
        const PreTradeLimits& l = s.limits;
        for (const auto& [instrument, p] : l.max_position)
            m_position_limit[instrument] = {e18(p.max_long), e18(p.max_short)};
        m_max_open = *l.max_open_orders;
        m_rate = *l.max_messages_per_second;
        m_working_limit = e18(l.max_working_notional->amount);
        m_daily_limit = e18(l.max_daily_notional->amount);
        m_loss_limit = e18(l.max_daily_loss->amount);
    }

    bool reduce_only = false;
    std::map<std::string, Working> orders;

    // ---- requests ----

    std::set<ReasonCode> new_order(const Order& o, TimeNs t) {
        roll(t);
        std::set<ReasonCode> r;
        const std::string id(o.client_order_id);
        if (id.empty() || id.size() > 64)
            r.insert(ReasonCode::order_id_missing);
        else if (orders.count(id))
            r.insert(ReasonCode::duplicate_order_id);
        if (orders.size() >= m_max_open) r.insert(ReasonCode::max_open_orders_exceeded);
        if (rate_exceeded(t)) r.insert(ReasonCode::message_rate_exceeded);
        const bool q_ok = o.quantity.units > 0, p_ok = o.price.units > 0;
        if (!q_ok) r.insert(ReasonCode::invalid_quantity);
        if (!p_ok) r.insert(ReasonCode::invalid_price);
        const std::string instrument(o.instrument), venue(o.counterparty);
        // The Guard's scope check, which decides with the engine whether the order is entered.
        if (!listed(k_instruments, instrument)) r.insert(ReasonCode::instrument_not_allowed);
        if (!listed(k_venues, venue)) r.insert(ReasonCode::counterparty_not_allowed);
        if (!q_ok || !p_ok || !listed(k_instruments, instrument)) return done(r, t);
        const bool buy = o.side == Side::buy;
        const BigInt q = e18(o.quantity), p = e18(o.price);
        const BigInt side = working(instrument, buy) + q;
        if (position_exceeded(instrument, buy, side)) r.insert(ReasonCode::max_position_exceeded);
        const BigInt n = ceil_div(q * p, pow10(18));
        notional_checks(n, r);
        if ((reduce_only || loss_reached()) && !reduces(instrument, buy, side)) {
            if (reduce_only) r.insert(ReasonCode::reduce_only);
            if (loss_reached()) r.insert(ReasonCode::daily_loss_limit_reached);
        }
        if (listed(k_venues, venue) && crosses(instrument, venue, buy, p))
            r.insert(ReasonCode::self_trade);
        if (r.empty()) {
            Working w;
            w.instrument = instrument;
            w.venue = venue;
            w.buy = buy;
            w.reserved = w.latest_q = q;
            w.latest_p = w.high = w.low = p;
            orders[id] = w;
        }
        return done(r, t);
    }

    std::set<ReasonCode> amend(const Amend& a, TimeNs t) {
        roll(t);
        std::set<ReasonCode> r;
        if (rate_exceeded(t)) r.insert(ReasonCode::message_rate_exceeded);
        auto it = orders.find(std::string(a.client_order_id));
        if (it == orders.end()) {
            r.insert(ReasonCode::unknown_order_id);
            return done(r, t);
        }
        Working& w = it->second;
        BigInt latest_q = w.latest_q, latest_p = w.latest_p;
        if (a.quantity) {
            if (a.quantity->units <= 0 || e18(*a.quantity) <= w.filled)
                r.insert(ReasonCode::invalid_quantity);
            else
                latest_q = e18(*a.quantity);
        }
        if (a.price) {
            if (a.price->units <= 0)
                r.insert(ReasonCode::invalid_price);
            else
                latest_p = e18(*a.price);
        }
        if (r.count(ReasonCode::invalid_quantity) || r.count(ReasonCode::invalid_price))
            return done(r, t);
        const BigInt reserved = std::max(w.reserved, latest_q);
        const BigInt high = std::max(w.high, latest_p), low = std::min(w.low, latest_p);
        const BigInt added = reserved - w.reserved;
        const BigInt side = working(w.instrument, w.buy) + added;
        if (added > 0 && position_exceeded(w.instrument, w.buy, side))
            r.insert(ReasonCode::max_position_exceeded);
        const BigInt before = notional_of(w.reserved, w.filled, w.high);
        const BigInt after = notional_of(reserved, w.filled, high);
        if (after > before) notional_checks(after - before, r);
        if ((reduce_only || loss_reached()) && !reduces(w.instrument, w.buy, side)) {
            if (reduce_only) r.insert(ReasonCode::reduce_only);
            if (loss_reached()) r.insert(ReasonCode::daily_loss_limit_reached);
        }
        if (a.price && crosses(w.instrument, w.venue, w.buy, latest_p))
            r.insert(ReasonCode::self_trade);
        if (r.empty()) {
            w.latest_q = latest_q;
            w.latest_p = latest_p;
            w.reserved = reserved;
            w.high = high;
            w.low = low;
            ++w.pending;
        }
        return done(r, t);
    }

    std::set<ReasonCode> cancel(const Cancel& c, TimeNs t) {
        roll(t);
        std::set<ReasonCode> r;
        if (!orders.count(std::string(c.client_order_id))) r.insert(ReasonCode::unknown_order_id);
        return done(r, t);
    }

    // ---- reports: returns whether the order stopped working ----

    bool report(const ExecutionReport& e, TimeNs t) {
        roll(t);
        const std::string id(e.client_order_id);
        auto it = orders.find(id);
        switch (e.type) {
            case ExecutionType::mark:
                if (!listed(k_instruments, std::string(e.instrument)) || e.price.units <= 0)
                    return false;
                m_last[std::string(e.instrument)] = e18(e.price);
                check_loss();
                return false;
            case ExecutionType::fill: {
                const std::string instrument =
                    it != orders.end() ? it->second.instrument : std::string(e.instrument);
                const bool buy = it != orders.end() ? it->second.buy : e.side == Side::buy;
                if (!listed(k_instruments, instrument) || e.quantity.units <= 0 ||
                    e.price.units <= 0) {
                    reduce_only = true;
                    return false;
                }
                const BigInt f = e18(e.quantity), p = e18(e.price);
                m_position[instrument] += buy ? f : -f;
                m_last[instrument] = p;
                m_filled_today += ceil_div(f * p, pow10(18));
                m_cash[instrument] += floor_div((buy ? -f : f) * p, pow10(18));
                bool closed = false;
                if (it != orders.end()) {
                    Working& w = it->second;
                    w.filled = std::min(w.filled + f, w.reserved);
                    if (w.filled >= w.reserved) {
                        orders.erase(it);
                        closed = true;
                    }
                }
                check_loss();
                return closed;
            }
            case ExecutionType::ack:
                if (it == orders.end()) return false;
                if (!it->second.acked) {
                    it->second.acked = true;
                } else if (it->second.pending > 0 && --it->second.pending == 0) {
                    Working& w = it->second;
                    w.reserved = w.latest_q;
                    w.high = w.low = w.latest_p;
                    if (w.filled >= w.reserved) {
                        orders.erase(it);
                        return true;
                    }
                }
                return false;
            default:  // reject, cancelled, expired
                if (it == orders.end()) return false;
                orders.erase(it);
                return true;
        }
    }

    // ---- figures ----

    BigInt position(const std::string& instrument) {
        auto it = m_position.find(instrument);
        return it == m_position.end() ? BigInt(0) : it->second;
    }
    BigInt working(const std::string& instrument, bool buy) const {
        BigInt sum(0);
        for (const auto& [id, w] : orders)
            if (w.instrument == instrument && w.buy == buy && w.reserved > w.filled)
                sum += w.reserved - w.filled;
        return sum;
    }
    BigInt working_notional() const {
        BigInt sum(0);
        for (const auto& [id, w] : orders) sum += notional_of(w.reserved, w.filled, w.high);
        return sum;
    }
    BigInt filled_today() const { return m_filled_today; }
    /// Today's realised plus unrealised profit: cash flows plus positions at the latest price.
    BigInt pnl() const {
        BigInt sum(0);
        for (const auto& instrument : k_instruments) sum += cash(instrument) + value(instrument);
        return sum;
    }

private:
    static bool listed(const std::vector<std::string>& list, const std::string& v) {
        for (const auto& e : list)
            if (e == v) return true;
        return false;
    }

    std::set<ReasonCode> done(std::set<ReasonCode> r, TimeNs t) {
        m_messages.push_back(t);
        return r;
    }

    bool rate_exceeded(TimeNs t) const {
        return m_messages.size() >= m_rate &&
               t - m_messages[m_messages.size() - m_rate] < 1'000'000'000;
    }

    /// Forward only: the first event of a later UTC day starts it with every carried position
    /// valued at its latest price.
    void roll(TimeNs t) {
        const std::int64_t day = t >= 0 ? t / 86'400'000'000'000 : -1;
        if (m_started && day <= m_day) return;
        m_started = true;
        m_day = day;
        m_filled_today = 0;
        for (const auto& instrument : k_instruments) m_cash[instrument] = -value(instrument);
    }

    BigInt value(const std::string& instrument) const {
        auto p = m_position.find(instrument);
        auto l = m_last.find(instrument);
        if (p == m_position.end() || l == m_last.end()) return 0;
        return floor_div(p->second * l->second, pow10(18));
    }
    BigInt cash(const std::string& instrument) const {
        auto it = m_cash.find(instrument);
        return it == m_cash.end() ? BigInt(0) : it->second;
    }

    bool loss_reached() const { return pnl() <= -m_loss_limit; }
    void check_loss() {
        if (loss_reached()) reduce_only = true;
    }

    static BigInt notional_of(const BigInt& reserved, const BigInt& filled, const BigInt& price) {
        const BigInt rest = reserved > filled ? reserved - filled : BigInt(0);
        return ceil_div(rest * price, pow10(18));
    }

    void notional_checks(const BigInt& added, std::set<ReasonCode>& r) const {
        const BigInt w = working_notional();
        if (w + added > m_working_limit) r.insert(ReasonCode::max_working_notional_exceeded);
        if (m_filled_today + w + added > m_daily_limit)
            r.insert(ReasonCode::daily_notional_exceeded);
    }

    bool position_exceeded(const std::string& instrument, bool buy, const BigInt& side) {
        auto it = m_position_limit.find(instrument);
        if (it == m_position_limit.end()) return false;
        const BigInt p = position(instrument);
        return buy ? p + side > it->second.first : p - side < -it->second.second;
    }

    bool reduces(const std::string& instrument, bool buy, const BigInt& side) {
        const BigInt p = position(instrument);
        return buy ? (p < 0 && p + side <= 0) : (p > 0 && p - side >= 0);
    }

    bool crosses(const std::string& instrument, const std::string& venue, bool buy,
                 const BigInt& price) const {
        for (const auto& [id, w] : orders)
            if (w.instrument == instrument && w.venue == venue && w.buy != buy &&
                (buy ? w.low <= price : w.high >= price))
                return true;
        return false;
    }

    const Scope& m_scope;
    std::map<std::string, std::pair<BigInt, BigInt>> m_position_limit;
    std::size_t m_max_open = 0, m_rate = 0;
    BigInt m_working_limit, m_daily_limit, m_loss_limit;
    std::vector<TimeNs> m_messages;
    std::map<std::string, BigInt> m_position, m_last, m_cash;
    BigInt m_filled_today;
    std::int64_t m_day = 0;
    bool m_started = false;
};

class Generator {
public:
    explicit Generator(std::uint64_t seed) : m_rng(seed) {
        for (int i = 0; i < 60; ++i) m_ids.push_back("o" + std::to_string(i));
        m_ids.push_back("");
        m_ids.push_back(std::string(65, 'L'));
        m_ids.push_back(std::string(64, 'M'));
    }
    std::uint64_t below(std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(m_rng);
    }
    const std::string& id() { return below(40) ? m_ids[below(60)] : m_ids[60 + below(3)]; }
    std::string_view instrument() {
        static const std::vector<std::string_view> v = {"BTC_EUR", "ETH_EUR", "SOL_EUR"};
        return below(50) ? v[below(3)] : "ADA_EUR";
    }
    std::string_view venue() {
        static const std::vector<std::string_view> v = {"exchange_a", "exchange_b"};
        return below(50) ? v[below(2)] : "exchange_z";
    }
    Decimal quantity() {
        if (below(300) == 0) return Decimal{-static_cast<std::int64_t>(below(2)), 2};
        return Decimal{static_cast<std::int64_t>(below(300)) + 1,
                       static_cast<std::uint8_t>(below(2) + 2)};  // 0.001 .. 3.00
    }
    Decimal price() {
        if (below(200) == 0) return Decimal{0, 0};
        const std::uint8_t scale = static_cast<std::uint8_t>(below(3) + 1);
        std::int64_t units = 9000 + static_cast<std::int64_t>(below(2000));  // 90.00..109.99
        for (unsigned s = 2; s < scale; ++s)
            units = units * 10 + static_cast<std::int64_t>(below(10));
        if (scale == 1) units /= 10;
        return Decimal{units, scale};
    }
    TimeNs advance(TimeNs t) {
        switch (below(40)) {
            case 0: return t + static_cast<TimeNs>(below(2 * 86400)) * 1'000'000'000;
            case 1: return t - static_cast<TimeNs>(below(2 * 86400)) * 1'000'000'000;
            case 2:
            case 3: return t + static_cast<TimeNs>(below(3600)) * 1'000'000'000;
            case 4:
            case 5:
            case 6:
            case 7: return t;
            default: return t + static_cast<TimeNs>(below(120'000'000));
        }
    }
    std::mt19937_64& rng() { return m_rng; }

private:
    std::mt19937_64 m_rng;
    std::vector<std::string> m_ids;
};

std::string names(const std::set<ReasonCode>& rs) {
    std::string s;
    for (auto r : rs) s += std::string(to_string(r)) + " ";
    return s;
}

}  // namespace

TEST_CASE("a million random lifecycle events: the engine and the reference never disagree",
          "[lifecycle]") {
    const Scope scope = parse_scope_json(test::seed_with(R"("limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"}
  })",
                                                         R"("limits": {
    "max_daily_notional": {"currency": "EUR", "amount": "100000.00"},
    "max_position": {"BTC_EUR": {"long": "8", "short": "6"}, "ETH_EUR": {"long": "2.5", "short": "0"}},
    "max_open_orders": 12,
    "max_working_notional": {"currency": "EUR", "amount": "1500.00"},
    "max_messages_per_second": 40,
    "max_daily_loss": {"currency": "EUR", "amount": "60.00"}
  })"));
    OrderLimits engine(scope);
    Reference ref(scope);
    Generator gen(20240108);
    TimeNs t = test::monday(12);
    long disagreements = 0, allowed = 0, closed = 0;
    std::string last;  // the event, for a disagreement's message
    std::set<ReasonCode> seen;
    std::map<ReasonCode, long> histogram;
    auto disagree = [&](long i, const std::string& what) {
        if (++disagreements <= 5) UNSCOPED_INFO("event " << i << " (" << last << "): " << what);
    };
    constexpr long events = 1'000'000;
    for (long i = 0; i < events; ++i) {
        t = gen.advance(t);
        const std::uint64_t kind = gen.below(100);
        std::set<ReasonCode> expected, got;
        bool request = true;
        if (kind < 32) {
            const std::string& id = gen.id();
            Order o;
            o.client_order_id = id;
            o.instrument = gen.instrument();
            o.counterparty = gen.venue();
            o.side = gen.below(2) ? Side::buy : Side::sell;
            o.quantity = gen.quantity();
            o.price = gen.price();
            last = "new " + id + " " + std::string(o.instrument) + " " + to_string(o.side) + " " +
                   to_string(o.quantity) + " @ " + to_string(o.price);
            OrderLimits::NewPlan plan;
            ReasonSet r = engine.evaluate_new(o, t, plan);
            // What the Guard's compiled scope adds before it commits (not the engine's part).
            if (engine.instrument_index(o.instrument) < 0)
                r.add(ReasonCode::instrument_not_allowed);
            if (o.counterparty == "exchange_z") r.add(ReasonCode::counterparty_not_allowed);
            engine.count_message(t);
            if (r.empty()) engine.commit_new(o, plan, t);
            got = std::set<ReasonCode>(r.begin(), r.end());
            expected = ref.new_order(o, t);
            if (r.empty()) ++allowed;
        } else if (kind < 42) {
            const std::string& id = gen.id();
            Amend a;
            a.client_order_id = id;
            const std::uint64_t what = gen.below(3);
            if (what != 1) a.quantity = gen.quantity();
            if (what != 0) a.price = gen.price();
            last = "amend " + id;
            OrderLimits::AmendPlan plan;
            const ReasonSet r = engine.evaluate_amend(a, t, plan);
            engine.count_message(t);
            if (r.empty()) engine.commit_amend(plan, t);
            got = std::set<ReasonCode>(r.begin(), r.end());
            expected = ref.amend(a, t);
        } else if (kind < 50) {
            const std::string& id = gen.id();
            const Cancel c{id};
            last = "cancel " + id;
            const ReasonSet r = engine.evaluate_cancel(c);
            engine.count_message(t);
            if (r.empty()) engine.commit_cancel(c);
            got = std::set<ReasonCode>(r.begin(), r.end());
            expected = ref.cancel(c, t);
        } else if (kind == 50 || kind == 51) {  // a person enters or lifts reduce-only
            const bool on = gen.below(4) == 0;
            engine.set_reduce_only(on);
            ref.reduce_only = on;
            continue;
        } else {
            request = false;
            // Mostly about a working order: its id, a fill up to a little over its rest.
            std::string id = gen.id();
            if (!ref.orders.empty() && gen.below(4) != 0) {
                auto it = ref.orders.begin();
                std::advance(it, static_cast<long>(gen.below(ref.orders.size())));
                id = it->first;
            }
            ExecutionReport e;
            const std::uint64_t k = gen.below(100);
            e.type = k < 30   ? ExecutionType::fill
                     : k < 55 ? ExecutionType::ack
                     : k < 65 ? ExecutionType::cancelled
                     : k < 72 ? ExecutionType::expired
                     : k < 78 ? ExecutionType::reject
                              : ExecutionType::mark;
            e.client_order_id = e.type == ExecutionType::mark ? std::string_view() : id;
            e.instrument = gen.instrument();
            e.side = gen.below(2) ? Side::buy : Side::sell;
            e.quantity = gen.quantity();
            e.price = gen.price();
            last = std::string(to_string(e.type)) + " " + id + " " + to_string(e.quantity) + " @ " +
                   to_string(e.price) + " " + std::string(e.instrument);
            const ExecutionResult r = engine.apply(e, t);
            if (r.problem) last += std::string(" -> ") + r.problem;
            last += ref.orders.count(id) ? " (ref knows)" : " (ref unknown)";
            last += engine.working_order(id) ? " (engine knows)" : " (engine unknown)";
            const bool ref_closed = ref.report(e, t);
            if (r.order_closed != ref_closed) disagree(i, "order_closed for " + id);
            closed += ref_closed;
        }
        if (request && got != expected)
            disagree(i, "reasons: engine " + names(got) + " reference " + names(expected));
        seen.insert(got.begin(), got.end());
        for (ReasonCode c : got) ++histogram[c];
        if (engine.reduce_only() != ref.reduce_only) disagree(i, "reduce-only mode");
        if (i % 16 == 0 || !request) {
            if (engine.working_count() != ref.orders.size())
                disagree(i, "working count " + std::to_string(engine.working_count()) + " vs " +
                                std::to_string(ref.orders.size()));
            for (std::size_t k = 0; k < k_instruments.size(); ++k) {
                const int ix = static_cast<int>(k);
                if (from128(engine.position(ix)) != ref.position(k_instruments[k]) ||
                    from128(engine.working_buy(ix)) != ref.working(k_instruments[k], true) ||
                    from128(engine.working_sell(ix)) != ref.working(k_instruments[k], false))
                    disagree(i, "position or working quantity of " + k_instruments[k]);
            }
            if (from128(engine.working_notional()) != ref.working_notional())
                disagree(i, "working notional");
            if (from128(engine.filled_today(t)) != ref.filled_today()) disagree(i, "filled today");
            if (from128(engine.daily_pnl(t)) != ref.pnl()) disagree(i, "daily pnl");
        }
    }
    CHECK(disagreements == 0);
    for (const auto& [c, n] : histogram) UNSCOPED_INFO(to_string(c) << ": " << n);
    INFO("allowed " << allowed << ", closed " << closed);
    CHECK(allowed > 20'000);
    CHECK(closed > 20'000);
    for (ReasonCode r :
         {ReasonCode::max_position_exceeded, ReasonCode::max_open_orders_exceeded,
          ReasonCode::max_working_notional_exceeded, ReasonCode::message_rate_exceeded,
          ReasonCode::daily_loss_limit_reached, ReasonCode::reduce_only,
          ReasonCode::duplicate_order_id, ReasonCode::unknown_order_id, ReasonCode::self_trade,
          ReasonCode::order_id_missing, ReasonCode::daily_notional_exceeded,
          ReasonCode::invalid_quantity, ReasonCode::invalid_price}) {
        INFO("never produced: " << to_string(r));
        CHECK(seen.count(r) == 1);
    }
}
