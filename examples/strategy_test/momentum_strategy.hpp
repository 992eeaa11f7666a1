// A toy strategy for the unit-testing example: it buys when the price rises three ticks in a row
// and asks the Guard before every order. What matters is the shape: the strategy takes a Guard,
// and never sends what the Guard rejects.
#pragma once

#include <kakunin/guard.hpp>

#include <string>
#include <vector>

struct SentOrder {
    std::string instrument;
    kakunin::Decimal quantity, price;
};

class MomentumStrategy {
public:
    MomentumStrategy(kakunin::Guard& guard, std::string instrument, kakunin::Decimal clip)
        : m_guard(guard), m_instrument(std::move(instrument)), m_clip(clip) {}

    /// Feeds one trade price; may send one order. Returns the Guard's decision if it asked.
    std::optional<kakunin::Decision> on_price(kakunin::Decimal price) {
        const bool rising = m_have_last && kakunin::compare(price, m_last) > 0;
        m_rises = rising ? m_rises + 1 : 0;
        const kakunin::Decimal reference = m_have_last ? m_last : price;
        m_last = price;
        m_have_last = true;
        if (m_rises < 3) return std::nullopt;
        m_rises = 0;
        kakunin::Order o;
        o.instrument = m_instrument;
        o.counterparty = "exchange_a";
        o.region = "eu-west-1";
        o.side = kakunin::Side::buy;
        o.quantity = m_clip;
        o.price = price;
        o.reference_price = reference;
        o.reasoning = "three rising ticks";
        const kakunin::Decision d = m_guard.check(o);
        if (d.allowed()) sent.push_back({m_instrument, m_clip, price});
        return d;
    }

    std::vector<SentOrder> sent;  ///< what reached the venue

private:
    kakunin::Guard& m_guard;
    std::string m_instrument;
    kakunin::Decimal m_clip;
    kakunin::Decimal m_last;
    bool m_have_last = false;
    int m_rises = 0;
};
