# Tables III-VI, the claims table, Figures 4-7 and the training curves: aggregation only (no training, no evaluation here).
# Each rule depends on exactly the result files its table or figure shows, so re-running one noise level or
# set-up rebuilds only what shows it. Outputs are wrapped in report() for `snakemake --report`, which must be
# run as a separate command after the workflow (a rule cannot build the report of its own workflow):
#   snakemake --cores N all && snakemake --report results/report.html
# The HTML table of each rule is what the report shows inline; CSV, Markdown and LaTeX sit beside it.
_REPORT_MODELS = list(config["train"]["models"])
_REPORT_SETUPS = list(config["train"]["setups"])
_REPORT_DATA_SOURCE = config["data"]["source"]
# What every table states it measured (tables.protocol) and the seeded patient bootstrap (cxrdenoise.stats).
# A local folder with NIH's metadata CSV is named NIH ChestX-ray14 (local folder) and counts as the study's data.
_REPORT_LABELS = f"--data-source {_REPORT_DATA_SOURCE} --image-size {config['resize']['size']} {nih_metadata_flag()}"
# Every table's caption states images and patients per split and the largest test patient's share (split.smk).
_REPORT_SPLIT = layout.data_file("split.csv")
_REPORT_STATS = (f"--bootstrap-resamples {config['evaluate']['bootstrap_resamples']}"
                 f" --seed {config['seed']}")
# The study's Table V and Figure 4 are at 10 % noise; Table VI at 20 % and 30 %. Other sigma lists fall back.
_TABLE5_SIGMA = "0.1" if "0.1" in SIGMAS else SIGMAS[0]
_TABLE6_SIGMAS = [s for s in SIGMAS if s in ("0.2", "0.3")] or SIGMAS
# Figures 5, 6, 7 show sigma 0.1, 0.2, 0.3 as in the study; any other sigma gets figure 8, 9, ...
_EXAMPLE_FIGS = {s: n for s, n in {"0.1": 5, "0.2": 6, "0.3": 7}.items() if s in SIGMAS}
for _s in SIGMAS:
    if _s not in _EXAMPLE_FIGS:
        _EXAMPLE_FIGS[_s] = max([7, *_EXAMPLE_FIGS.values()]) + 1
_FIG_SIGMA = {str(n): s for s, n in _EXAMPLE_FIGS.items()}


rule table3:
    input:
        split=_REPORT_SPLIT,
        records=train_records(_REPORT_MODELS, SIGMAS, ["gpu1"]),
        summaries=eval_files(_REPORT_MODELS, SIGMAS, ["gpu1"]),
        per_image=eval_files(_REPORT_MODELS, SIGMAS, ["gpu1"], "per_image.csv"),
        noisy=noisy_eval_files(SIGMAS),
        noisy_per_image=noisy_eval_files(SIGMAS, "per_image.csv"),
    output:
        **report_table("table3"),
    params:
        name="table3",
        labels=_REPORT_LABELS,
        stats=_REPORT_STATS,
    conda:
        ENV
    log:
        "results/logs/report/table3.log",
    benchmark:
        "results/benchmarks/report/table3.tsv"
    shell:
        "cxrdenoise tables {params.name} --out-prefix results/tables/{params.name}"
        " --split-csv {input.split:q}"
        " {params.labels} {params.stats} --records {input.records:q} --summaries {input.summaries:q}"
        " --per-image {input.per_image:q} {input.noisy_per_image:q} --noisy {input.noisy:q} > {log:q} 2>&1"


rule table4:
    input:
        split=_REPORT_SPLIT,
        records=train_records(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS),
        summaries=eval_files(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS),
        noisy=noisy_eval_files(SIGMAS),  # the "did not denoise" flag compares each row with no denoising
    output:
        **report_table("table4"),
    params:
        name="table4",
        labels=_REPORT_LABELS,
    conda:
        ENV
    log:
        "results/logs/report/table4.log",
    benchmark:
        "results/benchmarks/report/table4.tsv"
    shell:
        "cxrdenoise tables {params.name} --out-prefix results/tables/{params.name}"
        " --split-csv {input.split:q}"
        " {params.labels} --records {input.records:q} --summaries {input.summaries:q}"
        " --noisy {input.noisy:q} > {log:q} 2>&1"


rule table5:
    input:
        split=_REPORT_SPLIT,
        records=train_records(_REPORT_MODELS, [_TABLE5_SIGMA], _REPORT_SETUPS),
        summaries=eval_files(_REPORT_MODELS, [_TABLE5_SIGMA], _REPORT_SETUPS),
        noisy=noisy_eval_files([_TABLE5_SIGMA]),
    output:
        **report_table("table5"),
    params:
        name="table5",
        labels=_REPORT_LABELS,
    conda:
        ENV
    log:
        "results/logs/report/table5.log",
    benchmark:
        "results/benchmarks/report/table5.tsv"
    shell:
        "cxrdenoise tables {params.name} --out-prefix results/tables/{params.name}"
        " --split-csv {input.split:q}"
        " {params.labels} --records {input.records:q} --summaries {input.summaries:q}"
        " --noisy {input.noisy:q} > {log:q} 2>&1"


rule table6:
    input:
        split=_REPORT_SPLIT,
        records=train_records(_REPORT_MODELS, _TABLE6_SIGMAS, ["gpu1"]),
        summaries=eval_files(_REPORT_MODELS, _TABLE6_SIGMAS, ["gpu1"]),
        per_image=eval_files(_REPORT_MODELS, _TABLE6_SIGMAS, ["gpu1"], "per_image.csv"),
        noisy=noisy_eval_files(_TABLE6_SIGMAS + LIT_SIGMAS),
        # the no-denoising rows' images: restricted, like the models', to the classical subset (baselines.max_images)
        noisy_per_image=noisy_eval_files(_TABLE6_SIGMAS + LIT_SIGMAS, "per_image.csv"),
        # the classical baselines of baselines.methods (classical.smk), chosen by config, never by a glob, at
        # Table VI's sigmas and at the literature's zero-mean ones (noise.literature)
        classical=classical_files(config["baselines"]["methods"], _TABLE6_SIGMAS + LIT_SIGMAS),
        classical_per_image=classical_files(config["baselines"]["methods"], _TABLE6_SIGMAS + LIT_SIGMAS,
                                            "per_image.csv"),
    output:
        **report_table("table6"),
    params:
        name="table6",
        labels=_REPORT_LABELS,
        stats=_REPORT_STATS,
    conda:
        ENV
    log:
        "results/logs/report/table6.log",
    benchmark:
        "results/benchmarks/report/table6.tsv"
    shell:
        "cxrdenoise tables {params.name} --out-prefix results/tables/{params.name}"
        " --split-csv {input.split:q}"
        " {params.labels} {params.stats} --records {input.records:q} --summaries {input.summaries:q}"
        " --per-image {input.per_image:q} {input.noisy_per_image:q} --noisy {input.noisy:q}"
        " --classical {input.classical:q}"
        " --classical-per-image {input.classical_per_image:q} > {log:q} 2>&1"


# The claims table (a verdict per claim of the study) and the paired comparisons between models and set-ups
# read the same files: every run's record, summary and per-image scores, and the noisy input's summaries.
_CLAIMS_INPUT = dict(
    split=_REPORT_SPLIT,
    records=train_records(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS),
    summaries=eval_files(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS),
    per_image=eval_files(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS, "per_image.csv"),
    noisy=noisy_eval_files(SIGMAS),
)


rule claims:
    input:
        **_CLAIMS_INPUT,
        privacy_metrics=privacy_results("metrics.csv"),  # the privacy claim's verdict (privacy.smk writes them)
        privacy_summaries=privacy_results("summary.json"),
        federated=lambda wildcards: federated_claim_files(),  # the federated rows (federated.smk); [] when off
    output:
        **report_table("claims"),
    params:
        labels=_REPORT_LABELS,
        stats=_REPORT_STATS,
        privacy_max_auc=config["privacy"]["claim_max_auc"],
        decide=claims_settings_args(),
    conda:
        ENV
    log:
        "results/logs/report/claims.log",
    benchmark:
        "results/benchmarks/report/claims.tsv"
    shell:
        "cxrdenoise claims claims --out-prefix results/tables/claims {params.labels} {params.stats} {params.decide}"
        " --split-csv {input.split:q}"
        " --records {input.records:q} --summaries {input.summaries:q} --per-image {input.per_image:q}"
        " --noisy {input.noisy:q} --privacy-metrics {input.privacy_metrics:q}"
        " --privacy-summaries {input.privacy_summaries:q} --privacy-max-auc {params.privacy_max_auc}"
        " --federated {input.federated:q} > {log:q} 2>&1"


rule comparisons:
    input:
        **_CLAIMS_INPUT,
    output:
        **report_table("comparisons"),
    params:
        labels=_REPORT_LABELS,
        stats=_REPORT_STATS,
    conda:
        ENV
    log:
        "results/logs/report/comparisons.log",
    benchmark:
        "results/benchmarks/report/comparisons.tsv"
    shell:
        "cxrdenoise claims comparisons --out-prefix results/tables/comparisons {params.labels} {params.stats}"
        " --split-csv {input.split:q}"
        " --records {input.records:q} --summaries {input.summaries:q} --per-image {input.per_image:q}"
        " --noisy {input.noisy:q} > {log:q} 2>&1"


rule figure4:
    input:
        records=train_records(_REPORT_MODELS, [_TABLE5_SIGMA], _REPORT_SETUPS),
        summaries=eval_files(_REPORT_MODELS, [_TABLE5_SIGMA], _REPORT_SETUPS),
        noisy=noisy_eval_files([_TABLE5_SIGMA]),
    output:
        **report_figure("figure4", "../report/figure4.rst",
                        labels={"figure": "Figure 4", "shows": "training time per model and setup vs the study"}),
    params:
        labels=_REPORT_LABELS,
    conda:
        ENV
    log:
        "results/logs/report/figure4.log",
    benchmark:
        "results/benchmarks/report/figure4.tsv"
    shell:
        "cxrdenoise figures figure4 {params.labels} --records {input.records:q} --summaries {input.summaries:q}"
        " --noisy {input.noisy:q} --out-prefix results/figures/figure4 > {log:q} 2>&1"


rule psnr_sigma:
    input:  # every configured classical method and the 1 GPU runs at every noise level, chosen by config
        classical=classical_files(config["baselines"]["methods"], SIGMAS),
        records=train_records(_REPORT_MODELS, SIGMAS, ["gpu1"]),
        summaries=eval_files(_REPORT_MODELS, SIGMAS, ["gpu1"]),
        noisy=noisy_eval_files(SIGMAS),
    output:
        **report_figure("psnr_sigma", "../report/psnr_sigma.rst",
                        labels={"figure": FIGURE_TITLES["psnr_sigma"][0], "shows": FIGURE_TITLES["psnr_sigma"][1]}),
    params:
        labels=_REPORT_LABELS,
    conda:
        ENV
    log:
        "results/logs/report/psnr_sigma.log",
    benchmark:
        "results/benchmarks/report/psnr_sigma.tsv"
    shell:
        "cxrdenoise figures psnr_sigma {params.labels} --classical {input.classical:q} --records {input.records:q}"
        " --summaries {input.summaries:q} --noisy {input.noisy:q} --out-prefix results/figures/psnr_sigma"
        " > {log:q} 2>&1"


rule figures_examples:
    input:  # replicate 1's outputs (the figure says so)
        examples=lambda wc: eval_files(_REPORT_MODELS, [_FIG_SIGMA[wc.fignum]], ["gpu1"], "examples.npz", ["1"]),
        per_image=lambda wc: eval_files(_REPORT_MODELS, [_FIG_SIGMA[wc.fignum]], ["gpu1"], "per_image.csv", ["1"]),
        summaries=lambda wc: eval_files(_REPORT_MODELS, [_FIG_SIGMA[wc.fignum]], ["gpu1"], "summary.json", ["1"]),
        noisy=lambda wc: noisy_eval_files([_FIG_SIGMA[wc.fignum]], "per_image.csv"),
        noisy_summary=lambda wc: noisy_eval_files([_FIG_SIGMA[wc.fignum]]),
        records=lambda wc: train_records(_REPORT_MODELS, [_FIG_SIGMA[wc.fignum]], ["gpu1"], ["1"]),
    output:
        **report_figure("figure{fignum}", "../report/figures_examples.rst",
                        labels={"figure": "Figure {fignum}", "shows": "example test images at one noise level"}),
    wildcard_constraints:
        fignum="|".join(_FIG_SIGMA),
    params:
        labels=_REPORT_LABELS,
        max_images=config["evaluate"]["figure_images"],
    conda:
        ENV
    log:
        "results/logs/report/figure{fignum}.log",
    benchmark:
        "results/benchmarks/report/figure{fignum}.tsv"
    shell:
        "cxrdenoise figures examples {params.labels} --examples {input.examples:q}"
        " --per-image {input.per_image:q} --records {input.records:q}"
        " --noisy-per-image {input.noisy:q} --summaries {input.summaries:q} --noisy {input.noisy_summary:q}"
        " --number {wildcards.fignum} --max-images {params.max_images}"
        " --out-prefix results/figures/figure{wildcards.fignum} > {log:q} 2>&1"


rule training_curves:
    input:
        records=train_records(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS),
        summaries=eval_files(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS),
        noisy=noisy_eval_files(SIGMAS),
    output:
        **report_figure("training_curves", "../report/training_curves.rst",
                        labels={"figure": "Training curves", "shows": "training and validation L1 loss per epoch"}),
    params:
        labels=_REPORT_LABELS,
    conda:
        ENV
    log:
        "results/logs/report/training_curves.log",
    benchmark:
        "results/benchmarks/report/training_curves.tsv"
    shell:
        "cxrdenoise figures curves {params.labels} --records {input.records:q} --summaries {input.summaries:q}"
        " --noisy {input.noisy:q} --out-prefix results/figures/training_curves > {log:q} 2>&1"


rule provenance:
    input:
        records=train_records(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS),
        summaries=eval_files(_REPORT_MODELS, SIGMAS, _REPORT_SETUPS) + noisy_eval_files(SIGMAS),
    output:
        report("results/provenance.html", caption="../report/provenance.rst", category="Provenance",
               labels={"item": "Provenance", "shows": "git commit, package versions, config hash, devices"}),
    params:
        config_hash=CONFIG_HASH,  # a param on purpose: a new config rebuilds this small page, and nothing else
    conda:
        ENV
    log:
        "results/logs/report/provenance.log",
    benchmark:
        "results/benchmarks/report/provenance.tsv"
    shell:
        "cxrdenoise provenance --config-hash {params.config_hash} --records {input.records:q}"
        " --summaries {input.summaries:q} --out {output:q} > {log:q} 2>&1"


# the paired comparisons need two models, or gpu1 and another set-up, at a noise level
_COMPARABLE = len(config["train"]["models"]) > 1 or (
    "gpu1" in config["train"]["setups"] and len(config["train"]["setups"]) > 1
)
REPORT_TABLES = [layout.table_file(t, ext)
                 for t in ("table3", "table4", "table5", "table6", "claims", *(["comparisons"] if _COMPARABLE else []))
                 for ext in ("csv", "md", "tex", "html")]
REPORT_FIGURES = [layout.figure_file(f, ext)
                  for f in ["figure4", *(f"figure{n}" for n in sorted(_FIG_SIGMA, key=int)), "training_curves",
                            "psnr_sigma"]
                  for ext in ("png", "pdf")]
REPORT_TARGETS = REPORT_TABLES + REPORT_FIGURES + ["results/provenance.html"]
