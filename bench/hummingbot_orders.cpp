// kakunin_hummingbot_orders --data DIR --out orders.csv [--from TS] [--to TS]
//
// Converts the Hummingbot trade exports under DIR (e.g. ../shared/data/hummingbot-edg-mm) into
// the orders CSV of DESIGN §6, for `kakunin replay`: one order per exchange order id, EUR
// instruments at fixed rates (bench/hummingbot_orders.hpp), counterparty "kucoin", region
// "eu-west-1", rows merged in time order. --from/--to (RFC 3339 UTC or epoch ms) keep the orders
// in [from, to).
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>

#include "hummingbot_orders.hpp"

namespace {

int usage() {
    std::cerr
        << "usage: kakunin_hummingbot_orders --data DIR --out orders.csv [--from TS] [--to TS]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kakunin;
    std::string data, out;
    std::optional<TimeNs> from, to;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (i + 1 >= argc) return usage();
            const std::string v = argv[++i];
            if (a == "--data")
                data = v;
            else if (a == "--out")
                out = v;
            else if (a == "--from")
                from = parse_timestamp(v);
            else if (a == "--to")
                to = parse_timestamp(v);
            else
                return usage();
        }
        if (data.empty() || out.empty()) return usage();
        const auto fills = evaluation::read_hummingbot_dir(data);
        auto orders = evaluation::orders_from_fills(fills);
        std::vector<evaluation::OrderRow> kept;
        for (auto& o : orders)
            if ((!from || o.ts_ns >= *from) && (!to || o.ts_ns < *to)) kept.push_back(std::move(o));
        std::ofstream f(out, std::ios::binary | std::ios::trunc);
        f << evaluation::orders_csv(kept);
        f.flush();
        if (!f) throw Error(ErrorCategory::io, out + ": write failed");
        std::cerr << fills.size() << " fills -> " << orders.size() << " orders, " << kept.size()
                  << " written to " << out << "\n";
        for (const auto& m : evaluation::default_mappings())
            std::cerr << "  " << m.symbol << " -> " << m.instrument << " at " << m.eur_rate
                      << " EUR per quote unit (" << m.source << ")\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "kakunin_hummingbot_orders: " << e.what() << "\n";
        return 1;
    }
}
