"""Exact amounts, the float refusal, enums, Order, Decision, Scope and the exception classes."""

import decimal
from decimal import Decimal

import pytest

import kakunin
from conftest import SEED_SCOPE, good_order

AMOUNT_FIELDS = [
    (lambda v: kakunin.Order(quantity=v), "Order.quantity"),
    (lambda v: kakunin.Order(price=v), "Order.price"),
    (lambda v: kakunin.Order(reference_price=v), "Order.reference_price"),
    (lambda v: setattr(kakunin.Order(), "quantity", v), "Order.quantity"),
    (lambda v: setattr(kakunin.Order(), "price", v), "Order.price"),
    (lambda v: setattr(kakunin.Order(), "reference_price", v), "Order.reference_price"),
    (lambda v: kakunin.Amend("c-1", quantity=v), "Amend.quantity"),
    (lambda v: kakunin.Amend("c-1", price=v), "Amend.price"),
    (lambda v: kakunin.Amend("c-1", reference_price=v), "Amend.reference_price"),
    (lambda v: kakunin.ExecutionReport(kakunin.ExecutionType.fill, quantity=v), "ExecutionReport.quantity"),
    (lambda v: kakunin.ExecutionReport(kakunin.ExecutionType.fill, price=v), "ExecutionReport.price"),
]


@pytest.mark.parametrize("make,field", AMOUNT_FIELDS)
def test_a_float_is_a_type_error_naming_the_field(make, field):
    with pytest.raises(TypeError, match=field.replace(".", r"\.") + ": a float is not an exact amount"):
        make(0.1)


@pytest.mark.parametrize("make,field", AMOUNT_FIELDS)
def test_a_bool_or_other_type_is_a_type_error_naming_the_field(make, field):
    with pytest.raises(TypeError, match=field.replace(".", r"\.")):
        make(True)
    with pytest.raises(TypeError, match=field.replace(".", r"\.") + ": expected decimal.Decimal, str or int, not list"):
        make([1])


@pytest.mark.parametrize("make,field", AMOUNT_FIELDS)
def test_text_that_is_not_a_decimal_is_invalid_input_naming_the_field(make, field):
    for bad in ["1e5", "", " 1", "+1", "1.", "0.1234567890123456789", "99999999999999999999"]:
        with pytest.raises(kakunin.InvalidInputError, match=field.replace(".", r"\.")) as info:
            make(bad)
        assert info.value.category == "invalid_input"
    with pytest.raises(kakunin.InvalidInputError, match="NaN"):
        make(Decimal("NaN"))
    with pytest.raises(kakunin.InvalidInputError):
        make(Decimal("Infinity"))


def test_amounts_are_exact_in_every_accepted_form():
    o = kakunin.Order(quantity=Decimal("0.100000000000000001"), price="42000.10", reference_price=7)
    assert o.quantity == Decimal("0.100000000000000001")
    assert str(o.quantity) == "0.100000000000000001"
    assert str(o.price) == "42000.10"  # the scale is kept
    assert isinstance(o.price, Decimal)
    assert o.reference_price == Decimal(7)
    o.quantity = Decimal("1E+3")  # exponent forms become fixed-point
    assert str(o.quantity) == "1000"
    o.price = -5
    assert o.price == Decimal(-5)
    o.reference_price = None
    assert o.reference_price is None
    # The full range of a 64-bit decimal, and one past it.
    o.quantity = 9223372036854775807
    assert o.quantity == Decimal(9223372036854775807)
    with pytest.raises(kakunin.InvalidInputError):
        o.quantity = 9223372036854775808
    with decimal.localcontext() as ctx:  # the caller's decimal context changes nothing
        ctx.prec = 3
        o.price = Decimal("12345.678")
    assert str(o.price) == "12345.678"


def test_order_fields_and_repr():
    o = good_order(reasoning="breakout above the range", side=kakunin.Side.sell)
    assert (o.instrument, o.counterparty, o.region, o.client_order_id) == (
        "BTC_EUR", "exchange_a", "eu-west-1", "c-1")
    assert o.side == kakunin.Side.sell
    assert o.reasoning == "breakout above the range"
    assert "BTC_EUR SELL 1 @ 40000.00" in repr(o)
    with pytest.raises(TypeError):
        o.side = "buy"  # a Side, not text
    # A side read is a value, not a view of the order's field.
    before = o.side
    o.side = kakunin.Side.buy
    assert before == kakunin.Side.sell and o.side == kakunin.Side.buy
    report = kakunin.ExecutionReport(kakunin.ExecutionType.fill, side=kakunin.Side.sell)
    kind, side = report.type, report.side
    report.type, report.side = kakunin.ExecutionType.mark, kakunin.Side.buy
    assert (kind, side) == (kakunin.ExecutionType.fill, kakunin.Side.sell)
    with pytest.raises(TypeError):
        kakunin.Order(instrument="BTC_EUR", bogus=1)


def test_reason_codes_have_their_names_and_numbers():
    assert kakunin.ReasonCode.halted.value == 100
    assert kakunin.ReasonCode.instrument_not_allowed.name == "instrument_not_allowed"
    assert int(kakunin.ReasonCode.revocation_status_stale) == 603
    members = kakunin.ReasonCode.__members__
    assert len(members) == 37
    assert int(kakunin.ReasonCode.firm_limit_exceeded) == 315
    assert sorted(int(v) for v in members.values())[:3] == [100, 101, 200]
    assert {m.name for m in members.values()} == set(members)


def test_decision_carries_verdict_reasons_score_and_components(seed_scope, clock):
    guard = kakunin.Guard(seed_scope, clock)
    d = guard.check(good_order())
    assert d.verdict == kakunin.Verdict.allow and d.allowed and bool(d)
    assert d.reasons == []
    assert d.ts_ns == clock.now_ns()
    assert d.score_ppm == 0
    assert set(d.components) == {"size", "frequency", "concentration", "time_of_day", "origin"}
    bad = guard.check(good_order(instrument="DOGE_EUR", counterparty="exchange_z", quantity="0"))
    assert bad.verdict == kakunin.Verdict.reject and not bad.allowed
    assert bad.reasons == [kakunin.ReasonCode.instrument_not_allowed,
                           kakunin.ReasonCode.counterparty_not_allowed,
                           kakunin.ReasonCode.invalid_quantity]
    assert all(isinstance(r, kakunin.ReasonCode) for r in bad.reasons)
    assert "reject" in repr(bad) and "instrument_not_allowed" in repr(bad)


def test_scope_from_json_round_trips_and_names_the_bad_member(tmp_path):
    scope = kakunin.parse_scope_json(SEED_SCOPE)
    assert scope.instruments == ["BTC_EUR", "ETH_EUR", "SOL_EUR"]
    assert scope.counterparties == ["exchange_a", "exchange_b"]
    assert scope.regions == ["eu-west-1", "eu-central-1"]
    assert scope.max_transaction == ("EUR", Decimal("500000.00"))
    assert scope.version == 1 and not scope.has_lifecycle_limits
    assert kakunin.parse_scope_json(scope.to_json()) == scope
    assert kakunin.parse_scope_json(scope.to_pretty_json()) == scope
    path = tmp_path / "scope.json"
    path.write_text(SEED_SCOPE)
    assert kakunin.load_scope_file(str(path)) == scope
    with pytest.raises(kakunin.InvalidInputError, match="colour: unknown member"):
        kakunin.parse_scope_json(SEED_SCOPE.replace('"version": 1,', '"version": 1, "colour": "red",'))
    with pytest.raises(kakunin.InvalidInputError, match="instruments"):
        kakunin.parse_scope_json(SEED_SCOPE.replace('"BTC_EUR", "ETH_EUR"', '"BTCEUR", "ETH_EUR"'))
    with pytest.raises(kakunin.IoError, match="cannot open"):
        kakunin.load_scope_file(str(tmp_path / "missing.json"))


CATEGORY_CLASSES = {
    "invalid_input": kakunin.InvalidInputError,
    "invalid_state": kakunin.InvalidStateError,
    "crypto": kakunin.CryptoError,
    "kms": kakunin.KmsError,
    "io": kakunin.IoError,
    "database": kakunin.DatabaseError,
    "network": kakunin.NetworkError,
    "not_found": kakunin.NotFoundError,
    "unauthorised": kakunin.UnauthorisedError,
}


def test_every_error_category_is_its_own_subclass_of_kakunin_error():
    assert set(CATEGORY_CLASSES) == set(kakunin.ErrorCategory.__members__)
    assert issubclass(kakunin.Error, Exception)
    assert len(set(CATEGORY_CLASSES.values())) == 9
    for name, cls in CATEGORY_CLASSES.items():
        assert issubclass(cls, kakunin.Error)
        with pytest.raises(cls) as info:
            kakunin._kakunin._raise_error(kakunin.ErrorCategory.__members__[name], f"a {name} problem")
        assert type(info.value) is cls
        assert info.value.category == name
        assert str(info.value) == f"a {name} problem"
    assert issubclass(kakunin.InvalidInputError, ValueError)
    assert issubclass(kakunin.NotFoundError, LookupError)


def test_real_calls_raise_the_class_of_their_category(tmp_path, seed_scope, clock):
    cases = [
        (kakunin.InvalidInputError, lambda: kakunin.AgentCertificate.from_pem("garbage")),
        (kakunin.InvalidStateError, lambda: kakunin.Guard(seed_scope, clock).resume("A. Schmidt")),
        (kakunin.KmsError, lambda: kakunin.Pkcs11Kms.open(str(tmp_path / "none.so"), "t", "1234")),
        (kakunin.IoError, lambda: kakunin.verify_audit_log_file(str(tmp_path / "none.jsonl"),
                                                                kakunin.AuditCertificates())),
        (kakunin.DatabaseError, lambda: kakunin.PostgresAuditSink(
            f"host={tmp_path} dbname=none connect_timeout=2", log_id="agent-7")),
        (kakunin.NotFoundError, lambda: kakunin.SoftwareKms.in_memory().find_key("nope")),
        (kakunin.UnauthorisedError, lambda: kakunin.Guard(
            kakunin.TestAuthority().expired(SEED_SCOPE), clock)),
    ]
    for cls, call in cases:
        with pytest.raises(cls) as info:
            call()
        assert isinstance(info.value, kakunin.Error)
        assert CATEGORY_CLASSES[info.value.category] is cls
