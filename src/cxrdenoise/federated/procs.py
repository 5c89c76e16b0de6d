"""A federated run owns its Flower processes: they are found and stopped however the runner ends.

Why: the runner starts the SuperLink, the SuperNodes and `flwr run`, but those start SuperExecs in new
sessions, which start the ServerApp and the ClientApps; neither a process group nor a parent-death signal
reaches those, and a SIGKILLed runner runs no cleanup (13 processes then finished the rounds unsupervised).
Every process the runner starts carries MARKER=<run folder>|<session token> in its environment, which its
descendants inherit and keep when reparented (and a reused PID never has), so /proc/<pid>/environ finds them.
Two things stop them: a supervisor (`python -m cxrdenoise.federated.procs`, in its own session) blocks on a
pipe from the runner and, when the pipe closes because the runner ended in any way, SIGKILL included, stops
that session's processes; and the next start of the same run, holding the run's lock, stops whatever an
earlier session left (supervisor included, from pids.json) before anything else. Linux (/proc) only.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .. import atomic
from ..errors import CxrError
from . import logs

MARKER = "CXRDENOISE_FEDERATED_RUN"
GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long


def _marker_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    key = MARKER.encode() + b"="
    for entry in env.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key):].decode(errors="replace")
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def run_pids(run_dir: Path, token: str | None = None) -> list[int]:
    """PIDs of this run's processes (of one session when `token` is given), this process excluded.

    Besides the marker, a process whose command line names the run's tls/ folder counts (the run's CA path:
    Flower processes of a runner from before the marker existed)."""
    prefix = f"{run_dir}|"
    tls = str(run_dir / "tls")
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        mark = _marker_of(pid)
        if mark is not None:
            hit = mark == f"{prefix}{token}" if token else mark.startswith(prefix)
        else:
            hit = token is None and any(a.startswith(tls) for a in _cmdline(pid))
        if hit and alive(pid):
            found.append(pid)
    return found


def stop_pids(pids: list[int], grace: float = GRACE_S) -> int:
    """SIGTERM each, SIGKILL whatever still runs after `grace` seconds; returns how many were signalled."""
    sent = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            sent += 1
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return sent


def stop_run(run_dir: Path, token: str | None = None, grace: float = GRACE_S) -> int:
    """Stop the run's processes (one session's with `token`); rescans, since a SuperExec may start a
    ClientApp while its siblings are being stopped. Returns how many were stopped."""
    total = 0
    for _ in range(5):
        pids = run_pids(run_dir, token)
        if not pids:
            break
        total += stop_pids(pids, grace)
    return total


def lock_run(run_dir: Path):
    """Hold the run folder for this runner (the kernel releases it when the runner dies, SIGKILL included):
    a second runner on the same folder is refused, and the holder knows any marked process is a leftover."""
    fh = (run_dir / "runner.lock").open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        pids = _read_pids(run_dir)
        raise CxrError(f"federated: another runner (pid {pids.get('runner', '?')}) is using {run_dir}; "
                       "wait for it to end or stop it, then re-run") from None
    return fh


def _read_pids(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "pids.json").read_text())
    except (OSError, ValueError):
        return {}


def stop_previous(run_dir: Path) -> str | None:
    """Stop what an earlier session of this run left running (call holding `lock_run`); one line or None."""
    recorded = _read_pids(run_dir)
    supervisor = recorded.get("supervisor")
    if isinstance(supervisor, int) and alive(supervisor) and str(run_dir) in _cmdline(supervisor):
        stop_pids([supervisor], grace=2)
    n = stop_run(run_dir)
    if not n:
        return None
    return f"stopped {n} Flower process(es) an earlier session of {run_dir} left running (its runner was killed)"


class Processes:
    """One session's Flower processes: each in its own session (so its process group ends together), all
    marked for `run_pids`, watched by a supervisor; pids.json records them for the next start."""

    def __init__(self, run_dir: Path, env: dict):
        self.run_dir, self.token = run_dir, uuid.uuid4().hex[:12]
        self.env = {**env, MARKER: f"{run_dir}|{self.token}"}
        self.procs: dict[str, subprocess.Popen] = {}
        self.offsets: dict[str, int] = {}
        self.pids: dict[str, int] = {"runner": os.getpid()}
        self.supervisor: subprocess.Popen | None = None

    def supervise(self) -> None:
        """Start the supervisor (before any Flower process)."""
        env = {k: v for k, v in self.env.items() if k != MARKER}
        log = (self.run_dir / "logs" / "supervisor.log").open("ab")
        self.supervisor = subprocess.Popen([sys.executable, "-m", "cxrdenoise.federated.procs", str(self.run_dir),
                                            self.token], stdin=subprocess.PIPE, stdout=log,
                                           stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.pids["supervisor"] = self.supervisor.pid
        atomic.write_json(self.run_dir / "pids.json", self.pids)

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        path = self.run_dir / "logs" / f"{name}.log"
        self.offsets[name] = logs.size(path)
        with path.open("ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**self.env, **env},
                                    cwd=self.run_dir, start_new_session=True)
        self.procs[name] = proc
        self.pids[name] = proc.pid
        atomic.write_json(self.run_dir / "pids.json", self.pids)
        return proc

    def cause(self, name: str) -> str | None:
        """The error line `name` logged in this session."""
        return logs.error_line(self.run_dir / "logs" / f"{name}.log", self.offsets.get(name, 0))

    def failure(self, name: str, what: str, then: str = "") -> str:
        """'SuperNode 1 (site 1) <what>: <its error line> (see <log>)<then>', one line."""
        line = self.cause(name)
        log = self.run_dir / "logs" / f"{name}.log"
        said = f": {line} (see {log})" if line else f"; its log has no error line (see {log})"
        return f"{logs.label(name)} {what}{said}{then}"

    def first_cause(self) -> str | None:
        """The first error line any process logged in this session, named: SuperLink, SuperNodes, `flwr run`."""
        for name in sorted(self.procs, key=lambda n: (n != "superlink", n == "flwr_run", n)):
            line = self.cause(name)
            if line:
                return f"{logs.label(name)} logged '{line}' (see {self.run_dir / 'logs' / f'{name}.log'})"
        return None

    def dead_supernode(self) -> str | None:
        """The first SuperNode that is no longer running, if any."""
        for name, proc in self.procs.items():
            if name.startswith("supernode_") and proc.poll() is not None:
                return name
        return None

    def stop(self) -> None:
        """Stop every process of this session: the started ones by process group, then any descendant."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        stop_run(self.run_dir, self.token)
        if self.supervisor is not None:
            self.supervisor.stdin.close()  # the supervisor finds nothing left and exits
            try:
                self.supervisor.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.supervisor.kill()
                self.supervisor.wait()


def supervise(run_dir: Path, token: str) -> int:
    """Block until the runner closes the pipe on stdin (or dies), then stop its session's processes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.stdin.buffer.read()
    n = stop_run(run_dir, token)
    if n:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: the runner ended with {n} Flower "
              f"process(es) of session {token} running; stopped them", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1]), sys.argv[2]))
