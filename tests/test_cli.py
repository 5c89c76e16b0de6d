"""The `cxrdenoise` console script: the help lists every subcommand, each one answers --help with its own
arguments, and every command the Snakemake rules run exists."""

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cxrdenoise.cli import COMMANDS, main
from cxrdenoise.config import validate_config
from snakemake_run import snakemake

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name, help_text in COMMANDS.items():
        assert re.search(rf"^\s+{name}\b", out, re.M), name
        assert help_text.split()[0] in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cxrdenoise {name} ")


def test_unknown_command_and_no_command_are_usage_errors(capsys):
    for argv in (["nope"], []):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_the_rules_run_only_existing_commands():
    used = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        # the shell commands' subcommands (not a Python `from cxrdenoise import ...` in a rule file)
        used |= set(re.findall(r"(?<!from )cxrdenoise (\w+)", smk.read_text()))
    assert used and used <= set(COMMANDS), used - set(COMMANDS)


def test_python_dash_m_is_the_console_script():
    done = subprocess.run([sys.executable, "-m", "cxrdenoise", "data", "noise", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "--clean-npy" in done.stdout


@pytest.mark.parametrize("configs", [[], ["config/demo.yaml"]], ids=["study", "demo"])
def test_every_command_line_the_rules_print_parses(tmp_path, configs):
    """Each job's command, as a dry run prints it, is accepted by its command's parser: a value the rule forgot
    (the commands take every config value from the rules, with no default of their own) fails here, not mid-run."""
    args = [a for c in configs for a in ("--configfile", str(REPO / c))]
    plan = snakemake(tmp_path, "-n", "-p", "--cores", "2", *args, "--", "all")
    assert plan.returncode == 0, plan.stderr[-2000:]
    lines = [line.split("Shell command:", 1)[-1].strip() for line in plan.stdout.splitlines()]
    lines = [line for line in lines if line.startswith("cxrdenoise ")]
    assert len(lines) > 40
    nih = validate_config({})["data"]["nih"]  # download.smk passes these through $CXRDENOISE_DOWNLOAD_TUNING
    tuning = f"--retries {nih['retries']} --backoff {nih['backoff_s']} --timeout {nih['timeout_s']}"
    seen = set()
    for line in lines:
        argv = shlex.split(line.split(" > ")[0].replace("$CXRDENOISE_DOWNLOAD_TUNING", tuning))[1:]
        seen.add(argv[0])
        importlib.import_module(f"cxrdenoise.commands.{argv[0]}").parse_args(argv[1:])  # SystemExit 2 on a miss
    assert {"data", "train", "evaluate", "tables", "claims", "figures", "privacy"} <= seen
