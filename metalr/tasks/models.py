"""The model zoo, sized from a ModelSpec (width, depth) and the dataset's shape.

Every model maps a batch's inputs to outputs: class logits (classification), the forecast
horizon (regression), or per-frame log-probabilities and frame counts (CTC speech models,
which take ``(inputs, lengths)``). ``model.inputs`` names the batch columns a model reads.
"""

from __future__ import annotations

import torch
from torch import nn

from metalr.config import ModelSpec
from metalr.tasks.registry import MODEL_FAMILIES, families_for
from metalr.tasks.splits import DatasetInfo


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


VGG_CONFIGS = {11: "A", 13: "B", 16: "D", 19: "E"}


class VGGNet(nn.Sequential):
    """torchvision's VGG layer configuration (BatchNorm), channels scaled by width/64, a small head.

    Pooling stops once the feature map is 1x1, so the net also fits 8x8 or 28x28 inputs.
    """

    def __init__(self, in_channels: int, size: int, out_features: int, width: int, depth: int, dropout: float):
        # Lazy here and below: torchvision and transformers take seconds to import; only their families need them.
        from torchvision.models.vgg import cfgs, make_layers

        config, pools = [], size
        for item in cfgs[VGG_CONFIGS[depth]]:
            if item == "M":
                if pools > 1:
                    config.append("M")
                    pools //= 2
            else:
                config.append(max(1, item * width // 64))
        features = make_layers(config, batch_norm=True)
        features[0] = nn.Conv2d(in_channels, config[0], kernel_size=3, padding=1)
        channels = [c for c in config if c != "M"][-1]
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, out_features)]
        super().__init__(features, *head)


def _torchvision_resnet(name: str, in_channels: int, out_features: int) -> nn.Module:
    """torchvision ResNet with a 3x3 stride-1 stem and no max-pool, the usual form for 32x32 images."""
    import torchvision

    model = getattr(torchvision.models, name)(weights=None, num_classes=out_features)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _efficientnet_b0(in_channels: int, out_features: int, dropout: float) -> nn.Module:
    import torchvision

    model = torchvision.models.efficientnet_b0(weights=None, num_classes=out_features, dropout=dropout)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=stem.stride, padding=1, bias=False)
    return model


class RecurrentForecaster(nn.Module):
    """Reads a window of a series with a recurrent net (``nn.LSTM`` or ``nn.GRU``) and predicts the next value(s)."""

    def __init__(self, cell: type[nn.RNNBase], in_features: int, horizon: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.rnn = cell(in_features, width, num_layers=depth, batch_first=True, dropout=dropout if depth > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, horizon)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(self.dropout(out[:, -1]))


class TransformerForecaster(nn.Module):
    """A Transformer encoder over the window (learned positions); the last position predicts the horizon."""

    def __init__(self, in_features: int, window: int, horizon: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.embed = nn.Linear(in_features, width)
        self.position = nn.Parameter(torch.zeros(1, window, width))
        layer = nn.TransformerEncoderLayer(width, max(1, width // 16), 2 * width, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, horizon)

    def forward(self, x):
        out = self.encoder(self.embed(x) + self.position[:, -x.shape[1] :])
        return self.head(out[:, -1])


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
        out, _ = self.lstm(self.embed(tokens.long()))
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


class HFSequenceClassifier(nn.Module):
    """A randomly initialised transformers classifier (BERT- or GPT-2-shaped); padding id 0 is masked."""

    def __init__(self, family: str, vocab_size: int, max_length: int, n_classes: int, width, depth, dropout):
        super().__init__()
        import transformers

        heads = max(1, width // 64)
        if family == "bert":
            config = transformers.BertConfig(
                vocab_size=vocab_size,
                hidden_size=width,
                num_hidden_layers=depth,
                num_attention_heads=heads,
                intermediate_size=4 * width,
                max_position_embeddings=max(max_length, 8),
                hidden_dropout_prob=dropout,
                attention_probs_dropout_prob=dropout,
                num_labels=n_classes,
                pad_token_id=0,
            )
            self.model = transformers.BertForSequenceClassification(config)
        else:
            config = transformers.GPT2Config(
                vocab_size=vocab_size,
                n_embd=width,
                n_layer=depth,
                n_head=heads,
                n_positions=max(max_length, 8),
                resid_pdrop=dropout,
                embd_pdrop=dropout,
                attn_pdrop=dropout,
                num_labels=n_classes,
                pad_token_id=0,
                # GPT-2's own ids (50256) lie outside a small vocabulary; a classifier needs neither.
                bos_token_id=None,
                eos_token_id=None,
            )
            self.model = transformers.GPT2ForSequenceClassification(config)

    def forward(self, tokens):
        tokens = tokens.long()
        return self.model(input_ids=tokens, attention_mask=(tokens != 0).long()).logits


class DeepSpeechCTC(nn.Module):
    """DeepSpeech-like: 2-D convolutions over log-mel (time stride 2), a BiLSTM, per-frame characters."""

    inputs = ("X", "L")

    def __init__(self, n_mels: int, vocab: int, width: int, depth: int, dropout: float):
        super().__init__()
        channels = 32
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, (11, 5), stride=(2, 2), padding=(5, 2)),
            nn.BatchNorm2d(channels),
            nn.Hardtanh(0, 20),
        )
        self.lstm = nn.LSTM(
            channels * ((n_mels + 1) // 2),
            width,
            num_layers=depth,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if depth > 1 else 0.0,
        )
        self.head = nn.Linear(2 * width, vocab)
        self.register_buffer("feature_mean", torch.zeros(n_mels))
        self.register_buffer("feature_std", torch.ones(n_mels))

    def forward(self, feats, lengths):
        x = self.conv(((feats - self.feature_mean) / self.feature_std).unsqueeze(1))  # (B, C, T', F')
        x = x.permute(0, 2, 1, 3).flatten(2)
        out, _ = self.lstm(x)
        return self.head(out).log_softmax(-1), (lengths + 1) // 2


class Wav2Vec2CTC(nn.Module):
    """A small Wav2Vec2-shaped CTC model from ``transformers`` config, randomly initialised, on raw audio."""

    inputs = ("W", "K")

    def __init__(self, vocab: int, width: int, depth: int, dropout: float):
        super().__init__()
        import transformers

        config = transformers.Wav2Vec2Config(
            vocab_size=vocab,
            hidden_size=width,
            num_hidden_layers=depth,
            num_attention_heads=max(1, width // 32),
            intermediate_size=2 * width,
            conv_dim=(width,) * 4,
            conv_stride=(5, 4, 4, 2),
            conv_kernel=(10, 4, 4, 2),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            hidden_dropout=dropout,
            activation_dropout=dropout,
            attention_dropout=dropout,
            feat_proj_dropout=dropout,
            mask_time_prob=0.0,
            pad_token_id=0,
            ctc_loss_reduction="mean",
        )
        self.model = transformers.Wav2Vec2ForCTC(config)

    def forward(self, waves, lengths):
        mask = torch.arange(waves.shape[1], device=waves.device)[None] < lengths[:, None]
        logits = self.model(input_values=waves, attention_mask=mask.long()).logits
        frames = self.model._get_feat_extract_output_lengths(lengths)
        return logits.log_softmax(-1), frames.clamp(max=logits.shape[1])


def build_model(spec: ModelSpec, info: DatasetInfo) -> nn.Module:
    if info.modality not in MODEL_FAMILIES[spec.family].modalities:
        raise ValueError(
            f"model family {spec.family!r} does not fit {info.modality} dataset {info.name!r}; "
            f"families for {info.modality}: " + ", ".join(families_for(info.modality))
        )
    family = MODEL_FAMILIES[spec.family]
    width = spec.width or family.width or 0
    depth = spec.depth or family.depth or 0
    dropout = spec.dropout
    out = {"classification": info.n_classes, "regression": info.extra.get("horizon", 1)}.get(info.kind, 0)
    shape = info.input_shape
    if spec.family == "mlp":
        return MLP(int(torch.tensor(shape).prod()), out, width, depth, dropout)
    if spec.family == "cnn":
        return SmallCNN(shape[0], out, width, depth, dropout)
    if spec.family == "vgg":
        return VGGNet(shape[0], shape[-1], out, width, depth, dropout)
    if spec.family in ("resnet18", "resnet50"):
        return _torchvision_resnet(spec.family, shape[0], out)
    if spec.family == "efficientnet_b0":
        return _efficientnet_b0(shape[0], out, dropout)
    if spec.family in ("lstm", "gru"):
        cell = nn.LSTM if spec.family == "lstm" else nn.GRU
        return RecurrentForecaster(cell, shape[-1], out, width, depth, dropout)
    if spec.family == "transformer":
        return TransformerForecaster(shape[-1], shape[0], out, width, depth, dropout)
    if spec.family == "bilstm":
        return BiLSTMClassifier(info.vocab_size, out, width, depth, dropout)
    if spec.family in ("bert", "gpt2"):
        return HFSequenceClassifier(spec.family, info.vocab_size, shape[0], out, width, depth, dropout)
    if spec.family == "deepspeech":
        model = DeepSpeechCTC(shape[0], info.vocab_size, width, depth, dropout)
        if "feature_mean" in info.extra:
            model.feature_mean.copy_(torch.tensor(info.extra["feature_mean"]))
            model.feature_std.copy_(torch.tensor(info.extra["feature_std"]))
        return model
    return Wav2Vec2CTC(info.vocab_size, width, depth, dropout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
