// bench/hummingbot_orders.hpp — a real market-making bot's fills as Kakunin orders.
//
// The evaluation data (../shared/data/hummingbot-edg-mm, never copied into the repository) are
// the trade exports of a Hummingbot `pure_market_making` bot on KuCoin: gzip CSVs, one row per
// fill, columns exchange_trade_id, config_file_path, strategy, market, symbol, base_asset,
// quote_asset, timestamp (ms), order_id, trade_type, order_type, price, amount, ... This header
// turns them into the orders CSV of DESIGN §6 (ts,instrument,counterparty,side,quantity,price,
// region):
//
//   auto fills = kakunin::evaluation::read_hummingbot_dir(data_dir);   // throws, naming the line
//   auto orders = kakunin::evaluation::orders_from_fills(fills);       // EUR instruments
//   std::string csv = kakunin::evaluation::orders_csv(orders);
//
// Used by bench/hummingbot_orders.cpp (the converter), bench/evaluate.cpp and
// tests/test_evaluation.cpp. Header-only, so that a test can include it without a library.
#pragma once

#include <botan/compression.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/decimal.hpp"
#include "kakunin/error.hpp"
#include "kakunin/order.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::evaluation {

/// How one Hummingbot trading pair becomes a EUR instrument: prices are multiplied by a fixed
/// rate (EUR per unit of the pair's quote asset), exactly.
struct PairMapping {
    std::string symbol;      ///< Hummingbot's trading pair, e.g. "EDG-USDT"
    std::string instrument;  ///< Kakunin instrument, BASE_QUOTE with quote EUR
    std::string eur_rate;    ///< EUR per unit of the quote asset (decimal string)
    std::string source;      ///< where the rate comes from, with its date
};

/// The two pairs of the data set. Both rates are those of 21 November 2022, the first day on
/// which the bot ran both pairs (see docs/anomaly-scoring.md, "Evaluation data"):
/// - USD/EUR 0.9763 (EUR/USD 1.0243 at the 5 p.m. New York close, Dow Jones Market Data), with
///   USDT taken at par with the US dollar;
/// - BTC/USD about 15,800 (CoinDesk market wrap, 21 Nov 2022), so BTC/EUR 15,800 x 0.9763 =
///   15,425.5, rounded to 15,425.
inline std::vector<PairMapping> default_mappings() {
    return {
        {"EDG-USDT", "EDG_EUR", "0.9763",
         "USDT at par with USD; EUR/USD 1.0243 on 2022-11-21 (Dow Jones Market Data)"},
        {"EDG-BTC", "EDGBTC_EUR", "15425",
         "BTC/USD ~15,800 on 2022-11-21 (CoinDesk) x 0.9763 USD/EUR"},
    };
}

/// The counterparty and signing region every converted order carries: the data name the venue
/// and nothing about where the bot ran, so one region stands for its one signing location.
inline constexpr const char* default_counterparty = "kucoin";
inline constexpr const char* default_region = "eu-west-1";

/// One fill of the trade export.
struct Fill {
    std::string file;  ///< for error messages
    std::size_t line = 0;
    TimeNs ts_ns = 0;
    std::string symbol, order_id;
    Side side = Side::buy;
    Decimal price, amount;
};

/// One row of the orders CSV (DESIGN §6), plus the optional client_order_id column.
struct OrderRow {
    TimeNs ts_ns = 0;
    std::string instrument;
    std::string counterparty = default_counterparty;
    Side side = Side::buy;
    Decimal quantity, price;
    std::string region = default_region;
    std::string client_order_id;
};

namespace detail {

[[noreturn]] inline void bad_row(const std::string& where, const std::string& why) {
    throw Error(ErrorCategory::invalid_input, where + ": " + why);
}

/// Splits one CSV record (RFC 4180 quoting: "a, b" and "" inside quotes).
inline std::vector<std::string> split_csv(std::string_view line, const std::string& where) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                out.back() += '"';
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                out.back() += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            out.emplace_back();
        } else if (c != '\r') {
            out.back() += c;
        }
    }
    if (quoted) bad_row(where, "unterminated quoted field");
    return out;
}

/// a + b, exactly (common scale); throws when the sum does not fit a Decimal.
inline Decimal add(Decimal a, Decimal b, const std::string& where) {
    const unsigned scale = std::max(a.scale, b.scale);
    int128 x, y;
    if (!kakunin::detail::mul_pow10(a.units, scale - a.scale, x) ||
        !kakunin::detail::mul_pow10(b.units, scale - b.scale, y))
        bad_row(where, "sum out of range");
    const int128 s = x + y;
    if (s > INT64_MAX || s < INT64_MIN) bad_row(where, "sum out of range");
    return Decimal{static_cast<std::int64_t>(s), static_cast<std::uint8_t>(scale)};
}

/// The same value without trailing fractional zeros ("285714.0000" -> "285714").
inline Decimal trimmed(Decimal d) {
    while (d.scale > 0 && d.units % 10 == 0) {
        d.units /= 10;
        --d.scale;
    }
    return d;
}

/// The exact product as a Decimal with trailing zeros dropped; throws when it does not fit.
inline Decimal product(Decimal a, Decimal b, const std::string& where) {
    Wide w = multiply(a, b);
    while (w.scale > 0 && w.units % 10 == 0) {
        w.units /= 10;
        --w.scale;
    }
    if (w.scale > Decimal::max_scale || w.units > INT64_MAX || w.units < INT64_MIN)
        bad_row(where, "product " + to_string(w) + " does not fit a decimal of 18 digits");
    return Decimal{static_cast<std::int64_t>(w.units), static_cast<std::uint8_t>(w.scale)};
}

}  // namespace detail

/// "3E-8" -> "0.00000003", "2.99E-8" -> "0.0000000299", "1.5e+3" -> "1500", "0.0700" ->
/// "0.07": the exact value as a plain decimal string (no rounding). Throws kakunin::Error
/// (invalid_input) on anything that is not a non-negative decimal in plain or E notation.
inline std::string scientific_to_decimal(std::string_view text) {
    const std::string quoted = "'" + std::string(text) + "'";
    std::size_t i = 0;
    std::string digits;  // mantissa digits, without the point
    int fraction = 0;    // digits after the point
    bool point = false;
    for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
        const char c = text[i];
        if (c >= '0' && c <= '9') {
            digits += c;
            if (point) ++fraction;
        } else if (c == '.' && !point) {
            point = true;
        } else {
            throw Error(ErrorCategory::invalid_input, "not a decimal number: " + quoted);
        }
    }
    if (digits.empty())
        throw Error(ErrorCategory::invalid_input, "not a decimal number: " + quoted);
    long exponent = 0;
    if (i < text.size()) {
        ++i;  // the 'E'
        bool negative = false;
        if (i < text.size() && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
        if (i == text.size())
            throw Error(ErrorCategory::invalid_input, "exponent missing in " + quoted);
        for (; i < text.size(); ++i) {
            if (text[i] < '0' || text[i] > '9' || exponent > 1000)
                throw Error(ErrorCategory::invalid_input, "bad exponent in " + quoted);
            exponent = exponent * 10 + (text[i] - '0');
        }
        if (negative) exponent = -exponent;
    }
    // value = digits x 10^(exponent - fraction)
    const long shift = exponent - fraction;
    std::string integer, frac;
    if (shift >= 0) {
        integer = digits + std::string(static_cast<std::size_t>(shift), '0');
    } else {
        const auto k = static_cast<std::size_t>(-shift);
        if (k >= digits.size()) {
            integer = "0";
            frac = std::string(k - digits.size(), '0') + digits;
        } else {
            integer = digits.substr(0, digits.size() - k);
            frac = digits.substr(digits.size() - k);
        }
    }
    integer.erase(0, std::min(integer.find_first_not_of('0'), integer.size() - 1));
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    return frac.empty() ? integer : integer + "." + frac;
}

/// The bytes of a gzip file (Botan's zlib-based decompressor). Throws kakunin::Error (io).
inline std::string gunzip_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, path + ": cannot read");
    std::stringstream s;
    s << in.rdbuf();
    const std::string packed = s.str();
    try {
        std::unique_ptr<Botan::Decompression_Algorithm> d(Botan::make_decompressor("gzip"));
        if (!d) throw Error(ErrorCategory::io, "this Botan has no gzip decompression");
        Botan::secure_vector<std::uint8_t> buf(packed.begin(), packed.end());
        d->start();
        d->finish(buf);
        return std::string(buf.begin(), buf.end());
    } catch (const Botan::Exception& e) {
        throw Error(ErrorCategory::io, path + ": not a valid gzip file: " + e.what());
    }
}

/// Parses a Hummingbot trade export (its text). Throws kakunin::Error (invalid_input) naming
/// "<name>:<line>: <problem>".
inline std::vector<Fill> parse_hummingbot_trades(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    std::string line;
    std::size_t n = 1;
    if (!std::getline(in, line)) throw Error(ErrorCategory::invalid_input, name + ": empty file");
    const auto header = detail::split_csv(line, name + ":1");
    std::map<std::string, std::size_t> col;
    for (std::size_t i = 0; i < header.size(); ++i) col[header[i]] = i;
    for (const char* needed : {"timestamp", "symbol", "order_id", "trade_type", "price", "amount"})
        if (!col.count(needed))
            throw Error(ErrorCategory::invalid_input,
                        name + ":1: column '" + needed + "' missing from the header");
    std::vector<Fill> out;
    while (std::getline(in, line)) {
        ++n;
        if (line.empty() || line == "\r") continue;
        const std::string where = name + ":" + std::to_string(n);
        const auto f = detail::split_csv(line, where);
        if (f.size() != header.size())
            detail::bad_row(where, std::to_string(f.size()) + " fields, the header has " +
                                       std::to_string(header.size()));
        Fill fill;
        fill.file = name;
        fill.line = n;
        try {
            const std::string& ts = f[col["timestamp"]];
            if (ts.empty() || ts.find_first_not_of("0123456789") != std::string::npos)
                detail::bad_row(where, "timestamp '" + ts + "' is not epoch milliseconds");
            fill.ts_ns = static_cast<TimeNs>(std::stoll(ts)) * 1'000'000;
            fill.symbol = f[col["symbol"]];
            fill.order_id = f[col["order_id"]];
            const std::string& side = f[col["trade_type"]];
            if (side != "BUY" && side != "SELL")
                detail::bad_row(where, "trade_type '" + side + "' is not BUY or SELL");
            fill.side = side == "BUY" ? Side::buy : Side::sell;
            fill.price = parse_decimal(scientific_to_decimal(f[col["price"]]));
            fill.amount = parse_decimal(scientific_to_decimal(f[col["amount"]]));
        } catch (const Error& e) {
            const std::string m = e.what();
            if (m.rfind(where, 0) == 0) throw;
            detail::bad_row(where, m);
        }
        if (fill.symbol.empty() || fill.order_id.empty())
            detail::bad_row(where, "symbol or order_id empty");
        out.push_back(std::move(fill));
    }
    return out;
}

/// The trade exports of the data set, in a fixed order: DIR/<PAIR>/trades_*.csv.gz.
inline std::vector<std::string> hummingbot_trade_files(const std::string& dir) {
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& pair : std::filesystem::directory_iterator(dir, ec)) {
        if (!pair.is_directory()) continue;
        for (const auto& f : std::filesystem::directory_iterator(pair.path())) {
            const std::string n = f.path().filename().string();
            if (n.rfind("trades_", 0) == 0 && n.size() > 7 && n.substr(n.size() - 7) == ".csv.gz")
                files.push_back(f.path().string());
        }
    }
    if (ec) throw Error(ErrorCategory::io, dir + ": cannot list: " + ec.message());
    std::sort(files.begin(), files.end());
    return files;
}

/// Every fill of every trade export under `dir`.
inline std::vector<Fill> read_hummingbot_dir(const std::string& dir) {
    const auto files = hummingbot_trade_files(dir);
    if (files.empty())
        throw Error(ErrorCategory::not_found, dir + ": no trades_*.csv.gz files under it");
    std::vector<Fill> all;
    for (const auto& f : files) {
        auto fills = parse_hummingbot_trades(gunzip_file(f), f);
        all.insert(all.end(), std::make_move_iterator(fills.begin()),
                   std::make_move_iterator(fills.end()));
    }
    return all;
}

/// One order per exchange order id (a resting order filled in several pieces is one order the
/// bot sent): at its first fill's time, quantity the sum of its fills, price its least
/// favourable fill price (the highest for a BUY, the lowest for a SELL — the tightest bound the
/// data give on its limit price), converted to EUR at the pair's fixed rate. Pairs without a
/// mapping are refused (throws naming the file and line); rows come out in time order (ties by
/// order id).
inline std::vector<OrderRow> orders_from_fills(
    const std::vector<Fill>& fills, const std::vector<PairMapping>& mappings = default_mappings()) {
    struct Acc {
        const Fill* first = nullptr;
        Decimal quantity, price;
    };
    std::map<std::pair<std::string, std::string>, Acc> by_order;
    for (const Fill& f : fills) {
        const std::string where = f.file + ":" + std::to_string(f.line);
        Acc& a = by_order[{f.symbol, f.order_id}];
        if (a.first == nullptr) {
            a.first = &f;
            a.quantity = f.amount;
            a.price = f.price;
            continue;
        }
        if (f.side != a.first->side)
            detail::bad_row(where, "order " + f.order_id + " was a " + to_string(a.first->side) +
                                       " at line " + std::to_string(a.first->line));
        if (f.ts_ns < a.first->ts_ns) a.first = &f;
        a.quantity = detail::add(a.quantity, f.amount, where);
        const int c = compare(f.price, a.price);
        if (f.side == Side::buy ? c > 0 : c < 0) a.price = f.price;
    }
    std::vector<OrderRow> out;
    out.reserve(by_order.size());
    for (const auto& [key, a] : by_order) {
        const std::string where = a.first->file + ":" + std::to_string(a.first->line);
        const PairMapping* m = nullptr;
        for (const auto& candidate : mappings)
            if (candidate.symbol == key.first) m = &candidate;
        if (m == nullptr) detail::bad_row(where, "no EUR mapping for the pair " + key.first);
        OrderRow r;
        r.ts_ns = a.first->ts_ns;
        r.instrument = m->instrument;
        r.side = a.first->side;
        r.quantity = detail::trimmed(a.quantity);
        r.price = detail::product(a.price, parse_decimal(m->eur_rate), where);
        r.client_order_id = key.second;
        if (!r.quantity.is_positive() || !r.price.is_positive())
            detail::bad_row(where, "order " + key.second + " has no positive quantity and price");
        out.push_back(std::move(r));
    }
    std::stable_sort(out.begin(), out.end(), [](const OrderRow& a, const OrderRow& b) {
        return a.ts_ns != b.ts_ns ? a.ts_ns < b.ts_ns : a.client_order_id < b.client_order_id;
    });
    return out;
}

/// The orders CSV of DESIGN §6 with a client_order_id column; times in RFC 3339 UTC.
inline std::string orders_csv(const std::vector<OrderRow>& rows) {
    std::string out = "ts,instrument,counterparty,side,quantity,price,region,client_order_id\n";
    for (const OrderRow& r : rows) {
        out += format_timestamp(r.ts_ns);
        out += ',' + r.instrument + ',' + r.counterparty + ',' + to_string(r.side) + ',' +
               to_string(r.quantity) + ',' + to_string(r.price) + ',' + r.region + ',' +
               r.client_order_id + '\n';
    }
    return out;
}

}  // namespace kakunin::evaluation
