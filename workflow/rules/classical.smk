# Classical baselines (Table VI, issue 13): BM3D, non-local means, TV, wavelet and a Gaussian filter on the test
# images, one job per (method, sigma, shard), merged per (method, sigma) into the evaluation's file shapes
# (cxrdenoise.baselines). Each method's parameter is set from the known sigma and the noise mean handled as
# baselines.mean_handling says (cxrdenoise.classical). baselines.max_images limits every job to the same test
# images, drawn round-robin across patients from the config seed (cxrdenoise.baselines.classical_subset); Table VI
# scores the nets and the noisy input on exactly those. A method whose optional package is absent (BM3D:
# `pip install 'cxrdenoise[bm3d]'`) writes a result that says it was skipped; the table carries the note.

BASELINE_METHODS = list(config["baselines"]["methods"])
_BASELINE_MAX = config["baselines"]["max_images"]
# the study's noise levels and the literature's (zero mean; its no-denoising rows too, for Table VI)
CLASSICAL_SUMMARIES = [layout.classical_file(m, s, "summary.json") for m in BASELINE_METHODS
                       for s in SIGMAS + LIT_SIGMAS] + noisy_eval_files(LIT_SIGMAS)


rule classical_shard:
    input:
        clean=layout.clean_manifest(),
        noisy=layout.noisy_manifest("{sigma}"),
    output:
        per_image=layout.classical_file("{method}", "{sigma}", "per_image.csv", shard="{shard}"),
        summary=layout.classical_file("{method}", "{sigma}", "summary.json", shard="{shard}"),
    wildcard_constraints:
        method="|".join(BASELINE_METHODS) or "none",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
        mean_handling=config["baselines"]["mean_handling"],
        max_images="all" if _BASELINE_MAX is None else _BASELINE_MAX,
        seed=config["seed"],  # the round-robin subset's orders (cxrdenoise.baselines.classical_subset)
        batch_size=config["evaluate"]["batch_size"],
        lpips="" if config["evaluate"]["lpips"] else "--no-lpips",
    threads: config["baselines"]["threads"]
    conda:
        ENV
    log:
        "results/logs/classical/{method}_sigma{sigma}_{shard}.log",
    benchmark:
        "results/benchmarks/classical/{method}_sigma{sigma}_{shard}.tsv"
    shell:
        "cxrdenoise classical shard --method {wildcards.method} --sigma {wildcards.sigma}"
        " --shard {wildcards.shard} --data-dir {params.data_dir:q} --out-dir {params.out_dir:q}"
        " --mean-handling {params.mean_handling} --max-images {params.max_images} --seed {params.seed}"
        " --threads {threads} --batch-size {params.batch_size} {params.lpips} > {log:q} 2>&1"


rule classical_merge:
    input:
        [layout.classical_file("{method}", "{sigma}", "summary.json", shard=k) for k in SHARDS],
    output:
        per_image=layout.classical_file("{method}", "{sigma}", "per_image.csv"),
        summary=layout.classical_file("{method}", "{sigma}", "summary.json"),
    wildcard_constraints:
        method="|".join(BASELINE_METHODS) or "none",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        shard_dirs=lambda wildcards, input: [os.path.dirname(p) for p in input],
    conda:
        ENV
    log:
        "results/logs/classical/{method}_sigma{sigma}_merge.log",
    shell:
        "cxrdenoise classical merge --method {wildcards.method} --sigma {wildcards.sigma}"
        " --out-dir {params.out_dir:q} {params.shard_dirs:q} > {log:q} 2>&1"
