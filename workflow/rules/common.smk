# Shared set-up for all stages (config validation, path helpers).
import os
import sys

from snakemake.utils import min_version

from cxrdenoise import layout
from cxrdenoise.config import literature_sigmas, noise_means, validate_config
from cxrdenoise.layout import sigma_label

min_version("9.0")

from cxrdenoise.errors import CxrError

# Paths relative to this file, so the rule files also work when included from another Snakefile.
_WORKFLOW_DIR = os.path.dirname(str(workflow.current_basedir))
_SCHEMA = os.path.join(_WORKFLOW_DIR, "schemas", "config.schema.yaml")
try:
    # The one validation: the schema (filling in every default, as snakemake.utils.validate would), finite
    # numbers and the cross-key checks, one line naming the bad key instead of the full schema report; model
    # names and keywords are checked against the registry once, in the main process (it imports torch; jobs
    # re-parsing this file skip it).
    validate_config(config, _SCHEMA, check_models=workflow.is_main_process)
except CxrError as err:
    sys.exit(f"error: {err}")


from cxrdenoise.train.setups import SETUPS


wildcard_constraints:
    archive=r"images_\d{3}",
    sigma=r"\d+(\.\d+)?",
    shard=r"\d{5}",
    model=r"[a-z][a-z0-9_]*",
    setup="|".join(SETUPS),  # cxrdenoise.train.setups: the one list of set-ups
    rep=r"[1-9]\d*",


# The jobs' software under `snakemake --sdm conda` (path relative to workflow/rules/: workflow/envs/). Python and
# pip from conda-forge, then the post-deploy script installs requirements.lock and the project. Without --sdm conda
# the jobs run where Snakemake runs (make install).
ENV = "../envs/cxrdenoise.yaml"
RAW = config["data"]["raw_dir"]
DATA = layout.DATA  # every results path is built by cxrdenoise.layout (docs/results-layout.md)
SIGMAS = [sigma_label(s) for s in config["noise"]["sigmas"]]
# The literature's noise (zero mean, sigma 15/255 and 25/255): same noise stage and folders, scored by the classical
# baselines and the noisy input for Table VI only (no model is trained at it). NOISE_MEANS: sigma label -> mean.
LIT_SIGMAS = literature_sigmas(config)
NOISE_MEANS = noise_means(config)
# train.replicates (train.replicates_by_model per model and setup): each (model, sigma, setup) is trained N times,
# under .../{setup}/rep1 ... rep{N} (always present)
from cxrdenoise.train.settings import replicate_count
from cxrdenoise.train.setups import model_setups, replicates_for

try:
    REPS = [str(k) for k in range(1, replicate_count(config) + 1)]
    for _m in config["train"]["models"]:
        for _u in config["train"]["setups"]:
            replicates_for(config, _m, _u)
except CxrError as err:
    sys.exit(f"error: {err}")
N_SHARDS = -(-config["sample"]["n_images"] // config["shards"]["images_per_shard"])
SHARDS = [f"{k:05d}" for k in range(N_SHARDS)]


from cxrdenoise.provenance import CONFIG_HASH_ENV, hash_config

CONFIG_HASH = hash_config(config)
# Result files record the config hash through the environment rather than params: a changed param reruns a
# job, and editing an unrelated key should rerun nothing. Snakemake re-reads this file in every job (local
# or SLURM), so the variable is always set.
os.environ[CONFIG_HASH_ENV] = CONFIG_HASH

from cxrdenoise.config import write_resolved_config
from cxrdenoise.failures import failure_report
from cxrdenoise.summary import run_summary

# Written by workflow/Snakefile's onstart handler (every run that executes jobs; not dry-runs, lint or --report).
RESOLVED_CONFIG = "results/config.resolved.yaml"


def final_targets():
    """The workflow's final targets (the inputs of `all` in workflow/Snakefile), each stage's own list, made in
    the stage's own file."""
    return [
        *TRAIN_RECORDS,  # train.smk
        *EVAL_SUMMARIES,  # evaluate.smk
        *CLASSICAL_SUMMARIES,  # classical.smk
        *REPORT_TARGETS,  # report.smk
        *PRIVACY_TARGETS,  # privacy.smk
        *FEDERATED_TARGETS,  # federated.smk (none when federated.enabled is false)
    ]


def configfile_args():
    """The --configfile arguments of this run, for the commands the summary suggests."""
    files = [os.path.relpath(str(f)) for f in workflow.overwrite_configfiles]
    files = [f if not f.startswith("..") else str(a) for f, a in zip(files, workflow.overwrite_configfiles)]
    return f"--configfile {' '.join(files)}" if files else ""


def image_roots():
    """Folders the inventory walks, and the files that must exist first, for the configured source."""
    source = config["data"]["source"]
    if source == "nih":
        archives = list(config["data"]["nih"]["archives"])
        return (
            [f"{RAW}/nih/images/{a}" for a in archives],
            [f"{RAW}/nih/images/{a}.done.json" for a in archives],
        )
    if source == "synthetic":
        return [f"{RAW}/synthetic/images"], [f"{RAW}/synthetic/Data_Entry_synthetic.csv"]
    return [config["data"]["local"]["image_dir"]], []


def metadata_csv():
    source = config["data"]["source"]
    if source == "synthetic":
        return f"{RAW}/synthetic/Data_Entry_synthetic.csv"
    return config["data"][source]["metadata_csv"]


def source_listing(wildcards):
    """Digest of the inventory's inputs that the workflow does not make itself (a local folder's PNG listing
    with names, sizes and mtimes; the metadata CSV). As a param of the inventory it re-runs the inventory when
    the user removes, adds or fixes a file (no absolute path in params, only the digest)."""
    from cxrdenoise.inventory import listing_digest

    source = config["data"]["source"]
    roots = [r for r in image_roots()[0] if r] if source == "local" else []
    return listing_digest(roots, [metadata_csv()] if source != "synthetic" else [])


def test_list():
    source = config["data"]["source"]
    if config["split"]["mode"] != "official" or source == "synthetic":
        return None
    return config["data"][source]["test_list"]


def optional_arg(flag, value):
    return f"{flag} {value}" if value else ""


# Input lists and report() wrappers for the tables and figures (report.smk).


def run_reps(model, setup, sigma, reps=None):
    """Replicate labels of (model, setup, sigma): `reps` when given, else 1 .. train.replicates_by_model / replicates."""
    return reps or [str(k) for k in range(1, replicates_for(config, model, setup, sigma) + 1)]


def train_records(models, sigmas, setups, reps=None):
    """record.json of every replicate (all of run_reps unless `reps` is given) of each (model, sigma, setup)."""
    return [layout.train_file(m, s, u, k, "record.json")
            for s in sigmas for m in models for u in model_setups(config, m, setups) for k in run_reps(m, u, s, reps)]


def eval_files(models, sigmas, setups, name="summary.json", reps=None):
    return [layout.eval_file(m, s, u, k, name)
            for s in sigmas for m in models for u in model_setups(config, m, setups) for k in run_reps(m, u, s, reps)]


def eval_runs_by_count():
    """{replicate count: [(model, sigma, setup), ...]} of every trained run: evaluate.smk has one rule per count."""
    runs = {}
    for s in SIGMAS:
        for m in config["train"]["models"]:
            for u in model_setups(config, m, config["train"]["setups"]):
                runs.setdefault(len(run_reps(m, u, s)), []).append((m, s, u))
    return runs


def noisy_eval_files(sigmas, name="summary.json"):
    return [layout.noisy_eval_file(s, name) for s in sigmas]


def classical_files(methods, sigmas, name="summary.json"):
    """Merged classical-baseline results of `methods` x `sigmas` (classical.smk writes, tables/figures read)."""
    return [layout.classical_file(m, s, name) for s in sigmas for m in methods]


# Titles of the report items (labels shown in the report's item lists).
TABLE_TITLES = {
    "table3": ("Table III", "denoising quality, 1 GPU runs, with the study's values"),
    "table4": ("Table IV", "every noise level x model x setup: quality and training time"),
    "table5": ("Table V", "training setups compared at 10 % noise: time saving"),
    "table6": ("Table VI", "literature comparison (quoted rows marked), classical baselines and ours measured"),
    "claims": ("Claims", "a verdict for every claim of the study, from this pipeline's measurements"),
    "comparisons": ("Comparisons", "paired differences between models and set-ups, patient level"),
    "privacy": ("Privacy", "patient re-identification from clean, obfuscated and denoised images"),
    "federated": ("Federated", "FedAvg over patient-partitioned sites beside centralized and single-site training"),
}


# Titles of the report's figures that are not the study's (label shown in the report's item lists).
FIGURE_TITLES = {
    "psnr_sigma": ("PSNR vs σ", "test-set PSNR against noise level per method: classical baselines, ours, none"),
}


def federated_sigma():
    """The federated stage's noise level label: federated.sigma, else the first of noise.sigmas."""
    sigma = config["federated"]["sigma"]
    return sigma_label(sigma) if sigma is not None else SIGMAS[0]


def federated_claim_files():
    """per_image.csv of the federated global model, then of each site alone: the claims table's federated rows
    (none when federated.enabled is false)."""
    if not config["federated"]["enabled"]:
        return []
    sites = range(len(config["federated"]["sites"]))
    return [layout.federated_file(config["federated"]["model"], federated_sigma(), who, "eval", "per_image.csv")
            for who in ["global", *map(layout.site_name, sites)]]


def claims_settings_args():
    """config claims as the claims command's arguments (margins as metric=value)."""
    c = config["claims"]
    margins = lambda key: " ".join(f"{m}={v}" for m, v in c[key].items())  # noqa: E731
    return (f"--alpha {c['alpha']} --negligible {margins('negligible')} --minor-drop {margins('minor_drop')}"
            f" --min-patients {c['min_patients']}")


def nih_metadata_flag():
    """--nih-metadata for the table commands when a local folder comes with NIH's metadata CSV (its captions then
    name NIH ChestX-ray14 (local folder))."""
    local = config["data"]["source"] == "local" and bool(config["data"]["local"]["metadata_csv"])
    return "--nih-metadata" if local else ""


def privacy_results(name):
    """results/privacy/{attacker}/{name} of the configured attackers: privacy.smk writes them, the claims read them."""
    return [layout.privacy_file(attacker, name) for attacker in config["privacy"]["attackers"]]


def report_table(name):
    """report() wrapping for one table: the HTML is shown inline, the CSV offered for download."""
    caption = f"../report/{name}.rst"
    title, shows = TABLE_TITLES[name]
    return dict(
        html=report(layout.table_file(name, "html"), caption=caption, category="Tables", subcategory="Tables",
                    labels={"table": title, "shows": shows}),
        csv=report(layout.table_file(name, "csv"), caption=caption, category="Tables", subcategory="CSV",
                   labels={"table": title, "shows": shows}),
        md=layout.table_file(name, "md"),
        tex=layout.table_file(name, "tex"),
    )


def report_figure(name, caption, labels=None):
    return dict(
        png=report(layout.figure_file(name, "png"), caption=caption, category="Figures",
                   labels=labels or {"figure": name}),
        pdf=layout.figure_file(name, "pdf"),
    )


# The run's own invocation, for the commands errors print (cxrdenoise.shard_integrity.fix_hint): its -s, -d,
# --configfile, --config and --profile as typed (absolute paths when snakemake was not started from a command
# line), exported so that local jobs and SLURM jobs (sbatch --export=ALL) name the run's config files, never
# the study defaults. Set by the main process only: a job's snakemake keeps the value it inherited.
import json

from cxrdenoise.shard_integrity import RUN_OPTIONS_ENV
from cxrdenoise.summary import is_snakemake_argv, run_options

if workflow.is_main_process:
    if is_snakemake_argv(sys.argv):
        _run_options = run_options(sys.argv)
    else:
        _run_options = ["-s", os.path.abspath(workflow.main_snakefile), "-d", os.getcwd()]
        _run_options += ["--configfile", *map(os.path.abspath, map(str, workflow.overwrite_configfiles))] \
            if workflow.overwrite_configfiles else []
    os.environ[RUN_OPTIONS_ENV] = json.dumps(_run_options)

# Job logs as they were before this run (path -> mtime, size, inode), so the failure report (workflow/Snakefile onerror)
# quotes only logs this run wrote, and says "no log for this run" for a job that failed before writing its log
# (e.g. an sbatch submission that failed) instead of quoting an earlier run's line.
from cxrdenoise.failures import log_snapshot

LOGS_BEFORE_RUN = log_snapshot("results/logs") if workflow.is_main_process else {}
