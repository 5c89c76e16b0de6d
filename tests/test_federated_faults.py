"""Regression tests for issue 22's federated faults: a SIGKILLed runner left 13 Flower processes running and
every re-run crashed (fault 1); expired or garbage TLS certificates were reused and the cause was only in
logs the terminal did not name (fault 2); a dead SuperNode was noticed after 119 s without naming its site
(fault 14). The fast tests use stand-in processes (`sleep`); the slow one runs a real two-site federation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cxrdenoise.errors import CxrError
from cxrdenoise.federated import tls
from cxrdenoise.federated.logs import error_line
from cxrdenoise.federated.procs import MARKER, alive, lock_run, run_pids, stop_previous
from cxrdenoise.federated.runner import run, run_orphans

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


# --- fault 2: certificates are checked before use --------------------------------------------------------

def test_valid_certificates_are_kept(tmp_path):
    made = tls.make_certificates(tmp_path)
    before = made["cert"].read_bytes()
    paths, note = tls.ensure_certificates(tmp_path)
    assert note is None and paths == made and made["cert"].read_bytes() == before


def test_expired_certificates_are_regenerated(tmp_path):
    ten_days_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    tls.make_certificates(tmp_path, valid_from=ten_days_ago)  # 7 days: expired 3 days ago
    assert "expired on" in tls.certificate_problem(tmp_path)
    paths, note = tls.ensure_certificates(tmp_path)
    assert note.startswith(f"TLS certificates in {tmp_path} regenerated: ca.crt expired on") and "\n" not in note
    assert tls.certificate_problem(tmp_path) is None


def test_certificates_expiring_within_the_margin_are_regenerated(tmp_path):
    tls.make_certificates(tmp_path, days=0.5)
    assert "within 24 h" in tls.certificate_problem(tmp_path)
    assert tls.ensure_certificates(tmp_path)[1] is not None and tls.certificate_problem(tmp_path) is None


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "server.crt").write_text("garbage\n"), "server.crt is not a PEM certificate"),
    (lambda d: (d / "server.key").write_bytes(b""), "server.key is not a PEM private key"),
    (lambda d: (d / "ca.crt").unlink(), "ca.crt missing"),
    (lambda d: (d / "server.key").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
     "server.key does not belong to server.crt"),
    (lambda d: (d / "ca.crt").write_bytes(tls.make_certificates(d / "other")["ca"].read_bytes()),
     "server.crt was not issued by ca.crt"),
])
def test_damaged_certificates_are_regenerated(tmp_path, damage, reason):
    tls.make_certificates(tmp_path)
    damage(tmp_path)
    assert tls.certificate_problem(tmp_path) == reason
    _, note = tls.ensure_certificates(tmp_path)
    assert note.endswith(f"regenerated: {reason}")
    assert tls.certificate_problem(tmp_path) is None


def test_first_certificates_are_made_without_a_note(tmp_path):
    paths, note = tls.ensure_certificates(tmp_path / "tls")
    assert note is None and all(p.is_file() for p in paths.values())


# --- fault 2 and 14: the terminal shows the failing process's log line ------------------------------------

# Excerpts of real Flower 1.42 logs of this project's runs (colour codes included).
SUPERNODE_EXPIRED = """\x1b[92mINFO \x1b[0m:      Starting Flower SuperNode
INFO:     Uvicorn running on https://127.0.0.1:42653 (Press CTRL+C to quit)
\x1b[91mERROR \x1b[0m:     SSL/TLS handshake error detected.
\x1b[91mERROR \x1b[0m:     Exit Code: 305
Failed to initialize the connection to the SuperLink.
[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1006)
The SuperNode could not establish a connection to the SuperLink.
\x1b[93mWARNING \x1b[0m:   Connection attempt failed, retrying in 0.32 seconds
"""
SUPERLINK_NO_SUPEREXEC = """2026-12-07T23:27:41.690Z INFO [uvicorn.error] Waiting for application startup.
Traceback (most recent call last):
  File "/x/subprocess.py", line 1950, in _execute_child
    raise child_exception_type(errno_num, err_msg, err_filename)
FileNotFoundError: [Errno 2] No such file or directory: 'flower-superexec'

2026-12-07T23:27:41.696Z ERROR [uvicorn.error] Application startup failed. Exiting.
"""


def test_error_line_is_the_cause_not_the_noise(tmp_path):
    log = tmp_path / "supernode_0.log"
    log.write_text(SUPERNODE_EXPIRED)
    assert error_line(log) == ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has "
                               "expired (_ssl.c:1006)")
    log.write_text(SUPERLINK_NO_SUPEREXEC)
    assert error_line(log) == "FileNotFoundError: [Errno 2] No such file or directory: 'flower-superexec'"
    # only this session's part of an appended log counts; INFO lines of "uvicorn.error" and retries are not errors
    offset = log.stat().st_size
    with log.open("a") as fh:
        fh.write("2026-12-07T23:28:48.274Z INFO [uvicorn.error] Shutting down\n"
                 "\x1b[93mWARNING \x1b[0m:   Connection attempt failed, retrying in 0.27 seconds\n")
    assert error_line(log, offset) is None


# --- fault 1: processes are owned ----------------------------------------------------------------------

FAKE_RUNNER = """
import os, subprocess, sys, time
from pathlib import Path
from cxrdenoise.federated.procs import Processes
procs = Processes(Path(sys.argv[1]), dict(os.environ))
procs.supervise()
procs.start("superlink", ["sleep", "300"])
# a grandchild in a session of its own, as Flower's SuperExec starts its ServerApp and ClientApps
procs.start("supernode_0", [sys.executable, "-c", "import subprocess, time; "
            "subprocess.Popen(['sleep', '301'], start_new_session=True); time.sleep(300)"])
print("ready", flush=True)
time.sleep(300)
"""


def test_a_sigkilled_runner_leaves_no_process(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    runner = subprocess.Popen([sys.executable, "-c", FAKE_RUNNER, str(run_dir)], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert runner.stdout.readline() == "ready\n"
        _wait(lambda: len(run_pids(run_dir)) == 3, 20, "the grandchild did not start")
        started = run_pids(run_dir)
        supervisor = json.loads((run_dir / "pids.json").read_text())["supervisor"]
        assert alive(supervisor) and supervisor not in started  # the supervisor carries no marker
        runner.kill()
        runner.wait()
        _wait(lambda: not run_pids(run_dir) and not any(alive(p) for p in started), 30,
              f"still running after the runner was killed: {run_pids(run_dir)}")
        _wait(lambda: not alive(supervisor), 10, "the supervisor did not end")
        assert "stopped them" in (run_dir / "logs" / "supervisor.log").read_text()
    finally:
        runner.kill()
        for pid in run_pids(run_dir):
            os.kill(pid, signal.SIGKILL)


def test_the_next_start_stops_what_an_earlier_session_left(tmp_path):
    """The runner and its supervisor both SIGKILLed: the re-run stops the leftovers from pids.json and /proc."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    orphan = subprocess.Popen(["sleep", "300"], env={**ENV, MARKER: f"{run_dir}|oldsession"}, start_new_session=True)
    old_supervisor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(run_dir)],
                                      start_new_session=True)
    stranger = subprocess.Popen(["sleep", "300"], env={**ENV, MARKER: f"{run_dir}-other|x"}, start_new_session=True)
    (run_dir / "pids.json").write_text(json.dumps({"supervisor": old_supervisor.pid, "superlink": orphan.pid}))
    try:
        _wait(lambda: orphan.pid in run_pids(run_dir), 10, "the stand-in orphan was not found")
        line = stop_previous(run_dir)
        assert line == f"stopped 1 Flower process(es) an earlier session of {run_dir} left running (its runner was killed)"
        assert orphan.wait(timeout=15) is not None and old_supervisor.wait(timeout=15) is not None
        assert stranger.poll() is None  # another run's process is left alone
        assert stop_previous(run_dir) is None
    finally:
        for p in (orphan, old_supervisor, stranger):
            p.kill()
            p.wait()


def test_a_second_runner_on_the_same_folder_is_refused(tmp_path):
    held = lock_run(tmp_path)
    try:
        with pytest.raises(CxrError, match="another runner .* is using"):
            lock_run(tmp_path)
    finally:
        held.close()
    lock_run(tmp_path).close()  # released with its holder (the kernel does this for a killed runner too)


def _spec(data: Path, run_dir: Path, rounds: int = 2) -> dict:
    return {"run_dir": str(run_dir), "data_dir": str(data), "sigma": 0.2, "model": "dncnn",
            "model_kwargs": {"depth": 3, "channels": 8}, "sites": [1, 1],
            "partition": {"mode": "random", "column": None}, "rounds": rounds, "local_epochs": 1, "lr": 3e-3,
            "batch_size": 2, "strategy": "fedavg", "mu": 0.0, "dp": {"enabled": False}, "seed": 5,
            "device": "cpu", "config_hash": "test", "insecure": False}


def _finished_elsewhere(tmp_path) -> tuple[dict, Path]:
    """A run folder whose rounds an unsupervised earlier session finished without writing sessions.json."""
    run_dir = (tmp_path / "out" / "run").resolve()
    (run_dir / "rounds").mkdir(parents=True)
    spec = {**_spec(tmp_path / "data", run_dir), "data_dir": str((tmp_path / "data").resolve()), "n_sites": 2}
    (run_dir / "spec.json").write_text(json.dumps(spec))
    for r in (1, 2):
        (run_dir / "rounds" / f"round_00{r}.pt").write_bytes(b"weights")
    (run_dir / "summary.json").write_text(json.dumps({"rounds": 2, "best_round": 2}))
    (run_dir / "rounds.json").write_text("[]")
    return spec, run_dir


def test_a_run_finished_by_an_unrecorded_session_returns_with_a_record(tmp_path, capsys):
    spec, run_dir = _finished_elsewhere(tmp_path)
    assert run(spec) == {"rounds": 2, "best_round": 2}
    assert capsys.readouterr().err == f"federated: all 2 rounds already done in {run_dir}; nothing to run\n"
    assert "killed" in json.loads((run_dir / "sessions.json").read_text())[0]["status"]


def test_the_run_command_names_missing_files_in_one_line(tmp_path, capsys, monkeypatch):
    from cxrdenoise.commands import federated as command
    import cxrdenoise.federated.runner as runner

    spec, run_dir = _finished_elsewhere(tmp_path)
    monkeypatch.setattr(runner, "run", lambda spec, timeout_s: {"rounds": 2, "best_round": 2})
    monkeypatch.setattr(runner, "stop_on_sigterm", lambda: None)
    args = ["run", "--data-dir", str(tmp_path / "data"), "--sigma", "0.2", "--seed", "5", "--sites", "1", "1",
            "--partition-mode", "random", "--sites-csv", "s.csv", "--model", "dncnn", "--rounds", "2",
            "--local-epochs", "1", "--lr", "0.003", "--batch-size", "2", "--strategy", "fedavg", "--mu", "0",
            "--device", "cpu", "--timeout-s", "60", "--out-dir", str(tmp_path / "out")]
    assert command.main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: federated: the run ended without ") and "sessions.json" in err
    assert not (tmp_path / "out" / "best.pt").exists()


def test_a_superlink_that_fails_at_start_shows_its_log_line(tmp_path, tiny_data_dir, monkeypatch):
    """Certificates damaged past the check (here: by a stand-in for it) make the real SuperLink exit at
    start; the error names it and the line of its log that says why, and nothing is left running."""
    import cxrdenoise.federated.runner as runner

    def garbage(folder):
        paths = tls.make_certificates(folder)
        paths["cert"].write_text("garbage\n")
        return paths, None

    monkeypatch.setattr(runner, "ensure_certificates", garbage)
    run_dir = (tmp_path / "fed").resolve()
    with pytest.raises(CxrError) as err:
        run(_spec(tiny_data_dir, run_dir))
    message = str(err.value)
    assert message.startswith("federated: SuperLink exited with code 1 at start: ssl.SSLError: "), message
    assert message.endswith(f" (see {run_dir}/logs/superlink.log)") and "\n" not in message
    assert run_orphans(run_dir) == []


# --- the three faults against real Flower processes -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_dead_supernode_killed_runner_and_bad_certificates_end_cleanly(tmp_path, capsys):
    from datadir import build_data_dir

    data = build_data_dir(tmp_path, n_images=40, size=32, sigmas=(0.2,), patients=20)
    run_dir = (tmp_path / "fed").resolve()
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(_spec(data, run_dir)))
    tls.make_certificates(run_dir / "tls", valid_from=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8))

    def start_runner() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cxrdenoise.federated.runner", str(spec_path)], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def pids() -> dict:
        try:
            return json.loads((run_dir / "pids.json").read_text())
        except (OSError, ValueError):
            return {}

    # 1. expired certificates are replaced; after round 1 SuperNode 1 dies: the runner ends at once, naming it
    first = start_runner()
    _wait(lambda: (run_dir / "rounds" / "round_001.pt").exists() or first.poll() is not None, 600, "no round 1")
    assert first.poll() is None, first.communicate()
    with (run_dir / "logs" / "supernode_1.log").open("a") as fh:
        fh.write("\x1b[91mERROR \x1b[0m:     site 1 lost its disk (written by the test)\n")
    os.kill(pids()["supernode_1"], signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 1 and time.monotonic() - killed_at < 60, (out, err)
    lines = [line for line in err.splitlines() if line.startswith(("federated:", "error:"))]
    assert lines[0] == f"federated: starting {run_dir} from round 1 of 2 (no round done yet)"
    assert lines[1].startswith(f"federated: TLS certificates in {run_dir / 'tls'} regenerated: ca.crt expired on")
    assert lines[2] == ("error: federated: SuperNode 1 (site 1) exited (killed by signal 9, SIGKILL) after round 1 "
                        f"of 2: site 1 lost its disk (written by the test) (see {run_dir}/logs/supernode_1.log); "
                        "re-run to resume from there"), err
    assert run_orphans(run_dir) == []

    # 2. the runner is SIGKILLed mid-round: its supervisor stops every Flower process
    second = start_runner()
    _wait(lambda: pids().get("runner") == second.pid and "flwr_run" in pids(), 300, "second session did not start")
    recorded = [pid for name, pid in pids().items() if name not in ("runner", "supervisor")]
    second.kill()
    second.wait()
    _wait(lambda: not run_orphans(run_dir) and not any(alive(p) for p in recorded), 60,
          f"Flower processes outlived the killed runner: {run_orphans(run_dir)}")
    assert not (run_dir / "rounds" / "round_002.pt").exists()

    # 3. a garbage server certificate is replaced and the re-run resumes after round 1
    (run_dir / "tls" / "server.crt").write_text("garbage\n")
    capsys.readouterr()
    summary = run(json.loads(spec_path.read_text()))
    err = capsys.readouterr().err
    assert f"federated: resuming {run_dir} after round 1 of 2 (round_001.pt)\n" in err
    assert f"TLS certificates in {run_dir / 'tls'} regenerated: server.crt is not a PEM certificate\n" in err
    assert summary["resumed_after"] == 1 and summary["rounds"] == 2
    assert run_orphans(run_dir) == []
    statuses = [s["status"] for s in json.loads((run_dir / "sessions.json").read_text())]
    assert statuses[0].startswith("stopped after round 1: federated: SuperNode 1 (site 1) exited")
    assert statuses[1:] == ["runner killed before the session ended", "finished"]
