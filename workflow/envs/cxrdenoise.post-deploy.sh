#!/usr/bin/env bash
# Runs inside the new conda environment (Snakemake's --sdm conda, once per environment): the pinned
# dependencies, then the project from the clone this script lies in (workflow/envs/../..).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python -m pip install --no-cache-dir -r "$root/requirements.lock"
python -m pip install --no-cache-dir --no-deps "$root"
