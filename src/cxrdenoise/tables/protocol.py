"""What a table's runs measured, set against the study's protocol, so every table says it and Δ is honest.

A difference "ours − paper" means something only when the run followed the study's protocol. Each run is
checked item by item (data source, image size, model width and block, epochs, batch per GPU, learning rate,
device); a run that differs in any item gets no Δ, and the table labels the study's columns with what differs.
This holds for real data as much as for the synthetic phantoms: NIH images at 64x64 with width-8 nets after
3 epochs are not the study's experiment either. An item a run does not record counts as a difference ("not
recorded"), because a Δ needs positive evidence that the protocols match.

The test set is stated, not checked: the study split 14,999 images by image (2,551 test images), this pipeline
splits its sample by patient (a default run: 2,550 test images of 15,000), so no run can have the study's test
images; the caption gives both and says that Δ compares means over different test images. NIH ChestX-ray14 read
from a local folder with NIH's metadata (data.source local, data.local.metadata_csv) is the study's data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from string import Formatter
from typing import Any, Iterable, Sequence

from ..models.cards import model_card, study_models
from ..render import Footnotes
from .cells import LOCAL_NIH_LABEL, current_data_facts
from .records import Run, read_per_image
from .runs import NOISY, model_name

# The study's protocol (shared/reference/paper-numbers.md): NIH ChestX-ray14 at 256x256, base width 64 with
# one BatchNorm per block, 50 epochs, batch 16 per GPU, Adam lr 1e-3, 2,551 test images, GPUs.
STUDY_PROTOCOL: dict[str, Any] = {"data_source": "nih", "image_size": 256, "base_channels": 64, "block": "study",
                                  "epochs": 50, "batch_per_gpu": 16, "lr": 1e-3, "test_images": 2551,
                                  "device": "cuda"}
# Items stated in the caption but not required for Δ: no patient-level split can give the study's image-level
# test set (a default run has 2,550 test images where the study had 2,551).
STATED_ONLY = ("test_images",)
SOURCE_NAMES = {"nih": "NIH ChestX-ray14", "local": "chest X-rays from a local folder",
                "synthetic": "synthetic phantoms", "local_nih": LOCAL_NIH_LABEL}
NOT_RECORDED = "not recorded"
NO_DIFF = "no Δ computed"


def _model_kwargs(run: Run) -> dict:
    rec, s = run.record or {}, run.summary or {}
    return dict(rec.get("model_kwargs") or s.get("model_kwargs") or {})


def _block(run: Run) -> str | None:
    rec = run.record or {}
    return rec.get("block") or _model_kwargs(run).get("block") or (run.summary or {}).get("block")


def _epochs(run: Run) -> int | None:
    rec = run.record or {}
    if rec.get("epochs_planned") is not None:
        return int(rec["epochs_planned"])
    return len(rec["epochs"]) if rec.get("epochs") else None


def _batch_per_gpu(run: Run) -> int | None:
    rec = run.record or {}
    return int(rec["batch_per_gpu"]) if rec.get("batch_per_gpu") is not None else None


def _lr(run: Run) -> float | None:
    rec = run.record or {}
    return float(rec["lr"]) if rec.get("lr") is not None else None


def _device(run: Run) -> str | None:
    rec, s = run.record or {}, run.summary or {}
    return rec.get("device") or (rec.get("provenance") or {}).get("device") or (s.get("inference") or {}).get(
        "device") or s.get("device")


def n_patients(run: Run) -> int | None:
    """Test patients of a run: the summary's count, else counted in its per_image.csv when that was given."""
    s = run.summary or {}
    if s.get("n_patients") is not None:
        return int(s["n_patients"])
    if run.per_image_path is not None:
        frame = read_per_image(run.per_image_path)
        if "patient_id" in frame.columns:
            return int(frame["patient_id"].nunique())
    return None


def _n_images(run: Run) -> int | None:
    """Test images of a run: the summary's count, else the rows of its per_image.csv when that was given."""
    s = run.summary or {}
    n = s.get("n_images", s.get("n"))
    if n is None and run.per_image_path is not None:
        return len(read_per_image(run.per_image_path))
    return None if n is None else int(n)


@dataclass
class Protocol:
    """The runs of one table and the table-wide facts (data source, image size) the runs do not carry."""

    runs: Sequence[Run]
    data_source: str | None = None
    image_size: int | None = None

    @property
    def source(self) -> str | None:
        """data.source, as "local_nih" for a local folder with NIH's metadata (current_data_facts)."""
        if self.data_source == "local" and current_data_facts().nih_metadata:
            return "local_nih"
        return self.data_source

    def facts(self, run: Run) -> dict[str, Any]:
        """The protocol items of one run, as measured or recorded (None where not recorded)."""
        trained = run.model != NOISY
        kw = _model_kwargs(run)
        return {
            "data_source": self.source, "image_size": self.image_size, "test_images": _n_images(run),
            "base_channels": kw.get("base_channels") if trained else STUDY_PROTOCOL["base_channels"],
            "block": _block(run) if trained else STUDY_PROTOCOL["block"],
            "epochs": _epochs(run) if trained else STUDY_PROTOCOL["epochs"],
            "batch_per_gpu": _batch_per_gpu(run) if trained else STUDY_PROTOCOL["batch_per_gpu"],
            "lr": _lr(run) if trained else STUDY_PROTOCOL["lr"],
            "device": _device(run) if trained else STUDY_PROTOCOL["device"],
        }

    def differences(self, run: Run) -> list[str]:
        """One phrase per protocol item in which this run differs from the study (empty: Δ may be computed).

        The no-denoising row trains nothing, so only data and image size apply to it. The test set is stated
        in the caption (`test_set_line`), not checked (STATED_ONLY).
        """
        facts, out = self.facts(run), []
        for key, want in STUDY_PROTOCOL.items():
            if key in STATED_ONLY:
                continue
            have = facts[key]
            if key == "device" and isinstance(have, str) and have.startswith("cuda"):
                have = "cuda"
            if key == "data_source" and have == "local_nih":
                have = "nih"  # NIH ChestX-ray14 with NIH's metadata, read from a local folder
            if have is None:
                out.append(f"{_ITEM_NAMES[key]} {NOT_RECORDED}")
            elif key == "lr" and math.isclose(float(have), float(want), rel_tol=1e-9):
                continue
            elif str(have) != str(want):
                out.append(_phrase(key, have, want))
        return out

    def comparable(self, run: Run) -> bool:
        return not self.differences(run)

    def all_differences(self) -> list[str]:
        """How the runs the study has numbers for (its two nets, no denoising) differ from its protocol."""
        return list(dict.fromkeys(d for r in self.runs if _in_study(r) for d in self.differences(r)))

    def measured_line(self) -> str:
        """What these runs measured, in one sentence: data, test images and patients, size, nets, training."""
        runs = list(self.runs)
        source = SOURCE_NAMES.get(self.source or "", self.source or "data source not stated")
        n_img = sorted({n for n in map(_n_images, runs) if n is not None})
        n_pat = sorted({n for n in map(n_patients, runs) if n is not None})
        size = f"{self.image_size}x{self.image_size}" if self.image_size else "image size not stated"
        nets = [_architecture(model, [r for r in runs if r.model == model])
                for model in dict.fromkeys(r.model for r in runs if r.model != NOISY)]
        trained = [r for r in runs if r.model != NOISY]
        tested = f", {_join(n_img)} test images from {_join(n_pat)} patients" if n_img else ""
        parts = [f"Measured: {source}{tested}, {size}"]
        if nets:
            parts.append("; ".join(nets))
        if trained:
            parts.append(f"{_join(map(_epochs, trained))} epochs, batch {_join(map(_batch_per_gpu, trained))} "
                         f"per GPU/process, learning rate {_join(_fmt_lr(_lr(r)) for r in trained)}, "
                         f"trained on {_join(map(_device, trained))}")
        return ", ".join(parts) + "."

    def test_set_line(self) -> str:
        """The test set against the study's: stated, never a reason to withhold Δ."""
        runs = [r for r in self.runs if _in_study(r)] or list(self.runs)
        n_img = sorted({n for n in map(_n_images, runs) if n is not None})
        n_pat = sorted({n for n in map(n_patients, runs) if n is not None})
        here = (f"{_join(f'{n:,}' for n in n_img)} images of {_join(f'{n:,}' for n in n_pat)} patients"
                if n_img else "not recorded")
        return (f"Test set: {here} here (a patient-level split), the study's {STUDY_PROTOCOL['test_images']:,} "
                "images (an image-level split of 14,999): stated, not a protocol item, so where Δ is computed it "
                "compares means over different test images of the same data.")

    def caption(self) -> list[str]:
        """The measured line, "protocol as the study's" when nothing differs (otherwise the footnote on the
        study's columns, `mark_for`, says what differs and that Δ is not computed), and the test set."""
        lines = [self.measured_line()]
        if not self.all_differences():
            lines.append("Protocol as the study's in every item checked (data, size, width, block, epochs, batch, "
                         "learning rate, device): Δ = ours − paper.")
        return lines + [self.test_set_line()]

    def paper_label(self) -> str:
        diffs = self.all_differences()
        return ("The study's values are shown for reference only: its protocol differs from these runs in "
                + "; ".join(diffs) + f", so {NO_DIFF} (Δ cells n/c, Δ columns empty in the CSV).")


_ITEM_NAMES = {"data_source": "data source", "image_size": "image size", "test_images": "test images",
               "base_channels": "base width", "block": "block", "epochs": "epochs",
               "batch_per_gpu": "batch per GPU", "lr": "learning rate", "device": "device"}


def _in_study(run: Run) -> bool:
    """A run the study reports numbers for: one of its nets (their cards say so) or no denoising."""
    return run.model == NOISY or run.model in study_models()


def _fmt_lr(lr: float | None) -> str | None:
    return None if lr is None else f"{lr:g}"


def _phrase(key: str, have: Any, want: Any) -> str:
    if key == "data_source":
        return f"data {SOURCE_NAMES.get(str(have), have)} (study: {SOURCE_NAMES[want]})"
    if key == "image_size":
        return f"{have}x{have} images (study: {want}x{want})"
    if key == "device":
        return f"trained on {have} (study: GPUs)"
    if key == "lr":
        return f"learning rate {float(have):g} (study: {float(want):g})"
    return f"{_ITEM_NAMES[key]} {have} (study: {want:,})" if isinstance(want, int) else \
        f"{_ITEM_NAMES[key]} {have} (study: {want})"


def _architecture(model: str, runs: Sequence[Run]) -> str:
    """The net in the measured line, e.g. "U-Net base width 64, block study": the model's label and its card's
    architecture words, each keyword's values over `runs` joined (the block as recorded, else "not recorded")."""
    card = model_card(model)

    def value(run: Run, key: str) -> Any:
        if key == "block":
            return _block(run) or NOT_RECORDED
        return _model_kwargs(run).get(key, card.unrecorded.get(key))

    keys = [key for _, key, _, _ in Formatter().parse(card.architecture) if key]
    return f"{model_name(model)} " + card.architecture.format(**{k: _join(value(r, k) for r in runs) for k in keys})


def _join(values: Iterable[Any]) -> str:
    seen = list(dict.fromkeys("?" if v is None else str(v) for v in values))
    return "/".join(seen) if seen else "?"


def paper_headers(display: list[dict[str, str]], mark: str) -> list[dict[str, str]]:
    """Rename the study's columns ("paper …") with `mark`, the footnote that says what differs."""
    if not mark:
        return display
    return [{(f"{k}{mark}" if k.startswith("paper ") else k): v for k, v in row.items()} for row in display]


def mark_for(protocol: Protocol, foot: Footnotes) -> str:
    """The footnote mark of the paper columns when any run differs from the study's protocol, else ""."""
    return foot.mark(protocol.paper_label()) if protocol.all_differences() else ""


def figure_label(runs: Sequence[Run], data_source: str | None, image_size: int | None) -> str:
    """The line printed under every figure: what was measured and, if anything, how it differs from the study.

    Items a figure's files cannot know (the test set, for a figure drawn from training records) are left out
    rather than reported as differences.
    """
    proto = Protocol(list(runs), data_source, image_size)
    diffs = [d for d in proto.all_differences() if d != f"test images {NOT_RECORDED}"]
    tail = (" Differs from the study's protocol: " + "; ".join(diffs) + "." if diffs
            else " Protocol as the study's in every item checked.")
    return proto.measured_line() + tail
