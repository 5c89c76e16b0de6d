"""The end-of-run summary the workflow prints on success (Snakemake `onsuccess:`): what was written, where the
report is, whether LPIPS is real, which rows did not denoise, and what the user should be warned about.

Everything is read back from the result files themselves (tables, figures, evaluation summaries, training
records), so the summary says what is on disk, not what the workflow intended.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

from .denoised import did_not_denoise
from .errors import CxrError
from .layout import (RunPath, eval_file, noisy_eval_file, parse_run_path, rep_dir, run_key, sigma_label,
                     train_file)

REPORT = "results/report.html"
RESOLVED_CONFIG = "results/config.resolved.yaml"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _psnr_mean(summary: Mapping[str, Any] | None) -> float | None:
    if not summary:
        return None
    block = summary.get("metrics", summary).get("psnr")
    mean = block.get("mean") if isinstance(block, Mapping) else None
    return float(mean) if isinstance(mean, (int, float)) else None


def _expected(config: Mapping[str, Any]) -> list[RunPath]:
    """Every run the config trains and evaluates (every replicate: train.replicates, or train.replicates_by_model
    where it gives a model and setup their own count; a model's setups narrowed by train.setups_by_model)."""
    from .train.setups import model_setups, replicates_for

    return [RunPath(m, sigma_label(s), u, k) for s in config["noise"]["sigmas"] for m in config["train"]["models"]
            for u in model_setups(config, m) for k in range(1, replicates_for(config, m, u, s) + 1)]


def _found(results: Path) -> list[RunPath]:
    """Every run with an evaluation summary under results/eval (when no config is given)."""
    runs = []
    for path in sorted((results / "eval").glob(f"*/sigma*/*/{rep_dir('*')}/summary.json")):
        try:
            runs.append(parse_run_path(path))
        except CxrError:
            continue  # not a run's folder (cxrdenoise.layout refuses it)
    return runs


def _shown(run: RunPath) -> tuple[str, str, str]:
    return run.model, run.sigma, f"{run.setup}/{rep_dir(run.rep)}"


def expected_runs(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(model, sigma label, "setup/rep{k}") of every run the config trains and evaluates (every replicate of
    train.replicates or train.replicates_by_model; the rep{k} level is part of every result path, docs/results-layout.md; a model's setups
    narrowed by train.setups_by_model)."""
    return [_shown(r) for r in _expected(config)]


def found_runs(results: Path) -> list[tuple[str, str, str]]:
    """(model, sigma, "setup/rep{k}") of every evaluation summary under results/eval (when no config is given)."""
    return [_shown(r) for r in _found(results)]


def _eval_summary(results: Path, run: RunPath) -> dict[str, Any] | None:
    return _read_json(Path(eval_file(*run, "summary.json", results=results)))


def not_denoising(results: Path, runs: list[RunPath]) -> list[str]:
    """One line per run whose mean test PSNR is not above the noisy input's at the same sigma."""
    flagged = []
    for run in runs:
        summary = _eval_summary(results, run)
        if summary is None:
            continue
        noisy = _psnr_mean(_read_json(Path(noisy_eval_file(run.sigma, "summary.json", results=results))))
        psnr = _psnr_mean(summary)
        if did_not_denoise(psnr, noisy):
            vs = f"{noisy:.2f} dB" if noisy is not None else "n/a"
            shown = f"{psnr:.2f} dB" if psnr is not None and math.isfinite(psnr) else str(psnr)
            model, sigma, setup = _shown(run)
            flagged.append(f"{model} sigma {sigma} {setup}: PSNR {shown}, noisy input {vs}")
    return flagged


def lpips_line(results: Path, runs: list[RunPath]) -> str:
    """'real' only when every evaluation used the AlexNet/ImageNet weights; else n/a with the reason."""
    statuses: dict[str, str] = {}
    for run in runs:
        summary = _eval_summary(results, run)
        if summary is not None:
            statuses[str(summary.get("lpips_status"))] = str(summary.get("lpips_message") or "")
    if not statuses:
        return "LPIPS: n/a (no evaluation summaries)"
    if set(statuses) == {"ok"}:
        return "LPIPS: real (AlexNet, ImageNet weights)"
    reasons = "; ".join(m or s for s, m in sorted(statuses.items()) if s != "ok")
    partly = " in some evaluations" if "ok" in statuses else ""
    return f"LPIPS: n/a{partly} ({reasons})"


def warnings(results: Path, runs: list[RunPath]) -> list[str]:
    """Things the user must know before reading the numbers: CPU timings, set-up notes, missing results."""
    out: list[str] = []
    cpu_runs, notes, missing = 0, {}, []
    for run in runs:
        record = _read_json(Path(train_file(*run, "record.json", results=results)))
        where = f"{run_key(run.model, run.sigma, run.setup)}/{rep_dir(run.rep)}"
        if record is None:
            missing.append(where)
            continue
        cpu_runs += record.get("device") == "cpu"
        if record.get("note"):
            notes.setdefault(str(record["note"]), []).append(where)
        if record.get("status") not in (None, "finished"):
            out.append(f"training {where} is {record.get('status')!r}, not finished")
    if cpu_runs:
        out.append(f"{cpu_runs} training run(s) on a CPU: their timings are not comparable with the study's GPU times")
    for note, where in notes.items():
        out.append(f"{note} ({len(where)} run(s), e.g. {where[0]})")
    if missing:
        out.append(f"{len(missing)} training record(s) missing, e.g. {missing[0]}")
    return out


def _listing(folder: Path, suffix: str) -> list[str]:
    return sorted(p.stem for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []


# Snakemake's options that say which workflow, where and with which config: the report command repeats them
# (value count: 1, or "+"/"*" for the options that take several, as Snakemake's own argparse does).
_LOCATION_OPTIONS = {"-s": 1, "--snakefile": 1, "-d": 1, "--directory": 1, "--configfile": "+",
                     "--configfiles": "+", "--config": "*", "-C": "*"}


def is_snakemake_argv(argv: Sequence[str] | None) -> bool:
    """Whether `argv` is a snakemake command line (`snakemake ...` or `python -m snakemake ...`)."""
    if not argv:
        return False
    first = Path(argv[0])
    return first.name.startswith("snakemake") or (first.name == "__main__.py" and first.parent.name == "snakemake")


def location_options(argv: Sequence[str], options: Mapping[str, Any] = _LOCATION_OPTIONS) -> list[str]:
    """-s/--snakefile, -d/--directory, --configfile(s) and --config of a snakemake command line, as given
    (`options`: which options to keep, with their value counts)."""
    out: list[str] = []
    args = list(argv[1:])
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            break
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in options:
            i += 1
            continue
        count = options[name]
        values = [inline] if eq else []
        i += 1
        if count == 1 and not eq and i < len(args):
            values, i = [args[i]], i + 1
        elif count != 1:
            while i < len(args) and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
        if values or count == "*":
            out += [name, *values]
    return out


# ... and, for a command that runs jobs the way the run did (the fix commands of cxrdenoise.shard_integrity), the
# profiles, which may set the executor, config files and directory too
_RUN_OPTIONS = {**_LOCATION_OPTIONS, "--profile": 1, "--workflow-profile": 1}


def run_options(argv: Sequence[str]) -> list[str]:
    """The options of a snakemake command line that say which workflow, directory, config and profile it ran with
    (-s, -d, --configfile, --config, --profile, --workflow-profile), as typed: repeated in a command printed for
    the user, they make it run the same workflow on the same results from where the run was started."""
    return location_options(argv, _RUN_OPTIONS)


def report_command(report: str = REPORT, configfiles: str = "", argv: Sequence[str] | None = None) -> str:
    """The `snakemake --report` command for this run: with the run's own -s, -d, --configfile and --config when
    `argv` (the snakemake process's sys.argv) is known, so it works as printed from where the run was started;
    else with `configfiles` (the --configfile arguments)."""
    if is_snakemake_argv(argv):
        return shlex.join(["snakemake", *location_options(argv), "--report", report])
    return f"snakemake --report {report}{' ' + configfiles if configfiles else ''}"


def report_line(root: Path, report: str = REPORT, configfiles: str = "", argv: Sequence[str] | None = None) -> str:
    """Where the report is, or the command that builds it when it is absent or older than the tables."""
    path = root / report
    outputs = [p for d in ("results/tables", "results/figures") for p in (root / d).glob("*") if p.is_file()]
    newest = max((p.stat().st_mtime for p in outputs), default=0.0)
    build = report_command(report, configfiles, argv)
    if path.is_file() and path.stat().st_mtime >= newest:
        return f"report: {report}"
    state = "older than the tables and figures" if path.is_file() else "not built yet"
    return f"report: {report} is {state}; build it with `{build}` (make demo does this)"


def run_summary(root: str | os.PathLike = ".", config: Mapping[str, Any] | None = None,
                config_hash: str | None = None, configfiles: str = "", argv: Sequence[str] | None = None) -> str:
    """The summary text. `root` holds `results/`; `config` (resolved) says which runs belong to this run;
    `argv`: the snakemake command line (the Snakefile's onsuccess passes sys.argv), repeated in the report
    command."""
    root = Path(root)
    results = root / "results"
    runs = _expected(config) if config is not None else _found(results)
    tables = _listing(results / "tables", ".csv")
    figures = _listing(results / "figures", ".png")
    lines = ["", "=" * 30 + " cxrdenoise: run summary " + "=" * 30]
    lines.append(f"tables:  {', '.join(tables) if tables else 'none'}"
                 + (" (results/tables/: .csv .md .tex .html)" if tables else ""))
    lines.append(f"figures: {', '.join(figures) if figures else 'none'}"
                 + (" (results/figures/: .png .pdf)" if figures else ""))
    lines.append(report_line(root, configfiles=configfiles, argv=argv))
    if (root / RESOLVED_CONFIG).is_file():
        lines.append(f"config:  {RESOLVED_CONFIG}" + (f" (hash {config_hash[:12]})" if config_hash else ""))
    lines.append(lpips_line(results, runs))
    flagged = not_denoising(results, runs)
    if flagged:
        lines.append(f"did not denoise ({len(flagged)} row(s), flagged in the tables, not averaged in):")
        lines.extend(f"  - {line}" for line in flagged)
    else:
        lines.append("did not denoise: none (every evaluated model beat the noisy input's mean PSNR)")
    warned = warnings(results, runs)
    lines.append("warnings:" + ("" if warned else " none"))
    lines.extend(f"  - {w}" for w in warned)
    lines.append("training curves: tensorboard --logdir results/train")
    return "\n".join(lines) + "\n"
