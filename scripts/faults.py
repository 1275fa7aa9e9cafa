"""`make faults`: suite 3, the Agent under faults (SIGKILL, connection cuts, full disk, corrupt shortcuts.vdf).

    python scripts/faults.py [--kills 20] [--cuts 50] [--disk-fulls 3] [--enospc 3] [--corrupt-vdfs 8]
                             [--game-mib 48] [--seed N] [--time-limit 1800] [--json FILE] [--keep]

Everything runs on loopback in a temporary folder (removed at the end unless --keep). The Agent is
the real `capydeploy.agent.cli` process (and, for the injected-ENOSPC rounds, an in-process Agent
whose transfer service writes through a failing FileWriter); the Hub is the real hub library. See
scripts/reliability_lib/faults_suite.py for what each fault does and what is checked after it.

Exit code 0 when every requested fault was injected and no check failed (no data lost, every
deploy resumed and finished byte for byte, shortcuts.vdf never half-written); 1 otherwise.
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

from reliability_lib.faults_suite import FaultOptions, FaultReport, run_faults, summary_rows
from reliability_lib.sandbox import describe_machine, load_average


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="faults.py", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the agent (default 20)")
    parser.add_argument("--cuts", type=int, default=50, help="connection cuts (default 50)")
    parser.add_argument("--disk-fulls", type=int, default=3, help="disk-full rounds on a tmpfs (default 3)")
    parser.add_argument("--enospc", type=int, default=3, help="injected ENOSPC rounds (default 3)")
    parser.add_argument("--corrupt-vdfs", type=int, default=8, help="corrupt shortcuts.vdf files (default 8)")
    parser.add_argument("--game-mib", type=float, default=48.0, help="size of the test game in MiB (default 48)")
    parser.add_argument(
        "--install-share", type=float, default=0.2,
        help="share of kills and cuts aimed at complete_upload instead of the upload (default 0.2)",
    )
    parser.add_argument("--seed", type=int, default=20240607)
    parser.add_argument("--time-limit", type=float, default=1800.0, help="stop after this many seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def print_report(report: FaultReport) -> None:
    width = max(len(label) for label, _ in summary_rows(report))
    print("\n== Figures")
    for label, value in summary_rows(report):
        print(f"  {label:<{width}}  {value}")
    if report.kill_positions:
        print("\n== Where the SIGKILLs landed")
        for index, position in enumerate(report.kill_positions, 1):
            print(f"  {index:>2}. {position}")
    if report.missed:
        print("\n== Planned faults that did not happen (the deploy finished first; more rounds were run)")
        for kind, count in sorted(report.missed.items()):
            print(f"  {kind}: {count}")
    if report.vdf_tempfiles:
        print(f"\nnote: up to {report.vdf_tempfiles} temp file(s) left beside shortcuts.vdf by a SIGKILL")
    for note in report.notes:
        print(f"note: {note}")
    for skipped in report.skipped:
        print(f"skipped: {skipped}")
    if report.violations:
        print("\n== VIOLATIONS")
        for violation in report.violations:
            print(f"  {violation}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="capydeploy-faults-"))
    log_handler = logging.FileHandler(work / "hub-and-inprocess-agent.log")
    logging.basicConfig(
        level=logging.INFO, handlers=[log_handler], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(f"Machine: {describe_machine()}")
    print(f"Load average before the run: {load_average()}")
    print(f"Work folder: {work}  (seed {args.seed})")
    options = FaultOptions(
        workdir=work,
        kills=args.kills,
        cuts=args.cuts,
        disk_fulls=args.disk_fulls,
        enospc=args.enospc,
        corrupt_vdfs=args.corrupt_vdfs,
        game_mib=args.game_mib,
        seed=args.seed,
        install_share=args.install_share,
        time_limit=args.time_limit,
    )
    report = asyncio.run(run_faults(options))
    print_report(report)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": describe_machine(),
                    "figures": dict(summary_rows(report)),
                    "killPositions": report.kill_positions,
                    "missed": dict(report.missed),
                    "violations": report.violations,
                    "notes": report.notes,
                    "skipped": report.skipped,
                },
                indent=2,
            )
        )
    ok = report.complete and not report.violations and report.data_lost == 0
    logging.getLogger().removeHandler(log_handler)
    log_handler.close()
    if args.keep or not ok:
        print(f"\nlogs and files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("\nRESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
