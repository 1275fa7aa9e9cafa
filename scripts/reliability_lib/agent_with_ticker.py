"""Run the standalone Agent with a 10 ms ticker on its own event loop (for `make load`).

    CAPYDEPLOY_TICKER_FILE=lag.json python scripts/reliability_lib/agent_with_ticker.py [agent arguments...]

Nothing in the product changes: this wrapper swaps `capydeploy.agent.cli.run` for a version that
also runs a ticker task beside the Agent. The ticker sleeps `CAPYDEPLOY_TICKER_INTERVAL` seconds
(default 0.01) again and again; each wake-up's lag is the measured interval minus the requested
one. When the Agent stops (SIGTERM, SIGINT), the wrapper writes a JSON file:

    {"interval": 0.01, "count": N, "p50": s, "p99": s, "max": s,
     "samples": [[monotonic time of the wake-up, lag in seconds], ...]}

CLOCK_MONOTONIC is shared by every process on Linux, so the caller can cut the samples into its own
phases (a deploy without load, the same deploy under load).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from capydeploy.agent import cli
from capydeploy.agent.config import AgentConfig

TICKER_FILE = os.environ.get("CAPYDEPLOY_TICKER_FILE")
INTERVAL = float(os.environ.get("CAPYDEPLOY_TICKER_INTERVAL", "0.01"))


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def _ticker(samples: list[tuple[float, float]], interval: float) -> None:
    clock = time.monotonic
    while True:
        before = clock()
        await asyncio.sleep(interval)
        now = clock()
        samples.append((now, max(0.0, now - before - interval)))


def _save(samples: list[tuple[float, float]], path: str) -> None:
    lags = [lag for _, lag in samples]
    report = {
        "interval": INTERVAL,
        "count": len(lags),
        "p50": percentile(lags, 0.50),
        "p99": percentile(lags, 0.99),
        "max": max(lags, default=0.0),
        "samples": [[round(t, 6), round(lag, 6)] for t, lag in samples],
    }
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(report))
    os.replace(tmp, path)


_product_run = cli.run


async def run_with_ticker(config: AgentConfig) -> int:
    if not TICKER_FILE:
        return await _product_run(config)
    samples: list[tuple[float, float]] = []
    ticker = asyncio.create_task(_ticker(samples, INTERVAL))
    try:
        return await _product_run(config)
    finally:
        ticker.cancel()
        _save(samples, TICKER_FILE)


def main() -> None:
    cli.run = run_with_ticker  # cli.main looks `run` up when it is called
    code = cli.main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # like `python -m capydeploy.agent.cli`


if __name__ == "__main__":
    main()
