rule check_leakage:
    input:
        runs=phase_runs("collect") + phase_runs("metaval"),
    output:
        LAYOUT.leakage_report(),
    log:
        LAYOUT.log("check_leakage"),
    conda:
        "../../envs/metalr.yaml"
    script:
        "../scripts/check_leakage.py"


rule fit_meta_learner:
    input:
        leakage=LAYOUT.leakage_report(),
        collect_runs=phase_runs("collect"),
        collect_trajectories=phase_trajectories("collect"),
        metaval_runs=phase_runs("metaval"),
        metaval_trajectories=phase_trajectories("metaval"),
    output:
        weights=f"{CHECKPOINT}/model.safetensors",
        config=f"{CHECKPOINT}/config.json",
    threads: 1
    resources:
        gpu=CONFIG.gpu_per_job,
    log:
        LAYOUT.log("fit_meta_learner"),
    conda:
        "../../envs/metalr.yaml"
    script:
        "../scripts/fit_meta_learner.py"
