import copy

import pytest
import yaml

from metalr.config import ConfigError, load_config, parse_config


@pytest.fixture
def raw(repo):
    return yaml.safe_load((repo / "config" / "smoke.yaml").read_text())


def test_shipped_configs_parse_with_defaults_filled(repo):
    for name in ("config.yaml", "smoke.yaml"):
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
