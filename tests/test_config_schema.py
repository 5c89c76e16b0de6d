"""One source per config fact: the schema holds every key's default and description, Snakemake's validate and
ours fill the same defaults, no config file or module default restates one without this file holding them
equal, and config/README.md is the schema rendered."""

import copy
import dataclasses
import inspect

import pytest
import yaml
from snakemake.utils import validate as snakemake_validate

from config_files import load_config
from cxrdenoise.config import SCHEMA_PATH, validate_config
from cxrdenoise.config_reference import load_schema, render, walk
from cxrdenoise.errors import CxrError
from snakemake_run import REPO

SCHEMA = load_schema()
CONFIGS = {
    "study": [REPO / "config" / "config.yaml"],
    "demo": [REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml"],
}


def _schema_default(key: str):
    """The default of a dotted key, from its own `default` or its parents' (a nested object's is `{}`)."""
    sub = SCHEMA
    for part in key.split("."):
        sub = sub["properties"][part]
    if sub.get("default") == {} and "properties" in sub:
        return {name: _schema_default(f"{key}.{name}") for name in sub["properties"]}
    return sub["default"]


def _leaves(value, prefix=()):
    """(key path, value) of every non-mapping value in a nested mapping (a path is a tuple: keys such as the
    sigma 0.1 of train.replicates_by_model are not strings and hold a dot)."""
    for key, sub in value.items():
        path = (*prefix, key)
        if isinstance(sub, dict) and sub:
            yield from _leaves(sub, path)
        else:
            yield path, sub


@pytest.mark.parametrize("key, sub", list(walk(SCHEMA)), ids=[k for k, _ in walk(SCHEMA)])
def test_every_key_has_a_default_and_a_description(key, sub):
    assert "default" in sub, f"schema key {key} has no default"
    assert " ".join(str(sub.get("description", "")).split()), f"schema key {key} has no description"
    if "properties" in sub:  # an object's keys are filled only when the object itself is created
        assert sub["default"] == {}, f"schema key {key}: an object's default must be {{}} (its keys hold theirs)"
        assert "required" not in sub, f"schema key {key}: a key with a default is never missing"
    entry = sub.get("additionalProperties")
    if isinstance(entry, dict):  # e.g. each archive of data.nih.archives
        for name, leaf in entry.get("properties", {}).items():
            assert leaf.get("description"), f"schema key {key}.<name>.{name} has no description"


def test_empty_config_resolves_to_every_default():
    config = validate_config({})
    for key, _ in walk(SCHEMA):
        node = config
        for part in key.split("."):
            node = node[part]
        assert node == _schema_default(key), key


@pytest.mark.parametrize("name", list(CONFIGS))
def test_snakemake_fills_the_same_defaults(name):
    """common.smk runs validate_config, then Snakemake's validate: both must give the same config, and either
    alone gives it too (so the rule files may read any key without a default of their own)."""
    raw = {}
    from snakemake.utils import update_config

    for path in CONFIGS[name]:
        update_config(raw, yaml.safe_load(path.read_text()) or {})
    ours = validate_config(copy.deepcopy(raw))
    theirs = copy.deepcopy(raw)
    snakemake_validate(theirs, str(SCHEMA_PATH))
    assert ours == theirs
    again = copy.deepcopy(ours)
    snakemake_validate(again, str(SCHEMA_PATH))
    assert again == ours


def test_defaults_fill_a_partly_given_section_and_are_copies():
    a = validate_config({"train": {"epochs": 3, "fast": {"compile": False}}})
    assert a["train"]["epochs"] == 3 and a["train"]["lr"] == _schema_default("train.lr")
    assert a["train"]["fast"]["compile"] is False
    assert a["train"]["fast"]["channels_last"] == _schema_default("train.fast.channels_last")
    a["noise"]["sigmas"].append(0.9)
    b = validate_config({})
    assert b["noise"]["sigmas"] == _schema_default("noise.sigmas")  # the schema's list was not shared
    with pytest.raises(CxrError, match=r"^config key privacy: None is not of type 'object'$"):
        validate_config({"privacy": None})  # a null section is named, not filled


@pytest.mark.parametrize("path, under", [("config/config.yaml", None), ("config/demo.yaml", "study")])
def test_config_files_set_only_what_differs_from_the_defaults(path, under, tmp_path):
    """A value whose removal leaves the resolved config unchanged restates a fact (the default, or the config it
    is layered on). Judged on the resolved config, because a mapping given in a file replaces its default whole
    (the demo's train.setups_by_model must name DnCNN again to keep it at gpu1)."""
    given = yaml.safe_load((REPO / path).read_text()) or {}
    layers = list(CONFIGS[under]) if under else []
    resolved = load_config(*layers, REPO / path)
    for key, value in _leaves(given):
        trimmed = copy.deepcopy(given)
        *parents, leaf = key
        node = trimmed
        for part in parents:
            node = node[part]
        del node[leaf]
        (tmp_path / "trimmed.yaml").write_text(yaml.safe_dump(trimmed))
        assert load_config(*layers, tmp_path / "trimmed.yaml") != resolved, (
            f"{path}: {'.'.join(map(str, key))}: {value!r} restates the value it already has")


def test_study_config_is_the_schema_defaults():
    assert load_config(REPO / "config" / "config.yaml") == validate_config({})


# --- module-level defaults that restate the schema's --------------------------------------------------------

TRAIN_SETTINGS_KEYS = {  # TrainSettings field -> config key
    "noise_mean": "noise.mean", "seed": "seed", "epochs": "train.epochs", "lr": "train.lr",
    "batch_per_gpu": "train.batch_per_gpu", "workers": "train.workers", "device": "train.device",
    "preload": "train.preload", "timing_exclusive": "train.timing_exclusive", "log_every": "train.log_every",
    "keep_last": "train.keep_last", "nodes": "train.nodes", "sync_bn": "train.sync_bn",
    "processes_per_node": "train.processes_per_node", "grad_clip": "train.grad_clip",
}
NOT_CONFIG_KEYS = {"threads", "replicate"}  # set per job by the rule, not from a config key


def test_train_settings_defaults_are_the_schemas():
    from cxrdenoise.train.settings import TrainSettings

    for field in dataclasses.fields(TrainSettings):
        if field.default is dataclasses.MISSING:
            continue  # required, or a default_factory (model_kwargs, fast: {} filled from the schema)
        assert field.name in TRAIN_SETTINGS_KEYS or field.name in NOT_CONFIG_KEYS, (
            f"TrainSettings.{field.name} has a default but no config key here")
        if field.name in TRAIN_SETTINGS_KEYS:
            assert field.default == _schema_default(TRAIN_SETTINGS_KEYS[field.name]), field.name


def test_fast_path_defaults_are_the_schemas():
    from cxrdenoise.train.fastpath import FAST_DEFAULTS

    assert FAST_DEFAULTS == _schema_default("train.fast")


def test_statistics_and_privacy_defaults_are_the_schemas():
    from cxrdenoise.privacy.claim import DEFAULT_MAX_AUC
    from cxrdenoise.stats import DEFAULT_RESAMPLES

    assert DEFAULT_RESAMPLES == _schema_default("evaluate.bootstrap_resamples")
    assert DEFAULT_MAX_AUC == _schema_default("privacy.claim_max_auc")


FUNCTION_DEFAULTS = [  # (module, function, keyword, config key): keyword defaults that restate the schema's
    ("cxrdenoise.download", "download", "retries", "data.nih.retries"),
    ("cxrdenoise.download", "download", "backoff", "data.nih.backoff_s"),
    ("cxrdenoise.download", "download", "timeout", "data.nih.timeout_s"),
    ("cxrdenoise.evaluate", "run_evaluation", "batch_size", "evaluate.batch_size"),
    ("cxrdenoise.evaluate", "run_evaluation", "figure_images", "evaluate.figure_images"),
    ("cxrdenoise.evaluate", "run_evaluation", "lpips_enabled", "evaluate.lpips"),
    ("cxrdenoise.privacy.metrics", "patient_bootstrap", "n_boot", "privacy.bootstrap"),
]


@pytest.mark.parametrize("module, function, keyword, key", FUNCTION_DEFAULTS)
def test_function_keyword_defaults_are_the_schemas(module, function, keyword, key):
    import importlib

    params = inspect.signature(getattr(importlib.import_module(module), function)).parameters
    assert params[keyword].default == _schema_default(key)


def test_every_model_keyword_is_in_the_schema_with_its_constructor_default():
    from cxrdenoise.models import available_models
    from cxrdenoise.models.registry import _lookup

    assert sorted(SCHEMA["properties"]["models"]["properties"]) == available_models()
    for name in available_models():
        params = inspect.signature(_lookup(name)).parameters
        assert {k: p.default for k, p in params.items()} == _schema_default(f"models.{name}"), name


# --- the reference ------------------------------------------------------------------------------------------


def test_config_readme_is_the_rendered_schema():
    committed = (REPO / "config" / "README.md").read_text()
    assert committed == render(SCHEMA), "config/README.md is stale: python -m cxrdenoise.config_reference > config/README.md"
    for key, _ in walk(SCHEMA):
        assert f"`{key}`" in committed
