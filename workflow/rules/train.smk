# Training: one job per (model, sigma, setup) -> results/train/{model}/sigma{sigma}/{setup}/ (docs/results-layout.md).
# `resources: gpu=` is what the setup uses (0 on the CPU); Snakemake only counts GPUs, so the job itself claims
# free GPU ids with lock files and exports CUDA_VISIBLE_DEVICES before CUDA starts (cxrdenoise.train.gpus).
# DDP setups are started by the script as `torchrun --standalone --nproc_per_node=2` (a free port per job).
# An interrupted job resumes from its last.pt (not an output, so Snakemake keeps it) when re-run.
# params carry only the keys training depends on (Snakemake re-runs a job whose params changed), so editing e.g.
# `evaluate:` does not retrain; the whole config's hash reaches the records through the environment (common.smk).
from cxrdenoise.train.settings import rule_settings_json
from cxrdenoise.train.setups import get_setup, gpus_needed

TRAIN = "results/train"
TRAIN_DEVICE = config["train"]["device"]

TRAIN_RECORDS = expand(
    f"{TRAIN}/{{model}}/sigma{{sigma}}/{{setup}}/record.json",
    model=config["train"]["models"], sigma=SIGMAS, setup=config["train"]["setups"],
)
TRAIN_EPOCHS = [r.replace("record.json", "epochs.csv") for r in TRAIN_RECORDS]
TRAIN_CHECKPOINTS = [r.replace("record.json", "best.pt") for r in TRAIN_RECORDS]


rule train:
    input:
        clean=f"{DATA}/clean/manifest.json",
        noisy=f"{DATA}/noisy/sigma{{sigma}}/manifest.json",
    output:
        best=f"{TRAIN}/{{model}}/sigma{{sigma}}/{{setup}}/best.pt",
        record=f"{TRAIN}/{{model}}/sigma{{sigma}}/{{setup}}/record.json",
        epochs=f"{TRAIN}/{{model}}/sigma{{sigma}}/{{setup}}/epochs.csv",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.record),
        script=script("train.py"),
        settings=lambda wildcards: rule_settings_json(config, wildcards.model),
        data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
    conda:
        ENV
    threads: lambda wildcards: (config["train"]["workers"] + 1) * get_setup(wildcards.setup).processes
    resources:
        gpu=lambda wildcards: gpus_needed(wildcards.setup, TRAIN_DEVICE),
    log:
        "results/logs/train/{model}_sigma{sigma}_{setup}.log",
    benchmark:
        "results/benchmarks/train/{model}_sigma{sigma}_{setup}.tsv"
    shell:
        "python {params.script:q} --model {wildcards.model} --sigma {wildcards.sigma} --setup {wildcards.setup}"
        " --data-dir {params.data_dir} --out-dir {params.out_dir:q} --threads {threads} --settings {params.settings:q}"
        " > {log:q} 2>&1"
