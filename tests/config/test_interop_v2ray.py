"""Cross-check against the real ``v2ray -test -config`` (4.34), where our strictness agrees.

v2py is stricter than 4.34 in places (docs/style.md section 5: unknown enum strings,
unsupported transports, duplicate tags, detour targets, concurrency ≤ 1/3 of
the range, trailing text after the document...). Only the cases where both
reject, or both accept, are listed here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.config.cases import CONFIGS_DIR, load
from tests.config.test_bad_configs import BAD, Bad
from tests.config.test_good_configs import LEGACY
from tests.support.v2ray import require_v2ray
from v2py.config import DEFAULT_CONFIG_JSON
from v2py.errors import ConfigError

pytestmark = pytest.mark.interop

V2RAY_TEST_TIMEOUT_S = 30

# Bad configs that 4.34 rejects as well (checked with `v2ray -test`).
BOTH_REJECT = {
    "port-70000", "port-negative", "port-string-70000", "port-range-reversed",
    "port-range-end-too-big", "port-garbage", "port-true", "port-float",
    "port-env-missing", "port-env-empty", "port-env-garbage", "port-missing",
    "port-missing-with-listen", "inbound-protocol-unknown", "inbound-protocol-missing",
    "outbound-protocol-unknown", "vmess-outbound-no-vnext", "vmess-outbound-empty-vnext",
    "vmess-outbound-no-users", "vmess-outbound-no-address",
    "clients-not-list", "settings-not-object", "inbounds-not-list", "level-string",
    "udp-string", "tag-number", "top-level-list", "comment-left-open", "missing-comma",
    "unterminated-string", "nan", "bad-uuid", "uuid-missing", "outbound-bad-uuid",
    "alterid-70000", "default-alterid-negative", "duplicate-email", "network-unknown",
    "mtu-100", "tti-5", "kcp-header-unknown", "kcp-header-without-type", "transport-mtu",
    "random-needs-range", "strategy-external", "strategy-missing", "dest-override-ftp",
    "dest-override-ftp-string", "domain-override-ftp", "policy-negative", "policy-level-key",
    "listen-domain", "send-through-domain", "freedom-redirect", "blackhole-response",
    "legacy-inbound-detour-port", "legacy-inbound-settings", "case-insensitive-key",
    "mux-concurrency-1025", "mux-concurrency-off-1025", "dns-out-port-70000",
    "dns-out-network-number", "vless-out-no-encryption", "vless-out-no-users",
    "vless-in-no-decryption",
    "ss-in-no-password", "ss-in-stream-cipher", "ss-in-no-method", "ss-out-no-servers",
    "ss-out-no-port", "vless-in-duplicate-email", "vless-in-fallback-null",
    "vless-in-fallback-path", "vless-in-fallback-no-dest", "vless-in-fallback-xver",
    "trojan-in-fallback-no-dest", "mtproto-in-no-users", "mtproto-in-short-secret",
    "mtproto-in-bad-secret",
    "trojan-in-fallback-null", "trojan-in-duplicate-email", "trojan-out-no-servers",
    "trojan-out-no-address", "trojan-out-no-port", "trojan-out-no-password",
    "trojan-out-level-256",
}  # fmt: skip

# 4.34 looks up the "type" key of header objects case-sensitively (a raw map
# lookup, unlike struct fields); v2py also accepts "Type".
COMMENTED_AND_MIXED_CASE = """# hash comment
{
  // line comment
  "Inbounds": [{"PORT": "env:V2PY_TEST_PORT", "Protocol": "VMess", /* block */
    "Settings": {"Clients": [{"ID": "d17a1af7-efa5-42ca-b7e9-6a35282d737f", "AlterId": 4}]},
    "StreamSettings": {"Network": "mkcp", "KcpSettings": {"Header": {"type": "DTLS"},
                       "seed": "x // not a comment"}}}],
  "outbounds": [{"protocol": "Freedom", "settings": {"domainStrategy": "UseIPv4"}}]
}
"""

GOOD_TEXTS: dict[str, tuple[str, dict[str, str]]] = {
    **{p.name: (p.read_text(encoding="utf-8"), {}) for p in CONFIGS_DIR.glob("dynamic-*.json")},
    "legacy": (LEGACY, {}),
    "default": (DEFAULT_CONFIG_JSON, {}),
    "commented-mixed-case-env": (COMMENTED_AND_MIXED_CASE, {"V2PY_TEST_PORT": "20000-20010"}),
}


def v2ray_accepts(text: str, env: dict[str, str], tmp_path: Path) -> tuple[bool, str]:
    """Run ``v2ray -test -config`` on ``text``; True when it says "Configuration OK"."""
    binary = require_v2ray()
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [binary, "-test", "-config", str(path)],
        capture_output=True,
        text=True,
        timeout=V2RAY_TEST_TIMEOUT_S,
        env={**os.environ, **env},
        check=False,
    )
    output = result.stdout + result.stderr
    return result.returncode == 0 and "Configuration OK" in output, output


@pytest.mark.parametrize("name", sorted(GOOD_TEXTS))
def test_both_accept(name: str, tmp_path: Path) -> None:
    text, env = GOOD_TEXTS[name]
    load(text, env)
    accepted, output = v2ray_accepts(text, env, tmp_path)
    assert accepted, output


BAD_BOTH = [case for case in BAD if case.id in BOTH_REJECT]


def test_every_listed_case_exists() -> None:
    assert {case.id for case in BAD_BOTH} == BOTH_REJECT


@pytest.mark.parametrize("case", BAD_BOTH, ids=[c.id for c in BAD_BOTH])
def test_both_reject(case: Bad, tmp_path: Path) -> None:
    text = case.data if isinstance(case.data, str) else json.dumps(case.data)
    with pytest.raises(ConfigError):
        load(text, case.env)
    accepted, output = v2ray_accepts(text, case.env, tmp_path)
    assert not accepted, output
