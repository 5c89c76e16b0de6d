"""The `cxrdenoise denoise` command on real NIH radiographs (read from ../shared, never copied into the repo)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrdenoise.cli import main
from cxrdenoise.denoise import load_denoiser, pad_to_multiple
from cxrdenoise.models import build_model


def save_checkpoint(path: Path, name: str = "dncnn", identity: bool = False, **kwargs) -> Path:
    """A best.pt in the training stage's format; `identity` zeroes DnCNN's last layer so output == input."""
    kwargs = kwargs or {"depth": 3, "channels": 4}
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    if identity:
        torch.nn.init.zeros_(model.layers[-1].weight)
        torch.nn.init.zeros_(model.layers[-1].bias)
    torch.save({"model": name, "model_kwargs": model.model_kwargs, "state_dict": model.state_dict(), "epoch": 1,
                "val_loss": 0.1, "sigma": 0.1, "noise_mean": 0.1, "config_hash": "abc"}, path)
    return path


@pytest.fixture
def inputs(tmp_path, nih_sample_dir) -> Path:
    """Four real radiographs in a scratch folder: two as they are, one cropped to 250x243, one as RGBA."""
    pngs = sorted(nih_sample_dir.glob("*.png"))[:4]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(pngs[0], folder / pngs[0].name)
    shutil.copy(pngs[1], folder / pngs[1].name)
    with Image.open(pngs[2]) as im:
        im.crop((0, 0, 243, 250)).save(folder / "odd_250x243.png")  # (left, top, right, bottom): W 243, H 250
    with Image.open(pngs[3]) as im:
        im.convert("RGBA").save(folder / "colour.png")
    return folder


def test_denoise_real_images_any_size(tmp_path, inputs, capsys):
    ckpt = save_checkpoint(tmp_path / "best.pt", "unet", base_channels=2)  # U-Net: needs the padding
    out = tmp_path / "out"
    rc = main(["denoise", "--checkpoint", str(ckpt), "--input", str(inputs), "--output", str(out),
               "--batch-size", "1", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in inputs.iterdir())
    for src in inputs.iterdir():
        with Image.open(src) as a, Image.open(out / src.name) as b:
            assert b.size == a.size and b.mode == "L"
    with Image.open(out / "odd_250x243.png") as b:
        assert (b.height, b.width) == (250, 243)
    assert "denoised 4 image(s)" in capsys.readouterr().out


def test_identity_model_reproduces_inputs(tmp_path, inputs):
    ckpt = save_checkpoint(tmp_path / "best.pt", identity=True)
    out = tmp_path / "out"
    assert main(["denoise", "--checkpoint", str(ckpt), "--input", str(inputs), "--output", str(out),
                 "--batch-size", "2", "--no-progress"]) == 0
    for src in inputs.iterdir():
        with Image.open(src) as a, Image.open(out / src.name) as b:
            assert np.array_equal(np.asarray(a.convert("L")), np.asarray(b))  # RGBA -> grey, 8-bit round trip


def test_non_image_file_is_named(tmp_path, inputs, capsys):
    (inputs / "notes.txt").write_text("not an image")
    ckpt = save_checkpoint(tmp_path / "best.pt")
    out = tmp_path / "out"
    rc = main(["denoise", "--checkpoint", str(ckpt), "--input", str(inputs), "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "notes.txt" in err and "not a readable image" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()  # checked before anything is written


def test_unreadable_checkpoint_and_same_folder(tmp_path, inputs, capsys):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["denoise", "--checkpoint", str(bad), "--input", str(inputs), "--output", str(tmp_path / "o")]) == 1
    assert "best.pt: cannot read checkpoint" in capsys.readouterr().err
    good = save_checkpoint(tmp_path / "good.pt")
    assert main(["denoise", "--checkpoint", str(good), "--input", str(inputs), "--output", str(inputs)]) == 1
    assert "output folder is the input folder" in capsys.readouterr().err
    assert main(["denoise", "--checkpoint", str(tmp_path / "missing.pt"), "--input", str(inputs),
                 "--output", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_name_clash_and_16_bit(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    ramp = (np.arange(64 * 40, dtype=np.uint16).reshape(40, 64) * 25).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "deep.png")
    ckpt = save_checkpoint(tmp_path / "best.pt", identity=True)
    assert main(["denoise", "--checkpoint", str(ckpt), "--input", str(folder), "--output", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    with Image.open(tmp_path / "o" / "deep.png") as b:
        got = np.asarray(b)
    assert np.array_equal(got, np.round(ramp / 65535 * 255).astype(np.uint8))
    Image.fromarray(ramp.astype(np.uint8)).save(folder / "deep.jpg")
    assert main(["denoise", "--checkpoint", str(ckpt), "--input", str(folder), "--output", str(tmp_path / "o")]) == 1
    assert "would both be written" in capsys.readouterr().err


def test_reflect_padding():
    x = torch.arange(5.0).reshape(1, 1, 1, 5).expand(1, 1, 3, 5)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 8)
    assert np.array_equal(padded[0, 0].numpy(), np.pad(x[0, 0].numpy(), ((0, 1), (0, 3)), mode="reflect"))
    tiny = torch.rand(1, 1, 2, 3)  # padding longer than the image: np.pad's repeated reflection
    expected = np.pad(tiny[0, 0].numpy(), ((0, 14), (0, 13)), mode="reflect")
    assert np.allclose(pad_to_multiple(tiny, 16)[0, 0].numpy(), expected)
    assert pad_to_multiple(torch.rand(1, 1, 32, 16), 16).shape == (1, 1, 32, 16)


def test_load_denoiser_multiple(tmp_path):
    d = load_denoiser(save_checkpoint(tmp_path / "u.pt", "unet", base_channels=2), "cpu")
    assert d.multiple == 16 and not d.model.training and d.meta["sigma"] == 0.1 and "state_dict" not in d.meta
    assert d.meta["model_kwargs"]["block"] == "study"


@pytest.mark.parametrize("name", ["unet", "unetpp"])
def test_checkpoint_from_before_the_block_option_loads_as_double_bn(tmp_path, name):
    """best.pt files written before `block` existed hold two-BatchNorm nets and no `block` key."""
    path = save_checkpoint(tmp_path / "old.pt", name, base_channels=2, block="double_bn")
    ckpt = torch.load(path)
    del ckpt["model_kwargs"]["block"]
    torch.save(ckpt, path)
    d = load_denoiser(path, "cpu")
    assert d.meta["model_kwargs"]["block"] == "double_bn" and d.model.block == "double_bn"


# --- everything checked before anything is written (issue 9) --------------------------------------------------


def _run(ckpt: Path, inputs: Path, out: Path, *extra: str) -> int:
    return main(["denoise", "--checkpoint", str(ckpt), "--input", str(inputs), "--output", str(out),
                 "--no-progress", "--device", "cpu", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_truncated_png_among_inputs_writes_nothing(tmp_path, inputs, capsys):
    data = (inputs / "colour.png").read_bytes()
    (inputs / "zz_truncated.png").write_bytes(data[: len(data) // 2])  # sorted last: would fail after 4 outputs
    out = tmp_path / "out"
    assert _run(save_checkpoint(tmp_path / "best.pt"), inputs, out) == 1
    line = _one_error_line(capsys)
    assert "zz_truncated.png: not a readable image" in line
    assert not out.exists()


def test_output_is_a_file(tmp_path, inputs, capsys):
    ckpt = save_checkpoint(tmp_path / "best.pt")
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    assert _run(ckpt, inputs, blocker) == 1
    assert _one_error_line(capsys).endswith("out: is a file, not a folder; choose another --output")
    assert _run(ckpt, inputs, blocker / "sub") == 1  # NotADirectoryError case
    assert "cannot create the output folder" in _one_error_line(capsys)
    assert blocker.read_text().startswith("a file")


def test_unwritable_output_folder(tmp_path, inputs, capsys, monkeypatch):
    import os

    ckpt = save_checkpoint(tmp_path / "best.pt")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root ignores permission bits: make the probe see what a user would
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
        assert _run(ckpt, inputs, locked / "out") == 1
        assert f"cannot write into {locked} (permission denied)" in _one_error_line(capsys)
        assert _run(ckpt, inputs, locked) == 1
        _one_error_line(capsys)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_existing_outputs_need_overwrite(tmp_path, inputs, capsys):
    ckpt = save_checkpoint(tmp_path / "best.pt", identity=True)
    out = tmp_path / "out"
    out.mkdir()
    first = sorted(inputs.iterdir())[0]
    (out / first.name).write_bytes(b"old")
    assert _run(ckpt, inputs, out) == 1
    assert "output file already exists (1 of 4 do); use --overwrite" in _one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == [first.name]
    (out / first.name).unlink()
    (out / first.name).mkdir()
    assert _run(ckpt, inputs, out, "--overwrite") == 1
    assert "a folder is in the way" in _one_error_line(capsys)
    (out / first.name).rmdir()
    (out / first.name).write_bytes(b"old")
    assert _run(ckpt, inputs, out, "--overwrite") == 0
    with Image.open(out / first.name) as im:
        assert im.mode == "L"


@pytest.mark.parametrize("kind", ["pickle", "text", "last", "renamed_last"])
def test_bad_checkpoints_one_line(tmp_path, inputs, capsys, kind):
    from cxrdenoise.train.state import rng_state

    path = tmp_path / ("last.pt" if kind == "last" else "best.pt")
    if kind == "pickle":  # needs unpickling of an arbitrary class: torch's "Weights only load failed" case
        torch.save({"model": "dncnn", "anything": Path("x")}, path)
    elif kind == "text":
        path.write_text("this is not a checkpoint\n" * 20)
    else:
        model = build_model("dncnn", depth=3, channels=4)
        opt = torch.optim.Adam(model.parameters())
        torch.save({"format": 1, "fingerprint": "f", "epoch": 1, "model": model.state_dict(),  # as training does,
                    "optimizer": opt.state_dict(), "rng": rng_state(torch.device("cpu")),  # numpy RNG state too
                    "epochs": [], "best": None}, path)
    out = tmp_path / "out"
    assert _run(path, inputs, out) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {path}: ")
    assert "weights_only" not in line and "torch.serialization" not in line and "Weights only" not in line
    expected = {"pickle": "not a cxrdenoise checkpoint (it holds Python objects",
                "text": "cannot read checkpoint (not a PyTorch checkpoint file",
                "last": "a training state (last.pt, for resuming training), use best.pt",
                "renamed_last": "a training state (last.pt, for resuming training), use best.pt"}[kind]
    assert expected in line
    assert not out.exists()


def test_sixteen_bit_output(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    ramp = (np.arange(64 * 40, dtype=np.uint32).reshape(40, 64) * 25).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "deep.png")
    ckpt = save_checkpoint(tmp_path / "best.pt", identity=True)
    assert _run(ckpt, folder, tmp_path / "o16", "--bits", "16") == 0
    assert "(16-bit PNGs)" in capsys.readouterr().out
    with Image.open(tmp_path / "o16" / "deep.png") as im:
        assert im.mode in ("I;16", "I")
        got = np.asarray(im).astype(np.int64)
    # float32 arithmetic on the way: within one 16-bit level, and far finer than the 8-bit output's 257 levels
    assert np.abs(got - ramp.astype(np.int64)).max() <= 1
    assert len(np.unique(got)) == len(np.unique(ramp))


def test_help_names_the_bit_depth(capsys):
    with pytest.raises(SystemExit):
        main(["denoise", "--help"])
    assert "--bits {8,16}" in capsys.readouterr().out


# --- issue 22: NaN/inf inputs, FIFOs and other special files, a disk that fills up --------------------------


def _float_tiff(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.float32), mode="F").save(path)
    return path


@pytest.mark.parametrize("bad, words", [(np.nan, "500 NaN of 2000 pixels"), (np.inf, "500 infinite of 2000 pixels"),
                                        (-np.inf, "500 infinite of 2000 pixels")], ids=["nan", "inf", "-inf"])
def test_non_finite_float_tiff_is_refused(tmp_path, capsys, bad, words):
    """Fault 4: a float TIFF with NaN was denoised with exit 0 and a quarter of its pixels set to 0."""
    folder = tmp_path / "in"
    folder.mkdir()
    _float_tiff(folder / "fine.tiff", np.full((40, 50), 0.5))
    values = np.random.default_rng(0).random((40, 50))
    values[::2, ::2] = bad
    _float_tiff(folder / "holes.tiff", values)
    out = tmp_path / "out"
    assert _run(save_checkpoint(tmp_path / "best.pt", identity=True), folder, out) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {folder / 'holes.tiff'}: {words}; not denoised (nothing was written)")
    assert not out.exists()


def test_single_nan_among_finite_pixels_is_refused(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    values = np.full((33, 17), 0.25)
    values[32, 16] = np.nan
    _float_tiff(folder / "one.tiff", values)
    assert _run(save_checkpoint(tmp_path / "best.pt"), folder, tmp_path / "out") == 1
    assert "one.tiff: 1 NaN of 561 pixels" in _one_error_line(capsys)


def _tiny_pngs(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    for k in range(n):
        Image.fromarray(np.full((20, 24), 40 * (k + 1), dtype=np.uint8)).save(folder / f"img{k}.png")
    return folder


def test_fifo_socket_and_device_in_input_are_skipped_without_hanging(tmp_path):
    """Fault 13: a FIFO in the input folder hung the command (opening it waits for a writer forever)."""
    import os
    import socket
    import subprocess
    import sys

    folder = _tiny_pngs(tmp_path / "in")
    os.mkfifo(folder / "pipe.png")
    sock = socket.socket(socket.AF_UNIX)
    sock_path = folder / "s.png"
    if len(str(sock_path)) < 100:  # AF_UNIX paths are short
        sock.bind(str(sock_path))
    (folder / "zero.png").symlink_to("/dev/null")  # a character device, behind a symlink
    ckpt = save_checkpoint(tmp_path / "best.pt", identity=True)
    out = tmp_path / "out"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cxrdenoise.cli", "denoise", "--checkpoint", str(ckpt), "--input", str(folder),
             "--output", str(out), "--no-progress", "--device", "cpu"],
            capture_output=True, text=True, timeout=120)
    finally:
        sock.close()
    assert done.returncode == 0, done.stderr
    assert f"note: {folder / 'pipe.png'}: a named pipe (FIFO), not an image file; skipped" in done.stderr
    assert f"note: {folder / 'zero.png'}: a character device, not an image file; skipped" in done.stderr
    if sock_path.exists():
        assert f"note: {sock_path}: a socket, not an image file; skipped" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
    assert "denoised 2 image(s)" in done.stdout


def test_only_a_fifo_in_input(tmp_path, capsys):
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.png")
    assert _run(save_checkpoint(tmp_path / "best.pt"), folder, tmp_path / "out") == 1
    assert _one_error_line(capsys).endswith("in: no files to denoise")


def test_disk_full_while_writing_outputs_is_one_line(tmp_path, capsys, monkeypatch):
    """A full disk half-way through: one line with the file, the space and how many images were written."""
    import errno

    folder = _tiny_pngs(tmp_path / "in", 3)
    ckpt = save_checkpoint(tmp_path / "best.pt", identity=True)
    real_save = Image.Image.save
    calls = []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:
            Path(fp).write_bytes(b"\x89PNG" + bytes(10))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "out"
    assert _run(ckpt, folder, out, "--batch-size", "1") == 1
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    line = errors[0]
    assert line.startswith(f"error: {out / 'img1.png'}: disk full while writing it (14 B written when it failed, ")
    assert line.endswith(f"(nothing was written to img1.png); 1 of 3 image(s) written to {out}")
    assert sorted(p.name for p in out.iterdir()) == ["img0.png"]  # no temp file left behind
