"""Every `snakemake ...` command the documentation shows works as printed (issue 22, fault 12 and "What to
build" 6).

config/README.md showed `snakemake --cores 8 --configfile my.yaml all`, which Snakemake reads as two config files
(`--configfile` takes several) and stops with `FileNotFoundError: ... 'all'`. The commands are extracted from
README.md, config/README.md and docs/*.md (fenced code lines and inline code spans that start with `snakemake `):
the fast test reads each one with Snakemake's own argument parser (config files are YAML files that exist or are
named placeholders, targets are rules or paths, local runs give --cores); the slow one dry-runs each one, with
`-n` put first so the rest is parsed exactly as printed, in a copy of the repository's workflow files with a
temporary config file for each placeholder the docs name (my.yaml, ...)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from snakemake_run import REPO

DOCS = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# config files the docs name that a user writes: the temporary one the dry-run gets
PLACEHOLDER_CONFIGS = {"my.yaml": {"seed": 7}, "my-nodes.yaml": {"train": {"nodes": 2}},
                       "results/config.resolved.yaml": None}  # None: the resolved default config, as a run writes
# example paths in the docs (docs/running.md's report command) and what stands for them in the test
PLACEHOLDER_PATHS = {"~/cxrdenoise": "{clone}", "/scratch/run1": "{clone}/run1"}
RULES = {m for f in [REPO / "workflow" / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]
         for m in re.findall(r"^(?:rule|checkpoint) (\w+):", f.read_text(), re.M)}


def doc_commands() -> list[tuple[str, str]]:
    """(where, command) of every snakemake command line in the docs, without repeats (first place kept)."""
    found: dict[str, str] = {}
    for doc in DOCS:
        text = doc.read_text()
        name = doc.relative_to(REPO)
        fenced = list(re.finditer(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, re.M | re.S))
        for block in fenced:
            body = block.group(1).replace("\\\n", " ")
            for k, line in enumerate(body.splitlines()):
                if not line.lstrip().startswith("snakemake "):
                    continue
                tokens = shlex.split(line, comments=True)
                if tokens[:1] == ["snakemake"]:
                    lineno = text[:block.start(1)].count("\n") + k + 1
                    found.setdefault(shlex.join(tokens), f"{name}:{lineno}")
        prose = text
        for block in reversed(fenced):  # inline spans outside code blocks
            prose = prose[:block.start()] + "\n" * block.group(0).count("\n") + prose[block.end():]
        for span in re.finditer(r"`([^`]+)`", prose):
            command = " ".join(span.group(1).split())
            if command.startswith("snakemake ") and "..." not in command and "…" not in command:
                lineno = prose[:span.start()].count("\n") + 1
                found.setdefault(command, f"{name}:{lineno}")
    return [(where, command) for command, where in found.items()]


COMMANDS = doc_commands()


def _parse(command: str):
    from snakemake.cli import get_argument_parser

    tokens = shlex.split(command)
    try:
        return get_argument_parser().parse_args(tokens[1:])
    except SystemExit:
        pytest.fail(f"Snakemake cannot parse {command!r}")


def problems(command: str) -> list[str]:
    """What stops `command` from working as printed, read the way Snakemake reads it."""
    args = _parse(command)
    found = []
    for path in map(str, args.configfile or []):
        if not path.endswith((".yaml", ".yml", ".json")):
            found.append(f"{path!r} is read as a config file (a target after --configfile? put it first)")
        elif path not in PLACEHOLDER_CONFIGS and not (REPO / path).is_file():
            found.append(f"config file {path} does not exist")
    for item in args.config or []:
        if "=" not in item:
            found.append(f"{item!r} is read as a --config value (a target after --config? put it first)")
    for target in args.targets or []:
        if "/" not in target and "." not in target and target not in RULES:
            found.append(f"target {target!r} is not a rule")
    for profile in args.profile or []:
        if not (REPO / profile).is_dir():
            found.append(f"profile {profile} does not exist")
    if not (args.dryrun or args.cores or args.jobs or args.profile or args.report or args.lint):
        found.append("no --cores: Snakemake 9 stops with 'cores have to be specified for local execution'")
    return found


def test_the_docs_show_snakemake_commands():
    commands = dict((c, w) for w, c in COMMANDS)
    assert len(commands) >= 10
    assert "snakemake all --cores 8 --configfile my.yaml" in commands  # config/README.md, fault 12's line fixed


def test_the_check_catches_fault_12():
    """The line config/README.md showed, and its sibling with --config, are caught; the fixed forms are not."""
    assert "'all' is read as a config file" in problems("snakemake --cores 8 --configfile my.yaml all")[0]
    assert "'all' is read as a --config value" in problems("snakemake --cores 8 --config seed=7 all")[0]
    assert problems("snakemake results/tables/table5.csv") == [
        "no --cores: Snakemake 9 stops with 'cores have to be specified for local execution'"]
    for fixed in ("snakemake all --cores 8 --configfile my.yaml", "snakemake --cores 8 --configfile my.yaml -- all",
                  "snakemake all --cores 8 --config seed=7"):
        assert problems(fixed) == []


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_parses_as_intended(where, command):
    assert problems(command) == [], f"{where}: {command}"


def test_a_missing_configfile_stops_snakemake_before_the_workflow(tmp_path):
    """Measured (and documented in config/README.md): Snakemake reads --configfile before any of the workflow's
    code runs, so a missing file cannot be reported by the workflow; Snakemake's traceback ends naming it."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-n", "--configfile",
           "nothere.yaml", "--", "all"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    out = (result.stdout + result.stderr).strip()
    assert out.splitlines()[-1] == \
        "FileNotFoundError: [Errno 2] No such file or directory: 'nothere.yaml'"
    assert "settings/types.py" in out  # raised in Snakemake's settings, before the Snakefile is read
    reference = (REPO / "config" / "README.md").read_text()
    assert "`FileNotFoundError: [Errno 2] No such file or directory: 'my.yaml'`" in " ".join(reference.split())


def _clone(root: Path) -> Path:
    """What a checkout has that the commands read: workflow/ (Snakefile, rules, envs), config/, profiles/ (no
    results)."""
    root.mkdir()
    shutil.copy2(REPO / "requirements.lock", root / "requirements.lock")
    for folder in ("workflow", "config", "profiles"):
        shutil.copytree(REPO / folder, root / folder)
    for name, content in PLACEHOLDER_CONFIGS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            from config_files import load_config
            from cxrdenoise.config import write_resolved_config
            from cxrdenoise.provenance import hash_config

            config = load_config(REPO / "config" / "config.yaml")
            write_resolved_config(config, path, hash_config(config))
        else:
            path.write_text(yaml.safe_dump(content))
    return root


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    return _clone(tmp_path_factory.mktemp("doc-commands") / "cxrdenoise")


@pytest.mark.slow
@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_dry_runs(where, command, clone):
    """The command as printed, with -n put first (so every other word is parsed as printed), run from the
    repository root (a copy of it); `snakemake` is this environment's."""
    tokens = shlex.split(command)
    for example, stands_for in PLACEHOLDER_PATHS.items():
        tokens = [t.replace(example, stands_for.format(clone=clone)) for t in tokens]
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", *tokens[1:]], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    if "--report" in tokens:  # the report needs a finished run's files; getting that far means it parsed
        assert result.returncode == 0 or "marked for report but does not exist" in out, f"{where}: {out[-3000:]}"
    else:
        assert result.returncode == 0, f"{where}: {command}\n{out[-3000:]}"
        assert "Job stats:" in out or "Nothing to be done" in out, f"{where}: {out[-3000:]}"
