"""Kakunin for Python: the pre-trade Guard over the C++ library.

    import kakunin
    clock = kakunin.SystemClock()
    guard = kakunin.Guard(kakunin.parse_scope_json(open("scope.json").read()), clock)
    order = kakunin.Order(instrument="BTC_EUR", counterparty="exchange_a", region="eu-west-1",
                          side=kakunin.Side.buy, quantity="0.25", price="42000.00",
                          reference_price="41990.00")
    decision = guard.check(order)
    if decision.allowed:
        venue.send(order)

Amounts are exact (decimal.Decimal, str or int; a float is a TypeError). Every error is a
subclass of kakunin.Error, one per category. kakunin.agent wraps an order-placing function as
an LLM tool that cannot skip the check. docs/python.md has the rest.
"""

from ._kakunin import *  # noqa: F401,F403
from ._kakunin import __version__  # noqa: F401
