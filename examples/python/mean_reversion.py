"""A small strategy whose every order goes through a kakunin.Guard: buy when the price falls
a threshold below its moving average, sell when it rises above. The Guard is handed in, so a
test gives it one from kakunin.TestAuthority (test_mean_reversion.py) and production one from
the agent's certificate."""

from collections import deque
from decimal import Decimal

import kakunin


class MeanReversion:
    def __init__(self, guard, send, *, instrument="BTC_EUR", counterparty="exchange_a",
                 region="eu-west-1", window=5, threshold=Decimal("0.01"), size=Decimal("0.1")):
        self.guard, self.send = guard, send
        self.window = deque(maxlen=window)
        self.threshold, self.size = threshold, size
        self.order = kakunin.Order(instrument=instrument, counterparty=counterparty, region=region)
        self.refusals = []
        self.count = 0

    def on_price(self, price: Decimal):
        """Called with each trade price; returns the Decision of an order it tried, or None."""
        price = Decimal(price)
        self.window.append(price)
        if len(self.window) < self.window.maxlen:
            return None
        mean = sum(self.window) / len(self.window)
        if price < mean * (1 - self.threshold):
            side = kakunin.Side.buy
        elif price > mean * (1 + self.threshold):
            side = kakunin.Side.sell
        else:
            return None
        self.count += 1
        self.order.side = side
        self.order.quantity = self.size
        self.order.price = price
        self.order.reference_price = price
        self.order.client_order_id = f"mr-{self.count}"
        self.order.reasoning = f"price {price} vs mean {mean:.2f}"
        decision = self.guard.check(self.order)
        if decision.allowed:
            self.send(self.order)
        else:
            self.refusals.append([r.name for r in decision.reasons])
        return decision
