"""The study's Tables III-VI, rebuilt from this pipeline's result files with the published numbers beside ours.

Every builder takes explicit lists of files (so a Snakemake rule can depend on exactly the runs a table shows)
and reads (model, sigma, setup) from each path, as laid out in docs/results-layout.md. Three rules keep the
tables honest:

* a cell is measured here or quoted with its source: never a placeholder, and blank only where a value does
  not exist (the study has no DDP-without-AMP row);
* LPIPS is shown only when a summary says ``lpips_kind == "alexnet-imagenet"``; a random backbone (a test
  stand-in) or missing weights become "n/a" with a footnote, and no LPIPS number of theirs is ever read;
* every row carries the device it ran on, and timings from a CPU are flagged as not comparable with the
  study's GPU seconds (their difference is not computed).

The study's SSIM is compared against our ``ssim_w3`` (its code used a 3x3 window); ``ssim`` is the standard one.

Modules: `records` holds `Run` and the readers of a run's files, `runs` groups result files into `Run` objects
(with device labels and timings), `replicates` combines a configuration's replicate runs (mean, between-run SD,
t-interval over runs; per-image means for patient-level statistics), `work` the equal-work accounting (steps,
images seen, time-to-quality) and the "did not denoise" flag, `scores` gives a run's numbers and the study's,
`cells` the texts the tables share, `rows` what every builder does around its own columns, `protocol` what the
runs measured against the study's protocol (no Δ where it differs), `patients` the patient-level intervals and
paired tests, `table3` ... `table6` one table each, `comparisons` every paired difference between models and
set-ups, and `claims` the verdicts. What a metric is called, how it is printed and which way is better comes from
`cxrdenoise.metric_registry`; how a model is named and coloured, from its card (`cxrdenoise.models.cards`).
"""

from ..render import Table
from .cells import (CPU_TIMING, DATA_LABELS, DIFF_NOTE, DP_ONE_GPU, DP_ONE_PROCESS, PAPER_NOTE, SETUP_LEGEND,
                    SSIM_NOTE, data_caption, lpips_cell, run_notes)
from .records import Run, read_json, read_per_image
from .replicates import per_image_frame, per_image_means, replicate_caption, spread, t_interval
from .runs import (NOISY, NOISY_NAME, collect_replicates, collect_runs, device_label, eval_device_label, is_cpu,
                   model_name, model_order, parse_replicate_path, parse_run_path, sigma_order, train_device_label,
                   train_times)
from .scores import (RANDOM_LPIPS_CELL, RANDOM_LPIPS_NOTE, REAL_LPIPS, lpips_state, metric, n_images, quality,
                     with_paper)
from .table3 import build_table3, make_table3
from .table4 import build_table4, make_table4
from .table5 import build_table5, make_table5, time_saving
from .table6 import QUOTED_DEVICE, build_table6, make_table6
from .work import (NOT_REACHED, not_denoised, replicates_not_denoised, steps_and_images, time_to_quality)
from .claims import build_claims, make_claims
from .comparisons import build_comparisons, make_comparisons
from .protocol import STUDY_PROTOCOL, Protocol, figure_label

__all__ = [
    "Table", "Run", "collect_runs", "parse_run_path", "read_json", "read_per_image", "sigma_order", "model_order",
    "model_name", "device_label", "train_device_label", "eval_device_label", "is_cpu", "train_times",
    "metric", "lpips_state", "quality", "n_images", "with_paper", "lpips_cell", "run_notes", "data_caption",
    "time_saving", "build_table3", "build_table4", "build_table5", "build_table6",
    "make_table3", "make_table4", "make_table5", "make_table6", "build_claims", "make_claims",
    "build_comparisons", "make_comparisons",
    "Protocol", "STUDY_PROTOCOL", "figure_label",
    "NOISY", "NOISY_NAME", "REAL_LPIPS", "RANDOM_LPIPS_CELL", "RANDOM_LPIPS_NOTE",
    "CPU_TIMING", "DP_ONE_PROCESS", "DP_ONE_GPU", "SETUP_LEGEND", "SSIM_NOTE", "DIFF_NOTE", "PAPER_NOTE",
    "QUOTED_DEVICE", "DATA_LABELS",
    "collect_replicates", "parse_replicate_path", "per_image_frame", "per_image_means", "replicate_caption", "spread",
    "t_interval", "NOT_REACHED", "not_denoised", "replicates_not_denoised", "steps_and_images", "time_to_quality",
]
