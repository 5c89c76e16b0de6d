# Sample stage: list every available image, then draw the study's N images with the config seed.


rule inventory:
    input:
        image_roots()[1],
    output:
        f"{DATA}/inventory.csv",
    params:
        listing=source_listing,
        roots=" ".join(f"--roots {r}" for r in image_roots()[0]),
        metadata=optional_arg("--metadata-csv", metadata_csv()),
    conda:
        ENV
    log:
        "results/logs/inventory.log",
    benchmark:
        "results/benchmarks/inventory.tsv"
    shell:
        "cxrdenoise data inventory {params.roots} {params.metadata} --out-csv {output} > {log} 2>&1"


rule sample:
    input:
        f"{DATA}/inventory.csv",
    output:
        f"{DATA}/sample.csv",
    params:
        n=config["sample"]["n_images"],
        seed=config["seed"],
    conda:
        ENV
    log:
        "results/logs/sample.log",
    benchmark:
        "results/benchmarks/sample.tsv"
    shell:
        "cxrdenoise data sample --inventory-csv {input} --n-images {params.n} --seed {params.seed}"
        " --out-csv {output} > {log} 2>&1"
