import numpy as np
import pytest

from metalr.tasks import BUILTIN_DATASETS, SplitData, prepare_dataset


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_every_builtin_dataset_loads_offline_with_three_nonempty_splits(name):
    data = prepare_dataset(name, 0, 0.15, 0.15)
    for split in ("train", "val", "test"):
        assert len(data.X(split)) == len(data.y(split)) > 0
        assert np.isfinite(data.X(split).astype(float)).all()
    assert data.info.sizes["train"] > data.info.sizes["val"]


def test_splits_are_identical_for_the_same_split_seed_and_differ_for_another():
    a, b, c = (prepare_dataset("wine", seed, 0.15, 0.15) for seed in (3, 3, 4))
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    assert not np.array_equal(a.y("train"), c.y("train"))


def test_labelled_splits_are_stratified(digits):
    fractions = [np.bincount(digits.y(s), minlength=10) / len(digits.y(s)) for s in ("train", "val", "test")]
    assert np.abs(fractions[0] - fractions[1]).max() < 0.02
    assert np.abs(fractions[0] - fractions[2]).max() < 0.02


def test_no_example_lands_in_two_splits(digits):
    keys = {s: {row.tobytes() for row in digits.X(s).reshape(len(digits.X(s)), -1)} for s in ("train", "val", "test")}
    # load_digits holds a handful of exact duplicate images; they may straddle splits.
    assert len(keys["train"] & keys["test"]) <= 3
    assert len(keys["train"] & keys["val"]) <= 3


def test_tabular_scaling_is_fitted_on_the_training_split_only():
    data = prepare_dataset("breast_cancer", 0, 0.15, 0.15)
    np.testing.assert_allclose(data.X("train").mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.X("train").std(0), 1, atol=1e-3)
    assert np.abs(data.X("test").mean(0)).max() > 1e-3


def test_series_splits_follow_time_order_and_predict_the_next_change():
    data = prepare_dataset("sunspots", 0, 0.15, 0.15)
    assert data.X("train").shape[1:] == (12, 1) and data.y("train").shape[1:] == (1,)
    # Inputs are relative to each window's last value, so that value is exactly 0.
    assert np.all(data.X("val")[:, -1, 0] == 0)
    assert data.info.sizes["train"] > data.info.sizes["test"]


def test_synthetic_text_is_marked_synthetic_and_learnable_by_sign_of_sentiment():
    data = prepare_dataset("synthtext", 0, 0.15, 0.15)
    assert data.info.synthetic and data.info.modality == "text"
    assert set(np.unique(data.y("train"))) == {0, 1}


@pytest.mark.parametrize(("name", "classes"), [("shapes", 4), ("topics", 4)])
def test_procedural_datasets_are_synthetic_balanced_and_the_same_for_the_same_split_seed(name, classes):
    data, again = prepare_dataset(name, 0, 0.15, 0.15), prepare_dataset(name, 0, 0.15, 0.15)
    assert data.info.synthetic and data.info.n_classes == classes
    counts = np.bincount(data.y("train"), minlength=classes)
    assert counts.min() > 0.8 * counts.mean()
    np.testing.assert_array_equal(data.X("train"), again.X("train"))


def test_topics_documents_carry_more_words_of_their_own_topic_than_of_any_other():
    from metalr.tasks.datasets import TOPIC_WORDS

    data = prepare_dataset("topics", 0, 0.15, 0.15)
    X, y = data.X("train"), data.y("train")
    topic_of = np.where((X >= 1) & (X <= 4 * TOPIC_WORDS), (X - 1) // TOPIC_WORDS, -1)
    counts = np.stack([(topic_of == k).sum(1) for k in range(4)], axis=1)
    # Labels carry 5% noise; beyond it, the own topic wins (ties: 2 own words, 2 distractors).
    assert (counts.argmax(1) == y).mean() > 0.8


def test_saved_split_data_round_trips(tmp_path, digits):
    digits.save(tmp_path / "d.npz")
    loaded = SplitData.load(tmp_path / "d.npz")
    assert loaded.info == digits.info
    for key, value in digits.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], value)


def test_unknown_dataset_lists_the_builtin_ones():
    with pytest.raises(KeyError, match="digits"):
        prepare_dataset("imagenet", 0, 0.15, 0.15)


def test_task_view_draws_a_fixed_subset_and_noisy_labels_from_the_task_alone(digits):
    import dataclasses

    from conftest import make_task

    from metalr.tasks.datasets import task_view

    task = dataclasses.replace(make_task(), subset=0.5, label_noise=0.3)
    a, b = task_view(digits, task), task_view(digits, task)
    n = len(digits.y("train"))
    assert len(a.y("train")) == round(n / 2) == a.info.sizes["train"]
    np.testing.assert_array_equal(a.y("train"), b.y("train"))
    np.testing.assert_array_equal(a.y("test"), digits.y("test"))  # held-back splits untouched
    clean = digits.y("train")[[np.flatnonzero((digits.X("train") == x).all((1, 2, 3)))[0] for x in a.X("train")]]
    assert 0.15 < (clean != a.y("train")).mean() < 0.35  # 30% replaced by a random class, 1/10 of them unchanged
    assert task_view(digits, make_task()) is digits
