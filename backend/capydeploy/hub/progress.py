"""Progress display for deploys: a bar per agent on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from .deploy import DeployProgress

if TYPE_CHECKING:
    from tqdm import tqdm


def _mib(value: float) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


class ProgressView:
    """One line of progress per agent."""

    def __init__(self, agents: list[str], stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._bars: dict[str, tqdm[Any]] = {}
        self._last_line: dict[str, float] = {}
        self._last_phase: dict[str, str] = {}
        if self.interactive:
            from tqdm import tqdm as new_bar  # noqa: PLC0415 - only a terminal shows bars; plain lines need no tqdm

            for position, agent in enumerate(agents):
                self._bars[agent] = new_bar(
                    total=0, unit="B", unit_scale=True, unit_divisor=1024, position=position, file=self.stream,
                    desc=agent, dynamic_ncols=True, leave=True,
                )

    def update(self, agent: str, progress: DeployProgress) -> None:
        if self.interactive:
            bar = self._bars[agent]
            bar.total = progress.total_bytes
            bar.n = progress.done_bytes
            bar.set_postfix_str(f"{progress.phase} {progress.current_file}"[-40:], refresh=False)
            bar.refresh()
            return
        now = time.monotonic()
        phase_changed = self._last_phase.get(agent) != progress.phase
        if not phase_changed and now - self._last_line.get(agent, 0.0) < 1.0:
            return
        self._last_line[agent] = now
        self._last_phase[agent] = progress.phase
        percent = 100.0 * progress.done_bytes / progress.total_bytes if progress.total_bytes else 100.0
        print(
            f"[{agent}] {progress.phase}: {percent:5.1f}% {_mib(progress.done_bytes)}/{_mib(progress.total_bytes)} "
            f"{_mib(progress.bytes_per_second)}/s eta {_eta(progress.seconds_remaining)} {progress.current_file}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
