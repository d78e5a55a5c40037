"""Meta-learner networks: read a causal sequence of decision inputs, emit bounded log-multipliers.

Every architecture normalises its inputs with statistics fixed at fit time and ends in a
zero-initialised head, so the untrained model outputs a = 0 everywhere: exactly cosine.
"""

from __future__ import annotations

import abc

import torch
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


class GRUMetaLearner(MetaLearner):
    """The RNN of the seed: a GRU (gated Elman network) over decisions."""

    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1):
        super().__init__(n_inputs, hidden)
        self.rnn = nn.GRU(n_inputs, hidden, num_layers=layers, batch_first=True)

    def encode(self, normalised, state):
        return self.rnn(normalised, state)


class LSTMMetaLearner(MetaLearner):
    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1):
        super().__init__(n_inputs, hidden)
        self.lstm = nn.LSTM(n_inputs, hidden, num_layers=layers, batch_first=True)

    def encode(self, normalised, state):
        return self.lstm(normalised, state)


class TransformerMetaLearner(MetaLearner):
    """A causal Transformer encoder over decisions.

    It has no positional embedding: position enters only through the progress and
    remaining-steps inputs, so a horizon never seen in meta-training is no new position.
    Its carried state is the normalised inputs seen so far (a few dozen decisions per run).
    """

    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1, heads: int = 4):
        super().__init__(n_inputs, hidden)
        self.embed = nn.Linear(n_inputs, hidden)
        heads = heads if hidden % heads == 0 else 1
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def encode(self, normalised, state):
        history = normalised if state is None else torch.cat([state, normalised], dim=1)
        length = history.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=history.device)
        out = self.encoder(self.embed(history), mask=mask, is_causal=True)
        return out[:, -normalised.shape[1] :], history


ARCHITECTURES: dict[str, type[MetaLearner]] = {
    "gru": GRUMetaLearner,
    "lstm": LSTMMetaLearner,
    "transformer": TransformerMetaLearner,
}
ARCHITECTURE_LABELS = {"gru": "RNN (GRU)", "lstm": "LSTM", "transformer": "Transformer"}
