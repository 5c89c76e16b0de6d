# Noise stage ("obfuscation"): per noise level and shard, noisy = clip(clean + N(mean, sigma^2), 0, 1),
# each image's noise derived only from (seed, image id, sigma). The mean is noise.mean for noise.sigmas and
# noise.literature.mean (0) for the literature's sigmas (common.smk: NOISE_MEANS).


rule noise_shard:
    input:
        npy=layout.clean_shard("{shard}", "npy"),
        meta=layout.clean_shard("{shard}", "json"),
    output:
        npy=layout.noisy_shard("{sigma}", "{shard}", "npy"),
        meta=layout.noisy_shard("{sigma}", "{shard}", "json"),
    params:
        mean=lambda wildcards: NOISE_MEANS[wildcards.sigma],
        seed=config["seed"],
    conda:
        ENV
    log:
        "results/logs/noise_shard/sigma{sigma}_{shard}.log",
    benchmark:
        "results/benchmarks/noise_shard/sigma{sigma}_{shard}.tsv"
    shell:
        "cxrdenoise data noise --clean-npy {input.npy:q} --sigma {wildcards.sigma} --mean {params.mean}"
        " --seed {params.seed} --out-npy {output.npy:q} > {log:q} 2>&1"


rule noisy_manifest:
    input:
        [layout.noisy_shard("{sigma}", k, "json") for k in SHARDS],
    output:
        layout.noisy_manifest("{sigma}"),
    params:
    conda:
        ENV
    log:
        "results/logs/noisy_manifest/sigma{sigma}.log",
    shell:
        "cxrdenoise data manifest --out-json {output:q} {input:q} > {log:q} 2>&1"
