"""Start-up cost per job kind of the Snakemake demo: wall and CPU seconds a `cxrdenoise` job spends importing
before (and, where the demo always takes that path, while) it works, times the number of such jobs in the demo.

    python benchmarks/bench_startup.py [--repeats 5] [--label after] [--no-dag]

Each row is one Snakemake rule: a fresh `python -c` imports what that rule's command imports (the console
script's `cxrdenoise.cli`, the command module, the modules its chosen branch imports, and the heavy modules the
work then imports in the demo, e.g. torch for classical_shard's scoring), the median of --repeats runs. CPU is
user + system of the child (resource.getrusage(RUSAGE_CHILDREN)). `python -c pass` and `python -c "import torch"`
are the references. The job counts come from `snakemake -n all --configfile config/demo.yaml` (a dry run in a
temporary folder); the demo's start-up CPU is the sum of count x CPU. torchrun's extra processes (2 per
DDP training job) are not counted. Writes benchmarks/results/bench_startup_<label>_<UTC>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_output import save_result  # noqa: E402

# Heavy third-party modules reported per row (present in sys.modules once the row's imports are done).
HEAVY = ("torch", "scipy.stats", "scipy.ndimage", "scipy.special", "pandas", "matplotlib", "lpips", "skimage",
         "flwr")

C = "cxrdenoise."
# Snakemake rule -> (its command, modules it imports before its work, modules its work imports in the demo, as
# seen by running the demo's report and data jobs: e.g. Table III and the claims run scipy.stats' tests).
JOBS: dict[str, tuple[str, list[str], list[str]]] = {
    "synthesize_phantoms": ("phantoms", [C + "commands.phantoms"], []),
    "inventory": ("data inventory", [C + "commands.data"], [C + "inventory"]),
    "sample": ("data sample", [C + "commands.data"], [C + "sampling"]),
    "split": ("data split", [C + "commands.data"], [C + "split", C + "provenance", "pandas"]),
    "resize_shard": ("data resize", [C + "commands.data"], [C + "shards", "pandas"]),
    "noise_shard": ("data noise", [C + "commands.data"], [C + "shards"]),
    "clean_manifest": ("data manifest", [C + "commands.data"], [C + "shards", C + "provenance"]),
    "noisy_manifest": ("data manifest", [C + "commands.data"], [C + "shards", C + "provenance"]),
    "train": ("train", [C + "commands.train"], [C + "train.worker", C + "data"]),
    "evaluate": ("evaluate", [C + "commands.evaluate"], [C + "evaluate"]),
    "evaluate_noisy": ("evaluate --noisy", [C + "commands.evaluate"], [C + "evaluate"]),
    "classical_shard": ("classical shard", [C + "commands.classical", C + "baselines"],
                        [C + "data", C + "evaluate", "torch"]),
    "classical_merge": ("classical merge", [C + "commands.classical", C + "baselines"], [C + "stats", "scipy.special"]),
    "federated_sites": ("federated sites", [C + "commands.federated", C + "federated.runner"], []),
    "federated_run": ("federated run", [C + "commands.federated", C + "atomic", C + "federated.runner",
                                        C + "federated.server"], []),
    "federated_alone": ("federated alone", [C + "commands.federated", C + "federated.alone"], []),
    "federated_evaluate": ("federated evaluate", [C + "commands.federated", C + "evaluate"], []),
    "federated_table": ("federated table", [C + "commands.federated", C + "tables.federated", C + "tables.cells"],
                        [C + "stats"]),
    "federated_figure": ("federated figure", [C + "commands.federated", C + "federated.figure"],
                         ["matplotlib.pyplot"]),
    "privacy_attacker": ("privacy attacker", [C + "commands.privacy", "numpy", C + "privacy.images",
                                              C + "privacy.learned"], ["torch"]),
    "privacy_scores": ("privacy score", [C + "commands.privacy", "pandas", C + "privacy.learned", C + "privacy.ncc",
                                         C + "privacy.trivial", C + "privacy.images", C + "privacy.pairs",
                                         C + "privacy.stage", C + "data"], ["torch"]),
    "privacy_table": ("privacy table", [C + "commands.privacy", C + "tables.cells", C + "tables.privacy"], []),
    "privacy_figure": ("privacy figure", [C + "commands.privacy", C + "privacy.figure"], ["matplotlib.pyplot"]),
    "table3": ("tables table3", [C + "commands.tables"], [C + "tables.table3", C + "stats", "scipy.stats"]),
    "table4": ("tables table4", [C + "commands.tables"], [C + "tables.table4", C + "stats"]),
    "table5": ("tables table5", [C + "commands.tables"], [C + "tables.table5", C + "stats"]),
    "table6": ("tables table6", [C + "commands.tables"], [C + "tables.table6", C + "stats"]),
    "claims": ("claims claims", [C + "commands.claims"], [C + "tables.claims", C + "stats", "scipy.stats"]),
    "comparisons": ("claims comparisons", [C + "commands.claims"], [C + "tables.comparisons", C + "stats",
                                                                     "scipy.stats"]),
    "figure4": ("figures figure4", [C + "commands.figures"], [C + "figures", "matplotlib.pyplot"]),
    "psnr_sigma": ("figures psnr_sigma", [C + "commands.figures"], [C + "figures", "matplotlib.pyplot"]),
    "figures_examples": ("figures examples", [C + "commands.figures"], [C + "figures", "matplotlib.pyplot"]),
    "training_curves": ("figures curves", [C + "commands.figures"], [C + "figures", "matplotlib.pyplot"]),
    "provenance": ("provenance", [C + "commands.provenance"], [C + "provenance_page"]),
}
# Rules generated per replicate count (workflow/rules/evaluate.smk: evaluate_3reps scores 3 replicates in one
# job) start like the rule they are named after.
FAMILIES = {r"evaluate_\d+reps": "evaluate"}
REFERENCES = {"python -c pass": "pass", "python -c 'import torch'": "import torch"}


def snippet(modules: list[str]) -> str:
    """A child's program: import the modules, then print which heavy modules came with them."""
    imports = "".join(f"import {m}\n" for m in dict.fromkeys([C + "cli", *modules]))
    return f"{imports}import sys\nprint(','.join(h for h in {HEAVY!r} if h in sys.modules))\n"


def measure(code: str, repeats: int, env: dict) -> dict:
    """Median wall and CPU seconds of `python -c code` over `repeats` fresh processes, and what it printed."""
    walls, cpus, out = [], [], ""
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        out = proc.stdout.strip()
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "heavy": out.split(",") if out else []}


def demo_job_counts() -> tuple[dict[str, int] | None, str]:
    """Jobs per rule in the demo's DAG from a Snakemake dry run (None, and why, when Snakemake is missing)."""
    exe = shutil.which("snakemake") or (str(Path(sys.executable).with_name("snakemake"))
                                        if Path(sys.executable).with_name("snakemake").exists() else None)
    if exe is None:
        return None, "snakemake not found: no job counts"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([exe, "-n", "all", "--configfile", str(REPO / "config" / "demo.yaml"),
                               "--directory", tmp], cwd=REPO, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    block = text.split("Job stats:", 1)
    if proc.returncode != 0 or len(block) < 2:
        return None, f"snakemake -n failed (exit {proc.returncode}): {text.strip().splitlines()[-1:] or ''}"
    counts = {}
    for line in block[1].splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)\s*$", line)
        if not m or m.group(1) == "total":
            break
        counts[m.group(1)] = int(m.group(2))
    return counts, "snakemake -n all --configfile config/demo.yaml"


def version_of(module: str, env: dict) -> str | None:
    proc = subprocess.run([sys.executable, "-c", f"import {module}; print({module}.__version__)"], env=env,
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--label", default="", help="a word for the JSON's name and record, e.g. before or after")
    p.add_argument("--no-dag", action="store_true", help="skip the Snakemake dry run (no job counts)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    counts, counts_source = (None, "--no-dag") if a.no_dag else demo_job_counts()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; python "
          f"{platform.python_version()}; median of {a.repeats}; job counts: {counts_source}")
    refs = {name: measure(code, a.repeats, env) for name, code in REFERENCES.items()}
    cache: dict[str, dict] = {}
    rows = []
    kinds = dict(JOBS)
    for rule in counts or {}:
        family = next((JOBS[f] for pattern, f in FAMILIES.items() if re.fullmatch(pattern, rule)), None)
        if rule not in kinds and family is not None:
            kinds[rule] = family
    for rule, (command, before, work) in kinds.items():
        code = snippet(before + work)
        if code not in cache:
            cache[code] = measure(code, a.repeats, env)
        r = cache[code]
        n = counts.get(rule, 0) if counts is not None else None
        rows.append({"rule": rule, "command": f"cxrdenoise {command}", "imports": before + work, **r, "jobs": n,
                     "total_cpu_s": None if n is None else n * r["cpu_s"]})
    print(f"{'rule':<20} {'command':<30} {'wall s':>7} {'CPU s':>7} {'jobs':>5} {'jobs x CPU':>10}  heavy imports")
    for name, r in refs.items():
        print(f"{'(reference)':<20} {name:<30} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} {'':>5} {'':>10}")
    for r in rows:
        jobs = "" if r["jobs"] is None else str(r["jobs"])
        tot = "" if r["total_cpu_s"] is None else f"{r['total_cpu_s']:.1f}"
        print(f"{r['rule']:<20} {r['command']:<30} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} {jobs:>5} {tot:>10}  "
              f"{' '.join(r['heavy']) or '-'}")
    result = {
        "benchmark": "bench_startup", "label": a.label,
        "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0], "python": platform.python_version(),
        "torch": version_of("torch", env), "repeats": a.repeats, "job_counts_source": counts_source,
        "references": refs, "rows": rows,
    }
    if counts is not None:
        missing = sorted(set(counts) - set(kinds) - {"all"})
        total = sum(r["total_cpu_s"] for r in rows)
        jobs = sum(r["jobs"] for r in rows)
        torch_jobs = sum(r["jobs"] for r in rows if "torch" in r["heavy"])
        result.update(demo_jobs=jobs, demo_torch_jobs=torch_jobs, demo_startup_cpu_s=total, rules_not_measured=missing)
        print(f"demo: {jobs} jobs ({torch_jobs} import torch), start-up CPU {total:.0f} s ({total / 60:.1f} min)"
              + (f"; rules not in the table: {', '.join(missing)}" if missing else ""))
    save_result(a.out, "bench_startup" + (f"_{a.label}" if a.label else ""), result)
    return result


if __name__ == "__main__":
    main()
