"""The Agent's resident memory: libraries it needs only now and then are not loaded at start-up."""

from __future__ import annotations

import subprocess
import sys


def _modules_after_import(module: str, candidates: tuple[str, ...]) -> list[str]:
    code = f"import sys, {module}\nprint(' '.join(name for name in {candidates!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_the_agent_starts_without_the_http_client_library() -> None:
    # aiohttp and yarl are about 9 MiB of the Agent's resident memory; only artwork URLs need them.
    assert _modules_after_import("capydeploy.agent.cli", ("aiohttp", "yarl")) == []


def test_fetching_artwork_loads_it() -> None:
    # The lazy import is the one the download path makes (the control for the test above).
    loaded = _modules_after_import("capydeploy.steam._http_download", ("aiohttp", "yarl"))
    assert loaded == ["aiohttp", "yarl"]
