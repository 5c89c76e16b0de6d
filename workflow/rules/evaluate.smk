# Evaluation: every trained checkpoint (every replicate rep{k}) on the test split at its own noise level, plus the
# noisy input itself ("no denoising") per noise level. Outputs per docs/results-layout.md; the jobs write each
# file atomically.
# One job scores all replicates of a trained run (model, sigma, setup) in one process: a job spends about as long
# starting (torch, the test set, LPIPS) as scoring, so N replicates cost one start-up, not N. The output files and
# their paths are those of one job per replicate. A rule's outputs are fixed patterns, so there is one rule per
# replicate count: `evaluate` for runs with one replicate, `evaluate_{n}reps` for runs with n; a lookahead in the
# model wildcard keeps each run to the one rule of its count. A failing replicate is named in the job's log
# (FAILED: <checkpoint>) and the job fails after scoring the others.
# LPIPS needs torchvision's AlexNet weights in the torch hub cache; without them the LPIPS columns are NaN and
# summary.json says why (README: LPIPS weights). Nothing is downloaded.
# The config hash reaches the result files through the environment (common.smk), not params, so editing an
# unrelated config key re-runs no evaluation (Snakemake re-runs jobs whose params changed).

import re

EVAL_DEVICE = config["train"]["device"]

# every trained run (train.setups_by_model narrows a model's setups; common.smk)
EVAL_MODEL_SUMMARIES = eval_files(config["train"]["models"], SIGMAS, config["train"]["setups"])
EVAL_NOISY_SUMMARIES = noisy_eval_files(SIGMAS)
EVAL_SUMMARIES = EVAL_MODEL_SUMMARIES + EVAL_NOISY_SUMMARIES  # for rule all and the tables/figures stages

EVAL_PARAMS = dict(
    batch_size=config["evaluate"]["batch_size"],
    figure_images=config["evaluate"]["figure_images"],
    lpips="" if config["evaluate"]["lpips"] else "--no-lpips",
    device=EVAL_DEVICE,
    workers=config["train"]["workers"],
    data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
)


# one trained run's files, replicate by replicate (cxrdenoise.layout, called with the rule's wildcards)
_run_files = lambda build, name, reps: [build("{model}", "{sigma}", "{setup}", k, name) for k in reps]
for _n, _runs in sorted(eval_runs_by_count().items()):
    _reps = [str(k) for k in range(1, _n + 1)]
    _only = "|".join(re.escape(layout.run_key(m, s, u) + "/") for m, s, u in _runs)
    # log and benchmark name: ..._rep1, or ..._rep1-3 for the replicates 1 to 3
    _stem = layout.run_stem("{model}", "{sigma}", "{setup}", "-".join(dict.fromkeys([_reps[0], _reps[-1]])))

    rule:
        name:
            "evaluate" if _n == 1 else f"evaluate_{_n}reps"
        input:
            checkpoints=_run_files(layout.train_file, "best.pt", _reps),
            clean=layout.clean_manifest(),
            noisy=layout.noisy_manifest("{sigma}"),
        output:
            per_image=_run_files(layout.eval_file, "per_image.csv", _reps),
            summary=_run_files(layout.eval_file, "summary.json", _reps),
            examples=_run_files(layout.eval_file, "examples.npz", _reps),
        wildcard_constraints:
            # not results/eval/noisy/ (evaluate_noisy), and only the runs with this many replicates
            model=rf"(?!noisy/)(?=(?:{_only}))[a-z][a-z0-9_]*",
        params:
            out_dirs=lambda wildcards, output: [os.path.dirname(p) for p in output.summary],
            **EVAL_PARAMS,
        threads: config["train"]["workers"] + 1  # the job and its DataLoader workers
        resources:
            gpu=1 if EVAL_DEVICE == "cuda" else 0,
        conda:
            ENV
        log:
            layout.log_file("evaluate", _stem),
        benchmark:
            layout.benchmark_file("evaluate", _stem)
        shell:
            "cxrdenoise evaluate --checkpoint {input.checkpoints:q} --data-dir {params.data_dir:q}"
            " --out-dir {params.out_dirs:q} --sigma {wildcards.sigma} --setup {wildcards.setup}"
            " --device {params.device} --batch-size {params.batch_size} --figure-images {params.figure_images}"
            " --workers {params.workers} {params.lpips} > {log:q} 2>&1"


rule evaluate_noisy:
    input:
        clean=layout.clean_manifest(),
        noisy=layout.noisy_manifest("{sigma}"),
    output:
        per_image=layout.noisy_eval_file("{sigma}", "per_image.csv"),
        summary=layout.noisy_eval_file("{sigma}", "summary.json"),
        examples=layout.noisy_eval_file("{sigma}", "examples.npz"),
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        **EVAL_PARAMS,
    threads: config["train"]["workers"] + 1  # the job and its DataLoader workers
    resources:
        gpu=1 if EVAL_DEVICE == "cuda" else 0,
    conda:
        ENV
    log:
        "results/logs/evaluate_noisy/sigma{sigma}.log",
    benchmark:
        "results/benchmarks/evaluate_noisy/sigma{sigma}.tsv"
    shell:
        "cxrdenoise evaluate --noisy --data-dir {params.data_dir:q} --out-dir {params.out_dir:q}"
        " --sigma {wildcards.sigma}"
        " --device {params.device} --batch-size {params.batch_size} --figure-images {params.figure_images}"
        " --workers {params.workers} {params.lpips} > {log:q} 2>&1"
