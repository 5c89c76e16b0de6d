# Sample stage: list every available image, then draw the study's N images with the config seed.
import shlex as _shlex


rule inventory:
    input:
        image_roots()[1],
    output:
        layout.data_file("inventory.csv"),
    params:
        listing=source_listing,
        roots=" ".join(f"--roots {_shlex.quote(r)}" for r in image_roots()[0]),  # quoted: paths may hold spaces
        metadata=optional_arg("--metadata-csv", metadata_csv() and _shlex.quote(metadata_csv())),
    conda:
        ENV
    log:
        "results/logs/inventory.log",
    benchmark:
        "results/benchmarks/inventory.tsv"
    shell:
        "cxrdenoise data inventory {params.roots} {params.metadata} --out-csv {output:q} > {log:q} 2>&1"


rule sample:
    input:
        layout.data_file("inventory.csv"),
    output:
        layout.data_file("sample.csv"),
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
        "cxrdenoise data sample --inventory-csv {input:q} --n-images {params.n} --seed {params.seed}"
        " --out-csv {output:q} > {log:q} 2>&1"
