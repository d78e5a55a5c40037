import pytest
import torch

from metalr.config import ModelSpec
from metalr.tasks import build_model, prepare_dataset

FAMILIES = [
    ("digits", "mlp"),
    ("digits", "cnn"),
    ("wine", "mlp"),
    ("sunspots", "lstm"),
    ("elnino", "gru"),
    ("synthtext", "bilstm"),
    ("shapes", "cnn"),
    ("iris", "mlp"),
]


@pytest.mark.parametrize(("dataset", "family"), FAMILIES)
def test_each_family_maps_a_batch_to_one_output_per_class_or_horizon(dataset, family):
    data = prepare_dataset(dataset, 0, 0.15, 0.15)
    model = build_model(ModelSpec(family, width=8, depth=2, dropout=0.1), data.info)
    out = model(torch.as_tensor(data.X("train")[:5]))
    expected = data.info.n_classes if data.info.kind == "classification" else 1
    assert out.shape == (5, expected)


def test_a_family_that_does_not_fit_the_modality_names_the_ones_that_do(digits):
    with pytest.raises(ValueError, match="family 'lstm'.*mlp, cnn"):
        build_model(ModelSpec("lstm"), digits.info)


def _info(modality, kind, shape, **kw):
    from metalr.tasks.datasets import DatasetInfo

    return DatasetInfo("t", kind, modality, shape, **kw)


ZOO = [
    ("vgg", dict(width=8, depth=11), _info("image", "classification", (3, 32, 32), n_classes=10), (3, 32, 32)),
    ("resnet18", {}, _info("image", "classification", (3, 32, 32), n_classes=10), (3, 32, 32)),
    ("resnet50", {}, _info("image", "classification", (1, 28, 28), n_classes=10), (1, 28, 28)),
    ("efficientnet_b0", {}, _info("image", "classification", (3, 32, 32), n_classes=100), (3, 32, 32)),
    ("bert", dict(width=32, depth=1), _info("text", "classification", (12,), n_classes=2, vocab_size=50), (12,)),
    ("gpt2", dict(width=32, depth=1), _info("text", "classification", (12,), n_classes=3, vocab_size=50), (12,)),
    ("transformer", dict(width=16, depth=1), _info("timeseries", "regression", (24, 1), extra={"horizon": 6}), (24, 1)),
    ("mlp", dict(width=16, depth=1), _info("timeseries", "regression", (24, 1), extra={"horizon": 6}), (24, 1)),
]


@pytest.mark.parametrize(("family", "size", "info", "shape"), ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model_maps_a_batch_to_classes_or_the_forecast_horizon(family, size, info, shape):
    from metalr.tasks import count_parameters

    model = build_model(ModelSpec(family, **size), info)
    x = torch.randint(1, 50, (2, *shape)) if info.modality == "text" else torch.randn(2, *shape)
    x[0, -3:] = 0 if info.modality == "text" else x[0, -3:]  # padded tail
    out = model(x)
    assert out.shape == (2, info.n_classes or info.extra["horizon"])
    out.sum().backward()
    assert count_parameters(model) > 0


def test_resnet_has_the_32x32_stem_and_its_torchvision_size():
    from metalr.tasks import count_parameters

    model = build_model(ModelSpec("resnet18"), _info("image", "classification", (3, 32, 32), n_classes=10))
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert 11_000_000 < count_parameters(model) < 11_300_000


@pytest.mark.parametrize("family", ["deepspeech", "wav2vec2"])
def test_ctc_models_emit_per_frame_log_probabilities_within_the_input_length(family):
    from metalr.tasks.objectives import batch_loss

    info = _info("audio", "ctc", (20,), vocab_size=29)
    model = build_model(ModelSpec(family, width=32, depth=1), info)
    lengths = torch.tensor([4000, 3000])
    batch = {"X": torch.randn(2, 50, 20), "L": torch.tensor([50, 38]), "W": torch.randn(2, 4000), "K": lengths}
    batch |= {"y": torch.tensor([[3, 4, 5], [6, 7, 0]]), "M": torch.tensor([3, 2])}
    log_probs, frames = model(*(batch[k] for k in model.inputs))
    assert log_probs.shape[-1] == 29 and (frames <= log_probs.shape[1]).all()
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(()), atol=1e-4)
    loss = batch_loss(model, batch, info)
    loss.backward()
    assert torch.isfinite(loss)
