"""A throw-away single-node SLURM cluster for tests (a helper, not a test module).

``LocalSlurm`` runs a *real* scheduler from Debian's ``slurm-wlm`` package
(22.05.8 on Debian 12) on this machine, self-contained in one temporary directory:

* its own ``munged`` (private key, private socket, ``AuthInfo=socket=...``): no
  ``/etc/munge/munge.key`` and no system munged needed or touched;
* ``slurm.conf``, ``gres.conf``, ``cgroup.conf`` (and ``jobcomp.lua``) in
  ``<tmp>/etc``.  Daemons and clients (slurmctld, slurmd, sbatch, squeue,
  scontrol, srun) all honour the ``SLURM_CONF`` environment variable and look up
  the extra files next to ``slurm.conf``, so ``/etc/slurm`` is never written;
* ``slurmctld`` and ``slurmd`` as root in the foreground (``-D``, own process
  groups) on 127.0.0.1 with free TCP ports; state, spool, logs, pid files under
  ``<tmp>``.  No cgroups (``proctrack/linuxproc``, ``task/none``), so it also runs
  in containers without a writable cgroup tree;
* ``gpus`` fake GPUs (``gres/gpu``, ``AutoDetect=off``, ``File=<tmp>/dev/gpu[0-N]``,
  symlinks to ``/dev/null`` because slurmd insists on character devices):
  ``sbatch --gpus=2`` gets ``CUDA_VISIBLE_DEVICES=0,1``;
* a job-completion log.  ``jobcomp/filetxt`` writes ``Tres=cpu=..,mem=..,node=..``
  but never the GPUs (``gres/gpu`` can only be added to the tracked TRES with
  slurmdbd: slurmctld dies with "slurmdbd is required to run with TRES gres/gpu").
  So the default is ``jobcomp/lua`` with a generated ``jobcomp.lua`` writing the
  same ``Key=value`` records plus ``TresPerJob`` (``gres:gpu:2`` for ``--gpus=2``),
  ``TresPerNode``, ``TresPerTask``, ``GresUsed`` and ``Comment`` (the snakemake
  SLURM executor puts ``rule_<name>[_wildcards_...]`` there).  ``jobcomp="filetxt"``
  is available too;
* ``MinJobAge=600``: finished jobs stay visible to ``squeue``/``scontrol`` for 10
  minutes.  There is no accounting (no slurmdbd, so ``sacct`` fails), so the
  snakemake SLURM executor must run with ``--slurm-status-command squeue`` and
  without ``slurm_account`` (see ``tests/test_slurm_smoke.py``).

One wrinkle: the snakemake jobstep executor (``--executor slurm-jobstep``, run
inside every batch job) strips all ``SLURM_*`` variables -- ``SLURM_CONF``
included -- before it calls ``srun``.  With no ``/etc/slurm/slurm.conf`` that
inner ``srun`` dies with "srun: fatal: Could not establish a configuration
source".  ``env()`` therefore puts ``<tmp>/bin`` first on ``PATH``, holding an
``srun`` wrapper that re-exports ``SLURM_CONF`` (real clusters have
``/etc/slurm``; nothing of this is needed there).

Usage::

    reason = LocalSlurm.skip_reason()   # None, or why it cannot run here
    cluster = LocalSlurm().start()      # ~1 s
    subprocess.run([...], env=cluster.env())
    cluster.jobcomp_log()               # list of dicts, one per finished job
    cluster.jobs()                      # `scontrol show job` of every known job
    cluster.stop()                      # kills the daemons, removes the temp dir

Requirements (all met after ``.ci/install-slurm.sh`` on Debian 12): the binaries
in ``BINARIES`` and root (slurmd launches jobs as the submitting user).  Not
needed: ``/etc/slurm`` files, the ``slurm`` user, ``/var/spool`` dirs, the system
munge key/daemon, systemd, cgroups, or a resolvable ``hostname -s`` (the node is
named after it, but ``NodeAddr=127.0.0.1`` and ``SlurmctldHost=<name>(127.0.0.1)``
mean nothing is ever looked up; checked with an unresolvable UTS hostname).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

BINARIES = (
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "srun",
)
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")

# base job states (job_state & 0xff), as in slurm.h
_JOB_STATES = (
    "PENDING",
    "RUNNING",
    "SUSPENDED",
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
)

# jobcomp/lua: fields of the slurmctld job record written per finished job.
# (record key, lua expression); values are %-encoded so they never hold blanks.
_LUA_FIELDS = (
    ("JobId", "job.job_id"),
    ("UserId", "job.user_id"),
    ("Name", "job.name"),
    ("JobState", "state_name(job.job_state)"),
    ("Partition", "job.partition"),
    ("TimeLimit", "time_limit(job.time_limit)"),
    ("SubmitTime", "iso(job.submit_time)"),
    ("StartTime", "iso(job.start_time)"),
    ("EndTime", "iso(job.end_time)"),
    ("NodeList", "job.nodes"),
    ("NodeCnt", "job.total_nodes"),
    ("ProcCnt", "job.total_cpus"),
    ("WorkDir", "job.work_dir"),
    ("Tres", "job.tres_fmt_alloc_str"),
    ("TresReq", "job.tres_fmt_req_str"),
    ("TresPerJob", "job.tres_per_job"),
    ("TresPerNode", "job.tres_per_node"),
    ("TresPerTask", "job.tres_per_task"),
    ("GresUsed", "job.gres_used"),
    ("Comment", "job.comment"),
    ("Account", "job.account"),
    ("ExitCode", "exit_code(job.exit_code)"),
    ("DerivedExitCode", "exit_code(job.derived_ec)"),
)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """preexec_fn: SIGTERM the daemon when the process that started it dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _which(name: str) -> str | None:
    path = shutil.which(name)
    if path:
        return path
    for d in SBIN_DIRS:
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def _free_ports(n: int) -> list[int]:
    """``n`` distinct currently free TCP ports on 127.0.0.1."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def parse_kv_record(line: str) -> dict[str, str]:
    """Parse a ``Key=value Key=value`` record (jobcomp log, ``scontrol -o``).

    A value runs up to the next blank; it may contain ``=`` and ``,``
    (``Tres=cpu=1,mem=100M``) and may be empty (``Account=``).  %-escapes written
    by the lua job-completion script are decoded.
    """
    return {m.group(1): unquote(m.group(2)) for m in re.finditer(r"([\w/:]+)=(\S*)", line)}


def parse_kv_list(value: str) -> dict[str, str]:
    """``cpu=1,mem=1000M,node=1,billing=1`` -> dict (empty for ``""``/``(null)``)."""
    out: dict[str, str] = {}
    for item in value.split(","):
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
    return out


def gpus_of(record: dict[str, str]) -> int:
    """GPU count of a job record (jobcomp or ``scontrol show job``), 0 when none.

    Looks at ``TresPerJob`` (``gres:gpu:2``, ``gres/gpu:2`` or ``gpu:2``; set by
    ``--gpus``), ``TresPerNode`` (``--gres=gpu:2``/``--gpus-per-node``) and finally
    ``Tres``/``TRES`` (``gres/gpu=2``, only present with slurmdbd).
    """
    for key in ("TresPerJob", "TresPerNode"):
        val = record.get(key) or ""
        for item in val.split(","):
            m = re.fullmatch(r"(?:gres[:/])?gpu(?::[\w.-]+)?:(\d+)", item.strip())
            if m:
                return int(m.group(1))
    for key in ("Tres", "TRES"):
        tres = parse_kv_list(record.get(key) or "")
        if "gres/gpu" in tres:
            return int(tres["gres/gpu"])
    return 0


class LocalSlurm:
    """Single-node SLURM (slurmctld + slurmd + private munged) in a temp dir."""

    def __init__(
        self,
        gpus: int = 2,
        min_job_age: int = 600,
        jobcomp: str = "lua",
        cluster_name: str = "cxrtest",
        partition: str = "debug",
        base_dir: str | os.PathLike | None = None,
    ) -> None:
        if jobcomp not in ("lua", "filetxt"):
            raise ValueError("jobcomp must be 'lua' or 'filetxt'")
        if not 0 <= gpus <= 16:
            raise ValueError("gpus must be in 0..16")
        self.gpus = gpus
        self.min_job_age = min_job_age
        self.jobcomp = jobcomp
        self.cluster_name = cluster_name
        self.partition = partition
        self._base_dir_parent = base_dir
        self.root: Path | None = None
        self.nodename = socket.gethostname().split(".")[0]
        self.ctld_port = self.slurmd_port = 0
        self.startup_seconds: float | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._bins: dict[str, str] = {}

    # ------------------------------------------------------------------ checks
    @staticmethod
    def skip_reason() -> str | None:
        """Why a local SLURM cannot run here, or None if it can."""
        missing = [b for b in BINARIES if _which(b) is None]
        if missing:
            return (
                "SLURM/munge binaries not installed ("
                + ", ".join(missing)
                + "); run `bash .ci/install-slurm.sh` (Debian: apt-get install slurm-wlm munge)"
            )
        if os.geteuid() != 0:
            return "a local SLURM needs root (slurmd must run as root to launch jobs)"
        return None

    # ------------------------------------------------------------------ paths
    def _require_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("LocalSlurm is not started")
        return self.root

    @property
    def conf_dir(self) -> Path:
        return self._require_root() / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.conf_dir / "slurm.conf"

    @property
    def jobcomp_path(self) -> Path:
        return self._require_root() / "log" / "jobcomp.txt"

    @property
    def munge_socket(self) -> Path:
        return self._require_root() / "munge" / "munge.sock"

    @property
    def bin_dir(self) -> Path:
        return self._require_root() / "bin"

    # ------------------------------------------------------------------ config
    def _node_line(self) -> str:
        """``CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..``

        Taken from ``slurmd -C`` so the configured topology matches what slurmd
        detects (otherwise it logs "Node reconfigured socket/core boundaries" or,
        with more memory configured than found, drains the node as "Low
        RealMemory").  RealMemory is lowered by 10 % for headroom.
        """
        fields: dict[str, str] = {}
        try:
            out = subprocess.run(
                [self._bins["slurmd"], "-C"], capture_output=True, text=True, timeout=30
            ).stdout
            fields = parse_kv_record(out.splitlines()[0]) if out else {}
        except (OSError, subprocess.TimeoutExpired, IndexError):
            fields = {}
        keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
        if not all(k in fields for k in keys):
            mem_mb = 1024
            try:
                with open("/proc/meminfo") as fh:
                    for line in fh:
                        if line.startswith("MemTotal:"):
                            mem_mb = int(line.split()[1]) // 1024
            except OSError:
                pass
            fields = {"CPUs": str(os.cpu_count() or 1), "RealMemory": str(mem_mb)}
            keys = ("CPUs", "RealMemory")
        fields["RealMemory"] = str(max(256, int(int(fields["RealMemory"]) * 0.9)))
        return " ".join(f"{k}={fields[k]}" for k in keys)

    def _write_config(self) -> None:
        root = self._require_root()
        gres_node = ""
        gres_conf = "AutoDetect=off\n"
        if self.gpus:
            # A GPU declared by count alone leaves the node INVAL ("gres/gpu count
            # reported lower than configured"); with AutoDetect=off slurmd counts
            # the File= entries, which must be character/block devices (a plain
            # file gives "is not a valid character or block device").
            for i in range(self.gpus):
                os.symlink("/dev/null", root / "dev" / f"gpu{i}")
            files = f"{root}/dev/gpu[0-{self.gpus - 1}]" if self.gpus > 1 else f"{root}/dev/gpu0"
            gres_node = f" Gres=gpu:{self.gpus}"
            gres_conf += f"NodeName={self.nodename} Name=gpu File={files}\n"

        jobcomp_type = "jobcomp/lua" if self.jobcomp == "lua" else "jobcomp/filetxt"
        conf = f"""\
# Generated by tests/slurm_cluster.py (LocalSlurm): single-node test cluster.
ClusterName={self.cluster_name}
SlurmctldHost={self.nodename}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={root}/etc/plugstack.conf
MailProg=/bin/true
# no cgroups, no accounting daemon
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType={jobcomp_type}
JobCompLoc={self.jobcomp_path}
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
GresTypes=gpu
# finished jobs stay visible to `squeue --states=all` / `scontrol show job`
# (the snakemake executor's squeue status command relies on it; no sacct here)
MinJobAge={self.min_job_age}
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
Waittime=0
MessageTimeout=10
NodeName={self.nodename} NodeAddr=127.0.0.1 NodeHostname={self.nodename} {self._node_line()}{gres_node} State=UNKNOWN
PartitionName={self.partition} Nodes={self.nodename} Default=YES MaxTime=INFINITE State=UP
"""
        (root / "etc" / "slurm.conf").write_text(conf)
        (root / "etc" / "gres.conf").write_text(gres_conf)
        (root / "etc" / "cgroup.conf").write_text("CgroupPlugin=autodetect\nIgnoreSystemd=yes\n")
        # an empty plugstack: keep /etc/slurm/plugstack.conf.d SPANK plugins out
        (root / "etc" / "plugstack.conf").write_text("")
        if self.jobcomp == "lua":
            (root / "etc" / "jobcomp.lua").write_text(self._jobcomp_lua())
        # srun wrapper (see module docstring: the jobstep executor drops SLURM_CONF)
        wrapper = root / "bin" / "srun"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# LocalSlurm: snakemake's slurm-jobstep executor strips SLURM_CONF before srun\n"
            f"SLURM_CONF='{self.slurm_conf}'; export SLURM_CONF\n"
            f'exec {self._bins["srun"]} "$@"\n'
        )
        wrapper.chmod(0o755)

    def _jobcomp_lua(self) -> str:
        states = ", ".join(f'"{s}"' for s in _JOB_STATES)
        writes = "\n".join(
            f'    f:write(" {key}=" .. enc({expr}))' if i else f'    f:write("{key}=" .. enc({expr}))'
            for i, (key, expr) in enumerate(_LUA_FIELDS)
        )
        return f"""\
-- Generated by tests/slurm_cluster.py: jobcomp/filetxt-like records plus GPU info.
local LOG = "{self.jobcomp_path}"
local STATES = {{{states}}}

local function enc(v)
    if v == nil then return "" end
    return (string.gsub(tostring(v), "[%s%%]", function(c)
        return string.format("%%%02X", string.byte(c))
    end))
end

local function iso(t)
    if t == nil or t == 0 then return "Unknown" end
    return os.date("!%Y-%m-%dT%H:%M:%S", t)
end

function state_name(s)
    if s == nil then return "" end
    return STATES[(s % 256) + 1] or tostring(s)
end

function time_limit(t)
    if t == nil or t >= 4294967294 then return "UNLIMITED" end
    return tostring(t)
end

function exit_code(s)
    if s == nil then return "" end
    return string.format("%d:%d", math.floor(s / 256) % 256, s % 128)
end

function slurm_jobcomp_log_record(job)
    local f = io.open(LOG, "a")
    if f == nil then return slurm.ERROR end
{writes}
    f:write("\\n")
    f:close()
    return slurm.SUCCESS
end

return slurm.SUCCESS
"""

    # ------------------------------------------------------------------ env
    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for subprocesses (sbatch, squeue, snakemake...) of this cluster.

        ``SLURM_CONF`` points at the generated config, ``PATH`` starts with the
        ``srun`` wrapper dir, and inherited ``SLURM_*``/``SBATCH_*``/``SRUN_*``/
        ``SALLOC_*`` defaults (e.g. from running inside another allocation) are
        dropped so they cannot leak into test jobs.
        """
        env = dict(os.environ if base is None else base)
        for k in list(env):
            if k.startswith(("SBATCH_", "SALLOC_", "SRUN_", "SLURM_")):
                del env[k]
        env["SLURM_CONF"] = str(self.slurm_conf)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``sinfo``, ``squeue``...) against this cluster."""
        return subprocess.run(
            list(args), env=self.env(), capture_output=True, text=True, check=check, timeout=timeout
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60) -> "LocalSlurm":
        """Write the config, start munged, slurmctld, slurmd; wait for an idle node."""
        reason = self.skip_reason()
        if reason:
            raise RuntimeError(reason)
        if self.root is not None:
            raise RuntimeError("LocalSlurm already started")
        t0 = time.monotonic()
        self._bins = {b: _which(b) or b for b in BINARIES}
        base = self._base_dir_parent
        if base is None and len(tempfile.gettempdir()) > 60:
            base = "/tmp"  # unix socket paths (munge) are limited to 107 bytes
        for attempt in (1, 2):
            atexit.register(self.stop)
            self.root = Path(tempfile.mkdtemp(prefix="localslurm-", dir=base))
            try:
                # munged insists that every directory above its socket is world-executable
                self.root.chmod(0o755)
                for sub in ("etc", "state", "spool", "log", "run", "bin", "dev"):
                    (self.root / sub).mkdir(mode=0o755)
                self.ctld_port, self.slurmd_port = _free_ports(2)
                self._start_munge()
                self._write_config()
                self._start_daemons(timeout)
                break
            except RuntimeError as exc:
                # a port picked by _free_ports() may have been taken in the meantime
                self.stop()
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
            except BaseException:
                self.stop()
                raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        root = self._require_root()
        with open(root / "log" / f"{name}.stdout", "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=root,
                start_new_session=True,  # own process group: stop() kills it wholesale
                preexec_fn=_die_with_parent,  # no orphaned daemons if pytest is killed
            )
        self._procs[name] = proc
        return proc

    def _start_munge(self) -> None:
        mdir = self._require_root() / "munge"
        mdir.mkdir(mode=0o755)
        key = mdir / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(128))  # what `mungekey -c` writes (1024 bits)
        self._spawn(
            "munged",
            [
                self._bins["munged"],
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--log-file={mdir / 'munged.log'}",
                f"--pid-file={mdir / 'munged.pid'}",
                f"--seed-file={mdir / 'munged.seed'}",
                "--num-threads=2",
            ],
        )
        self._wait_for(self.munge_socket.exists, 15, "munged to create its socket")

    def _start_daemons(self, timeout: float) -> None:
        conf = str(self.slurm_conf)
        # -D: stay in the foreground (we own the pid); -c: ignore any old state
        self._spawn("slurmctld", [self._bins["slurmctld"], "-D", "-c", "-f", conf])
        self._wait_for(self._ctld_up, timeout, "slurmctld to answer `scontrol ping`")
        self._spawn("slurmd", [self._bins["slurmd"], "-D", "-f", conf, "-N", self.nodename])
        self._wait_for(self._node_idle, timeout, f"node {self.nodename} to be idle in sinfo")

    def _ctld_up(self) -> bool:
        r = self.run("scontrol", "ping", check=False, timeout=15)
        return r.returncode == 0 and " is UP" in r.stdout

    def node_state(self) -> str:
        """``sinfo`` state of the node (``idle``, ``mixed``, ``allocated``, ``down*``...)."""
        r = self.run("sinfo", "-h", "-N", "-n", self.nodename, "-o", "%T", check=False, timeout=15)
        return r.stdout.strip() if r.returncode == 0 else ""

    def _node_idle(self) -> bool:
        return self.node_state() == "idle"

    def _wait_for(self, pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, p in self._procs.items():
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with status {p.returncode} while waiting for {what}\n{self.logs()}"
                    )
            if pred():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")
            time.sleep(0.1)

    def logs(self, tail: int = 30) -> str:
        """Tails of the daemon logs (for failure messages)."""
        if self.root is None:
            return ""
        parts = []
        for f in sorted((self.root / "log").glob("*.log")) + [self.root / "munge" / "munged.log"]:
            if f.is_file():
                lines = f.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"==> {f.name} <==\n" + "\n".join(lines))
        return "\n".join(parts)

    def running(self) -> dict[str, bool]:
        """Which of our daemons are alive."""
        return {name: p.poll() is None for name, p in self._procs.items()}

    def cancel_jobs(self) -> None:
        """scancel everything in our partition while slurmctld still answers (best effort: we are stopping)."""
        ctld = self._procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            try:
                self.run("scancel", "--quiet", f"--partition={self.partition}", check=False, timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                pass

    def stop(self) -> None:
        """Cancel jobs, kill slurmd, slurmctld, munged and leftover slurmstepds; remove the temp dir."""
        self.cancel_jobs()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.get(name)
            if proc is not None:
                self._terminate(proc)
        self._kill_stepds()
        self._procs.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        atexit.unregister(self.stop)

    @staticmethod
    def _terminate(proc: subprocess.Popen, grace: float = 5) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # SIGKILL whatever is left in the group (slurmctld's slurmscriptd child...)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def _kill_stepds(self) -> None:
        """SIGKILL slurmstepd processes of this cluster still alive (they run in their own sessions)."""
        if self.root is None:
            return
        marker = str(self.root).encode()
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                if b"slurmstepd" not in (pid_dir / "cmdline").read_bytes():
                    continue
                if marker not in (pid_dir / "environ").read_bytes():
                    continue
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue

    def __enter__(self) -> "LocalSlurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ job records
    def jobcomp_log(self) -> list[dict]:
        """Records of the job-completion log, one dict per finished job, oldest first.

        Keys as ``jobcomp/filetxt`` writes them (``JobId``, ``Name``, ``JobState``,
        ``Partition``, ``StartTime``, ``EndTime``, ``NodeList``, ``ProcCnt``,
        ``WorkDir``, ``Tres``, ``ExitCode``...); with ``jobcomp="lua"`` (the
        default) also ``TresPerJob``, ``TresPerNode``, ``TresPerTask``,
        ``GresUsed`` and ``Comment``.  Added: ``tres`` (``Tres`` as a dict) and
        ``gpus`` (see ``gpus_of``; always 0 with ``filetxt``).
        """
        path = self.jobcomp_path
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            if line.strip():
                rec: dict = parse_kv_record(line)
                rec["tres"] = parse_kv_list(rec.get("Tres", ""))
                rec["gpus"] = gpus_of(rec)
                records.append(rec)
        return records

    def wait_jobcomp(self, n: int, timeout: float = 30) -> list[dict]:
        """Wait until the completion log holds at least ``n`` records; return them."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.jobcomp_log()
            if len(recs) >= n or time.monotonic() > deadline:
                return recs
            time.sleep(0.2)

    def jobs(self) -> list[dict]:
        """``scontrol show job -o`` of every job slurmctld still knows (MinJobAge).

        Useful keys: ``JobId``, ``JobName``, ``JobState``, ``NumCPUs``,
        ``NumTasks``, ``TRES``, ``TresPerJob``, ``NtasksPerTRES``, ``Comment``,
        ``ExitCode``; ``gpus`` is added (see ``gpus_of``).
        """
        r = self.run("scontrol", "show", "job", "-o", check=False)
        out = []
        for line in r.stdout.splitlines():
            if line.startswith("JobId="):
                rec: dict = parse_kv_record(line)
                rec["gpus"] = gpus_of(rec)
                out.append(rec)
        return out
