"""What a job imports before it works (issue 26: start-up was ~38 % of the demo's CPU).

Each check runs in a fresh interpreter, because this test process has long since imported torch. The light
subcommands (data stages, classical merge, tables, claims, figures, provenance, privacy and federated tables and
figures) must not import torch; `cxrdenoise.stats` must not import scipy.stats until a test needs it. No timing:
only what lands in sys.modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# The modules each light job imports before its work: the command module and its branch's imports.
LIGHT = [
    "cxrdenoise.commands.phantoms",
    "cxrdenoise.commands.data", "cxrdenoise.shards", "cxrdenoise.split", "cxrdenoise.provenance",
    "cxrdenoise.inventory", "cxrdenoise.sampling",
    "cxrdenoise.commands.classical", "cxrdenoise.baselines", "cxrdenoise.stats",
    "cxrdenoise.commands.tables", "cxrdenoise.tables",
    "cxrdenoise.commands.claims", "cxrdenoise.tables.claims", "cxrdenoise.tables.comparisons",
    "cxrdenoise.commands.figures", "cxrdenoise.figures",
    "cxrdenoise.commands.provenance", "cxrdenoise.provenance_page",
    "cxrdenoise.commands.privacy", "cxrdenoise.tables.privacy", "cxrdenoise.privacy.figure",
    "cxrdenoise.commands.federated", "cxrdenoise.tables.federated", "cxrdenoise.federated.figure",
    "cxrdenoise.commands.download", "cxrdenoise.commands.extract",
]


def run_child(code: str) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_imports_no_command_module():
    """`cxrdenoise --help` and the dispatcher import a command's module only when that command runs."""
    out = run_child("""
        import json, sys
        import cxrdenoise.cli as cli
        cli.build_parser().format_help()
        print(json.dumps(sorted(m for m in sys.modules if m.startswith(("cxrdenoise.commands.", "torch", "pandas")))))
    """)
    assert out == []


def test_light_commands_do_not_import_torch():
    """Each light job's modules, imported one after another: the first to bring torch in is named."""
    out = run_child(f"""
        import importlib, json, sys
        first = None
        for name in {LIGHT!r}:
            importlib.import_module(name)
            if "torch" in sys.modules:
                first = name
                break
        print(json.dumps({{"first_with_torch": first,
                          "scipy.stats": "scipy.stats" in sys.modules}}))
    """)
    assert out == {"first_with_torch": None, "scipy.stats": False}


def test_noise_and_manifest_stages_need_no_pandas_or_torch():
    """The noise and manifest jobs (and their provenance record) import neither pandas nor torch."""
    out = run_child("""
        import json, sys
        import cxrdenoise.cli, cxrdenoise.commands.data
        from cxrdenoise.provenance import provenance
        record = provenance(config_hash="x", device="cpu")
        print(json.dumps({"device": record["device"],
                          "heavy": sorted(m for m in ("torch", "pandas", "jsonschema", "yaml", "scipy")
                                          if m in sys.modules)}))
    """)
    assert out == {"device": "cpu", "heavy": []}


def test_stats_imports_scipy_stats_only_when_a_test_needs_it():
    """mean_ci and t_interval use the t quantile from scipy.special; a paired test imports scipy.stats."""
    out = run_child("""
        import json, sys
        import pandas as pd
        from cxrdenoise import stats
        from cxrdenoise.tables.replicates import t_interval
        after_import = "scipy.stats" in sys.modules
        ci = stats.mean_ci([1.0, 2.0, 4.0])
        t_interval([1.0, 2.0, 4.0])
        after_ci = "scipy.stats" in sys.modules
        a = pd.DataFrame({"image_id": ["a", "b", "c"], "psnr": [1.0, 2.0, 3.5]})
        b = pd.DataFrame({"image_id": ["a", "b", "c"], "psnr": [1.5, 2.0, 3.0]})
        stats.paired_test(a, b, "psnr")
        print(json.dumps({"after_import": after_import, "after_ci": after_ci,
                          "after_test": "scipy.stats" in sys.modules, "half": ci["ci95_t_halfwidth"]}))
    """)
    assert out["after_import"] is False
    assert out["after_ci"] is False
    assert out["after_test"] is True
    assert out["half"] == pytest.approx(4.303 * np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3), rel=1e-3)


@pytest.mark.parametrize("q", [0.975, 0.5 + 0.9 / 2, 0.995])
def test_t_ppf_is_scipy_stats_t_ppf(q):
    """The quantile that replaces scipy.stats.t.ppf is the same float for integer and fractional df."""
    from scipy import stats as sps

    from cxrdenoise.stats import t_ppf

    for df in [*range(1, 300), 1.5, 2.25, 7.75, 31.4, 1e3, 1e6]:
        assert t_ppf(q, df) == float(sps.t.ppf(q, df)), df
