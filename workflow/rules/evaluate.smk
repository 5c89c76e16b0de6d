# Evaluation: every trained checkpoint (every replicate rep{k}) on the test split at its own noise level, plus the
# noisy input itself ("no denoising") per noise level. Outputs per docs/results-layout.md; the jobs write each
# file atomically.
# LPIPS needs torchvision's AlexNet weights in the torch hub cache; without them the LPIPS columns are NaN and
# summary.json says why (README: LPIPS weights). Nothing is downloaded.
# The config hash reaches the result files through the environment (common.smk), not params, so editing an
# unrelated config key re-runs no evaluation (Snakemake re-runs jobs whose params changed).

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


rule evaluate:
    input:
        checkpoint="results/train/{model}/sigma{sigma}/{setup}/rep{rep}/best.pt",
        clean=f"{DATA}/clean/manifest.json",
        noisy=f"{DATA}/noisy/sigma{{sigma}}/manifest.json",
    output:
        per_image=f"{EVAL}/{{model}}/sigma{{sigma}}/{{setup}}/rep{{rep}}/per_image.csv",
        summary=f"{EVAL}/{{model}}/sigma{{sigma}}/{{setup}}/rep{{rep}}/summary.json",
        examples=f"{EVAL}/{{model}}/sigma{{sigma}}/{{setup}}/rep{{rep}}/examples.npz",
    wildcard_constraints:
        model=r"(?!noisy/)[a-z][a-z0-9_]*",  # results/eval/noisy/ belongs to evaluate_noisy
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        **EVAL_PARAMS,
    threads: config["train"]["workers"] + 1  # the job and its DataLoader workers
    resources:
        gpu=1 if EVAL_DEVICE == "cuda" else 0,
    conda:
        ENV
    log:
        "results/logs/evaluate/{model}_sigma{sigma}_{setup}_rep{rep}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}_sigma{sigma}_{setup}_rep{rep}.tsv"
    shell:
        "cxrdenoise evaluate --checkpoint {input.checkpoint:q} --data-dir {params.data_dir:q}"
        " --out-dir {params.out_dir:q} --sigma {wildcards.sigma} --setup {wildcards.setup}"
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
