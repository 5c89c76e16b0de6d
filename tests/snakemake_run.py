"""Run Snakemake on this repository's workflow/Snakefile in a scratch working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, timeout: int = 900, snakefile: Path | None = None
              ) -> subprocess.CompletedProcess:
    """Snakemake on `snakefile` (default: this repository's) with `workdir` as its working directory."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    snakefile = snakefile or REPO / "workflow" / "Snakefile"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=workdir)


def start_snakemake(workdir: Path, configs: list[Path], *args: str, env: dict, targets=("all",), nice: int = 0,
                    log: str = "snakemake.out") -> subprocess.Popen:
    """Snakemake in the background (for runs a test interrupts, cancels or watches), its output in workdir/log."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir),
           *args, "--configfile", *map(str, configs), "--", *targets]
    with open(workdir / log, "w") as out:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=(lambda: os.nice(nice)) if nice else None)
