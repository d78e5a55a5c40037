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


# Every variant of the last round in one job, fitted side by side: a fit takes seconds, as
# long as a job's start-up.
rule fit_meta_learner:
    input:
        unpack(fit_inputs),
    output:
        weights=final_weights(),
        config=[checkpoint_config(variant, FINAL_ROUND) for variant in META_VARIANTS],
    params:
        variants=META_VARIANTS,
        settings=fit_settings_hash(CONFIG, META_VARIANTS),
    threads: job_threads(CONFIG, len(META_VARIANTS))
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log(f"fit_meta_learner/round-{FINAL_ROUND}"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/fit_meta_learner.py"


# The main model of each round before the last, which the next round's on-policy collection follows.
use rule fit_meta_learner as fit_dagger_model with:
    output:
        weights=[checkpoint_weights(META, "{round}")],
        config=[checkpoint_config(META, "{round}")],
    params:
        variants=[META],
        settings=fit_settings_hash(CONFIG, [META]),
    threads: 1
    wildcard_constraints:
        round="|".join(str(r) for r in range(FINAL_ROUND)) or "(?!x)x",
    log:
        LAYOUT.log("fit_meta_learner/round-{round}"),
