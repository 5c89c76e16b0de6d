"""Patient-disjoint train/val/test split.

The study's published code split by image, so one patient's follow-ups landed in both train and test. Here
whole patients are assigned to one split, and the overlap is checked again after every split.
"""

from __future__ import annotations

import math
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from .errors import CxrError
from .seeding import rng_for

if TYPE_CHECKING:  # frames come from the caller; data.py imports SPLITS into every training job without pandas
    import pandas as pd

SPLITS = ("train", "val", "test")


def target_counts(n_images: int, train: float, val: float) -> dict[str, int]:
    """floor(f * N) for train and val, the rest for test (7,499 / 4,949 / 2,551 for the study's 14,999)."""
    n_train = math.floor(train * n_images)
    n_val = math.floor(val * n_images)
    return {"train": n_train, "val": n_val, "test": n_images - n_train - n_val}


def assign_patients(patient_sizes: pd.Series, targets: dict[str, int], seed: int) -> dict[int, str]:
    """Give each patient (id -> image count) one split, hitting `targets` exactly where the groups allow.

    Largest groups go first, each to the split furthest below its target relative to that target (so a small
    test split is not starved by a large train split); single-image patients come
    last and fill the remaining gaps one image at a time, so the counts are exact unless a few very large
    patients make that impossible (then they are the closest this greedy fill reaches).
    """
    rng = rng_for(seed, "split")
    ids = patient_sizes.index.to_numpy()
    order = rng.permutation(len(ids))  # random tie-break among equal sizes
    sizes = patient_sizes.to_numpy()[order]
    ids = ids[order]
    by_size = np.argsort(-sizes, kind="stable")
    filled = {name: 0 for name in targets}
    assignment: dict[int, str] = {}
    for idx in by_size:
        name = max(targets, key=lambda s: ((targets[s] - filled[s]) / max(targets[s], 1), -SPLITS.index(s)))
        assignment[int(ids[idx])] = name
        filled[name] += int(sizes[idx])
    return assignment


def split_sample(sample: pd.DataFrame, train: float, val: float, seed: int,
                 test_ids: set[str] | None = None) -> pd.DataFrame:
    """The sample with a `split` column, ordered train, val, test and by image id within each split.

    With `test_ids` (NIH's official test_list.txt), those images form the test split and the rest are split
    patient-disjointly into train and val in the ratio train:val.
    """
    sizes = sample.groupby("patient_id").size()
    if test_ids is None:
        targets = target_counts(len(sample), train, val)
        assignment = assign_patients(sizes, targets, seed)
        split = sample["patient_id"].map(assignment)
    else:
        is_test = sample["image_id"].isin(test_ids)
        rest = sample.loc[~is_test]
        n_rest = len(rest)
        n_train = round(n_rest * train / (train + val))
        assignment = assign_patients(rest.groupby("patient_id").size(),
                                     {"train": n_train, "val": n_rest - n_train}, seed)
        split = sample["patient_id"].map(assignment).where(~is_test, "test")
    out = sample.assign(split=split.to_numpy())
    out["split_order"] = out["split"].map({name: i for i, name in enumerate(SPLITS)})
    out = out.sort_values(["split_order", "image_id"], ignore_index=True).drop(columns="split_order")
    check_patient_disjoint(out)
    return out


def check_patient_disjoint(split: pd.DataFrame) -> None:
    """Fail naming a patient that appears in more than one split."""
    per_patient = split.groupby("patient_id")["split"].nunique()
    shared = per_patient[per_patient > 1]
    if not shared.empty:
        patient = int(shared.index[0])
        where = sorted(split.loc[split["patient_id"] == patient, "split"].unique())
        raise CxrError(f"patient {patient} appears in splits {where} ({len(shared)} patient(s) shared)")


def read_test_list(path: str | Path) -> set[str]:
    try:
        lines = Path(path).read_text().split()
    except OSError as err:
        raise CxrError(f"{path}: cannot read test list ({err.strerror})") from None
    return set(lines)


def split_summary(split: pd.DataFrame, targets: dict[str, int] | None) -> dict:
    counts = {name: int((split["split"] == name).sum()) for name in SPLITS}
    patients = {name: int(split.loc[split["split"] == name, "patient_id"].nunique()) for name in SPLITS}
    summary = {"counts": counts, "patients": patients}
    if targets is not None:
        summary["targets"] = targets
        summary["exact"] = counts == targets
    return summary
