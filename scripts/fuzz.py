"""`make fuzz`: hostile frames at a live Agent, before and after authentication, while a Hub deploys.

    python scripts/fuzz.py [--cases 10000] [--seed N] [--hang-timeout 10] [--time-limit 1800]
                           [--in-process] [--keep] [--log-level info]

Starts the Agent as its own process on 127.0.0.1 (sandboxed: no Steam, no name resolution, every
artwork address refused; see scripts/reliability/sandbox.py), pairs a Hub with the code shown on
the Agent's terminal, and keeps that Hub deploying a small generated game. Hypothesis then draws
`--cases` frames (text frames, envelopes, payloads, binary chunk frames: truncated, oversized,
wrong lengths, bad JSON, wrong types, huge numbers, Unicode tricks, deep nesting); half go over raw
connections that never authenticate, half over the paired Hub's own socket. See
scripts/reliability/fuzzing.py for the design.

It stops by itself after `--cases` cases or `--time-limit` seconds, prints the figures (cases,
replies by code, closes by close code, crashes, hangs, anomalies, parallel deploys) and exits 1
if any crash, hang, anomaly or deploy failure was seen. Everything happens on loopback, in a
temporary folder removed at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from reliability.fuzzing import FuzzReport, InProcessTarget, ProcessTarget, machine_description, run_fuzz
from reliability.sandbox import sandbox_config, seal_network

from capydeploy.agent.server import Agent


def _say(line: str) -> None:
    print(line, flush=True)


async def _run(args: argparse.Namespace, work: Path) -> FuzzReport:
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    _say(f"fuzz: {args.cases} cases, seed {seed}, hang bound {args.hang_timeout:g} s, work folder {work}")
    started = time.monotonic()

    def progress(line: str) -> None:
        _say(f"  {time.monotonic() - started:6.1f} s  {line}")

    if args.in_process:
        agent = Agent(sandbox_config(work / "device"))
        seal_network(agent)
        await agent.start()
        target = InProcessTarget(agent)
        try:
            return await run_fuzz(
                target, work, cases=args.cases, seed=seed, hang_timeout=args.hang_timeout,
                time_limit=args.time_limit, progress=progress,
            )
        finally:
            target.close()
            await agent.stop()
    process = ProcessTarget(work / "device", log_level=args.log_level)
    await process.start()
    _say(f"agent: {process.description}, {process.url}, log {process.log_path}")
    try:
        report = await run_fuzz(
            process, work, cases=args.cases, seed=seed, hang_timeout=args.hang_timeout,
            time_limit=args.time_limit, progress=progress,
        )
    finally:
        code = await process.stop()
    if code != 0:
        report.crashes += 1
        report.crash_lines.append(f"the Agent process ended with exit code {code} on SIGTERM")
    secrets_in_log = [code for code in process.codes if code in process.log_text()]
    if secrets_in_log:
        report.anomaly("pairing code in the agent log", ", ".join(secrets_in_log))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="frames to send (half before, half after auth)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random, printed)")
    parser.add_argument("--hang-timeout", type=float, default=10.0, help="seconds a reply or close may take")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="stop sending after this many seconds")
    parser.add_argument("--in-process", action="store_true", help="run the Agent on this event loop instead")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--keep", action="store_true", help="keep the work folder (agent log, device)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="capydeploy-fuzz-"))
    try:
        report = asyncio.run(_run(args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _say("")
    _say(report.summary())
    _say(f"machine:          {machine_description()}")
    if args.keep:
        _say(f"work folder kept: {work}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
