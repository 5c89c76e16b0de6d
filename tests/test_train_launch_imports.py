"""The train command's launcher imports no torch: a DDP job's launcher only checks the data and starts torchrun,
and importing torch there cost every such job about a second and a half. Its data check still finds what
cxrdenoise.data reads."""

import subprocess
import sys
from pathlib import Path

import pytest

from cxrdenoise.errors import CxrError
from cxrdenoise.train import datacheck

SRC = Path(__file__).resolve().parents[1] / "src"


def test_launcher_and_settings_import_no_torch():
    code = (
        "import sys\n"
        "from cxrdenoise.commands import train\n"
        "from cxrdenoise.train.launch import launch, torchrun_command\n"
        "from cxrdenoise.train.settings import TrainSettings\n"
        "s = TrainSettings(model='unet', setup='ddp2_fast', sigma='0.1', device='cpu', fast={'compile': False})\n"
        "assert s.fingerprint('x')\n"
        "heavy = [m for m in ('torch', 'pandas', 'scipy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_data_check_reads_the_manifests_cxrdenoise_data_reads(tmp_path):
    from cxrdenoise.data import clean_manifest_path, noisy_manifest_path

    for sigma in ("0.1", "0.25", "0.30"):
        assert datacheck.noisy_manifest(tmp_path, sigma) == noisy_manifest_path(tmp_path, sigma)
    assert datacheck.clean_manifest(tmp_path) == clean_manifest_path(tmp_path)


def test_data_check_names_the_missing_manifest_and_shard(tmp_path):
    with pytest.raises(CxrError, match=r"clean/manifest.json is missing: .*build"):
        datacheck.check_data(tmp_path, "0.1")
    clean = datacheck.clean_manifest(tmp_path)
    clean.parent.mkdir(parents=True)
    clean.write_text('{"shards": [{"file": "shard_00000.npy"}]}')
    with pytest.raises(CxrError, match=r"shard_00000.npy is missing"):
        datacheck.check_data(tmp_path, "0.1")
