"""A real federated run: SuperLink and two SuperNodes as separate processes on 127.0.0.1 over TLS.

One test covers the whole life of a run because each start costs Flower's process start-up: round 1, a
SIGKILL of the SuperLink, a re-run that resumes after round 1, and the global model beating no denoising on
the test split by the project's evaluation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509

from cxrdenoise.errors import CxrError
from cxrdenoise.evaluate import evaluate_checkpoint, evaluate_noisy
from cxrdenoise.federated.alone import train_alone
from cxrdenoise.federated.figure import plot_rounds
from cxrdenoise.federated.runner import run, run_orphans
from cxrdenoise.tables.federated import make_federated
from cxrdenoise.federated.tls import make_certificates

from datadir import build_data_dir

SRC = Path(__file__).resolve().parents[1] / "src"


def test_certificates_chain_to_the_run_ca(tmp_path):
    paths = make_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    cert = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
    cert.verify_directly_issued_by(ca)  # raises if the server certificate was not signed by this CA
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert oct(paths["key"].stat().st_mode & 0o777) == "0o600"
    other = x509.load_pem_x509_certificate(make_certificates(tmp_path / "other")["ca"].read_bytes())
    with pytest.raises(Exception):
        cert.verify_directly_issued_by(other)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except OSError:
        return False


def _spec(data: Path, run_dir: Path) -> dict:
    return {"run_dir": str(run_dir), "data_dir": str(data), "sigma": 0.2, "model": "dncnn",
            "model_kwargs": {"depth": 3, "channels": 8}, "sites": [1, 1],
            "partition": {"mode": "random", "column": None}, "rounds": 2, "local_epochs": 4, "lr": 3e-3,
            "batch_size": 2, "strategy": "fedavg", "mu": 0.0, "dp": {"enabled": False}, "seed": 5,
            "device": "cpu", "config_hash": "test", "insecure": False}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_two_sites_two_rounds_over_tls_resume_after_killed_superlink(tmp_path):
    data = build_data_dir(tmp_path, n_images=40, size=32, sigmas=(0.2,), patients=20)
    run_dir = tmp_path / "fed"
    spec = _spec(data, run_dir)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen([sys.executable, "-m", "cxrdenoise.federated.runner", str(spec_path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900
    while not (run_dir / "rounds" / "round_001.pt").exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "round 1 did not finish"
        time.sleep(0.5)
    os.kill(json.loads((run_dir / "pids.json").read_text())["superlink"], signal.SIGKILL)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 1 and "SuperLink exited" in err, (out, err)
    assert not (run_dir / "rounds" / "round_002.pt").exists()

    summary = run(spec)  # the same call again resumes after round 1
    time.sleep(1)
    alive = [pid for pid in run_orphans(run_dir.resolve()) if _running(pid)]
    assert alive == []  # no Flower process of either session outlives the run (zombies aside)
    assert summary["resumed_after"] == 1 and summary["rounds"] == 2
    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2] and [r["session"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["val_loss"] > 0 and r["wall_s"] > 0
        assert [s["site"] for s in r["sites"]] == [0, 1]
        n_weights = sum(p.numel() for p in __import__("torch").load(
            run_dir / "rounds" / "round_001.pt", weights_only=True)["state_dict"].values())
        for s in r["sites"]:  # float32 weights both ways: at least 4 bytes per weight
            assert s["bytes_sent"] >= 4 * n_weights and s["bytes_received"] >= 4 * n_weights
    sessions = json.loads((run_dir / "sessions.json").read_text())
    assert [s["resumed_after_round"] for s in sessions] == [0, 1]
    assert sessions[0]["status"].startswith("stopped after round 1") and sessions[1]["status"] == "finished"
    assert all(s["insecure"] is False for s in sessions)
    assert "https://127.0.0.1" in (run_dir / "logs" / "superlink.log").read_text()  # the SuperLink served TLS
    sites = (run_dir / "sites.csv").read_text().splitlines()[1:]
    by_patient = {}
    for line in sites:
        _, patient, site = line.split(",")
        by_patient.setdefault(patient, set()).add(site)
    assert all(len(s) == 1 for s in by_patient.values())

    model = evaluate_checkpoint(run_dir / "rounds" / "round_002.pt", tmp_path / "eval", data_dir=data, lpips_enabled=False, progress=False)
    noisy = evaluate_noisy(0.2, tmp_path / "noisy", data_dir=data, lpips_enabled=False, progress=False)
    assert model["metrics"]["psnr"]["mean"] > noisy["metrics"]["psnr"]["mean"] + 0.5, (model["metrics"],
                                                                                      noisy["metrics"])

    # each site alone, then the table and the figure from these files
    site_evals, site_records = [], []
    for k in (0, 1):
        rec = train_alone({**spec, "sites_csv": str(run_dir / "sites.csv")}, k, tmp_path / f"site{k}")
        assert rec["epochs"] == 8 and rec["n_examples"] > 0
        evaluate_checkpoint(tmp_path / f"site{k}" / "best.pt", tmp_path / f"site{k}" / "eval", data_dir=data,
                            lpips_enabled=False, progress=False)
        site_evals.append(tmp_path / f"site{k}" / "eval")
        site_records.append(tmp_path / f"site{k}" / "record.json")
    written = make_federated(tmp_path / "tables" / "federated", run_dir=run_dir, global_eval=tmp_path / "eval",
                             site_evals=site_evals, site_records=site_records, noisy_eval=tmp_path / "noisy",
                             data_source="synthetic", seed=1, resamples=200)
    assert sorted(p.suffix for p in written) == [".csv", ".html", ".md", ".tex"]
    table = pd.read_csv(tmp_path / "tables" / "federated.csv")
    assert list(table["kind"]) == ["federated", "site", "site", "noisy"]
    fed = table.iloc[0]
    assert fed["psnr"] == pytest.approx(model["metrics"]["psnr"]["mean"])
    assert fed["psnr_lo"] <= fed["psnr"] <= fed["psnr_hi"]
    assert fed["communication_mb"] == pytest.approx(sum(r["bytes_sent"] + r["bytes_received"] for r in rounds) / 1e6)
    assert not fed["did_not_denoise"] and "TLS with a CA made for the run" in (tmp_path / "tables" / "federated.md").read_text()
    figure = plot_rounds(run_dir, tmp_path / "figures" / "federated", "synthetic")
    assert all(p.stat().st_size > 1000 for p in figure)


def test_runner_refuses_a_column_that_is_not_in_the_metadata(tmp_path):
    data = build_data_dir(tmp_path, n_images=24, size=32, sigmas=(0.2,))
    spec = _spec(data, tmp_path / "fed")
    spec["partition"] = {"mode": "column", "column": "no_such_column"}
    with pytest.raises(CxrError, match="federated.partition.column"):
        run(spec)
