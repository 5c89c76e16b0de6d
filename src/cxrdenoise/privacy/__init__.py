"""Patient re-identification: how much privacy the noise "obfuscation" of the study actually buys.

Chest X-rays are biometric (Packhäuser et al., Sci. Rep. 2022, re-identified NIH ChestX-ray14 patients across
follow-ups at verification AUC 0.994). This package measures, for patients of the test split with at least two
images, whether an attacker holding clean follow-ups can tell that a query image shows the same patient, when
the query is the clean image, the obfuscated (noisy) one, or a trained denoiser's output of the obfuscated one.

Modules, one job each: `pairs` (who is compared with whom), `metrics` (ROC AUC, patient-balanced weights,
top-k, two-way patient bootstrap), `images` (test/train images as the attackers see them), `ncc` (training-free
attacker), `trivial` (the baseline every attacker must match), `learned` (a small
siamese embedding network, trained with the project's seed/record/resume conventions), `stage` (the privacy
stage that scores every query kind), `claim` (the verdict on the study's privacy claim), `figure`.
"""

from .claim import privacy_claim
from .metrics import balanced_weights, patient_bootstrap, roc_auc, top_k_hits, two_way_bootstrap
from .pairs import Pairing, make_pairing

__all__ = ["privacy_claim", "balanced_weights", "patient_bootstrap", "two_way_bootstrap", "roc_auc", "top_k_hits",
           "Pairing", "make_pairing"]
