"""Meta-learner networks: read a causal sequence of decision inputs, emit bounded log-multipliers.

Every architecture normalises its inputs with statistics fixed at fit time and ends in a
zero-initialised head, so the untrained model outputs a = 0 everywhere: exactly cosine.

torch is the source of truth: fitting and whole sequences run the modules. A scheduler's
decisions, one input at a time, run the same functions in numpy (float32, as the weights) on a copy of the
weights (a ``Decider``), where torch's per-operation dispatch on these tiny tensors would cost
tens of microseconds per decision, more than the arithmetic.
"""

from __future__ import annotations

import abc
import math

import numpy as np
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

    def decide(self, inputs, state=None) -> tuple[float, object]:
        """One decision: ``inputs`` (F,) after the decisions ``state`` carries -> (log-multiplier, state).

        The same function as ``forward`` on a one-step sequence, in numpy (see the module's
        docstring). The state is float32 arrays in the layout of the module's own state (the
        Transformer's: its per-layer keys and values).
        """
        return self.numpy_decider().decide(np.asarray(inputs, dtype=np.float32), state)

    def numpy_decider(self) -> Decider:
        """The numpy copy of the current weights that runs one decision at a time."""
        decider = self.__dict__.get("_decider")
        if decider is None or decider.stale():
            # The copy follows the weights: a load_state_dict or an optimizer step bumps their versions.
            decider = self.__dict__["_decider"] = self._make_decider()
        return decider

    @abc.abstractmethod
    def _make_decider(self) -> Decider:
        """A numpy copy of the weights as they are now."""


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 copy: the weights' own precision, so decisions round as torch's did."""
    return tensor.detach().cpu().numpy().astype(np.float32)


_ONE = np.ones(1, dtype=np.float32)


def _fused_cell_weights(w_ih, w_hh, b_ih, b_hh, blocks) -> np.ndarray:
    """One matrix for a cell's gate pre-activations from [input, hidden, 1]: the bias is its last column.

    ``blocks`` lists, per output block of the cell's gates, whether it reads the input, the
    hidden state (their biases come along) and the factor it is scaled by (1/2 for sigmoid
    gates, computed as (1 + tanh(x / 2)) / 2 so that one tanh serves all of them).
    """
    rows = []
    size = w_hh.shape[1]
    for gate, from_input, from_hidden, scale in blocks:
        part = slice(gate * size, (gate + 1) * size)
        w_x = w_ih[part] if from_input else np.zeros_like(w_ih[part])
        w_h = w_hh[part] if from_hidden else np.zeros_like(w_hh[part])
        bias = (b_ih[part] if from_input else 0.0) + (b_hh[part] if from_hidden else 0.0)
        rows.append(scale * np.hstack([w_x, w_h, bias[:, None]]))
    return np.ascontiguousarray(np.vstack(rows), dtype=np.float32)


class Decider(abc.ABC):
    """A learner's weights as float32 arrays: normalisation, the body's one-input ``step``, the head."""

    def __init__(self, learner: MetaLearner):
        self._tensors = [*learner.parameters(), *learner.buffers()]
        self._versions = [t._version for t in self._tensors]
        self.mean = _array(learner.input_mean)
        # std > 0 is checked when a checkpoint loads; the fit floors it at 1e-3.
        self.inv_std = np.float32(1.0) / _array(learner.input_std)
        self.head_weight, self.head_bias = _array(learner.head.weight)[0], float(learner.head.bias.detach())

    def stale(self) -> bool:
        """Whether a weight of the learner changed in place since this copy was taken."""
        return [t._version for t in self._tensors] != self._versions

    def normalise(self, inputs: np.ndarray) -> np.ndarray:
        return (inputs - self.mean) * self.inv_std

    def decide(self, inputs: np.ndarray, state) -> tuple[float, object]:
        return self.decide_normalised(self.normalise(inputs), state)

    def decide_normalised(self, normalised: np.ndarray, state) -> tuple[float, object]:
        out, state = self.step(normalised, state)
        return MAX_LOG_MULT * math.tanh(float(self.head_weight @ out) + self.head_bias), state

    @abc.abstractmethod
    def step(self, normalised: np.ndarray, state) -> tuple[np.ndarray, object]:
        """normalised (F,) -> body output (hidden,), the state after this decision."""


class _RecurrentDecider(Decider):
    """A stacked ``nn.GRU``/``nn.LSTM`` cell by cell, each layer's gates from one fused matrix."""

    # Per gate block of torch's layout: (block, reads the input, reads the hidden state, scale).
    BLOCKS: tuple[tuple[int, bool, bool, float], ...]

    def __init__(self, learner: MetaLearner, rnn: nn.RNNBase):
        super().__init__(learner)
        self.hidden = rnn.hidden_size
        self.layers = [
            _fused_cell_weights(
                *(_array(getattr(rnn, f"{name}_l{k}")) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
                self.BLOCKS,
            )
            for k in range(rnn.num_layers)
        ]


class _GRUDecider(_RecurrentDecider):
    """``nn.GRU``'s cell; the state is (layers, 1, hidden) as the module's.

    Fused rows: reset and update gates (halved, for the tanh form of the sigmoid), the new
    gate's input part, then its hidden part (halved: it is multiplied by 2 x reset gate).
    """

    BLOCKS = ((0, True, True, 0.5), (1, True, True, 0.5), (2, True, False, 1.0), (2, False, True, 0.5))

    def step(self, x, state):
        size = self.hidden
        if state is None:
            state = np.zeros((len(self.layers), 1, size), dtype=np.float32)
        new = np.empty_like(state)
        for k, weight in enumerate(self.layers):
            h = state[k, 0]
            gates = weight @ np.concatenate((x, h, _ONE))
            t = np.tanh(gates[: 2 * size])  # reset = (1 + t_r) / 2, update = (1 + t_z) / 2
            n = np.tanh(gates[2 * size : 3 * size] + (1.0 + t[:size]) * gates[3 * size :])
            x = new[k, 0] = n + (0.5 + 0.5 * t[size:]) * (h - n)
        return x, new


class _LSTMDecider(_RecurrentDecider):
    """``nn.LSTM``'s cell; the state is a pair of (layers, 1, hidden) as the module's.

    Fused rows in torch's gate order input, forget, cell, output; the sigmoid gates halved,
    so one tanh gives (2 x gate - 1) for them and the cell gate itself.
    """

    BLOCKS = ((0, True, True, 0.5), (1, True, True, 0.5), (2, True, True, 1.0), (3, True, True, 0.5))

    def step(self, x, state):
        size = self.hidden
        if state is None:
            zeros = np.zeros((len(self.layers), 1, size), dtype=np.float32)
            state = (zeros, zeros)
        hs, cs = np.empty_like(state[0]), np.empty_like(state[1])
        for k, weight in enumerate(self.layers):
            t = np.tanh(weight @ np.concatenate((x, state[0][k, 0], _ONE)))
            u = 1.0 + t  # 2 x gate for the sigmoid gates
            c = cs[k, 0] = 0.5 * (u[size : 2 * size] * state[1][k, 0] + u[:size] * t[2 * size : 3 * size])
            x = hs[k, 0] = 0.5 * u[3 * size :] * np.tanh(c)
        return x, (hs, cs)


class GRUMetaLearner(MetaLearner):
    """The RNN of the seed: a GRU (gated Elman network) over decisions."""

    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1):
        super().__init__(n_inputs, hidden)
        self.rnn = nn.GRU(n_inputs, hidden, num_layers=layers, batch_first=True)

    def encode(self, normalised, state):
        return self.rnn(normalised, state)

    def _make_decider(self) -> Decider:
        return _GRUDecider(self, self.rnn)


class LSTMMetaLearner(MetaLearner):
    def __init__(self, n_inputs: int, hidden: int = 32, layers: int = 1):
        super().__init__(n_inputs, hidden)
        self.lstm = nn.LSTM(n_inputs, hidden, num_layers=layers, batch_first=True)

    def encode(self, normalised, state):
        return self.lstm(normalised, state)

    def _make_decider(self) -> Decider:
        return _LSTMDecider(self, self.lstm)


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

    def _make_decider(self) -> Decider:
        return _TransformerDecider(self)


class _TransformerDecider(Decider):
    """The newest position only: its query over every layer's cached keys and values.

    Causality leaves earlier positions' layer inputs, hence their keys and values, unchanged,
    so caching them per layer is exact. Each layer is ``nn.TransformerEncoderLayer``'s
    post-norm block (norm_first=False, dropout 0, ReLU). The cache is a (keys, values) pair
    per layer, each (heads, decisions so far, head size).
    """

    def __init__(self, learner: TransformerMetaLearner):
        super().__init__(learner)
        self.embed = (_array(learner.embed.weight), _array(learner.embed.bias))
        self.layers = []
        for layer in learner.encoder.layers:
            if layer.norm_first or layer.activation is not F.relu:
                raise ValueError("TransformerMetaLearner's decider runs post-norm ReLU layers only")
            attention = layer.self_attn
            weights = [
                _array(t)
                for t in (
                    *(attention.in_proj_weight, attention.in_proj_bias),
                    *(attention.out_proj.weight, attention.out_proj.bias),
                    *(layer.linear1.weight, layer.linear1.bias, layer.linear2.weight, layer.linear2.bias),
                    *(layer.norm1.weight, layer.norm1.bias, layer.norm2.weight, layer.norm2.bias),
                )
            ]
            # The attention's 1/sqrt(head size) folded into the query rows.
            head_size = attention.head_dim
            weights[0][:head_size * attention.num_heads] /= math.sqrt(head_size)
            weights[1][:head_size * attention.num_heads] /= math.sqrt(head_size)
            self.layers.append((attention.num_heads, layer.norm1.eps, layer.norm2.eps, *weights))

    def step(self, x, cache):
        x = self.embed[0] @ x + self.embed[1]
        extended = []
        for index, (heads, eps1, eps2, w_in, b_in, w_out, b_out, w1, b1, w2, b2, *norms) in enumerate(self.layers):
            query, key, value = (w_in @ x + b_in).reshape(3, heads, 1, -1)
            if cache is not None:
                key = np.concatenate((cache[index][0], key), axis=1)
                value = np.concatenate((cache[index][1], value), axis=1)
            extended.append((key, value))
            scores = query @ key.transpose(0, 2, 1)
            weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attended = ((weights @ value) / weights.sum(axis=-1, keepdims=True)).reshape(-1)
            x = _layer_norm(x + w_out @ attended + b_out, norms[0], norms[1], eps1)
            x = _layer_norm(x + w2 @ np.maximum(w1 @ x + b1, 0.0) + b2, norms[2], norms[3], eps2)
        return x, tuple(extended)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.sum() / x.size
    return centred * (weight / math.sqrt(centred @ centred / x.size + eps)) + bias


ARCHITECTURES: dict[str, type[MetaLearner]] = {
    "gru": GRUMetaLearner,
    "lstm": LSTMMetaLearner,
    "transformer": TransformerMetaLearner,
}
ARCHITECTURE_LABELS = {"gru": "RNN (GRU)", "lstm": "LSTM", "transformer": "Transformer"}
