"""Meta-learner networks: read a sequence of decision inputs, emit bounded log-multipliers."""

from __future__ import annotations

import torch
from torch import nn

from metalr.meta.inputs import MAX_LOG_MULT


class LSTMMetaLearner(nn.Module):
    """LSTM over decision inputs; a zero-initialised head makes the untrained model exactly cosine."""

    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(n_inputs))
        self.register_buffer("input_std", torch.ones(n_inputs))
        self.lstm = nn.LSTM(n_inputs, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: torch.Tensor, state=None):
        """inputs (B, T, F) -> log-multipliers (B, T) in [-ln 10, ln 10], and the LSTM state."""
        normalised = (inputs - self.input_mean) / self.input_std
        out, state = self.lstm(normalised, state)
        return MAX_LOG_MULT * torch.tanh(self.head(out).squeeze(-1)), state


ARCHITECTURES = {"lstm": LSTMMetaLearner}
