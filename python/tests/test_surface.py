"""The rest of the exposed calls: CRL and trust anchor properties, a PKCS#11 token (SoftHSM2),
credentials with a revocation feed, TestAuthority's parts, sinks and counters, incidents."""

import datetime
import os
import shutil
import subprocess
import sys

import pytest

import kakunin
from conftest import SEED_SCOPE, good_order


def test_crl_and_trust_anchor_properties():
    authority = kakunin.TestAuthority()
    creds = authority.revoked(SEED_SCOPE)
    crl, anchor = creds.crl, creds.trust_anchor
    assert crl.this_update_ns <= authority.clock.now_ns() < crl.next_update_ns
    assert crl.revoked_serials and crl.lists(creds.certificate.serial)
    assert crl.lists(creds.certificate.serial.upper())  # serials compare canonically
    assert not crl.lists("01")
    assert kakunin.CertificateRevocationList.from_pem(crl.pem).revoked_serials == crl.revoked_serials
    assert anchor.subject and anchor.fingerprint.startswith("sha256:")
    assert kakunin.TrustAnchor.from_pem(anchor.pem).der == anchor.der
    assert creds.certificate.issuer == anchor.subject or anchor.subject in creds.certificate.issuer
    check = kakunin.verify_certificate(creds.certificate, anchor, crl, authority.clock.now_ns())
    assert not check and check.status == kakunin.CertificateStatus.revoked
    assert kakunin.verify_certificate(creds.certificate, anchor, None,
                                      authority.clock.now_ns()).status == kakunin.CertificateStatus.crl_missing


def test_test_authority_parts_and_a_guard_on_its_revocation_feed():
    authority = kakunin.TestAuthority(kakunin.utc(2024, 3, 4, 9))
    assert authority.clock.now_ns() == kakunin.utc(2024, 3, 4, 9)
    assert kakunin.TestAuthority.officer == "Test Officer"
    assert isinstance(authority.kms, kakunin.Kms)
    creds = authority.credentials_for(SEED_SCOPE, validity=datetime.timedelta(hours=2))
    assert creds.certificate.not_after_ns - creds.certificate.not_before_ns <= 2 * 3600 * 10**9 + 10**9
    subscribed = kakunin.GuardCredentials(creds.certificate, creds.trust_anchor, creds.crl,
                                          creds.kms, creds.key, revocation_feed=authority.revocation_feed)
    guard = kakunin.Guard(subscribed, authority.clock)
    assert guard.check(good_order()).allowed
    authority.revoke(creds.certificate, "test revocation")
    assert guard.check(good_order()).reasons == [kakunin.ReasonCode.halted, kakunin.ReasonCode.certificate_revoked]
    ev = guard.events()[-1]
    assert ev.kind == kakunin.GuardEventKind.revoked and ev.halt_id and ev.at_ns > 0


def test_sinks_counters_and_incident_processing(tmp_path):
    authority = kakunin.TestAuthority()
    sink = kakunin.FileAuditSink(str(tmp_path / "a.jsonl"), log_id="")
    assert sink.path == str(tmp_path / "a.jsonl") and sink.name == "file:" + sink.path
    guard = kakunin.Guard(authority.credentials_for(SEED_SCOPE), authority.clock,
                          audit=kakunin.AuditTrailOptions(sink, checkpoint_every=1,
                                                          checkpoint_interval=datetime.timedelta(milliseconds=10)))
    guard.check(good_order())
    assert guard.wait_incidents(datetime.timedelta(seconds=5))
    assert guard.audit.wait_durable(datetime.timedelta(seconds=5))
    c = guard.audit.counters
    assert (c.unrecorded_rejections, c.unrecorded_reports, c.sink_failures) == (0, 0, 0)
    assert len(sink.lines()) >= 2
    assert kakunin.Guard(kakunin.parse_scope_json(SEED_SCOPE), authority.clock).audit is None


def test_a_pkcs11_token_signs_for_a_guard(tmp_path):
    module = os.environ.get("KAKUNIN_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
    if not (shutil.which("softhsm2-util") and os.path.exists(module)):
        pytest.fail("SoftHSM2 is not installed: run scripts/test, which installs softhsm2")
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf), KAKUNIN_PKCS11_PIN="1234")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "py", "--pin", "1234",
                    "--so-pin", "5678"], check=True, capture_output=True, env=env)
    # The module reads SOFTHSM2_CONF when it loads: a child process of its own.
    script = f"""
import kakunin
kms = kakunin.Pkcs11Kms.open({module!r}, "py")
key = kms.create_key("agent:p", kakunin.KeyAlgorithm.ecdsa_p256)
assert kms.find_key("agent:p").id == key.id
sig = kms.sign(key, b"hello")
assert sig[:1] == b"\\x30" and len(kms.public_key_der(key)) > 60
try:
    kakunin.Pkcs11Kms.open({module!r}, "py", pin="0000")
    raise SystemExit("a wrong PIN opened the token")
except kakunin.UnauthorisedError:
    pass
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
