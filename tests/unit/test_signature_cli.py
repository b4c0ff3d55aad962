"""``lienthong package sign`` / ``package verify`` for scripts: exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from router.cli.package_sign import sign_cmd, verify_cmd
from tests.factory import edoc
from tests.pki import identity


def test_sign_then_verify_and_every_refusal(tmp_path: Path) -> None:
    runner = CliRunner()
    who = identity("vpcp", "rsa")
    key, cert = who.write(tmp_path, "vpcp")
    _, other_cert = identity("other", "p256").write(tmp_path, "other")
    src, out = tmp_path / "doc.edxml", tmp_path / "doc.signed.edxml"
    src.write_bytes(edoc("000.00.00.G22", ["000.00.00.H41"])[1])

    signed = runner.invoke(sign_cmd, [str(src), "--key", str(key), "--cert", str(cert),
                                      "-o", str(out)])
    assert signed.exit_code == 0, signed.output
    ok = runner.invoke(verify_cmd, [str(out), "--cert", str(cert)])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.output)
    assert summary["valid"] is True
    assert summary["trusted"] is True

    def refusal(path: Path, *extra: str) -> str:
        r = runner.invoke(verify_cmd, [str(path), *extra])
        assert r.exit_code == 65, r.output
        reason: str = json.loads(r.output)["error"]["reason"]
        return reason

    tampered = tmp_path / "tampered.edxml"
    tampered.write_bytes(out.read_bytes().replace(b"V/v k", b"V/V k", 1))
    assert refusal(tampered, "--cert", str(cert)) == "SIGNATURE_INVALID"
    assert refusal(out, "--cert", str(other_cert)) == "CERTIFICATE_UNKNOWN"
    assert refusal(src) == "SIGNATURE_REQUIRED"
    again = runner.invoke(sign_cmd, [str(out), "--key", str(key), "--cert", str(cert),
                                     "-o", str(tmp_path / "twice.edxml")])
    assert again.exit_code == 65
