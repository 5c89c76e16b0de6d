"""The image-quality metrics, each described once: its column, label, unit, printed precision, direction, the
study's column it is compared with, and whether it is LPIPS (shown only when real).

Why one place: the evaluation writes these columns and five table builders read them; when each kept its own list
(which metrics, how many decimals, which way is better) they could drift apart. Standard library only, so the
table jobs, which must not import torch, can import it (`cxrdenoise.metrics` computes the values and does).
Adding a metric: one entry here, its computation in `cxrdenoise.metrics`, and a test.
"""

from __future__ import annotations

from dataclasses import dataclass

REAL_LPIPS = "alexnet-imagenet"  # the only ``lpips_kind`` a table shows as LPIPS (cxrdenoise.lpips_weights)


@dataclass(frozen=True)
class Metric:
    """What the tables need to know about one per-image metric column."""

    column: str  # the per_image.csv column and the summary.json ``metrics`` key
    label: str  # how tables name it ("SSIM (win 3)")
    unit: str = ""  # appended to differences and headings ("dB"); "" for unitless
    decimals: int = 4  # decimal places of a table cell
    brief_decimals: int = 4  # decimal places of a compact "mean [lo, hi]" cell (the federated table)
    higher_is_better: bool = True
    lpips: bool = False  # a value is shown only when tables.scores.lpips_state says it is real LPIPS
    paper: str | None = None  # the study's column it is compared with like for like; None: the study has none

    @property
    def unit_suffix(self) -> str:
        """" dB" after a number, "" for a unitless metric."""
        return f" {self.unit}" if self.unit else ""

    @property
    def heading(self) -> str:
        """A column heading with the unit: "PSNR (dB)", "SSIM"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is: multiplies a difference so that positive means better."""
        return 1.0 if self.higher_is_better else -1.0


METRICS: dict[str, Metric] = {m.column: m for m in (
    Metric("psnr", "PSNR", unit="dB", decimals=3, brief_decimals=2, paper="psnr"),
    Metric("ssim", "SSIM"),  # scikit-image's standard 7x7 window; the study has no such column
    Metric("ssim_w3", "SSIM (win 3)", paper="ssim"),  # the 3x3 window the study's code used
    Metric("lpips", "LPIPS", higher_is_better=False, lpips=True, paper="lpips"),
)}

METRIC_COLUMNS = tuple(METRICS)  # every per-image metric column, in the evaluation's order
STUDY_METRICS = tuple(name for name, m in METRICS.items() if m.paper)  # those the study reports: its claims' metrics


def metric_info(name: str) -> Metric:
    """The registered metric `name`; KeyError names the valid ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None
