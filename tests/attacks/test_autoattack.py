"""AutoAttack: members in order on the images still robust, one report per image, inside AttackEvaluation,
from its shipped config; APGD's schedule; Square's budget."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer

from inputopt.attacks import APGD, APGDT, FAB, AutoAttack, Square
from inputopt.attacks.apgd import APGDStep, apgd_checkpoints
from inputopt.data import Digits
from inputopt.commands.runners import attack_main
from inputopt.runners.attack import AttackEvaluation

SMALL = dict(steps=10, target_classes=3, queries=100)


@pytest.fixture(scope="module")
def data(held_out):
    images, labels = held_out
    return images[:24], labels[:24]


def test_members_run_in_order_on_the_still_robust_images(net, data):
    x, y = data
    attack = AutoAttack(net, eps=0.05, **SMALL)
    result = attack.run(x, y)[0]
    report = result.info["report"]
    accuracy = report.robust_accuracy()
    assert list(accuracy) == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    values = list(accuracy.values())
    assert values == sorted(values, reverse=True)
    assert accuracy["square"] == pytest.approx(result.robust(y).float().mean().item())
    # APGD-CE alone (same seed, same images) breaks exactly the images the report gives it
    alone = APGD(net, eps=0.05, steps=10).run(x, y)[0]
    assert torch.equal(report.broken_by == 0, alone.success & (alone.clean_predictions == y))
    # a member broke each image it is credited with; its cost is the steps or queries it took
    broken = report.broken_by >= 0
    assert torch.equal(broken, result.success & (result.clean_predictions == y))
    assert (report.cost[broken] >= 0).all() and (report.cost[report.broken_by == -1] == -1).all()
    assert torch.equal(result.steps, report.cost)


def test_version_plus_and_rand_members(net, data):
    x, y = data
    attack = AutoAttack(net, eps=0.05, version="rand", steps=5)
    result = attack.run(x[:8], y[:8])[0]
    assert result.info["report"].members == ("apgd-ce", "apgd-dlr")
    with pytest.raises(ValueError, match="version"):
        AutoAttack(net, eps=0.05, version="fast")
    assert AutoAttack(net, eps=0.05, fab=False).members == ("apgd-ce", "apgd-t", "square")
    # the original's "plus": 5 restarts for the untargeted APGD members and for untargeted FAB, in its order
    plus = AutoAttack(net, eps=0.05, version="plus")
    assert plus.members == ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
    assert [getattr(plus.member(m, 0.05), "restarts", 1) for m in plus.members] == [5, 5, 5, 1, 1, 1]
    assert isinstance(plus.member("fab", 0.05), FAB) and plus.member("fab", 0.05).target_classes is None
    assert AutoAttack(net, eps=0.05, version="plus", fab=False).members == ("apgd-ce", "apgd-dlr", "square", "apgd-t")
    result = AutoAttack(net, eps=0.05, version="plus", steps=3, target_classes=2, queries=10).run(x[:6], y[:6])[0]
    assert list(result.info["report"].robust_accuracy())[1:] == list(plus.members)
    with pytest.raises(ValueError, match="fab"):
        AutoAttack(net, eps=0.05, fab="no")
    with pytest.raises(ValueError, match="untargeted"):
        AutoAttack(net, eps=0.05, **SMALL).run(x[:2], y[:2], target=3)


def test_inside_attack_evaluation(net, data):
    x, y = data
    attack = AutoAttack("digits", eps=[0.03, 0.05], **SMALL)
    runner = AttackEvaluation(attack, Digits(split="test", limit=24), batch_size=10, sphere_points=0)
    Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
    direct = AutoAttack("digits", eps=[0.03, 0.05], **SMALL).run(x, y)
    assert [row["robust_accuracy"] for row in runner.results] == pytest.approx(
        [r.robust(y).float().mean().item() for r in direct])


@pytest.mark.slow
def test_shipped_config_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = attack_main(["--config", str(pytest.importorskip("pathlib").Path(__file__).parents[2] / "configs"
                                          / "digits_autoattack.yaml"),
                          "--model.dataset.init_args.limit", "16", "--model.attack.init_args.steps", "5",
                          "--model.attack.init_args.target_classes", "2", "--model.attack.init_args.queries", "20"])
    assert [row["eps"] for row in runner.results] == [0.03, 0.05]
    assert (tmp_path / "results" / "digits_autoattack" / "results.json").exists()


def test_apgd_step_sizes_halve_only_at_checkpoints(net, data):
    """The step size of each image starts at 2ε and only ever halves."""
    x, y = data
    seen = []
    original = APGDStep.step

    def spy(self, closure=None):
        seen.append(self.lr.clone())
        return original(self, closure)

    APGDStep.step = spy
    try:
        APGD(net, eps=0.05, steps=20).run(x, y)
    finally:
        APGDStep.step = original
    first, decrease, minimum = apgd_checkpoints(20)
    assert torch.allclose(seen[0], torch.full_like(seen[0], 0.1))
    for before, after in zip(seen, seen[1:]):
        ratio = after / before
        assert ((ratio == 1) | (ratio == 0.5)).all()
    changed = [i for i in range(1, len(seen)) if not torch.equal(seen[i], seen[i - 1])]
    assert changed and changed[0] >= first


def test_apgdt_breaks_at_least_as_many_as_one_target(net, data):
    x, y = data
    one = APGDT(net, eps=0.05, steps=10, target_classes=1).run(x, y)[0]
    three = APGDT(net, eps=0.05, steps=10, target_classes=3).run(x, y)[0]
    assert (three.success | ~one.success).all() and three.success.sum() >= one.success.sum()
    assert torch.equal(three.labels, y)  # an untargeted result


def test_square_counts_queries(net, data):
    x, y = data
    result = Square(net, eps=0.1, queries=50).run(x, y)[0]
    assert ((result.steps >= 0) == result.success).all() and (result.steps < 50).all()


def test_progress_shows_the_members_and_their_steps(net, data, capsys):
    x, y = data
    AutoAttack(net, eps=0.05, steps=3, target_classes=2, queries=5, progress=True).run(x[:4], y[:4])
    err = capsys.readouterr().err
    assert "AutoAttack eps 0.05" in err and "apgd-ce on 4 robust images" in err and "steps" in err
    AutoAttack(net, eps=0.05, steps=3, target_classes=2, queries=5).run(x[:4], y[:4])
    assert "AutoAttack" not in capsys.readouterr().err  # off by default


def test_a_callback_stops_an_attack_between_steps(net, data):
    """A callback that clears ``record.active`` (a stop flag, SIGTERM) ends the run after the current step."""
    from inputopt.attacks import PGD, Square
    from inputopt.record import StepCallback

    class StopAfter(StepCallback):
        def __init__(self, steps):
            self.steps, self.seen = steps, 0

        def on_step_end(self, record, step):
            self.seen += 1
            if self.seen >= self.steps:
                record.active[:] = False

    x, y = data
    for attack in (PGD(net, eps=0.05, alpha=0.01, steps=50), Square(net, eps=0.05, queries=200)):
        stop = StopAfter(2)
        attack.run(x[:4], y[:4], callbacks=[stop])
        assert stop.seen == 2
