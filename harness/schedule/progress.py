"""The live bar: done / running / failed / stopped, runs per hour, ETA (tqdm).

Into a log file (stderr not a terminal: nohup, CI, SLURM) a redrawn bar would write a carriage-return
line every second, so there the same counts are written as one plain line per finished run instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, where: str, enabled: bool = True, interactive: bool | None = None):
        self.total = total
        self.enabled = enabled
        self.plain = enabled and not (sys.stderr.isatty() if interactive is None else interactive)
        self.start = time.monotonic()
        self.done = 0
        self.last_refresh = 0.0
        self.bar = tqdm(
            total=total,
            unit="run",
            desc="runs",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=not enabled or self.plain,
            file=sys.stderr,
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}{postfix}",
        )
        if enabled:
            tqdm.write(f"harness: {total} run(s) on {where}", file=sys.stderr)

    def update(self, counts: Mapping[str, int], running: int) -> None:
        finished = sum(counts.values())
        if self.plain:
            if finished > self.done:
                line = f"runs {finished}/{self.total}, {format_seconds(time.monotonic() - self.start)}: "
                print(line + self.postfix(counts, running), file=sys.stderr, flush=True)
            self.done = finished
            return
        if finished > self.done:
            self.bar.update(finished - self.done)
            self.done = finished
        self.bar.set_postfix_str(self.postfix(counts, running), refresh=False)
        now = time.monotonic()
        if now - self.last_refresh >= 1.0:  # running counts and rates change between finishes too
            self.bar.refresh()
            self.last_refresh = now

    def postfix(self, counts: Mapping[str, int], running: int) -> str:
        elapsed = time.monotonic() - self.start
        finished = sum(counts.values())
        per_hour = finished * 3600.0 / elapsed if elapsed > 0 else 0.0
        left = self.total - finished
        eta = format_seconds(left * elapsed / finished) if finished else "?"
        return (
            f"done {counts.get('done', 0)} running {running} failed {counts.get('failed', 0)} "
            f"stopped {counts.get('stopped', 0)} diverged {counts.get('diverged', 0)} | "
            f"{per_hour:.0f} runs/h ETA {eta}"
        )

    def note(self, text: str) -> None:
        if self.enabled and text.startswith("failed"):
            tqdm.write(f"harness: {text}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def format_seconds(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
