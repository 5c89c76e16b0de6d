"""The numbers one run contributes to a table: our metrics, LPIPS vetted, and the study's values beside them.

`lpips_state` is the single place that decides whether an LPIPS number may be shown, so no table can read a
random-backbone value by another path.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import CxrError
from ..metric_registry import METRICS, REAL_LPIPS
from ..reference import paper_row
from ..render import Footnotes, is_missing
from .records import Run

RANDOM_LPIPS_CELL = "n/a (random backbone, not LPIPS)"
RANDOM_LPIPS_NOTE = ("LPIPS was computed with a random AlexNet backbone (a test stand-in): those values are not "
                     "LPIPS and are not shown.")


def metric(run: Run, name: str) -> tuple[float, float]:
    """(mean, t-interval half-width) of one metric, from the summary's `metrics` (cxrdenoise.evaluate, written
    by stats.mean_ci); NaN where the summary has no finite value."""
    s = run.summary or {}
    entry = (s.get("metrics") or {}).get(name)
    if not isinstance(entry, dict):
        raise CxrError(f"{run.summary_path}: no metrics.{name} entry (expected {{mean, ci95_t_halfwidth, ...}})")
    mean, half = entry.get("mean"), entry.get("ci95_t_halfwidth")
    return (math.nan if mean is None else float(mean)), (math.nan if half is None else float(half))


def lpips_state(run: Run) -> tuple[bool, str, str | None, str]:
    """Whether LPIPS may be shown; if not, the cell text and the footnote that explains it; a status word.

    Only ``lpips_kind == "alexnet-imagenet"`` with status ``ok`` is LPIPS. This is the single place that decides,
    so no other code path can read a random-backbone number. The status word goes to the CSV, where "n/a" would
    be read back by pandas as a missing value.
    """
    s = run.summary or {}
    kind, status, message = s.get("lpips_kind"), str(s.get("lpips_status", "")), s.get("lpips_message") or ""
    if kind == REAL_LPIPS and status == "ok":
        if is_missing(metric(run, "lpips")[0]):
            return False, "n/a", f"LPIPS n/a: {run.summary_path} has no finite LPIPS value.", "no finite value"
        return True, "", None, "ok"
    if kind == "random-backbone" or "random" in status:
        return False, RANDOM_LPIPS_CELL, RANDOM_LPIPS_NOTE, "not LPIPS (random backbone)"
    if kind not in (None, "none", REAL_LPIPS):
        return (False, f"n/a ({kind}, not LPIPS)", f"LPIPS kind {kind!r} is not AlexNet/ImageNet LPIPS; not shown.",
                f"not LPIPS ({kind})")
    for prefix in ("LPIPS unavailable: ", "LPIPS n/a: "):
        message = message.removeprefix(prefix)
    return (False, "n/a", f"LPIPS n/a: {message or f'status {status!r} in {run.summary_path}'}",
            status if status in ("unavailable", "disabled") else "unavailable")


def quality(run: Run, foot: Footnotes) -> dict[str, Any]:
    """Our metrics for one run (numbers) plus their formatted cells, with LPIPS vetted by `lpips_state`."""
    out: dict[str, Any] = {"n": n_images(run)}
    for m, info in METRICS.items():
        if not info.lpips:
            out[m], out[f"{m}_ci95"] = metric(run, m)
    ok, cell, note, out["lpips_status"] = lpips_state(run)
    if ok:
        out["lpips"], out["lpips_ci95"] = metric(run, "lpips")
    else:
        out["lpips"] = out["lpips_ci95"] = math.nan
        out["lpips_cell"] = cell + (foot.mark(note) if note else "")
    out["_notes"] = [note] if note else []
    return out


def n_images(run: Run) -> int | None:
    s = run.summary or {}
    n = s.get("n_images")
    return None if n is None else int(n)


def with_paper(q: dict, run: Run, comparable: bool = True) -> dict[str, Any]:
    """Add the study's values for this run and the differences ours − paper (our SSIM (win 3) vs its SSIM).

    `comparable` is False when the run differs from the study's protocol (`protocol.Protocol.differences`):
    the study's values are still given, for reference, but no difference is computed (NaN, shown as "n/c").
    """
    paper = paper_row(run.sigma, run.model, run.setup) or {}
    out = dict(q)
    compared = {m: info.paper for m, info in METRICS.items() if info.paper}  # ours -> the study's column
    for p in compared.values():
        out[f"paper_{p}"] = paper.get(p, math.nan)
        out[f"paper_{p}_ci95"] = paper.get(f"{p}_ci95", math.nan)
    gap = 0.0 if comparable else math.nan
    for m, p in compared.items():
        out[f"diff_{m}"] = q[m] - out[f"paper_{p}"] + gap  # NaN for LPIPS when ours is not shown
    out["paper_train_s"] = paper.get("train_s", math.nan)
    out["paper_comparable"] = bool(comparable)
    return out


def diff_cell(q: dict, metric: str, dp: int) -> str:
    """Δ as printed: "n/c" where the study has a value but the protocols differ, blank where it has none.

    `metric` names the study's column ("ssim"); Δ is that of our metric compared with it ("ssim_w3")."""
    from ..render import fmt_diff

    diff_key = next(f"diff_{m}" for m, info in METRICS.items() if info.paper == metric)
    if not q.get("paper_comparable", True) and not is_missing(q.get(f"paper_{metric}")):
        return "n/c"
    return fmt_diff(q.get(diff_key), dp)
