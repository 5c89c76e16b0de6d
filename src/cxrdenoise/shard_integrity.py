"""Check a shard against its manifest entry before anything trains or scores on it.

A shard changed on disk after it was written (a bad disk block, a copy cut short, an edit) would otherwise be
trained on and evaluated without a word. One pass over the file checks, in this order: the .npy header's dtype
and shape against the manifest, the file's length, the values (float16 bit patterns in [0, 1], so NaN, inf and
out-of-range values are named), and the sha256 recorded when the shard was written. The whole check costs what
sha256 costs, 0.4-1 GB/s on a shared 2-core CPU with SHA instructions, 2-5 s for the study's 15,000 images
(benchmarks/bench_shard_verify.py; keyed blake2b takes 1.9x as long), so no weaker hash is used. Each process
verifies a file once (DataLoader workers inherit that), and a failure is one line naming the shard and the fix: the
snakemake command that rebuilds that shard alone, with the run's own config files (fix_hint).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import CxrError

BLOCK = 8 << 20  # bytes read per step: large enough for full hashing speed, small enough to stay in cache
FLOAT16_ONE = 0x3C00  # bit pattern of 1.0; every float16 in [+0, 1] is a pattern 0x0000..0x3C00
FLOAT16_NEG_ZERO = 0x8000

# (resolved path, size, mtime_ns, inode, expected sha256) of files this process has already verified
_verified: set[tuple] = set()


# The running snakemake's own -s/-d/--configfile/--config/--profile options, as a JSON list: set by the workflow's
# main process (workflow/rules/common.smk) and inherited by its jobs (local, and SLURM's with --export=ALL), so a
# job's fix command names the run's config files, not the study defaults (12 NIH downloads).
RUN_OPTIONS_ENV = "CXRDENOISE_SNAKEMAKE_OPTIONS"
# Written at the start of every run that executes jobs (Snakefile onstart): the fallback config of a fix command
RESOLVED_CONFIG = "results/config.resolved.yaml"


def run_options(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The snakemake options that select this run's workflow, directory and config: the running snakemake's
    (RUN_OPTIONS_ENV), else `--configfile results/config.resolved.yaml` when it exists (relative to the working
    directory, the run's, where jobs run), else None (not known: the job was not started by snakemake)."""
    environ = os.environ if environ is None else environ
    try:
        options = json.loads(environ.get(RUN_OPTIONS_ENV) or "null")
    except ValueError:
        options = None
    if isinstance(options, list) and all(isinstance(o, str) for o in options):
        return options
    if Path(RESOLVED_CONFIG).is_file():
        return ["--configfile", RESOLVED_CONFIG]
    return None


def made_from(path: str | os.PathLike, rule: str) -> list[Path]:
    """The files jobs make from `path` by reading it directly (not through a manifest): for a clean shard (rule
    resize_shard), its noisy shard at every sigma that has been built, {data}/noisy/sigma*/<same name> (where the
    shard or the sigma's manifest is on disk: a noise job that found the clean shard corrupt has removed its own).

    They are rebuilt with it: a rebuilt clean shard is newer than them, and Snakemake compares the modification
    times of files over 1 MB (it checksums smaller ones), so the next run would re-make them and then, their
    jobs being planned, every manifest, training and evaluation after them. Rebuilt in the same command they
    are newer again, come back with the same bytes, and their small sidecars match the checksums Snakemake
    recorded for the manifests: nothing after them re-runs."""
    if rule != "resize_shard":
        return []
    path = Path(path)
    sigmas = sorted(d for d in (path.parent.parent / "noisy").glob("sigma*")
                    if (d / "manifest.json").is_file() or (d / path.name).is_file())
    return [d / path.name for d in sigmas]


def rebuild_args(path: str | os.PathLike, rule: str, force: bool = True) -> list[str]:
    """The snakemake arguments, after the run's options, that (re)build `path` and nothing else (but what
    made_from names): one job at a time (--cores 1), only these rules (--allowed-rules: every other file is
    taken as it is on disk, so nothing upstream is re-run or downloaded; a missing input stops the command
    instead), forced when the file exists but is corrupt (--forcerun), the files as the only targets (after `--`,
    so no option takes them as values)."""
    derived = made_from(path, rule)
    rules = [rule, "noise_shard"] if derived else [rule]
    return ["--cores", "1", "--allowed-rules", *rules, *(["--forcerun", rule] if force else []), "--", str(path),
            *map(str, derived)]


def rebuild_command(path: str | os.PathLike, rule: str, force: bool = True,
                    environ: Mapping[str, str] | None = None) -> str | None:
    """The shell command that rebuilds exactly `path` (rule `rule`) with the run's own workflow, directory and
    config files, runnable as printed from where the run was started; None when the run's options are unknown."""
    options = run_options(environ)
    if options is None:
        return None
    return shlex.join(["snakemake", *options, *rebuild_args(path, rule, force)])


def fix_hint(path: str | os.PathLike, rule: str, force: bool = True) -> str:
    """What to do, with the command that does it (in backticks): the file (and what made_from names) is rebuilt
    alone with the run's own options, then the user's command goes on."""
    verb = "rebuild" if force else "build"
    derived = made_from(path, rule)
    what = f"{verb} it and the {len(derived)} noisy shard(s) made from it" if derived else f"{verb} it alone"
    rules = f"rules '{rule}', 'noise_shard'" if derived else f"rule '{rule}'"
    command = rebuild_command(path, rule, force)
    if command is None:  # not run by snakemake (e.g. `cxrdenoise train` by hand): the arguments to add
        return (f"{what} ({rules}) by adding `{shlex.join(rebuild_args(path, rule, force))}` to the "
                f"-s/-d/--configfile options of the run's snakemake command, then re-run that command")
    return f"{what} ({rules}; nothing else is run) with `{command}`, then re-run your snakemake command"


def _fail(path: Path, what: str, rule: str) -> CxrError:
    return CxrError(f"{path}: {what}; the shard is corrupt or was changed after it was written: "
                    f"{fix_hint(path, rule)}")


def _read_header(fh, path: Path, rule: str) -> tuple[tuple[int, ...], np.dtype, bytes]:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, OSError, SyntaxError) as err:
        raise _fail(path, f"not a readable .npy file ({err})", rule) from None
    if fortran:
        raise _fail(path, "array stored in Fortran order", rule)
    offset = fh.tell()
    fh.seek(0)
    return tuple(shape), dtype, fh.read(offset)


def _bad_values(block: np.ndarray) -> str | None:
    """Describe values outside [0, 1] (NaN and inf included) in one block of stored values, or None."""
    if block.dtype == np.uint8:  # stores round(x * 255): every value decodes into [0, 1]
        return None
    if block.dtype == np.float16:
        bits = block.view(np.uint16)
        if bits.size == 0 or bits.max() <= FLOAT16_ONE:  # one integer reduction: the common case
            return None
        if not np.any((bits > FLOAT16_ONE) & (bits != FLOAT16_NEG_ZERO)):
            return None  # the only pattern above 1.0's that is in range is -0.0
    values = block.astype(np.float64)
    if np.isnan(values).any():
        return "contains NaN"
    finite = values[np.isfinite(values)]
    if finite.size < values.size:
        return "contains an infinite value"
    low, high = float(finite.min()), float(finite.max())
    if low < 0.0 or high > 1.0:
        return f"values range {low:g}..{high:g}, outside [0, 1]"
    return None


def verify_shard(path: str | os.PathLike, entry: Mapping[str, Any], rule: str) -> None:
    """Raise a one-line CxrError unless `path` matches `entry` (a shard sidecar as held in the manifest).

    `rule` names the Snakemake rule that rebuilds the shard, for the fix in the message.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise CxrError(f"{path} is missing: {fix_hint(path, rule, force=False)}") from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, entry.get("sha256"))
    if key in _verified:
        return
    if not entry.get("sha256"):
        raise CxrError(f"{path}: its manifest entry records no sha256, so it cannot be verified; "
                       f"{fix_hint(path, rule)}")
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise CxrError(f"{path}: cannot read shard ({err.strerror})") from None
    with fh:
        shape, dtype, header = _read_header(fh, path, rule)
        if str(dtype) != entry.get("dtype") or list(shape) != list(entry.get("shape", [])):
            raise _fail(path, f"holds a {str(dtype)} array of shape {list(shape)}, the manifest says "
                              f"{entry.get('dtype')} {entry.get('shape')}", rule)
        expected_size = len(header) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if stat.st_size != expected_size:
            raise _fail(path, f"is {stat.st_size} bytes, its header implies {expected_size}", rule)
        digest = hashlib.sha256(header)
        buffer = bytearray(BLOCK - BLOCK % dtype.itemsize)
        view = memoryview(buffer)
        while True:
            n = fh.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            problem = _bad_values(np.frombuffer(buffer, dtype=dtype, count=n // dtype.itemsize))
            if problem:
                raise _fail(path, problem, rule)
    if digest.hexdigest() != entry["sha256"]:
        raise _fail(path, "sha256 does not match the manifest", rule)
    _verified.add(key)


def verify_shards(files: list[Path], entries: list[Mapping[str, Any]], rule: str) -> None:
    for path, entry in zip(files, entries):
        verify_shard(path, entry, rule)
