# Resize stage: decode, grey-convert and resize the split's images into fixed-size clean shards, one job per shard.


rule resize_shard:
    input:
        layout.data_file("split.csv"),
    output:
        npy=layout.clean_shard("{shard}", "npy"),
        meta=layout.clean_shard("{shard}", "json"),
    params:
        per_shard=config["shards"]["images_per_shard"],
        size=config["resize"]["size"],
        dtype=config["shards"]["dtype"],
    conda:
        ENV
    log:
        "results/logs/resize_shard/{shard}.log",
    benchmark:
        "results/benchmarks/resize_shard/{shard}.tsv"
    shell:
        "cxrdenoise data resize --split-csv {input:q} --shard {wildcards.shard}"
        " --images-per-shard {params.per_shard} --size {params.size} --dtype {params.dtype} --out-npy {output.npy:q}"
        " > {log:q} 2>&1"


rule clean_manifest:
    input:
        [layout.clean_shard(k, "json") for k in SHARDS],
    output:
        layout.clean_manifest(),
    params:
    conda:
        ENV
    log:
        "results/logs/clean_manifest.log",
    shell:
        "cxrdenoise data manifest --out-json {output:q} {input:q} > {log:q} 2>&1"
