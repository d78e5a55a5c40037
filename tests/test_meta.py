import math

import numpy as np
import polars as pl
import pytest
import torch
from conftest import make_task

from metalr.config import BranchConfig, MetaConfig
from metalr.meta.branching import (
    branch_steps,
    fork_losses,
    forks_frame,
    label_snapshots,
    policy_regret,
    state_labels,
)
from metalr.meta.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metalr.meta.dataset import DecisionSequence, build_sequences, relabel, select_features, shuffle_across_runs
from metalr.meta.fit import GroupDropout, fit_meta_learner
from metalr.meta.inputs import (
    ALL_FEATURES,
    AVAILABILITY,
    CORE_FEATURES,
    DROPPABLE_GROUPS,
    FEATURE_GROUPS,
    INPUT_FEATURES,
    PROGRESS_ONLY_FEATURES,
    InputBuilder,
    absent_inputs,
    feature_indices,
)
from metalr.meta.model import ARCHITECTURES
from metalr.meta.variants import meta_variants
from metalr.schedulers import MetaScheduler
from metalr.schedulers.fork import fork_lr
from metalr.train import Fork, RunSpec, run_loop, task_tensors, train_run

META = MetaConfig(hidden=16, lr=0.01, epochs=300, patience=300, decision_fraction=0.1)


def _stream(scale):
    builder = InputBuilder(base_lr=1e-3 * scale, budget=100)
    for step in range(1, 41):
        features = {
            "step": step,
            "loss_ema": scale * (2.0 - step / 40),
            "grad_norm": scale * 3 / step,
            "lr": 1e-3 * scale,
            "curv_lr_lambda": 0.5 if step % 25 == 0 else None,
            "unc_entropy": scale * 0.3 if step % 10 == 0 else None,
        }
        if step % 10 == 0:
            features["val_loss"] = scale * (2.5 - step / 40)
            builder.decision_vector()
        builder.update(features)
    return builder.decision_vector()[feature_indices(INPUT_FEATURES)]


def test_inputs_are_normalised_within_the_run():
    np.testing.assert_allclose(_stream(1.0), _stream(37.0), atol=1e-5)


def test_input_builder_survives_nan_inf_and_missing_features():
    builder = InputBuilder(base_lr=1e-3, budget=10)
    for value in (1.0, float("nan"), float("inf"), None, "text"):
        builder.update({column: value for column in ("step", "loss_ema", "grad_norm", "val_loss", "lr", "upd_ratio")})
    builder.update({})
    assert np.isfinite(builder.decision_vector()).all()


def test_sparse_features_are_forward_filled_with_their_age():
    builder = InputBuilder(base_lr=1e-3, budget=100)
    builder.update({"step": 10, "val_loss": 2.0, "loss_ema": 1.0})
    builder.update({"step": 30, "loss_ema": 1.0})
    vector = dict(zip(ALL_FEATURES, builder.decision_vector(), strict=True))
    assert vector["val_gap"] == pytest.approx(math.log(2.0))
    assert vector["val_age"] == pytest.approx(0.2)
    assert vector["curv_age"] == 1.0  # never seen


def test_a_groups_availability_flag_is_0_until_the_run_supplies_one_of_its_columns():
    builder = InputBuilder(base_lr=1e-3, budget=100)
    builder.update({"step": 1, "loss_ema": 1.0})
    flags = dict(zip(ALL_FEATURES, builder.decision_vector(), strict=True))
    assert [flags[AVAILABILITY[g]] for g in ("loss", "gradients", "validation")] == [1.0, 0.0, 0.0]
    builder.update({"step": 2, "upd_ratio": 1e-3, "val_loss": None})  # one column of three is enough; None is absence
    flags = dict(zip(ALL_FEATURES, builder.decision_vector(), strict=True))
    assert [flags[AVAILABILITY[g]] for g in ("loss", "gradients", "validation")] == [1.0, 1.0, 0.0]


def test_group_dropout_makes_whole_runs_read_as_never_having_supplied_a_group():
    rng = np.random.default_rng(0)
    inputs = torch.tensor(rng.normal(size=(400, 6, len(INPUT_FEATURES))), dtype=torch.float32)
    dropped = GroupDropout(INPUT_FEATURES, 0.5, seed=0)(inputs)
    absent = torch.tensor(absent_inputs(INPUT_FEATURES))
    loss = feature_indices((*CORE_FEATURES, *FEATURE_GROUPS["loss"], AVAILABILITY["loss"]))
    assert torch.equal(dropped[:, :, loss], inputs[:, :, loss])  # never dropped
    for group in DROPPABLE_GROUPS:
        columns = [INPUT_FEATURES.index(f) for f in (*FEATURE_GROUPS[group], AVAILABILITY[group])]
        gone = (dropped[:, :, columns] == absent[columns]).all(dim=2).all(dim=1)
        kept = (dropped[:, :, columns] == inputs[:, :, columns]).all(dim=2).all(dim=1)
        assert bool((gone | kept).all())  # whole runs, whole groups
        assert 0.4 < gone.float().mean().item() < 0.6
        assert absent[INPUT_FEATURES.index(AVAILABILITY[group])] == 0.0
    assert torch.equal(GroupDropout(INPUT_FEATURES, 0.0, seed=0)(inputs), inputs)


def test_resources_stay_out_of_the_main_inputs_and_controls_are_what_they_say():
    assert not any(f.startswith("log_data") or "throughput" in f or "rss" in f for f in INPUT_FEATURES)
    variants = {v.name: v for v in meta_variants(MetaConfig())}
    assert variants["meta-progress-only"].features == PROGRESS_ONLY_FEATURES == ("progress", "log_lr_rel")
    assert variants["meta-shuffled"].shuffled and variants["meta-shuffled"].features == INPUT_FEATURES
    assert "loss_slope" not in variants["meta-no-loss"].features
    assert "has_validation" not in variants["meta-no-validation"].features  # an ablation loses the flag too
    assert "log_data_size" in variants["meta-plus-resources"].features
    assert {v.arch for v in variants.values()} == {"gru", "lstm", "transformer"}


def test_branch_points_fall_on_decision_steps():
    steps = branch_steps(budget=300, points=4, decision_fraction=0.02)
    assert len(steps) == 4 and all(s % 6 == 0 and 0 < s < 300 for s in steps)


def test_a_fork_holds_its_lr_then_anneals_with_cosine_to_zero_at_the_budget():
    lrs = [fork_lr(step, start=40, lr0=0.2, hold=10, budget=100) for step in range(41, 101)]
    assert lrs[:10] == [0.2] * 10
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def _forks(rows):
    base = {"run_id": "r", "next_lr": 0.1, "base_lr": 0.1, "budget_steps": 100, "diverged": False}
    return forks_frame([{**base, **row} for row in rows])


def test_labels_take_the_best_mean_multiplier_ties_to_no_change_and_all_diverged_to_the_smallest():
    forks = _forks(
        [
            {"step": 10, "multiplier": 0.5, "fork_seed": 0, "final_val_loss": 1.0},
            {"step": 10, "multiplier": 0.5, "fork_seed": 1, "final_val_loss": 3.0},  # mean 2
            {"step": 10, "multiplier": 2.0, "fork_seed": 0, "final_val_loss": 1.5},
            {"step": 10, "multiplier": 2.0, "fork_seed": 1, "final_val_loss": 1.5},  # mean 1.5: best
            {"step": 20, "multiplier": 0.5, "fork_seed": 0, "final_val_loss": 1.0},
            {"step": 20, "multiplier": 1.0, "fork_seed": 0, "final_val_loss": 1.0},  # tie: no change
            {"step": 30, "multiplier": 0.5, "fork_seed": 0, "final_val_loss": None, "diverged": True},
            {"step": 30, "multiplier": 2.0, "fork_seed": 0, "final_val_loss": None, "diverged": True},
        ]
    )
    labels = {r["step"]: r for r in state_labels(forks).iter_rows(named=True)}
    assert [labels[s]["best_multiplier"] for s in (10, 20, 30)] == [2.0, 1.0, 0.5]
    # The source followed base LR 0.1 while cosine at update 11 of 100 is below 1: a_now > 0.
    cos11 = 0.5 * (1 + math.cos(math.pi * 10 / 100))
    assert labels[10]["a_now"] == pytest.approx(-math.log(cos11))
    assert labels[10]["label"] == pytest.approx(-math.log(cos11) + math.log(2.0))


def _forks_by_loss(losses: dict[tuple[int, float], float | None]) -> pl.DataFrame:
    """One fork seed per (step, multiplier) with its final validation loss; None: it diverged."""
    return _forks(
        [
            {"step": step, "multiplier": m, "fork_seed": 0, "final_val_loss": loss, "diverged": loss is None}
            for (step, m), loss in losses.items()
        ]
    )


def test_soft_labels_weight_every_fork_near_the_best_and_tend_to_the_hard_label_as_t_shrinks():
    forks = _forks_by_loss({(10, 0.5): 1.2, (10, 2.0): 1.0, (10, 4.0): 1.01, (10, 8.0): None})
    a_now = state_labels(forks)["a_now"][0]

    def soft(temperature):
        return state_labels(forks, temperature)["label"][0] - a_now

    assert soft(1e-4) == pytest.approx(math.log(2.0), abs=1e-6)  # the hard label
    # x2 and x4 are 1% apart: at T = 0.01 both weigh, x0.5 (20% worse) hardly does
    weights = np.exp(-np.array([0.2, 0.0, 0.01]) / 0.01)
    expected = weights @ np.log([0.5, 2.0, 4.0]) / weights.sum()
    assert soft(0.01) == pytest.approx(expected, abs=1e-9)
    assert math.log(2.0) < soft(0.01) < math.log(4.0)
    assert soft(1e3) == pytest.approx(np.mean(np.log([0.5, 2.0, 4.0])), abs=1e-3)  # the diverged fork never counts


def test_policy_regret_reads_each_decision_as_the_nearest_fork():
    forks = _forks_by_loss({(10, 0.5): 1.5, (10, 2.0): 1.0, (20, 0.5): 2.0, (20, 2.0): None})
    labels = state_labels(forks)
    a_now = dict(labels.select("step", "a_now").iter_rows())

    def regret(wanted):  # wanted: the multiplier each decision asks for, by step
        proposals = pl.DataFrame(
            {"run_id": ["r", "r"], "step": [10, 20], "a": [a_now[s] + math.log(m) for s, m in wanted.items()]},
            schema={"run_id": pl.String, "step": pl.Int32, "a": pl.Float64},
        )
        return policy_regret(proposals, labels, fork_losses(forks))

    assert regret({10: 1.8, 20: 0.6}) == 0.0  # nearest forks: x2 (best), x0.5 (the only finite one)
    assert regret({10: 0.4, 20: 0.6}) == pytest.approx(0.25)  # x0.5 at step 10: 50% worse
    assert regret({10: 1.8, 20: 3.0}) == pytest.approx(0.5)  # a diverged fork costs the cap, 1


def test_relabelling_keeps_which_decisions_are_labelled():
    sequence = DecisionSequence("r", np.array([10, 20, 30]), np.zeros((3, 2), np.float32), np.array([np.nan, 1.0, 2.0]))
    labels = pl.DataFrame({"run_id": ["r", "r"], "step": [20, 30], "label": [-1.0, 0.5]})
    (relabelled,) = relabel([sequence], labels)
    np.testing.assert_array_equal(relabelled.labels, np.array([np.nan, -1.0, 0.5], dtype=np.float32))


@pytest.fixture(scope="module")
def branched(digits):
    """Source runs started 30x too low (Adam from 1e-3) and 30x too high (SGD from 0.05), branched on real training."""
    cfg = BranchConfig(points=2, multipliers=(0.25, 1.0, 4.0), hold_fraction=0.2, seeds=1)
    steps = tuple(branch_steps(60, cfg.points, 0.1))
    out = {}
    for name, optimizer, base_lr, multiplier in (("low", "adam", 1e-3, 0.03), ("high", "sgd", 0.05, 30.0)):
        task = make_task(budget=60, val_every=10, optimizer=optimizer, base_lr=base_lr)
        spec = RunSpec("collect", task, "cosine", 0, lr_multiplier=multiplier, snapshot_steps=steps)
        result = train_run(spec, digits)
        out[name] = (spec, result, label_snapshots(spec, digits, result.snapshots, cfg))
    return out


def test_a_fork_at_multiplier_one_retraces_its_source_until_the_fork_schedule_departs(digits):
    """Forks and runs share one training loop: from a constant-LR source's snapshot, a x1 fork on the
    source's own data order reproduces the source's losses while it holds the LR, then anneals away."""
    start, hold = 20, 10
    spec = RunSpec("collect", make_task(budget=60), "constant", 0, snapshot_steps=(start,))
    source = train_run(spec, digits)
    view, splits = task_tensors(spec, digits)
    fork = run_loop(spec, view, splits, fork=Fork(source.snapshots[0], 1.0, hold, seed=spec.seed))
    assert fork.row["status"] == "ok" and [r["step"] for r in fork.rows] == list(range(start + 1, 61))
    source_losses = [r["loss_train"] for r in source.rows]  # rows[i] is update i + 1
    fork_losses = [r["loss_train"] for r in fork.rows]
    # The loss of update t reads the weights after updates up to t - 1: the fork's LR departs at start + hold + 1.
    same = start + hold + 1
    assert fork_losses[: same - start] == pytest.approx(source_losses[start:same], rel=0, abs=1e-6)
    assert fork_losses[-1] != pytest.approx(source_losses[-1], rel=0, abs=1e-6)


def test_the_expert_labels_a_too_low_lr_up_and_a_too_high_lr_down(branched):
    low = state_labels(forks_frame(branched["low"][2]))
    high = state_labels(forks_frame(branched["high"][2]))
    assert (low["best_multiplier"] == 4.0).all(), low
    assert high["best_multiplier"][0] < 1.0, high  # at the first branch point, before cosine has annealed


def test_snapshots_are_taken_at_the_branch_points_without_changing_training(branched, digits):
    spec, result, _ = branched["low"]
    assert [s["step"] for s in result.snapshots] == list(spec.snapshot_steps)
    plain = train_run(RunSpec("collect", spec.task, "cosine", 0, lr_multiplier=0.03), digits)
    assert [r["loss_train"] for r in plain.rows] == [r["loss_train"] for r in result.rows]
    assert plain.row["run_id"] == result.row["run_id"]


def test_sequences_carry_labels_only_at_branch_points(branched):
    spec, result, forks = branched["high"]
    labels = state_labels(forks_frame(forks))
    (sequence,) = build_sequences(result.summary, result.trajectory, labels, decision_fraction=0.1)
    assert sequence.inputs.shape == (len(sequence.steps), len(ALL_FEATURES))
    labelled = sequence.steps[np.isfinite(sequence.labels)]
    assert list(labelled) == list(spec.snapshot_steps)


def _synthetic(n: int, seed: int) -> list[DecisionSequence]:
    """Label = +1 when the run's loss slope is positive, else -1: only a state-reading model can fit it."""
    rng = np.random.default_rng(seed)
    sequences = []
    for i in range(n):
        steps = np.arange(10) * 10 + 5  # one decision per progress bin
        inputs = rng.normal(size=(10, len(ALL_FEATURES))).astype(np.float32)
        inputs[:, ALL_FEATURES.index("progress")] = steps / 100
        inputs[:, ALL_FEATURES.index("log_lr_rel")] = 0.0
        labels = np.where(inputs[:, ALL_FEATURES.index("loss_slope")] > 0, 1.0, -1.0).astype(np.float32)
        labels[::2] = np.nan
        sequences.append(DecisionSequence(f"run{i}", steps, inputs, labels))
    return sequences


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_learns_a_state_dependent_label_that_progress_alone_cannot(arch):
    train, val = _synthetic(40, 0), _synthetic(10, 1)
    quiet = lambda _: None  # noqa: E731
    _, full = fit_meta_learner(
        select_features(train, INPUT_FEATURES),
        select_features(val, INPUT_FEATURES),
        META,
        arch,
        INPUT_FEATURES,
        log=quiet,
    )
    _, progress = fit_meta_learner(
        select_features(train, PROGRESS_ONLY_FEATURES),
        select_features(val, PROGRESS_ONLY_FEATURES),
        META,
        arch,
        PROGRESS_ONLY_FEATURES,
        log=quiet,
    )
    assert full.val_loss < 0.5 * full.cosine_val_loss
    assert full.val_loss < 0.5 * progress.val_loss


def test_shuffling_permutes_state_inputs_within_progress_bins_and_keeps_progress():
    sequences = _synthetic(6, 2)
    shuffled = shuffle_across_runs(sequences, {s.run_id: 100 for s in sequences}, seed=0)
    core = feature_indices(CORE_FEATURES)
    state = [i for i in range(len(ALL_FEATURES)) if i not in core]
    for t in range(10):
        before = sorted(tuple(s.inputs[t, state]) for s in sequences)
        after = sorted(tuple(s.inputs[t, state]) for s in shuffled)
        assert before == after
        for a, b in zip(sequences, shuffled, strict=True):
            np.testing.assert_array_equal(a.inputs[t, core], b.inputs[t, core])
    assert any(not np.array_equal(a.inputs, b.inputs) for a, b in zip(sequences, shuffled, strict=True))
    for a, b in zip(sequences, shuffled, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)


def _checkpoint(path, arch="lstm", features=INPUT_FEATURES, head_scale=0.0, fallback_z=6.0):
    model = ARCHITECTURES[arch](len(features), 8, 1)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.weight, std=head_scale)
    config = {"arch": arch, "hidden": 8, "layers": 1, "features": list(features), "decision_fraction": 0.1}
    save_checkpoint(model, config | {"fallback_z": fallback_z}, path)
    return path


def _drive(scheduler, steps, start=1, features=None):
    lrs = []
    for t in range(start, start + steps):
        lr = scheduler.optimizer.param_groups[0]["lr"]
        lrs.append(lr)
        scheduler.optimizer.step()
        scheduler.observe({"step": t, "lr": lr, "loss_ema": 2.0 / t, "grad_norm": 1.0 + t % 3, **(features or {})})
        scheduler.step()
    return lrs


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_an_untrained_meta_scheduler_of_every_architecture_is_exactly_cosine(tmp_path, arch):
    scheduler = MetaScheduler.from_pretrained(_checkpoint(tmp_path, arch), _optimizer(), budget=50)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=50)
    expected = []
    for _ in range(50):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert _drive(scheduler, 50) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_state_dict_mid_run_continues_with_an_identical_lr_sequence(tmp_path, arch):
    path = _checkpoint(tmp_path, arch, head_scale=1.0)
    first = MetaScheduler.from_pretrained(path, _optimizer(), budget=60)
    _drive(first, 23)
    saved = first.state_dict()
    rest = _drive(first, 37, start=24)
    fresh = MetaScheduler.from_pretrained(path, _optimizer(), budget=60)
    fresh.load_state_dict(saved)
    fresh.optimizer.param_groups[0]["lr"] = fresh.get_last_lr()[0]
    assert _drive(fresh, 37, start=24) == rest
    assert len(set(rest)) > 5  # the learner really moves the LR


def test_out_of_distribution_inputs_fall_back_to_cosine_and_are_counted(tmp_path):
    path = _checkpoint(tmp_path, head_scale=3.0, fallback_z=0.5)  # everything is out of distribution
    acting = MetaScheduler.from_pretrained(path, _optimizer(), budget=50, fallback=True)
    lrs = _drive(acting, 50)
    assert acting.fallback_rate == 1.0 and acting.decisions == 10  # every 5 of 50 updates
    reference = MetaScheduler.from_pretrained(_checkpoint(tmp_path / "cos"), _optimizer(), budget=50)
    assert lrs == pytest.approx(_drive(reference, 50), rel=1e-12)
    counting = MetaScheduler.from_pretrained(path, _optimizer(), budget=50, fallback=False)
    moved = _drive(counting, 50)
    assert counting.fallback_rate == 1.0 and moved != pytest.approx(lrs)


def test_a_foreign_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not a metalr meta-scheduler"):
        load_checkpoint(tmp_path)


def test_collection_spreads_base_lrs_over_three_decades_reproducibly(smoke_config):
    draws = [smoke_config.collect.lr_multiplier(f"task{i}", "cosine", s) for i in range(50) for s in range(4)]
    assert min(draws) >= 10**-1.5 and max(draws) <= 10**1.5
    assert min(draws) < 0.1 and max(draws) > 10  # both tails are visited
    assert draws == [smoke_config.collect.lr_multiplier(f"task{i}", "cosine", s) for i in range(50) for s in range(4)]
    assert abs(np.mean(np.log10(draws))) < 0.25


def test_the_search_grid_crosses_hidden_sizes_and_meta_lrs_and_defaults_to_one_point():
    grid = MetaConfig(search_hidden=(128, 256), search_lr=(1e-4, 1e-3)).search_points()
    assert [(p.hidden, p.lr) for p in grid] == [(128, 1e-4), (128, 1e-3), (256, 1e-4), (256, 1e-3)]
    assert [(p.hidden, p.lr) for p in MetaConfig(hidden=64, lr=0.003).search_points()] == [(64, 0.003)]


def _assert_decisions_match_the_whole_sequence(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        whole, _ = model(inputs)
    state, stepwise = None, []
    for t in range(inputs.shape[1]):
        proposal, state = model.decide(inputs[0, t], state)
        stepwise.append(proposal)
    assert stepwise == pytest.approx(whole[0].tolist(), abs=1e-5)
    return whole


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_one_decision_at_a_time_matches_the_whole_sequence(arch):
    """decide() (numpy cells, the Transformer's key/value cache) is forward() on the sequence so far."""
    torch.manual_seed(0)
    model = ARCHITECTURES[arch](len(INPUT_FEATURES), 16, 2).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    inputs = torch.randn(1, 25, len(INPUT_FEATURES))
    _assert_decisions_match_the_whole_sequence(model, inputs)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_decisions_follow_weights_changed_after_the_first_decision(arch):
    """decide() runs on a numpy copy of the weights; loading new weights in place refreshes it."""
    torch.manual_seed(0)
    model = ARCHITECTURES[arch](len(INPUT_FEATURES), 16, 1).eval()
    inputs = torch.randn(1, 3, len(INPUT_FEATURES))
    assert model.decide(inputs[0, 0])[0] == 0.0  # zero-initialised head: exactly cosine
    trained = ARCHITECTURES[arch](len(INPUT_FEATURES), 16, 1)
    for parameter in trained.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    model.load_state_dict(trained.state_dict())
    whole = _assert_decisions_match_the_whole_sequence(model, inputs)
    assert whole.abs().max() > 0.1  # the new weights really move the output
