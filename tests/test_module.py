"""InputOptimization: the network never changes, only the input does, and the objective goes up."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from inputopt import ChannelSum, InputOptimization, MultiScaleEdgeEnergy, NegativeCrossEntropy, UnitActivation
from inputopt.capture import capture_activations

SHAPE = (3, 32, 32)


def fit(module: InputOptimization, steps: int, **trainer_kwargs) -> Trainer:
    kwargs = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False)
    kwargs.update(trainer_kwargs)
    trainer = Trainer(max_steps=steps, **kwargs)
    trainer.fit(module)
    return trainer


def state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


class RecordModes(Callback):
    """Records, at every step, whether any module of the network is in training mode."""

    def __init__(self) -> None:
        self.any_training: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.any_training.append(any(m.training for m in pl_module.network.modules()))


def test_network_is_frozen_and_only_the_input_changes(tiny_net, tmp_path):
    before = state(tiny_net)
    module = InputOptimization(tiny_net, ChannelSum("features.4", channel=[0, 1, 2]), [MultiScaleEdgeEnergy(0.1)],
                               image_shape=SHAPE)
    x0 = module.input.detach().clone()
    modes = RecordModes()
    trainer = fit(module, 5, callbacks=[modes])

    assert modes.any_training == [False] * 5  # BatchNorm and Dropout stayed in eval mode during fit
    after = tiny_net.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name  # parameters and BN running stats bit-identical
    assert not any(p.requires_grad for p in tiny_net.parameters())
    assert not torch.equal(module.input.detach(), x0)
    optimized = [p for group in trainer.optimizers[0].param_groups for p in group["params"]]
    assert len(optimized) == 1 and optimized[0] is module.input
    assert [name for name, _ in module.named_parameters()] == ["input"]


def test_checkpoint_holds_no_network_weights(tiny_net, tmp_path):
    module = InputOptimization(tiny_net, UnitActivation("features.4", unit=1), image_shape=SHAPE, batch_size=2)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(module, 3, enable_checkpointing=True, callbacks=[checkpoint], default_root_dir=tmp_path)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert set(saved["state_dict"]) == {"input", "done"}
    assert torch.equal(saved["state_dict"]["input"], module.input.detach())


def test_load_from_checkpoint_rebuilds_a_named_network(tmp_path):
    module = InputOptimization("alexnet", UnitActivation("features.3", unit=[4, 7]), image_shape=(3, 64, 64))
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(module, 2, enable_checkpointing=True, callbacks=[checkpoint])
    restored = InputOptimization.load_from_checkpoint(tmp_path / "last.ckpt")  # plain data: weights_only works
    assert torch.equal(restored.input, module.input)
    for (name, a), b in zip(module.network.state_dict().items(), restored.network.state_dict().values()):
        assert torch.equal(a, b), name  # same seed, same random weights


def activation_at_centre(net, x, layer, units):
    act = capture_activations(net, x, [layer])[layer]
    h, w = act.shape[-2:]
    return act[torch.arange(len(units)), torch.tensor(units), h // 2, w // 2]


def test_optimizing_raises_each_rows_own_unit(tiny_net):
    units = [0, 3, 5]
    module = InputOptimization(tiny_net, UnitActivation("features.4", unit=units), image_shape=SHAPE,
                               init_std=0.1)
    x0 = module.input.detach().clone()
    fit(module, 20)
    x1 = module.input.detach()
    start = activation_at_centre(tiny_net, x0, "features.4", units)
    end = activation_at_centre(tiny_net, x1, "features.4", units)
    assert (end > start + 1.0).all(), (start, end)
    # each row raised its own unit more than the units the other rows target
    act = capture_activations(tiny_net, x1, ["features.4"])["features.4"][:, units, 8, 8]
    assert torch.equal(act.argmax(1), torch.arange(3))


def test_loss_is_weighted_priors_minus_objective(tiny_net):
    prior = MultiScaleEdgeEnergy(weight=0.3)
    objective = UnitActivation(None, unit=[2, 9])
    module = InputOptimization(tiny_net, objective, [prior, MultiScaleEdgeEnergy(weight=2.0)], image_shape=SHAPE)
    module.prepare()
    x = module.input.detach()
    terms = module.compute_loss(x)
    score = tiny_net(x)[torch.arange(2), torch.tensor([2, 9])]
    energy = prior(x)
    torch.testing.assert_close(terms["objective"], score)
    torch.testing.assert_close(terms["loss"], 2.3 * energy - score)
    assert set(terms) == {"objective", "MultiScaleEdgeEnergy_0", "MultiScaleEdgeEnergy_1", "loss"}


def test_starting_noise_depends_only_on_seed_and_unit(tiny_net):
    def start(units, seed=0):
        return InputOptimization(tiny_net, ChannelSum("features.0", channel=units), image_shape=SHAPE,
                                 seed=seed).input.detach()

    many, alone = start([1, 4, 5]), start(4)
    assert torch.equal(many[1], alone[0])
    assert torch.equal(start([5, 4])[1], alone[0])
    assert not torch.equal(start(4, seed=1)[0], alone[0])
    assert 0.005 < many.std() < 0.02  # default N(0, 0.01²)


def test_init_from_images_and_input_normalization(tiny_net):
    images = torch.rand(2, 3, 32, 32)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    module = InputOptimization(tiny_net, NegativeCrossEntropy(), init=images, mean=mean, std=std)
    assert torch.equal(module.input.detach(), images)
    expected = tiny_net((images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(module(), expected)
    module.prepare()  # labels from the starting input
    assert torch.equal(module.objective.y, expected.argmax(1))


def test_freeze_done_keeps_fooled_images_fixed(tiny_net):
    """A frozen image never moves again, even with momentum in the optimizer."""
    torch.manual_seed(0)
    module = InputOptimization(tiny_net, NegativeCrossEntropy(), init=torch.rand(8, 3, 32, 32), freeze_done=True,
                               optimizer=partial(torch.optim.SGD, lr=0.5, momentum=0.9))

    class Watch(Callback):
        def __init__(self):
            self.snapshots = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.snapshots.append((pl_module.done.clone(), pl_module.input.detach().clone()))

    watch = Watch()
    fit(module, 15, callbacks=[watch])
    assert module.done.any(), "no image was fooled: the test needs a stronger attack"
    for (done_a, x_a), (done_b, x_b) in zip(watch.snapshots, watch.snapshots[1:]):
        assert (done_b >= done_a).all()
        assert torch.equal(x_a[done_a], x_b[done_a])
    predicted = module.predict_classes()
    assert (predicted[module.done] != module.objective.y[module.done]).all()


def test_clamp_projects_into_the_box(tiny_net):
    module = InputOptimization(tiny_net, UnitActivation(None, unit=3), image_shape=SHAPE, init_mean=0.5,
                               init_std=0.3, clamp=(0.0, 1.0))
    fit(module, 3)
    assert module.input.min() >= 0 and module.input.max() <= 1


@pytest.mark.parametrize("precision", ["16-true", "bf16-true"])
def test_exception_half_precision_input_is_refused(tiny_net, precision):
    module = InputOptimization(tiny_net, UnitActivation(None, unit=3), image_shape=SHAPE)
    with pytest.raises(ValueError, match="cast the input itself"):
        fit(module, 1, precision=precision)


def test_bf16_mixed_runs_and_keeps_input_float32(tiny_net):
    module = InputOptimization(tiny_net, UnitActivation(None, unit=3), [MultiScaleEdgeEnergy(0.1)], image_shape=SHAPE)
    fit(module, 2, precision="bf16-mixed")
    assert module.input.dtype == torch.float32 and torch.isfinite(module.input).all()


def test_exception_messages(tiny_net):
    with pytest.raises(ValueError, match="closest valid names: features.4"):
        InputOptimization(tiny_net, UnitActivation("feature.4", unit=1), image_shape=SHAPE).prepare()
    with pytest.raises(ValueError, match=r"valid units are 0\.\.7"):
        InputOptimization(tiny_net, UnitActivation("features.4", unit=8), image_shape=SHAPE).prepare()
    with pytest.raises(ValueError, match="smaller side is > 5"):
        module = InputOptimization(tiny_net, UnitActivation("features.0", unit=1), [MultiScaleEdgeEnergy()],
                                   image_shape=(3, 4, 32))
        module.compute_loss(module.input)
    with pytest.raises(ValueError, match=r"init must be images of shape \(B, C, H, W\)"):
        InputOptimization(tiny_net, UnitActivation(None, unit=1), init=torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        InputOptimization(tiny_net, UnitActivation(None, unit=1), image_shape=(32, 32))
    with pytest.raises(ValueError, match="batch_size=2 but the objective targets 3 units"):
        InputOptimization(tiny_net, UnitActivation(None, unit=[1, 2, 3]), image_shape=SHAPE, batch_size=2)
    with pytest.raises(ValueError, match="give both mean and std"):
        InputOptimization(tiny_net, UnitActivation(None, unit=1), image_shape=SHAPE, std=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="apply to a network given by name"):
        InputOptimization(tiny_net, UnitActivation(None, unit=1), image_shape=SHAPE, weights="DEFAULT")
    with pytest.raises(ValueError, match="max_steps"):
        Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False).fit(
            InputOptimization(tiny_net, UnitActivation(None, unit=1), image_shape=SHAPE))


def test_random_weights_depend_on_the_seed_only():
    a = InputOptimization("alexnet", UnitActivation(None, unit=1), image_shape=(3, 64, 64), seed=3)
    torch.rand(10)  # global RNG state must not matter
    b = InputOptimization("alexnet", UnitActivation(None, unit=1), image_shape=(3, 64, 64), seed=3)
    assert torch.equal(a.network.features[0].weight, b.network.features[0].weight)


def test_init_from_files(tiny_net, tmp_path):
    from torchvision.utils import save_image

    image = torch.rand(3, 32, 32)
    save_image(image, tmp_path / "photo.png")
    torch.save(image.unsqueeze(0), tmp_path / "photo.pt")
    from_png = InputOptimization(tiny_net, NegativeCrossEntropy(), init=str(tmp_path / "photo.png")).input.detach()
    from_pt = InputOptimization(tiny_net, NegativeCrossEntropy(), init=str(tmp_path / "photo.pt")).input.detach()
    assert from_png.shape == (1, 3, 32, 32) and torch.equal(from_pt[0], image)
    assert (from_png[0] - image).abs().max() <= 1 / 255 + 1e-6  # 8-bit PNG quantization


def test_units_all_is_resolved_from_the_layers_real_shape(tiny_net):
    module = InputOptimization(tiny_net, ChannelSum("features.4", channel="all"), image_shape=(3, 32, 32))
    assert module.input.shape == (8, 3, 32, 32)  # TinyConvNet's features.4 has 8 channels
    assert module.image_names() == [f"features.4-{c}" for c in range(8)]
    some = InputOptimization(tiny_net, ChannelSum("features.4", channel=[5, 2]), image_shape=(3, 32, 32))
    torch.testing.assert_close(some.input, module.input[[5, 2]])  # a unit's noise does not depend on its batch
