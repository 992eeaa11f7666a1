"""Unit-testing a strategy under pytest with kakunin.TestAuthority: real certificates with any
scope in one line, on a clock the test controls, through the production validation path."""

import datetime
from decimal import Decimal

import pytest

import kakunin
from mean_reversion import MeanReversion

SCOPE = """{"version": 1,
  "max_transaction": {"currency": "EUR", "amount": "10000.00"},
  "instruments": ["BTC_EUR"], "counterparties": ["exchange_a"], "regions": ["eu-west-1"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "07:00", "to": "20:00"}],
  "limits": {"max_order_quantity": {"BTC_EUR": "0.2"}, "price_collar_bps": 300}}"""

PRICES = [Decimal(p) for p in ["42000", "42010", "41990", "42005", "41000", "42000", "43000"]]


@pytest.fixture
def authority():
    return kakunin.TestAuthority()  # Monday 2024-01-08 12:00 UTC


def run(strategy):
    return [d for d in (strategy.on_price(p) for p in PRICES) if d is not None]


def test_the_strategy_trades_inside_its_scope(authority):
    sent = []
    strategy = MeanReversion(authority.guard_for(SCOPE), lambda o: sent.append((o.side, str(o.price))))
    decisions = run(strategy)
    assert [d.verdict for d in decisions] == [kakunin.Verdict.allow] * len(decisions) and decisions
    assert sent[0] == (kakunin.Side.buy, "41000") and sent[-1][0] == kakunin.Side.sell
    assert strategy.refusals == []


def test_an_oversized_order_is_refused_not_sent(authority):
    sent = []
    strategy = MeanReversion(authority.guard_for(SCOPE), sent.append, size=Decimal("0.21"))
    run(strategy)
    assert sent == []
    assert strategy.refusals and all(r == ["max_order_quantity_exceeded"] for r in strategy.refusals)


def test_after_hours_and_after_expiry_nothing_is_sent(authority):
    guard = authority.guard_for(SCOPE)
    sent = []
    strategy = MeanReversion(guard, sent.append)
    authority.clock.advance(datetime.timedelta(hours=9))  # 21:00 UTC
    run(strategy)
    assert sent == [] and all("outside_trading_hours" in r for r in strategy.refusals)
    authority.clock.advance(datetime.timedelta(hours=16))  # past the certificate's 24 h
    assert "certificate_expired" in [r.name for r in strategy.on_price(Decimal("40000")).reasons]


def test_a_revoked_certificate_stops_the_strategy(authority):
    guard = authority.guard_for(SCOPE)
    sent = []
    strategy = MeanReversion(guard, sent.append)
    authority.revoke(guard.certificate(), "key compromised")
    run(strategy)
    assert sent == [] and all("certificate_revoked" in r for r in strategy.refusals)


def test_doubtful_credentials_never_make_a_guard(authority):
    for make in (authority.expired, authority.wrong_ca, authority.tampered, authority.key_mismatch):
        with pytest.raises(kakunin.UnauthorisedError):
            kakunin.Guard(make(SCOPE), authority.clock)
