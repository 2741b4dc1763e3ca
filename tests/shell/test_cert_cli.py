"""``v2py cert`` (v2ctl cert's flags and certificate; src/v2py/cert_cli.py)."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
from cryptography import x509

from v2py.cert_cli import parse_go_duration
from v2py.cli import main
from v2py.transport.pem import go_private_key


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("240h", 864000), ("1h30m", 5400), ("1.5h", 5400), ("-1h", -3600), ("0", 0),
     ("90s", 90), ("500ms", 0.5), ("2160h0m0s", 7776000), ("+5m", 300), (".5m", 30)],
)  # fmt: skip
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    "text", ["", "1", "h", "1d", "1h-2m", "--1h", ".h", "1.5.5h", "9" * 400 + "h", "2562048h"]
)
def test_what_go_durations_refuse(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_json_certificate_as_v2ctl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "-domain", "a.test", "--domain=b.test", "-name", "n", "-org", "o"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(doc) == ["certificate", "key"]
    cert = x509.load_pem_x509_certificate("\n".join(doc["certificate"]).encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.test", "b.test"]
    assert cert.subject.rfc4514_string() == "CN=n,O=o"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert abs(lifetime - datetime.timedelta(days=90)) < datetime.timedelta(minutes=5)
    assert go_private_key("\n".join(doc["key"]).encode()) is not None


def test_ca_to_files_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = str(tmp_path / "ca")
    assert main(["cert", "--ca", "--json=false", "--expire=24h", f"--file={prefix}"]) == 0
    assert capsys.readouterr().out == ""
    cert = x509.load_pem_x509_certificate(Path(prefix + "_cert.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert os.stat(prefix + "_key.pem").st_mode & 0o777 == 0o600


def test_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "-expire", "soon"]) == 2
    assert "-expire" in capsys.readouterr().err
    assert main(["cert", "-domain="]) == 2
    assert main(["cert", "-nope"]) == 2
    assert main(["cert", "-expire", "-2h"]) == 2  # would end before it begins
    assert main(["cert", "-expire", "9999999999h"]) == 2
    assert "cannot make this certificate" in capsys.readouterr().err
