"""What the meta-learner sees: per-run normalised inputs, built the same way offline and online.

Both the dataset builder (reading Parquet rows) and the MetaScheduler (reading live
features) feed one ``InputBuilder`` step by step, so training and deployment cannot drift.

Every input is normalised within the run (ratios to the run's own first values, logs,
progress), so the learner cannot recognise a task by the scale of its loss or gradients.
Sparse probes are forward-filled and paired with an "age since the last value" input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# Always present: where the run is and what the schedule does now.
CORE_FEATURES = (
    "progress",  # step / budget
    "log_remaining",  # log(remaining steps + 1) / log(budget + 1)
    "log_lr_rel",  # log(current LR / base LR)
)
# Groups that the ablation removes one at a time.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "loss": (
        "log_loss_rel",  # log(loss EMA / first loss EMA)
        "loss_slope",  # log(loss EMA / loss EMA one decision ago)
        "loss_slope_long",  # log(loss EMA / loss EMA four decisions ago) / 4
    ),
    "gradients": (
        "log_grad_rel",  # log(grad norm / mean grad norm of the first window)
        "log_upd_ratio",  # log10 of the update-to-weight ratio
        "grad_cos",  # cosine between consecutive gradients
    ),
    "curvature": (
        "lr_lambda",  # signed log1p of lr x lambda_max (edge of stability at 2 for SGD)
        "curv_age",  # steps since the last curvature probe / budget
    ),
    "validation": (
        "log_val_rel",  # log(val loss / first val loss)
        "val_gap",  # log(val loss / train loss EMA): the generalisation gap
        "val_age",  # steps since the last validation / budget; 1 before the first
    ),
    "uncertainty": (
        "unc_confidence",  # mean max-softmax probability on validation examples
        "log_entropy_rel",  # log(predictive entropy / first predictive entropy)
    ),
    # Identify the task and the machine: kept out of the main model (resource ablation only).
    "resources": (
        "log_throughput_rel",  # log(samples per second / first samples per second)
        "log_rss_gb",  # log of the process's resident memory in GiB
        "log_data_size",  # log10 of the training examples
        "log_data_classes",  # log1p of the number of classes
        "log_data_features",  # log10 of the input values per example
    ),
}
MAIN_GROUPS = ("loss", "gradients", "curvature", "validation", "uncertainty")
# One flag per main group: 1 once the run has supplied any column the group is computed from.
# With them, and with groups dropped at random in the fit, the policy is defined for a run
# that supplies only some groups (a user's loop: the loss, or the loss and validation).
AVAILABILITY = {group: f"has_{group}" for group in MAIN_GROUPS}
# The groups the fit drops at random: every group but the loss, which every run supplies.
DROPPABLE_GROUPS = MAIN_GROUPS[1:]
ALL_FEATURES = (
    CORE_FEATURES
    + tuple(f for g in MAIN_GROUPS for f in FEATURE_GROUPS[g])
    + tuple(AVAILABILITY.values())
    + FEATURE_GROUPS["resources"]
)
# The observed columns each input is computed from (beyond step, lr and the budget). An input
# whose columns a run never supplied holds its not-yet-seen value, which is no evidence of an
# unusual run, so the out-of-distribution check skips it.
FEATURE_SOURCES: dict[str, tuple[str, ...]] = {
    "log_loss_rel": ("loss_ema",),
    "loss_slope": ("loss_ema",),
    "loss_slope_long": ("loss_ema",),
    "log_grad_rel": ("grad_norm",),
    "log_upd_ratio": ("upd_ratio",),
    "grad_cos": ("grad_cos_prev",),
    "lr_lambda": ("curv_lr_lambda",),
    "curv_age": ("curv_lr_lambda",),
    "log_val_rel": ("val_loss",),
    "val_gap": ("val_loss", "loss_ema"),
    "val_age": ("val_loss",),
    "unc_confidence": ("unc_confidence",),
    "log_entropy_rel": ("unc_entropy",),
    "log_throughput_rel": ("res_samples_per_s",),
    "log_rss_gb": ("res_cpu_rss_mb",),
    "log_data_size": ("res_data_size",),
    "log_data_classes": ("res_data_classes",),
    "log_data_features": ("res_data_features",),
}
# A group's own columns (a validation input that also reads the loss EMA leaves it to the loss
# group). A flag reads them: absent, it is 0 and, as its group, not checked.
GROUP_COLUMNS = {
    group: tuple(
        dict.fromkeys(
            c
            for f in FEATURE_GROUPS[group]
            for c in FEATURE_SOURCES[f]
            if group == "loss" or c not in FEATURE_SOURCES["log_loss_rel"]
        )
    )
    for group in MAIN_GROUPS
}
FEATURE_SOURCES |= {AVAILABILITY[group]: GROUP_COLUMNS[group] for group in MAIN_GROUPS}
INPUT_FEATURES = CORE_FEATURES + tuple(f for g in MAIN_GROUPS for f in FEATURE_GROUPS[g]) + tuple(AVAILABILITY.values())
PROGRESS_ONLY_FEATURES = ("progress", "log_lr_rel")

MAX_LOG_MULT = math.log(10.0)  # |a| <= ln 10
MAX_LOG_STEP = math.log(2.0)  # at most x2 change per decision
_CLIP = 10.0
_EPS = 1e-12
_SLOPE_HISTORY = 4
# The trajectory columns the builder reads.
OBSERVED_COLUMNS = (
    "step",
    "lr",
    "loss_ema",
    "grad_norm",
    "upd_ratio",
    "grad_cos_prev",
    "curv_lr_lambda",
    "val_loss",
    "unc_confidence",
    "unc_entropy",
    "res_samples_per_s",
    "res_cpu_rss_mb",
    "res_data_size",
    "res_data_classes",
    "res_data_features",
)

_TRACKED = OBSERVED_COLUMNS[1:]
_N_MAIN = len(ALL_FEATURES) - len(FEATURE_GROUPS["resources"])
_FLAG_COLUMNS = tuple(GROUP_COLUMNS[group] for group in MAIN_GROUPS)


def cosine_factor(update: int, budget: int) -> float:
    """The default schedule's multiplier for optimizer update ``update`` (1-based).

    Identical to ``CosineAnnealingLR(T_max=budget)`` stepped once per update.
    """
    return 0.5 * (1.0 + math.cos(math.pi * (update - 1) / budget))


def decision_interval(budget: int, fraction: float) -> int:
    return max(1, round(budget * fraction))


def feature_indices(names: Sequence[str]) -> list[int]:
    """Positions of ``names`` in the full input vector (``ALL_FEATURES``)."""
    unknown = [n for n in names if n not in ALL_FEATURES]
    if unknown:
        raise ValueError(f"unknown meta-learner inputs {unknown}; known: {', '.join(ALL_FEATURES)}")
    return [ALL_FEATURES.index(n) for n in names]


def _finite(value) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _log_ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0
    a, b = abs(a), abs(b)
    # max(., _EPS) without the builtin's call: this runs several times per decision.
    a = a if a > _EPS else _EPS
    b = b if b > _EPS else _EPS
    ratio = a / b
    # Magnitudes near the float limits overflow the ratio to inf or 0 (math.log(0) raises).
    return math.log(ratio) if 0.0 < ratio < math.inf else math.log(a) - math.log(b)


def _log10(value: float | None, default: float = 0.0) -> float:
    return default if value is None else math.log10(max(value, _EPS))


class InputBuilder:
    """Turns a stream of per-step features into the meta-learner's input vectors over ``features``.

    It tracks only the columns those inputs are computed from, and computes only those inputs,
    so a scheduler pays for what its learner reads; each input's value does not depend on which
    others are asked for.
    """

    def __init__(
        self, base_lr: float, budget: int, features: Sequence[str] = ALL_FEATURES, supplied: Sequence[str] | None = None
    ):
        self.base_lr = base_lr
        self.budget = budget
        self.features = tuple(features)
        index = feature_indices(self.features)
        # The resource inputs come last in ALL_FEATURES: computed only when asked for.
        self._with_resources = max(index, default=0) >= _N_MAIN
        computed = len(ALL_FEATURES) if self._with_resources else _N_MAIN
        self._select = None if index == list(range(computed)) else index
        sources = {c for f in self.features for c in FEATURE_SOURCES.get(f, ())}
        # ``supplied`` narrows them for a deployment given fewer columns than its learner reads.
        self.columns = tuple(
            c for c in _TRACKED if (c == "lr" or c in sources) and (supplied is None or c == "lr" or c in supplied)
        )
        self.last: dict[str, float] = {}  # last finite value per observed column
        self.first: dict[str, float] = {}  # first finite value per observed column
        self.seen_at: dict[str, float] = {}  # step of the last finite value
        self.grad_window: list[float] = []  # grad norms until the first decision that saw one
        self.grad_ref: float | None = None
        self.loss_history: list[float] = []  # loss EMA at the last decisions
        self._flags_for, self._flag_values = -1, ()

    def update(self, features: Mapping[str, object]) -> None:
        """Per-step work: only the running statistics (last, first, age) of the columns present."""
        step = _finite(features.get("step"))
        if step is not None:
            self.last["step"] = step
        now = self.last.get("step", 0.0)
        get, last, first, seen_at = features.get, self.last, self.first, self.seen_at
        for column in self.columns:
            value = get(column)
            if value is None:
                continue
            # Plain finite floats (nearly every value) skip the conversion call.
            if type(value) is not float or value - value != 0.0:
                value = _finite(value)
                if value is None:
                    continue
            last[column] = value
            if column not in first:
                first[column] = value
            seen_at[column] = now
            if column == "grad_norm" and self.grad_ref is None:
                self.grad_window.append(value)

    def _age(self, column: str) -> float:
        if column not in self.seen_at:
            return 1.0
        return (self.last.get("step", 0.0) - self.seen_at[column]) / self.budget

    def _flags(self) -> tuple[float, ...]:
        first = self.first
        if self._flags_for != len(first):  # columns are only ever added
            self._flags_for = len(first)
            self._flag_values = tuple(1.0 if any(c in first for c in columns) else 0.0 for columns in _FLAG_COLUMNS)
        return self._flag_values

    def decision_vector(self) -> np.ndarray:
        """The input vector (float32, over ``features``) for a decision now; also moves the references of
        the loss slopes."""
        last, first = self.last.get, self.first.get
        step = last("step", 0.0)
        if self.grad_ref is None and self.grad_window:
            with np.errstate(over="ignore"):
                self.grad_ref = float(np.mean(self.grad_window))
        loss = last("loss_ema")
        history = self.loss_history
        slope = _log_ratio(loss, history[-1]) if history else 0.0
        slope_long = _log_ratio(loss, history[0]) / len(history) if history else 0.0
        if loss is not None:
            self.loss_history = [*history, loss][-_SLOPE_HISTORY:]
        lr, val_loss, lr_lambda = last("lr"), last("val_loss"), last("curv_lr_lambda")
        budget = self.budget
        # In ALL_FEATURES order; tuples, not a dict: this runs at every decision of a MetaScheduler.
        values = (
            step / budget,  # progress
            math.log(max(budget - step, 0.0) + 1.0) / math.log(budget + 1.0),  # log_remaining
            0.0 if lr is None else _log_ratio(lr, self.base_lr),  # log_lr_rel
            _log_ratio(loss, first("loss_ema")),  # log_loss_rel
            slope,  # loss_slope
            slope_long,  # loss_slope_long
            _log_ratio(last("grad_norm"), self.grad_ref),  # log_grad_rel
            _log10(last("upd_ratio"), default=-3.0),  # log_upd_ratio
            last("grad_cos_prev", 0.0),  # grad_cos
            0.0 if lr_lambda is None else math.copysign(math.log1p(abs(lr_lambda)), lr_lambda),  # lr_lambda
            self._age("curv_lr_lambda"),  # curv_age
            _log_ratio(val_loss, first("val_loss")),  # log_val_rel
            0.0 if val_loss is None else _log_ratio(val_loss, loss),  # val_gap
            self._age("val_loss"),  # val_age
            last("unc_confidence", 0.0),  # unc_confidence
            _log_ratio(last("unc_entropy"), first("unc_entropy")),  # log_entropy_rel
            *self._flags(),  # has_<group>
        )
        if self._with_resources:
            values += (
                _log_ratio(last("res_samples_per_s"), first("res_samples_per_s")),  # log_throughput_rel
                math.log(max(last("res_cpu_rss_mb", 1024.0), 1.0) / 1024.0),  # log_rss_gb
                _log10(last("res_data_size")),  # log_data_size
                math.log1p(max(last("res_data_classes", 0.0), 0.0)),  # log_data_classes
                _log10(last("res_data_features")),  # log_data_features
            )
        if self._select is not None:
            values = [values[i] for i in self._select]
        # Clipped before the float32 cast, which would overflow; NaN (inf - inf from extreme
        # inputs) reads as "no change". In Python: nearly every value is in range, and one list
        # pass costs less than numpy's calls on so few values.
        return np.array(
            [v if -_CLIP <= v <= _CLIP else 0.0 if v != v else math.copysign(_CLIP, v) for v in values],
            dtype=np.float32,
        )

    def state_dict(self) -> dict:
        return {
            "last": dict(self.last),
            "first": dict(self.first),
            "seen_at": dict(self.seen_at),
            "grad_window": list(self.grad_window),
            "grad_ref": self.grad_ref,
            "loss_history": list(self.loss_history),
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        self.last, self.first, self.seen_at = dict(state["last"]), dict(state["first"]), dict(state["seen_at"])
        self.grad_window, self.grad_ref = list(state["grad_window"]), state["grad_ref"]
        self.loss_history = list(state["loss_history"])
        self._flags_for = -1


def absent_inputs(features: Sequence[str]) -> np.ndarray:
    """The inputs over ``features`` of a run that has supplied no column yet: what a group's
    inputs and flag read when the group is absent (the fit's group dropout writes them)."""
    return InputBuilder(base_lr=1.0, budget=1, features=features).decision_vector()


def group_columns(features: Sequence[str], group: str) -> list[int]:
    """Positions in ``features`` of ``group``'s inputs and of its availability flag."""
    names = (*FEATURE_GROUPS[group], AVAILABILITY[group])
    return [i for i, name in enumerate(features) if name in names]
