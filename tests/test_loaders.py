"""Loading declared datasets: in-memory HF Datasets, local files, IDX, audio, shared data, the hub error."""

import csv
import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO, TEST_CONFIG
from PIL import Image

from metalr.config import ConfigError, parse_config
from metalr.tasks import DataError, SplitData, prepare_dataset
from metalr.tasks.preprocess import prepare_tables
from metalr.tasks.sources import read_idx

SHARED = REPO.parent / "shared" / "data"
FASHION = "/usr/share/datasets/fashion-mnist"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")


def _config(datasets: dict, tasks: dict):
    """A parsed config declaring ``datasets`` and ``tasks`` (all in meta_train, digits held out)."""
    raw = {
        "datasets": datasets,
        "tasks": tasks | {"holdout": {"dataset": "digits", "model": {"family": "mlp", "width": 8}}},
        "splits": {"meta_train": list(tasks), "held_out": ["holdout"]},
        "collect": {"schedulers": ["constant"], "seeds": 1},
        "evaluate": {"schedulers": ["cosine"], "seeds": 1},
    }
    return parse_config(raw)


def _spec(name: str = "d", family: str = "mlp", **entry):
    return _config({name: entry}, {"t": {"dataset": name, "model": {"family": family}}}).dataset(name)


def _prepare(spec):
    return prepare_dataset(spec, 0, 0.15, 0.15)


def test_in_memory_hf_text_dataset_is_tokenized_with_a_tokenizer_trained_on_train_only():
    import datasets

    rng = np.random.default_rng(0)
    words = {0: ["awful", "dull", "bad"], 1: ["great", "fine", "good"]}
    labels = rng.integers(0, 2, 400)
    texts = [" ".join(rng.choice(words[y], 3)) + " movie" for y in labels]
    train = datasets.Dataset.from_dict({"review": texts, "stars": labels.tolist()})
    spec = _spec(
        family="bilstm", source="csv", path="unused.csv", columns={"text": "review", "label": "stars"}, max_length=8
    )
    data = prepare_tables(spec, {"train": train}, 0, 0.15, 0.15)
    assert data.X("train").shape[1:] == (8,) and data.X("train").dtype == np.int32
    assert data.X("train")[:, 0].min() > 0  # [CLS] first, never padding
    assert (data.X("train") == 0).any()  # short texts are padded with id 0
    assert data.info.n_classes == 2 and data.info.vocab_size > 4
    sizes = [len(data.y(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 400 and sizes[1] == pytest.approx(60, abs=2)


def test_sentence_pairs_are_encoded_as_cls_a_sep_b_sep_with_a_bpe_tokenizer():
    import datasets

    first = [f"the cat sat {i}" for i in range(60)]
    second = [f"a dog ran {i}" for i in range(60)]
    train = datasets.Dataset.from_dict({"s1": first, "s2": second, "label": [i % 2 for i in range(60)]})
    columns = {"text": "s1", "text_pair": "s2", "label": "label"}
    spec = _spec(family="bert", source="csv", path="unused.csv", columns=columns, tokenizer="bpe", max_length=16)
    data = prepare_tables(spec, {"train": train}, 0, 0.2, 0.2)
    tokenizer = __import__("tokenizers").Tokenizer.from_str(data.info.extra["tokenizer"]["json"])
    ids = data.X("train")[0].tolist()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    assert ids[0] == cls and ids.count(sep) == 2 and ids[-1] == 0
    between = tokenizer.decode(ids[1 : ids.index(sep)])
    assert between.strip().startswith("the cat sat")


def test_in_memory_hf_dataset_keeps_its_own_test_split_and_carves_val_stratified():
    import datasets

    labels = np.repeat([0, 1, 2], 100)
    table = {"x1": np.arange(300.0), "x2": ["a", "b", "c"] * 100, "y": labels}
    train = datasets.Dataset.from_dict({k: list(v) for k, v in table.items()})
    test = datasets.Dataset.from_dict({k: list(v)[:30] for k, v in table.items()})
    spec = _spec(source="csv", path="unused.csv", columns={"label": "y"})
    data = prepare_tables(spec, {"train": train, "test": test}, 0, 0.2, 0.15)
    assert len(data.y("test")) == 30 and len(data.y("val")) == 60
    assert np.bincount(data.y("val")).tolist() == [20, 20, 20]
    # One standardised numeric column and a one-hot encoded categorical one.
    assert data.X("train").shape[1] == 1 + 3


def test_string_labels_map_to_sorted_class_ids_and_unlabelled_splits_are_dropped():
    import datasets

    train = datasets.Dataset.from_dict({"f": list(range(40)), "y": ["yes", "no"] * 20})
    test = datasets.Dataset.from_dict({"f": list(range(10)), "y": [None] * 10})
    spec = _spec(source="csv", path="unused.csv", columns={"label": "y"})
    data = prepare_tables(spec, {"train": train, "test": test}, 0, 0.2, 0.2)
    assert data.info.class_names == ["no", "yes"]
    assert len(data.y("test")) == 8  # carved from train, the label-less test split ignored


def test_local_csv_with_options_loads_through_load_dataset(tmp_path):
    path = tmp_path / "adult.data"
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(200):
        age = int(rng.integers(18, 80))
        rows.append(f"{age}, {rng.choice(['Private', '?', 'State-gov'])}, {'>50K' if age > 45 else '<=50K'}")
    path.write_text("\n".join(rows) + "\n")
    spec = _spec(
        source="csv",
        path=str(path),
        options={"column_names": ["age", "work", "income"], "skipinitialspace": True, "na_values": ["?"]},
        columns={"label": "income"},
        metric="auc",
    )
    data = _prepare(spec)
    assert data.info.class_names == ["<=50K", ">50K"] and data.info.metric == "auc"
    assert np.isfinite(data.X("train")).all()  # '?' imputed
    assert data.info.metrics == ("acc", "f1", "auc")


def test_local_imagefolder_becomes_uint8_images_with_training_statistics(tmp_path):
    rng = np.random.default_rng(2)
    for label, colour in (("red", 0), ("green", 1)):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 60, (12, 12, 3)).astype(np.uint8)
            pixels[..., colour] += 180
            Image.fromarray(pixels).save(tmp_path / "train" / label / f"{i}.png")
    data = _prepare(_spec(source="imagefolder", path=str(tmp_path), image_size=8))
    assert data.X("train").dtype == np.uint8 and data.X("train").shape[1:] == (3, 8, 8)
    assert data.info.class_names == ["green", "red"] and len(data.info.norm_mean) == 3
    red = data.X("train")[data.y("train") == 1]
    assert red[:, 0].mean() > red[:, 1].mean() + 100


def test_local_text_folder_gives_a_document_per_file_labelled_by_its_folder(tmp_path):
    for label, word in (("neg", "awful"), ("pos", "lovely")):
        (tmp_path / label).mkdir()
        for i in range(30):
            (tmp_path / label / f"{i}.txt").write_text(f"a {word} film.\nreally {word} {i}\n")
    data = _prepare(_spec(family="bilstm", source="text", path=str(tmp_path), max_length=12))
    assert data.info.class_names == ["neg", "pos"] and sum(data.info.sizes.values()) == 60
    tokenizer = __import__("tokenizers").Tokenizer.from_str(data.info.extra["tokenizer"]["json"])
    first = tokenizer.decode(data.X("train")[0].tolist())
    assert ("awful" in first) == (data.y("train")[0] == 0) and "really" in first  # both lines of one file


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_idx_files_written_here_load_with_their_train_and_test_splits(tmp_path):
    rng = np.random.default_rng(3)
    images, labels = rng.integers(0, 255, (50, 6, 6)), np.arange(50) % 5
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:10])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:10])
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    data = _prepare(_spec(source="idx", path=str(tmp_path)))
    assert data.X("test").shape == (10, 1, 6, 6) and len(data.y("val")) + len(data.y("train")) == 50


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package():
    data = _prepare(_spec(source="idx", path=FASHION, max_train=1000, max_eval=500))
    assert data.info.sizes == {"train": 1000, "val": 500, "test": 500}
    assert data.X("train").shape[1:] == (1, 28, 28) and data.info.n_classes == 10
    assert np.bincount(data.y("train")).min() >= 90  # stratified draw


@pytest.fixture(scope="module")
def tiny_audiofolder(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("speech")
    rows = []
    for speed in (130, 170, 210):
        for i, text in enumerate(["yes", "no", "up", "down", "go left", "stop right", "yes no", "go"]):
            name = f"s{speed}_{i}.wav"
            subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(root / name), text], check=True)
            rows.append((name, text))
    with open(root / "metadata.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file_name", "sentence"), *rows])
    return root


def test_audiofolder_of_wavs_becomes_log_mel_features_and_character_targets(tiny_audiofolder):
    spec = _spec(
        family="deepspeech", source="audiofolder", path=str(tiny_audiofolder), columns={"transcript": "sentence"}
    )
    data = _prepare(spec)
    assert data.info.kind == "ctc" and data.info.metric == "wer"
    assert data.X("train").shape[2] == 40 and data.arrays["L_train"].max() == data.X("train").shape[1]
    assert (data.arrays["M_train"] > 0).all() and data.y("train").max() < data.info.vocab_size


def test_ctc_speech_model_loss_falls_on_the_tiny_audiofolder(tiny_audiofolder):
    from metalr.train import RunSpec, train_run

    config = _config(
        {"speech": {"source": "audiofolder", "path": str(tiny_audiofolder), "columns": {"transcript": "sentence"}}},
        {"asr": {"dataset": "speech", "model": {"family": "deepspeech", "width": 32}, "batch_size": 8,
                 "base_lr": 3e-3, "budget_steps": 80, "val_every": 40}},
    )  # fmt: skip
    data = prepare_dataset(config.dataset("speech"), 0, 0.15, 0.15)
    result = train_run(RunSpec("collect", config.tasks["asr"], "constant", 0), data)
    losses = result.trajectory["loss_train"].to_list()
    assert result.summary["status"][0] == "ok"
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert 0.0 <= result.summary["test_wer"][0] <= 1.5


def test_uncached_hub_dataset_without_network_is_one_clear_message(tmp_path, repo):
    config = yaml.safe_load((TEST_CONFIG).read_text())
    config["datasets"] = {
        "sst2_hub": {"source": "hub", "path": "glue", "name": "sst2", "columns": {"text": "sentence", "label": "label"}}
    }
    config["tasks"]["sst2-bilstm"] = {"dataset": "sst2_hub", "model": {"family": "bilstm"}}
    config["splits"]["meta_train"].append("sst2-bilstm")
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    env = os.environ | {"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "metalr", "--config", str(path), "--results", str(tmp_path / "r"), "prepare-data",
         "--dataset", "sst2_hub"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("metalr: error") == 1
    assert "'glue' (config 'sst2') is not in the Hugging Face cache" in proc.stderr
    assert "load_dataset('glue', 'sst2')" in proc.stderr and "local files" in proc.stderr


def test_a_missing_local_path_names_the_field_and_the_working_directory(tmp_path):
    with pytest.raises(DataError, match=r"datasets\.d\.path.*working directory"):
        _prepare(_spec(source="csv", path=str(tmp_path / "nope.csv"), columns={"label": "y"}))


def test_declared_dataset_errors_name_the_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"datasets\.d\.columns\.text"):
        _spec(family="bilstm", source="csv", path="x.csv", modality="text", columns={"label": "y"})
    with pytest.raises(ConfigError, match=r"datasets\.d\.metric.*'wer'.*acc, top5, f1, auc"):
        _spec(source="csv", path="x.csv", columns={"label": "y"}, metric="wer")
    with pytest.raises(ConfigError, match=r"tasks\.t\.model\.family.*'bilstm'.*families for tabular: mlp"):
        _spec(family="bilstm", source="csv", path="x.csv", columns={"label": "y"})
    with pytest.raises(ConfigError, match=r"'datasets\.d\.source'.*'excel'.*csv"):
        _spec(source="excel", path="x.xlsx")


@needs_shared
@pytest.mark.parametrize("name", ["sst2", "imdb", "adult", "m4_hourly", "cifar10"])
def test_shared_data_slices_load_with_three_splits(name, repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    from metalr.config import load_config

    spec = load_config(repo / "config" / "shared-data.yaml").dataset(name)
    data = prepare_dataset(spec, 0, 0.15, 0.15)
    assert min(data.info.sizes.values()) > 0
    data.save(tmp_path / name)
    loaded = SplitData.load(tmp_path / name)
    for key, value in data.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], value)
    assert loaded.info == data.info


FILL_HUB_CACHE = """
import os, pathlib
from datasets.data_files import DataFilesDict
from datasets.packaged_modules.csv.csv import Csv

# What load_dataset('tinyuser/tiny_reviews') leaves in the cache on a networked machine:
# <cache>/tinyuser___tiny_reviews/<config>/<version>/<hash>/{dataset_info.json, tiny_reviews-<split>.arrow}
files = DataFilesDict.from_patterns({"train": ["reviews.csv"]}, base_path=os.getcwd())
builder = Csv(cache_dir=os.environ["HF_DATASETS_CACHE"], dataset_name="tinyuser___tiny_reviews", data_files=files,
              hash="0123abcd")
builder.download_and_prepare()
folder = pathlib.Path(builder.cache_dir)
(folder / "tinyuser___tiny_reviews-train.arrow").rename(folder / "tiny_reviews-train.arrow")
folder.parents[1].rename(folder.parents[2] / "default")
"""


def test_a_cached_hub_dataset_loads_offline_from_the_hf_cache(tmp_path, repo):
    rows = ["text,label"] + [f"{w} film {i},{int(w == 'good')}" for i in range(40) for w in ("good", "bad")]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    env = os.environ | {"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    env |= {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", FILL_HUB_CACHE], cwd=tmp_path, env=env, check=True, capture_output=True)
    config = yaml.safe_load((TEST_CONFIG).read_text())
    config["datasets"] = {
        "tiny": {"source": "hub", "path": "tinyuser/tiny_reviews", "columns": {"text": "text", "label": "label"}}
    }
    config["tasks"]["tiny-bilstm"] = {"dataset": "tiny", "model": {"family": "bilstm"}}
    config["splits"]["meta_train"].append("tiny-bilstm")
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "metalr",
        "--config",
        "hub.yaml",
        "--results",
        "r",
        "prepare-data",
        "--dataset",
        "tiny",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = SplitData.load(tmp_path / "r" / "data" / "tiny")
    assert sum(data.info.sizes.values()) == 80 and data.info.source == "hub:tinyuser/tiny_reviews"
