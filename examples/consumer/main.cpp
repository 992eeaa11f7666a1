// Built by scripts/test against the installed package: one allowed and one rejected order.
#include <kakunin/kakunin.hpp>

#include <cstdio>

int main() {
    const kakunin::Scope scope = kakunin::parse_scope_json(R"({"version":1,
      "max_transaction":{"currency":"EUR","amount":"1000.00"},"instruments":["BTC_EUR"],
      "counterparties":["exchange_a"],"regions":["eu-west-1"],
      "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri"],"from":"07:00","to":"20:00"}]})");
    kakunin::ManualClock clock(kakunin::utc(2024, 1, 8, 12));
    kakunin::Guard guard(scope, clock);
    kakunin::Order o;
    o.instrument = "BTC_EUR";
    o.counterparty = "exchange_a";
    o.region = "eu-west-1";
    o.quantity = kakunin::parse_decimal("0.01");
    o.price = kakunin::parse_decimal("40000.00");
    const bool first = guard.check(o).allowed();
    o.quantity = kakunin::parse_decimal("1");
    const kakunin::Decision second = guard.check(o);
    const bool ok = first && !second.allowed() &&
                    second.reasons.contains(kakunin::ReasonCode::max_transaction_exceeded);
    std::printf("consumer: kakunin %s via find_package: %s\n", kakunin::version_string,
                ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
}
