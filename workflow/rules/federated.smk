# Federated stage (issue 15): FedAvg/FedProx on Flower over patient-disjoint sites of the train split, with one
# SuperLink and one SuperNode per site as separate processes on this machine (TLS with a CA made per run),
# each site trained alone as a baseline, every model scored by the project's evaluation on the test split,
# then results/tables/federated.* and results/figures/federated.*. In rule all only when federated.enabled.
import json as _json
import shlex as _shlex

_FED = config["federated"]
FED_MODEL = _FED["model"]
FED_SIGMA = federated_sigma()
FED_SITES = list(range(len(_FED["sites"])))
# results/federated/{model}/sigma{sigma}/{global,site{k}}/... (cxrdenoise.layout)
fed_file = lambda who, *names: layout.federated_file(FED_MODEL, FED_SIGMA, who, *names)
_SITE = layout.site_name("{site}")  # the site{k} folder of the per-site rules


# The centralized comparison: the gpu1 run (replicate 1) of the same model and noise level.
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
        clean=layout.clean_manifest(),
        noisy=layout.noisy_manifest(FED_SIGMA),
        split=layout.data_file("split.csv"),
    output:
        sites=layout.federated_sites_file("sites.csv"),
        counts=layout.federated_sites_file("site_counts.json"),
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
        clean=layout.clean_manifest(),
        noisy=layout.noisy_manifest(FED_SIGMA),
    output:
        best=fed_file("global", "best.pt"),
        rounds=fed_file("global", "rounds.json"),
        summary=fed_file("global", "summary.json"),
        sessions=fed_file("global", "sessions.json"),
        spec=fed_file("global", "spec.json"),
        counts=fed_file("global", "site_counts.json"),
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
        clean=layout.clean_manifest(),
        noisy=layout.noisy_manifest(FED_SIGMA),
    output:
        best=fed_file(_SITE, "best.pt"),
        record=fed_file(_SITE, "record.json"),
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
        checkpoint=fed_file("{which}", "best.pt"),
        clean=layout.clean_manifest(),
        noisy=layout.noisy_manifest(FED_SIGMA),
    output:
        summary=fed_file("{which}", "eval", "summary.json"),
        per_image=fed_file("{which}", "eval", "per_image.csv"),
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
    global_eval=fed_file("global", "eval", "summary.json"),
    site_evals=[fed_file(layout.site_name(k), "eval", "summary.json") for k in FED_SITES],
    site_records=[fed_file(layout.site_name(k), "record.json") for k in FED_SITES],
    noisy=layout.noisy_eval_file(FED_SIGMA, "summary.json"),
    split=layout.data_file("split.csv"),  # images and patients per split in the caption
    central=[layout.eval_file(FED_MODEL, FED_SIGMA, "gpu1", 1, "summary.json"),
             layout.train_file(FED_MODEL, FED_SIGMA, "gpu1", 1, "record.json")] if FED_CENTRAL else [],
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
    *(layout.table_file("federated", ext) for ext in ("csv", "md", "tex", "html")),
    *(layout.figure_file("federated", ext) for ext in ("png", "pdf")),
] if _FED["enabled"] else []
