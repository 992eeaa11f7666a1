"""kakunin.agent — an order-placing function as an LLM tool the model cannot talk its way around.

    import kakunin, kakunin.agent

    def send_to_venue(order: kakunin.Order, decision: kakunin.Decision):
        return venue.place(order)                       # only ever called for allowed orders

    tool = kakunin.agent.OrderTool(guard, send_to_venue, region="eu-west-1",
                                   counterparty="exchange_a")
    tools = [tool.schema]                               # OpenAI-style function calling
    ...
    result_json = tool.call(tool_call.function.arguments)   # JSON text or a dict
    messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result_json})

What the tool does with every call, in order:
1. reads the model's arguments strictly: exactly the published members (an unknown one such as
   "force" or "skip_checks" is refused, never ignored), amounts exact (a JSON number is read from
   the text as a decimal; an already parsed float is refused), `reasoning` required;
2. builds the Order (the region is the deployment's, never the model's; the client order id is
   the tool's); the model's stated reasoning goes into Order.reasoning, so it is in the audit
   record beside the decision;
3. checks it with the Guard — there is no argument, flag or mode that skips this;
4. calls the real function only when the decision allows the order;
5. returns the decision and its reasons as the tool result (a JSON object), including for bad
   arguments and for a function that raised: nothing raises into the agent loop.
"""

from __future__ import annotations

import decimal
import itertools
import json
import re
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from . import _kakunin as _k

__all__ = ["OrderTool", "ToolResult"]

ToolResult = Dict[str, Any]

_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_SIDES = {"buy": _k.Side.buy, "sell": _k.Side.sell}
_MAX_REASONING = 512  # what an audit record keeps whole beside the order's fields

_HARD_LIMITS_NOTE = ("These limits were approved by a named person and are enforced in code "
                     "outside the model: no argument, instruction or reasoning changes them.")


class OrderTool:
    """Wraps `place_order(order, decision)` as a function-calling tool behind `guard`.

    `guard` is a kakunin.Guard; `place_order` is called with the checked kakunin.Order and its
    Decision, only when the decision allows the order, and its return value (if JSON-encodable,
    else its repr) goes back to the model as `result`. `region` is where orders are signed (the
    deployment's fact). `counterparty` is the default venue; the model may name another, which
    the Guard then checks like everything else. Thread-safe: calls may come from several threads.
    """

    def __init__(self, guard: "_k.Guard", place_order: Callable[["_k.Order", "_k.Decision"], Any], *,
                 region: str, counterparty: Optional[str] = None, name: str = "place_order",
                 description: Optional[str] = None, instruments: Optional[List[str]] = None,
                 id_prefix: str = "llm"):
        if not callable(place_order):
            raise TypeError("place_order: expected a callable taking (order, decision)")
        if not region:
            raise ValueError("region: where orders are signed is required")
        self._guard = guard
        self._place = place_order
        self._region = region
        self._counterparty = counterparty
        self._name = name
        self._instruments = list(instruments) if instruments is not None else list(guard.scope().instruments)
        self._description = description or (
            "Place one limit order. Every order is checked against the agent's approved limits "
            "before it is sent; the result says whether it was placed and, if not, why.")
        self._ids = itertools.count(1)
        self._id_prefix = id_prefix
        self._lock = threading.Lock()

    # ---- what the model sees -----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def schema(self) -> Dict[str, Any]:
        """The tool in OpenAI-style function calling form."""
        amount = {"type": "string", "pattern": _DECIMAL_TEXT.pattern}
        properties: Dict[str, Any] = {
            "instrument": {"type": "string", "description": "BASE_QUOTE, e.g. BTC_EUR",
                           "enum": self._instruments},
            "side": {"type": "string", "enum": ["buy", "sell"]},
            "quantity": dict(amount, description="Base units as a decimal string, e.g. \"0.25\""),
            "price": dict(amount, description="Limit price in the quote currency, e.g. \"42000.00\""),
            "reference_price": dict(amount, description="The last trade or mid price you saw"),
            "counterparty": {"type": "string", "description": "Venue id"},
            "reasoning": {"type": "string", "maxLength": _MAX_REASONING,
                          "description": "Why you place this order (kept in the audit record)"},
        }
        required = ["instrument", "side", "quantity", "price", "reference_price", "reasoning"]
        if self._counterparty is None:
            required.append("counterparty")
        return {"type": "function",
                "function": {"name": self._name, "description": self._description,
                             "parameters": {"type": "object", "properties": properties,
                                            "required": required, "additionalProperties": False}}}

    # ---- a call ----------------------------------------------------------------------------

    def call(self, arguments: Union[str, bytes, Mapping[str, Any]]) -> str:
        """The tool result as JSON text (what goes into the tool message)."""
        return json.dumps(self.invoke(arguments), sort_keys=True)

    __call__ = call

    def invoke(self, arguments: Union[str, bytes, Mapping[str, Any]]) -> ToolResult:
        """The tool result as a dict. Never raises for anything the model or the venue did."""
        try:
            args, problems = self._read(arguments)
            if problems:
                return self._refusal(problems)
            order = self._order(args)
        except Exception as e:  # a conversion this module did not foresee: still a refusal
            return self._refusal([f"{type(e).__name__}: {e}"])
        decision = self._guard.check(order)  # always: nothing above can skip it
        result: ToolResult = {
            "tool": self._name,
            "client_order_id": order.client_order_id,
            "decision": decision.verdict.name,
            "reasons": [r.name for r in decision.reasons],
            "score_ppm": decision.score_ppm,
        }
        if not decision.allowed:
            result["status"] = "rejected"
            result["message"] = ("Order not placed: the risk gate rejected it ("
                                 + ", ".join(result["reasons"]) + "). " + _HARD_LIMITS_NOTE)
            return result
        try:
            placed = self._place(order, decision)
        except Exception as e:
            result["status"] = "failed"
            result["message"] = f"The order passed the risk gate but placing it failed: {type(e).__name__}: {e}"
            return result
        result["status"] = "placed"
        result["message"] = "Order placed." + (" (with a behaviour warning)" if decision.verdict == _k.Verdict.warn else "")
        result["result"] = _jsonable(placed)
        return result

    # ---- the strict reading of the model's arguments -------------------------------------------

    def _read(self, arguments):
        if isinstance(arguments, (bytes, bytearray)):
            arguments = arguments.decode("utf-8", errors="replace")
        if isinstance(arguments, str):
            try:
                # Numbers are read from the text itself: exact, never through a float.
                arguments = json.loads(arguments, parse_float=decimal.Decimal,
                                       parse_constant=lambda c: c)
            except ValueError as e:
                return None, [f"arguments: not a JSON object ({e})"]
        if not isinstance(arguments, Mapping):
            return None, ["arguments: expected a JSON object"]
        schema = self.schema["function"]["parameters"]
        problems = []
        for key in arguments:
            if key not in schema["properties"]:
                problems.append(f"{key}: unknown argument (the tool takes only "
                                + ", ".join(sorted(schema["properties"])) + ")")
        for key in schema["required"]:
            if key not in arguments or arguments[key] in (None, ""):
                problems.append(f"{key}: required")
        out: Dict[str, Any] = {}
        for key, value in arguments.items():
            if key not in schema["properties"] or value is None:
                continue
            if key in ("quantity", "price", "reference_price"):
                text, problem = _amount(key, value)
                if problem:
                    problems.append(problem)
                out[key] = text
            elif key == "side":
                if not isinstance(value, str) or value.lower() not in _SIDES:
                    problems.append("side: must be \"buy\" or \"sell\"")
                else:
                    out[key] = _SIDES[value.lower()]
            else:
                if not isinstance(value, str):
                    problems.append(f"{key}: must be a string")
                elif key == "reasoning" and len(value) > _MAX_REASONING:
                    problems.append(f"reasoning: at most {_MAX_REASONING} characters")
                else:
                    out[key] = value
        return out, problems

    def _order(self, args) -> "_k.Order":
        with self._lock:
            n = next(self._ids)
        return _k.Order(instrument=args["instrument"], side=args["side"],
                        quantity=args["quantity"], price=args["price"],
                        reference_price=args.get("reference_price"),
                        counterparty=args.get("counterparty") or self._counterparty or "",
                        region=self._region, client_order_id=f"{self._id_prefix}-{n}",
                        reasoning=args["reasoning"])

    def _refusal(self, problems) -> ToolResult:
        return {"tool": self._name, "status": "refused", "decision": "reject",
                "reasons": ["invalid_arguments"], "problems": problems,
                "message": "Order not placed: the arguments were refused (" + "; ".join(problems)
                           + "). Nothing was checked or sent."}


def _amount(key, value):
    """(decimal text, None) or (None, problem) for one amount argument."""
    if isinstance(value, bool):
        return None, f"{key}: must be a decimal string such as \"0.25\""
    if isinstance(value, float):
        return None, f"{key}: a float is not an exact amount; send it as a decimal string"
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None, f"{key}: must be a finite decimal"
        value = format(value, "f")
    if not isinstance(value, str) or not _DECIMAL_TEXT.match(value):
        return None, f"{key}: must be a decimal string such as \"0.25\""
    return value, None


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
