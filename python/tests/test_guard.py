"""The Guard from Python: check, halt/resume, reduce-only, the lifecycle calls, heartbeat,
counters and events, certificates, rotation and CRL updates, and the clock it borrows."""

import datetime
import gc
import weakref

import pytest

import kakunin
from conftest import LIFECYCLE_SCOPE, SEED_SCOPE, good_order, monday

R = kakunin.ReasonCode


def test_check_enforces_the_scope(seed_scope, clock):
    guard = kakunin.Guard(seed_scope, clock)
    assert guard.check(good_order()).allowed
    assert guard.check(good_order(region="us-east-1")).reasons == [R.region_not_allowed]
    assert guard.check(good_order(quantity="11")).reasons == [R.max_order_quantity_exceeded]
    assert guard.check(good_order(price="43000.00")).reasons == [R.price_collar_breached]
    assert guard.check(good_order(reference_price=None)).reasons == [R.reference_price_missing]
    assert guard.check(good_order(instrument="BTC_USD")).reasons == [
        R.instrument_not_allowed, R.currency_mismatch]
    clock.set(monday(21))
    assert guard.check(good_order()).reasons == [R.outside_trading_hours]
    c = guard.counters
    assert (c.checks, c.allowed, c.rejected) == (7, 1, 6)


def test_halt_and_resume_name_the_person_and_are_events(seed_scope, clock):
    guard = kakunin.Guard(seed_scope, clock)
    assert not guard.halted and guard.current_halt() is None
    halt_id = guard.halt("desk kill switch", "M. Rossi")
    assert halt_id.startswith("halt-")
    assert guard.halted
    assert guard.check(good_order()).reasons == [R.halted]
    current = guard.current_halt()
    assert (current.kind, current.halt_id, current.by) == (kakunin.GuardEventKind.halted, halt_id, "M. Rossi")
    with pytest.raises(kakunin.InvalidInputError):
        guard.resume("")
    guard.resume("A. Schmidt (compliance)")
    assert not guard.halted and guard.check(good_order()).allowed
    kinds = [(e.kind, e.by, e.reason) for e in guard.events()]
    assert kinds == [(kakunin.GuardEventKind.halted, "M. Rossi", "desk kill switch"),
                     (kakunin.GuardEventKind.resumed, "A. Schmidt (compliance)", kinds[1][2])]
    assert guard.events()[1].halt_id == halt_id
    with pytest.raises(kakunin.InvalidStateError):
        guard.resume("A. Schmidt")


def test_amend_cancel_and_executions_move_the_lifecycle(lifecycle_scope, clock):
    guard = kakunin.Guard(lifecycle_scope, clock)
    assert guard.check(good_order(client_order_id="")).reasons == [R.order_id_missing]
    assert guard.check(good_order(client_order_id="a-1", quantity="2")).allowed
    assert guard.check(good_order(client_order_id="a-1")).reasons == [R.duplicate_order_id]
    assert guard.working_orders() == ["a-1"]
    assert guard.check(good_order(client_order_id="a-2", quantity="4")).reasons == [R.max_position_exceeded]
    assert guard.amend(kakunin.Amend("a-1", quantity="3")).allowed
    assert guard.amend(kakunin.Amend("a-1", quantity="6")).reasons == [R.max_position_exceeded]
    assert guard.amend(kakunin.Amend("zz", price="1")).reasons == [R.unknown_order_id]
    r = guard.on_execution(kakunin.ExecutionReport(kakunin.ExecutionType.ack, client_order_id="a-1"))
    assert r.applied and not r.unknown_order and r.problem is None
    fill = kakunin.ExecutionReport(kakunin.ExecutionType.fill, client_order_id="a-1",
                                   quantity="1", price="40000.00")
    r = guard.on_execution(fill)
    assert r.applied and not r.order_closed
    state = guard.lifecycle_state()
    btc = [p for p in state.positions if p.instrument == "BTC_EUR"][0]
    assert str(btc.position) == "1" and str(btc.working_buy) == "2"
    assert state.working_orders == ["a-1"] and not state.reduce_only
    assert state.working_notional >= 0 and state.filled_today >= 0
    assert guard.cancel(kakunin.Cancel("a-1")).allowed
    assert guard.cancel(kakunin.Cancel("nope")).reasons == [R.unknown_order_id]
    r = guard.on_execution(kakunin.ExecutionReport(kakunin.ExecutionType.cancelled, client_order_id="a-1"))
    assert r.order_closed and guard.working_orders() == []
    r = guard.on_execution(kakunin.ExecutionReport(kakunin.ExecutionType.fill, client_order_id="ghost",
                                                   instrument="BTC_EUR", quantity="1", price="40000"))
    assert r.unknown_order and r.problem


def test_reduce_only_mode_and_the_daily_loss(lifecycle_scope, clock):
    guard = kakunin.Guard(lifecycle_scope, clock)
    with pytest.raises(kakunin.InvalidStateError):
        guard.lift_reduce_only("A. Schmidt")
    guard.reduce_only("risk review", "M. Rossi")
    assert guard.reduce_only_in_force and guard.lifecycle_state().reduce_only
    assert guard.check(good_order(client_order_id="b-1")).reasons == [R.reduce_only]
    guard.lift_reduce_only("A. Schmidt")
    assert not guard.reduce_only_in_force
    assert guard.check(good_order(client_order_id="b-1")).allowed
    guard.on_execution(kakunin.ExecutionReport(kakunin.ExecutionType.fill, client_order_id="b-1",
                                               quantity="1", price="40000.00"))
    r = guard.on_execution(kakunin.ExecutionReport(kakunin.ExecutionType.mark, instrument="BTC_EUR",
                                                   price="38000.00"))
    assert r.reduce_only_entered and guard.reduce_only_in_force
    assert str(guard.lifecycle_state().daily_pnl) == "-2000"
    with pytest.raises(kakunin.InvalidStateError):
        kakunin.Guard(kakunin.parse_scope_json(SEED_SCOPE), clock).reduce_only("x", "y")


def test_the_dead_mans_switch_halts_without_heartbeats(seed_scope, clock):
    guard = kakunin.Guard(seed_scope, clock, heartbeat_timeout=datetime.timedelta(seconds=5),
                          incident_thread=False)
    clock.advance(datetime.timedelta(seconds=4))
    guard.heartbeat()
    clock.advance(datetime.timedelta(seconds=4))
    assert guard.check(good_order()).allowed
    clock.advance(datetime.timedelta(seconds=6))
    assert guard.check(good_order()).reasons == [R.halted]
    guard.process_incidents()
    assert guard.halted and guard.events()[-1].kind == kakunin.GuardEventKind.halted


def test_the_guard_keeps_its_clock_alive(seed_scope):
    clock = kakunin.ManualClock(monday(12))
    ref = weakref.ref(clock)
    guard = kakunin.Guard(seed_scope, clock)
    del clock
    gc.collect()
    assert ref() is not None  # borrowed by the Guard: alive as long as it is
    ref().advance_ns(10**9)
    assert guard.check(good_order()).ts_ns == monday(12, 0, 1)
    del guard
    gc.collect()
    assert ref() is None


def test_system_clock_reads_the_time():
    import time
    clock = kakunin.SystemClock()
    assert abs(clock.now_ns() - time.time_ns()) < 10**9
    assert isinstance(clock, kakunin.Clock)


def test_guard_from_credentials_and_its_certificate(tmp_path):
    authority = kakunin.TestAuthority()
    creds = authority.credentials_for(SEED_SCOPE)
    assert creds.certificate.scope == kakunin.parse_scope_json(SEED_SCOPE)
    guard = kakunin.Guard(creds, authority.clock)
    assert guard.check(good_order()).allowed
    cert = guard.certificate()
    assert cert.serial == creds.certificate.serial
    assert cert.not_after_ns - cert.not_before_ns >= 24 * 3600 * 10**9 - 10**9
    assert guard.scope() == kakunin.parse_scope_json(SEED_SCOPE)
    check = kakunin.verify_certificate(cert, creds.trust_anchor, creds.crl, authority.clock.now_ns())
    assert check.ok and check.status == kakunin.CertificateStatus.valid
    late = kakunin.verify_certificate(cert, creds.trust_anchor, creds.crl,
                                      authority.clock.now_ns() + 48 * 3600 * 10**9)
    assert not late.ok and late.status == kakunin.CertificateStatus.expired and late.detail
    # The PEM, DER and files round-trip.
    assert kakunin.AgentCertificate.from_pem(cert.pem).fingerprint == cert.fingerprint
    assert kakunin.AgentCertificate.from_der(cert.der).serial == cert.serial
    (tmp_path / "ca.pem").write_text(creds.trust_anchor.pem)
    (tmp_path / "crl.pem").write_text(creds.crl.pem)
    (tmp_path / "agent.pem").write_text(cert.pem)
    again = kakunin.Guard(kakunin.GuardCredentials(
        kakunin.AgentCertificate.load_file(str(tmp_path / "agent.pem")),
        kakunin.TrustAnchor.load_file(str(tmp_path / "ca.pem")),
        kakunin.CertificateRevocationList.load_file(str(tmp_path / "crl.pem")),
        creds.kms, creds.key), authority.clock)
    assert again.check(good_order()).allowed
    assert kakunin.TrustAnchor.from_der(creds.trust_anchor.der).fingerprint == creds.trust_anchor.fingerprint
    assert kakunin.CertificateRevocationList.from_der(creds.crl.der).next_update_ns == creds.crl.next_update_ns


@pytest.mark.parametrize("kind", ["expired", "not_yet_valid", "revoked", "wrong_ca", "tampered", "key_mismatch"])
def test_doubtful_authority_never_starts_a_guard(kind):
    authority = kakunin.TestAuthority()
    creds = getattr(authority, kind)(SEED_SCOPE)
    with pytest.raises(kakunin.UnauthorisedError, match="refused"):
        kakunin.Guard(creds, authority.clock)


def test_certificates_expire_are_renewed_by_rotation_and_revoked():
    authority = kakunin.TestAuthority()
    guard = authority.guard_for(SEED_SCOPE)
    old = guard.certificate()
    authority.clock.advance(datetime.timedelta(hours=1))
    renewed = authority.renew(old)
    guard.rotate(renewed)
    assert guard.certificate().serial == renewed.serial != old.serial
    with pytest.raises(kakunin.Error):
        guard.rotate(old)  # rotation never goes back
    assert renewed.not_after_ns > old.not_after_ns
    assert guard.check(good_order()).allowed
    authority.revoke(renewed, "key lost")
    assert guard.halted and guard.revoked
    assert guard.check(good_order()).reasons[-1] == R.certificate_revoked
    kinds = [e.kind for e in guard.events()]
    assert kakunin.GuardEventKind.rotated in kinds and kakunin.GuardEventKind.revoked in kinds


def test_update_crl_takes_a_newer_crl_and_refuses_a_foreign_one():
    authority = kakunin.TestAuthority()
    guard = kakunin.Guard(authority.credentials_for(SEED_SCOPE), authority.clock)
    authority.clock.advance(datetime.timedelta(minutes=1))
    newer = authority.revoked(SEED_SCOPE).crl  # lists another agent's certificate
    guard.update_crl(newer)
    assert guard.events()[-1].kind == kakunin.GuardEventKind.crl_updated
    assert guard.check(good_order()).allowed
    foreign = kakunin.TestAuthority().revoked(SEED_SCOPE).crl
    with pytest.raises(kakunin.UnauthorisedError):
        guard.update_crl(foreign)
    assert guard.check(good_order()).allowed


def test_kms_keys_sign_and_software_kms_on_disk(tmp_path):
    kms = kakunin.SoftwareKms.open(str(tmp_path / "keys"), "correct horse")
    key = kms.create_key("agent:a", kakunin.KeyAlgorithm.ed25519)
    assert key.label == "agent:a" and key.algorithm == kakunin.KeyAlgorithm.ed25519
    assert len(kms.sign(key, b"hello")) == 64
    assert kms.public_key_der(key)[:2] == b"\x30\x2a"
    again = kakunin.SoftwareKms.open(str(tmp_path / "keys"), "correct horse")
    assert again.find_key("agent:a").id == key.id
    assert again.find_or_create_key("agent:b").label == "agent:b"
    assert kms.directory == str(tmp_path / "keys")
    with pytest.raises(kakunin.InvalidStateError):
        kms.create_key("agent:a")


def test_behaviour_a_learned_and_approved_baseline_scores_every_order(seed_scope):
    start = kakunin.utc(2024, 1, 8, 7)
    clock = kakunin.ManualClock(start)
    guard = kakunin.Guard(seed_scope, clock, incident_thread=False)
    assert not guard.enforcing_baseline
    small = good_order(quantity="0.01", price="40000.00")
    for day in range(8):  # a week of small orders, observed
        for i in range(200):
            clock.set(start + day * 86400 * 10**9 + i * 60 * 10**9)
            small.client_order_id = f"s-{day}-{i}"
            assert guard.check(small).score_ppm == 0
    observed = guard.observation()
    assert observed.orders == 1200  # the weekend's orders were outside the trading hours
    baseline = observed.finalize(clock.now_ns())
    assert len(baseline.sha256) == 64
    assert kakunin.Baseline.from_json(baseline.to_json()).sha256 == baseline.sha256
    kms = kakunin.SoftwareKms.in_memory()
    approval = kakunin.approve_baseline(kms, baseline, "A. Officer", clock.now_ns(), 1)
    approved = kakunin.ApprovedBaseline(baseline, kakunin.BaselineApproval.from_json(approval.to_json()))
    guard.enforce_baseline(approved)
    assert guard.enforcing_baseline and guard.observation() is None
    clock.advance(datetime.timedelta(minutes=1))
    usual = guard.check(small)
    big = guard.check(good_order(quantity="9", client_order_id="big"))
    assert usual.allowed and big.score_ppm > usual.score_ppm
    assert big.components["size"] > usual.components["size"]
    # The same baseline at construction.
    fresh = kakunin.Guard(seed_scope, clock, baseline=approved, incident_thread=False)
    assert fresh.enforcing_baseline
    # An approval of another baseline covers nothing.
    another = observed.finalize(clock.now_ns() + 3600 * 10**9)
    assert another.sha256 != baseline.sha256
    other = kakunin.approve_baseline(kms, another, "A. Officer", clock.now_ns(), 1)
    with pytest.raises(kakunin.UnauthorisedError):
        kakunin.Guard(seed_scope, clock, baseline=kakunin.ApprovedBaseline(baseline, other))


def test_many_guards_share_four_threads_and_each_log_holds_its_orders(tmp_path):
    """SharedThreads: ten Guards with audit trails and incident desks (the dead man's switch runs
    them) add no thread of their own (without it each adds three), and every order is in its
    Guard's own verified log."""
    import json
    import os

    import time

    def threads_now(expected=None):
        """The process's threads; with `expected`, waits up to 5 s for the count to reach it
        (a joined thread may linger in /proc for a moment)."""
        n = len(os.listdir("/proc/self/task"))
        for _ in range(500):
            if expected is None or n == expected:
                break
            time.sleep(0.01)
            n = len(os.listdir("/proc/self/task"))
        return n

    authority = kakunin.TestAuthority()
    hour = datetime.timedelta(hours=1)
    before = threads_now()
    alone = kakunin.Guard(authority.credentials_for(SEED_SCOPE), authority.clock,
                          audit=kakunin.AuditTrailOptions(
                              kakunin.FileAuditSink(str(tmp_path / "alone.jsonl"))),
                          heartbeat_timeout=hour)
    assert threads_now(before + 3) == before + 3  # its writer, its watchdog, its incident desk
    del alone
    gc.collect()
    shared = kakunin.SharedThreads()
    base = threads_now(before + 4)
    assert base == before + 4  # writer, watchdog, reporter, incidents: for every Guard given them
    guards, certs, paths = [], kakunin.AuditCertificates(), []
    for i in range(10):
        creds = authority.credentials_for(SEED_SCOPE)
        certs.add_der(creds.certificate.der)
        paths.append(tmp_path / f"agent-{i}.jsonl")
        sink = kakunin.FileAuditSink(str(paths[-1]))
        guards.append(kakunin.Guard(creds, authority.clock, audit=kakunin.AuditTrailOptions(sink),
                                    heartbeat_timeout=hour, threads=shared))
    assert threads_now(base) == base
    assert shared.audit_trails == 10 and shared.incident_desks == 10
    for i, guard in enumerate(guards):
        for k in range(5):
            assert guard.check(good_order(quantity="0.01", client_order_id=f"g{i}-{k}")).allowed
    for guard in guards:
        assert guard.audit.wait_durable(datetime.timedelta(seconds=10))
    del guard
    guards.clear()
    gc.collect()
    assert shared.audit_trails == 0 and shared.incident_desks == 0
    for i, path in enumerate(paths):
        result = kakunin.verify_audit_log_file(str(path), certs, require_record_signatures=True)
        assert result.ok, result.message
        ids = [json.loads(l)["payload"]["order"]["client_order_id"]
               for l in path.read_text().splitlines() if '"event":"order.' in l]
        assert ids == [f"g{i}-{k}" for k in range(5)]
