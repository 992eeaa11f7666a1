// The scope extension's DER encoding and its strict decoder. See docs/scope-extension.md for the
// ASN.1 module this implements.
#include "kakunin/scope_extension.hpp"

#include <botan/asn1_obj.h>
#include <botan/ber_dec.h>
#include <botan/der_enc.h>
#include <botan/exceptn.h>

#include <algorithm>
#include <cstring>
#include <limits>

namespace kakunin {
namespace {

constexpr const char* prefix = "scope extension: ";

[[noreturn]] void fail(const std::string& field, const std::string& what) {
    throw Error(ErrorCategory::invalid_input, prefix + field + ": " + what);
}

// ---- encoding ---------------------------------------------------------------------------------

/// Minimal two's-complement big-endian bytes of v (X.690 8.3.2).
std::vector<std::uint8_t> integer_bytes(std::int64_t v) {
    std::vector<std::uint8_t> out(8);
    auto u = static_cast<std::uint64_t>(v);
    for (int i = 7; i >= 0; --i) {
        out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(u & 0xff);
        u >>= 8;
    }
    std::size_t skip = 0;
    while (skip + 1 < out.size()) {
        const std::uint8_t b0 = out[skip], b1 = out[skip + 1];
        if ((b0 == 0x00 && (b1 & 0x80) == 0) || (b0 == 0xff && (b1 & 0x80) != 0))
            ++skip;
        else
            break;
    }
    out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(skip));
    return out;
}

void put_int(Botan::DER_Encoder& enc, std::int64_t v, Botan::ASN1_Tag type = Botan::INTEGER,
             Botan::ASN1_Tag cls = Botan::UNIVERSAL) {
    enc.add_object(type, cls, integer_bytes(v));
}

void put_utf8(Botan::DER_Encoder& enc, const std::string& s) {
    enc.add_object(Botan::UTF8_STRING, Botan::UNIVERSAL, s);
}

void put_decimal(Botan::DER_Encoder& enc, Decimal d) {
    enc.start_cons(Botan::SEQUENCE);
    put_int(enc, d.units);
    put_int(enc, -static_cast<std::int64_t>(d.scale));
    enc.end_cons();
}

void put_money(Botan::DER_Encoder& enc, const Money& m) {
    enc.start_cons(Botan::SEQUENCE);
    enc.add_object(Botan::PRINTABLE_STRING, Botan::UNIVERSAL, m.currency.code());
    put_int(enc, m.amount.units);
    put_int(enc, -static_cast<std::int64_t>(m.amount.scale));
    enc.end_cons();
}

void put_strings(Botan::DER_Encoder& enc, const std::vector<std::string>& list) {
    enc.start_cons(Botan::SEQUENCE);
    for (const auto& s : list) put_utf8(enc, s);
    enc.end_cons();
}

void put_money_tagged(Botan::DER_Encoder& enc, unsigned tag, const Money& m) {
    enc.start_cons(Botan::ASN1_Tag(tag), Botan::CONTEXT_SPECIFIC);
    enc.add_object(Botan::PRINTABLE_STRING, Botan::UNIVERSAL, m.currency.code());
    put_int(enc, m.amount.units);
    put_int(enc, -static_cast<std::int64_t>(m.amount.scale));
    enc.end_cons();
}

/// The order lifecycle members [4]..[8], after the RTS 6 ones (absent members add no bytes).
void put_lifecycle(Botan::DER_Encoder& enc, const PreTradeLimits& l) {
    if (!l.max_position.empty()) {
        enc.start_cons(Botan::ASN1_Tag(4), Botan::CONTEXT_SPECIFIC);
        for (const auto& [instrument, limit] : l.max_position) {
            enc.start_cons(Botan::SEQUENCE);
            put_utf8(enc, instrument);
            put_decimal(enc, limit.max_long);
            put_decimal(enc, limit.max_short);
            enc.end_cons();
        }
        enc.end_cons();
    }
    if (l.max_open_orders)
        put_int(enc, *l.max_open_orders, Botan::ASN1_Tag(5), Botan::CONTEXT_SPECIFIC);
    if (l.max_working_notional) put_money_tagged(enc, 6, *l.max_working_notional);
    if (l.max_messages_per_second)
        put_int(enc, *l.max_messages_per_second, Botan::ASN1_Tag(7), Botan::CONTEXT_SPECIFIC);
    if (l.max_daily_loss) put_money_tagged(enc, 8, *l.max_daily_loss);
}

std::vector<std::uint8_t> encode_unchecked(const Scope& s) {
    std::vector<std::uint8_t> out;
    Botan::DER_Encoder enc(out);
    enc.start_cons(Botan::SEQUENCE);
    put_int(enc, s.version);
    put_money(enc, s.max_transaction);
    put_strings(enc, s.instruments);
    put_strings(enc, s.counterparties);
    enc.start_cons(Botan::SEQUENCE);
    for (const auto& w : s.trading_hours) {
        enc.start_cons(Botan::SEQUENCE);
        put_int(enc, w.days);
        put_int(enc, w.from_minute);
        put_int(enc, w.to_minute);
        enc.end_cons();
    }
    enc.end_cons();
    put_strings(enc, s.regions);
    const PreTradeLimits& l = s.limits;
    if (!l.empty()) {
        enc.start_cons(Botan::ASN1_Tag(0), Botan::CONTEXT_SPECIFIC);
        if (!l.max_order_quantity.empty()) {
            enc.start_cons(Botan::ASN1_Tag(0), Botan::CONTEXT_SPECIFIC);
            for (const auto& [instrument, qty] : l.max_order_quantity) {
                enc.start_cons(Botan::SEQUENCE);
                put_utf8(enc, instrument);
                put_decimal(enc, qty);
                enc.end_cons();
            }
            enc.end_cons();
        }
        if (l.price_collar_bps)
            put_int(enc, *l.price_collar_bps, Botan::ASN1_Tag(1), Botan::CONTEXT_SPECIFIC);
        if (l.max_orders_per_second)
            put_int(enc, *l.max_orders_per_second, Botan::ASN1_Tag(2), Botan::CONTEXT_SPECIFIC);
        if (l.max_daily_notional) put_money_tagged(enc, 3, *l.max_daily_notional);
        put_lifecycle(enc, l);
        enc.end_cons();
    }
    enc.end_cons();
    return out;
}

// ---- decoding ---------------------------------------------------------------------------------

const Botan::ASN1_Tag constructed_context =
    Botan::ASN1_Tag(Botan::CONTEXT_SPECIFIC | Botan::CONSTRUCTED);

std::string describe(const Botan::BER_Object& o) {
    return "tag " + std::to_string(static_cast<unsigned>(o.type())) + " class " +
           std::to_string(static_cast<unsigned>(o.get_class()));
}

Botan::BER_Object next(Botan::BER_Decoder& d, const std::string& field) {
    Botan::BER_Object o = d.get_next_object();
    if (!o.is_set()) fail(field, "missing");
    return o;
}

void expect(const Botan::BER_Object& o, Botan::ASN1_Tag type, Botan::ASN1_Tag cls,
            const std::string& field, const char* what) {
    if (!o.is_a(type, cls)) fail(field, std::string("expected ") + what + ", found " + describe(o));
}

void expect_end(Botan::BER_Decoder& d, const std::string& field) {
    if (d.more_items()) fail(field, "unexpected extra element");
}

std::int64_t read_int(const Botan::BER_Object& o, const std::string& field) {
    const std::size_t n = o.length();
    if (n == 0) fail(field, "empty INTEGER");
    if (n > 8) fail(field, "INTEGER does not fit in 64 bits");
    const std::uint8_t* b = o.bits();
    if (n > 1 && ((b[0] == 0x00 && (b[1] & 0x80) == 0) || (b[0] == 0xff && (b[1] & 0x80) != 0)))
        fail(field, "INTEGER not minimally encoded");
    std::uint64_t u = (b[0] & 0x80) ? ~std::uint64_t{0} : 0;
    for (std::size_t i = 0; i < n; ++i) u = (u << 8) | b[i];
    return static_cast<std::int64_t>(u);
}

std::int64_t int_in(Botan::BER_Decoder& d, const std::string& field, std::int64_t lo,
                    std::int64_t hi) {
    Botan::BER_Object o = next(d, field);
    expect(o, Botan::INTEGER, Botan::UNIVERSAL, field, "INTEGER");
    const std::int64_t v = read_int(o, field);
    if (v < lo || v > hi)
        fail(field,
             std::to_string(v) + " outside " + std::to_string(lo) + ".." + std::to_string(hi));
    return v;
}

bool valid_utf8(const std::uint8_t* s, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        const std::uint8_t c = s[i];
        std::size_t len;
        std::uint32_t cp;
        if (c < 0x80) {
            if (c == 0) return false;
            ++i;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (std::size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

std::string utf8_in(Botan::BER_Decoder& d, const std::string& field) {
    Botan::BER_Object o = next(d, field);
    expect(o, Botan::UTF8_STRING, Botan::UNIVERSAL, field, "UTF8String");
    if (!valid_utf8(o.bits(), o.length())) fail(field, "not valid UTF-8");
    return std::string(reinterpret_cast<const char*>(o.bits()), o.length());
}

Decimal decimal_from(std::int64_t units, std::int64_t exponent) {
    Decimal d;
    d.units = units;
    d.scale = static_cast<std::uint8_t>(-exponent);
    return d;
}

/// The body of a MonetaryValue (after its SEQUENCE or [3] tag has been opened).
Money money_body(Botan::BER_Decoder& d, const std::string& field) {
    Botan::BER_Object c = next(d, field + ".currency");
    expect(c, Botan::PRINTABLE_STRING, Botan::UNIVERSAL, field + ".currency", "PrintableString");
    const std::string code(reinterpret_cast<const char*>(c.bits()), c.length());
    Money m;
    try {
        m.currency = Currency::parse(code);
    } catch (const Error& e) {
        fail(field + ".currency", e.what());
    }
    const std::int64_t amount =
        int_in(d, field + ".amount", std::numeric_limits<std::int64_t>::min(),
               std::numeric_limits<std::int64_t>::max());
    const std::int64_t exponent =
        int_in(d, field + ".exponent", -static_cast<std::int64_t>(Decimal::max_scale), 0);
    expect_end(d, field);
    m.amount = decimal_from(amount, exponent);
    return m;
}

Money money_in(Botan::BER_Decoder& d, const std::string& field) {
    Botan::BER_Object o = next(d, field);
    expect(o, Botan::SEQUENCE, Botan::CONSTRUCTED, field, "SEQUENCE (MonetaryValue)");
    Botan::BER_Decoder inner(o);
    return money_body(inner, field);
}

std::vector<std::string> strings_in(Botan::BER_Decoder& d, const std::string& field) {
    Botan::BER_Object o = next(d, field);
    expect(o, Botan::SEQUENCE, Botan::CONSTRUCTED, field, "SEQUENCE OF UTF8String");
    Botan::BER_Decoder inner(o);
    std::vector<std::string> out;
    while (inner.more_items()) {
        if (out.size() >= Scope::max_list_size)
            fail(field, "more than " + std::to_string(Scope::max_list_size) + " entries");
        out.push_back(utf8_in(inner, field + "[" + std::to_string(out.size()) + "]"));
    }
    return out;
}

/// A DecimalValue SEQUENCE, read from `d`.
Decimal decimal_value_in(Botan::BER_Decoder& d, const std::string& field) {
    Botan::BER_Object q = next(d, field);
    expect(q, Botan::SEQUENCE, Botan::CONSTRUCTED, field, "SEQUENCE (DecimalValue)");
    Botan::BER_Decoder qd(q);
    const std::int64_t units =
        int_in(qd, field + ".amount", std::numeric_limits<std::int64_t>::min(),
               std::numeric_limits<std::int64_t>::max());
    const std::int64_t exponent =
        int_in(qd, field + ".exponent", -static_cast<std::int64_t>(Decimal::max_scale), 0);
    expect_end(qd, field);
    return decimal_from(units, exponent);
}

/// [5] and [7]: a primitive context-specific INTEGER within lo..hi.
std::uint32_t tagged_count(const Botan::BER_Object& o, const std::string& field, std::int64_t lo,
                           std::int64_t hi) {
    const std::int64_t v = read_int(o, field);
    if (v < lo || v > hi)
        fail(field,
             std::to_string(v) + " outside " + std::to_string(lo) + ".." + std::to_string(hi));
    return static_cast<std::uint32_t>(v);
}

/// The order lifecycle members [4]..[8]; `o` is the first element after the RTS 6 ones.
/// Returns the first element it did not consume.
Botan::BER_Object lifecycle_body(Botan::BER_Decoder& d, Botan::BER_Object o, PreTradeLimits& l) {
    if (o.is_a(4, constructed_context)) {
        Botan::BER_Decoder list(o);
        if (!list.more_items()) fail("limits.maxPosition", "present but empty");
        while (list.more_items()) {
            const std::string f =
                "limits.maxPosition[" + std::to_string(l.max_position.size()) + "]";
            if (l.max_position.size() >= Scope::max_list_size)
                fail("limits.maxPosition",
                     "more than " + std::to_string(Scope::max_list_size) + " entries");
            Botan::BER_Object e = next(list, f);
            expect(e, Botan::SEQUENCE, Botan::CONSTRUCTED, f, "SEQUENCE (InstrumentPosition)");
            Botan::BER_Decoder entry(e);
            std::string instrument = utf8_in(entry, f + ".instrument");
            PositionLimit limit;
            limit.max_long = decimal_value_in(entry, f + ".maxLong");
            limit.max_short = decimal_value_in(entry, f + ".maxShort");
            expect_end(entry, f);
            l.max_position.emplace_back(std::move(instrument), limit);
        }
        o = d.get_next_object();
    }
    if (o.is_a(5, Botan::CONTEXT_SPECIFIC)) {
        l.max_open_orders =
            tagged_count(o, "limits.maxOpenOrders", 1, Scope::max_open_orders_limit);
        o = d.get_next_object();
    }
    if (o.is_a(6, constructed_context)) {
        Botan::BER_Decoder md(o);
        l.max_working_notional = money_body(md, "limits.maxWorkingNotional");
        o = d.get_next_object();
    }
    if (o.is_a(7, Botan::CONTEXT_SPECIFIC)) {
        l.max_messages_per_second =
            tagged_count(o, "limits.maxMessagesPerSecond", 1, Scope::max_rate_limit);
        o = d.get_next_object();
    }
    if (o.is_a(8, constructed_context)) {
        Botan::BER_Decoder md(o);
        l.max_daily_loss = money_body(md, "limits.maxDailyLoss");
        o = d.get_next_object();
    }
    return o;
}

PreTradeLimits limits_body(Botan::BER_Decoder& d) {
    PreTradeLimits l;
    Botan::BER_Object o = d.get_next_object();
    if (o.is_a(0, constructed_context)) {
        Botan::BER_Decoder list(o);
        if (!list.more_items()) fail("limits.maxOrderQuantity", "present but empty");
        while (list.more_items()) {
            const std::string f =
                "limits.maxOrderQuantity[" + std::to_string(l.max_order_quantity.size()) + "]";
            if (l.max_order_quantity.size() >= Scope::max_list_size)
                fail("limits.maxOrderQuantity",
                     "more than " + std::to_string(Scope::max_list_size) + " entries");
            Botan::BER_Object e = next(list, f);
            expect(e, Botan::SEQUENCE, Botan::CONSTRUCTED, f, "SEQUENCE (InstrumentQuantity)");
            Botan::BER_Decoder entry(e);
            std::string instrument = utf8_in(entry, f + ".instrument");
            const Decimal quantity = decimal_value_in(entry, f + ".maxQuantity");
            expect_end(entry, f);
            l.max_order_quantity.emplace_back(std::move(instrument), quantity);
        }
        o = d.get_next_object();
    }
    if (o.is_a(1, Botan::CONTEXT_SPECIFIC)) {
        const std::int64_t v = read_int(o, "limits.priceCollarBps");
        if (v < 0 || v > Scope::max_collar_bps)
            fail("limits.priceCollarBps",
                 std::to_string(v) + " outside 0.." + std::to_string(Scope::max_collar_bps));
        l.price_collar_bps = static_cast<std::uint32_t>(v);
        o = d.get_next_object();
    }
    if (o.is_a(2, Botan::CONTEXT_SPECIFIC)) {
        const std::int64_t v = read_int(o, "limits.maxOrdersPerSecond");
        if (v < 1 || v > Scope::max_rate_limit)
            fail("limits.maxOrdersPerSecond",
                 std::to_string(v) + " outside 1.." + std::to_string(Scope::max_rate_limit));
        l.max_orders_per_second = static_cast<std::uint32_t>(v);
        o = d.get_next_object();
    }
    if (o.is_a(3, constructed_context)) {
        Botan::BER_Decoder md(o);
        l.max_daily_notional = money_body(md, "limits.maxDailyNotional");
        o = d.get_next_object();
    }
    o = lifecycle_body(d, o, l);
    if (o.is_set()) fail("limits", "unexpected element " + describe(o));
    if (l.empty()) fail("limits", "present but empty");
    return l;
}

Scope decode_unchecked(const std::uint8_t* der, std::size_t size) {
    Botan::BER_Decoder top(der, size);
    Botan::BER_Object outer = top.get_next_object();
    if (!outer.is_set()) fail("KakuninScope", "empty input");
    expect(outer, Botan::SEQUENCE, Botan::CONSTRUCTED, "KakuninScope", "SEQUENCE");
    if (top.more_items()) fail("KakuninScope", "trailing bytes after the SEQUENCE");

    Botan::BER_Decoder d(outer);
    Scope s;
    const std::int64_t version = int_in(d, "version", std::numeric_limits<std::int64_t>::min(),
                                        std::numeric_limits<std::int64_t>::max());
    if (version != Scope::current_version)
        fail("version", "unsupported version " + std::to_string(version) + " (this build reads " +
                            std::to_string(Scope::current_version) + ")");
    s.version = static_cast<int>(version);
    s.max_transaction = money_in(d, "maxTransaction");
    s.instruments = strings_in(d, "instruments");
    s.counterparties = strings_in(d, "counterparties");
    {
        Botan::BER_Object o = next(d, "tradingHours");
        expect(o, Botan::SEQUENCE, Botan::CONSTRUCTED, "tradingHours", "SEQUENCE OF TradingWindow");
        Botan::BER_Decoder list(o);
        while (list.more_items()) {
            const std::string f = "tradingHours[" + std::to_string(s.trading_hours.size()) + "]";
            if (s.trading_hours.size() >= Scope::max_list_size)
                fail("tradingHours",
                     "more than " + std::to_string(Scope::max_list_size) + " entries");
            Botan::BER_Object w = next(list, f);
            expect(w, Botan::SEQUENCE, Botan::CONSTRUCTED, f, "SEQUENCE (TradingWindow)");
            Botan::BER_Decoder wd(w);
            TradingWindow tw;
            tw.days = static_cast<std::uint8_t>(int_in(wd, f + ".days", 1, 127));
            tw.from_minute = static_cast<std::uint16_t>(int_in(wd, f + ".fromMinute", 0, 1439));
            tw.to_minute = static_cast<std::uint16_t>(int_in(wd, f + ".toMinute", 1, 1440));
            expect_end(wd, f);
            s.trading_hours.push_back(tw);
        }
    }
    s.regions = strings_in(d, "regions");
    Botan::BER_Object o = d.get_next_object();
    if (o.is_set()) {
        expect(o, Botan::ASN1_Tag(0), constructed_context, "limits", "[0] PreTradeLimits");
        Botan::BER_Decoder ld(o);
        s.limits = limits_body(ld);
        expect_end(d, "KakuninScope");
    }
    return s;
}

}  // namespace

std::string scope_extension_oid(std::string_view arc) {
    // Dotted decimal, first arc 0..2, at least two arcs, no empty or zero-padded components.
    bool ok = !arc.empty();
    std::size_t components = 0, start = 0;
    while (ok && start <= arc.size()) {
        std::size_t end = arc.find('.', start);
        if (end == std::string_view::npos) end = arc.size();
        const std::string_view part = arc.substr(start, end - start);
        ok = !part.empty() && part.size() <= 9 &&
             std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
             !(part.size() > 1 && part[0] == '0');
        if (ok && components == 0) ok = part.size() == 1 && part[0] <= '2';
        ++components;
        start = end + 1;
        if (end == arc.size()) break;
    }
    if (!ok || components < 2)
        throw Error(ErrorCategory::invalid_input,
                    "OID arc '" + std::string(arc) + "' is not a dotted object identifier");
    return std::string(arc) + ".1";
}

std::vector<std::uint8_t> encode_scope_extension(const Scope& scope) {
    validate(scope);
    return encode_unchecked(scope);
}

Scope decode_scope_extension(const std::uint8_t* der, std::size_t size) {
    Scope s;
    try {
        s = decode_unchecked(der, size);
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        // Botan reports truncation and bad lengths as Decoding_Error / BER_Decoding_Error.
        throw Error(ErrorCategory::invalid_input,
                    std::string(prefix) + "KakuninScope: malformed DER (" + e.what() + ")");
    }
    try {
        validate(s);
    } catch (const Error& e) {
        throw Error(ErrorCategory::invalid_input, std::string(prefix) + e.what());
    }
    const std::vector<std::uint8_t> canonical = encode_unchecked(s);
    if (canonical.size() != size || !std::equal(canonical.begin(), canonical.end(), der))
        throw Error(ErrorCategory::invalid_input,
                    std::string(prefix) +
                        "KakuninScope: not the DER encoding (lengths or tagging not canonical)");
    return s;
}

}  // namespace kakunin
