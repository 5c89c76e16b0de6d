# NIH ChestX-ray14: one job per archive, so the twelve downloads and extractions run in parallel.
# Throttle concurrent downloads with `--resources downloads=N`. The jobs retry themselves (data.nih.retries),
# so the rules need no Snakemake `retries`; partial downloads survive in {archive}.tar.gz.part and are resumed only
# while the server reports the same length and ETag/Last-Modified (kept in .part.json). extract_archive locks the
# hash (sha256.lock.json) only after every member was safe and the image count right.

NIH_LOCK = f"{RAW}/nih/sha256.lock.json"
# Tuning knobs go into the command through this environment variable, not `params`: Snakemake reruns a job whose params
# changed, and deletes its output first, so raising `retries` would re-fetch 42 GB and invalidate every
# downstream result. The command text never changes, so neither the params nor the code trigger fires.
os.environ["CXRDENOISE_DOWNLOAD_TUNING"] = (
    f"--retries {int(config['data']['nih']['retries'])}"
    f" --backoff {float(config['data']['nih']['backoff_s'])}"
    f" --timeout {float(config['data']['nih']['timeout_s'])}"
)


envvars:
    "CXRDENOISE_DOWNLOAD_TUNING",


rule download_archive:
    localrule: True  # clusters often give compute nodes no internet: download on the submitting host
    output:
        f"{RAW}/nih/archives/{{archive}}.tar.gz",
    params:
        url=lambda wc: config["data"]["nih"]["archives"][wc.archive]["url"],
        lock=NIH_LOCK,
    resources:
        downloads=1,
    conda:
        ENV
    log:
        "results/logs/download_archive/{archive}.log",
    benchmark:
        "results/benchmarks/download_archive/{archive}.tsv"
    shell:
        "cxrdenoise download --url {params.url:q} --dest {output:q} --lock {params.lock:q}"
        " $CXRDENOISE_DOWNLOAD_TUNING > {log:q} 2>&1"


rule extract_archive:
    input:
        f"{RAW}/nih/archives/{{archive}}.tar.gz",
    output:
        images=directory(f"{RAW}/nih/images/{{archive}}"),
        done=f"{RAW}/nih/images/{{archive}}.done.json",
    params:
        expected=lambda wc: config["data"]["nih"]["archives"][wc.archive]["images"],
        lock=NIH_LOCK,
    conda:
        ENV
    log:
        "results/logs/extract_archive/{archive}.log",
    benchmark:
        "results/benchmarks/extract_archive/{archive}.tsv"
    shell:
        "cxrdenoise extract --archive {input:q} --out-dir {output.images:q} --done {output.done:q}"
        " --expected {params.expected} --lock {params.lock:q} > {log:q} 2>&1"
