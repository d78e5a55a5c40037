import pytest
import torch

from metalr.config import ModelSpec
from metalr.tasks import build_model, prepare_dataset

FAMILIES = [("digits", "mlp"), ("digits", "cnn"), ("wine", "mlp"), ("sunspots", "lstm"), ("synthtext", "bilstm")]


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
