"""python_check_median_ns: Guard.check() called from Python on a reused Order, scoring on — the
figure scripts/bench reports beside the C++ check_allowed_median_ns (same typical scope, same
order, a baseline learned the same way from one 13-hour session at 10 orders per second).

    python3 bench/python/check.py [--merge bench-results.json] [--repetitions 7]

Each repetition times a loop of checks with time.perf_counter_ns; the figure is the median of
the per-check times. The loop moves the clock one second every ten checks (10 orders/s, as the
C++ benchmark's clock does) and counts any verdict that is not a plain allow; with --merge the
figure and its ratio to check_allowed_median_ns are added to the JSON file."""

import argparse
import json
import statistics
import sys
import time

import kakunin

TYPICAL_SCOPE = """{
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "500000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a", "exchange_b"],
  "trading_hours": [{"days": ["Mon"], "from": "07:00", "to": "20:00"},
                    {"days": ["Tue"], "from": "07:00", "to": "20:00"},
                    {"days": ["Wed"], "from": "07:00", "to": "20:00"},
                    {"days": ["Thu"], "from": "07:00", "to": "20:00"},
                    {"days": ["Fri"], "from": "07:00", "to": "20:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {
    "max_order_quantity": {"BTC_EUR": "10", "ETH_EUR": "150"},
    "price_collar_bps": 500,
    "max_orders_per_second": 50,
    "max_daily_notional": {"currency": "EUR", "amount": "5000000.00"}
  }
}"""

SECOND = 10**9
WEEK = 7 * 86400 * SECOND
SESSION_SECONDS = 13 * 3600


def order():
    return kakunin.Order(client_order_id="bench-1", instrument="ETH_EUR", counterparty="exchange_b",
                         side=kakunin.Side.buy, quantity="0.001", price="2500.12",
                         reference_price="2500.00", region="eu-central-1")


def scoring_guard(clock):
    scope = kakunin.parse_scope_json(TYPICAL_SCOPE)
    builder = kakunin.BaselineBuilder(scope, "bench-agent")
    start = kakunin.utc(2024, 1, 8, 7)
    builder.start(start)
    o = order()
    t = start
    for i in range(SESSION_SECONDS * 10):
        t = start + i * SECOND // 10
        builder.observe(o, t)
    baseline = builder.finalize(t + WEEK)
    kms = kakunin.SoftwareKms.in_memory()
    approval = kakunin.approve_baseline(kms, baseline, "Bench Officer", t + WEEK, 1)
    return kakunin.Guard(scope, clock, baseline=kakunin.ApprovedBaseline(baseline, approval),
                         incident_thread=False)


def measure(repetitions=7, checks=200_000):
    session = kakunin.utc(2024, 1, 15, 7)
    clock = kakunin.ManualClock(session)
    guard = scoring_guard(clock)
    if not guard.enforcing_baseline:
        sys.exit("anomaly scoring is not on")
    o = order()
    allow = kakunin.Verdict.allow
    check, advance = guard.check, clock.advance_ns
    seconds = 0
    per_check = []
    for rep in range(repetitions + 1):  # the first is a warm-up
        if seconds + checks // 10 > SESSION_SECONDS:  # the next Monday's session
            session += WEEK
            clock.set(session)
            seconds = 0
        wrong = 0
        begin = time.perf_counter_ns()
        for _ in range(checks // 10):
            for _ in range(9):
                if not check(o).allowed:
                    wrong += 1
            if check(o).verdict != allow:  # a warn is allowed too: one in ten tells them apart
                wrong += 1
            advance(SECOND)
        elapsed = time.perf_counter_ns() - begin
        seconds += checks // 10
        if wrong:
            sys.exit(f"{wrong} checks were not a plain allow: the benchmark measures the wrong path")
        if rep:
            per_check.append(elapsed / checks)
    return statistics.median(per_check)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--merge", help="add the figures to this JSON file (scripts/bench's)")
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    median = measure(args.repetitions)
    figures = {"python_check_median_ns": round(median, 2)}
    if args.merge:
        with open(args.merge) as f:
            results = json.load(f)
        if "check_allowed_median_ns" in results:
            figures["python_check_per_cpp_check"] = round(median / results["check_allowed_median_ns"], 2)
        results.update(figures)
        with open(args.merge, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
