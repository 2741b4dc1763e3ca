"""``reverse`` config from the command line: 4.34's errors are one line, exit 23, from
``v2py test`` and ``v2py run``; what 4.34 accepts is accepted (checked with
``v2ray -test`` under the interop marker)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.shell.test_cli import _result_lines, _run
from tests.support.v2ray import require_v2ray

OUT = [{"protocol": "freedom", "tag": "direct"}]

BAD = [
    ({"bridges": [{"tag": "b"}]}, "reverse.bridges[0].domain", "bridge domain is empty"),
    ({"bridges": [{"domain": "x"}]}, "reverse.bridges[0].tag", "bridge tag is empty"),
    ({"portals": [{"tag": "p"}]}, "reverse.portals[0].domain", "portal domain is empty"),
    ({"portals": [{"domain": "x"}]}, "reverse.portals[0].tag", "portal tag is empty"),
    ({"bridges": [{"tag": 1, "domain": "x"}]}, "reverse.bridges[0].tag", "not a string"),
    ([], "reverse", "object"),
]
GOOD = [
    {"bridges": [{"tag": "b", "domain": "x"}, {"tag": "b", "domain": "y"}]},
    {"portals": [{"tag": "direct", "domain": "x"}]},
    {"bridges": [{"tag": "direct", "domain": "x"}], "portals": [{"tag": "p", "domain": "x"}]},
    {"bridges": None},
]


def _config(reverse: Any) -> str:
    return json.dumps({"reverse": reverse, "outbounds": OUT})


@pytest.mark.parametrize(("reverse", "path", "fragment"), BAD)
async def test_bad_reverse_is_one_line_exit_23(
    tmp_path: Path, reverse: Any, path: str, fragment: str
) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(_config(reverse))
    for args in (("test", "-c", str(cfg)), ("run", "-c", str(cfg))):
        code, out, err = await _run(*args)
        assert code == 23, (args, out, err)
        lines = _result_lines(out)
        assert len(lines) == 1 and path in lines[0] and fragment in lines[0], out


@pytest.mark.parametrize("reverse", GOOD)
async def test_good_reverse_passes_test(tmp_path: Path, reverse: Any) -> None:
    cfg = tmp_path / "good.json"
    cfg.write_text(_config(reverse))
    code, out, err = await _run("test", "-c", str(cfg))
    assert code == 0, (out, err)


@pytest.mark.interop
@pytest.mark.parametrize(
    ("reverse", "ok"), [*((r, False) for r, _, _ in BAD), *((r, True) for r in GOOD)]
)
def test_v2ray_agrees(tmp_path: Path, reverse: Any, ok: bool) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(_config(reverse))
    result = subprocess.run(
        [require_v2ray(), "-test", "-config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ("Configuration OK" in result.stdout) is ok, result.stdout
