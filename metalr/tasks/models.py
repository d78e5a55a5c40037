"""Model families, sized from a ModelSpec and the dataset's shape."""

from __future__ import annotations

from torch import nn

from metalr.config import ModelSpec
from metalr.tasks.datasets import DatasetInfo


class MLP(nn.Sequential):
    def __init__(self, in_features: int, out_features: int, width: int, depth: int, dropout: float):
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(width if depth else in_features, out_features))
        super().__init__(*layers)


class SmallCNN(nn.Sequential):
    """Conv-BN-ReLU blocks with pooling, then global average pooling and a linear head."""

    def __init__(self, in_channels: int, out_features: int, width: int, depth: int, dropout: float):
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth + 1):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, out_features)]
        super().__init__(*layers)


class LSTMForecaster(nn.Module):
    """Reads a window of a series and predicts the next value(s)."""

    def __init__(self, in_features: int, horizon: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(
            in_features, width, num_layers=depth, batch_first=True, dropout=dropout if depth > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, horizon)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(self.dropout(out[:, -1]))


class BiLSTMClassifier(nn.Module):
    """Embedding, bidirectional LSTM, mean pooling over non-padding tokens, linear head."""

    def __init__(self, vocab_size: int, n_classes: int, width: int, depth: int, dropout: float, embed_dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embed_dim,
            width,
            num_layers=depth,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if depth > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, tokens):
        mask = (tokens != 0).unsqueeze(-1).float()
        out, _ = self.lstm(self.embed(tokens))
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


MODEL_MODALITIES = {"mlp": {"image", "tabular"}, "cnn": {"image"}, "lstm": {"timeseries"}, "bilstm": {"text"}}


def build_model(spec: ModelSpec, info: DatasetInfo) -> nn.Module:
    if info.modality not in MODEL_MODALITIES[spec.family]:
        raise ValueError(
            f"model family {spec.family!r} does not fit {info.modality} dataset {info.name!r}; "
            f"families for {info.modality}: " + ", ".join(f for f, m in MODEL_MODALITIES.items() if info.modality in m)
        )
    out = info.n_classes if info.kind == "classification" else 1
    if spec.family == "mlp":
        in_features = 1
        for d in info.input_shape:
            in_features *= d
        return MLP(in_features, out, spec.width, spec.depth, spec.dropout)
    if spec.family == "cnn":
        return SmallCNN(info.input_shape[0], out, spec.width, spec.depth, spec.dropout)
    if spec.family == "lstm":
        return LSTMForecaster(info.input_shape[-1], out, spec.width, spec.depth, spec.dropout)
    return BiLSTMClassifier(info.vocab_size, out, spec.width, spec.depth, spec.dropout)
