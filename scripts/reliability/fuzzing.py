"""The hostile-input harness behind `make fuzz` and its fast sample in `make test`.

Design, given the Agent's rules (one connected Hub at a time, 409 for the others; at most 32
connections in the handshake; binary frames before authentication close the connection):

* A real Hub (`HubClient`, paired through the code shown on the device) stays connected and
  deploys a small generated game again and again; after each deploy the installed tree must be
  byte-identical to the source.
* **Before authentication**, a second, raw connection throws frames at the Agent. It never
  becomes a Hub: while the paired Hub is connected, a valid `hub_connected` gets 409 and a close,
  everything else is answered before any `hub_connected` (ping → pong, pair_confirm → pair_failed,
  other requests → 401, bad frames → 400/501); binary, invalid UTF-8 and oversized frames close the
  connection (1008, 1007, 1009). A closed connection is replaced for the next case.
* **After authentication**, the frames go over the paired Hub's own socket, between the deploy's
  frames: a second connection with the same hub id and token would replace the deploy's session.
  The harness taps the HubClient's reader and takes the replies to its frames (by id, or id "" for
  unreadable ids); the HubClient keeps the rest. Chunk frames aim at an upload the harness opened on
  that connection (a different game than the deploy's). Frames that must close the connection are
  left to the before-authentication phase, so the deploy is never cut on purpose.

Hypothesis draws the frames (`fuzzcases.py`): a `@given` test run programmatically in a worker
thread with `settings(max_examples=N, deadline=None, database=None)`, whose body sends one frame on
the event loop and waits for the outcome, bounded by `hang_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import websockets
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import DeployOptions
from capydeploy.protocol import messages as m
from capydeploy.protocol.catalog import REPLY_MODELS, REPLY_TYPE, MessageType

from .fuzzcases import FuzzContext, Rendered, Spec, after_auth_specs, before_auth_specs, render

log = logging.getLogger("capydeploy.fuzz")

PUSH_TYPES = frozenset({"upload_progress", "operation_event", "agent_status"})
ERROR_CODES = frozenset({400, 401, 404, 406, 409, 500, 501})
BEFORE_AUTH_TYPES = frozenset({"error", "pong", "pair_failed", "pairing_required"})
CONNECTION_MAX_CASES = 200
CONNECTION_MAX_AGE = 5.0  # well inside the Agent's 10 s handshake deadline
EXAMPLES_KEPT = 8
CASE_GUARD = 300.0
FUZZ_UPLOAD_FILES = [("a.bin", 4096), ("dir/b.bin", 1_500_000), ("empty", 0), ("\u00fc/\u00f1.dat", 100)]


class CodeReader(Protocol):
    async def __call__(self) -> str: ...


# --- what a run reports ---------------------------------------------------------------------


@dataclass
class FuzzReport:
    seed: int | None
    target: str
    cases: Counter[str] = field(default_factory=Counter)  # by phase
    families: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    hangs: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    crashes: int = 0
    crash_lines: list[str] = field(default_factory=list)
    deploys: int = 0
    deploys_identical: int = 0
    deploy_failures: list[str] = field(default_factory=list)
    reconnects: int = 0
    seconds: float = 0.0
    agent_alive: bool = True
    still_serving: bool = True
    harness_errors: list[str] = field(default_factory=list)

    @property
    def total_cases(self) -> int:
        return sum(self.cases.values())

    @property
    def ok(self) -> bool:
        return (
            self.crashes == 0
            and self.hangs == 0
            and not self.anomalies
            and not self.deploy_failures
            and self.deploys == self.deploys_identical
            and self.deploys > 0
            and self.agent_alive
            and self.still_serving
            and not self.harness_errors
        )

    def anomaly(self, kind: str, detail: str) -> None:
        self.anomalies[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_KEPT:
            kept.append(detail[:600])

    def summary(self) -> str:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{key}: {value}" for key, value in sorted(counter.items())) or "none"

        lines = [
            f"target:           {self.target}" + (f", seed {self.seed}" if self.seed is not None else ", derandomized"),
            f"cases:            {self.total_cases} ({counts(self.cases)}) in {self.seconds:.1f} s",
            f"families:         {counts(self.families)}",
            f"replies by code:  {counts(self.replies)}",
            f"closes by code:   {counts(self.closes)}",
            f"crashes:          {self.crashes} (agent alive: {self.agent_alive}, still serving: {self.still_serving})",
            f"hangs:            {self.hangs}",
            f"anomalies:        {sum(self.anomalies.values())} ({counts(self.anomalies)})",
            f"parallel deploys: {self.deploys}, byte-identical {self.deploys_identical}, "
            f"failed {len(self.deploy_failures)}, hub reconnects {self.reconnects}",
        ]
        for line in self.crash_lines[:EXAMPLES_KEPT]:
            lines.append(f"  crash evidence: {line[:300]}")
        for kind, kept in sorted(self.examples.items()):
            for detail in kept:
                lines.append(f"  {kind}: {detail}")
        for failure in self.deploy_failures[:EXAMPLES_KEPT]:
            lines.append(f"  deploy failure: {failure}")
        for error in self.harness_errors[:EXAMPLES_KEPT]:
            lines.append(f"  harness error: {error}")
        lines.append("result:           " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs{memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


# --- the Agent under test -------------------------------------------------------------------


class Target(Protocol):
    url: str
    install_dir: Path
    description: str

    async def read_code(self) -> str: ...

    def alive(self) -> bool: ...

    def crash_evidence(self) -> list[str]: ...


class _ErrorRecorder(logging.Handler):
    """Every record at ERROR or above, or with a traceback, while an in-process run lasts."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            text = f"{record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            self.lines.append(text)


class InProcessTarget:
    """An Agent running on this event loop (the fast sample in `make test`)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.url = f"ws://127.0.0.1:{agent.port}/ws"
        self.install_dir = agent.install_dir
        self.description = "in-process Agent on 127.0.0.1"
        self._recorder = _ErrorRecorder()
        logging.getLogger().addHandler(self._recorder)

    async def read_code(self) -> str:
        for _ in range(200):
            pending = self.agent.snapshot().pairing
            if pending is not None:
                return pending.code
            await asyncio.sleep(0.05)
        raise RuntimeError("the device shows no pairing code")

    def alive(self) -> bool:
        return self.agent.running

    def crash_evidence(self) -> list[str]:
        gc.collect()  # "Task exception was never retrieved" is logged when the task is collected
        return list(self._recorder.lines)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._recorder)


class ProcessTarget:
    """The Agent as its own process (`agent_runner.py`), logging to a file; `make fuzz` uses this."""

    RUNNER = Path(__file__).with_name("agent_runner.py")

    def __init__(self, base: Path, log_level: str = "info") -> None:
        self.base = base
        self.log_path = base / "agent.log"
        self.install_dir = base / "home" / "Games"
        self.url = ""
        self.description = "Agent process"
        self._log_level = log_level
        self._process: subprocess.Popen[str] | None = None
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self.codes: list[str] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.base.mkdir(parents=True, exist_ok=True)
        self._process = process = await asyncio.to_thread(self._spawn)

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\n"))

        threading.Thread(target=pump, name="agent-stdout", daemon=True).start()
        while True:
            line = await asyncio.wait_for(self._lines.get(), 30)
            match = re.search(r"Listening on (ws://\S+)", line)
            if match:
                self.url = match.group(1)
                break
        self.description = f"Agent process (pid {process.pid}) on 127.0.0.1"

    def _spawn(self) -> subprocess.Popen[str]:
        with self.log_path.open("w", encoding="utf-8") as log_file:
            return subprocess.Popen(
                [sys.executable, str(self.RUNNER), "--base", str(self.base), "--log-level", self._log_level],
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                encoding="utf-8",
                errors="replace",
            )

    async def read_code(self) -> str:
        while True:
            line = await asyncio.wait_for(self._lines.get(), 30)
            match = re.search(r"Pairing code: (\d{6})", line)
            if match:
                self.codes.append(match.group(1))
                return match.group(1)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def crash_evidence(self) -> list[str]:
        """One line per logged error (its traceback follows it in the log), or per stray traceback."""
        evidence = []
        if self._process is not None and self._process.poll() not in (None, 0):
            evidence.append(f"the Agent process exited with {self._process.returncode}")
        previous = ""
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
                logged = re.search(r" (ERROR|CRITICAL) |^--- Logging error ---", line)
                stray = line.startswith("Traceback") and not re.search(r" (ERROR|CRITICAL) ", previous)
                if logged or stray:
                    evidence.append(line)
                previous = line
        return evidence

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        return ""

    async def stop(self) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 20)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        return process.returncode


# --- the paired Hub, tapped ----------------------------------------------------------------


class TappedHubClient(HubClient):
    """A HubClient that hands the frames its tap claims to the fuzz harness instead of itself."""

    tap: Callable[[dict[str, Any]], bool] | None = None

    def _dispatch(self, text: str) -> None:
        tap = self.tap
        if tap is not None:
            try:
                frame = json.loads(text)
            except ValueError:
                frame = None
            if isinstance(frame, dict) and tap(frame):
                return
        super()._dispatch(text)

    def is_pending(self, message_id: Any) -> bool:
        return isinstance(message_id, str) and message_id in self._pending

    @property
    def socket(self) -> ClientConnection:
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        return ws


class HubHolder:
    """The paired Hub; reconnected (and counted) if anything ends its connection."""

    def __init__(self, target: Target, config_dir: Path, report: FuzzReport) -> None:
        self.target = target
        self.config_dir = config_dir
        self.report = report
        self.client: TappedHubClient | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> TappedHubClient:
        async def pair(_: m.PairingRequired) -> str:
            return await self.target.read_code()

        client = TappedHubClient(self.target.url, config_dir=self.config_dir, pair=pair)
        await client.connect()
        self.client = client
        return client

    async def ready(self) -> TappedHubClient:
        async with self._lock:
            client = self.client
            if client is not None:
                try:
                    await client.wait_connected(timeout=15)
                    return client
                except Exception as error:
                    self.report.reconnects += 1
                    log.warning("paired hub lost (%s); connecting again", error)
                    await client.close()
            return await self.connect()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


# --- outcome checks ---------------------------------------------------------------------------


def _describe(rendered: Rendered) -> str:
    data = rendered.data
    if isinstance(data, list):
        data = "".join(data)
    shown = data[:200] if isinstance(data, str) else data[:120]
    size = len(data)
    return f"[{rendered.family} {rendered.kind} {size} B] {shown!r}"


def _reply_label(frame: dict[str, Any]) -> str:
    if frame.get("type") == "error":
        error = frame.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return f"error {code}"
    return str(frame.get("type"))


def _check_reply(report: FuzzReport, rendered: Rendered, frame: dict[str, Any], allowed: set[str] | None) -> None:
    """The reply carries the right id and is a well-formed message of an allowed type."""
    report.replies[_reply_label(frame)] += 1
    if frame.get("id") != rendered.reply_id and not (rendered.id_uncertain and frame.get("id") in ("", rendered.reply_id)):
        report.anomaly("wrong reply id", f"expected {rendered.reply_id!r}, got {frame.get('id')!r} for {_describe(rendered)}")
    reply_type = frame.get("type")
    if reply_type == "error":
        error = frame.get("error")
        if not (isinstance(error, dict) and isinstance(error.get("code"), int) and isinstance(error.get("message"), str)):
            report.anomaly("malformed error", f"{frame!r} for {_describe(rendered)}")
        elif error["code"] not in ERROR_CODES:
            report.anomaly("unknown error code", f"{frame!r}")
        elif error["code"] == 500:
            report.anomaly("internal error (500)", f"{error['message']} for {_describe(rendered)}")
        return
    if allowed is not None and reply_type not in allowed:
        report.anomaly("unexpected reply type", f"{reply_type!r} for {_describe(rendered)}")
        return
    try:
        model = REPLY_MODELS[MessageType(str(reply_type))]
        model.model_validate(frame.get("payload") or {})
    except (ValueError, KeyError, ValidationError) as error:
        report.anomaly("malformed reply", f"{frame!r}: {error}")


# --- before authentication ------------------------------------------------------------------


class BeforeAuthLane:
    """Frames from raw connections that never authenticate."""

    def __init__(self, target: Target, report: FuzzReport, hang_timeout: float) -> None:
        self.target = target
        self.report = report
        self.hang_timeout = hang_timeout
        self.context = FuzzContext(upload_id="not-authenticated")
        self._ws: ClientConnection | None = None
        self._opened = 0.0
        self._used = 0

    async def _connection(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        ws = self._ws
        if ws is not None and (
            ws.close_code is not None
            or self._used >= CONNECTION_MAX_CASES
            or loop.time() - self._opened > CONNECTION_MAX_AGE
        ):
            await self._drop()
            ws = None
        if ws is None:
            ws = await websockets.connect(
                self.target.url, ping_interval=None, max_size=None, open_timeout=self.hang_timeout, close_timeout=2
            )
            self._ws, self._opened, self._used = ws, loop.time(), 0
        self._used += 1
        return ws

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

    async def _await_close(self, ws: ClientConnection, rendered: Rendered, expected: int) -> None:
        """The Agent must close with `expected`, within the bound, sending nothing first."""
        try:
            while True:
                frame = await asyncio.wait_for(ws.recv(), self.hang_timeout)
                self.report.anomaly("reply where a close was due", f"{str(frame)[:200]!r} for {_describe(rendered)}")
        except TimeoutError:
            self.report.hangs += 1
            self.report.anomaly("no close", f"expected {expected} for {_describe(rendered)}")
            await self._drop()
            return
        except ConnectionClosed:
            pass
        code = ws.close_code
        self.report.closes[str(code)] += 1
        if code != expected:
            self.report.anomaly("wrong close code", f"expected {expected}, got {code} for {_describe(rendered)}")
        self._ws = None

    async def run(self, spec: Spec) -> None:
        rendered = render(spec, self.context)
        self.report.cases["before auth"] += 1
        self.report.families[rendered.family] += 1
        ws = await self._connection()
        try:
            if rendered.kind == "text-bytes":
                assert isinstance(rendered.data, bytes)
                await ws.send(rendered.data, text=True)
            elif isinstance(rendered.data, list):
                await ws.send(rendered.data)
            else:
                await ws.send(rendered.data)
        except ConnectionClosed:
            pass  # the Agent closed while we were still sending (oversized frames): judged below
        if rendered.family == "oversized":
            await self._await_close(ws, rendered, 1009)
        elif rendered.kind == "binary":
            await self._await_close(ws, rendered, 1008)
        elif rendered.kind == "text-bytes":
            await self._await_close(ws, rendered, 1007)
        else:
            await self._await_reply(ws, rendered)

    async def _await_reply(self, ws: ClientConnection, rendered: Rendered) -> None:
        try:
            message = await asyncio.wait_for(ws.recv(), self.hang_timeout)
        except TimeoutError:
            self.report.hangs += 1
            self.report.anomaly("hang", f"no reply within {self.hang_timeout:g} s to {_describe(rendered)}")
            await self._drop()
            return
        except ConnectionClosed:
            self.report.closes[str(ws.close_code)] += 1
            self.report.anomaly("closed instead of a reply", f"close {ws.close_code} after {_describe(rendered)}")
            self._ws = None
            return
        if not isinstance(message, str):
            self.report.anomaly("binary reply", _describe(rendered))
            return
        frame = json.loads(message)
        _check_reply(self.report, rendered, frame, set(BEFORE_AUTH_TYPES))
        if frame.get("type") not in BEFORE_AUTH_TYPES:
            self.report.anomaly("served before authentication", f"{frame.get('type')!r} for {_describe(rendered)}")
        label = _reply_label(frame)
        if label in ("error 406", "error 409"):
            await self._await_close(ws, rendered, 1000)
        elif label == "error 401" and "locked" in str(frame.get("error")):
            await self._await_close(ws, rendered, 1008)
        elif frame.get("type") == "pairing_required":
            # Only possible while no Hub is connected: give the slot back at once.
            await self._drop()

    async def close(self) -> None:
        await self._drop()


# --- after authentication -------------------------------------------------------------------


class AfterAuthLane:
    """Frames over the paired Hub's own socket, between the deploy's frames."""

    def __init__(self, holder: HubHolder, report: FuzzReport, hang_timeout: float) -> None:
        self.holder = holder
        self.report = report
        self.hang_timeout = hang_timeout
        self.context = FuzzContext(files=list(FUZZ_UPLOAD_FILES))
        self._waiting: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        self._client: TappedHubClient | None = None
        self._since_init = 0

    def _tap(self, frame: dict[str, Any]) -> bool:
        """Claim the reply to the frame in flight; leave pushes and the HubClient's own replies alone.

        The HubClient's keepalive pings are not in its pending table, so their pongs are left to it
        unless they carry the id the fuzz frame is waiting for.
        """
        client = self._client
        message_id, message_type = frame.get("id"), frame.get("type")
        if message_type in PUSH_TYPES or (client is not None and client.is_pending(message_id)):
            return False
        waiting = self._waiting
        if waiting is None:
            if message_type == "error" and message_id == "":
                self.report.anomaly("stray reply", json.dumps(frame)[:300])
                return True
            return False  # a late reply to one of the HubClient's own requests: its business
        expected, future = waiting
        if message_id != expected and message_type == "pong":
            return False
        if not future.done():
            future.set_result(frame)
        else:
            self.report.anomaly("extra reply", json.dumps(frame)[:300])
        return True

    async def _client_ready(self) -> TappedHubClient:
        client = await self.holder.ready()
        if client is not self._client:
            client.tap = self._tap
            self._client = client
            await self._init_upload(client)
        elif self._since_init >= 500:
            await self._init_upload(client)
        return client

    async def _init_upload(self, client: TappedHubClient) -> None:
        files = [m.UploadFile(relative_path=path, size=size) for path, size in FUZZ_UPLOAD_FILES]
        request = m.InitUpload(
            config=m.UploadConfig(game_name="fz-upload", executable="a.bin"),
            total_size=sum(size for _, size in FUZZ_UPLOAD_FILES),
            files=files,
        )
        reply = await client.init_upload(request)
        self.context.upload_id = reply.upload_id
        self.context.chunk_size = reply.chunk_size
        self._since_init = 0

    async def run(self, spec: Spec) -> None:
        client = await self._client_ready()
        rendered = render(spec, self.context)
        self.report.cases["after auth"] += 1
        self.report.families[rendered.family] += 1
        self._since_init += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting = (rendered.reply_id, future)
        try:
            try:
                await asyncio.wait_for(client.socket.send(rendered.data), self.hang_timeout)
            except (ConnectionClosed, ConnectionError, TimeoutError) as error:
                self.report.anomaly("paired connection lost", f"{error!r} sending {_describe(rendered)}")
                return
            try:
                frame = await asyncio.wait_for(future, self.hang_timeout)
            except TimeoutError:
                self.report.hangs += 1
                self.report.anomaly("hang", f"no reply within {self.hang_timeout:g} s to {_describe(rendered)}")
                return
        finally:
            self._waiting = None
        if rendered.kind == "binary":
            allowed = {"upload_chunk_response"}
        else:
            request_type = None
            with contextlib.suppress(ValueError):
                request_type = REPLY_TYPE.get(MessageType(rendered.message_type or ""))
            allowed = {request_type.value} if request_type is not None else set()
        _check_reply(self.report, rendered, frame, allowed)
        upload_gone = frame.get("type") == "error" and self.context.upload_id in str(frame.get("error"))
        if upload_gone or frame.get("type") == "operation_result":
            await self._init_upload(client)  # our upload was completed, cancelled or replaced


# --- the parallel deploy ----------------------------------------------------------------------


def tree(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _make_game(folder: Path, rng: random.Random) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    names = ["game.x86_64", "data/level.pak", "data/\u00fcn\u00ef.bin", "empty.txt", "a/b/c/deep.dat", "lib/x.so"]
    for name in rng.sample(names, rng.randint(1, len(names))):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0 if name == "empty.txt" else rng.choice([1, 1000, rng.randint(0, 700_000), 1024 * 1024 + 3])
        path.write_bytes(rng.randbytes(size))


async def deploy_loop(
    holder: HubHolder, target: Target, work: Path, *, stop: asyncio.Event, report: FuzzReport, rng: random.Random
) -> None:
    game_name = f"deploy-{rng.getrandbits(64):016x}"
    source = work / "deploy-source" / game_name
    while True:
        _make_game(source, rng)
        try:
            client = await holder.ready()
            await client.deploy(source, DeployOptions(game_name=game_name, create_shortcut=False))
            report.deploys += 1
            if tree(target.install_dir / game_name) == tree(source):
                report.deploys_identical += 1
            else:
                report.deploy_failures.append(f"deploy {report.deploys}: installed tree differs from the source")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            report.deploys += 1
            report.deploy_failures.append(f"deploy {report.deploys}: {error!r}")
        if stop.is_set():
            return


# --- driving Hypothesis from a worker thread --------------------------------------------------


class _Stop(Exception):
    """Raised in the test body to end a phase early (time limit)."""


def drive(
    strategy: st.SearchStrategy[Spec],
    count: int,
    body: Callable[[Spec], None],
    seed: int | None,
) -> None:
    """Run a `@given` test of `count` examples (no shrinking, no database) whose body is `body`."""

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
    )
    @given(strategy)
    def fuzz(spec: Spec) -> None:
        body(spec)

    test = hypothesis_seed(seed)(fuzz) if seed is not None else fuzz
    with contextlib.suppress(_Stop), warnings.catch_warnings():
        # Hypothesis compares the global `random` state around each draw. The draws run in this
        # worker thread while the event loop's thread keeps deploying, and websockets picks its
        # keepalive ping payloads with `random.getrandbits`: a false alarm across threads, not
        # a strategy using `random`.
        warnings.filterwarnings("ignore", message="Do not use the `random` module inside strategies")
        test()


async def run_phase(
    loop_runner: Callable[[Spec], Coroutine[Any, Any, None]],
    strategy: st.SearchStrategy[Spec],
    count: int,
    *,
    seed: int | None,
    deadline: float,
    report: FuzzReport,
    progress: Callable[[str], None] | None,
    label: str,
) -> None:
    loop = asyncio.get_running_loop()
    done = 0

    def body(spec: Spec) -> None:
        nonlocal done
        if time.monotonic() > deadline:
            raise _Stop
        future = asyncio.run_coroutine_threadsafe(loop_runner(spec), loop)
        try:
            future.result(timeout=CASE_GUARD)  # a hang guard only: each case bounds its own waits
        except Exception as error:
            future.cancel()
            report.harness_errors.append(f"{label}: {error!r}")
            if len(report.harness_errors) > 50:
                raise _Stop from None
        done += 1
        if progress is not None and done % 1000 == 0:
            progress(f"{label}: {done}/{count} cases")

    await asyncio.to_thread(drive, strategy, count, body, seed)


async def run_fuzz(
    target: Target,
    work: Path,
    *,
    cases: int,
    seed: int | None = None,
    hang_timeout: float = 10.0,
    time_limit: float = 3600.0,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Half the cases before authentication, half after, while the paired Hub deploys."""
    report = FuzzReport(seed=seed, target=target.description)
    started = time.monotonic()
    deadline = started + time_limit
    holder = HubHolder(target, work / "hub-config", report)
    await holder.connect()
    stop = asyncio.Event()
    deployer = asyncio.create_task(deploy_loop(holder, target, work, stop=stop, report=report, rng=random.Random(seed or 0)))
    before = BeforeAuthLane(target, report, hang_timeout)
    after = AfterAuthLane(holder, report, hang_timeout)
    first = cases // 2
    try:
        await run_phase(
            before.run, before_auth_specs(), first, seed=seed, deadline=deadline, report=report,
            progress=progress, label="before auth",
        )
        await before.close()
        await run_phase(
            after.run, after_auth_specs(), cases - first, seed=seed, deadline=deadline, report=report,
            progress=progress, label="after auth",
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(deployer, 300)
        report.seconds = time.monotonic() - started
    # Still serving: a fresh connection is answered, the paired Hub too.
    report.agent_alive = target.alive()
    try:
        probe = await websockets.connect(target.url, ping_interval=None, open_timeout=10)
        await probe.send('{"id":"probe","type":"ping"}')
        pong = json.loads(await asyncio.wait_for(probe.recv(), 10))
        await probe.close()
        client = await holder.ready()
        info = await client.get_info()
        report.still_serving = pong.get("type") == "pong" and bool(info.agent.id)
    except Exception as error:
        report.still_serving = False
        report.harness_errors.append(f"final health check: {error!r}")
    await holder.close()
    evidence = target.crash_evidence()
    report.crash_lines = evidence
    report.crashes = len(evidence) + (0 if report.agent_alive else 1)
    return report
