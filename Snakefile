# cxrdenoise: download -> sample -> split -> resize -> noise shards -> train -> evaluate -> tables and figures.
# Rules live in workflow/rules/, one file per stage; this file only includes them and names the final targets.

configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


from cxrdenoise.train.setups import SETUPS


wildcard_constraints:
    archive=r"images_\d{3}",
    sigma=r"\d+(\.\d+)?",
    shard=r"\d{5}",
    model=r"[a-z][a-z0-9_]*",
    setup="|".join(SETUPS),  # cxrdenoise.train.setups: the one list of set-ups
    rep=r"[1-9]\d*",


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/resize.smk"
include: "workflow/rules/noise.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/classical.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/privacy.smk"
include: "workflow/rules/federated.smk"


rule all:
    input:
        TRAIN_RECORDS,
        EVAL_SUMMARIES,
        CLASSICAL_SUMMARIES,
        REPORT_TARGETS,
        PRIVACY_TARGETS,
        FEDERATED_TARGETS,


# Tell the user what happened: the resolved config at start, a summary on success, the failed jobs' errors.
onstart:
    write_resolved_config(config, RESOLVED_CONFIG, CONFIG_HASH)


onsuccess:
    sys.stderr.write(run_summary(".", config, CONFIG_HASH, configfile_args(), argv=sys.argv))


onerror:
    sys.stderr.write(failure_report(log, before=LOGS_BEFORE_RUN))
