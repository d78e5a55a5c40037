import copy

import pytest
import yaml

from metalr.config import ConfigError, config_schema, load_config, parse_config


@pytest.fixture
def raw(repo):
    return yaml.safe_load((repo / "config" / "smoke.yaml").read_text())


def test_shipped_configs_parse_with_defaults_filled(repo):
    for name in ("config.yaml", "smoke.yaml", "bench.yaml"):
        config = load_config(repo / "config" / name)
        assert config.held_out and config.meta_train
        assert all(t.budget_steps >= 2 for t in config.tasks.values())


def test_default_config_has_six_tasks_over_three_modalities(repo):
    from metalr.tasks.datasets import BUILTIN_DATASETS

    config = load_config(repo / "config" / "config.yaml")
    used = [t for phase in ("collect", "metaval", "eval") for t in config.phase_tasks(phase)]
    assert len(used) >= 6
    modalities = {BUILTIN_DATASETS[config.tasks[t].dataset](0)[2].modality for t in used}
    assert len(modalities) >= 3


def test_schema_error_names_the_field_and_allowed_values(raw):
    raw["collect"]["schedulers"] = ["cosine", "cosinus"]
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    message = str(err.value)
    assert "collect.schedulers.1" in message
    assert "cosinus" in message and "plateau" in message


def test_split_naming_an_undefined_task_lists_the_defined_ones(raw):
    raw["splits"]["held_out"] = ["no-such-task"]
    with pytest.raises(ConfigError, match="no-such-task.*digits-mlp"):
        parse_config(raw)


def test_held_out_renamed_copy_of_a_meta_train_task_is_refused(raw):
    raw["tasks"]["renamed-copy"] = copy.deepcopy(raw["tasks"]["digits-mlp"])
    raw["splits"]["held_out"] = ["renamed-copy"]
    with pytest.raises(ConfigError, match="renamed-copy.*digits-mlp"):
        parse_config(raw)


def test_task_hash_ignores_the_name_but_not_the_protocol(raw):
    raw["tasks"]["copy"] = copy.deepcopy(raw["tasks"]["digits-mlp"])
    raw["tasks"]["faster"] = copy.deepcopy(raw["tasks"]["digits-mlp"]) | {"base_lr": 0.01}
    tasks = parse_config(raw).tasks
    assert tasks["copy"].config_hash == tasks["digits-mlp"].config_hash
    assert tasks["faster"].config_hash != tasks["digits-mlp"].config_hash


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_schema_enums_match_the_task_registry():
    from metalr.tasks.registry import ALL_METRICS, MODALITIES, MODEL_FAMILIES, SOURCES

    defs = config_schema()["$defs"]
    assert defs["model"]["properties"]["family"]["enum"] == list(MODEL_FAMILIES)
    assert defs["dataset"]["properties"]["source"]["enum"] == list(SOURCES)
    assert defs["dataset"]["properties"]["modality"]["enum"] == list(MODALITIES)
    assert defs["dataset"]["properties"]["metric"]["enum"] == list(ALL_METRICS)


def test_a_family_samples_its_variants_from_its_seed_and_splits_may_name_it(raw):
    raw["families"] = {
        "fam": {
            "task": {"dataset": "digits", "model": {"family": "mlp"}},
            "count": 6,
            "sample": {
                "width": [8, 16, 32],
                "base_lr": [1.0e-4, 1.0e-2],
                "label_noise": [0.0, 0.2],
                "budget_steps": [100, 1000],
            },
        }
    }
    raw["splits"]["meta_train"] = ["fam"]
    first, again = parse_config(copy.deepcopy(raw)), parse_config(copy.deepcopy(raw))
    variants = [first.tasks[f"fam-{i:02d}"] for i in range(6)]
    assert list(first.meta_train) == [v.task_id for v in variants]
    assert variants == [again.tasks[v.task_id] for v in variants]
    assert {v.model.width for v in variants} <= {8, 16, 32} and len({v.config_hash for v in variants}) > 1
    assert {v.budget_steps for v in variants} == {100, 1000}
    raw["families"]["fam"]["seed"] = 1
    assert [parse_config(raw).tasks[v.task_id] for v in variants] != variants


def test_default_config_samples_meta_training_variants_of_five_families(repo):
    config = load_config(repo / "config" / "config.yaml")
    assert 12 <= len(config.meta_train) <= 30
    assert len({t.rsplit("-", 1)[0] for t in config.meta_train}) == 5
    assert "sgd" not in {config.tasks[t].optimizer for t in config.meta_train}  # SGD stays unseen


def test_fixed_architectures_refuse_a_size_and_vgg_names_its_depths(raw):
    raw["tasks"]["digits-mlp"]["model"] = {"family": "resnet18", "width": 32}
    with pytest.raises(ConfigError, match=r"tasks\.digits-mlp\.model\.width.*fixed"):
        parse_config(copy.deepcopy(raw))
    raw["tasks"]["digits-mlp"]["model"] = {"family": "vgg", "depth": 12}
    with pytest.raises(ConfigError, match="11, 13, 16, 19"):
        parse_config(raw)


def test_an_undeclared_dataset_lists_builtins_and_the_fix(raw):
    raw["tasks"]["digits-mlp"]["dataset"] = "cifar10"
    with pytest.raises(ConfigError, match=r"'cifar10' is neither a built-in dataset \(.*digits.*\) nor declared"):
        parse_config(raw)


def test_shipped_full_and_shared_data_configs_parse(repo):
    full = load_config(repo / "config" / "full.yaml")
    assert len(full.meta_train) >= 300
    families = {full.tasks[t].model.family for phase in ("collect", "metaval", "eval") for t in full.phase_tasks(phase)}
    assert {"resnet50", "efficientnet_b0", "vgg", "bert", "gpt2", "deepspeech", "wav2vec2", "transformer"} <= families
    shared = load_config(repo / "config" / "shared-data.yaml")
    assert {"sst2", "imdb", "adult", "m4_hourly", "cifar10", "fashion_mnist"} <= set(shared.dataset_specs)


def test_evaluation_without_the_reference_scheduler_is_refused_with_the_fix(raw):
    raw["evaluate"]["schedulers"] = ["constant", "step"]
    with pytest.raises(ConfigError, match="evaluate.schedulers.*'cosine'"):
        parse_config(raw)


def test_lr_grid_is_log_spaced_around_the_default(raw):
    raw["evaluate"]["lr_grid"] = {"ratio": 10.0, "steps": 2}
    assert parse_config(raw).evaluate.lr_multipliers == pytest.approx((0.01, 0.1, 1.0, 10.0, 100.0))


def test_bench_config_makes_aggregate_claims_on_twelve_held_out_tasks_and_eight_seeds(repo):
    from metalr.evaluate import is_indicative

    bench = load_config(repo / "config" / "bench.yaml")
    assert len(bench.held_out) >= 12 and bench.evaluate.seeds >= 8
    assert not is_indicative(len(bench.held_out), bench.evaluate.seeds)
    assert is_indicative(len(load_config(repo / "config" / "config.yaml").held_out), 5)


def test_bench_holds_out_sixteen_tasks_of_which_six_share_neither_dataset_nor_model_family_with_meta_training(repo):
    bench = load_config(repo / "config" / "bench.yaml")
    seen = [bench.tasks[t] for t in (*bench.meta_train, *bench.meta_val)]
    datasets, families = {t.dataset for t in seen}, {t.model.family for t in seen}
    unseen = [
        t
        for t in bench.held_out
        if bench.tasks[t].dataset not in datasets and bench.tasks[t].model.family not in families
    ]
    assert len(bench.held_out) >= 16 and len(unseen) >= 6, unseen
    assert len({t.rsplit("-", 1)[0] for t in bench.meta_train}) >= 8  # the default's five families and three more
    assert {bench.tasks[t].budget_steps for t in bench.meta_train} >= {100, 1000}
    assert "sgd" not in {t.optimizer for t in seen}  # the SGD task stays an unseen optimizer


SHIPPED = ("config.yaml", "smoke.yaml", "bench.yaml", "full.yaml", "shared-data.yaml", "pretrain.yaml")


@pytest.mark.parametrize("path", [f"config/{name}" for name in SHIPPED] + [".test/config/config.yaml"])
def test_each_shipped_config_means_the_same_overlaid_on_the_default_as_on_its_own(repo, path):
    from metalr.config import read_config_file

    own = parse_config(read_config_file(repo / path))
    assert load_config(repo / path) == own


def test_a_config_that_declares_tasks_inherits_none_of_the_defaults_catalogue(raw):
    from metalr.config import with_default

    merged = parse_config(with_default(raw))
    assert set(merged.tasks) == set(raw["tasks"])
    assert not any(t.startswith("mnist5k") for t in merged.tasks)
    # Nor the default's split entries, which name the default's tasks.
    del raw["splits"]["meta_val"]
    assert parse_config(with_default(raw)).meta_val == ()


def test_splits_alone_merge_into_the_defaults(repo):
    from metalr.config import with_default

    merged = parse_config(with_default({"splits": {"held_out": ["digits-cnn"]}}))
    assert merged.held_out == ("digits-cnn",)
    assert merged.meta_train == load_config(repo / "config" / "config.yaml").meta_train


def test_config_overrides_merge_maps_replace_lists_and_read_text_as_snakemake_gives_it(repo):
    from metalr.config import with_default

    default = load_config(repo / "config" / "config.yaml")
    # Snakemake's --config hands nested values over as text: evaluate='{seeds: 3}' -> {'seeds': '3'}
    merged = parse_config(with_default({"evaluate": {"seeds": "3", "schedulers": ["cosine", "constant"]}}))
    assert merged.evaluate.seeds == 3
    assert merged.evaluate.schedulers == ("cosine", "constant")
    assert merged.evaluate.default_lr_only == default.evaluate.default_lr_only
    assert merged.tasks == default.tasks and merged.results == "results"


def test_shipped_configs_write_to_separate_results_folders(repo):
    folders = {name: load_config(repo / "config" / name).results for name in SHIPPED}
    assert folders["config.yaml"] == "results"
    assert len(set(folders.values())) == len(SHIPPED)
    for name, folder in folders.items():
        assert name == "config.yaml" or folder == f"results/{name.removesuffix('.yaml')}"


# The same task written differently: an integer where the default is a float, an exponent.
SAME_MEANING = {
    "weight_decay 0 vs 0.0": {"weight_decay": 0},
    "dropout 0 vs 0.0": {"model": {"family": "mlp", "width": 16, "dropout": 0}},
    "base_lr 1.0e-3 vs the default 0.001": {"base_lr": 1.0e-3},
    "a default written out": {"optimizer": "adam", "subset": 1},
}


@pytest.mark.parametrize("case", SAME_MEANING)
def test_held_out_copy_written_with_other_number_forms_is_refused(raw, case):
    raw["tasks"]["renamed-copy"] = copy.deepcopy(raw["tasks"]["digits-mlp"]) | SAME_MEANING[case]
    raw["splits"]["held_out"] = ["renamed-copy"]
    with pytest.raises(ConfigError, match="renamed-copy.*digits-mlp"):
        parse_config(raw)


def test_fit_time_leakage_check_catches_a_copy_whose_numbers_are_written_differently(raw, tmp_path):
    import polars as pl

    from metalr.evaluate.leakage import LeakageError, check_leakage

    earlier = parse_config(copy.deepcopy(raw))  # the collection ran with digits-mlp as written
    runs = tmp_path / "runs.parquet"
    pl.DataFrame({"task": ["digits-mlp"], "task_hash": [earlier.tasks["digits-mlp"].config_hash]}).write_parquet(runs)
    raw["tasks"]["renamed-copy"] = copy.deepcopy(raw["tasks"]["digits-mlp"]) | {"weight_decay": 0}
    raw["splits"] = {"meta_train": ["wine-mlp"], "held_out": ["renamed-copy"]}
    with pytest.raises(LeakageError, match="'renamed-copy' reaches the meta-learner's inputs as task 'digits-mlp'"):
        check_leakage(parse_config(raw), [runs])
