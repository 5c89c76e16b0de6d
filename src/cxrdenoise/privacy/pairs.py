"""Who is compared with whom: verification pairs and retrieval galleries over the evaluation patients.

The evaluation images are one split (the test split); the gallery is all of them, clean. A query is an image
of a patient with at least two images, in whatever form is being attacked (clean, obfuscated, denoised); it is
compared with clean gallery images, never with the clean copy of itself, so a match must come from another
follow-up of the same patient. Attacker training patients must not appear here (checked).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import CxrError
from ..seeding import rng_for


@dataclass(frozen=True)
class Pairing:
    """Evaluation images (gallery order), which of them are queries, and the verification pairs.

    `pair_query` / `pair_gallery` index `query_index` and the gallery; `pair_label` is 1 for same patient.
    """

    image_ids: tuple[str, ...]
    patient_ids: np.ndarray           # per gallery image
    query_index: np.ndarray           # gallery positions of the query images
    pair_query: np.ndarray
    pair_gallery: np.ndarray
    pair_label: np.ndarray

    @property
    def query_patients(self) -> np.ndarray:
        return self.patient_ids[self.query_index]

    def same_patient(self) -> np.ndarray:
        """(n_query, n_gallery) True where the gallery image shows the query's patient."""
        return self.query_patients[:, None] == self.patient_ids[None, :]

    def valid(self) -> np.ndarray:
        """(n_query, n_gallery) False only at the query's own image, which is never compared with itself."""
        mask = np.ones((len(self.query_index), len(self.image_ids)), dtype=bool)
        mask[np.arange(len(self.query_index)), self.query_index] = False
        return mask

    def counts(self) -> dict[str, int]:
        return {"n_gallery_images": len(self.image_ids), "n_gallery_patients": int(len(set(self.patient_ids))),
                "n_queries": int(len(self.query_index)), "n_query_patients": int(len(set(self.query_patients))),
                "n_pairs_same": int(self.pair_label.sum()), "n_pairs_different": int((1 - self.pair_label).sum())}


def check_disjoint(attacker_patients: Iterable[int], eval_patients: Iterable[int]) -> None:
    """Fail naming a patient the attacker was trained on that is also an evaluation patient."""
    shared = sorted(set(int(p) for p in attacker_patients) & set(int(p) for p in eval_patients))
    if shared:
        raise CxrError(f"privacy: attacker training and evaluation share {len(shared)} patient(s), e.g. {shared[0]}; "
                       "train the attacker on the train split only")


def make_pairing(image_ids: Sequence[str], patient_ids: Sequence[int], *, seed: int, negatives_per_query: int,
                 attacker_patients: Iterable[int] = ()) -> Pairing:
    """Queries = images of patients with >= 2 images; per query all same-patient pairs (other images of that
    patient) and `negatives_per_query` different-patient gallery images, drawn from (seed, query image id)."""
    if len(image_ids) != len(patient_ids):
        raise CxrError(f"privacy: {len(image_ids)} image ids but {len(patient_ids)} patient ids")
    if len(set(image_ids)) != len(image_ids):
        raise CxrError("privacy: duplicate image ids in the evaluation images")
    patients = np.asarray([int(p) for p in patient_ids], dtype=np.int64)
    check_disjoint(attacker_patients, patients)
    sizes = Counter(patients.tolist())
    query_index = np.asarray([i for i, p in enumerate(patients) if sizes[p] >= 2], dtype=np.int64)
    if query_index.size == 0:
        raise CxrError(f"privacy: none of the {len(patients)} evaluation images has a patient with another image; "
                       "raise sample.n_images (or data.synthetic.max_follow_ups) so the test split has follow-ups")
    if len(sizes) < 2:
        raise CxrError("privacy: the evaluation images show one patient only; different-patient pairs are impossible")
    pq, pg, pl = [], [], []
    everyone = np.arange(len(patients))
    for q, gi in enumerate(query_index):
        own = patients[gi]
        same = everyone[(patients == own) & (everyone != gi)]
        other = everyone[patients != own]
        k = min(int(negatives_per_query), other.size)
        negatives = np.sort(rng_for(seed, "privacy-pairs", image_ids[gi]).choice(other, size=k, replace=False))
        for g, label in [*((g, 1) for g in same), *((g, 0) for g in negatives)]:
            pq.append(q)
            pg.append(g)
            pl.append(label)
    return Pairing(tuple(str(i) for i in image_ids), patients, query_index, np.asarray(pq, np.int64),
                   np.asarray(pg, np.int64), np.asarray(pl, np.int64))
