# Federated stage (issue 15): FedAvg/FedProx on Flower over patient-disjoint sites of the train split, with one
# SuperLink and one SuperNode per site as separate processes on this machine (TLS with a CA made per run),
# each site trained alone as a baseline, every model scored by the project's evaluation on the test split,
# then results/tables/federated.* and results/figures/federated.*. In rule all only when federated.enabled.
import json as _json
import shlex as _shlex

FED = "results/federated"
_FED = config["federated"]
FED_MODEL = _FED["model"]
FED_SIGMA = federated_sigma()
FED_SITES = list(range(len(_FED["sites"])))
FED_DIR = federated_dir()


# The centralized comparison: the gpu1 run's evaluation of the same model and noise level. The one place that
# knows the train/eval result layout (with replicates, the rep0 folder below it).
centralized_eval_dir = lambda model, sigma: f"results/eval/{model}/sigma{sigma}/gpu1/rep1"
centralized_train_dir = lambda model, sigma: f"results/train/{model}/sigma{sigma}/gpu1/rep1"
FED_CENTRAL = "gpu1" in config["train"]["setups"] and FED_MODEL in config["train"]["models"]


_FED_SPEC = dict(
    data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
    sigma=FED_SIGMA,
    seed=config["seed"],
    sites=" ".join(f"{s:g}" for s in _FED["sites"]),
    mode=_FED["partition"]["mode"],
    column=f"--partition-column {_shlex.quote(_FED['partition']['column'])}" if _FED["partition"]["column"] else "",
)
_FED_TRAIN = dict(
    model=FED_MODEL,
    model_kwargs=_json.dumps(config["models"][FED_MODEL], sort_keys=True),
    rounds=_FED["rounds"],
    local_epochs=_FED["local_epochs"],
    lr=config["train"]["lr"],
    batch_size=config["train"]["batch_per_gpu"],
    strategy=_FED["strategy"],
    mu=_FED["mu"],
    dp=_json.dumps(_FED["dp"], sort_keys=True),
    device=config["train"]["device"],
    insecure="--insecure" if _FED["insecure"] else "",
    timeout_s=_FED["timeout_s"],
)
# The command-line arguments of the params above, written once: `cxrdenoise federated sites` takes the spec,
# `run` and `alone` the spec and the training settings (shell templates that Snakemake fills in per job).
_FED_SPEC_ARGS = (
    " --data-dir {params.data_dir:q} --sigma {params.sigma} --seed {params.seed}"
    " --sites {params.sites} --partition-mode {params.mode} {params.column}"
)
_FED_TRAIN_ARGS = (
    " --sites-csv {input.sites:q} --model {params.model} --model-kwargs {params.model_kwargs:q}"
    " --rounds {params.rounds} --local-epochs {params.local_epochs} --lr {params.lr}"
    " --batch-size {params.batch_size} --strategy {params.strategy} --mu {params.mu} --dp {params.dp:q}"
    " --device {params.device} {params.insecure} --timeout-s {params.timeout_s}"
)
_FED_OUT = " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule federated_sites:
    input:
        clean=f"{DATA}/clean/manifest.json",
        noisy=f"{DATA}/noisy/sigma{FED_SIGMA}/manifest.json",
        split=f"{DATA}/split.csv",
    output:
        sites=f"{FED}/sites/sites.csv",
        counts=f"{FED}/sites/site_counts.json",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.sites),
        **_FED_SPEC,
    conda:
        ENV
    log:
        "results/logs/federated/sites.log",
    shell:
        f"cxrdenoise federated sites{_FED_SPEC_ARGS}{_FED_OUT}"


rule federated_run:
    input:
        sites=rules.federated_sites.output.sites,
        clean=f"{DATA}/clean/manifest.json",
        noisy=f"{DATA}/noisy/sigma{FED_SIGMA}/manifest.json",
    output:
        best=f"{FED_DIR}/global/best.pt",
        rounds=f"{FED_DIR}/global/rounds.json",
        summary=f"{FED_DIR}/global/summary.json",
        sessions=f"{FED_DIR}/global/sessions.json",
        spec=f"{FED_DIR}/global/spec.json",
        counts=f"{FED_DIR}/global/site_counts.json",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.best),
        **_FED_SPEC,
        **_FED_TRAIN,
    threads: len(FED_SITES) + 1
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    conda:
        ENV
    log:
        "results/logs/federated/run.log",
    benchmark:
        "results/benchmarks/federated/run.tsv"
    shell:
        f"cxrdenoise federated run{_FED_SPEC_ARGS}{_FED_TRAIN_ARGS}{_FED_OUT}"


rule federated_alone:
    input:
        sites=rules.federated_sites.output.sites,
        clean=f"{DATA}/clean/manifest.json",
        noisy=f"{DATA}/noisy/sigma{FED_SIGMA}/manifest.json",
    output:
        best=f"{FED_DIR}/site{{site}}/best.pt",
        record=f"{FED_DIR}/site{{site}}/record.json",
    wildcard_constraints:
        site=r"\d+",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.best),
        **_FED_SPEC,
        **_FED_TRAIN,
    threads: 1
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    conda:
        ENV
    log:
        "results/logs/federated/site{site}_alone.log",
    benchmark:
        "results/benchmarks/federated/site{site}_alone.tsv"
    shell:
        f"cxrdenoise federated alone --site {{wildcards.site}}{_FED_SPEC_ARGS}{_FED_TRAIN_ARGS}{_FED_OUT}"


rule federated_evaluate:
    input:
        checkpoint=f"{FED_DIR}/{{which}}/best.pt",
        clean=f"{DATA}/clean/manifest.json",
        noisy=f"{DATA}/noisy/sigma{FED_SIGMA}/manifest.json",
    output:
        summary=f"{FED_DIR}/{{which}}/eval/summary.json",
        per_image=f"{FED_DIR}/{{which}}/eval/per_image.csv",
    wildcard_constraints:
        which=r"global|site\d+",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
        batch_size=config["evaluate"]["batch_size"],
        lpips="" if config["evaluate"]["lpips"] else "--no-lpips",
        device=config["train"]["device"],
    threads: 1
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    conda:
        ENV
    log:
        "results/logs/federated/evaluate_{which}.log",
    benchmark:
        "results/benchmarks/federated/evaluate_{which}.tsv"
    shell:
        "cxrdenoise federated evaluate --checkpoint {input.checkpoint:q} --data-dir {params.data_dir:q}"
        " --out-dir {params.out_dir:q} --device {params.device} --batch-size {params.batch_size}"
        " {params.lpips} > {log:q} 2>&1"


_FED_TABLE_INPUT = dict(
    run=rules.federated_run.output.summary,
    global_eval=f"{FED_DIR}/global/eval/summary.json",
    site_evals=expand(f"{FED_DIR}/site{{site}}/eval/summary.json", site=FED_SITES),
    site_records=expand(f"{FED_DIR}/site{{site}}/record.json", site=FED_SITES),
    noisy=f"results/eval/noisy/sigma{FED_SIGMA}/summary.json",
    split=f"{DATA}/split.csv",  # images and patients per split in the caption
    central=[f"{centralized_eval_dir(FED_MODEL, FED_SIGMA)}/summary.json",
             f"{centralized_train_dir(FED_MODEL, FED_SIGMA)}/record.json"] if FED_CENTRAL else [],
)


rule federated_table:
    input:
        **_FED_TABLE_INPUT,
    output:
        **report_table("federated"),
    params:
        run_dir=lambda wildcards, input: os.path.dirname(input.run),
        global_eval=lambda wildcards, input: os.path.dirname(input.global_eval),
        site_evals=lambda wildcards, input: [os.path.dirname(p) for p in input.site_evals],
        noisy=lambda wildcards, input: os.path.dirname(input.noisy),
        central=lambda wildcards, input: (f"--centralized-eval {os.path.dirname(input.central[0])}"
                                          f" --centralized-record {input.central[1]}") if input.central else "",
        source=config["data"]["source"],
        seed=config["seed"],
        nih=nih_metadata_flag(),
    conda:
        ENV
    log:
        "results/logs/report/federated_table.log",
    benchmark:
        "results/benchmarks/report/federated_table.tsv"
    shell:
        "cxrdenoise federated table --run-dir {params.run_dir:q} --global-eval {params.global_eval:q}"
        " --site-evals {params.site_evals:q} --site-records {input.site_records:q} --noisy-eval {params.noisy:q}"
        " {params.central} --data-source {params.source} --split-csv {input.split:q} {params.nih} --seed {params.seed}"
        " --out-prefix results/tables/federated > {log:q} 2>&1"


rule federated_figure:
    input:
        rounds=rules.federated_run.output.rounds,
    output:
        **report_figure("federated", "../report/federated.rst"),
    params:
        run_dir=lambda wildcards, input: os.path.dirname(input.rounds),
        source=config["data"]["source"],
    conda:
        ENV
    log:
        "results/logs/report/federated_figure.log",
    benchmark:
        "results/benchmarks/report/federated_figure.tsv"
    shell:
        "cxrdenoise federated figure --run-dir {params.run_dir:q} --data-source {params.source}"
        " --out-prefix results/figures/federated > {log:q} 2>&1"


FEDERATED_TARGETS = [
    *(f"results/tables/federated.{ext}" for ext in ("csv", "md", "tex", "html")),
    *(f"results/figures/federated.{ext}" for ext in ("png", "pdf")),
] if _FED["enabled"] else []
