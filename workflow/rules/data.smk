rule prepare_data:
    output:
        LAYOUT.data("{dataset}"),
    log:
        LAYOUT.log("prepare_data/{dataset}"),
    conda:
        "../../envs/metalr.yaml"
    script:
        "../scripts/prepare_data.py"
