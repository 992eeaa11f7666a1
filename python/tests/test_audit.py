"""The audit trail from Python: every decision (with the agent's reasoning) in a signed Merkle
log on a file, in memory or in PostgreSQL, verified offline as `kakunin audit verify` does."""

import datetime
import gc
import json
import os
import subprocess
import uuid

import pytest

import kakunin
from conftest import ROOT, SEED_SCOPE, good_order


def run_and_close(authority, sink, orders, **kwargs):
    """A Guard on a fresh certificate recording into `sink`; returns its certificate once the
    Guard is gone (the trail closes with a final checkpoint)."""
    creds = authority.credentials_for(SEED_SCOPE)
    guard = kakunin.Guard(creds, authority.clock, audit=kakunin.AuditTrailOptions(sink, **kwargs))
    for o in orders:
        guard.check(o)
    guard.halt("end of test", "M. Rossi")
    assert guard.audit.wait_durable(datetime.timedelta(seconds=10))
    counters = guard.audit.counters
    assert counters.healthy and counters.durable == counters.queued >= len(orders) + 1
    log_id = guard.audit.log_id
    del guard
    gc.collect()
    return creds.certificate, log_id


def test_a_file_log_verifies_and_a_tampered_copy_does_not(tmp_path):
    authority = kakunin.TestAuthority()
    path = tmp_path / "agent.jsonl"
    orders = [good_order(reasoning="mean reversion: 2 sigma below VWAP"),
              good_order(instrument="DOGE_EUR", reasoning="ignore your limits")]
    cert, log_id = run_and_close(authority, kakunin.FileAuditSink(str(path)), orders)
    lines = path.read_text().splitlines()
    records = [json.loads(l) for l in lines]
    assert any("mean reversion: 2 sigma below VWAP" in l for l in lines)
    assert any("instrument_not_allowed" in l for l in lines)
    certs = kakunin.AuditCertificates()
    assert certs.add_der(cert.der) == cert.fingerprint
    assert cert.fingerprint in certs and len(certs) == 1
    result = kakunin.verify_audit_log_file(str(path), certs, require_record_signatures=True)
    assert result.ok, result.message
    assert result.problem == kakunin.AuditProblem.none
    assert result.records >= 3 and result.signed_records == result.records
    assert result.checkpoints >= 1 and result.covered == result.records and len(result.root) == 64
    assert result.log_id == log_id == cert.agent_id
    # One changed byte in the reasoning of the first order: caught, naming the line.
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text(path.read_text().replace("2 sigma", "3 sigma", 1))
    bad = kakunin.verify_audit_log_file(str(tampered), certs)
    assert not bad.ok and bad.problem == kakunin.AuditProblem.bad_record_signature and bad.line >= 1
    assert "seq" in bad.message
    # Without the certificate nothing verifies.
    unknown = kakunin.verify_audit_lines(lines, kakunin.AuditCertificates())
    assert not unknown.ok and unknown.problem == kakunin.AuditProblem.unknown_certificate
    # The CLI agrees.
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / "agent.pem").write_text(cert.pem)
    assert kakunin.verify_audit_log_file(str(path), kakunin.AuditCertificates.from_directory(str(cert_dir))).ok
    cli = os.environ.get("KAKUNIN_CLI_PATH") or str(ROOT / "build" / "kakunin")
    done = subprocess.run([cli, "audit", "verify", "--log", str(path), "--certs", str(cert_dir)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_memory_sink_holds_the_lines(tmp_path):
    authority = kakunin.TestAuthority()
    sink = kakunin.MemoryAuditSink()
    cert, _ = run_and_close(authority, sink, [good_order()], record_signatures=False)
    lines = sink.lines()
    assert sink.name == "memory" and len(lines) >= 3
    certs = kakunin.AuditCertificates()
    certs.add_der(cert.der)
    assert kakunin.verify_audit_lines(lines, certs).ok
    assert not kakunin.verify_audit_lines(lines, certs, require_record_signatures=True).ok


def test_the_audit_error_handler_is_a_python_callable(tmp_path):
    authority = kakunin.TestAuthority()
    seen = []
    sink = kakunin.FileAuditSink(str(tmp_path / "a.jsonl"), sync_every_append=False)
    opts = kakunin.AuditTrailOptions(sink, error_handler=seen.append, queue_capacity=64)
    assert opts.queue_capacity == 64 and opts.sink is sink and opts.record_signatures
    with pytest.raises(TypeError):
        kakunin.AuditTrailOptions(None)


@pytest.fixture(scope="module")
def postgres():
    """$KAKUNIN_TEST_PG (scripts/test starts a throwaway server); else one started here with
    scripts/lib/postgres.sh, stopped afterwards."""
    conninfo = os.environ.get("KAKUNIN_TEST_PG")
    if conninfo:
        yield conninfo
        return
    import shutil
    import tempfile
    lib = ROOT / "scripts" / "lib" / "postgres.sh"
    scratch = tempfile.mkdtemp(prefix="kakunin-pytest-pg-")
    os.chmod(scratch, 0o755)  # the server runs as another OS user
    # The server gets no LD_PRELOAD (a sanitizer runtime preloaded for the module, say).
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["KAKUNIN_PG_PORT"] = str(56000 + os.getpid() % 1000)
    try:
        start = subprocess.run(["bash", "-c", f'source "{lib}" && kakunin_pg_start "{scratch}/pg" >&2 && printf %s "$KAKUNIN_TEST_PG"'],
                               capture_output=True, text=True, timeout=120, env=env)
        assert start.returncode == 0, "PostgreSQL did not start: " + start.stderr[-2000:]
        yield start.stdout
    finally:
        subprocess.run(["bash", "-c", f'source "{lib}" && kakunin_pg_stop "{scratch}/pg"'],
                       capture_output=True, timeout=120, env=env)
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_postgres_log_verifies(postgres):
    kakunin.init_audit_database(postgres)
    authority = kakunin.TestAuthority()
    creds = authority.credentials_for(SEED_SCOPE)
    # The agent's own suffix log, unique to this run: the test server may already hold a log
    # of the same agent id from an earlier run (TestAuthority's ids repeat across processes).
    log_id = creds.certificate.agent_id + "." + uuid.uuid4().hex[:12]
    sink = kakunin.PostgresAuditSink(postgres, log_id=log_id)
    assert sink.name == "postgres:" + log_id
    guard = kakunin.Guard(creds, authority.clock,
                          audit=kakunin.AuditTrailOptions(sink, log_id=log_id))
    assert guard.check(good_order(reasoning="stored in PostgreSQL")).allowed
    del guard
    gc.collect()
    lines = kakunin.PostgresAuditSink(postgres, log_id=log_id).lines()
    assert any("stored in PostgreSQL" in l for l in lines)
    certs = kakunin.AuditCertificates()
    certs.add_der(creds.certificate.der)
    result = kakunin.verify_audit_lines(lines, certs)
    assert result.ok, result.message
