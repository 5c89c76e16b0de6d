"""One federated run on this machine: one SuperLink and one SuperNode per site as separate processes.

Every process talks over 127.0.0.1; the SuperLink serves TLS with certificates made for the run
(`tls.make_certificates`, in <run>/tls), the SuperNodes and the `flwr` CLI trust only that CA, and each
SuperNode's local runtime API uses the same certificate. `insecure: true` drops TLS everywhere and the record
says so. Flower's files (its config.toml, the installed app) live in <run>/flwr_home, so nothing is read from
or written to ~/.flwr. The SuperLink keeps its state in memory: a restarted SuperLink must not offer the
SuperNodes of a killed session, which a database would still list. A killed run is re-run with the same call:
the server continues after the last round checkpoint (rounds/round_NNN.pt), so at most one round is redone.
The run owns its processes (`procs`): none outlives the runner, even a SIGKILLed one, and a re-run first
stops any an earlier session left. Certificates are checked before each start (`tls.ensure_certificates`),
and a SuperLink or SuperNode that dies ends the run at once with its log's error line (`logs`).
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
from .logs import exit_text
from .partition import check_sites, partition_patients
from .procs import Processes, lock_run, run_pids, stop_previous
from .server import last_round, round_path
from .tls import ensure_certificates

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


def run_orphans(run_dir: Path) -> list[int]:
    """This run's Flower processes still running (of any session): the ones a killed runner left, or none."""
    return run_pids(Path(run_dir))


def _wait_listening(port: int, proc: subprocess.Popen, procs: Processes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CxrError(f"federated: {procs.failure('superlink', exit_text(proc.returncode) + ' at start')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise CxrError(f"federated: {procs.failure('superlink', f'did not listen on 127.0.0.1:{port} within {timeout:.0f}s')}")


def note(message: str) -> None:
    """One line on the terminal (stderr, which the workflow's log collects) about what this start does."""
    print(f"federated: {message}", file=sys.stderr, flush=True)


def _record_unrecorded_session(run_dir: Path) -> None:
    """A run finished by a session whose runner was killed before writing sessions.json still gets one."""
    path = run_dir / "sessions.json"
    if not path.exists():
        atomic.write_json(path, [{"status": "finished by an earlier session whose runner was killed before "
                                            "recording it", "resumed_after_round": None, "insecure": None}])


def run(spec: dict, timeout_s: float = 3600) -> dict:
    """Start SuperLink + SuperNodes, submit the app with `flwr run`, wait for it, stop everything.

    Before anything else the run folder is locked and whatever an earlier session left running is stopped;
    one line then says whether the run resumes, starts from round 1 or has nothing left to do."""
    run_dir = Path(spec["run_dir"]).resolve()
    spec = {**spec, "run_dir": str(run_dir), "data_dir": str(Path(spec["data_dir"]).resolve())}
    for sub in ("logs", "rounds", "app", "flwr_home"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    lock = lock_run(run_dir)
    try:
        return _run_locked(spec, run_dir, timeout_s)
    finally:
        lock.close()


def _run_locked(spec: dict, run_dir: Path, timeout_s: float) -> dict:
    stopped = stop_previous(run_dir)
    if stopped:
        note(stopped)
    spec["n_sites"] = len(spec["sites"])
    changed = discard_if_changed(run_dir, spec)
    done = last_round(run_dir)
    if done >= spec["rounds"] and (run_dir / "summary.json").exists():
        note(f"all {spec['rounds']} rounds already done in {run_dir}; nothing to run")
        _record_unrecorded_session(run_dir)
        return json.loads((run_dir / "summary.json").read_text())
    if done:
        note(f"resuming {run_dir} after round {done} of {spec['rounds']} ({round_path(run_dir, done).name})")
    else:
        why = f"settings changed ({', '.join(changed)}), earlier rounds discarded" if changed else "no round done yet"
        note(f"starting {run_dir} from round 1 of {spec['rounds']} ({why})")
    prepare_sites(spec)
    atomic.write_json(run_dir / "spec.json", spec)
    atomic.write_text(run_dir / "app" / "pyproject.toml", APP_TOML)
    insecure = bool(spec.get("insecure"))
    certs = cert_note = None
    if not insecure:
        certs, cert_note = ensure_certificates(run_dir / "tls")
        if cert_note:
            note(cert_note)
    link_port = free_port()
    home = run_dir / "flwr_home"
    connection = f'address = "127.0.0.1:{link_port}"\n' + (
        "insecure = true\n" if insecure else f'root-certificates = "{certs["ca"]}"\n')
    atomic.write_text(home / "config.toml", f'[superlink]\ndefault = "run"\n\n[superlink.run]\n{connection}')
    server_threads, site_threads = thread_shares(spec["n_sites"])
    env = {**os.environ, "FLWR_HOME": str(home), "PYTHONUNBUFFERED": "1",
           **FLOWER_ENV}
    # Flower starts `flower-superexec` and `flwr-serverapp`/`flwr-clientapp` by name: this interpreter's
    # scripts come first, so a run works without the virtual environment on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *filter(None, [os.environ.get("PATH")])])
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
               "clientapp": f"{ISOLATION} isolation: a fresh ClientApp process per site and round",
               **({"tls_regenerated": cert_note} if cert_note else {})}
    sessions_path = run_dir / "sessions.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.exists() else []
    # Recorded now and rewritten at the end: a session whose runner is SIGKILLed keeps this status.
    atomic.write_json(sessions_path, [*sessions, {**session, "status": "runner killed before the session ended"}])
    try:
        procs.supervise()
        link = procs.start("superlink", [_bin("flower-superlink"), *tls_link, "--host", "127.0.0.1",
                                         "--port", str(link_port), "--disable-runtime-dependency-installation"],
                           **thread_env(server_threads))
        _wait_listening(link_port, link, procs)
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

        def check_processes() -> None:
            """A SuperLink or SuperNode that died ends the run now, naming it and its log's error line."""
            dead = "superlink" if link.poll() is not None else procs.dead_supernode()
            if dead:
                when = f" after round {last_round(run_dir)} of {spec['rounds']}"
                raise CxrError("federated: " + procs.failure(dead, exit_text(procs.procs[dead].returncode) + when,
                                                             "; re-run to resume from there"))

        def with_cause(message: str) -> CxrError:
            cause = procs.first_cause()
            return CxrError(f"federated: {message}" + (f": {cause}" if cause else f" (see {run_dir}/logs)"))

        while cli.poll() is None:
            check_processes()
            if time.monotonic() > deadline:
                raise with_cause(f"no result within {timeout_s:.0f}s, after round {last_round(run_dir)}")
            time.sleep(0.5)
        summary_path = run_dir / "summary.json"
        # `flwr run --stream` returns when the log stream ends; the ServerApp writes summary.json last.
        grace = time.monotonic() + CLI_GRACE_S
        while last_round(run_dir) < spec["rounds"] or not summary_path.exists():
            check_processes()  # killed while the CLI was already ending: name the process
            if time.monotonic() > min(deadline, grace):
                raise with_cause(f"the run stopped after round {last_round(run_dir)} of {spec['rounds']} "
                                 f"(see {run_dir}/logs/flwr_run.log and server.log)")
            time.sleep(0.5)
        session["status"] = "finished"
    except BaseException as err:
        session["status"] = f"stopped after round {last_round(run_dir)}: {err}"
        raise
    finally:
        procs.stop()
        session["wall_s"] = time.perf_counter() - t0
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
