"""The load of suite 4 that is not the paired Hub: idle sockets and competing hubs.

    python scripts/reliability_lib/peers.py --port PORT --raw 100 --ws 100 --hubs 50 --spread 5 --out peers.json

* `raw` TCP connections that connect and never send a byte (not even the HTTP request);
* `ws` WebSocket connections that finish the HTTP upgrade and never send `hub_connected`;
* `hubs` competing hubs: real `HubClient`s with their own (unpaired) identity, started one by one
  over `spread` seconds, each expecting error 409 (another hub is connected). A hub refused with
  HTTP 503 tries again with a backoff (0.25 s doubling up to 2 s), until `deadline`; each 503 is
  counted. (Agents before issue 7 answered 503 while 32 connections were in the handshake; the
  Agent now evicts the oldest of those instead, so any 503 is a regression.)

Every idle socket waits until the Agent closes it (or `deadline`): the report says how and when.
`make load` runs this as its own process, so that the load does not share the Hub's event loop;
the sample test runs `run_peers` in-process. Prints `ready` once the idle sockets are open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from capydeploy.hub.client import HubClient
from capydeploy.hub.errors import AgentError, ConnectionLost


@dataclass
class SocketOutcome:
    kind: str  # "raw" or "ws"
    opened_at: float  # time.monotonic()
    outcome: str = "open"  # "closed" (by the Agent), "refused 503", "error", "open" (still, at the deadline)
    after: float | None = None  # seconds from open to the Agent's close
    close_code: int | None = None
    detail: str = ""


@dataclass
class HubOutcome:
    index: int
    started_at: float
    result: str = ""  # "409", or what happened instead
    refused_503: int = 0
    seconds: float = 0.0
    detail: str = ""


@dataclass
class PeersReport:
    sockets: list[SocketOutcome] = field(default_factory=list)
    hubs: list[HubOutcome] = field(default_factory=list)
    cpu_seconds: float = 0.0  # CPU time of the process that ran the peers

    def to_json(self) -> dict[str, Any]:
        return {
            "sockets": [asdict(s) for s in self.sockets],
            "hubs": [asdict(h) for h in self.hubs],
            "cpuSeconds": self.cpu_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeersReport:
        return cls(
            sockets=[SocketOutcome(**s) for s in data["sockets"]],
            hubs=[HubOutcome(**h) for h in data["hubs"]],
            cpu_seconds=float(data.get("cpuSeconds", 0.0)),
        )

    # --- summaries ---------------------------------------------------------------------------

    def closed(self, kind: str) -> list[SocketOutcome]:
        return [s for s in self.sockets if s.kind == kind and s.outcome == "closed"]

    def count(self, kind: str, outcome: str) -> int:
        return sum(1 for s in self.sockets if s.kind == kind and s.outcome == outcome)

    def timing(self, kind: str) -> str:
        times = [s.after for s in self.closed(kind) if s.after is not None]
        if not times:
            return "-"
        return f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, max {max(times):.2f} s"

    def close_codes(self, kind: str) -> dict[str, int]:
        codes: dict[str, int] = {}
        for s in self.closed(kind):
            key = str(s.close_code) if s.close_code is not None else "TCP close"
            codes[key] = codes.get(key, 0) + 1
        return codes

    def count_detail(self, kind: str, detail: str) -> int:
        """Sockets of `kind` the Agent closed with this close reason."""
        return sum(1 for s in self.closed(kind) if s.detail == detail)

    @property
    def got_409(self) -> int:
        return sum(1 for h in self.hubs if h.result == "409")

    @property
    def refusals_503(self) -> int:
        return sum(h.refused_503 for h in self.hubs)

    @property
    def all_idle_closed(self) -> bool:
        return all(s.outcome in ("closed", "refused 503") for s in self.sockets)


class _Opened:
    """Counts idle sockets whose connect has been answered; `event` is set when all have."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.event = asyncio.Event()
        if total == 0:
            self.event.set()

    def done(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.event.set()


async def idle_raw(host: str, port: int, deadline: float, opened: _Opened) -> SocketOutcome:
    """Connect and send nothing; wait for the Agent to close the socket."""
    outcome = SocketOutcome("raw", time.monotonic())
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        outcome.outcome, outcome.detail = "error", str(error)
        return outcome
    finally:
        opened.done()
    outcome.opened_at = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - time.monotonic()))
        outcome.outcome = "closed"
        outcome.after = time.monotonic() - outcome.opened_at
        if data:  # an HTTP error response before the close (not expected: we sent nothing)
            outcome.detail = data[:60].decode("latin-1")
    except TimeoutError:
        outcome.outcome = "open"
    except (ConnectionError, OSError) as error:
        outcome.outcome = "closed"
        outcome.after = time.monotonic() - outcome.opened_at
        outcome.detail = type(error).__name__
    finally:
        writer.transport.abort()
    return outcome


async def idle_ws(url: str, deadline: float, opened: _Opened) -> SocketOutcome:
    """Finish the HTTP upgrade and send nothing; wait for the Agent to close the WebSocket."""
    outcome = SocketOutcome("ws", time.monotonic())
    try:
        ws = await websockets.connect(url, ping_interval=None, open_timeout=30, compression=None)
    except InvalidStatus as error:
        outcome.outcome = f"refused {error.response.status_code}"
        outcome.after = time.monotonic() - outcome.opened_at
        return outcome
    except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
        outcome.outcome, outcome.detail = "error", f"{type(error).__name__}: {error}"
        return outcome
    finally:
        opened.done()
    outcome.opened_at = time.monotonic()
    try:
        await asyncio.wait_for(ws.wait_closed(), max(0.0, deadline - time.monotonic()))
        outcome.outcome = "closed"
        outcome.after = time.monotonic() - outcome.opened_at
        outcome.close_code = ws.close_code
        outcome.detail = ws.close_reason or ""
    except TimeoutError:
        outcome.outcome = "open"
    finally:
        ws.transport.abort()
    return outcome


async def competing_hub(index: int, url: str, config_dir: Path, deadline: float) -> HubOutcome:
    """A hub that was never paired asks to connect while the paired one is: 409 is the answer."""
    outcome = HubOutcome(index, time.monotonic())
    backoff = 0.25
    while True:
        client = HubClient(url, config_dir=config_dir, reconnect=False)
        try:
            await client.connect()
        except AgentError as error:
            outcome.result = str(error.code)
            outcome.detail = error.message
            break
        except ConnectionLost as error:
            if "503" in str(error) and time.monotonic() < deadline:
                outcome.refused_503 += 1
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            outcome.result, outcome.detail = "connection lost", str(error)
            break
        else:
            outcome.result = "connected"  # must never happen while the paired hub is connected
            await client.close()
            break
    outcome.seconds = time.monotonic() - outcome.started_at
    return outcome


async def run_peers(
    host: str,
    port: int,
    *,
    raw: int,
    ws: int,
    hubs: int,
    spread: float,
    deadline_after: float,
    hub_dir: Path,
    ready: asyncio.Event | None = None,
) -> PeersReport:
    url = f"ws://{host}:{port}/ws"
    deadline = time.monotonic() + deadline_after
    opened = _Opened(raw + ws)
    sockets = [asyncio.create_task(idle_raw(host, port, deadline, opened)) for _ in range(raw)]
    sockets += [asyncio.create_task(idle_ws(url, deadline, opened)) for _ in range(ws)]
    # Every connect answered (accepted, or refused with 503) before the hubs start.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(opened.event.wait(), max(0.0, deadline - time.monotonic()))
    if ready is not None:
        ready.set()
    hub_tasks = []
    step = spread / hubs if hubs else 0.0
    for index in range(hubs):
        hub_tasks.append(asyncio.create_task(competing_hub(index, url, hub_dir / f"hub-{index}", deadline)))
        await asyncio.sleep(step)
    report = PeersReport()
    report.hubs = list(await asyncio.gather(*hub_tasks))
    report.sockets = list(await asyncio.gather(*sockets))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--raw", type=int, default=100)
    parser.add_argument("--ws", type=int, default=100)
    parser.add_argument("--hubs", type=int, default=50)
    parser.add_argument("--spread", type=float, default=5.0, help="seconds over which the hubs start")
    parser.add_argument("--deadline", type=float, default=60.0, help="give up waiting after this many seconds")
    parser.add_argument("--hub-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    async def go() -> PeersReport:
        ready = asyncio.Event()
        task = asyncio.create_task(
            run_peers(
                args.host, args.port, raw=args.raw, ws=args.ws, hubs=args.hubs, spread=args.spread,
                deadline_after=args.deadline, hub_dir=args.hub_dir, ready=ready,
            )
        )
        await ready.wait()
        print("ready", flush=True)
        return await task

    report = asyncio.run(go())
    report.cpu_seconds = time.process_time()
    args.out.write_text(json.dumps(report.to_json()))
    with contextlib.suppress(BrokenPipeError):
        print("done", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
