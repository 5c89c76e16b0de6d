"""What verifying shards on read costs: sha256 against a faster keyed hash (blake2b) and a numpy checksum,
the value-range check, and the full check every training / evaluation job runs (cxrdenoise.shard_integrity).
All run in this process, side by side, on the same float16 shards (warm page cache: this measures the CPU
cost; a cold disk adds its own read time, which training pays anyway).

    python benchmarks/bench_shard_verify.py [--images 2000] [--size 256] [--per-shard 500] [--repeats 3]

Seconds are extrapolated from the measured rate to the full study, 15,000 images at 256x256 float16 (about
2 GB per shard kind; a training or evaluation job reads the clean and one noisy set, about 4 GB).
The result is also written to benchmarks/results/bench_shard_verify.json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrdenoise.atomic import write_json
from cxrdenoise.provenance import cpu_name
from cxrdenoise.shard_integrity import BLOCK, _bad_values, _verified, verify_shard
from cxrdenoise.shards import save_shard

STUDY_IMAGES = 15_000
RESULTS = Path(__file__).resolve().parent / "results" / "bench_shard_verify.json"


def streamed(files: list[Path], consume) -> None:
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    for path in files:
        with open(path, "rb") as fh:
            while n := fh.readinto(buffer):
                consume(view[:n], buffer, n)


def read_only(files):
    streamed(files, lambda view, buffer, n: None)


def hashlib_digest(name):
    def run(files):
        for path in files:
            digest = hashlib.new(name)
            streamed([path], lambda view, buffer, n: digest.update(view))
            digest.hexdigest()
    return run


def blake2b_keyed(files):
    for path in files:
        digest = hashlib.blake2b(key=b"cxrdenoise-shard", digest_size=32)
        streamed([path], lambda view, buffer, n: digest.update(view))
        digest.hexdigest()


_KEYS = np.random.default_rng(20250101).integers(1, 2**63, size=BLOCK // 8, dtype=np.uint64) | np.uint64(1)


def numpy_checksum(files):
    """sum(word_i * key_i) mod 2**64 with odd per-position keys: catches any single changed word, not a hash."""
    for path in files:
        total = 0
        with open(path, "rb") as fh:
            buffer = bytearray(BLOCK)
            while n := fh.readinto(buffer):
                words = np.frombuffer(buffer, dtype=np.uint64, count=n // 8)
                total = (total + int(np.sum(words * _KEYS[: words.size], dtype=np.uint64))) % 2**64


def range_check(files):
    """The value check alone, on the array data (the .npy header is skipped, as verify_shard does)."""
    buffer = bytearray(BLOCK)
    for path in files:
        with open(path, "rb") as fh:
            np.lib.format.read_magic(fh)
            np.lib.format.read_array_header_1_0(fh)
            while n := fh.readinto(buffer):
                problem = _bad_values(np.frombuffer(buffer, dtype=np.float16, count=n // 2))
                assert problem is None, problem


def full_verify(entries):
    def run(files):
        _verified.clear()
        for path, entry in zip(files, entries):
            verify_shard(path, entry, "noise_shard")
    return run


def best_seconds(fn, files, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(files)
        times.append(time.perf_counter() - start)
    return min(times)


def cpu_has_sha() -> bool | None:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return " sha_ni" in flags or " sha2" in flags


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--per-shard", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        files, entries = [], []
        for k in range(-(-a.images // a.per_shard)):
            n = min(a.per_shard, a.images - k * a.per_shard)
            arr = rng.random((n, a.size, a.size), dtype=np.float32).astype(np.float16)
            path = Path(tmp) / f"shard_{k:05d}.npy"
            entries.append(save_shard(arr, path, {"shard": k}))
            files.append(path)
        nbytes = sum(f.stat().st_size for f in files)
        methods = {
            "read only (baseline)": read_only,
            "sha256": hashlib_digest("sha256"),
            "blake2b (keyed)": blake2b_keyed,
            "numpy keyed checksum": numpy_checksum,
            "value range (float16 bits)": range_check,
            "full check (header + range + sha256)": full_verify(entries),
        }
        read_only(files)  # warm the page cache
        seconds = {name: best_seconds(fn, files, a.repeats) for name, fn in methods.items()}
    study_bytes = nbytes / a.images * STUDY_IMAGES
    rows = []
    print(f"{a.images} images at {a.size}x{a.size} float16 = {nbytes / 1e6:.0f} MB in {len(files)} shards, "
          f"best of {a.repeats}; CPU {cpu_name()} (SHA instructions: {cpu_has_sha()}), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other work shares the CPU)")
    print(f"extrapolated to {STUDY_IMAGES} images = {study_bytes / 1e9:.2f} GB per shard kind "
          "(a job reads clean + noisy: twice that)")
    print(f"  {'method':40s} {'MB/s':>8s} {'s per 15k':>10s} {'s per job':>10s} {'vs sha256':>10s}")
    for name, s in seconds.items():
        rate = nbytes / s / 1e6
        per_kind = study_bytes / (nbytes / s)
        row = {"method": name, "mb_per_s": round(rate, 1), "seconds_15000_images": round(per_kind, 2),
               "seconds_per_job_clean_and_noisy": round(2 * per_kind, 2),
               "time_vs_sha256": round(s / seconds["sha256"], 3)}
        rows.append(row)
        print(f"  {name:40s} {rate:8.0f} {per_kind:10.2f} {2 * per_kind:10.2f} {row['time_vs_sha256']:9.2f}x")
    write_json(a.out, {
        "benchmark": "bench_shard_verify", "measured_images": a.images, "image_size": a.size, "dtype": "float16",
        "measured_bytes": nbytes, "shards": len(files), "repeats": a.repeats, "page_cache": "warm",
        "study_images": STUDY_IMAGES, "study_bytes_per_kind": int(study_bytes), "cpu": cpu_name(),
        "cpu_sha_instructions": cpu_has_sha(), "cpu_cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2), "python": sys.version.split()[0], "numpy": np.__version__,
        "methods": rows,
    })
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
