"""The Python Guard decides exactly as the C++ one: 10,000 random orders (edge values included,
as in tests/test_differential.cpp), through `kakunin replay --scope --orders --decisions-out`
and through kakunin.Guard on a ManualClock set to each row's time. Verdicts, reasons and times
must be equal on every row."""

import json
import random
import subprocess

import pytest

import kakunin
from conftest import SEED_SCOPE, cli_path

TIGHT_SCOPE = """{"version":1,
  "max_transaction":{"currency":"EUR","amount":"25000.50"},
  "instruments":["BTC_EUR","ETH_EUR"],"counterparties":["exchange_a"],"regions":["eu-west-1"],
  "trading_hours":[{"days":["Mon","Wed"],"from":"00:00","to":"24:00"},
                   {"days":["Sat"],"from":"13:37","to":"13:38"},
                   {"days":["Tue","Fri","Sun"],"from":"09:30","to":"16:00"}],
  "limits":{"max_order_quantity":{"ETH_EUR":"0.5"},"price_collar_bps":100,
            "max_orders_per_second":3,"max_daily_notional":{"currency":"EUR","amount":"100000.00"}}}"""

INT64_MAX = 2**63 - 1


class Generator:
    """Orders like the C++ differential generator's: mostly plausible, sometimes anything."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def decimal(self):
        r = self.rng
        kind = r.randrange(10)
        if kind == 0:
            units = r.choice([0, 1, -1, INT64_MAX, -INT64_MAX, 10, 150, 500000, 5000000, 100000000])
            scale = r.randrange(19)
        elif kind == 1:
            units, scale = r.randrange(-INT64_MAX, INT64_MAX + 1), r.randrange(19)
        else:
            units, scale = r.randrange(2_000_000_000) + 1, r.randrange(9)
        sign, digits = ("-" if units < 0 else ""), str(abs(units))
        if scale == 0:
            return sign + digits
        digits = digits.rjust(scale + 1, "0")
        return f"{sign}{digits[:-scale]}.{digits[-scale:]}"

    def mostly(self, usual, others):
        return usual if self.rng.randrange(5) else self.rng.choice(others)

    def row(self, t_ms):
        r = self.rng
        instrument = self.mostly(r.choice(["BTC_EUR", "ETH_EUR", "SOL_EUR"]),
                                 ["BTC_USD", "BTCEUR", "_EUR", "BTC_", "DOGE_EUR", "X" * 129 + "_EUR"])
        counterparty = self.mostly(r.choice(["exchange_a", "exchange_b"]), ["exchange_z", "", "c" * 129])
        region = self.mostly(r.choice(["eu-west-1", "eu-central-1"]), ["us-east-1", ""])
        side = r.choice(["BUY", "SELL"])
        if r.randrange(3):
            quantity = f"{r.randrange(0, 3)}.{r.randrange(1, 100):02d}"
            price = f"{r.randrange(50, 45000)}.{r.randrange(100):02d}"
        else:
            quantity, price = self.decimal(), self.decimal()
        choice = r.randrange(10)
        if choice == 0:
            reference = ""  # the replay takes the previous price of the instrument
        elif choice == 1:
            reference = self.decimal()
        else:
            # Near the price: inside or just outside a 1% or 5% collar.
            units = price.replace("-", "").split(".")
            base = int(units[0]) if units[0] else 1
            reference = str(min(INT64_MAX, max(1, base + r.randrange(-base // 40 - 1, base // 40 + 2))))
        return dict(ts=str(t_ms), instrument=instrument, counterparty=counterparty, side=side,
                    quantity=quantity, price=price, region=region, reference_price=reference,
                    client_order_id=f"o-{r.randrange(10**6)}")

    def rows(self, count, start_ms):
        t, out = start_ms, []
        for _ in range(count):
            jump = self.rng.randrange(10)
            if jump < 5:
                t += self.rng.randrange(0, 400)  # bursts: several orders in one second
            elif jump < 9:
                t += self.rng.randrange(1000, 120_000)
            elif self.rng.randrange(20) == 0:
                t += self.rng.randrange(3_600_000, 30 * 3_600_000)  # hours: days, weekends
            out.append(self.row(t))
        return out


COLUMNS = ["ts", "instrument", "counterparty", "side", "quantity", "price", "region",
           "reference_price", "client_order_id"]


def python_decisions(scope_text, rows):
    """What kakunin.Guard decides on the rows, as replay_scope drives its Guard."""
    clock = kakunin.ManualClock(int(rows[0]["ts"]) * 1_000_000)
    guard = kakunin.Guard(kakunin.parse_scope_json(scope_text), clock)
    last_price = {}
    order = kakunin.Order()  # reused, as a strategy would
    out = []
    for row in rows:
        clock.set(int(row["ts"]) * 1_000_000)
        order.instrument, order.counterparty, order.region = row["instrument"], row["counterparty"], row["region"]
        order.client_order_id = row["client_order_id"]
        order.side = kakunin.Side.buy if row["side"] == "BUY" else kakunin.Side.sell
        order.quantity, order.price = row["quantity"], row["price"]
        order.reference_price = row["reference_price"] or last_price.get(row["instrument"])
        d = guard.check(order)
        if order.price > 0:
            last_price[row["instrument"]] = row["price"]
        out.append((d.verdict.name, [r.name for r in d.reasons], d.ts_ns, d.score_ppm))
    return out


def cli_decisions(tmp_path, scope_text, rows):
    scope, orders, decisions = tmp_path / "scope.json", tmp_path / "orders.csv", tmp_path / "decisions.jsonl"
    scope.write_text(scope_text)
    with orders.open("w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for row in rows:
            f.write(",".join(row[c] for c in COLUMNS) + "\n")
    done = subprocess.run([cli_path(), "replay", "--scope", str(scope), "--orders", str(orders),
                           "--decisions-out", str(decisions)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = []
    for line in decisions.read_text().splitlines():
        j = json.loads(line)
        out.append((j["decision"], j["reasons"], j["ts_ns"], j["score_ppm"]))
    return out


@pytest.mark.parametrize("name,scope_text,seed,min_allowed",
                         [("seed", SEED_SCOPE, 20240108, 300), ("tight", TIGHT_SCOPE, 42, 5)])
def test_python_verdicts_equal_the_cli_on_5000_random_orders_per_scope(tmp_path, name, scope_text,
                                                                       seed, min_allowed):
    rows = Generator(seed).rows(5000, kakunin.utc(2024, 1, 8, 6) // 1_000_000)
    py = python_decisions(scope_text, rows)
    cpp = cli_decisions(tmp_path, scope_text, rows)
    assert len(cpp) == len(rows) == len(py)
    for i, (a, b) in enumerate(zip(py, cpp)):
        assert a == b, f"row {i + 2} of the {name} scope: Python {a}, C++ {b}: {rows[i]}"
    # The comparison is worth something only if both paths occur often.
    verdicts = [v for v, *_ in py]
    assert verdicts.count("allow") >= min_allowed and verdicts.count("reject") > 1000
    seen = {r for _, reasons, *_ in py for r in reasons}
    assert len(seen) >= 12, seen
