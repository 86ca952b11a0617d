"""Watch one command per stage: wall time, peak RSS of its process tree, bytes written (bench_scale).

A command runs as a child process. A reader thread timestamps each line it prints; a line that
starts a new stage (`radsim run` prints "[k/6] ...") closes the previous stage. A sampler thread
sums VmRSS over the child and all its descendants (shard workers included) every `interval`
seconds and keeps each stage's peak. Bytes written are the child's `wchar` from /proc/PID/io
(write() calls of the process and of the children it has reaped) read at each boundary, and the
growth of the output folder walked at each boundary.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
STAGE_LINE = re.compile(r"^\[(\d)/6\]")
RUN_STAGES = {1: "ingest", 2: "label", 3: "shard", 4: "train", 5: "embed+publish", 6: "evaluate"}


@dataclass
class StageFigures:
    name: str
    seconds: float = 0.0
    peak_rss: int = 0  # bytes, summed over the process tree
    written: int | None = None  # bytes passed to write() (None where /proc/PID/io is unreadable)
    grew: int = 0  # bytes the output folder grew by
    lines: list[str] = field(default_factory=list)


def folder_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:  # removed while walking
                pass
    return total


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree[ppid].append(int(entry.name))
    return tree


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every descendant (shared pages counted in each process)."""
    tree, todo, total = _children(), [pid], 0
    while todo:
        p = todo.pop()
        todo.extend(tree.get(p, ()))
        try:
            with open(f"/proc/{p}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def written_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/io") as fh:
            fields = dict(line.split(": ") for line in fh.read().splitlines())
        return int(fields["wchar"])
    except (OSError, KeyError, ValueError):
        return None


class Watch:
    """Run `cmd`, splitting its life into stages at the lines `stage_of` names (None: same stage)."""

    def __init__(self, cmd: list[str], env: dict[str, str], out_dir: Path, first: str, stage_of=None,
                 interval: float = 0.25):
        self.cmd, self.env, self.out_dir, self.interval = cmd, env, out_dir, interval
        self.stage_of = stage_of or (lambda line: None)
        self.stages = [StageFigures(first)]
        self.max_rss_main = 0  # the main process alone over its whole life (getrusage)
        self._lock = threading.Lock()
        self._mark: tuple[float, int | None, int] = (0.0, 0, 0)
        self._written: int | None = 0

    def run(self) -> list[StageFigures]:
        self._mark = (time.perf_counter(), 0, self._size())
        proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        done = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(proc.pid, done), daemon=True)
        sampler.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            self._line(proc.pid, line.rstrip("\n"))
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
        self._close(time.perf_counter(), self._written, self._size())
        self.max_rss_main = usage.ru_maxrss * 1024  # Linux reports KiB
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            tail = "\n".join(line for s in self.stages for line in s.lines)[-3000:]
            raise RuntimeError(f"{' '.join(self.cmd[:4])} ... exited {code}:\n{tail}")
        return self.stages

    def _size(self) -> int:
        return folder_bytes(self.out_dir) if self.out_dir.exists() else 0

    def _line(self, pid: int, line: str) -> None:
        written = written_bytes(pid)
        if written is not None:
            self._written = written
        name = self.stage_of(line)
        if name is not None and name != self.stages[-1].name:
            rss = tree_rss(pid)
            with self._lock:
                self.stages[-1].peak_rss = max(self.stages[-1].peak_rss, rss)
                self._close(time.perf_counter(), written, self._size())
                self.stages.append(StageFigures(name, peak_rss=rss))
        self.stages[-1].lines.append(line)

    def _close(self, now: float, written: int | None, size: int) -> None:
        t, w, b = self._mark
        stage = self.stages[-1]
        stage.seconds = now - t
        stage.written = None if written is None or w is None else written - w
        stage.grew = size - b
        self._mark = (now, written, size)

    def _sample(self, pid: int, done: threading.Event) -> None:
        while not done.is_set():
            rss = tree_rss(pid)
            with self._lock:
                self.stages[-1].peak_rss = max(self.stages[-1].peak_rss, rss)
            done.wait(self.interval)


def run_stage_of(line: str) -> str | None:
    """`radsim run`'s progress lines → stage names ("[3/6] sharding ..." → "shard")."""
    match = STAGE_LINE.match(line)
    return RUN_STAGES[int(match.group(1))] if match else None
