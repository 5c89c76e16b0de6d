"""TensorBoard contents of a training job, read back with TensorBoard's own EventAccumulator: validation PSNR
(whole split) and SSIM (fixed subset) per epoch, denoised val images at improved epochs, hyper-parameters."""

import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cxrdenoise.train.distributed import single_process
from cxrdenoise.train.engine import Trainer
from cxrdenoise.train.val_views import PsnrSum, ValViews, fixed_indices
from test_train_helpers import TinyPairs, settings, tiny_factory


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_val_psnr_ssim_images_and_hparams(tmp_path, monkeypatch):
    improved_epochs = []
    real_validate = Trainer.validate
    fake = iter([0.5, 0.3, 0.4])  # epoch 2 improves, epoch 3 does not

    def validate(self):
        _loss, n, seconds = real_validate(self)
        loss = next(fake)
        if self.progress.best is None or loss < self.progress.best["val_loss"]:
            improved_epochs.append(len(self.progress.epochs) + 1)
        return loss, n, seconds

    monkeypatch.setattr(Trainer, "validate", validate)
    val = TinyPairs(10, seed=1)
    trainer = Trainer(settings("gpu1", epochs=3), TinyPairs(16), val, tmp_path, single_process("cpu"),
                      model_factory=tiny_factory, config_hash="abc123")
    record = trainer.run()
    acc = events(tmp_path / "tensorboard")
    tags = acc.Tags()

    psnr = [e.value for e in acc.Scalars("val/psnr")]
    ssim = [e.value for e in acc.Scalars("val/ssim_subset")]
    assert len(psnr) == len(ssim) == 3
    steps = [e.step for e in acc.Scalars("val/psnr")]
    assert steps == [e.step for e in acc.Scalars("epoch/val_loss")]  # same x-axis as the losses
    assert all(5 < p < 100 for p in psnr) and all(-1 <= s <= 1 for s in ssim)
    for row, p, s in zip(record["epochs"], psnr, ssim):
        assert row["val_psnr"] == pytest.approx(p, rel=1e-6) and row["val_ssim_subset"] == pytest.approx(s, rel=1e-6)

    # the last epoch's PSNR is the mean over all 10 val images of the final weights' per-image PSNR
    with torch.no_grad():
        trainer.bare.eval()
        out = trainer.bare(val.noisy).clamp(0, 1)
    per_image = [10 * math.log10(1 / float(((out[i] - val.clean[i]) ** 2).mean())) for i in range(10)]
    assert psnr[-1] == pytest.approx(sum(per_image) / 10, rel=1e-5)

    image_tags = sorted(tags["images"])
    indices = fixed_indices(10)
    assert indices == [0, 1, 3, 4, 5, 6, 8, 9]
    assert image_tags == [f"val_images/{i:05d}_noisy_denoised_clean" for i in indices[:3]]
    shown = acc.Images(image_tags[0])
    assert [im.step for im in shown] == [steps[e - 1] for e in improved_epochs] == [steps[0], steps[1]]
    assert (shown[0].width, shown[0].height) == (3 * 32, 32)

    assert "hparams" in "".join(tags["tensors"])  # add_text -> the text plugin's tensor
    hp = [t for t in tags["tensors"] if t.startswith("hparams")]
    text = acc.Tensors(hp[0])[0].tensor_proto.string_val[0].decode()
    assert "| lr | 0.001 |" in text and f"val indices {indices}" in text and "whole val split (10 images)" in text
    plugin = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugin)
    assert b"val/psnr" in plugin["_hparams_/experiment"] and b"gpu1" in plugin["_hparams_/session_start_info"]


def test_val_psnr_is_the_whole_split_mean_of_per_image_psnr():
    out = torch.rand(6, 1, 8, 8)
    clean = torch.rand(6, 1, 8, 8)
    acc = PsnrSum(torch.device("cpu"))
    mask = torch.tensor([True, True, True, True, False, True])  # a DistributedSampler padding repeat masked out
    acc.add(out, clean, mask)
    expected = [10 * math.log10(1 / float(((out[i] - clean[i]) ** 2).mean())) for i in range(6) if mask[i]]
    assert float(acc.total) == pytest.approx(sum(expected), rel=1e-6)  # float32 MSE on the device
    exact = PsnrSum(torch.device("cpu"))
    exact.add(clean, clean, torch.ones(6, dtype=torch.bool))
    assert float(exact.total) == pytest.approx(6 * 100.0)  # an exact copy counts 100 dB, not inf
    assert np.all(np.diff(fixed_indices(1000)) > 0) and len(fixed_indices(1000)) == 8 and fixed_indices(0) == []


def test_views_take_rank0s_subset_from_the_validation_pass():
    """Under DDP rank 0 validates global indices 0, W, 2W, ...: the subset is drawn from those, and its outputs
    are the validation pass's own (no forward pass of the views' own)."""
    val = [(torch.full((1, 4, 4), float(i)), torch.full((1, 4, 4), float(i))) for i in range(11)]
    views = ValViews(val, world_size=2)
    assert views.positions == [0, 1, 2, 3, 4, 5] and views.indices == [0, 2, 4, 6, 8, 10]
    assert float(views.clean[3, 0, 0, 0]) == 6.0  # the host copy holds global index 6
    views.start()
    with pytest.raises(RuntimeError, match="no validation outputs"):
        views.outputs()
    batch1, batch2 = torch.rand(4, 1, 4, 4) * 2 - 0.5, torch.rand(2, 1, 4, 4)  # rank 0's positions 0-3 and 4-5
    views.catch(0, batch1)
    views.catch(4, batch2)
    assert np.array_equal(views.outputs(), torch.cat([batch1, batch2]).clamp(0, 1).numpy()[:, 0])
    views.start()
    views.catch(0, batch1)
    with pytest.raises(RuntimeError, match="caught 4 of the 6"):
        views.outputs()
