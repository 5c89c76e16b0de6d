"""The launcher's data check, without torch: the manifests and shards a training job needs exist, and their digest.

Its own module because the launcher of a DDP job only starts torchrun: importing it (and torch, through
cxrdenoise.data) there cost the job about a second and a half of start-up for nothing. The manifest paths are
cxrdenoise.data's (tests/test_train_launch_imports.py holds them equal).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import CxrError


def clean_manifest(data_dir: str | Path) -> Path:
    return Path(data_dir) / "clean" / "manifest.json"


def noisy_manifest(data_dir: str | Path, sigma: str) -> Path:
    return Path(data_dir) / "noisy" / f"sigma{float(sigma):g}" / "manifest.json"


def _missing(path: Path, rule: str) -> CxrError:
    from ..shard_integrity import fix_hint  # numpy: only on the error path

    return CxrError(f"{path} is missing: {fix_hint(path, rule, force=False)}")


def check_data(data_dir: str | Path, sigma: str) -> str:
    """Fail naming the rule that makes a missing manifest or shard, before any process group or DataLoader
    worker exists (a shard missing mid-epoch would surface as a worker traceback); return a digest of both
    manifests, so a last.pt written on other data is not resumed."""
    digest = hashlib.sha256()
    for path, manifest_rule, shard_rule in (
        (clean_manifest(data_dir), "clean_manifest", "resize_shard"),
        (noisy_manifest(data_dir, sigma), "noisy_manifest", "noise_shard"),
    ):
        if not path.exists():
            raise _missing(path, manifest_rule)
        raw = path.read_bytes()
        for shard in json.loads(raw).get("shards", []):
            shard_path = path.parent / shard["file"]
            if not shard_path.exists():
                raise _missing(shard_path, shard_rule)
        digest.update(raw)
    return digest.hexdigest()
