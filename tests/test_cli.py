"""The `cxrdenoise` console script: the help lists every subcommand, each one answers --help with its own
arguments, and every command the Snakemake rules run exists."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cxrdenoise.cli import COMMANDS, main

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
        used |= set(re.findall(r"cxrdenoise (\w+)", smk.read_text()))
    assert used and used <= set(COMMANDS), used - set(COMMANDS)


def test_python_dash_m_is_the_console_script():
    done = subprocess.run([sys.executable, "-m", "cxrdenoise", "data", "noise", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "--clean-npy" in done.stdout
