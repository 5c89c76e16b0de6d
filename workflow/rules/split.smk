# Split stage: patient-disjoint train/val/test, checked for patient overlap before it is written.
import shlex as _shlex


rule split:
    input:
        layout.data_file("sample.csv"),
    output:
        csv=layout.data_file("split.csv"),
        summary=layout.data_file("split_counts.json"),
    params:
        train=config["split"]["fractions"]["train"],
        val=config["split"]["fractions"]["val"],
        seed=config["seed"],
        test_list=optional_arg("--test-list", test_list() and _shlex.quote(test_list())),  # quoted: may hold spaces
    conda:
        ENV
    log:
        "results/logs/split.log",
    shell:
        "cxrdenoise data split --sample-csv {input:q} --train {params.train} --val {params.val}"
        " --seed {params.seed} {params.test_list} --out-csv {output.csv:q} --out-json {output.summary:q}"
        " > {log:q} 2>&1"
