"""Run the standalone Agent (`capydeploy.agent.cli`) with an event-loop lag probe, for `make bench`.

    python scripts/benchlib/agent_with_probe.py [capydeploy-agent arguments...]

Nothing in the product changes: this wrapper swaps `capydeploy.agent.cli.run` for a version that
also runs a ticker task on the Agent's own event loop. The ticker sleeps `CAPYDEPLOY_BENCH_LAG_INTERVAL`
seconds (default 0.01) again and again; each wake-up's lag is the measured interval minus the
requested one. When the Agent stops (SIGTERM, SIGINT), the samples go to `CAPYDEPLOY_BENCH_LAG_FILE`
as little-endian float64 pairs `(time.monotonic() at wake-up, lag in seconds)`; CLOCK_MONOTONIC is
shared by every process on Linux, so the bench can cut them into its own phases.

With `CAPYDEPLOY_BENCH_THREAD_NAMES=1` every Python thread also gives its name to the kernel (the
first 15 bytes, through prctl), so per-thread CPU in /proc, `top -H` or `perf` says which pool it is.

Without these variables the Agent runs exactly as `python -m capydeploy.agent.cli` does.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import threading
import time
from array import array
from pathlib import Path

from capydeploy.agent import cli
from capydeploy.agent.config import AgentConfig

LAG_FILE = os.environ.get("CAPYDEPLOY_BENCH_LAG_FILE")
INTERVAL = float(os.environ.get("CAPYDEPLOY_BENCH_LAG_INTERVAL", "0.01"))


async def _ticker(samples: array[float], interval: float) -> None:
    clock = time.monotonic
    while True:
        before = clock()
        await asyncio.sleep(interval)
        now = clock()
        samples.append(now)
        samples.append(now - before - interval)


def _save(samples: array[float], path: str) -> None:
    if sys.byteorder != "little":
        samples.byteswap()
    tmp = Path(path + ".tmp")
    tmp.write_bytes(samples.tobytes())
    os.replace(tmp, path)


_product_run = cli.run
PR_SET_NAME = 15


def _name_os_threads() -> None:
    """Make each new threading.Thread call prctl(PR_SET_NAME, its name) when it starts."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        libc.prctl(PR_SET_NAME, self.name.encode()[:15], 0, 0, 0)
        original(self)

    threading.Thread.run = run  # type: ignore[method-assign]
    libc.prctl(PR_SET_NAME, b"agent-loop", 0, 0, 0)


async def run_with_probe(config: AgentConfig) -> int:
    if not LAG_FILE:
        return await _product_run(config)
    samples: array[float] = array("d")
    ticker = asyncio.create_task(_ticker(samples, INTERVAL))
    try:
        return await _product_run(config)
    finally:
        ticker.cancel()
        _save(samples, LAG_FILE)


def main() -> None:
    if os.environ.get("CAPYDEPLOY_BENCH_THREAD_NAMES") == "1":
        _name_os_threads()
    cli.run = run_with_probe  # type: ignore[assignment]  # cli.main looks `run` up when it is called
    code = cli.main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # like `python -m capydeploy.agent.cli`: do not wait for idle worker threads


if __name__ == "__main__":
    main()
