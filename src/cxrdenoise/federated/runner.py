"""One federated run on this machine: one SuperLink and one SuperNode per site as separate processes.

Every process talks over 127.0.0.1; the SuperLink serves TLS with certificates made for the run
(`tls.make_certificates`, in <run>/tls), the SuperNodes and the `flwr` CLI trust only that CA, and each
SuperNode's local runtime API uses the same certificate. `insecure: true` drops TLS everywhere and the record
says so. Flower's files (its config.toml, the installed app) live in <run>/flwr_home, so nothing is read from
or written to ~/.flwr. The SuperLink keeps its state in memory: a restarted SuperLink must not offer the
SuperNodes of a killed session, which a database would still list. A killed run is re-run with the same call:
the server continues after the last round checkpoint (rounds/round_NNN.pt), so at most one round is redone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from .. import atomic
from ..data import PairDataset
from ..errors import CxrError
from .partition import check_sites, partition_patients
from .server import last_round
from .tls import make_certificates

APP_TOML = """\
# Written by cxrdenoise.federated.runner: the Flower App `flwr run` submits. Its components live in the
# installed cxrdenoise package, so the app carries no code of its own.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "cxrdenoise-federated"
version = "1.0.0"
description = "Federated denoising of chest radiographs (cxrdenoise federated stage)"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "cxrdenoise"

[tool.flwr.app.components]
serverapp = "cxrdenoise.federated.flower_apps:server_app"
clientapp = "cxrdenoise.federated.flower_apps:client_app"

[tool.flwr.app.config]
spec = ""
"""


CLI_GRACE_S = 60  # after `flwr run` ends, how long the ServerApp may take to write summary.json
# Flower's SuperExec (which starts a ServerApp or ClientApp process for each task) asks its SuperLink or
# SuperNode for work once a second by default (FLWR_SUPEREXEC_TASK_POLL_INTERVAL); a site's task then waits
# up to that long before its process starts, in every round.
TASK_POLL_S = "0.2"
# Flower sends usage telemetry to telemetry.flower.ai from every process by default; the pipeline makes no
# network calls at run time, and a hospital's SuperNode must not either.
# Flower's default: each SuperNode's SuperExec starts a new ClientApp process for every message (each site
# and round pays Python, Flower and torch imports, ~5-8 s on 2 shared cores); `process` would need a
# ClientApp runner started outside the SuperNode, which Flower 1.42 also runs once per task.
ISOLATION = "subprocess"
FLOWER_ENV = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": TASK_POLL_S, "FLWR_TELEMETRY_ENABLED": "0"}


# Thread-count variables Snakemake sets to a job's threads; torch reads OMP_NUM_THREADS and MKL_NUM_THREADS.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_shares(n_sites: int) -> tuple[int, int]:
    """(server threads, threads per site): the job's threads (OMP_NUM_THREADS, which Snakemake sets to the
    rule's threads) are split between the sites, which train at the same time; the ServerApp, which validates
    while the sites wait, gets all but one (the Flower daemons keep polling meanwhile). Inherited unchanged,
    every site's torch ran the job's thread count (Snakemake's MKL_NUM_THREADS alone is enough): on 2 shared
    cores that oversubscription made a round's local training 10x slower (measured: 40 steps of the demo's
    U-Net, 120-150 s instead of 12 s) and the server's validation 6-10x slower than on one thread."""
    try:
        job = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        job = os.cpu_count() or 1
    job = max(1, job)
    return max(1, job - 1), max(1, job // max(1, n_sites))


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in THREAD_VARS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def write_sites(spec: dict, out_dir: str | Path | None = None, metadata: Path | None = None) -> pd.DataFrame:
    """Partition the train split into the configured sites; sites.csv and site_counts.json in `out_dir`
    (default: the run folder)."""
    train = PairDataset(spec["data_dir"], "train", spec["sigma"])
    frame = pd.DataFrame({"image_id": train.image_ids, "patient_id": train.patient_ids})
    part = spec["partition"]
    if part["mode"] == "column":
        meta = pd.read_csv(metadata or Path(spec["data_dir"]) / "split.csv", dtype={"image_id": str})
        column = part["column"]
        if column not in meta.columns:
            raise CxrError(f"federated.partition.column: '{column}' is not a column of "
                           f"{metadata or Path(spec['data_dir']) / 'split.csv'}")
        frame = frame.merge(meta[["image_id", column]], on="image_id", how="left")
    frame["site"] = partition_patients(frame, spec["sites"], part["mode"], spec["seed"], part.get("column"))
    check_sites(frame, frame["site"])
    run_dir = Path(out_dir or spec["run_dir"])
    with atomic.atomic_path(run_dir / "sites.csv") as tmp:
        frame[["image_id", "patient_id", "site"]].to_csv(tmp, index=False)
    counts = {int(k): {"images": int(len(g)), "patients": int(g["patient_id"].nunique())}
              for k, g in frame.groupby("site")}
    atomic.write_json(run_dir / "site_counts.json", counts)
    return frame


def prepare_sites(spec: dict) -> None:
    """The run folder's sites.csv: copied from spec["sites_csv"] (the workflow's partition) or made here."""
    run_dir = Path(spec["run_dir"])
    if (run_dir / "sites.csv").exists():
        return
    if spec.get("sites_csv"):
        src = Path(spec["sites_csv"])
        for name in ("sites.csv", "site_counts.json"):
            atomic.write_bytes(run_dir / name, (src.parent / name).read_bytes())
    else:
        write_sites(spec)


# Keys that may differ between a killed run and its re-run; any other change means the rounds done so far
# belong to another experiment, and the run starts again from round 0.
RESUMABLE_KEYS = ("insecure", "timeout_s", "config_hash")
RUN_FILES = ("rounds.json", "summary.json", "sessions.json", "sites.csv", "site_counts.json", "spec.json")


def discard_if_changed(run_dir: Path, spec: dict) -> list[str]:
    """Remove the rounds of an earlier run whose settings differ from `spec`; returns the keys that differed."""
    old_path = run_dir / "spec.json"
    if not old_path.exists():
        return []
    old = json.loads(old_path.read_text())
    changed = sorted(k for k in set(old) | set(spec)
                     if k not in RESUMABLE_KEYS and json.dumps(old.get(k), sort_keys=True) != json.dumps(spec.get(k), sort_keys=True))
    if changed:
        for ckpt in (run_dir / "rounds").glob("round_*.pt"):
            ckpt.unlink()
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        with (run_dir / "server.log").open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} settings changed ({', '.join(changed)}): "
                     "earlier rounds discarded, starting from round 0\n")
    return changed


class Processes:
    """The run's Flower processes, each in its own session so it and its children end together."""

    def __init__(self, run_dir: Path, env: dict):
        self.run_dir, self.env, self.procs = run_dir, env, {}

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        log = (self.run_dir / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**self.env, **env},
                                cwd=self.run_dir, start_new_session=True)
        self.procs[name] = proc
        pids = {k: p.pid for k, p in self.procs.items()}
        atomic.write_json(self.run_dir / "pids.json", pids)
        return proc

    def stop(self) -> None:
        self._stop_started()
        for pid in run_orphans(self.run_dir):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _stop_started(self) -> None:
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
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_orphans(run_dir: Path) -> list[int]:
    """Flower processes of this run left behind by a killed SuperLink (a ServerApp outlives its SuperExec).

    Found by the run folder in their command line (the run's CA path), which only this run's processes carry.
    """
    marker = str(run_dir / "tls")
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.decode(errors="replace").startswith(marker) for a in argv) and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _wait_listening(port: int, proc: subprocess.Popen, name: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CxrError(f"federated: {name} exited with code {proc.returncode} at start (see {log})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise CxrError(f"federated: {name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s (see {log})")


def run(spec: dict, timeout_s: float = 3600) -> dict:
    """Start SuperLink + SuperNodes, submit the app with `flwr run`, wait for it, stop everything."""
    run_dir = Path(spec["run_dir"]).resolve()
    spec = {**spec, "run_dir": str(run_dir), "data_dir": str(Path(spec["data_dir"]).resolve())}
    for sub in ("logs", "rounds", "app", "flwr_home"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    spec["n_sites"] = len(spec["sites"])
    discard_if_changed(run_dir, spec)
    if last_round(run_dir) >= spec["rounds"] and (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    prepare_sites(spec)
    atomic.write_json(run_dir / "spec.json", spec)
    atomic.write_text(run_dir / "app" / "pyproject.toml", APP_TOML)
    insecure = bool(spec.get("insecure"))
    certs = None
    if not insecure:
        certs = {k: run_dir / "tls" / f for k, f in (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"))}
        if not all(p.exists() for p in certs.values()):
            certs = make_certificates(run_dir / "tls")
    link_port = free_port()
    home = run_dir / "flwr_home"
    connection = f'address = "127.0.0.1:{link_port}"\n' + (
        "insecure = true\n" if insecure else f'root-certificates = "{certs["ca"]}"\n')
    atomic.write_text(home / "config.toml", f'[superlink]\ndefault = "run"\n\n[superlink.run]\n{connection}')
    server_threads, site_threads = thread_shares(spec["n_sites"])
    env = {**os.environ, "FLWR_HOME": str(home), "PYTHONUNBUFFERED": "1",
           **FLOWER_ENV}
    src = str(Path(__file__).resolve().parents[2])  # the cxrdenoise source tree, for Flower's app processes
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    tls_link = ["--insecure"] if insecure else ["--ssl-ca-certfile", str(certs["ca"]),
                                                "--ssl-certfile", str(certs["cert"]), "--ssl-keyfile", str(certs["key"])]
    procs = Processes(run_dir, env)
    t0 = time.perf_counter()
    session = {"insecure": insecure, "superlink": f"127.0.0.1:{link_port}", "started": time.time(),
               "resumed_after_round": last_round(run_dir), "engine": "flower deployment engine",
               "tls": None if insecure else "self-signed CA made for this run (tls/ca.crt)",
               "threads": {"server": server_threads, "per_site": site_threads},
               "clientapp": f"{ISOLATION} isolation: a fresh ClientApp process per site and round"}
    try:
        link = procs.start("superlink", [_bin("flower-superlink"), *tls_link, "--host", "127.0.0.1",
                                         "--port", str(link_port), "--disable-runtime-dependency-installation"],
                           **thread_env(server_threads))
        _wait_listening(link_port, link, "SuperLink", run_dir / "logs" / "superlink.log")
        for site in range(spec["n_sites"]):
            node_port = free_port()
            tls_node = ["--insecure"] if insecure else [
                "--root-certificates", str(certs["ca"]), "--ssl-certfile", str(certs["cert"]),
                "--ssl-keyfile", str(certs["key"]), "--ssl-ca-certfile", str(certs["ca"])]
            procs.start(f"supernode_{site}", [_bin("flower-supernode"), *tls_node, "--isolation", ISOLATION,
                                              "--superlink",
                                              f"127.0.0.1:{link_port}", "--port", str(node_port),
                                              "--node-config", f"site={site}"],
                        **thread_env(site_threads))
        atomic.write_text(run_dir / "run_config.toml", f'spec = "{run_dir / "spec.json"}"\n')
        cli = procs.start("flwr_run", [_bin("flwr"), "run", str(run_dir / "app"), "run", "--run-config",
                                       str(run_dir / "run_config.toml"), "--stream"])
        deadline = time.monotonic() + timeout_s

        def link_exited() -> CxrError:
            return CxrError(f"federated: the SuperLink exited (code {link.returncode}) after round "
                            f"{last_round(run_dir)}; re-run to resume from there")

        while cli.poll() is None:
            if link.poll() is not None:
                raise link_exited()
            if time.monotonic() > deadline:
                raise CxrError(f"federated: no result within {timeout_s:.0f}s (see {run_dir}/logs)")
            time.sleep(0.5)
        summary_path = run_dir / "summary.json"
        # `flwr run --stream` returns when the log stream ends; the ServerApp writes summary.json last.
        grace = time.monotonic() + CLI_GRACE_S
        while last_round(run_dir) < spec["rounds"] or not summary_path.exists():
            if link.poll() is not None:  # killed while the CLI was already ending: name the SuperLink
                raise link_exited()
            if time.monotonic() > min(deadline, grace):
                raise CxrError(f"federated: the run stopped after round {last_round(run_dir)} of "
                               f"{spec['rounds']} (see {run_dir}/logs/flwr_run.log and server.log)")
            time.sleep(0.5)
        session["status"] = "finished"
    except BaseException as err:
        session["status"] = f"stopped after round {last_round(run_dir)}: {err}"
        raise
    finally:
        procs.stop()
        session["wall_s"] = time.perf_counter() - t0
        sessions_path = run_dir / "sessions.json"
        sessions = json.loads(sessions_path.read_text()) if sessions_path.exists() else []
        atomic.write_json(sessions_path, [*sessions, session])
    return json.loads(summary_path.read_text())


def stop_on_sigterm() -> None:
    """Make SIGTERM (Snakemake, SLURM, timeout) unwind like Ctrl-C, so `run` stops the Flower processes."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    stop_on_sigterm()
    try:
        summary = run(spec)
    except CxrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
