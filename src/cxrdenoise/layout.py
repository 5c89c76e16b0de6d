"""The results layout (docs/results-layout.md): every results path is built here, and a run's path is parsed back
into its parts here and nowhere else.

A trained run lives at `results/{train,eval}/{model}/sigma{σ}/{setup}/rep{k}/`; the noisy input's scores at
`results/eval/noisy/sigma{σ}/`; the classical baselines at `results/classical/{method}/sigma{σ}/[shard_{k}/]`; the
federated stage at `results/federated/{model}/sigma{σ}/{global,site{k}}/`; the data at `results/data/`. The σ
label is `cxrdenoise.naming.sigma_label` (`0.1`, never `0.10`).

Every builder returns a `str` (what Snakemake wants) and takes its parts either as values or as Snakemake
wildcard patterns: `train_file("{model}", "{sigma}", "{setup}", "{rep}", "best.pt")` is the train rule's output
pattern, `"{{sigma}}"` is kept for `expand()`. `results=` (or `data=` for the data folder) relocates the tree.
`parse_run_path` is the one parser: (model, σ label, setup, replicate) from any file or folder of a run.

Standard library only: the table, claims and figure jobs import it and must start without torch or pandas.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from .errors import CxrError
from .naming import sigma_label

__all__ = [
    "RESULTS", "DATA", "NOISY", "RunPath", "sigma_label", "sigma_dir", "rep_dir", "run_key", "run_stem",
    "data_file", "clean_dir", "clean_shard", "clean_manifest", "noisy_dir", "noisy_shard", "noisy_manifest",
    "train_dir", "train_file", "eval_dir", "eval_file", "noisy_eval_dir", "noisy_eval_file",
    "classical_dir", "classical_file", "privacy_dir", "privacy_file", "federated_dir", "federated_file",
    "federated_sites_file", "site_name", "table_file", "figure_file", "log_file", "benchmark_file",
    "parse_run_path",
]

RESULTS = "results"  # relative to Snakemake's working directory
DATA = f"{RESULTS}/data"
NOISY = "noisy"  # the "model" folder of the noisy input's scores (no denoising)


def _join(*parts: object) -> str:
    return os.path.join(*(str(p) for p in parts if str(p) != ""))


def _is_pattern(value: object) -> bool:
    """A Snakemake wildcard (`{sigma}`, `{{sigma}}` for expand): kept as it is."""
    return isinstance(value, str) and value.startswith("{") and value.endswith("}")


def sigma_dir(sigma: float | str) -> str:
    """`sigma0.1`: the noise level's folder (its label from cxrdenoise.naming.sigma_label)."""
    return "sigma" + (sigma if _is_pattern(sigma) else sigma_label(sigma))


def rep_dir(rep: int | str) -> str:
    """`rep1`: replicate k's folder."""
    return f"rep{rep}"


def run_key(model: str, sigma: float | str, setup: str) -> str:
    """`{model}/sigma{σ}/{setup}`: one trained (model, σ, setup), below results/train and results/eval."""
    return _join(model, sigma_dir(sigma), setup)


def run_stem(model: str, sigma: float | str, setup: str, rep: int | str) -> str:
    """`{model}_sigma{σ}_{setup}_rep{k}`: a run's log and benchmark file name."""
    return f"{model}_{sigma_dir(sigma)}_{setup}_{rep_dir(rep)}"


# ------------------------------------------------------------------------------------------------- data

def data_file(name: str, data: str | os.PathLike = DATA) -> str:
    """results/data/{name}: inventory.csv, sample.csv, split.csv, split_counts.json."""
    return _join(data, name)


def _shard_name(shard: int | str) -> str:
    """`shard_00003` (a shard number, or its label or wildcard as a string)."""
    return "shard_" + (shard if isinstance(shard, str) else f"{shard:05d}")


def _shard(shard: int | str, ext: str) -> str:
    return f"{_shard_name(shard)}.{ext}"


def clean_dir(data: str | os.PathLike = DATA) -> str:
    return _join(data, "clean")


def clean_shard(shard: int | str, ext: str = "npy", data: str | os.PathLike = DATA) -> str:
    return _join(clean_dir(data), _shard(shard, ext))


def clean_manifest(data: str | os.PathLike = DATA) -> str:
    return _join(clean_dir(data), "manifest.json")


def noisy_dir(sigma: float | str, data: str | os.PathLike = DATA) -> str:
    return _join(data, "noisy", sigma_dir(sigma))


def noisy_shard(sigma: float | str, shard: int | str, ext: str = "npy", data: str | os.PathLike = DATA) -> str:
    return _join(noisy_dir(sigma, data), _shard(shard, ext))


def noisy_manifest(sigma: float | str, data: str | os.PathLike = DATA) -> str:
    return _join(noisy_dir(sigma, data), "manifest.json")


# ------------------------------------------------------------------------------------ training, evaluation

def train_dir(model: str, sigma: float | str, setup: str, rep: int | str,
              results: str | os.PathLike = RESULTS) -> str:
    return _run_dir("train", model, sigma, setup, rep, results)


def train_file(model: str, sigma: float | str, setup: str, rep: int | str, name: str,
               results: str | os.PathLike = RESULTS) -> str:
    """best.pt, record.json, epochs.csv, ... of one trained run."""
    return _join(train_dir(model, sigma, setup, rep, results), name)


def eval_dir(model: str, sigma: float | str, setup: str, rep: int | str,
             results: str | os.PathLike = RESULTS) -> str:
    return _run_dir("eval", model, sigma, setup, rep, results)


def _run_dir(stage: str, model: str, sigma: float | str, setup: str, rep: int | str,
             results: str | os.PathLike) -> str:
    """results/{stage}/{model}/sigma{σ}/{setup}/rep{k}: a trained run's folder under one stage."""
    return _join(results, stage, run_key(model, sigma, setup), rep_dir(rep))


def eval_file(model: str, sigma: float | str, setup: str, rep: int | str, name: str,
              results: str | os.PathLike = RESULTS) -> str:
    """summary.json, per_image.csv, examples.npz of one trained run's evaluation."""
    return _join(eval_dir(model, sigma, setup, rep, results), name)


def noisy_eval_dir(sigma: float | str, results: str | os.PathLike = RESULTS) -> str:
    return _join(results, "eval", NOISY, sigma_dir(sigma))


def noisy_eval_file(sigma: float | str, name: str, results: str | os.PathLike = RESULTS) -> str:
    """The noisy input's own scores (no denoising) at one σ."""
    return _join(noisy_eval_dir(sigma, results), name)


# ------------------------------------------------------------------------------ classical, privacy, federated

def classical_dir(method: str, sigma: float | str, shard: int | str | None = None,
                  results: str | os.PathLike = RESULTS) -> str:
    """results/classical/{method}/sigma{σ}, or one shard's folder below it."""
    where = _join(results, "classical", method, sigma_dir(sigma))
    return where if shard is None else _join(where, _shard_name(shard))


def classical_file(method: str, sigma: float | str, name: str, shard: int | str | None = None,
                   results: str | os.PathLike = RESULTS) -> str:
    return _join(classical_dir(method, sigma, shard, results), name)


def privacy_dir(attacker: str, results: str | os.PathLike = RESULTS) -> str:
    return _join(results, "privacy", attacker)


def privacy_file(attacker: str, name: str, results: str | os.PathLike = RESULTS) -> str:
    return _join(privacy_dir(attacker, results), name)


def site_name(site: int | str) -> str:
    """`site{k}`: a federated site's folder (k 0-based)."""
    return f"site{site}"


def federated_dir(model: str, sigma: float | str, who: str | None = None,
                  results: str | os.PathLike = RESULTS) -> str:
    """results/federated/{model}/sigma{σ}, or its `global` or `site{k}` folder."""
    where = _join(results, "federated", model, sigma_dir(sigma))
    return where if who is None else _join(where, who)


def federated_file(model: str, sigma: float | str, who: str, *names: str,
                   results: str | os.PathLike = RESULTS) -> str:
    """A file of the federated run (`who`: "global" or site_name(k)); `names` may descend ("eval", "summary.json")."""
    return _join(federated_dir(model, sigma, who, results), *names)


def federated_sites_file(name: str, results: str | os.PathLike = RESULTS) -> str:
    """results/federated/sites/{sites.csv,site_counts.json}."""
    return _join(results, "federated", "sites", name)


# ------------------------------------------------------------------------------- report, logs, benchmarks

def table_file(name: str, ext: str, results: str | os.PathLike = RESULTS) -> str:
    return _join(results, "tables", f"{name}.{ext}")


def figure_file(name: str, ext: str, results: str | os.PathLike = RESULTS) -> str:
    return _join(results, "figures", f"{name}.{ext}")


def log_file(rule: str, stem: str, results: str | os.PathLike = RESULTS) -> str:
    """results/logs/{rule}/{stem}.log."""
    return _join(results, "logs", rule, f"{stem}.log")


def benchmark_file(rule: str, stem: str, results: str | os.PathLike = RESULTS) -> str:
    """results/benchmarks/{rule}/{stem}.tsv."""
    return _join(results, "benchmarks", rule, f"{stem}.tsv")


# ---------------------------------------------------------------------------------------------- parsing

class RunPath(NamedTuple):
    """What a run's path says: model (or classical method, or `noisy`), σ label, setup ("" for the noisy input
    and the classical baselines) and replicate (None where there is none)."""

    model: str
    sigma: str
    setup: str
    rep: int | None


_REP = re.compile(r"rep([1-9]\d*)")
_SHARD = re.compile(r"shard_\d+")
_EXPECTED = ("expected .../{model}/sigma{sigma}/{setup}/rep{k}/<file>, .../noisy/sigma{sigma}/<file> or "
             ".../{method}/sigma{sigma}/<file>")


def parse_run_path(path: str | os.PathLike) -> RunPath:
    """(model, σ label, setup, replicate) from a result file's path, e.g.
    `results/eval/unet/sigma0.1/gpu1/rep2/summary.json` -> ("unet", "0.1", "gpu1", 2); the noisy input's
    `results/eval/noisy/sigma0.2/summary.json` and a classical baseline's merged
    `results/classical/nlm/sigma0.2/summary.json` -> (name, "0.2", "", None). The last `sigma{σ}` folder is the
    run's, so any root above it (relocated, with spaces, itself named sigma...) is allowed.

    A trained run's file directly below its setup (the layout before train.replicates) reads as replicate 1; a
    folder there that is not `rep{k}`, a classical shard's folder, a missing or non-numeric σ level, or no model
    above it is refused, naming the path.
    """
    parts = Path(path).parts
    for i in range(len(parts) - 2, -1, -1):
        if not parts[i].startswith("sigma"):
            continue
        try:
            sigma = sigma_label(parts[i][len("sigma"):])
        except ValueError:
            raise CxrError(f"{path}: not a result path ({parts[i]!r} is not a noise level; {_EXPECTED})") from None
        if i == 0:
            break
        rest = parts[i + 1:-1]  # folders between the σ level and the file
        if not rest:
            return RunPath(parts[i - 1], sigma, "", None)
        if _SHARD.fullmatch(rest[0]):
            raise CxrError(f"{path}: a classical shard's file, not a run's ({_EXPECTED})")
        if len(rest) == 1:
            return RunPath(parts[i - 1], sigma, rest[0], 1)
        match = _REP.fullmatch(rest[1])
        if not match:
            raise CxrError(f"{path}: not a result path ({rest[1]!r} is not a replicate folder rep{{k}}; {_EXPECTED})")
        return RunPath(parts[i - 1], sigma, rest[0], int(match.group(1)))
    raise CxrError(f"{path}: not a result path ({_EXPECTED})")
