# Synthetic chest-radiograph phantoms for data.source: synthetic (the no-network demo).
# Images and metadata are written into a temporary folder and renamed into place at the end.


rule synthesize_phantoms:
    output:
        images=directory(f"{RAW}/synthetic/images"),
        metadata=f"{RAW}/synthetic/Data_Entry_synthetic.csv",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.metadata),
        patients=config["data"]["synthetic"]["patients"],
        max_follow_ups=config["data"]["synthetic"]["max_follow_ups"],
        size=config["data"]["synthetic"]["size"],
        seed=config["seed"],
    conda:
        ENV
    log:
        "results/logs/synthesize_phantoms.log",
    benchmark:
        "results/benchmarks/synthesize_phantoms.tsv"
    shell:
        "cxrdenoise phantoms --out-dir {params.out_dir:q}"
        " --patients {params.patients} --max-follow-ups {params.max_follow_ups}"
        " --size {params.size} --seed {params.seed} > {log:q} 2>&1"
