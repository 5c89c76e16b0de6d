"""Loading and validating the pipeline config.

Snakemake's own validation prints the whole JSON-schema report; users need one line that names the key and
the bad value, so validation errors are re-raised in that form.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import CxrError
from .naming import sigma_label  # used below, and re-exported: the workflow and older callers import it here

if TYPE_CHECKING:  # jsonschema and yaml are imported where used: every job imports this module, few validate
    import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


# a number's bounds in the schema, as the fix of a value outside them says them
_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _one_line(error: jsonschema.ValidationError) -> str:
    message = " ".join(error.message.split())  # schema messages may span lines
    if error.validator in _BOUNDS:  # say the allowed range, e.g. "; give a number > 0 and < 1"
        sub = error.schema
        if error.instance == error.validator_value:  # at an exclusive bound ("less than or equal to" misleads)
            message = f"{error.instance} is out of range"
        else:
            message = message.replace(" or equal to", "")
        types = [sub.get("type")] if isinstance(sub.get("type"), str) else list(sub.get("type") or [])
        kind = "an integer" if "integer" in types else "a number"
        message += f"; give {kind} " + " and ".join(f"{op} {sub[k]}" for k, op in _BOUNDS.items() if k in sub)
    return f"config key {_key_path(error)}: {message}"


def validate_config(
    config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH, check_models: bool = True
) -> dict[str, Any]:
    """Validate `config` in place, filling in every key it leaves out with the schema's default (as
    `snakemake.utils.validate` does; the workflow validates only here, once, in common.smk); raise CxrError naming
    the first bad key.

    Beyond the schema: every number must be finite (JSON schema lets NaN pass every bound), and model names
    and keywords are checked against the registry (`check_models`; it imports torch, so Snakemake skips it in
    the jobs it re-parses the workflow for). Everything is checked before any job runs.
    """
    import jsonschema
    import yaml

    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    validator_cls = _filling_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise CxrError(_one_line(errors[0]))
    check_finite(config)
    if check_models:
        check_model_names(config)
    _check_consistency(config)
    return config


def _filling_defaults(validator_cls):
    """`validator_cls` that sets each missing property to a copy of its schema default before checking it: the
    jsonschema FAQ recipe Snakemake's `validate(..., set_default=True)` uses, so both fill the same keys (a
    nested object is created only where its parent schema gives `default: {}`)."""
    import jsonschema

    check_properties = validator_cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if validator.is_type(instance, "object"):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": properties})


def check_finite(value: Any, key: str = "") -> None:
    """CxrError naming the first NaN or infinite number anywhere in the config (lists by index)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CxrError(f"config key {key or '(top level)'}: {value} is not a finite number; give a finite value")
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return
    for sub, item in items:
        check_finite(item, f"{key}.{sub}" if key else str(sub))


def check_model_names(config: Mapping[str, Any]) -> None:
    """Model names (train.models, the keys of `models:`, train.setups_by_model and train.replicates_by_model,
    federated.model) against the registry, each model's keywords against its signature and then against the
    model's own constraints at resize.size (its `check_config`), and federated.model against what federated
    training can train, so a typo or an impossible value stops the run at start-up instead of inside a job."""
    from .models import available_models, check_model_config, model_kwarg_names  # imports torch: only when asked
    from .models.blocks import KeywordError
    from .models.registry import model_class

    known = available_models()
    train = config["train"]
    names = [(f"train.models.{i}", name) for i, name in enumerate(train["models"])]
    names += [(f"models.{name}", name) for name in config["models"]]
    names += [(f"train.{section}.{name}", name)
              for section in ("setups_by_model", "replicates_by_model") for name in train[section]]
    names += [("federated.model", config["federated"]["model"])]
    for key, name in names:
        if name not in known:
            raise CxrError(f"config key {key}: unknown model {name!r}; available: {', '.join(known)}")
    configured = config["models"]
    for key, name in names:
        if key.startswith(("train.models.", "federated.")) and name not in configured:
            raise CxrError(f"config key {key}: model {name!r} has no entry under `models:`; add models.{name}: {{}}")
    for name, kwargs in config["models"].items():
        valid = model_kwarg_names(name)
        for arg in kwargs or {}:
            if arg not in valid:
                raise CxrError(
                    f"config key models.{name}.{arg}: model {name!r} has no argument {arg!r}; "
                    f"valid: {', '.join(valid) or 'none'}"
                )
        try:
            check_model_config(name, kwargs or {}, config["resize"]["size"])
        except KeywordError as err:
            key = f"models.{name}.{err.keyword}" if err.keyword else "resize.size"
            raise CxrError(f"config key {key}: {err.problem}") from None
    fed = config["federated"]["model"]
    if getattr(model_class(fed), "trains_on_target", False):  # its training loss is its own forward(noisy, clean)
        usable = [name for name in known if not getattr(model_class(name), "trains_on_target", False)]
        raise CxrError(f"config key federated.model: {fed!r} cannot be trained federated (the sites train the L1 "
                       f"loss of model(noisy); {fed!r} trains on its own diffusion loss); give one of "
                       f"{', '.join(usable)}")


def noise_means(config: Mapping[str, Any]) -> dict[str, float]:
    """Noise mean per sigma label: `noise.sigmas` at `noise.mean` (the study's setting), then
    `noise.literature.sigmas` at its mean (zero: the literature's). One noisy folder per sigma holds one mean, so a
    sigma in both lists is refused."""
    noise = config["noise"]
    means = {sigma_label(s): float(noise["mean"]) for s in noise["sigmas"]}
    literature = noise["literature"]
    for s in literature["sigmas"]:
        if sigma_label(s) in means:
            raise CxrError(f"config key noise.literature.sigmas: {s} is also in noise.sigmas; one folder "
                           f"results/data/noisy/sigma{sigma_label(s)} holds one noise mean: give another sigma")
        means[sigma_label(s)] = float(literature["mean"])
    return means


# the noise types the workflow makes at noise.sigmas: workflow/rules/noise.smk passes only --mean so far
WORKFLOW_NOISE_TYPES = ("gaussian_study",)


def check_noise_type(config: Mapping[str, Any]) -> None:
    """noise.type names a registered noise type (cxrdenoise.noise: numpy only) that the workflow can make at
    noise.sigmas; one line naming the key, the value and the registered names otherwise."""
    from .noise import available_noises

    name, known = config["noise"]["type"], available_noises()
    if name not in known:
        raise CxrError(f"config key noise.type: unknown noise type {name!r}; registered: {', '.join(known)}")
    if name == "gaussian_literature":
        raise CxrError("config key noise.type: 'gaussian_literature' is the literature's setting (noise.literature: "
                       f"its mean and sigmas); give one of {', '.join(WORKFLOW_NOISE_TYPES)}")
    if name not in WORKFLOW_NOISE_TYPES:
        raise CxrError(f"config key noise.type: {name!r} is registered, but the workflow makes only "
                       f"{', '.join(WORKFLOW_NOISE_TYPES)} so far (workflow/rules/noise.smk passes no noise type)")


def literature_sigmas(config: Mapping[str, Any]) -> list[str]:
    """Sigma labels of the literature's noise setting (noise.literature.sigmas), in config order."""
    return [sigma_label(s) for s in config["noise"]["literature"]["sigmas"]]


def _check_consistency(config: Mapping[str, Any]) -> None:
    """Rules the schema cannot express."""
    _check_setup_names("train.setups", config["train"]["setups"])
    for model, runs in config["train"]["replicates_by_model"].items():
        _check_setup_names(f"train.replicates_by_model.{model}", list(runs), by_index=False)
    setups = config["train"]["setups"]
    if config["privacy"]["setup"] not in setups:
        raise CxrError(f"config key privacy.setup: {config['privacy']['setup']!r} is not in train.setups "
                       f"({', '.join(setups)}), so the privacy stage would schedule training runs of its own under "
                       f"it; give one of {', '.join(setups)}")
    check_noise_type(config)
    noise_means(config)
    fed_sigma = config["federated"]["sigma"]
    trained = [sigma_label(s) for s in config["noise"]["sigmas"]]
    if fed_sigma is not None and sigma_label(fed_sigma) not in trained:
        raise CxrError(f"config key federated.sigma: {fed_sigma} is not a noise level models are trained at; give "
                       f"one of noise.sigmas ({', '.join(trained)}), or null for the first")
    fractions = config["split"]["fractions"]
    if fractions["train"] + fractions["val"] >= 1:
        raise CxrError(
            f"config key split.fractions: train + val = {fractions['train'] + fractions['val']:g} "
            "leaves nothing for test (must be < 1)"
        )
    source = config["data"]["source"]
    if source == "local" and not config["data"]["local"]["image_dir"]:
        raise CxrError("config key data.local.image_dir: required when data.source is 'local'")
    if config["split"]["mode"] == "official" and source != "synthetic":
        if not config["data"][source]["test_list"]:
            raise CxrError(f"config key data.{source}.test_list: required when split.mode is 'official'")
    labels = [sigma_label(s) for s in config["noise"]["sigmas"]]
    if len(set(labels)) != len(labels):
        raise CxrError(f"config key noise.sigmas: duplicate noise levels {labels}")
    from .train.setups import get_setup  # no torch import: safe for Snakemake's parse

    train = config["train"]
    _check_setups_by_model(train)
    if train["sync_bn"] and train["device"] == "cpu" and any(get_setup(s).ddp for s in train["setups"]):
        raise CxrError(
            "config key train.sync_bn: torch's SyncBatchNorm needs CUDA, but train.device is 'cpu' with a DDP setup; "
            "set train.sync_bn: false"
        )


def _check_setup_names(key: str, names: list[str], by_index: bool = True) -> None:
    """Every name a set-up of cxrdenoise.train.setups.SETUPS, the one list of them (the schema holds no copy);
    the error names `key.<index>` of a list, or `key.<name>` of a mapping's keys (`by_index` False)."""
    from .train.setups import SETUPS  # no torch import

    for i, name in enumerate(names):
        if name not in SETUPS:
            raise CxrError(f"config key {key}.{i if by_index else name}: unknown set-up {name!r}; "
                           f"available: {', '.join(SETUPS)}")


def _check_setups_by_model(train: Mapping[str, Any]) -> None:
    """A trained model that train.setups_by_model narrows keeps at least one setup of train.setups. (Entries for
    registered but untrained models and registered setups outside train.setups are ignored, so narrowing
    train.models or train.setups in an override, e.g. on top of the demo's config, needs no edit here; unknown
    model names are refused by check_model_names, unknown set-ups here.)"""
    setups = list(train["setups"])
    for model, only in train["setups_by_model"].items():
        _check_setup_names(f"train.setups_by_model.{model}", only)
        if model in train["models"] and not any(u in setups for u in only):
            raise CxrError(f"config key train.setups_by_model.{model}: none of {', '.join(only)} is in train.setups "
                           f"({', '.join(setups)}), so {model!r} would train under no setup; list one of those")


RESOLVED_HEADER = """\
# The validated config of the last Snakemake run, with every default filled in (written by cxrdenoise at start-up).
# config_hash: {config_hash}
# Re-run exactly this configuration with: snakemake --configfile results/config.resolved.yaml (same hash).
"""


def write_resolved_config(config: Mapping[str, Any], path: str | Path, config_hash: str) -> bool:
    """Write the resolved config and its hash atomically; untouched (False) when the file already says it."""
    import yaml

    from .atomic import write_text  # late import keeps this module light for Snakemake's parse

    text = RESOLVED_HEADER.format(config_hash=config_hash) + yaml.safe_dump(
        json_plain(config), sort_keys=False, default_flow_style=False
    )
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    write_text(path, text)
    return True


def read_resolved_hash(path: str | Path) -> str | None:
    """The config hash recorded in a resolved config's header, or None."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("# config_hash: "):
            return line.split(": ", 1)[1].strip()
    return None


def json_plain(value: Any) -> Any:
    """Plain dicts and lists (Snakemake's config may hold its own mapping types) for a safe YAML dump."""
    if isinstance(value, Mapping):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_plain(v) for v in value]
    return value
