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
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/guard.hpp"
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

/// Requests of one type: how many the Guard allowed (with or without a warning), how many it
/// rejected.
struct RequestCounts {
    std::uint64_t allowed = 0;
    std::uint64_t rejected = 0;
};

/// Execution reports: how many changed the Guard's state, how many named an id that was not
/// working, and the problems the Guard saw (its static text -> reports).
struct ReportCounts {
    std::uint64_t received = 0;
    std::uint64_t applied = 0;
    std::uint64_t unknown = 0;
    std::map<std::string, std::uint64_t> problems;
};

struct EventReplaySummary {
    /// Every request's decision (new, amend and cancel alike), counted as orders are counted.
    ReplaySummary decisions;
    RequestCounts new_orders, amends, cancels;
    ReportCounts reports;
    /// With EventReplayOptions::halt_at: when the kill switch was pulled.
    std::optional<TimeNs> halted_at_ns;
    /// The ids the Guard's on_cancel_all callback received (every halt during the replay, in
    /// the order they came).
    std::vector<std::string> cancel_on_halt;
    /// The Guard's state after the last row (and the halt).
    LifecycleState state;
};

struct EventReplayOptions {
    /// As ReplayOptions: a new order, or an amend's new price, without reference_price takes
    /// the latest price seen for the instrument (a new order's or amend's price, a fill's, a
    /// mark). Without one, a scope with a price collar rejects it (reference_price_missing).
    bool reference_from_previous_price = true;
    /// Pull the kill switch (Guard::halt("replay --halt-at", "replay")) when the clock reaches
    /// this time: before the first row at or after it, or after the last row.
    std::optional<TimeNs> halt_at;
    /// Working orders tracked when the scope sets no max_open_orders (GuardOptions).
    std::size_t working_order_capacity = default_working_order_capacity;
};

/// Called for each request with the Guard's decision; reports are not decisions.
using EventCallback = std::function<void(const ReplayEvent&, const Decision&)>;

/// Drives a Guard through events on a manual clock: the clock is set to each row's time and the
/// row goes to check(), amend(), cancel() or on_execution(). replay_events() builds the Guard
/// from a scope; a caller that builds its own (on a certificate) uses this directly:
///
///   kakunin::EventReplay replay(options, on_decision);
///   replay.attach(guard_options);                  // before the Guard is built
///   kakunin::Guard guard(credentials, clock, guard_options);
///   replay.run(guard, clock, events.begin(), events.end());
///   replay.finish(guard, clock);
///
/// Not thread-safe; neither copied nor moved (the Guard's callback refers to it).
class EventReplay {
public:
    using Iterator = std::vector<ReplayEvent>::const_iterator;

    explicit EventReplay(EventReplayOptions options = {}, EventCallback on_decision = {});
    EventReplay(const EventReplay&) = delete;
    EventReplay& operator=(const EventReplay&) = delete;

    /// Sets up the options the Guard will be built with: lifecycle tracking (the working-order
    /// capacity, unless already set) and on_cancel_all (a callback already there is still
    /// called). The EventReplay must outlive the Guard.
    void attach(GuardOptions& options);
    /// The rows [begin, end), in order; may be called for consecutive ranges.
    void run(Guard& guard, ManualClock& clock, Iterator begin, Iterator end);
    /// After the last row: the halt if halt_at has not come yet, then the final state.
    void finish(Guard& guard, ManualClock& clock);
    /// What the replay saw so far (read it when the Guard is idle: after run() or finish()).
    const EventReplaySummary& summary() const noexcept { return m_summary; }

    /// Called before each request is decided, and after each row (the command line waits for
    /// its audit writer there, and handles incidents on simulated time).
    std::function<void()> before_request, after_row;

private:
    void halt(Guard& guard, ManualClock& clock);

    EventReplayOptions m_options;
    EventCallback m_on_decision;
    EventReplaySummary m_summary;
    std::mutex m_cancel_mutex;  ///< cancel_on_halt: on_cancel_all may come from another thread
    std::map<std::string, Decimal, std::less<>> m_last_price;
    bool m_halted = false;
};

/// Runs every event through a Guard built from `scope` (limits alone, lifecycle tracked) on a
/// manual clock set to each row's time.
EventReplaySummary replay_events(const Scope& scope, const std::vector<ReplayEvent>& events,
                                 const EventCallback& on_decision = {},
                                 EventReplayOptions options = {});

/// decision_json() of a request with its "type" ("new", "amend", "cancel") and "order_id": one
/// line of --decisions-out with --events.
std::string event_decision_json(const ReplayEvent& e, const Decision& d);

/// The --json summary of an events replay: summary_json() of every request's decision, plus
/// "requests" ({"new"|"amend"|"cancel": {"allowed", "rejected"}}), "reports" ({"received",
/// "applied", "unknown", "problems"}), with halt_at "halted_at_ns", and with halt_at or when any
/// halt cancelled orders "cancel_on_halt".
std::string event_summary_json(const EventReplaySummary& s);

/// The --state-out document: {"positions": {instrument: "decimal"}, "working_orders": [ids],
/// "daily": {"filled_today", "working_notional", "daily_pnl", "reduce_only"}}.
std::string lifecycle_state_json(const LifecycleState& state);

/// {"line":N,"ts_ns":...,"decision":"allow|warn|reject","reasons":[...],"score_ppm":...,
///  "components_ppm":{...}} — one line of --decisions-out.
std::string decision_json(std::size_t line, const Decision& d);

/// The --json summary of DESIGN §6.
std::string summary_json(const ReplaySummary& s);

/// Names of the score components, in Decision::components_ppm order.
const char* component_name(std::size_t i) noexcept;

}  // namespace kakunin
