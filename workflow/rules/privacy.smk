# Privacy stage (issue 14): patient re-identification from clean, obfuscated (noisy) and denoised test images,
# by a training-free attacker (NCC) and a learned one (siamese CNN trained on train-split patients); each score job
# also scores the trivial baseline (NCC of 32x32 area-downsampled images) as rows of its own in the same
# metrics.csv, so the table and the claims read it from whichever attackers are configured. Outputs per
# attacker under results/privacy/{attacker}/, then results/tables/privacy.* and results/figures/privacy.*.
# Denoised queries come from each model's checkpoint of one training setup (privacy.setup, gpu1 by default);
# paths from cxrdenoise.layout.
_PRIV = config["privacy"]
_PRIV_MODELS = [m for m in config["train"]["models"] if model_setups(config, m, [_PRIV["setup"]])]  # trained under it


# The denoiser whose output is attacked: best.pt of one model, noise level and the configured setup, replicate 1
# (train.replicates; rep1 is the run with the config seed's initial weights).
# (Lambdas rather than functions: `snakemake --lint` wants functions in common.smk.)
privacy_checkpoint = lambda model, sigma: layout.train_file(model, sigma, _PRIV["setup"], 1, "best.pt")
PRIVACY_CHECKPOINTS = [privacy_checkpoint(m, s) for s in SIGMAS for m in _PRIV_MODELS]
_LEARNED_ATTACKER = layout.privacy_file("learned", "attacker.pt")  # the learned attacker's weights


_PRIV_COMMON = dict(
    data_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.clean)),
    sigmas=" ".join(SIGMAS),
    seed=config["seed"],
    image_size=_PRIV["image_size"],
)


rule privacy_attacker:
    input:
        clean=layout.clean_manifest(),
        noisy=[layout.noisy_manifest(s) for s in SIGMAS],
    output:
        attacker=_LEARNED_ATTACKER,
        record=layout.privacy_file("learned", "record.json"),
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.record),
        epochs=_PRIV["learned"]["epochs"],
        lr=_PRIV["learned"]["lr"],
        margin=_PRIV["learned"]["margin"],
        batch_size=_PRIV["learned"]["batch_size"],
        channels=_PRIV["learned"]["channels"],
        embedding=_PRIV["learned"]["embedding"],
        augment="" if _PRIV["learned"]["noise_augment"] else "--no-noise-augment",
        **_PRIV_COMMON,
    threads: 1
    conda:
        ENV
    log:
        "results/logs/privacy/attacker_learned.log",
    benchmark:
        "results/benchmarks/privacy/attacker_learned.tsv"
    shell:
        "cxrdenoise privacy attacker --data-dir {params.data_dir:q} --sigmas {params.sigmas}"
        " --seed {params.seed} --image-size {params.image_size} --out-dir {params.out_dir:q}"
        " --epochs {params.epochs} --lr {params.lr} --margin {params.margin} --batch-size {params.batch_size}"
        " --channels {params.channels} --embedding {params.embedding} {params.augment} > {log:q} 2>&1"


rule privacy_scores:
    input:
        clean=layout.clean_manifest(),
        noisy=[layout.noisy_manifest(s) for s in SIGMAS],
        checkpoints=PRIVACY_CHECKPOINTS,
        attacker=lambda wildcards: [_LEARNED_ATTACKER] if wildcards.attacker == "learned" else [],
    output:
        metrics=layout.privacy_file("{attacker}", "metrics.csv"),
        summary=layout.privacy_file("{attacker}", "summary.json"),
    wildcard_constraints:
        attacker="ncc|learned",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        attacker_arg=lambda wildcards, input: f"--attacker-checkpoint {input.attacker[0]}" if input.attacker else "",
        setup=_PRIV["setup"],
        negatives=_PRIV["negatives_per_query"],
        bootstrap=_PRIV["bootstrap"],
        top_k=" ".join(str(k) for k in _PRIV["top_k"]),
        device=config["train"]["device"],
        batch_size=config["evaluate"]["batch_size"],
        **_PRIV_COMMON,
    threads: 1
    resources:
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    conda:
        ENV
    log:
        "results/logs/privacy/scores_{attacker}.log",
    benchmark:
        "results/benchmarks/privacy/scores_{attacker}.tsv"
    shell:
        "cxrdenoise privacy score --attacker {wildcards.attacker} {params.attacker_arg}"
        " --data-dir {params.data_dir:q} --sigmas {params.sigmas} --seed {params.seed}"
        " --image-size {params.image_size} --checkpoints {input.checkpoints:q} --setup {params.setup}"
        " --negatives {params.negatives} --bootstrap {params.bootstrap} --top-k {params.top_k}"
        " --device {params.device} --batch-size {params.batch_size} --out-dir {params.out_dir:q} > {log:q} 2>&1"


_PRIV_RESULTS = dict(metrics=privacy_results("metrics.csv"), summaries=privacy_results("summary.json"))


rule privacy_table:
    input:
        **_PRIV_RESULTS,
        split=layout.data_file("split.csv"),  # images and patients per split in the caption
    output:
        **report_table("privacy"),
    params:
        source=config["data"]["source"],
        nih=nih_metadata_flag(),
        max_auc=_PRIV["claim_max_auc"],
    conda:
        ENV
    log:
        "results/logs/report/privacy_table.log",
    benchmark:
        "results/benchmarks/report/privacy_table.tsv"
    shell:
        "cxrdenoise privacy table --metrics {input.metrics:q} --summaries {input.summaries:q}"
        " --data-source {params.source} --split-csv {input.split:q} {params.nih} --max-auc {params.max_auc}"
        " --out-prefix results/tables/privacy > {log:q} 2>&1"


rule privacy_figure:
    input:
        **_PRIV_RESULTS,
    output:
        **report_figure("privacy", "../report/privacy.rst"),
    params:
        source=config["data"]["source"],
    conda:
        ENV
    log:
        "results/logs/report/privacy_figure.log",
    benchmark:
        "results/benchmarks/report/privacy_figure.tsv"
    shell:
        "cxrdenoise privacy figure --metrics {input.metrics:q} --summaries {input.summaries:q}"
        " --data-source {params.source} --out-prefix results/figures/privacy > {log:q} 2>&1"


PRIVACY_TARGETS = [layout.table_file("privacy", ext) for ext in ("csv", "md", "tex", "html")] + [
    layout.figure_file("privacy", ext) for ext in ("png", "pdf")]
