"""The freqtrade-style loop: its signals become checked orders; an oversized stake is refused;
a halt cancels the open orders through on_cancel_all and refuses the rest."""

from decimal import Decimal

import kakunin
from freqtrade_style import CLOSES, SCOPE, candles, run_bot


def make_guard(cancelled):
    clock = kakunin.ManualClock(kakunin.utc(2024, 1, 8, 9))
    guard = kakunin.Guard(kakunin.parse_scope_json(SCOPE), clock,
                          on_cancel_all=lambda c: cancelled.extend(c.order_ids))
    return guard, clock


def test_signals_become_checked_orders_and_a_halt_cancels_them():
    cancelled = []
    guard, clock = make_guard(cancelled)
    sent, refused = run_bot(guard, clock, candles(CLOSES, clock.now_ns()))
    assert [s[1] for s in sent][:3] == ["buy", "sell", "buy"] and refused == []
    assert guard.working_orders() == [sent[-1][0]]  # the others were filled
    guard.halt("desk kill switch", "M. Rossi")
    assert cancelled == [sent[-1][0]]
    sent, refused = run_bot(guard, clock, candles(CLOSES, clock.now_ns() + 10**12))
    assert sent == [] and all("halted" in r[2] for r in refused)


def test_an_oversized_stake_is_refused():
    guard, clock = make_guard([])
    sent, refused = run_bot(guard, clock, candles(CLOSES, clock.now_ns()), stake=Decimal("3"))
    assert sent == [] and refused
    assert all(r[2] == ["max_transaction_exceeded", "max_order_quantity_exceeded"] for r in refused)
