"""Shared fixtures: the seed scope of the C++ tests, a Monday clock, orders inside the scope."""

import os
import pathlib
import shutil

import pytest

import kakunin

ROOT = pathlib.Path(__file__).resolve().parents[2]

SEED_SCOPE = (ROOT / "examples" / "seed_scope.json").read_text()

LIFECYCLE_SCOPE = """{
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR"],
  "counterparties": ["exchange_a"],
  "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1"],
  "limits": {
    "max_position": {"BTC_EUR": {"long": "5", "short": "5"}},
    "max_open_orders": 10,
    "max_daily_loss": {"currency": "EUR", "amount": "1000.00"}
  }
}"""


def monday(hour, minute=0, second=0):
    """Monday 2024-01-08 at the given UTC time, in nanoseconds."""
    return kakunin.utc(2024, 1, 8, hour, minute, second)


def good_order(**changes):
    """1 BTC at 40000.00 on exchange_a from eu-west-1, inside the seed scope."""
    fields = dict(instrument="BTC_EUR", counterparty="exchange_a", region="eu-west-1",
                  side=kakunin.Side.buy, quantity="1", price="40000.00",
                  reference_price="40000.00", client_order_id="c-1")
    fields.update(changes)
    return kakunin.Order(**fields)


@pytest.fixture
def seed_scope():
    return kakunin.parse_scope_json(SEED_SCOPE)


@pytest.fixture
def lifecycle_scope():
    return kakunin.parse_scope_json(LIFECYCLE_SCOPE)


@pytest.fixture
def clock():
    return kakunin.ManualClock(monday(12))


def cli_path():
    """The kakunin program the differential test runs: $KAKUNIN_CLI_PATH or build/kakunin."""
    path = os.environ.get("KAKUNIN_CLI_PATH") or str(ROOT / "build" / "kakunin")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"the kakunin program is not built at {path} (set KAKUNIN_CLI_PATH)")
    return path


def wait_until(predicate, timeout=10.0):
    """Polls `predicate` until it is true or `timeout` seconds passed; returns its last value."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)
