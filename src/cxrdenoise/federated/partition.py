"""Patient-disjoint hospital sites built from the train split.

The preprint split NIH ChestX-ray14 into five pseudo-sites (20k/25k/15k/30k/22k images). Here whole patients
are walked in one order and cut where the running image count crosses each site's cumulative share, so every
site gets whole patients and the sizes follow the proportions to within one patient's image count.
`random` orders patients by a stream derived from the config seed (IID sites); `column` orders them by a
metadata column (age band, sex, view position...) so sites differ in that column (non-IID), with the same
seeded tie-break inside a value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import CxrError
from ..seeding import rng_for

MODES = ("random", "column")


def site_fractions(sites: Sequence[float]) -> np.ndarray:
    """Normalised shares from sizes or fractions (20:25:15:30:22 and 0.2/0.25/... mean the same)."""
    arr = np.asarray(list(sites), dtype=float)
    if arr.size < 1 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise CxrError(f"federated.sites: {list(sites)} must be positive sizes or fractions, one per site")
    return arr / arr.sum()


def patient_order(frame: pd.DataFrame, mode: str, seed: int, column: str | None = None) -> np.ndarray:
    """Patient ids in the order the sites are filled."""
    if mode not in MODES:
        raise CxrError(f"federated.partition.mode: '{mode}' is not one of {', '.join(MODES)}")
    patients = np.sort(frame["patient_id"].unique())
    tie = rng_for(seed, "federated", "partition").permutation(len(patients))
    if mode == "random":
        return patients[tie]
    if not column or column not in frame.columns:
        raise CxrError(f"federated.partition.column: '{column}' is not a column of the train metadata "
                       f"(have: {', '.join(map(str, frame.columns))})")
    # A patient's value is the one most of their images carry (smallest on ties), so a patient stays whole.
    value = frame.groupby("patient_id")[column].agg(lambda s: s.astype(str).value_counts().sort_index()
                                                    .idxmax())
    keyed = pd.DataFrame({"patient_id": patients, "value": value.reindex(patients).to_numpy(), "tie": tie})
    return keyed.sort_values(["value", "tie"], kind="stable")["patient_id"].to_numpy()


def partition_patients(frame: pd.DataFrame, sites: Sequence[float], mode: str = "random", seed: int = 0,
                       column: str | None = None) -> pd.Series:
    """Site number (0-based) per row of `frame` (train images with `patient_id`); every site non-empty."""
    shares = site_fractions(sites)
    n_patients = frame["patient_id"].nunique()
    if n_patients < len(shares):
        raise CxrError(f"federated.sites: {len(shares)} sites need at least {len(shares)} train patients, "
                       f"the train split has {n_patients}")
    order = patient_order(frame, mode, seed, column)
    sizes = frame.groupby("patient_id").size().reindex(order).to_numpy()
    bounds = np.cumsum(shares) * sizes.sum()
    site_of: dict[object, int] = {}
    done, site, site_start = 0, 0, 0
    for k, (pid, size) in enumerate(zip(order, sizes)):
        left_patients = len(order) - k
        left_sites = len(shares) - site - 1
        # Move on when this site reached its share (by the patient's midpoint), but never leave a later site
        # without a patient, and never leave this site empty.
        filled = done > site_start
        if site < len(shares) - 1 and filled and (done + size / 2 > bounds[site] or left_patients <= left_sites):
            site, site_start = site + 1, done
        site_of[pid] = site
        done += int(size)
    return frame["patient_id"].map(site_of).astype(int).rename("site")


def check_sites(frame: pd.DataFrame, site: pd.Series) -> None:
    """Fail naming a patient that sits in two sites."""
    per_patient = pd.DataFrame({"p": frame["patient_id"].to_numpy(), "s": site.to_numpy()}).groupby("p")["s"]
    shared = per_patient.nunique()
    if (shared > 1).any():
        raise CxrError(f"federated partition: patient {shared[shared > 1].index[0]} is in more than one site")
