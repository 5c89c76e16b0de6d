"""The configuration reference (config/README.md), generated from the schema's defaults and descriptions.

The schema is the one place a key's default and meaning are written; this renders it for people, and a test
keeps the committed file equal to this output. Regenerate with:

    python -m cxrdenoise.config_reference > config/README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from .config import SCHEMA_PATH

COMMAND = "python -m cxrdenoise.config_reference > config/README.md"
# a default longer than this (in YAML flow style) is shown as a YAML block under its section's table
INLINE_LIMIT = 60

HEADER = f"""\
# Configuration reference

Generated from [`workflow/schemas/config.schema.yaml`](../workflow/schemas/config.schema.yaml) by
`{COMMAND}`; edit the schema, not this file
(`tests/test_config_schema.py` fails when they differ).

Every key has a default, and the defaults are the study's protocol: Snakemake fills in every key a config
leaves out when it starts, so [`config/config.yaml`](config.yaml) (the workflow's config file) sets nothing, and
a run only states what it changes. To change keys:

- `snakemake all --cores 8 --configfile my.yaml`: a YAML file with just the keys to change, merged key by key
  into the defaults (a nested key left out keeps its default). Several files merge in order, later ones win:
  the demo is `snakemake all --cores 2 --configfile config/demo.yaml`.
- `snakemake all --cores 8 --config seed=7`: top-level scalar keys on the command line (Snakemake reads nested
  values given there as strings, which the schema rejects; put nested keys in a `--configfile`).

Name the target (`all`, or a file) before `--configfile` and `--config`, or after `--`
(`snakemake --cores 8 --configfile my.yaml -- all`): both options take several values, so a target written
after them (`--configfile my.yaml all`) is read as a second config file and Snakemake stops with
`FileNotFoundError: ... 'all'`. A `--configfile` is read relative to the directory snakemake is started in,
before any of the workflow's code runs: a file that is not there stops Snakemake with its own traceback, whose
last line names it (`FileNotFoundError: [Errno 2] No such file or directory: 'my.yaml'`).

A wrong key or value stops the run at start-up with one line naming the key. The complete configuration of
the last run, defaults filled in, is written to `results/config.resolved.yaml`; its hash is recorded in every
result.
"""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def walk(schema: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted key, subschema) of every property, parents before their children, in schema order."""
    for name, sub in (schema.get("properties") or {}).items():
        key = f"{prefix}{name}"
        yield key, sub
        yield from walk(sub, key + ".")


def type_name(sub: Mapping[str, Any]) -> str:
    """The key's type as a reader wants it: `one of a, b` for enums, `list of ...` for arrays, `or null`."""
    if "enum" in sub:
        return "one of " + ", ".join(_plain(v) for v in sub["enum"])
    types = sub.get("type", "any")
    types = [types] if isinstance(types, str) else list(types)
    names = []
    for t in types:
        if t == "array":
            items = sub.get("items") or {}
            inner = type_name(items) if items else ""
            if not inner:
                names.append("list")
            else:
                names.append(f"list, each {inner}" if inner.startswith("one of") else f"list of {inner}")
        elif t == "object":
            names.append("mapping")
        else:
            names.append(t)
    return " or ".join(names)


def _plain(value: Any) -> str:
    """A value as it is written in YAML flow style (null, true, [0.1, 0.2], {})."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _is_section(sub: Mapping[str, Any]) -> bool:
    return "properties" in sub


def default_cell(key: str, sub: Mapping[str, Any], long: dict[str, Any]) -> str:
    if "default" not in sub:
        return "(none)"
    value = sub["default"]
    if _is_section(sub) and value == {}:
        return "(the keys below)"
    text = _plain(value)
    if len(text) > INLINE_LIMIT:
        long[key] = value
        return "see below"
    return f"`{text}`"


def render(schema: Mapping[str, Any]) -> str:
    """The whole reference: the header, then one table per top-level key (scalar top-level keys share one)."""
    out = [HEADER]
    top = schema.get("properties") or {}
    scalars = [name for name, sub in top.items() if not _is_section(sub)]
    if scalars:
        out.append(_section("Top level", "", {"properties": {n: top[n] for n in scalars}}, top_level=True))
    for name, sub in top.items():
        if _is_section(sub):
            out.append(_section(f"`{name}`", name + ".", sub))
    return "\n".join(out)


def _section(title: str, prefix: str, schema: Mapping[str, Any], top_level: bool = False) -> str:
    lines = [f"## {title}", ""]
    if not top_level and schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    long: dict[str, Any] = {}
    for key, sub in walk(schema, prefix):
        lines.append(f"| `{key}` | {_cell(type_name(sub))} | {_cell(default_cell(key, sub, long))} | "
                     f"{_cell(sub.get('description', ''))} |")
        if "additionalProperties" in sub and isinstance(sub["additionalProperties"], Mapping):
            entry = sub["additionalProperties"]
            for sub_key, leaf in walk(entry, f"{key}.<name>."):
                lines.append(f"| `{sub_key}` | {_cell(type_name(leaf))} | (required) | "
                             f"{_cell(leaf.get('description', ''))} |")
    for key, value in long.items():
        block = yaml.safe_dump(_nest(key, value), sort_keys=False, default_flow_style=None, width=200)
        lines += ["", f"Default of `{key}`:", "", "```yaml", block.rstrip(), "```"]
    lines.append("")
    return "\n".join(lines)


def _nest(key: str, value: Any) -> Any:
    """`value` placed under its dotted `key`, so the block can be pasted into a config file."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return json.loads(json.dumps(value))  # plain dicts and lists for the YAML dump


def main() -> None:
    sys.stdout.write(render(load_schema()))


if __name__ == "__main__":
    main()
