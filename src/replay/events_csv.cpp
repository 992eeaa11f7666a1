// The events CSV: an order lifecycle (requests and execution reports) for `kakunin replay
// --events` (docs/cli.md).
#include <fstream>
#include <istream>
#include <unordered_map>

#include "kakunin/error.hpp"
#include "kakunin/replay.hpp"
#include "replay/csv_table.hpp"

namespace kakunin {
namespace {

struct TypeName {
    const char* name;
    EventType type;
};

constexpr TypeName type_names[] = {
    {"new", EventType::new_order},       {"amend", EventType::amend},
    {"cancel", EventType::cancel},       {"ack", EventType::ack},
    {"reject", EventType::reject},       {"fill", EventType::fill},
    {"cancelled", EventType::cancelled}, {"expired", EventType::expired},
    {"mark", EventType::mark},
};

constexpr const char* type_list = "new, amend, cancel, ack, reject, fill, cancelled, expired, mark";

ExecutionType execution_type(EventType t) noexcept {
    switch (t) {
        case EventType::ack: return ExecutionType::ack;
        case EventType::reject: return ExecutionType::reject;
        case EventType::fill: return ExecutionType::fill;
        case EventType::cancelled: return ExecutionType::cancelled;
        case EventType::expired: return ExecutionType::expired;
        case EventType::mark: return ExecutionType::mark;
        default: break;
    }
    return ExecutionType::ack;  // requests have no report; report() is not called for them
}

}  // namespace

const char* to_string(EventType t) noexcept {
    for (const TypeName& n : type_names)
        if (n.type == t) return n.name;
    return "unknown";
}

Order ReplayEvent::order() const {
    Order o;
    o.client_order_id = order_id;
    o.instrument = instrument;
    o.counterparty = counterparty;
    o.side = side.value_or(Side::buy);
    o.quantity = quantity.value_or(Decimal{});
    o.price = price.value_or(Decimal{});
    o.region = region;
    o.reference_price = reference_price;
    o.reasoning = reasoning;
    return o;
}

Amend ReplayEvent::amend() const { return Amend{order_id, quantity, price, reference_price}; }

Cancel ReplayEvent::cancel() const { return Cancel{order_id}; }

ExecutionReport ReplayEvent::report() const {
    ExecutionReport r;
    r.type = execution_type(type);
    r.client_order_id = order_id;
    r.instrument = instrument;
    r.side = side.value_or(Side::buy);
    r.quantity = quantity.value_or(Decimal{});
    r.price = price.value_or(Decimal{});
    return r;
}

std::vector<ReplayEvent> read_events_csv(std::istream& in, const std::string& name) {
    enum Column : std::size_t {
        ts,
        type,
        order_id,
        instrument,
        counterparty,
        side,
        quantity,
        price,
        region,
        reference_price,
        reasoning,
    };
    csv::Table table(in, name,
                     {{"ts", true},
                      {"type", true},
                      {"order_id", true},
                      {"instrument", true},
                      {"counterparty", true},
                      {"side", true},
                      {"quantity", true},
                      {"price", true},
                      {"region", true},
                      {"reference_price", false},
                      {"reasoning", false}},
                     "ts,type,order_id,instrument,counterparty,side,quantity,price,region");
    std::vector<ReplayEvent> events;
    // The latest new row of each id: the working order a later row about the id refers to.
    std::unordered_map<std::string, std::size_t> placed;
    while (table.next()) {
        ReplayEvent e;
        e.line = table.line();
        e.ts_ns = table.timestamp_in_order(ts);
        const std::string& type_text = table.text(type);
        const TypeName* t = nullptr;
        for (const TypeName& n : type_names)
            if (type_text == n.name) t = &n;
        if (t == nullptr)
            table.fail(type, type_text.empty() ? std::string("empty (one of ") + type_list + ")"
                                               : "'" + type_text + "' is not one of " + type_list);
        e.type = t->type;
        const char* what = t->name;
        const char* article = (what[0] == 'a' || what[0] == 'e') ? "an " : "a ";
        e.order_id = table.text(order_id);
        e.instrument = table.text(instrument);
        e.counterparty = table.text(counterparty);
        e.region = table.text(region);
        e.reasoning = table.text(reasoning);
        // Every cell that is given must be well formed, whatever the type reads.
        e.side = table.optional_side(side);
        e.quantity = table.optional_decimal(quantity);
        e.price = table.optional_decimal(price);
        e.reference_price = table.optional_decimal(reference_price);

        auto needed = [&](Column c, const char* why) {
            if (table.text(c).empty())
                table.fail(c, std::string("empty: ") + article + what + " row needs " + why);
        };
        auto positive = [&](Column c, const std::optional<Decimal>& d) {
            if (d && !d->is_positive())
                table.fail(c, "'" + table.text(c) + "' is not positive: a " + what +
                                  " row needs more than zero");
        };
        if (e.type != EventType::mark) needed(order_id, "the order's id");
        switch (e.type) {
            case EventType::new_order:
                needed(instrument, "the instrument");
                needed(side, "BUY or SELL");
                needed(quantity, "the quantity");
                needed(price, "the price");
                break;
            case EventType::amend:
                if (!e.quantity && !e.price)
                    table.fail(quantity,
                               "empty, and so is price: an amend row needs the new quantity, the "
                               "new price or both");
                break;
            case EventType::fill:
                needed(quantity, "the fill's quantity");
                needed(price, "the fill's price");
                positive(quantity, e.quantity);
                positive(price, e.price);
                break;
            case EventType::mark:
                needed(instrument, "the instrument");
                needed(price, "the mark price");
                positive(price, e.price);
                break;
            default: break;
        }

        if (e.type != EventType::new_order && e.type != EventType::mark) {
            // The working order fills in what the row leaves empty; a row that says otherwise
            // than the order is refused rather than guessed at.
            const auto p = placed.find(e.order_id);
            if (p != placed.end()) {
                const ReplayEvent& o = events[p->second];
                auto inherit = [&](Column c, std::string& value, const std::string& of_order) {
                    if (value.empty())
                        value = of_order;
                    else if (value != of_order)
                        table.fail(c, "'" + value + "' but order '" + e.order_id + "' (line " +
                                          std::to_string(o.line) + ") has '" + of_order + "'");
                };
                inherit(instrument, e.instrument, o.instrument);
                inherit(counterparty, e.counterparty, o.counterparty);
                inherit(region, e.region, o.region);
                if (!e.side)
                    e.side = o.side;
                else if (*e.side != *o.side)
                    table.fail(side, "'" + table.text(side) + "' but order '" + e.order_id +
                                         "' (line " + std::to_string(o.line) + ") is a " +
                                         to_string(*o.side));
            } else if (e.type == EventType::fill) {
                // A fill of an order the file never placed still moves a position: it must
                // say which, and on which side.
                if (e.instrument.empty())
                    table.fail(instrument, "empty: a fill of order '" + e.order_id +
                                               "', which no earlier new row placed, needs the "
                                               "instrument");
                if (!e.side)
                    table.fail(side, "empty: a fill of order '" + e.order_id +
                                         "', which no earlier new row placed, needs BUY or SELL");
            }
        }
        if (e.type == EventType::new_order) placed[e.order_id] = events.size();
        events.push_back(std::move(e));
    }
    return events;
}

std::vector<ReplayEvent> load_events_csv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, path + ": cannot open events file");
    return read_events_csv(in, path);
}

}  // namespace kakunin
