// A market maker under the Guard's order lifecycle (docs/lifecycle.md), on simulated time:
//   1. it quotes a bid and an ask around a drifting mid, amends them as the mid moves and
//      cancels the stale ones; a toy venue acknowledges, fills (partly) and confirms cancels,
//      and every report goes back to the Guard;
//   2. the mid trends down, the bids keep filling, and the position limit holds: buys that
//      would take the worst-case long position past max_position are refused, sells pass;
//   3. the desk pulls the kill switch: the Guard hands every working order's id to the cancel
//      callback, the venue cancels them, and nothing is working any more.
//
//   kakunin_demo_market_maker
#include <kakunin/guard.hpp>
#include <kakunin/lifecycle.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

using namespace kakunin;

namespace {

constexpr TimeNs ms = 1'000'000;

const char* const k_scope = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "100000.00"},
  "instruments": ["BTC_EUR"],
  "counterparties": ["exchange_a"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "07:00", "to": "20:00"}],
  "regions": ["eu-west-1"],
  "limits": {
    "max_order_quantity": {"BTC_EUR": "0.5"},
    "max_position": {"BTC_EUR": {"long": "1.0", "short": "1.0"}},
    "max_open_orders": 6,
    "max_working_notional": {"currency": "EUR", "amount": "120000.00"},
    "max_messages_per_second": 40,
    "max_daily_loss": {"currency": "EUR", "amount": "5000.00"},
    "max_daily_notional": {"currency": "EUR", "amount": "2000000.00"}
  }
})";

/// The venue: resting orders, filled when the mid crosses them, 0.1 BTC at a time.
struct Venue {
    struct Resting {
        Side side;
        Decimal quantity, price;  // remaining
    };
    std::map<std::string, Resting> book;
    std::vector<std::string> cancels_requested;
};

Decimal price_of(long cents) { return Decimal{cents, 2}; }

std::string text(const Decision& d) {
    std::string s = to_string(d.verdict);
    for (ReasonCode r : d.reasons) s += std::string(" [") + to_string(r) + "]";
    return s;
}

}  // namespace

int main() {
    ManualClock clock(utc(2024, 1, 8, 9, 0, 0));  // a Monday morning
    Venue venue;
    std::vector<CancelAll> cancel_lists;
    GuardOptions options;
    options.observe = false;
    options.incident_thread = false;
    options.on_cancel_all = [&](const CancelAll& c) {  // the kill switch's hand-off
        cancel_lists.push_back(c);
        for (const std::string& id : c.order_ids) venue.cancels_requested.push_back(id);
    };
    Guard guard(parse_scope_json(k_scope), clock, options);
    guard.set_error_handler([](std::string_view m) {
        std::printf("  (error handler) %.*s\n", static_cast<int>(m.size()), m.data());
    });

    std::map<std::string, int> tally;
    int refused_for_position = 0;
    long mid = 4'000'000;  // 40,000.00 EUR
    int n = 0;
    std::string bid, ask;  // the ids of the current quotes
    auto report = [&](ExecutionType type, const std::string& id, Decimal q = {}, Decimal p = {}) {
        ExecutionReport e;
        e.type = type;
        e.client_order_id = id;
        e.quantity = q;
        e.price = p;
        guard.on_execution(e);
        ++tally[std::string("report ") + to_string(type)];
    };
    auto quote = [&](Side side, long cents) {
        Order o;
        const std::string id = "mm-" + std::to_string(++n);
        o.client_order_id = id;
        o.instrument = "BTC_EUR";
        o.counterparty = "exchange_a";
        o.region = "eu-west-1";
        o.side = side;
        o.quantity = Decimal{3, 1};  // 0.3 BTC
        o.price = price_of(cents);
        const Decision d = guard.check(o);
        ++tally[std::string("new ") + to_string(d.verdict)];
        if (!d.allowed() && !d.reasons.contains(ReasonCode::max_position_exceeded) &&
            tally["new reject"] <= 2)
            std::printf("  %s: %s\n", id.c_str(), text(d).c_str());
        if (d.reasons.contains(ReasonCode::max_position_exceeded)) {
            if (refused_for_position++ < 3)
                std::printf("  %s %s 0.3 @ %.2f: %s (position %s)\n", id.c_str(), to_string(side),
                            cents / 100.0, text(d).c_str(),
                            guard.lifecycle_state().positions[0].position.c_str());
        }
        if (!d.allowed()) return std::string();
        venue.book[id] = {side, o.quantity, o.price};
        report(ExecutionType::ack, id);
        return id;
    };
    auto requote = [&](std::string& id, Side side, long cents) {
        if (!id.empty() && venue.book.count(id)) {
            const Decision d = guard.amend({id, std::nullopt, price_of(cents)});
            ++tally[std::string("amend ") + to_string(d.verdict)];
            if (!d.allowed() && tally["amend reject"] <= 2)
                std::printf("  amend %s: %s\n", id.c_str(), text(d).c_str());
            if (d.allowed()) {
                venue.book[id].price = price_of(cents);
                report(ExecutionType::ack, id);
                return;
            }
            guard.cancel({id});  // cannot move it: take it off
            ++tally["cancel request"];
            venue.book.erase(id);
            report(ExecutionType::cancelled, id);
        }
        id = quote(side, cents);
    };

    std::printf("1-2. quoting 0.3 BTC each side for 10 simulated minutes, the mid drifting down\n");
    for (int step = 0; step < 1200; ++step) {
        clock.advance(std::chrono::milliseconds(500));
        guard.heartbeat();
        mid += (step % 7 == 0 ? 900 : -400) + (step % 3 == 0 ? -300 : 200);  // down ~1.4 EUR/step
        // The venue fills what the new mid crossed, 0.1 BTC of each order per step.
        for (auto it = venue.book.begin(); it != venue.book.end();) {
            Venue::Resting& r = it->second;
            const bool crossed =  // prices are in cents (scale 2), as the mid
                r.side == Side::buy ? r.price.units >= mid : r.price.units <= mid;
            if (!crossed) {
                ++it;
                continue;
            }
            report(ExecutionType::fill, it->first, Decimal{1, 1}, r.price);
            r.quantity = Decimal{r.quantity.units - 1, 1};
            it = r.quantity.units == 0 ? venue.book.erase(it) : std::next(it);
        }
        if (!venue.book.count(bid)) bid.clear();
        if (!venue.book.count(ask)) ask.clear();
        requote(bid, Side::buy, mid - 100);
        requote(ask, Side::sell, mid + 100);
    }
    const LifecycleState state = guard.lifecycle_state();
    for (const auto& [k, v] : tally) std::printf("  %-22s %d\n", k.c_str(), v);
    std::printf("  position BTC_EUR %s (limit long 1.0): %d buys refused for it\n",
                state.positions[0].position.c_str(), refused_for_position);
    std::printf("  working orders %zu, working notional %s EUR, filled today %s EUR, P&L %s EUR\n",
                state.working_orders.size(), state.working_notional.c_str(),
                state.filled_today.c_str(), state.daily_pnl.c_str());

    std::printf("\n3. two more asks rest further out; then the desk pulls the kill switch\n");
    clock.advance(std::chrono::milliseconds(500));
    quote(Side::sell, mid + 500);
    quote(Side::sell, mid + 1000);
    const std::string halt_id = guard.halt("end of the demo", "J. Roe (desk head)");
    for (const CancelAll& c : cancel_lists) {
        std::printf("  halt %s by %s: cancel callback got %zu working ids:", c.halt_id.c_str(),
                    c.by.c_str(), c.order_ids.size());
        for (const auto& id : c.order_ids) std::printf(" %s", id.c_str());
        std::printf("\n");
    }
    for (const std::string& id : venue.cancels_requested) {
        const Decision d = guard.cancel({id});  // a cancel passes a halt
        std::printf("  cancel %s: %s\n", id.c_str(), text(d).c_str());
        venue.book.erase(id);
        report(ExecutionType::cancelled, id);
    }
    Order more;
    more.client_order_id = "after-halt";
    more.instrument = "BTC_EUR";
    more.counterparty = "exchange_a";
    more.region = "eu-west-1";
    more.quantity = Decimal{1, 1};
    more.price = price_of(mid);
    std::printf("  a new order after the halt: %s\n", text(guard.check(more)).c_str());
    std::printf("  working orders now: %zu\n", guard.working_orders().size());
    const bool ok = refused_for_position > 0 && !cancel_lists.empty() &&
                    !cancel_lists[0].order_ids.empty() && guard.working_orders().empty() &&
                    cancel_lists[0].halt_id == halt_id;
    if (!ok) std::fprintf(stderr, "the demo did not show what it should\n");
    return ok ? 0 : 1;
}
