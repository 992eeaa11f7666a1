// The orders CSV of DESIGN §6.
#include <fstream>
#include <istream>

#include "kakunin/error.hpp"
#include "kakunin/replay.hpp"
#include "replay/csv_table.hpp"

namespace kakunin {

std::vector<ReplayOrder> read_orders_csv(std::istream& in, const std::string& name) {
    enum Column : std::size_t {
        ts,
        instrument,
        counterparty,
        side,
        quantity,
        price,
        region,
        reference_price,
        client_order_id,
        reasoning,
    };
    csv::Table table(in, name,
                     {{"ts", true},
                      {"instrument", true},
                      {"counterparty", true},
                      {"side", true},
                      {"quantity", true},
                      {"price", true},
                      {"region", true},
                      {"reference_price", false},
                      {"client_order_id", false},
                      {"reasoning", false}},
                     "ts,instrument,counterparty,side,quantity,price,region");
    std::vector<ReplayOrder> orders;
    while (table.next()) {
        ReplayOrder o;
        o.line = table.line();
        o.ts_ns = table.timestamp_in_order(ts);
        o.instrument = table.text(instrument);
        o.counterparty = table.text(counterparty);
        o.region = table.text(region);
        if (o.instrument.empty()) table.fail(instrument, "empty");
        o.side = table.side(side);
        o.quantity = table.decimal(quantity);
        o.price = table.decimal(price);
        o.reference_price = table.optional_decimal(reference_price);
        o.client_order_id = table.text(client_order_id);
        o.reasoning = table.text(reasoning);
        orders.push_back(std::move(o));
    }
    return orders;
}

std::vector<ReplayOrder> load_orders_csv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, path + ": cannot open orders file");
    return read_orders_csv(in, path);
}

}  // namespace kakunin
