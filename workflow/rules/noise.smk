# Noise stage ("obfuscation"): per noise level and shard, noisy = clip(clean + N(mean, sigma^2), 0, 1),
# each image's noise derived only from (seed, image id, sigma).


rule noise_shard:
    input:
        f"{DATA}/clean/shard_{{shard}}.npy",
        f"{DATA}/clean/shard_{{shard}}.json",
    output:
        npy=f"{DATA}/noisy/sigma{{sigma}}/shard_{{shard}}.npy",
        meta=f"{DATA}/noisy/sigma{{sigma}}/shard_{{shard}}.json",
    params:
        mean=config["noise"]["mean"],
        seed=config["seed"],
    log:
        "results/logs/noise_shard/sigma{sigma}_{shard}.log",
    benchmark:
        "results/benchmarks/noise_shard/sigma{sigma}_{shard}.tsv"
    shell:
        "python {SCRIPTS}/data_stage.py noise --clean {input[0]} --sigma {wildcards.sigma} --mean {params.mean}"
        " --seed {params.seed} --out {output.npy} > {log} 2>&1"


rule noisy_manifest:
    input:
        expand(f"{DATA}/noisy/sigma{{{{sigma}}}}/shard_{{shard}}.json", shard=SHARDS),
    output:
        f"{DATA}/noisy/sigma{{sigma}}/manifest.json",
    log:
        "results/logs/noisy_manifest/sigma{sigma}.log",
    shell:
        "python {SCRIPTS}/data_stage.py manifest --out {output} --config-hash {CONFIG_HASH} {input} > {log} 2>&1"
