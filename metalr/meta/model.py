"""Meta-learner networks: read a causal sequence of decision inputs, emit bounded log-multipliers.

Every architecture normalises its inputs with statistics fixed at fit time and ends in a
zero-initialised head, so the untrained model outputs a = 0 everywhere: exactly cosine.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from metalr.meta.inputs import MAX_LOG_MULT


class MetaLearner(nn.Module, abc.ABC):
    """Base: input normalisation, a sequence body (``encode``) and the bounded zero-initialised head."""

    def __init__(self, n_inputs: int, hidden: int):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(n_inputs))
        self.register_buffer("input_std", torch.ones(n_inputs))
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @abc.abstractmethod
    def encode(self, normalised: torch.Tensor, state):
        """The sequence body: (hidden outputs, carried state) for normalised inputs and the state so far."""

    def normalise(self, inputs: torch.Tensor) -> torch.Tensor:
        return (inputs - self.input_mean) / self.input_std

    def forward(self, inputs: torch.Tensor, state=None):
        """inputs (B, T, F) -> log-multipliers (B, T) in [-ln 10, ln 10], and the state to carry on with."""
        out, state = self.encode(self.normalise(inputs), state)
        return MAX_LOG_MULT * torch.tanh(self.head(out).squeeze(-1)), state

    @torch.inference_mode()
    def decide(self, inputs: torch.Tensor, state=None) -> tuple[float, object]:
        """One decision: ``inputs`` (F,) after the decisions ``state`` carries -> (log-multiplier, state).

        The same function as ``forward`` on a one-step sequence, through the layers' functional
        kernels: a scheduler makes one decision at a time, where module-call overhead would cost
        more than the arithmetic.
        """
        out, state = self.step(self.normalise(inputs).view(1, -1), state)
        return MAX_LOG_MULT * math.tanh(float(F.linear(out, self.head.weight, self.head.bias))), state

    def step(self, normalised: torch.Tensor, state):
        """normalised (1, F) -> body output (1, hidden), the state after this decision."""
        out, state = self.encode(normalised.unsqueeze(0), state)
        return out[0], state


def _stacked_cells(rnn: nn.RNNBase, cell, x: torch.Tensor, state):
    """One time step of a batch-of-one ``nn.GRU``/``nn.LSTM`` via its cell kernel, layer by layer.

    ``state`` has the module's own layout ((layers, 1, hidden), a pair of them for the LSTM)."""
    lstm = isinstance(rnn, nn.LSTM)
    if state is None:
        zeros = x.new_zeros(rnn.num_layers, 1, rnn.hidden_size)
        state = (zeros, zeros) if lstm else zeros
    outs = []
    for k in range(rnn.num_layers):
        weights = [getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        carried = (state[0][k], state[1][k]) if lstm else state[k]
        new = cell(x, carried, *weights)
        x = new[0] if lstm else new
        outs.append(new)
    if lstm:
        return x, (torch.stack([h for h, _ in outs]), torch.stack([c for _, c in outs]))
    return x, torch.stack(outs)


class GRUMetaLearner(MetaLearner):
    """The RNN of the seed: a GRU (gated Elman network) over decisions."""

    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1):
        super().__init__(n_inputs, hidden)
        self.rnn = nn.GRU(n_inputs, hidden, num_layers=layers, batch_first=True)

    def encode(self, normalised, state):
        return self.rnn(normalised, state)

    def step(self, normalised, state):
        return _stacked_cells(self.rnn, torch.gru_cell, normalised, state)


class LSTMMetaLearner(MetaLearner):
    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1):
        super().__init__(n_inputs, hidden)
        self.lstm = nn.LSTM(n_inputs, hidden, num_layers=layers, batch_first=True)

    def encode(self, normalised, state):
        return self.lstm(normalised, state)

    def step(self, normalised, state):
        return _stacked_cells(self.lstm, torch.lstm_cell, normalised, state)


class TransformerMetaLearner(MetaLearner):
    """A causal Transformer encoder over decisions.

    It has no positional embedding: position enters only through the progress and
    remaining-steps inputs, so a horizon never seen in meta-training is no new position.
    Whole sequences (fitting) go through the encoder with a causal mask. Decisions made one
    at a time (the scheduler, ``decide``) carry a key/value cache instead, so a decision costs
    one query per layer rather than re-encoding the run's whole decision history.
    """

    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1, heads: int = 4):
        super().__init__(n_inputs, hidden)
        self.embed = nn.Linear(n_inputs, hidden)
        heads = heads if hidden % heads == 0 else 1
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def encode(self, normalised, state):
        if state is not None:
            raise ValueError("TransformerMetaLearner encodes whole sequences; decide() carries a key/value cache")
        length = normalised.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=normalised.device)
        return self.encoder(self.embed(normalised), mask=mask, is_causal=True), None

    def step(self, normalised, cache):
        """The newest position only: its query over every layer's cached keys and values.

        Causality leaves earlier positions' layer inputs, hence their keys and values,
        unchanged, so caching them per layer is exact. Each layer is
        ``nn.TransformerEncoderLayer``'s post-norm block (norm_first=False, dropout 0).
        """
        x = F.linear(normalised, self.embed.weight, self.embed.bias)
        extended = []
        for index, layer in enumerate(self.encoder.layers):
            attention = layer.self_attn
            heads = attention.num_heads
            query, key, value = F.linear(x, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
            query, key, value = (t.reshape(heads, 1, -1) for t in (query, key, value))
            if cache is not None:
                key, value = torch.cat([cache[index][0], key], 1), torch.cat([cache[index][1], value], 1)
            extended.append((key, value))
            attended = F.scaled_dot_product_attention(query, key, value).reshape(1, -1)
            x = _layer_norm(layer.norm1, x + F.linear(attended, attention.out_proj.weight, attention.out_proj.bias))
            hidden = layer.activation(F.linear(x, layer.linear1.weight, layer.linear1.bias))
            x = _layer_norm(layer.norm2, x + F.linear(hidden, layer.linear2.weight, layer.linear2.bias))
        return x, tuple(extended)


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


ARCHITECTURES: dict[str, type[MetaLearner]] = {
    "gru": GRUMetaLearner,
    "lstm": LSTMMetaLearner,
    "transformer": TransformerMetaLearner,
}
ARCHITECTURE_LABELS = {"gru": "RNN (GRU)", "lstm": "LSTM", "transformer": "Transformer"}
