// kakunin/replay.hpp — orders from a CSV file, replayed through a Guard on simulated time:
// "what would this scope have done to these orders?" (DESIGN §6).
//
//   auto orders = kakunin::load_orders_csv("orders.csv");     // throws, naming the line
//   kakunin::ReplaySummary s = kakunin::replay_scope(scope, orders,
//       [](const kakunin::ReplayOrder& o, const kakunin::Decision& d) { ... });
//
// An order lifecycle (requests and execution reports) replays the same way:
//   auto events = kakunin::load_events_csv("events.csv");
//   kakunin::EventReplaySummary s = kakunin::replay_events(scope, events);
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/lifecycle.hpp"
#include "kakunin/order.hpp"
#include "kakunin/scope.hpp"

namespace kakunin {

/// One CSV row, owning its text; view() gives the Order the Guard checks.
struct ReplayOrder {
    std::size_t line = 0;  ///< 1-based line in the file (the header is line 1)
    TimeNs ts_ns = 0;
    std::string client_order_id, instrument, counterparty, region, reasoning;
    Side side = Side::buy;
    Decimal quantity, price;
    std::optional<Decimal> reference_price;

    Order view() const {
        Order o;
        o.client_order_id = client_order_id;
        o.instrument = instrument;
        o.counterparty = counterparty;
        o.side = side;
        o.quantity = quantity;
        o.price = price;
        o.region = region;
        o.reference_price = reference_price;
        o.reasoning = reasoning;
        return o;
    }
};

/// RFC 3339 in UTC ("2024-01-08T07:00:00Z", fractions and "+00:00" allowed) or whole epoch
/// milliseconds ("1704697200000"), from 1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z
/// (what TimeNs holds). The one parser of timestamps: the orders CSV and every command-line time
/// option. Throws kakunin::Error (invalid_input) quoting the text and saying what is wrong; out
/// of range is an error, never a wrapped time.
TimeNs parse_timestamp(std::string_view text);

/// "2024-01-08T07:00:00.000000001Z"-style UTC text (fraction only when non-zero).
std::string format_timestamp(TimeNs t);

/// Reads the orders CSV of DESIGN §6: header with ts,instrument,counterparty,side,quantity,price,
/// region (any order), optional columns reference_price, client_order_id, reasoning; RFC 4180
/// quoting; rows in time order. Throws kakunin::Error naming "<name>:<line>: <problem>".
std::vector<ReplayOrder> read_orders_csv(std::istream& in, const std::string& name);
std::vector<ReplayOrder> load_orders_csv(const std::string& path);

/// The rows of the events CSV: the agent's requests (each decided by the Guard) and the venue's
/// execution reports (each applied), docs/cli.md.
enum class EventType : std::uint8_t {
    new_order,  ///< "new"
    amend,
    cancel,
    ack,
    reject,
    fill,
    cancelled,
    expired,
    mark,
};

/// The CSV's name of the type: "new", "amend", ... "mark".
const char* to_string(EventType t) noexcept;
/// new, amend and cancel: decided; the others are reports, applied.
constexpr bool is_request(EventType t) noexcept { return t <= EventType::cancel; }

/// One row of the events CSV, owning its text. The views (order(), amend(), cancel(), report())
/// borrow it. Rows about an order the file placed earlier (its latest `new` row) carry that
/// order's instrument, counterparty, region and side where the row leaves them empty.
struct ReplayEvent {
    std::size_t line = 0;  ///< 1-based line in the file (the header is line 1)
    TimeNs ts_ns = 0;
    EventType type = EventType::new_order;
    std::string order_id, instrument, counterparty, region, reasoning;
    std::optional<Side> side;                ///< new; fill (from the order when not given)
    std::optional<Decimal> quantity, price;  ///< new: both; amend: either (new values);
                                             ///< fill: the fill's; mark: price
    std::optional<Decimal> reference_price;

    Order order() const;             ///< a new row as the Order checked
    Amend amend() const;             ///< an amend row
    Cancel cancel() const;           ///< a cancel row
    ExecutionReport report() const;  ///< a report row
};

/// Reads the events CSV: header ts,type,order_id,instrument,counterparty,side,quantity,price,region
/// (any order), optional columns reference_price, reasoning; cells as the orders CSV reads them;
/// rows in time order. Throws kakunin::Error naming "<name>:<line>: <column>: <problem>".
std::vector<ReplayEvent> read_events_csv(std::istream& in, const std::string& name);
std::vector<ReplayEvent> load_events_csv(const std::string& path);

struct ReplaySummary {
    std::uint64_t orders = 0;
    std::uint64_t allowed = 0;                      ///< allowed, with or without a warning
    std::uint64_t warned_orders = 0;                ///< allowed with a warning
    std::map<std::string, std::uint64_t> rejected;  ///< reason -> orders rejected with it
    std::uint64_t rejected_orders = 0;
    std::uint64_t warnings = 0;  ///< warning incidents opened
    std::uint64_t revocations = 0;
    std::optional<TimeNs> first_revocation_ts_ns;
    std::uint32_t max_score_ppm = 0;

    void add(const Decision& d);
};

struct ReplayOptions {
    /// When a row has no reference_price, use the previous row's price for the same instrument
    /// (the last price the agent saw). The first row of an instrument then has none, and a scope
    /// with a price collar rejects it with reference_price_missing (fail closed).
    bool reference_from_previous_price = true;
};

using ReplayCallback = std::function<void(const ReplayOrder&, const Decision&)>;

/// Runs every order through a Guard built from `scope` on a manual clock set to each row's time.
ReplaySummary replay_scope(const Scope& scope, const std::vector<ReplayOrder>& orders,
                           const ReplayCallback& on_decision = {}, ReplayOptions options = {});

/// {"line":N,"ts_ns":...,"decision":"allow|warn|reject","reasons":[...],"score_ppm":...,
///  "components_ppm":{...}} — one line of --decisions-out.
std::string decision_json(std::size_t line, const Decision& d);

/// The --json summary of DESIGN §6.
std::string summary_json(const ReplaySummary& s);

/// Names of the score components, in Decision::components_ppm order.
const char* component_name(std::size_t i) noexcept;

}  // namespace kakunin
