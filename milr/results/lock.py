"""One writer per run folder: ``<out>/.lock`` names its owner, so a second run is refused while
the owner lives and a lock left by a dead process is taken over."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from milr.results.fingerprint import RunMismatch
from milr.results.layout import LOCK_FILE


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (tells a live owner from a reused pid), where /proc has it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict[str, Any]) -> bool:
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    ticks = _start_ticks(int(owner["pid"]))
    return ticks is None or owner.get("start_ticks") in (None, ticks)


class RunLock:
    """One writer per folder: ``<out>/.lock`` names the owner (pid, host, start). A second run is
    refused while the owner lives; a lock left by a dead process on this host is taken over."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _start_ticks(os.getpid()),
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.owner, f)
            self.held = True
            return
        raise RunMismatch(f"{self.path.parent} is in use by another run (lock {self.path})")

    def _take_over_if_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            owner = {}
        if owner.get("host") == self.owner["host"] and "pid" in owner and not _alive(owner):
            self.path.unlink(missing_ok=True)  # its owner died (killed, crashed): take the folder over
            return
        where = f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}"
        raise RunMismatch(
            f"{self.path.parent} is in use by another run ({where}); wait for it, use another --output_dir, "
            f"or delete {self.path} if that run is gone"
        )

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
