rule prepare_data:
    output:
        directory(LAYOUT.data("{dataset}")),
    params:
        # A changed dataset declaration re-runs the preparation (rerun trigger: params).
        spec=dataset_params,
    log:
        LAYOUT.log("prepare_data/{dataset}"),
    conda:
        "../envs/metalr.yaml"
    script:
        "../scripts/prepare_data.py"
