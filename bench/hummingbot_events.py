#!/usr/bin/env python3
"""bench/hummingbot_events.py - a live Hummingbot market maker's order lifecycle as the events CSV
of `kakunin replay --events` (issue 11, "Evaluation on a real bot's lifecycle").

Python 3 standard library only. Four commands:

  hummingbot_events.py convert --data DIR --out OUT
      DIR holds the bot's sqlite database (conf_pure_mm_3.sqlite.gz), its trade export
      (trades_conf_pure_mm_3.csv.gz) and its configuration (conf_pure_mm_3.yml), e.g.
      ../shared/data/hummingbot-edg-mm/EDG-BTC. Writes into OUT:
        events.csv      ts,type,order_id,instrument,counterparty,side,quantity,price,region
        positions.json  the final net position per instrument, summed from the trade export
                        (exact decimal arithmetic), independently of events.csv
        scope.json      a scope sized from the bot's configuration (see SCOPE_SIZING below)
        facts.json      what the reference walk of events.csv found: peaks against each limit,
                        the busiest hour, the halt moment and the orders working then
      then re-reads what it wrote and checks it (the same as `check`).
  hummingbot_events.py check --out OUT
      Checks OUT's files are well formed: the header, every row's type and cells, times in
      order, every order's life in order (new, ack, fills, then one end), fills never above the
      order's quantity, and the positions recomputed from events.csv equal positions.json.
  hummingbot_events.py compare --out OUT --summary S.json --state F.json --decisions D.jsonl
                               [--halt-summary S2.json --halt-decisions D2.jsonl --halt-state F2.json]
      Compares `kakunin replay --events` with OUT: requests rejected (goal 0, reasons listed),
      final position per instrument (goal: equal to positions.json), and with the halt run the
      orders working at the halt (cancel_on_halt against facts.json). Prints the figures as a
      markdown table and writes them as JSON (--figures FILE). Exit 0 when every goal is met,
      3 when one is not, 1 on bad input.
  hummingbot_events.py self-test
      Runs convert and check on a small database written here (no external data needed) and
      asserts the rows that must come out.

What the data hold (Hummingbot's sqlite schema, version 20220130): table "Order" (one row per
order placed; `amount` and `price` are integers scaled by 1e6, so every price of this pair,
about 3e-8 BTC, is 0 there), "OrderStatus" (one row per event: BuyOrderCreated,
SellOrderCreated, OrderFilled, OrderCancelled, BuyOrderCompleted, SellOrderCompleted; Hummingbot
also knows OrderExpired and OrderFailure, none of which occur in this file) and "TradeFill" (one
row per fill; its integer price is 0 too). The trade export has the same fills with their real
prices ("2.99E-8"), joined on exchange_trade_id.

How each event is made:
- new + ack: at the order's *Created status (Hummingbot records it when the venue accepted the
  order; the request time is not kept, so both carry that time, new first).
- fill: one per TradeFill row, at its OrderFilled status, with the fill's amount and the trade
  export's price converted to EUR.
- cancelled: at OrderCancelled (the venue's confirmation). The bot's cancel *requests* are not in
  the data, so no `cancel` rows are written.
- *Completed: no row (the last fill completes the order; checked: its fills add up to the amount).
- expired / reject: at OrderExpired / OrderFailure (none in this file).
Rows are ordered by time, then by the OrderStatus row's id (the order the bot recorded them in).

Instrument, counterparty and region are those of the existing evaluation on the same bot
(bench/hummingbot_orders.hpp, read from there so the two never disagree): EDG-BTC is the EUR
instrument EDGBTC_EUR at a fixed 15,425 EUR per BTC, counterparty kucoin, region eu-west-1.

Order prices: the data lost them, so each order gets the tightest bound the data give:
- an order with fills: its least favourable fill price (highest for a buy, lowest for a sell),
  as the existing evaluation does; a LIMIT_MAKER order fills at its limit, so this is its limit
  for all but the orders whose fills were at more than one price;
- an order without fills: the price the bot's configuration would have quoted around the bot's
  latest fill price before it (the reference): a buy at level L at reference x (1 - (bid_spread
  + L x order_level_spread) / 100) rounded down to the pair's price step, a sell at reference x
  (1 + (ask_spread + L x order_level_spread) / 100) rounded up; the level is the order's rank by
  amount among its side's orders created at the same moment. An estimate must not invent a
  crossing the data do not show (the bot's orders are LIMIT_MAKER, meant to rest): one that
  would meet an order of the other side working at the same time is moved one price step away
  from it. facts.json counts how many were moved, and lists the new orders that meet the bot's
  own working order with both prices from fills (self_crossing_orders): those the data show.
"""

import argparse
import bisect
import contextlib
import csv
import gzip
import io
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, Inexact, localcontext, setcontext

EVENTS_HEADER = ["ts", "type", "order_id", "instrument", "counterparty", "side", "quantity", "price",
                 "region"]
TYPES = {"new", "amend", "cancel", "ack", "reject", "fill", "cancelled", "expired", "mark"}
REQUESTS = {"new", "amend", "cancel"}
ENDS = {"cancelled", "expired", "reject"}

DB_NAME = "conf_pure_mm_3.sqlite.gz"
TRADES_NAME = "trades_conf_pure_mm_3.csv.gz"
CONFIG_NAME = "conf_pure_mm_3.yml"
SCALE = Decimal(1_000_000)  # Hummingbot's integer columns: value x 1e6
PRICE_STEP = Decimal("1E-10")  # BTC: the smallest price difference in the trade export
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S

# Exact arithmetic: every + - x below must be exact (Inexact is an error, not a rounding); the
# only roundings are the explicit ones of to_step().
EXACT = Context(prec=80, traps=[Inexact])
setcontext(EXACT)

# How each scope figure is sized (also printed into facts.json and the README's table). "peak" is
# what the bot actually reached in the reference walk of events.csv, checked the way
# docs/lifecycle.md defines the limit; every limit is at least MARGIN x its peak.
MARGIN = Decimal("1.5")
SCOPE_SIZING = {
    "max_open_orders": "2 x the 2 x order_levels quotes the configuration keeps working (one per "
                       "level and side), and at least MARGIN x peak: the bot waits for cancel "
                       "confirmations, so a refresh never doubles them",
    "max_messages_per_second": "2 x the 2 x order_levels new orders of one refresh (room for as "
                               "many cancel requests), and at least MARGIN x peak",
    "max_position": "per side: MARGIN x the worst case the bot reached (position + working orders "
                    "of that side + the new order), rounded up to 2 significant digits; the "
                    "configuration has no position bound (inventory skew only steers it)",
    "max_working_notional": "MARGIN x peak (working notional + the new order's), rounded up to 2 "
                            "significant digits; the configuration's bound is 2 x (order_amount + "
                            "(order_levels - 1) x order_level_amount) base units per side at full "
                            "skew, at the day's price",
    "max_daily_notional": "MARGIN x peak (filled today + working + the new order), rounded up to 2 "
                          "significant digits",
    "max_daily_loss": "MARGIN x the worst loss of a UTC day the bot had (average cost, marked at "
                      "its latest fill), rounded up to 2 significant digits: reaching it would "
                      "stop a bot that behaves as it did",
    "max_transaction": "MARGIN x the largest order notional, rounded up to 2 significant digits",
}


class DataError(Exception):
    """Bad input: the message names the file, the row and what is wrong."""


# ---------------------------------------------------------------------------------------------
# Decimal helpers


def dec(text, where):
    """A non-negative decimal from plain or E notation ("2.99E-8"); DataError otherwise."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?", text or ""):
        raise DataError(f"{where}: '{text}' is not a non-negative decimal number")
    return Decimal(text)


def plain(d):
    """The exact value as a plain decimal string, trailing zeros dropped ("0" when zero)."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("", "-0"):
        s = "0"
    return s


def mul(a, b):
    return EXACT.multiply(a, b)


def add(a, b):
    return EXACT.add(a, b)


def sub(a, b):
    return EXACT.subtract(a, b)


def to_step(d, step, rounding):
    with localcontext() as c:
        c.prec = 80
        return (d / step).to_integral_value(rounding=rounding) * step


def round_up_2sig(d):
    """The smallest number with at most two significant digits that is >= d (d > 0)."""
    if d <= 0:
        return Decimal(0)
    exp = d.adjusted() - 1
    step = Decimal(1).scaleb(exp)
    return to_step(d, step, ROUND_CEILING).normalize()


# ---------------------------------------------------------------------------------------------
# Time


def format_ts(ns):
    """RFC 3339 UTC, the fraction only when non-zero (as kakunin's format_timestamp)."""
    import datetime
    secs, frac = divmod(ns, NS_PER_S)
    t = datetime.datetime.fromtimestamp(secs, tz=datetime.timezone.utc)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z" if frac else base + "Z"


def parse_ts(text, where):
    """RFC 3339 UTC (as format_ts writes) or epoch milliseconds, to nanoseconds."""
    import datetime
    if re.fullmatch(r"[0-9]+", text or ""):
        return int(text) * NS_PER_MS
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", text or "")
    if not m:
        raise DataError(f"{where}: ts: '{text}' is not RFC 3339 UTC or epoch milliseconds")
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = int((m.group(7) or "0").ljust(9, "0"))
    t = datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * NS_PER_S + frac


# ---------------------------------------------------------------------------------------------
# Inputs


def read_mappings(header):
    """The pair -> (EUR instrument, EUR rate) table, counterparty and region of the existing
    evaluation, read from bench/hummingbot_orders.hpp so that the two evaluations agree."""
    try:
        text = open(header, encoding="utf-8").read()
    except OSError as e:
        raise DataError(f"{header}: cannot read: {e.strerror}")
    pairs = {m.group(1): (m.group(2), Decimal(m.group(3)))
             for m in re.finditer(r'\{"([A-Z0-9]+-[A-Z0-9]+)",\s*"([A-Z0-9]+_[A-Z]{3})",\s*'
                                  r'"([0-9.]+)",', text)}
    cp = re.search(r'default_counterparty\s*=\s*"([^"]+)"', text)
    region = re.search(r'default_region\s*=\s*"([^"]+)"', text)
    if not pairs or not cp or not region:
        raise DataError(f"{header}: default_mappings(), default_counterparty or default_region "
                        "not found")
    return pairs, cp.group(1), region.group(1)


def read_config(path):
    """The flat `key: value` lines of a Hummingbot strategy file (no YAML library needed: the
    file has no nesting for the keys read here)."""
    conf = {}
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}")
    for n, line in enumerate(lines, 1):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*):\s*(.*?)\s*", line)
        if m:
            conf[m.group(1)] = (m.group(2), n)
    out = {}
    for key in ("strategy", "exchange", "market"):
        if key not in conf:
            raise DataError(f"{path}: '{key}' missing")
        out[key] = conf[key][0]
    if out["strategy"] != "pure_market_making":
        raise DataError(f"{path}:{conf['strategy'][1]}: strategy '{out['strategy']}' is not "
                        "pure_market_making")
    for key in ("order_amount", "order_levels", "order_level_amount", "bid_spread", "ask_spread",
                "order_level_spread", "order_refresh_time", "filled_order_delay"):
        if key not in conf:
            raise DataError(f"{path}: '{key}' missing")
        value, n = conf[key]
        out[key] = dec(value, f"{path}:{n}: {key}")
    if out["order_levels"] != out["order_levels"].to_integral_value() or out["order_levels"] < 1:
        raise DataError(f"{path}:{conf['order_levels'][1]}: order_levels must be a whole number "
                        ">= 1")
    out["order_levels"] = int(out["order_levels"])
    return out


def gunzip_to(path, target):
    try:
        with gzip.open(path, "rb") as f, open(target, "wb") as o:
            shutil.copyfileobj(f, o)
    except OSError as e:
        raise DataError(f"{path}: cannot read as gzip: {e}")


def columns(db, table):
    return {r[1] for r in db.execute(f'PRAGMA table_info("{table}")')}


def need_columns(db, name, table, wanted):
    have = columns(db, table)
    if not have:
        raise DataError(f"{name}: table \"{table}\" missing")
    missing = [c for c in wanted if c not in have]
    if missing:
        raise DataError(f"{name}: table \"{table}\" has no column {', '.join(missing)}")


def read_trades(path):
    """exchange_trade_id -> the trade export's row (price as text, as exported)."""
    out = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                raise DataError(f"{path}: empty file")
            col = {name: i for i, name in enumerate(header)}
            for need in ("exchange_trade_id", "config_file_path", "symbol", "timestamp", "order_id",
                         "trade_type", "price", "amount"):
                if need not in col:
                    raise DataError(f"{path}:1: column '{need}' missing from the header")
            for n, r in enumerate(rows, 2):
                if not r:
                    continue
                if len(r) != len(header):
                    raise DataError(f"{path}:{n}: {len(r)} fields, the header has {len(header)}")
                row = {k: r[i] for k, i in col.items()}
                row["line"] = n
                where = f"{path}:{n}"
                row["price_d"] = dec(row["price"], where + ": price")
                row["amount_d"] = dec(row["amount"], where + ": amount")
                if row["trade_type"] not in ("BUY", "SELL"):
                    raise DataError(f"{where}: trade_type '{row['trade_type']}' is not BUY or SELL")
                if row["exchange_trade_id"] in out:
                    raise DataError(f"{where}: exchange_trade_id {row['exchange_trade_id']} again")
                out[row["exchange_trade_id"]] = row
    except OSError as e:
        raise DataError(f"{path}: cannot read as gzip: {e}")
    return out


# ---------------------------------------------------------------------------------------------
# Conversion


class OrderLife:
    def __init__(self, oid, side, amount, created_ns, status_id):
        self.id = oid
        self.side = side  # "BUY" or "SELL"
        self.amount = amount
        self.created_ns = created_ns
        self.created_status = status_id
        self.end_ns = None  # the first status that ends it (cancelled, completed, ...)
        self.fills = []  # (ts_ns, status id, amount, price BTC, exchange_trade_id)
        self.price = None  # BTC
        self.estimated = False
        self.level = 0


def load(data_dir, header):
    """Reads the three inputs; returns the orders, the status rows and what the evaluation
    needs to know about them. Raises DataError naming what is wrong."""
    db_path = os.path.join(data_dir, DB_NAME)
    trades_path = os.path.join(data_dir, TRADES_NAME)
    config_path = os.path.join(data_dir, CONFIG_NAME)
    config = read_config(config_path)
    pairs, counterparty, region = read_mappings(header)
    symbol = config["market"]
    if symbol not in pairs:
        raise DataError(f"{header}: no EUR mapping for the pair {symbol} of {config_path}")
    instrument, rate = pairs[symbol]
    trades = read_trades(trades_path)

    with tempfile.TemporaryDirectory(prefix="kakunin-hb-") as tmp:
        plain_db = os.path.join(tmp, "db.sqlite")
        gunzip_to(db_path, plain_db)
        db = sqlite3.connect(f"file:{plain_db}?mode=ro", uri=True)
        try:
            need_columns(db, db_path, "Order", ["id", "config_file_path", "symbol", "order_type",
                                                "creation_timestamp", "amount", "price",
                                                "last_status"])
            need_columns(db, db_path, "OrderStatus", ["id", "order_id", "timestamp", "status"])
            need_columns(db, db_path, "TradeFill", ["order_id", "exchange_trade_id", "timestamp",
                                                    "trade_type", "price", "amount", "symbol"])
            orders_rows = db.execute('SELECT id, config_file_path, symbol, order_type, '
                                     'creation_timestamp, amount, price, last_status FROM "Order"'
                                     ).fetchall()
            status_rows = db.execute("SELECT id, order_id, timestamp, status FROM OrderStatus "
                                     "ORDER BY timestamp, id").fetchall()
            fill_rows = db.execute("SELECT order_id, exchange_trade_id, timestamp, trade_type, "
                                   "price, amount, symbol FROM TradeFill").fetchall()
        finally:
            db.close()

    raw = {}
    for oid, conf_file, sym, otype, created, amount, price, last in orders_rows:
        where = f"{db_path}: Order {oid}"
        if sym != symbol:
            raise DataError(f"{where}: symbol {sym}, the configuration trades {symbol}")
        if conf_file != CONFIG_NAME:
            raise DataError(f"{where}: config_file_path {conf_file}, expected {CONFIG_NAME}")
        if not isinstance(amount, int) or amount <= 0:
            raise DataError(f"{where}: amount {amount!r} is not a positive integer")
        raw[oid] = (EXACT.divide(Decimal(amount), SCALE), created, otype)

    # Fills: the database's row, priced from the trade export.
    fills_by = {}
    for oid, tid, ts, ttype, price, amount, sym in fill_rows:
        where = f"{db_path}: TradeFill {tid}"
        if oid not in raw:
            raise DataError(f"{where}: order {oid} is not in table Order")
        t = trades.get(tid)
        if t is None:
            raise DataError(f"{where}: not in {trades_path} (joined on exchange_trade_id)")
        amount_d = EXACT.divide(Decimal(amount), SCALE)
        if (t["order_id"] != oid or t["trade_type"] != ttype or int(t["timestamp"]) != ts or
                t["amount_d"] != amount_d or sym != t["symbol"]):
            raise DataError(f"{where}: differs from {trades_path}:{t['line']}")
        # The integer price keeps 6 decimals: it must agree with the export's price cut there.
        if EXACT.divide(Decimal(price), SCALE) != to_step(t["price_d"], Decimal("1E-6"),
                                                           ROUND_FLOOR):
            raise DataError(f"{where}: price {price} (x 1e-6) disagrees with {t['price']} in "
                            f"{trades_path}:{t['line']}")
        if t["price_d"] <= 0 or amount_d <= 0:
            raise DataError(f"{where}: no positive price and amount")
        fills_by.setdefault((oid, ts), []).append((int(tid) if tid.isdigit() else tid, tid,
                                                   ttype, amount_d, t["price_d"]))
    for v in fills_by.values():
        v.sort()

    lives = {}
    status_kinds = {}
    for sid, oid, ts, status in status_rows:
        where = f"{db_path}: OrderStatus {sid}"
        status_kinds[status] = status_kinds.get(status, 0) + 1
        if oid not in raw:
            raise DataError(f"{where}: order {oid} is not in table Order")
        if status in ("BuyOrderCreated", "SellOrderCreated"):
            if oid in lives:
                raise DataError(f"{where}: {oid} created twice")
            amount, created, _ = raw[oid]
            if created != ts:
                raise DataError(f"{where}: created at {ts}, its Order row says {created}")
            lives[oid] = OrderLife(oid, "BUY" if status == "BuyOrderCreated" else "SELL", amount,
                                   ts * NS_PER_MS, sid)
            continue
        life = lives.get(oid)
        if life is None:
            raise DataError(f"{where}: {status} before the order was created")
        if status == "OrderFilled":
            pending = fills_by.get((oid, ts))
            if not pending:
                raise DataError(f"{where}: OrderFilled with no TradeFill row of {oid} at {ts}")
            _, tid, ttype, amount, price = pending.pop(0)
            if ttype != life.side:
                raise DataError(f"{where}: a {ttype} fill of a {life.side} order")
            if life.end_ns is not None:
                raise DataError(f"{where}: a fill after the order ended")
            life.fills.append((ts * NS_PER_MS, sid, amount, price, tid))
        elif status in ("OrderCancelled", "OrderExpired", "OrderFailure",
                        "BuyOrderCompleted", "SellOrderCompleted"):
            if life.end_ns is not None:
                raise DataError(f"{where}: {status} after the order ended")
            life.end_ns = ts * NS_PER_MS
            life.end_status = (status, sid)
            filled = sum((f[2] for f in life.fills), Decimal(0))
            if status.endswith("Completed") and filled != life.amount:
                raise DataError(f"{where}: completed with fills of {plain(filled)}, the order "
                                f"was for {plain(life.amount)}")
        else:
            raise DataError(f"{where}: unknown status '{status}'")
    left = [k for k, v in fills_by.items() if v]
    if left:
        raise DataError(f"{db_path}: TradeFill rows without an OrderFilled status, e.g. {left[0]}")
    for oid in raw:
        if oid not in lives:
            raise DataError(f"{db_path}: Order {oid} has no *OrderCreated status")
    for life in lives.values():
        filled = sum((f[2] for f in life.fills), Decimal(0))
        if filled > life.amount:
            raise DataError(f"{db_path}: Order {life.id}: fills of {plain(filled)} exceed its "
                            f"amount {plain(life.amount)}")

    return {
        "config": config, "instrument": instrument, "rate": rate, "counterparty": counterparty,
        "region": region, "symbol": symbol, "lives": lives, "status_rows": status_rows,
        "status_kinds": status_kinds, "trades": trades,
        "paths": {"db": db_path, "trades": trades_path, "config": config_path},
    }


def assign_prices(d):
    """Gives every order a price in BTC (see the module's comment); returns how many estimates
    were moved away from an order they would have crossed."""
    conf = d["config"]
    lives = sorted(d["lives"].values(), key=lambda o: (o.created_ns, o.created_status))
    # Levels: rank by amount among the orders of a side created at the same moment.
    groups = {}
    for o in lives:
        groups.setdefault((o.created_ns, o.side), []).append(o)
    for g in groups.values():
        for level, o in enumerate(sorted(g, key=lambda o: (o.amount, o.created_status))):
            o.level = level
    fills = sorted(((f[0], f[1], f[3]) for o in lives for f in o.fills))
    fill_times = [(t, s) for t, s, _ in fills]
    for o in lives:
        if o.fills:
            prices = [f[3] for f in o.fills]
            o.price = max(prices) if o.side == "BUY" else min(prices)
    moved = 0
    known = [o for o in lives if o.price is not None]
    placed = list(known)
    for o in lives:
        if o.price is not None:
            continue
        i = bisect.bisect_right(fill_times, (o.created_ns, o.created_status))
        reference = fills[i - 1][2] if i > 0 else fills[0][2]
        pct = Decimal(100)
        if o.side == "BUY":
            f = 1 - (conf["bid_spread"] + o.level * conf["order_level_spread"]) / pct
            price = to_step(mul(reference, f), PRICE_STEP, ROUND_FLOOR)
        else:
            f = 1 + (conf["ask_spread"] + o.level * conf["order_level_spread"]) / pct
            price = to_step(mul(reference, f), PRICE_STEP, ROUND_CEILING)
        forever = 1 << 62  # an order that never ended works to the end of the data
        end = o.end_ns if o.end_ns is not None else forever
        others = [p for p in placed if p.side != o.side and p.created_ns <= end and
                  o.created_ns <= (p.end_ns if p.end_ns is not None else forever)]
        if o.side == "BUY" and others:
            bound = min(p.price for p in others) - PRICE_STEP
            if price > bound:
                price, moved = bound, moved + 1
        elif o.side == "SELL" and others:
            bound = max(p.price for p in others) + PRICE_STEP
            if price < bound:
                price, moved = bound, moved + 1
        if price <= 0:
            raise DataError(f"order {o.id}: no positive price estimate")
        o.price = price
        o.estimated = True
        placed.append(o)
    return moved


def events(d):
    """The rows of events.csv, in order."""
    rate, ins, cp, region = d["rate"], d["instrument"], d["counterparty"], d["region"]
    lives = d["lives"]
    fill_at = {f[1]: (o, f) for o in lives.values() for f in o.fills}
    out = []
    for sid, oid, ts, status in d["status_rows"]:
        o = lives[oid]
        t = ts * NS_PER_MS
        base = {"ts": format_ts(t), "order_id": oid, "instrument": ins, "counterparty": cp,
                "side": o.side, "quantity": "", "price": "", "region": region}
        if sid == o.created_status:
            out.append(dict(base, type="new", quantity=plain(o.amount),
                            price=plain(mul(o.price, rate))))
            out.append(dict(base, type="ack"))
        elif sid in fill_at:
            _, f = fill_at[sid]
            out.append(dict(base, type="fill", quantity=plain(f[2]), price=plain(mul(f[3], rate))))
        elif status == "OrderCancelled":
            out.append(dict(base, type="cancelled"))
        elif status == "OrderExpired":
            out.append(dict(base, type="expired"))
        elif status == "OrderFailure":
            out.append(dict(base, type="reject"))
        # *Completed: the last fill already completed the order (checked in load()).
    return out


def positions_from_trades(d):
    """The final net position per instrument, summed from the trade export alone."""
    pos = {d["instrument"]: Decimal(0)}
    for t in d["trades"].values():
        if t["config_file_path"] != CONFIG_NAME or t["symbol"] != d["symbol"]:
            continue
        a = t["amount_d"]
        pos[d["instrument"]] = add(pos[d["instrument"]], a if t["trade_type"] == "BUY" else -a)
    return {k: plain(v) for k, v in pos.items()}


# ---------------------------------------------------------------------------------------------
# The reference walk: what each limit of docs/lifecycle.md sees on these events


class Walk:
    """Follows events.csv as docs/lifecycle.md describes (working orders until the venue says
    they stopped, positions from fills, working notional at each order's price, the UTC day's
    profit by average cost marked at the latest fill); records the peak of each limit's figure at
    every new order, and the orders working at any moment asked for."""

    def __init__(self, rows, halt_ns=None):
        self.peak = {"open_orders": 0, "messages_per_second": 0, "long": Decimal(0),
                     "short": Decimal(0), "working_notional": Decimal(0),
                     "daily_notional": Decimal(0), "daily_loss": Decimal(0),
                     "order_notional": Decimal(0)}
        self.crossing = []  # new orders that meet a working order of the other side (self_trade)
        self.working = {}  # id -> [side, quantity, filled, price]
        self.position = Decimal(0)
        self.cash = Decimal(0)
        self.latest = None
        self.filled_today = Decimal(0)
        self.day = None
        self.requests = []
        self.at_halt = None
        self.worst_day = None
        for r in rows:
            t = parse_ts(r["ts"], "events")
            if halt_ns is not None and self.at_halt is None and t >= halt_ns:
                self.at_halt = sorted(self.working)
            self.step(t, r)
        if halt_ns is not None and self.at_halt is None:
            self.at_halt = sorted(self.working)

    def working_notional(self):
        total = Decimal(0)
        for side, q, filled, price in self.working.values():
            total = add(total, mul(sub(q, filled), price))
        return total

    def new_day(self, t):
        day = t // NS_PER_DAY
        if self.day is None or day > self.day:
            self.day = day
            self.filled_today = Decimal(0)
            value = mul(self.position, self.latest) if self.latest is not None else Decimal(0)
            self.cash = -value

    def step(self, t, r):
        self.new_day(t)
        p = self.peak
        kind = r["type"]
        if kind in REQUESTS:
            window = [x for x in self.requests if t - x < NS_PER_S]
            self.requests = window + [t]
            p["messages_per_second"] = max(p["messages_per_second"], len(self.requests))
        if kind == "new":
            q, price = Decimal(r["quantity"]), Decimal(r["price"])
            n = mul(q, price)
            wb = sum((w[1] - w[2] for w in self.working.values() if w[0] == "BUY"), Decimal(0))
            ws = sum((w[1] - w[2] for w in self.working.values() if w[0] == "SELL"), Decimal(0))
            if r["side"] == "BUY":
                p["long"] = max(p["long"], self.position + wb + q)
                crosses = any(w[0] == "SELL" and w[3] <= price for w in self.working.values())
            else:
                p["short"] = max(p["short"], -(self.position - ws - q))
                crosses = any(w[0] == "BUY" and w[3] >= price for w in self.working.values())
            if crosses:
                self.crossing.append(r["order_id"])
            wn = self.working_notional()
            p["open_orders"] = max(p["open_orders"], len(self.working) + 1)
            p["working_notional"] = max(p["working_notional"], add(wn, n))
            p["daily_notional"] = max(p["daily_notional"], add(add(self.filled_today, wn), n))
            p["order_notional"] = max(p["order_notional"], n)
            self.working[r["order_id"]] = [r["side"], q, Decimal(0), price]
        elif kind == "fill":
            q, price = Decimal(r["quantity"]), Decimal(r["price"])
            n = mul(q, price)
            signed = q if r["side"] == "BUY" else -q
            self.position = add(self.position, signed)
            self.cash = sub(self.cash, n) if r["side"] == "BUY" else add(self.cash, n)
            self.latest = price
            self.filled_today = add(self.filled_today, n)
            w = self.working.get(r["order_id"])
            if w is not None:
                w[2] = add(w[2], q)
                if w[2] >= w[1]:
                    del self.working[r["order_id"]]
            loss = -(add(self.cash, mul(self.position, price)))
            if loss > p["daily_loss"]:
                p["daily_loss"] = loss
                self.worst_day = format_ts(t)[:10]
        elif kind in ENDS:
            self.working.pop(r["order_id"], None)
        elif kind == "mark":
            self.latest = Decimal(r["price"])


def busiest_hour(rows):
    """The hour (a window starting at an event) with the most events; returns (start, end, n)."""
    times = [parse_ts(r["ts"], "events") for r in rows]
    best = (0, 0)
    j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= 3600 * NS_PER_S:
            j += 1
        if i - j + 1 > best[0]:
            best = (i - j + 1, j)
    n, j = best
    return times[j], times[j] + 3600 * NS_PER_S, n


def halt_moment(rows, start, end):
    """In the busiest hour, the moment with the most orders working, just after the event that
    made it so (1 ms later, before anything else happens), the one nearest the hour's middle: a
    halt then has the most to cancel.
    Orders stop working as docs/lifecycle.md says: at cancelled, expired, reject or the fill that
    completes them."""
    working = {}  # id -> quantity still to fill
    best = None
    for k, r in enumerate(rows):
        t = parse_ts(r["ts"], "events")
        if r["type"] == "new":
            working[r["order_id"]] = Decimal(r["quantity"])
        elif r["type"] == "fill" and r["order_id"] in working:
            working[r["order_id"]] -= Decimal(r["quantity"])
            if working[r["order_id"]] <= 0:
                del working[r["order_id"]]
        elif r["type"] in ENDS:
            working.pop(r["order_id"], None)
        if start <= t < end:
            nxt = parse_ts(rows[k + 1]["ts"], "events") if k + 1 < len(rows) else None
            if nxt is not None and nxt <= t + NS_PER_MS:
                continue  # something else happens within the millisecond
            key = (len(working), -abs(t - (start + end) // 2))
            if best is None or key > best[1]:
                best = (t + NS_PER_MS, key)
    return best[0]


def size_scope(d, peak):
    """The scope, each figure as SCOPE_SIZING says."""
    conf = d["config"]
    levels = conf["order_levels"]
    ins = d["instrument"]
    cur = ins.split("_")[1]

    def money(x):
        cents = to_step(round_up_2sig(x), Decimal("0.01"), ROUND_CEILING)
        return {"currency": cur, "amount": format(cents.quantize(Decimal("0.01")), "f")}

    def count(config_figure, observed):
        return max(config_figure, int(to_step(MARGIN * observed, Decimal(1), ROUND_CEILING)))

    limits = {
        "max_position": {ins: {"long": plain(round_up_2sig(MARGIN * peak["long"])),
                               "short": plain(round_up_2sig(MARGIN * peak["short"]))}},
        "max_open_orders": count(2 * 2 * levels, peak["open_orders"]),
        "max_working_notional": money(MARGIN * peak["working_notional"]),
        "max_messages_per_second": count(2 * 2 * levels, peak["messages_per_second"]),
        "max_daily_loss": money(MARGIN * max(peak["daily_loss"], Decimal("0.01"))),
        "max_daily_notional": money(MARGIN * peak["daily_notional"]),
    }
    return {
        "version": 1,
        "max_transaction": money(MARGIN * peak["order_notional"]),
        "instruments": [ins],
        "counterparties": [d["counterparty"]],
        "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                           "from": "00:00", "to": "24:00"}],
        "regions": [d["region"]],
        "limits": limits,
    }


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EVENTS_HEADER, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=False)
        f.write("\n")


def convert(data_dir, out, header):
    d = load(data_dir, header)
    moved = assign_prices(d)
    rows = events(d)
    os.makedirs(out, exist_ok=True)
    write_csv(os.path.join(out, "events.csv"), rows)
    positions = positions_from_trades(d)
    write_json(os.path.join(out, "positions.json"), positions)

    start, end, n = busiest_hour(rows)
    halt = halt_moment(rows, start, end)
    walk = Walk(rows, halt)
    scope = size_scope(d, walk.peak)
    write_json(os.path.join(out, "scope.json"), scope)
    lives = d["lives"].values()
    counts = {}
    for r in rows:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    facts = {
        "source": {k: os.path.basename(v) for k, v in d["paths"].items()},
        "pair": d["symbol"], "instrument": d["instrument"],
        "eur_per_quote_unit": plain(d["rate"]),
        "orders": len(d["lives"]), "status_rows": len(d["status_rows"]),
        "statuses": d["status_kinds"], "fills": sum(len(o.fills) for o in lives),
        "events": counts, "requests": counts.get("new", 0) + counts.get("amend", 0) +
        counts.get("cancel", 0),
        "first_ts": rows[0]["ts"], "last_ts": rows[-1]["ts"],
        "prices": {"from_fills": sum(1 for o in lives if not o.estimated),
                   "estimated": sum(1 for o in lives if o.estimated),
                   "estimates_moved_off_a_crossing": moved,
                   "orders_filled_at_several_prices":
                       sum(1 for o in lives if len({f[3] for f in o.fills}) > 1)},
        "busiest_hour": {"from": format_ts(start), "to": format_ts(end), "events": n},
        "halt_at": format_ts(halt), "working_at_halt": walk.at_halt,
        "working_at_end": sorted(walk.working),
        # New orders at a price that meets the bot's own working order of the other side, both
        # prices from fills: the data show the bot's buy and sell at one price at once, which
        # the self-trade rule refuses (equal prices cross).
        "self_crossing_orders": walk.crossing,
        "final_position_walk": {d["instrument"]: plain(walk.position)},
        "peaks": {k: (plain(v) if isinstance(v, Decimal) else v) for k, v in walk.peak.items()},
        "worst_loss_day": walk.worst_day,
        "config": {k: (plain(v) if isinstance(v, Decimal) else v)
                   for k, v in d["config"].items()},
        "margin": plain(MARGIN), "sizing": SCOPE_SIZING,
    }
    write_json(os.path.join(out, "facts.json"), facts)
    problems = check(out)
    return facts, problems


# ---------------------------------------------------------------------------------------------
# check


def check(out):
    """Problems with OUT's files, as 'file:line: column: problem' strings (empty: well formed)."""
    problems = []
    path = os.path.join(out, "events.csv")

    def bad(line, column, text):
        problems.append(f"{path}:{line}: {column}: {text}")

    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as e:
        return [f"{path}: cannot read: {e.strerror}"]
    rows = []
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != EVENTS_HEADER:
            return [f"{path}:1: header is {header}, expected {','.join(EVENTS_HEADER)}"]
        previous = None
        lives = {}
        positions = {}
        for n, cells in enumerate(reader, 2):
            if len(cells) != len(header):
                bad(n, "-", f"{len(cells)} fields, the header has {len(header)}")
                continue
            r = dict(zip(header, cells))
            try:
                t = parse_ts(r["ts"], f"{path}:{n}")
            except DataError as e:
                problems.append(str(e))
                continue
            if previous is not None and t < previous:
                bad(n, "ts", "earlier than the row before (rows must be in time order)")
            previous = t
            cells_ok = len(problems)
            kind = r["type"]
            if kind not in TYPES:
                bad(n, "type", f"'{kind}' is not one of {', '.join(sorted(TYPES))}")
                continue
            if not r["order_id"] and kind != "mark":
                bad(n, "order_id", "empty")
            if not re.fullmatch(r"[A-Z0-9]+_[A-Z]{3}", r["instrument"]) and kind in ("new",
                                                                                     "mark"):
                bad(n, "instrument", f"'{r['instrument']}' is not BASE_QUOTE")
            if kind in ("new", "fill") and r["side"] not in ("BUY", "SELL"):
                bad(n, "side", f"'{r['side']}' is not BUY or SELL")
            for column in ("quantity", "price"):
                v = r[column]
                if kind in ("new", "fill") or (kind == "mark" and column == "price"):
                    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", v) or Decimal(v) <= 0:
                        bad(n, column, f"'{v}' is not a positive plain decimal")
                    elif len(v.replace(".", "").lstrip("0")) > 18:
                        bad(n, column, f"'{v}' has more than 18 significant digits")
                elif kind in ("ack", "cancel", "cancelled", "expired", "reject") and v:
                    bad(n, column, f"'{v}' given on a {kind} row")
            if len(problems) != cells_ok:
                continue
            if kind == "fill":  # a fact, whatever else is wrong with the row's order
                q = Decimal(r["quantity"])
                positions[r["instrument"]] = positions.get(r["instrument"], Decimal(0)) + (
                    q if r["side"] == "BUY" else -q)
            oid = r["order_id"]
            life = lives.get(oid)
            if kind == "new":
                if life is not None and not life["ended"]:
                    bad(n, "order_id", f"{oid} is new again while working")
                lives[oid] = {"q": Decimal(r["quantity"]), "filled": Decimal(0), "acked": False,
                              "ended": False, "side": r["side"], "line": n}
            elif kind in ("ack", "fill", "cancelled", "expired", "reject", "cancel", "amend"):
                if life is None:
                    bad(n, "order_id", f"{oid} has no new row before")
                    continue
                if life["ended"]:
                    bad(n, "type", f"{kind} after the order ended")
                    continue
                if kind == "ack":
                    life["acked"] = True
                elif kind == "fill":
                    if not life["acked"]:
                        bad(n, "type", "fill before the order's ack")
                    if r["side"] != life["side"]:
                        bad(n, "side", f"{r['side']} fill of a {life['side']} order")
                    life["filled"] += Decimal(r["quantity"])
                    if life["filled"] > life["q"]:
                        bad(n, "quantity", f"fills of {plain(life['filled'])} exceed the order's "
                                           f"{plain(life['q'])}")
                    if life["filled"] >= life["q"]:
                        life["ended"] = True
                elif kind in ENDS:
                    life["ended"] = True
            rows.append(r)
    try:
        expected = json.load(open(os.path.join(out, "positions.json"), encoding="utf-8"))
    except (OSError, ValueError) as e:
        return problems + [f"{os.path.join(out, 'positions.json')}: cannot read: {e}"]
    got = {k: plain(v) for k, v in positions.items()}
    for k in set(expected) | set(got):
        if expected.get(k, "0") != got.get(k, "0"):
            problems.append(f"{path}: the fills add up to {got.get(k, '0')} {k}, positions.json "
                            f"says {expected.get(k, '0')}")
    for name in ("scope.json", "facts.json"):
        try:
            json.load(open(os.path.join(out, name), encoding="utf-8"))
        except (OSError, ValueError) as e:
            problems.append(f"{os.path.join(out, name)}: not JSON: {e}")
    return problems


# ---------------------------------------------------------------------------------------------
# compare


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise DataError(f"{path}:{n}: not JSON: {e}")
    return out


def load_json(path):
    try:
        return json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as JSON: {e}")


def rejected_requests(decisions, explained=()):
    """(requests rejected, reason -> count, rejected requests not among `explained` ids, those
    among them that were not rejected for self_trade alone)."""
    reasons = {}
    n = 0
    unexplained = []
    for d in decisions:
        if d.get("decision") == "reject":
            n += 1
            for r in d.get("reasons", []):
                reasons[r] = reasons.get(r, 0) + 1
            if d.get("order_id") not in explained or d.get("reasons") != ["self_trade"]:
                unexplained.append(d)
    return n, reasons, unexplained


def compare(args):
    facts = load_json(os.path.join(args.out, "facts.json"))
    expected = load_json(os.path.join(args.out, "positions.json"))
    summary = load_json(args.summary)
    state = load_json(args.state)
    decisions = read_jsonl(args.decisions)
    crossing = set(facts["self_crossing_orders"])
    figures = {"instrument": facts["instrument"], "requests": len(decisions),
               "requests_expected": facts["requests"], "summary": summary}
    goals = []  # (figure, replay, goal, met or None when it is only reported)
    n, reasons, unexplained = rejected_requests(decisions, crossing)
    figures["rejected"] = n
    figures["rejected_reasons"] = reasons
    figures["rejected_unexplained"] = [d.get("order_id") for d in unexplained]
    goals.append(("requests decided (one decision line per new, amend, cancel)",
                  str(len(decisions)), str(facts["requests"]), len(decisions) == facts["requests"]))
    goals.append(("requests rejected", str(n),
                  f"0 ({len(crossing)} forced by the data, below)" if crossing else "0",
                  None if crossing else n == 0))
    goals.append(("requests rejected other than the bot's own crossings for self_trade",
                  str(len(unexplained)), "0", not unexplained))
    got = state.get("positions", {})
    for ins, want in expected.items():
        have = got.get(ins)
        figures.setdefault("position", {})[ins] = {"replay": have, "fills": want}
        ok = have is not None and Decimal(have) == Decimal(want)
        goals.append((f"final position {ins} (--state-out)", str(have),
                      f"{want} (summed from the fills)", ok))
    wo = state.get("working_orders", [])
    figures["working_at_end"] = len(wo)
    goals.append(("orders working at the end (--state-out)", str(len(wo)),
                  str(len(facts["working_at_end"])), len(wo) == len(facts["working_at_end"])))
    if args.halt_summary:
        hs = load_json(args.halt_summary)
        ids = sorted(hs.get("cancel_on_halt", []))
        want_ids = facts["working_at_halt"]
        figures["halt_at"] = facts["halt_at"]
        figures["cancel_on_halt"] = ids
        figures["working_at_halt_expected"] = want_ids
        goals.append((f"orders working at the halt {facts['halt_at']} (cancel_on_halt)",
                      str(len(ids)), f"{len(want_ids)}, the same ids",
                      ids == want_ids and len(ids) > 0))
        if args.halt_decisions:
            hd = read_jsonl(args.halt_decisions)
            halt_ns = parse_ts(facts["halt_at"], "facts.json")
            before = [x for x in hd if x.get("ts_ns", 0) < halt_ns]
            after = [x for x in hd if x.get("ts_ns", 0) >= halt_ns]
            _, _, ub = rejected_requests(before, crossing)
            na, ra, _ = rejected_requests(after)
            figures["halt_run"] = {"unexplained_rejections_before": len(ub),
                                   "rejected_after": na, "requests_after": len(after),
                                   "reasons_after": ra}
            goals.append(("halt run: rejections before the halt other than the crossings",
                          str(len(ub)), "0", not ub))
            goals.append(("halt run: requests allowed after the halt", str(len(after) - na), "0",
                          na == len(after) and len(after) > 0))
        if args.halt_state:
            hst = load_json(args.halt_state).get("positions", {})
            for ins, want in expected.items():
                have = hst.get(ins)
                goals.append((f"halt run: final position {ins} (fills after the halt still count)",
                              str(have), want, have is not None and Decimal(have) == Decimal(want)))
    met = all(g[3] is not False for g in goals)
    figures["goals_met"] = met
    lines = ["", f"## The lifecycle of a real bot ({facts['pair']} as {facts['instrument']}, "
                 f"{facts['first_ts']} to {facts['last_ts']})", "",
             f"{facts['orders']} orders, {facts['fills']} fills, {facts['requests']} requests; "
             f"events: " + ", ".join(f"{k} {v}" for k, v in sorted(facts["events"].items())), "",
             "| figure | replay | goal | met |", "|---|---|---|---|"]
    for name, have, want, ok in goals:
        mark = "-" if ok is None else "yes" if ok else "NO"
        lines.append(f"| {name} | {have} | {want} | {mark} |")
    if reasons:
        lines.append("")
        lines.append("rejected for: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    if crossing:
        lines.append(f"the data's own crossings (a new order at the price of the bot's working order "
                     f"of the other side, both prices from fills): {', '.join(sorted(crossing))}")
    for d in unexplained[:10]:
        lines.append(f"unexplained: line {d.get('line')} {d.get('type')} {d.get('order_id')}: "
                     f"{', '.join(d.get('reasons', []))}")
    lines.append("")
    print("\n".join(lines))
    if args.figures:
        write_json(args.figures, figures)
    return 0 if met else 3


# ---------------------------------------------------------------------------------------------
# self-test: a small database in Hummingbot's schema, written here


def self_test(header):
    with tempfile.TemporaryDirectory(prefix="kakunin-hb-test-") as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        with open(os.path.join(data, CONFIG_NAME), "w") as f:
            f.write("strategy: pure_market_making\nexchange: kucoin\nmarket: EDG-BTC\n"
                    "bid_spread: 0.01\nask_spread: 0.01\norder_refresh_time: 300.0\n"
                    "order_amount: 100.0\norder_levels: 1\norder_level_amount: 0\n"
                    "order_level_spread: 0.25\nfilled_order_delay: 60\n")
        db_path = os.path.join(tmp, "db.sqlite")
        db = sqlite3.connect(db_path)
        db.executescript("""
            CREATE TABLE "Order" (id TEXT, config_file_path TEXT, strategy TEXT, market TEXT,
              symbol TEXT, base_asset TEXT, quote_asset TEXT, creation_timestamp BIGINT,
              order_type TEXT, amount BIGINT, leverage INTEGER, price BIGINT, last_status TEXT,
              last_update_timestamp BIGINT, exchange_order_id TEXT, position TEXT);
            CREATE TABLE OrderStatus (id INTEGER, order_id TEXT, timestamp BIGINT, status TEXT);
            CREATE TABLE TradeFill (config_file_path TEXT, strategy TEXT, market TEXT,
              symbol TEXT, base_asset TEXT, quote_asset TEXT, timestamp BIGINT, order_id TEXT,
              trade_type TEXT, order_type TEXT, price BIGINT, amount BIGINT, leverage INTEGER,
              trade_fee JSON, exchange_trade_id TEXT, position TEXT);""")
        orders = [("B1", 1000, 100_000000, "BuyOrderCompleted"),
                  ("S1", 1000, 100_000000, "OrderCancelled"),
                  ("B2", 5000, 40_000000, "OrderCancelled")]
        for oid, ts, amount, last in orders:
            db.execute('INSERT INTO "Order" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)',
                       (oid, CONFIG_NAME, "pure_market_making", "kucoin", "EDG-BTC", "EDG", "BTC",
                        ts, "LIMIT_MAKER", amount, 1, 0, last, ts, "x", "NIL"))
        statuses = [(1, "B1", 1000, "BuyOrderCreated"), (2, "S1", 1000, "SellOrderCreated"),
                    (3, "B1", 2000, "OrderFilled"), (4, "B1", 2000, "OrderFilled"),
                    (5, "B1", 2000, "BuyOrderCompleted"), (7, "S1", 3000, "OrderCancelled"),
                    (6, "S1", 2500, "OrderFilled"), (8, "B2", 5000, "BuyOrderCreated"),
                    (9, "B2", 6000, "OrderCancelled")]
        db.executemany("INSERT INTO OrderStatus VALUES (?,?,?,?)", statuses)
        fills = [("B1", 2000, "BUY", 60_000000, "11"), ("B1", 2000, "BUY", 40_000000, "12"),
                 ("S1", 2500, "SELL", 30_000000, "13")]
        for oid, ts, side, amount, tid in fills:
            db.execute("INSERT INTO TradeFill VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (CONFIG_NAME, "pure_market_making", "kucoin", "EDG-BTC", "EDG", "BTC", ts,
                        oid, side, "LIMIT_MAKER", 0, amount, 1, "{}", tid, "NIL"))
        db.commit()
        db.close()
        with open(db_path, "rb") as f, gzip.open(os.path.join(data, DB_NAME), "wb") as g:
            shutil.copyfileobj(f, g)
        with gzip.open(os.path.join(data, TRADES_NAME), "wt", newline="") as g:
            g.write("exchange_trade_id,config_file_path,strategy,market,symbol,base_asset,"
                    "quote_asset,timestamp,order_id,trade_type,order_type,price,amount\n")
            for oid, ts, side, amount, tid, price in [
                    ("B1", 2000, "BUY", "60", "11", "2.98E-8"),
                    ("B1", 2000, "BUY", "40", "12", "2.97E-8"),
                    ("S1", 2500, "SELL", "30", "13", "3E-8")]:
                g.write(f"{tid},{CONFIG_NAME},pure_market_making,kucoin,EDG-BTC,EDG,BTC,{ts},{oid},"
                        f"{side},LIMIT_MAKER,{price},{amount}\n")
        out = os.path.join(tmp, "out")
        facts, problems = convert(data, out, header)
        assert problems == [], problems
        got = list(csv.reader(open(os.path.join(out, "events.csv"), newline="")))
        rate = "15425"
        assert rate == facts["eur_per_quote_unit"], facts["eur_per_quote_unit"]
        want = [EVENTS_HEADER,
                ["1970-01-01T00:00:01Z", "new", "B1", "EDGBTC_EUR", "kucoin", "BUY", "100",
                 plain(Decimal("2.98E-8") * 15425), "eu-west-1"],
                ["1970-01-01T00:00:01Z", "ack", "B1", "EDGBTC_EUR", "kucoin", "BUY", "", "",
                 "eu-west-1"],
                ["1970-01-01T00:00:01Z", "new", "S1", "EDGBTC_EUR", "kucoin", "SELL", "100",
                 plain(Decimal("3E-8") * 15425), "eu-west-1"],
                ["1970-01-01T00:00:01Z", "ack", "S1", "EDGBTC_EUR", "kucoin", "SELL", "", "",
                 "eu-west-1"],
                ["1970-01-01T00:00:02Z", "fill", "B1", "EDGBTC_EUR", "kucoin", "BUY", "60",
                 plain(Decimal("2.98E-8") * 15425), "eu-west-1"],
                ["1970-01-01T00:00:02Z", "fill", "B1", "EDGBTC_EUR", "kucoin", "BUY", "40",
                 plain(Decimal("2.97E-8") * 15425), "eu-west-1"],
                ["1970-01-01T00:00:02.500000000Z", "fill", "S1", "EDGBTC_EUR", "kucoin", "SELL",
                 "30", plain(Decimal("3E-8") * 15425), "eu-west-1"],
                ["1970-01-01T00:00:03Z", "cancelled", "S1", "EDGBTC_EUR", "kucoin", "SELL", "",
                 "", "eu-west-1"],
                # B2 has no fill: reference 3E-8 (the latest fill) x (1 - 0.01 %), rounded down
                # to the price step, in EUR.
                ["1970-01-01T00:00:05Z", "new", "B2", "EDGBTC_EUR", "kucoin", "BUY", "40",
                 plain(Decimal("2.99E-8") * 15425), "eu-west-1"],
                ["1970-01-01T00:00:05Z", "ack", "B2", "EDGBTC_EUR", "kucoin", "BUY", "", "",
                 "eu-west-1"],
                ["1970-01-01T00:00:06Z", "cancelled", "B2", "EDGBTC_EUR", "kucoin", "BUY", "", "",
                 "eu-west-1"]]
        assert got == want, "\n".join(",".join(r) for r in got)
        assert json.load(open(os.path.join(out, "positions.json"))) == {"EDGBTC_EUR": "70"}
        assert facts["prices"] == {"from_fills": 2, "estimated": 1,
                                   "estimates_moved_off_a_crossing": 0,
                                   "orders_filled_at_several_prices": 1}, facts["prices"]
        scope = json.load(open(os.path.join(out, "scope.json")))
        # Peaks: two new orders in the same second, 2 working (the configuration's 2 x 1 level x
        # 2 = 4 is more); long 110 (B2: position 100 - 30, + 40), short 100 (S1); x 1.5 rounded
        # up to two significant digits.
        assert facts["peaks"]["long"] == "110" and facts["peaks"]["short"] == "100", facts
        assert scope["limits"]["max_open_orders"] == 4, scope
        assert scope["limits"]["max_messages_per_second"] == 4, scope
        assert scope["limits"]["max_position"] == {"EDGBTC_EUR": {"long": "170",
                                                                  "short": "150"}}, scope
        assert facts["working_at_end"] == [], facts
        # check() finds what is wrong: a fill above the order's quantity, a row out of time
        # order, and positions that disagree.
        lines = open(os.path.join(out, "events.csv")).read().splitlines()
        lines[5] = lines[5].replace(",60,", ",61,")
        lines[7], lines[8] = lines[8], lines[7]
        open(os.path.join(out, "events.csv"), "w").write("\n".join(lines) + "\n")
        problems = check(out)
        assert any(":7: quantity: fills of 101 exceed" in p for p in problems), problems
        assert any(":9: ts: earlier than the row before" in p for p in problems), problems
        assert any(":9: type: fill after the order ended" in p for p in problems), problems
        assert any("the fills add up to 71 EDGBTC_EUR, positions.json says 70" in p
                   for p in problems), problems
        # compare: a replay that agrees meets every goal; a position one unit off does not.
        write_csv(os.path.join(out, "events.csv"), [r for r in csv.DictReader(
            io.StringIO("\n".join(",".join(x) for x in want) + "\n"))])
        halt_ns = parse_ts(facts["halt_at"], "facts")
        news = [(k + 2, r) for k, r in enumerate(want[1:]) if r[1] == "new"]
        def replay_files(name, position, halt):
            lines = []
            for line, r in news:
                t = parse_ts(r[0], "self-test")
                stopped = halt and t >= halt_ns
                lines.append(json.dumps({"line": line, "type": "new", "order_id": r[2],
                                         "ts_ns": t, "decision": "reject" if stopped else "allow",
                                         "reasons": ["halted"] if stopped else []}))
            base = os.path.join(tmp, name)
            open(base + ".jsonl", "w").write("\n".join(lines) + "\n")
            write_json(base + ".state.json", {"positions": {"EDGBTC_EUR": position},
                                              "working_orders": []})
            write_json(base + ".summary.json",
                       {"cancel_on_halt": facts["working_at_halt"]} if halt else {})
            return base
        assert facts["working_at_halt"], facts
        for position, code in (("70", 0), ("71", 3)):
            full, halted = replay_files("full", position, False), replay_files("halt", "70", True)
            ns = argparse.Namespace(out=out, summary=full + ".summary.json",
                                    state=full + ".state.json", decisions=full + ".jsonl",
                                    halt_summary=halted + ".summary.json",
                                    halt_decisions=halted + ".jsonl",
                                    halt_state=halted + ".state.json", figures=None)
            with contextlib.redirect_stdout(io.StringIO()):
                got_code = compare(ns)
            assert got_code == code, (position, got_code)
        # Fail closed on input: an unknown status names its row.
        db = sqlite3.connect(db_path)
        db.execute("INSERT INTO OrderStatus VALUES (10, 'B2', 7000, 'OrderLost')")
        db.commit()
        db.close()
        with open(db_path, "rb") as f, gzip.open(os.path.join(data, DB_NAME), "wb") as g:
            shutil.copyfileobj(f, g)
        try:
            convert(data, out, header)
            raise AssertionError("an unknown status was accepted")
        except DataError as e:
            assert "OrderStatus 10: unknown status 'OrderLost'" in str(e), str(e)
    print("hummingbot_events self-test: conversion, checks and refusals as expected")
    return 0


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--header", default=os.path.join(here, "hummingbot_orders.hpp"),
                   help="where the pair mappings are (default: bench/hummingbot_orders.hpp)")
    sub_ = p.add_subparsers(dest="command", required=True)
    c = sub_.add_parser("convert")
    c.add_argument("--data", required=True)
    c.add_argument("--out", required=True)
    k = sub_.add_parser("check")
    k.add_argument("--out", required=True)
    m = sub_.add_parser("compare")
    m.add_argument("--out", required=True)
    m.add_argument("--summary", required=True)
    m.add_argument("--state", required=True)
    m.add_argument("--decisions", required=True)
    m.add_argument("--halt-summary")
    m.add_argument("--halt-decisions")
    m.add_argument("--halt-state")
    m.add_argument("--figures")
    sub_.add_parser("self-test")
    args = p.parse_args(argv)
    try:
        if args.command == "convert":
            facts, problems = convert(args.data, args.out, args.header)
            for line in problems:
                print(line, file=sys.stderr)
            if problems:
                return 1
            print(f"{facts['orders']} orders, {facts['fills']} fills -> "
                  f"{sum(facts['events'].values())} events in {args.out}/events.csv "
                  f"({facts['prices']['estimated']} order prices estimated); halt at "
                  f"{facts['halt_at']} with {len(facts['working_at_halt'])} working",
                  file=sys.stderr)
            return 0
        if args.command == "check":
            problems = check(args.out)
            for line in problems:
                print(line, file=sys.stderr)
            return 1 if problems else 0
        if args.command == "compare":
            return compare(args)
        return self_test(args.header)
    except DataError as e:
        print(f"hummingbot_events: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
