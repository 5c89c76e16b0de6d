"""Result files grouped into `Run` objects, and what a run's record says about how it was made.

Every table and figure reads (model, sigma, setup, replicate) from each file's path (docs/results-layout.md:
`.../{model}/sigma{sigma}/{setup}/rep{k}/<file>`, parsed by `cxrdenoise.layout`), so a Snakemake rule can pass
exactly the files it depends on and nothing is discovered by globbing. `collect_runs` returns one `Run` per
(model, sigma, setup): with one replicate it is that run's files unchanged; with N >= 2 its `summary` holds the
mean over the replicates with the between-run SD and a t-interval over the runs (`cxrdenoise.tables.replicates`),
its `record` is replicate 1's (device, setup and notes are the same for all), and `replicates` lists each run's
own files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import CxrError
from ..layout import NOISY
from ..layout import parse_run_path as parse_layout_path
from ..naming import sigma_label
from ..models.cards import model_card
from .records import Run, read_json
from .replicates import combine, denoising_replicates

NOISY_NAME = "no denoising"  # NOISY (cxrdenoise.layout): the no-denoising rows' model name


def parse_run_path(path: str | Path) -> tuple[str, str, str]:
    """(model, sigma, setup) from `.../{model}/sigma{sigma}/{setup}/rep{k}/file` or `.../noisy/sigma{sigma}/file`."""
    return parse_replicate_path(path)[:3]


def parse_replicate_path(path: str | Path) -> tuple[str, str, str, int | None]:
    """(model, sigma, setup, replicate) from a result path; replicate None for the noisy input
    (`cxrdenoise.layout.parse_run_path`, the one parser of the results layout).

    A trained run's path without the `rep{k}` level (the layout before train.replicates) reads as replicate 1.
    """
    return parse_layout_path(path)


def collect_replicates(records: Iterable = (), summaries: Iterable = (), per_image: Iterable = (),
                       examples: Iterable = ()) -> dict[tuple[str, str, str, int | None], Run]:
    """One `Run` per (model, sigma, setup, replicate), in the order first seen; a file given twice is refused."""
    runs: dict[tuple[str, str, str, int | None], Run] = {}

    def run_for(path: Path, attr: str) -> Run:
        key = parse_replicate_path(path)
        run = runs.setdefault(key, Run(*key))
        if getattr(run, attr) is not None:
            raise CxrError(f"{path}: a second {attr.removesuffix('_path')} for {run.label} "
                           f"(already have {getattr(run, attr)})")
        return run

    for p in map(Path, records):
        run = run_for(p, "record_path")
        run.record, run.record_path = read_json(p), p
        _check_record(run)
    for p in map(Path, summaries):
        run = run_for(p, "summary_path")
        run.summary, run.summary_path = read_json(p), p
    for p in map(Path, per_image):
        run_for(p, "per_image_path").per_image_path = p
    for p in map(Path, examples):
        run_for(p, "examples_path").examples_path = p
    return runs


def collect_runs(records: Iterable = (), summaries: Iterable = (), per_image: Iterable = (),
                 examples: Iterable = (), noisy: dict[str, "Run"] | None = None) -> dict[tuple[str, str, str], Run]:
    """Group files by (model, sigma, setup), in the order first seen (Snakemake's expand keeps config order);
    the replicates of each are combined by `cxrdenoise.tables.replicates.combine`.

    With `noisy` (sigma -> the no-denoising run), a replicate whose own mean PSNR does not beat no denoising is
    left out of its row (listed in `Run.excluded`), so no mean or verdict rests on a net that did not denoise;
    when no replicate of a row denoised, all are kept and the row itself is flagged by the tables."""
    grouped: dict[tuple[str, str, str], list[Run]] = {}
    for (model, sigma, setup, _rep), run in collect_replicates(records, summaries, per_image, examples).items():
        grouped.setdefault((model, sigma, setup), []).append(run)
    out = {}
    for key, reps in grouped.items():
        reps = sorted(reps, key=lambda r: r.rep or 0)
        kept = denoising_replicates(reps, noisy) if noisy is not None and key[2] else reps
        out[key] = combine(kept or reps)
        if kept and len(kept) < len(reps):
            out[key].excluded = [r.rep or 1 for r in reps if r not in kept]
    return out


def _check_record(run: Run) -> None:
    """A record filed under another run's path would put its numbers in the wrong row: refuse it."""
    rec = run.record or {}
    for key, want in (("model", run.model), ("setup", run.setup)):
        if key in rec and str(rec[key]) != want:
            raise CxrError(f"{run.record_path}: record says {key}={rec[key]!r} but its path says {want!r}")
    if rec.get("replicate") is not None and run.rep is not None and int(rec["replicate"]) != run.rep:
        raise CxrError(f"{run.record_path}: record says replicate={rec['replicate']!r} but its path says rep{run.rep}")
    if rec.get("sigma") is not None and sigma_label(rec["sigma"]) != run.sigma:
        raise CxrError(f"{run.record_path}: record says sigma={rec['sigma']!r} but its path says {run.sigma!r}")


def sigma_order(runs: Iterable[Run]) -> list[str]:
    return sorted({r.sigma for r in runs}, key=float)


def model_order(runs: Iterable[Run]) -> list[str]:
    return list(dict.fromkeys(r.model for r in runs))


def model_name(model: str) -> str:
    """How tables and figures name a model: its card's label (cxrdenoise.models.cards), "no denoising" for the
    noisy input, the name itself for a model without a card."""
    return NOISY_NAME if model == NOISY else model_card(model).label


# ---------------------------------------------------------------------------------- devices and timings

def train_device_label(run: Run) -> str:
    """'cpu (<processor>)' or 'cuda: 2x <GPU name>': what this run actually trained on."""
    rec = run.record or {}
    prov = rec.get("provenance") or {}
    device = rec.get("device") or prov.get("device") or "unknown"
    name = rec.get("device_name") or prov.get("device_name") or "unknown"
    world = int(rec.get("world_size") or 1)
    if device == "cpu":
        label = f"cpu ({name})" + (f", {world} processes" if world > 1 else "")
    else:
        label = f"{device}: {int(rec['gpus_used'])}x {name}"
    nodes = int(rec.get("nodes") or 1)
    return label + (f", {nodes} nodes" if nodes > 1 else "")


def eval_device_label(run: Run) -> str:
    """Where the metrics were computed: the summary's `inference` block, else its top level or provenance."""
    s = run.summary or {}
    inf, prov = s.get("inference") or {}, s.get("provenance") or {}
    device = inf.get("device") or s.get("device") or prov.get("eval_device") or prov.get("device") or "unknown"
    name = inf.get("device_name") or s.get("device_name") or prov.get("eval_device_name")
    if device == "cpu" and (not name or name == "cpu"):
        name = prov.get("device_name") if prov.get("device") == "cpu" else None
    return f"cpu ({name or 'unknown'})" if device == "cpu" else f"{device}: {name or 'unknown'}"


def device_label(run: Run) -> str:
    """Training device when a record was passed, else where the metrics were computed."""
    return train_device_label(run) if run.record is not None else eval_device_label(run)


def is_cpu(run: Run) -> bool:
    rec = run.record or {}
    return (rec.get("device") or (rec.get("provenance") or {}).get("device")) == "cpu"


def train_times(run: Run) -> tuple[float, float]:
    """(training seconds, training + validation seconds), from the record's totals (0 without a record); for a
    group of replicates the mean over them.

    Checkpoint writing (`totals.checkpoint_s`) is in neither.
    """
    if len(run.replicates) > 1:
        each = [train_times(r) for r in run.replicates]
        return sum(t for t, _ in each) / len(each), sum(tv for _, tv in each) / len(each)
    tot = (run.record or {}).get("totals") or {}
    train, val = float(tot.get("train_s", 0.0)), float(tot.get("val_s", 0.0))
    return train, train + val
