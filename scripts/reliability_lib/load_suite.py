"""Suite 4, load: a big deploy while idle sockets, competing hubs and a flood of pings hit the Agent.

The same deploy (a generated game, 1 GiB by default) runs twice on one Agent process, to two game
names so that both send every byte: first with no load (the baseline), then under load:

* idle sockets that never finish the handshake: raw TCP connections that send nothing at all, and
  WebSocket connections that never send `hub_connected` (the Agent must close each one after its
  10 s handshake timeout, raw TCP ones through the websockets server's `open_timeout`, or sooner
  with 1008 when it evicts the oldest to admit newer ones past its limits of 32 connections in the
  handshake, 8 per address);
* competing hubs, each a real unpaired `HubClient` that must get error 409 (another hub is
  connected), started one by one over the expected deploy time;
* JSON pings from the paired Hub at a fixed rate (open loop: a ping is sent every 1/rate seconds
  whether or not the earlier ones were answered), on the same connection as the deploy.

The idle sockets and the competing hubs run in a separate process (`peers.py`) so they do not
share the Hub's event loop. The Agent runs under `agent_with_ticker.py`: a 10 ms ticker on its own
event loop records the loop lag, cut here into the two deploy windows. Its peak memory is VmHWM,
reset before each deploy.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import Deployment, DeployOptions, DeployResult, prepare
from capydeploy.hub.errors import HubError
from capydeploy.hub.scan import LocalFile
from capydeploy.protocol import messages as m
from capydeploy.protocol.constants import MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_ADDRESS

from .games import sha256_file, tree_digest
from .peers import PeersReport, run_peers
from .sandbox import AgentProcess, DeviceHome, describe_machine, machine_cpu

HERE = Path(__file__).resolve().parent
MiB = 1024 * 1024
HANG_GUARD = 1800.0
EVICTED_REASON = "too many pending connections"  # the close reason of an evicted connection
CORES = os.cpu_count() or 1


def make_load_game(folder: Path, size: int) -> Path:
    """A launcher, 16 small files and one big file that makes up the rest of `size`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bin").mkdir(exist_ok=True)
    launcher = folder / "bin" / "game.x86_64"
    launcher.write_bytes(b"#!/bin/sh\necho 'load game'\n")
    launcher.chmod(0o755)
    small = min(64 * 1024, size // 32)
    (folder / "data").mkdir(exist_ok=True)
    for index in range(16):
        (folder / "data" / f"small{index:02}.dat").write_bytes(os.urandom(small))
    left = max(0, size - 16 * small - launcher.stat().st_size)
    with (folder / "data" / "big.bin").open("wb") as handle:
        while left > 0:
            block = min(16 * MiB, left)
            handle.write(os.urandom(block))
            left -= block
    return folder


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


@dataclass
class PingStats:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def answered_per_second(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0


async def ping_load(client: HubClient, rate: float, stop: asyncio.Event) -> PingStats:
    """JSON pings at `rate` per second on the paired client until `stop`, then wait for the replies."""
    stats = PingStats()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def one() -> None:
        started = loop.time()
        try:
            await client.ping()
        except (HubError, OSError) as error:
            stats.errors += 1
            stats.first_error = stats.first_error or str(error)
            return
        stats.answered += 1
        stats.latencies.append(loop.time() - started)

    begin = loop.time()
    tick = 0.01
    while not stop.is_set():
        due = int((loop.time() - begin) * rate) + 1
        while stats.sent < due:
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            stats.sent += 1
        try:
            await asyncio.wait_for(stop.wait(), tick)
        except TimeoutError:
            pass
    if tasks:
        await asyncio.gather(*tasks)
    stats.seconds = loop.time() - begin
    return stats


def lag_in(samples: list[list[float]], start: float, end: float) -> dict[str, float]:
    lags = [lag for t, lag in samples if start <= t <= end]
    return {
        "count": len(lags),
        "p50": percentile(lags, 0.5),
        "p99": percentile(lags, 0.99),
        "max": max(lags, default=0.0),
    }


# --- the suite ----------------------------------------------------------------------------------


@dataclass
class LoadOptions:
    workdir: Path
    size_mib: float = 1024.0
    idle_raw: int = 100
    idle_ws: int = 100
    hubs: int = 50
    ping_rate: float = 1000.0
    lockout_probe: bool = True
    say: Any = print


@dataclass
class DeployFigures:
    start: float = 0.0  # time.monotonic() (the Agent's ticker uses the same clock)
    end: float = 0.0
    seconds: float = 0.0
    bytes_sent: int = 0
    peak_memory: int = 0
    agent_cpu: float = 0.0  # CPU seconds the Agent process used during the deploy
    hub_cpu: float = 0.0  # CPU seconds this process (the Hub) used during the deploy
    machine_cpu: float = 0.0  # CPU seconds every process of the machine used during the deploy
    steal: float = 0.0  # CPU seconds the hypervisor took from this machine during the deploy
    lag: dict[str, float] = field(default_factory=dict)
    identical: bool = False
    detail: str = ""

    @property
    def throughput(self) -> float:
        return self.bytes_sent / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoadReport:
    machine: str = ""
    size: int = 0
    baseline: DeployFigures = field(default_factory=DeployFigures)
    loaded: DeployFigures = field(default_factory=DeployFigures)
    pings: PingStats = field(default_factory=PingStats)
    peers: PeersReport = field(default_factory=PeersReport)
    whole_run_lag: dict[str, float] = field(default_factory=dict)
    lockout_probed: bool = False
    lockout_seconds: float | None = None  # the paired hub's wait to reconnect during an idle flood
    lockout_refusals: int = 0
    lockout_evicted: int = 0  # idle WebSockets of the probe the Agent evicted to make room
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class LoadRun:
    def __init__(self, options: LoadOptions) -> None:
        self.o = options
        self.report = LoadReport(machine=describe_machine())

    def say(self, text: str) -> None:
        self.o.say(text)

    async def run(self) -> LoadReport:
        o, report = self.o, self.report
        work = o.workdir
        work.mkdir(parents=True, exist_ok=True)
        size = int(o.size_mib * MiB)
        report.size = size
        self.say(f"Generating a {size / MiB:.0f} MiB game")
        game = await asyncio.to_thread(make_load_game, work / "src" / "Load Game", size)
        device = DeviceHome.create(work / "device")
        ticker_file = work / "agent-lag.json"
        agent = AgentProcess(
            device,
            work / "agent.log",
            name="Load Deck",
            wrapper=HERE / "agent_with_ticker.py",
            env={"CAPYDEPLOY_TICKER_FILE": str(ticker_file)},
        )
        await asyncio.to_thread(agent.start, 0)
        url = f"ws://127.0.0.1:{agent.port}/ws"

        async def pair(_: m.PairingRequired) -> str:
            return await agent.pairing_code()

        client = HubClient(url, config_dir=work / "hub", pair=pair)
        try:
            await client.connect()
            self.say("Hashing the game on the hub (once, outside the timed deploys)")
            prepared = await prepare(game)
            self.say("Deploy without load")
            report.baseline = await self.deploy(client, agent, prepared, "Load Baseline", device)
            self.say(
                f"  {report.baseline.throughput / MiB:.1f} MiB/s, {report.baseline.seconds:.2f} s, "
                f"peak memory {report.baseline.peak_memory / MiB:.1f} MiB"
            )
            await asyncio.to_thread(shutil.rmtree, device.install_dir / "Load Baseline", True)
            self.say(
                f"Deploy under load: {o.idle_raw} raw + {o.idle_ws} WebSocket idle sockets, "
                f"{o.hubs} competing hubs, {o.ping_rate:.0f} pings/s"
            )
            report.loaded = await self.deploy(client, agent, prepared, "Load Under Load", device, loaded=True)
            self.say(
                f"  {report.loaded.throughput / MiB:.1f} MiB/s, {report.loaded.seconds:.2f} s, "
                f"peak memory {report.loaded.peak_memory / MiB:.1f} MiB"
            )
            await client.close()
            if o.lockout_probe:
                await self.lockout_probe(agent, url, work / "hub")
        finally:
            await client.close()
            await asyncio.to_thread(agent.terminate)
        samples: list[list[float]] = []
        try:
            data = json.loads(ticker_file.read_text())
            samples = data["samples"]
            report.whole_run_lag = {k: data[k] for k in ("count", "p50", "p99", "max")}
        except (OSError, ValueError, KeyError) as error:
            report.problems.append(f"no loop-lag samples from the agent ({error})")
        for figures in (report.baseline, report.loaded):
            figures.lag = lag_in(samples, figures.start, figures.end)
        self.check()
        return report

    async def deploy(
        self,
        client: HubClient,
        agent: AgentProcess,
        prepared: tuple[list[LocalFile], dict[str, str]],
        name: str,
        device: DeviceHome,
        *,
        loaded: bool = False,
    ) -> DeployFigures:
        figures = DeployFigures()
        await asyncio.to_thread(os.sync)
        peers_proc: asyncio.subprocess.Process | None = None
        peers_out = self.o.workdir / "peers.json"
        stop = asyncio.Event()
        pinger: asyncio.Task[PingStats] | None = None
        if loaded:
            spread = max(1.0, self.report.baseline.seconds * 0.8)
            peers_proc = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "peers.py"), "--port", str(agent.port),
                "--raw", str(self.o.idle_raw), "--ws", str(self.o.idle_ws), "--hubs", str(self.o.hubs),
                "--spread", f"{spread:.2f}", "--deadline", "60", "--hub-dir", str(self.o.workdir / "peers"),
                "--out", str(peers_out),
                stdout=asyncio.subprocess.PIPE,
            )
            assert peers_proc.stdout is not None
            line = (await asyncio.wait_for(peers_proc.stdout.readline(), 120)).decode()
            if line.strip() != "ready":
                self.report.problems.append(f"the load process did not start ({line!r})")
            if self.o.ping_rate > 0:
                pinger = asyncio.create_task(ping_load(client, self.o.ping_rate, stop))
        agent.reset_peak()
        agent_cpu, hub_cpu = agent.cpu_seconds(), time.process_time()
        busy, steal = machine_cpu()
        files, hashes = prepared
        deployment = Deployment(client, files, hashes, DeployOptions(game_name=name, create_shortcut=False))
        start = time.monotonic()
        result: DeployResult | None = None
        try:
            result = await asyncio.wait_for(deployment.run(), HANG_GUARD)
        except (HubError, OSError, TimeoutError) as error:
            self.report.problems.append(f"{name}: the deploy failed: {error}")
        end = time.monotonic()
        figures.peak_memory = agent.vm_hwm()
        figures.agent_cpu = agent.cpu_seconds() - agent_cpu
        figures.hub_cpu = time.process_time() - hub_cpu
        busy_after, steal_after = machine_cpu()
        figures.machine_cpu, figures.steal = busy_after - busy, steal_after - steal
        stop.set()
        if pinger is not None:
            self.report.pings = await pinger
        figures.start, figures.end = start, end
        figures.seconds = end - start
        figures.bytes_sent = deployment.sent
        if result is not None:
            digest = await asyncio.to_thread(tree_digest, device.install_dir / name)
            expected = {f.relative_path: (f.size, hashes.get(f.relative_path) or sha256_file(f.path)) for f in files}
            figures.identical = digest == expected
            if not figures.identical:
                self.report.problems.append(f"{name}: the installed game differs from the source")
        if peers_proc is not None:
            self.say("  waiting for the agent to close the idle sockets")
            await asyncio.wait_for(peers_proc.wait(), 180)
            try:
                self.report.peers = PeersReport.from_json(json.loads(peers_out.read_text()))
            except (OSError, ValueError) as error:
                self.report.problems.append(f"no report from the load process ({error})")
        return figures

    async def lockout_probe(self, agent: AgentProcess, url: str, hub_dir: Path) -> None:
        """The paired Hub comes back (as after a Wi-Fi drop) while more idle WebSockets are open than
        the Agent's cap on connections in the handshake (32): it must be let in at its first try (the
        Agent evicts the oldest idle one to make room; before issue 7 it answered HTTP 503 for 10 s)."""
        idle = MAX_PENDING_HANDSHAKES + 8
        self.report.lockout_probed = True
        self.say(f"Lockout probe: the paired hub reconnects while {idle} idle WebSockets are open")
        ready = asyncio.Event()
        peers = asyncio.create_task(
            run_peers(
                "127.0.0.1", agent.port, raw=0, ws=idle, hubs=0, spread=0.0, deadline_after=60,
                hub_dir=self.o.workdir / "probe", ready=ready,
            )
        )
        await asyncio.wait_for(ready.wait(), 60)
        start = time.monotonic()
        refusals = 0
        while time.monotonic() - start < 60:
            probe = HubClient(url, config_dir=hub_dir, reconnect=False)
            try:
                await probe.connect()
            except HubError as error:
                if "503" not in str(error):
                    self.report.problems.append(f"lockout probe: {error}")
                    break
                refusals += 1
                await asyncio.sleep(0.1)
                continue
            self.report.lockout_seconds = time.monotonic() - start
            await probe.close()
            break
        self.report.lockout_refusals = refusals
        probe_peers = await peers
        self.report.lockout_evicted = sum(
            1 for s in probe_peers.sockets if s.outcome == "closed" and s.detail == EVICTED_REASON
        )

    def check(self) -> None:
        """Correctness only; the timings are figures, not pass/fail."""
        r, o = self.report, self.o
        peers = r.peers
        if peers.got_409 != o.hubs:
            results = sorted({f"{h.result}: {h.detail}" for h in peers.hubs if h.result != "409"})
            r.problems.append(f"{peers.got_409} of {o.hubs} competing hubs got 409 ({results[:3]})")
        if not peers.all_idle_closed or len(peers.sockets) != o.idle_raw + o.idle_ws:
            still = [s for s in peers.sockets if s.outcome not in ("closed", "refused 503")]
            r.problems.append(f"{len(still)} idle sockets were not closed by the agent ({still[:2]})")
        if r.pings.errors or r.pings.answered != r.pings.sent:
            r.problems.append(
                f"{r.pings.sent - r.pings.answered} of {r.pings.sent} pings unanswered ({r.pings.first_error})"
            )
        refused = peers.count("ws", "refused 503") + peers.refusals_503
        if refused:
            r.problems.append(f"{refused} connections were refused with HTTP 503 (the Agent must evict, not refuse)")
        if r.lockout_probed and (r.lockout_seconds is None or r.lockout_refusals):
            r.problems.append(
                f"lockout probe: the paired hub was not let in at its first try "
                f"({r.lockout_refusals} refusals, let in after {r.lockout_seconds} s)"
            )


def figure_rows(report: LoadReport) -> list[tuple[str, str]]:
    b, lo, p, peers = report.baseline, report.loaded, report.pings, report.peers
    ratio = lo.throughput / b.throughput if b.throughput else 0.0
    latencies = p.latencies
    ws_codes = ", ".join(f"{code}: {n}" for code, n in sorted(peers.close_codes("ws").items())) or "-"
    rows = [
        ("game size", f"{report.size / MiB:.0f} MiB"),
        ("deploy without load", f"{b.throughput / MiB:.1f} MiB/s ({b.seconds:.2f} s)"),
        ("deploy under load", f"{lo.throughput / MiB:.1f} MiB/s ({lo.seconds:.2f} s)"),
        ("throughput under load / without", f"{ratio:.2f}"),
        ("both deploys byte-identical", "yes" if b.identical and lo.identical else "NO"),
        ("CPU during the deploy, no load: agent / hub", f"{b.agent_cpu:.1f} s / {b.hub_cpu:.1f} s"),
        ("CPU during the deploy, under load: agent / hub", f"{lo.agent_cpu:.1f} s / {lo.hub_cpu:.1f} s"),
        ("CPU of the idle-socket and competing-hub process", f"{peers.cpu_seconds:.1f} s (whole run)"),
        ("CPU of the whole machine during the deploys", f"{b.machine_cpu:.1f} s / {lo.machine_cpu:.1f} s "
         f"(of {b.seconds * CORES:.1f} s / {lo.seconds * CORES:.1f} s available; steal {b.steal:.1f} s / {lo.steal:.1f} s)"),
        ("agent peak memory (VmHWM), no load", f"{b.peak_memory / MiB:.1f} MiB"),
        ("agent peak memory (VmHWM), under load", f"{lo.peak_memory / MiB:.1f} MiB"),
        ("agent loop lag, no load: p99 / max", f"{b.lag.get('p99', 0) * 1000:.1f} ms / {b.lag.get('max', 0) * 1000:.1f} ms"),
        ("agent loop lag, under load: p99 / max", f"{lo.lag.get('p99', 0) * 1000:.1f} ms / {lo.lag.get('max', 0) * 1000:.1f} ms"),
        ("agent loop lag, whole run: p99 / max",
         f"{report.whole_run_lag.get('p99', 0) * 1000:.1f} ms / {report.whole_run_lag.get('max', 0) * 1000:.1f} ms"),
        ("idle raw TCP sockets closed by the agent", f"{len(peers.closed('raw'))} of {peers.count('raw', 'closed') + peers.count('raw', 'open') + peers.count('raw', 'error')}"),
        ("  closed after", peers.timing("raw")),
        ("idle WebSockets accepted, closed by the agent", f"{len(peers.closed('ws'))} (close codes {ws_codes})"),
        ("  closed after", peers.timing("ws")),
        ("  of them evicted early (1008, limits of the handshake)", str(peers.count_detail("ws", EVICTED_REASON))),
        ("idle WebSockets refused with HTTP 503", str(peers.count("ws", "refused 503"))),
        ("idle sockets still open at the end", str(sum(1 for s in peers.sockets if s.outcome == "open"))),
        ("competing hubs that got 409", f"{peers.got_409} of {len(peers.hubs)}"),
        ("  of them while the deploy ran", str(sum(1 for h in peers.hubs if h.result == "409" and h.started_at + h.seconds <= lo.end))),
        ("  503 refusals they met first", str(peers.refusals_503)),
        ("pings sent / answered / errors", f"{p.sent} / {p.answered} / {p.errors}"),
        ("pings answered per second", f"{p.answered_per_second:.0f}"),
        ("ping round trip p50 / p99 / max",
         f"{percentile(latencies, 0.5) * 1000:.1f} / {percentile(latencies, 0.99) * 1000:.1f} / "
         f"{max(latencies, default=0) * 1000:.1f} ms"),
    ]
    if latencies:
        rows.append(("ping round trip mean", f"{statistics.fmean(latencies) * 1000:.1f} ms"))
    if report.lockout_seconds is not None:
        rows.append((
            f"paired hub reconnecting during {MAX_PENDING_HANDSHAKES + 8} idle WebSockets",
            f"let in after {report.lockout_seconds:.2f} s ({report.lockout_refusals} HTTP 503 refusals first; "
            f"{report.lockout_evicted} idle WebSockets evicted, at most {MAX_PENDING_PER_ADDRESS} per address kept)",
        ))
    return rows


async def run_load(options: LoadOptions) -> LoadReport:
    return await LoadRun(options).run()
