"""What every builder does around its own columns: check a run has the files the table needs, build the timed
row that Tables IV and V share, and turn the rows into a `Table`.
"""

from __future__ import annotations

import math

import pandas as pd

from ..errors import CxrError
from ..layout import eval_file, train_file
from ..render import Footnotes, Table
from .cells import run_notes
from .records import Run
from .runs import device_label, eval_device_label, is_cpu, train_times
from .scores import quality, with_paper


def require(run: Run, what: str, table: str) -> None:
    """Fail with the path the missing file was expected at, rather than leave a row half empty."""
    rep = run.rep if run.rep is not None else "{k}"
    if what == "record" and run.record is None:
        raise CxrError(f"{table}: no training record for {run.label} "
                       f"(expected {train_file(run.model, run.sigma, run.setup, rep, 'record.json')})")
    if what == "summary" and run.summary is None:
        raise CxrError(f"{table}: no evaluation summary for {run.label} "
                       f"(expected {eval_file(run.model, run.sigma, run.setup, rep, 'summary.json')})")


def timed_row(run: Run, foot: Footnotes, table: str, comparable: bool = True) -> tuple[dict, dict, list[str]]:
    """Numbers for one timed run (metrics, paper, differences, times) and the footnote texts it needs.

    `comparable`: whether the run followed the study's protocol (tables.protocol); if not, no Δ at all.
    """
    require(run, "record", table)
    require(run, "summary", table)
    q = with_paper(quality(run, foot), run, comparable)
    notes = q.pop("_notes") + run_notes(run, timings=True)
    train_s, train_val_s = train_times(run)
    q.update(train_s=train_s, train_val_s=train_val_s, epochs_run=len((run.record or {}).get("epochs") or []),
             diff_train_val_s=math.nan if is_cpu(run) or not comparable else train_val_s - q["paper_train_s"])
    return q, {"device": device_label(run), "eval_device": eval_device_label(run)}, notes


def csv_numbers(q: dict) -> dict:
    """A timed row's CSV columns: its numbers, without the count (its own column) or the formatted LPIPS cell."""
    return {k: v for k, v in q.items() if k not in ("n", "lpips_cell")}


def finish_table(name: str, title: str, rows: list[dict], blocks: list[tuple[str, list[dict]]], caption: list[str],
                 foot: Footnotes) -> Table:
    data = pd.DataFrame(rows)
    if "notes" in data.columns:  # rows add columns in different orders; the free text goes last
        data = data[[c for c in data.columns if c != "notes"] + ["notes"]]
    for col in data.columns:  # "" means "no value": store it as missing, which is what read_csv gives back
        if not pd.api.types.is_numeric_dtype(data[col]):
            data[col] = data[col].replace("", None)
    display = [(heading, pd.DataFrame(block)) for heading, block in blocks]
    return Table(name=name, title=title, data=data, display=display, caption=caption, footnotes=foot.items())
