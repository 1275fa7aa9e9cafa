"""`make load`: suite 4, a big deploy while idle sockets, competing hubs and 1 000 pings/s hit the Agent.

    python scripts/load.py [--size-mib 1024] [--idle-raw 100] [--idle-ws 100] [--hubs 50]
                           [--ping-rate 1000] [--json FILE] [--keep]

Everything runs on loopback in a temporary folder (removed at the end unless --keep): the Agent is
the real standalone Agent as its own process (under scripts/reliability_lib/agent_with_ticker.py,
which adds a 10 ms loop-lag ticker), the paired Hub is the hub library in this process, the idle
sockets and competing hubs run in a third process. See scripts/reliability_lib/load_suite.py.

The figures (throughput with and without load, peak memory, loop lag, ping rate) are printed, not
judged. Exit code 0 when everything was correct: both deploys byte-identical, every competing hub
got 409, every idle socket was closed by the Agent, every ping answered; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_lib.load_suite import LoadOptions, figure_rows, run_load
from reliability_lib.sandbox import load_average


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="load.py", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=float, default=1024.0, help="size of the deployed game (default 1024)")
    parser.add_argument("--idle-raw", type=int, default=100, help="idle raw TCP sockets (default 100)")
    parser.add_argument("--idle-ws", type=int, default=100, help="idle WebSocket connections (default 100)")
    parser.add_argument("--hubs", type=int, default=50, help="competing hubs (default 50)")
    parser.add_argument("--ping-rate", type=float, default=1000.0, help="pings per second (default 1000)")
    parser.add_argument(
        "--no-lockout-probe", action="store_true",
        help="skip the last step: the paired hub reconnecting while 40 idle WebSockets are open",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="capydeploy-load-"))
    log_handler = logging.FileHandler(work / "hub.log")
    logging.basicConfig(level=logging.INFO, handlers=[log_handler], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = LoadOptions(
        workdir=work,
        size_mib=args.size_mib,
        idle_raw=args.idle_raw,
        idle_ws=args.idle_ws,
        hubs=args.hubs,
        ping_rate=args.ping_rate,
        lockout_probe=not args.no_lockout_probe,
    )
    print(f"Load average before the run: {load_average()}")
    report = asyncio.run(run_load(options))
    print(f"\nMachine: {report.machine}")
    print("\n== Figures")
    rows = figure_rows(report)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    if args.json:
        args.json.write_text(json.dumps({"machine": report.machine, "figures": dict(rows), "problems": report.problems}, indent=2))
    logging.getLogger().removeHandler(log_handler)
    log_handler.close()
    if args.keep or not report.ok:
        print(f"\nlogs and files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("\nRESULT:", "PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
