# Training: one job per (model, sigma, setup, replicate) -> results/train/{model}/sigma{sigma}/{setup}/rep{rep}/
# (docs/results-layout.md). train.replicates = N (train.replicates_by_model per model and setup) gives rep1 ... repN
# (rep1 alone by default, as in the study): same data, noise and split; initial weights and batch order seeded per
# replicate (cxrdenoise.train.settings.init_seed, order_seed).
# `resources: gpu=` is what the setup uses in all (0 on the CPU unless train.request_gpus_on_cpu); the SLURM executor
# turns it into `sbatch --gpus=N` (a count per job). Locally Snakemake only counts GPUs, so the job itself claims
# free GPU ids with lock files and exports CUDA_VISIBLE_DEVICES before CUDA starts (cxrdenoise.train.gpus).
# DDP setups are started by `cxrdenoise train` as `torchrun --standalone --nproc_per_node=2` (a free port per job); with
# `train.nodes: K` > 1 they are rule `train_multinode` instead: K nodes, one torchrun per node via srun.
# No `tasks` on `train`: on a GPU rule the SLURM executor turns it into --ntasks-per-gpu (more tasks than
# launches); tasks_per_gpu=0 overrides that for a `tasks` inherited anyway (and for train_multinode's tasks=K).
# An interrupted job resumes from its last.pt (not an output, so Snakemake keeps it) when re-run or requeued.
# params carry only the keys training depends on (Snakemake re-runs a job whose params changed), so editing e.g.
# `evaluate:` does not retrain; the whole config's hash reaches the records through the environment (common.smk).
from cxrdenoise.train.settings import rule_settings_json
from cxrdenoise.train.setups import job_gpus, job_processes_per_node, setup_names

TRAIN_NODES = config["train"]["nodes"]
# setups the plain `train` rule runs (on one node): all of them, or only gpu1/dp2 when DDP jobs span nodes
TRAIN_ONE_NODE_SETUPS = "|".join(setup_names() if TRAIN_NODES == 1 else setup_names(ddp=False))

# every (model, sigma, setup, rep), setups per model narrowed by train.setups_by_model (common.smk)
TRAIN_RECORDS = train_records(config["train"]["models"], SIGMAS, config["train"]["setups"])


rule train:
    input:
        clean=layout.clean_manifest(),
        noisy=layout.noisy_manifest("{sigma}"),
    output:
        best=layout.train_file("{model}", "{sigma}", "{setup}", "{rep}", "best.pt"),
        record=layout.train_file("{model}", "{sigma}", "{setup}", "{rep}", "record.json"),
        epochs=layout.train_file("{model}", "{sigma}", "{setup}", "{rep}", "epochs.csv"),
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.record),
        settings=lambda wildcards: rule_settings_json(config, wildcards.model, wildcards.setup),
        data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
    wildcard_constraints:
        setup=TRAIN_ONE_NODE_SETUPS,
    # per node: one process per GPU (DDP; train.processes_per_node on a multi-node job) or one process, each with
    # its DataLoader workers
    threads: lambda wildcards: (config["train"]["workers"] + 1) * job_processes_per_node(config, wildcards.setup)
    resources:
        gpu=lambda wildcards: job_gpus(config, wildcards.setup),
        nodes=1,  # sbatch --nodes=1: otherwise SLURM may spread a --gpus=2 job over two nodes
        tasks_per_gpu=0,  # a `tasks` inherited from a profile must not become --ntasks-per-gpu (one launch)
    conda:
        ENV
    log:
        layout.log_file("train", layout.run_stem("{model}", "{sigma}", "{setup}", "{rep}")),
    benchmark:
        layout.benchmark_file("train", layout.run_stem("{model}", "{sigma}", "{setup}", "{rep}"))
    shell:
        "cxrdenoise train --model {wildcards.model} --sigma {wildcards.sigma} --setup {wildcards.setup}"
        " --replicate {wildcards.rep}"
        " --data-dir {params.data_dir:q} --out-dir {params.out_dir:q} --threads {threads} --settings {params.settings:q}"
        " > {log:q} 2>&1"


if TRAIN_NODES > 1:

    # DDP on K = train.nodes nodes (SLURM only). The `mpi` resource makes the SLURM executor run the command once,
    # on the allocation's first node, instead of inside `srun -n1` (which cannot span nodes); the command then
    # starts `srun ... torchrun --nnodes K --rdzv-backend c10d` itself (cxrdenoise.train.multinode).
    use rule train as train_multinode with:
        wildcard_constraints:
            setup="|".join(setup_names(ddp=True)),
        resources:
            gpu=lambda wildcards: job_gpus(config, wildcards.setup),  # K x the setup's GPUs (sbatch --gpus: per job)
            slurm_extra=lambda wildcards: (  # ... and the same number on every node
                f"--gpus-per-node={job_processes_per_node(config, wildcards.setup)}"
                if job_gpus(config, wildcards.setup) else ""
            ),
            nodes=TRAIN_NODES,
            mpi="srun",
            tasks=TRAIN_NODES,  # one srun task (torchrun agent) per node: sbatch --ntasks=K
            tasks_per_gpu=0,  # keeps `tasks` from becoming --ntasks-per-gpu on this GPU rule
