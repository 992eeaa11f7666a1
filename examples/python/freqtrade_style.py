"""A freqtrade-style strategy loop with Kakunin in front of the exchange.

The strategy is written the freqtrade way (indicators over a candle frame, entry and exit
signals per candle); the bot loop turns signals into orders, and each order is checked by the
Guard before it would reach the exchange. A refused order is logged with its reasons and not
sent; a halt (the desk's kill switch) cancels the open orders through on_cancel_all.

    python3 examples/python/freqtrade_style.py
"""

from decimal import Decimal

import kakunin

SCOPE = """{"version": 1,
  "max_transaction": {"currency": "EUR", "amount": "5000.00"},
  "instruments": ["ETH_EUR"], "counterparties": ["exchange_a"], "regions": ["eu-west-1"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "00:00", "to": "24:00"}],
  "limits": {"max_order_quantity": {"ETH_EUR": "2"}, "price_collar_bps": 100,
             "max_open_orders": 3, "max_orders_per_second": 5}}"""


class SmaCross:
    """Entry when the fast SMA crosses above the slow one, exit when it crosses below."""

    fast, slow, stake = 3, 6, Decimal("1.5")

    def populate_indicators(self, candles):
        closes = [c["close"] for c in candles]
        for i, c in enumerate(candles):
            c["sma_fast"] = sum(closes[max(0, i - self.fast + 1):i + 1]) / min(i + 1, self.fast)
            c["sma_slow"] = sum(closes[max(0, i - self.slow + 1):i + 1]) / min(i + 1, self.slow)
        return candles

    def populate_entry_trend(self, candles):
        for prev, c in zip([None] + candles, candles):
            c["enter_long"] = bool(prev and prev["sma_fast"] <= prev["sma_slow"] and c["sma_fast"] > c["sma_slow"])
        return candles

    def populate_exit_trend(self, candles):
        for prev, c in zip([None] + candles, candles):
            c["exit_long"] = bool(prev and prev["sma_fast"] >= prev["sma_slow"] and c["sma_fast"] < c["sma_slow"])
        return candles


def candles(closes, start_ns, minutes=5):
    return [{"ts_ns": start_ns + i * minutes * 60 * 10**9, "close": Decimal(c)} for i, c in enumerate(closes)]


def run_bot(guard, clock, frame, strategy=SmaCross(), stake=None):
    """The bot loop: enter when flat, exit when long, each order checked first. The simulated
    exchange fills a working order when the next candle with a signal comes. Returns (sent,
    refused)."""
    sent, refused = [], []
    frame = strategy.populate_exit_trend(strategy.populate_entry_trend(strategy.populate_indicators(frame)))
    order = kakunin.Order(instrument="ETH_EUR", counterparty="exchange_a", region="eu-west-1")
    long, working = False, None
    for n, c in enumerate(frame):
        entry, exit_ = c["enter_long"] and not long, c["exit_long"] and long
        if not (entry or exit_):
            continue
        clock.set(c["ts_ns"])
        if working:  # the exchange filled the previous order
            guard.on_execution(kakunin.ExecutionReport(
                kakunin.ExecutionType.fill, client_order_id=working[0], quantity=working[1], price=working[2]))
            working = None
        order.side = kakunin.Side.buy if entry else kakunin.Side.sell
        order.quantity = stake or strategy.stake
        order.price = c["close"]
        order.reference_price = c["close"]
        order.client_order_id = f"ft-{n}"
        order.reasoning = f"{type(strategy).__name__}: {'enter_long' if entry else 'exit_long'}"
        d = guard.check(order)
        if d.allowed:
            sent.append((order.client_order_id, order.side.name, []))
            working = (order.client_order_id, order.quantity, order.price)
            long = entry
        else:
            refused.append((order.client_order_id, order.side.name, [r.name for r in d.reasons]))
    return sent, refused


CLOSES = ["2500", "2490", "2480", "2470", "2460", "2480", "2510", "2530", "2540", "2520",
          "2500", "2480", "2460", "2470", "2490", "2520", "2550"]

if __name__ == "__main__":
    clock = kakunin.ManualClock(kakunin.utc(2024, 1, 8, 9))
    cancelled = []
    guard = kakunin.Guard(kakunin.parse_scope_json(SCOPE), clock,
                          on_cancel_all=lambda c: cancelled.extend(c.order_ids))
    sent, refused = run_bot(guard, clock, candles(CLOSES, clock.now_ns()))
    print("sent:", sent)
    print("refused:", refused)
    guard.halt("desk kill switch", "M. Rossi")
    print("cancelled on halt:", cancelled)
