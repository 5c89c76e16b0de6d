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

EVAL = "results/eval"
EVAL_DEVICE = config["train"]["device"]

# every trained run (train.setups_by_model narrows a model's setups; common.smk)
EVAL_MODEL_SUMMARIES = eval_files(config["train"]["models"], SIGMAS, config["train"]["setups"])
EVAL_NOISY_SUMMARIES = expand(f"{EVAL}/noisy/sigma{{sigma}}/summary.json", sigma=SIGMAS)
EVAL_SUMMARIES = EVAL_MODEL_SUMMARIES + EVAL_NOISY_SUMMARIES  # for rule all and the tables/figures stages
EVAL_PER_IMAGE = [os.path.join(os.path.dirname(s), "per_image.csv") for s in EVAL_SUMMARIES]
EVAL_EXAMPLES = [os.path.join(os.path.dirname(s), "examples.npz") for s in EVAL_SUMMARIES]

EVAL_PARAMS = dict(
    batch_size=config["evaluate"]["batch_size"],
    figure_images=config["evaluate"]["figure_images"],
    lpips="" if config["evaluate"]["lpips"] else "--no-lpips",
    device=EVAL_DEVICE,
    workers=config["train"]["workers"],
    data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
)


EVAL_RUN = "results/eval/{{model}}/sigma{{sigma}}/{{setup}}"  # one trained run; braces doubled for expand()
for _n, _runs in sorted(eval_runs_by_count().items()):
    _reps = [str(k) for k in range(1, _n + 1)]
    _only = "|".join(re.escape(f"{m}/sigma{s}/{u}/") for m, s, u in _runs)

    rule:
        name:
            "evaluate" if _n == 1 else f"evaluate_{_n}reps"
        input:
            checkpoints=expand("results/train/{{model}}/sigma{{sigma}}/{{setup}}/rep{rep}/best.pt", rep=_reps),
            clean=f"{DATA}/clean/manifest.json",
            noisy=f"{DATA}/noisy/sigma{{sigma}}/manifest.json",
        output:
            per_image=expand(f"{EVAL_RUN}/rep{{rep}}/per_image.csv", rep=_reps),
            summary=expand(f"{EVAL_RUN}/rep{{rep}}/summary.json", rep=_reps),
            examples=expand(f"{EVAL_RUN}/rep{{rep}}/examples.npz", rep=_reps),
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
            f"results/logs/evaluate/{{model}}_sigma{{sigma}}_{{setup}}_rep{'-'.join(dict.fromkeys([_reps[0], _reps[-1]]))}.log",
        benchmark:
            f"results/benchmarks/evaluate/{{model}}_sigma{{sigma}}_{{setup}}_rep{'-'.join(dict.fromkeys([_reps[0], _reps[-1]]))}.tsv"
        shell:
            "cxrdenoise evaluate --checkpoint {input.checkpoints:q} --data-dir {params.data_dir:q}"
            " --out-dir {params.out_dirs:q} --sigma {wildcards.sigma} --setup {wildcards.setup}"
            " --device {params.device} --batch-size {params.batch_size} --figure-images {params.figure_images}"
            " --workers {params.workers} {params.lpips} > {log:q} 2>&1"


rule evaluate_noisy:
    input:
        clean=f"{DATA}/clean/manifest.json",
        noisy=f"{DATA}/noisy/sigma{{sigma}}/manifest.json",
    output:
        per_image=f"{EVAL}/noisy/sigma{{sigma}}/per_image.csv",
        summary=f"{EVAL}/noisy/sigma{{sigma}}/summary.json",
        examples=f"{EVAL}/noisy/sigma{{sigma}}/examples.npz",
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
