rule check_leakage:
    input:
        runs=collection_runs(),
    output:
        LAYOUT.leakage_report(),
    log:
        LAYOUT.log("check_leakage"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/check_leakage.py"


rule fit_meta_learner:
    input:
        unpack(fit_inputs),
    output:
        weights=checkpoint_weights("{variant}", "{round}"),
        config=checkpoint_config("{variant}", "{round}"),
    params:
        variant="{variant}",
    wildcard_constraints:
        variant="|".join(META_VARIANTS),
        round="[0-9]+",
    threads: 1
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("fit_meta_learner/round-{round}/{variant}"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/fit_meta_learner.py"
