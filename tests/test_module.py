"""InputOptimization: the network never changes, only the input does, and the objective goes up."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from inputopt import (ChannelSum, FourierImage, InputOptimization, Jitter, MultiScaleEdgeEnergy, NegativeCrossEntropy,
                      NetworkSpec, Pad, PixelImage, Problem, RandomRotate, RandomScale, UnitActivation)
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
    module = InputOptimization(Problem(tiny_net, ChannelSum("features.4", channel=[0, 1, 2]),
                                       [MultiScaleEdgeEnergy(0.1)]), image_shape=SHAPE)
    x0 = module.images()
    modes = RecordModes()
    trainer = fit(module, 5, callbacks=[modes])

    assert modes.any_training == [False] * 5  # BatchNorm and Dropout stayed in eval mode during fit
    after = tiny_net.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name  # parameters and BN running stats bit-identical
    assert all(p.requires_grad for p in tiny_net.parameters())  # handed back as given (frozen only during the fit)
    assert not torch.equal(module.images(), x0)
    optimized = [p for group in trainer.optimizers[0].param_groups for p in group["params"]]
    assert len(optimized) == 1 and optimized[0] is module.param.pixels
    assert [name for name, _ in module.named_parameters()] == ["param.pixels"]


def test_checkpoint_holds_no_network_weights(tiny_net, tmp_path):
    module = InputOptimization(Problem(tiny_net, UnitActivation("features.4", unit=1)), image_shape=SHAPE, batch_size=2)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(module, 3, enable_checkpointing=True, callbacks=[checkpoint], default_root_dir=tmp_path)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert set(saved["state_dict"]) == {"param.pixels", "done"}
    assert torch.equal(saved["state_dict"]["param.pixels"], module.images())


def test_load_from_checkpoint_rebuilds_a_named_network(tmp_path):
    module = InputOptimization(Problem("alexnet", UnitActivation("features.3", unit=[4, 7])), image_shape=(3, 64, 64))
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(module, 2, enable_checkpointing=True, callbacks=[checkpoint])
    restored = InputOptimization.load_from_checkpoint(tmp_path / "last.ckpt")  # plain data: weights_only works
    assert torch.equal(restored.images(), module.images())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["hyper_parameters"]["problem"]
    assert saved == module.problem.config() == restored.problem.config()  # the problem, as plain data
    for (name, a), b in zip(module.network.state_dict().items(), restored.network.state_dict().values()):
        assert torch.equal(a, b), name  # same seed, same random weights


def activation_at_centre(net, x, layer, units):
    act = capture_activations(net, x, [layer])[layer]
    h, w = act.shape[-2:]
    return act[torch.arange(len(units)), torch.tensor(units), h // 2, w // 2]


def test_optimizing_raises_each_rows_own_unit(tiny_net):
    units = [0, 3, 5]
    module = InputOptimization(Problem(tiny_net, UnitActivation("features.4", unit=units), param=PixelImage(std=0.1)),
                               image_shape=SHAPE)
    x0 = module.images()
    fit(module, 20)
    x1 = module.images()
    start = activation_at_centre(tiny_net, x0, "features.4", units)
    end = activation_at_centre(tiny_net, x1, "features.4", units)
    assert (end > start + 1.0).all(), (start, end)
    # each row raised its own unit more than the units the other rows target
    act = capture_activations(tiny_net, x1, ["features.4"])["features.4"][:, units, 8, 8]
    assert torch.equal(act.argmax(1), torch.arange(3))


def test_loss_is_weighted_priors_minus_objective(tiny_net):
    prior = MultiScaleEdgeEnergy(weight=0.3)
    objective = UnitActivation(None, unit=[2, 9])
    module = InputOptimization(Problem(tiny_net, objective, [prior, MultiScaleEdgeEnergy(weight=2.0)]),
                               image_shape=SHAPE)
    x = module.images()
    terms = module.compute_loss(x)
    score = tiny_net(x)[torch.arange(2), torch.tensor([2, 9])]
    energy = prior(x)
    torch.testing.assert_close(terms["objective"], score)
    torch.testing.assert_close(terms["loss"], 2.3 * energy - score)
    assert set(terms) == {"objective", "MultiScaleEdgeEnergy_0", "MultiScaleEdgeEnergy_1", "loss"}


def test_starting_noise_depends_only_on_seed_and_unit(tiny_net):
    def start(units, seed=0):
        return InputOptimization(Problem(tiny_net, ChannelSum("features.0", channel=units), seed=seed),
                                 image_shape=SHAPE).images()

    many, alone = start([1, 4, 5]), start(4)
    assert torch.equal(many[1], alone[0])
    assert torch.equal(start([5, 4])[1], alone[0])
    assert not torch.equal(start(4, seed=1)[0], alone[0])
    assert 0.005 < many.std() < 0.02  # default N(0, 0.01²)


def test_init_from_images_and_input_normalization(tiny_net):
    images = torch.rand(2, 3, 32, 32)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    module = InputOptimization(Problem(NetworkSpec(tiny_net, mean=mean, std=std), NegativeCrossEntropy()), init=images)
    assert torch.equal(module.images(), images)
    expected = tiny_net((images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(module(), expected)
    assert torch.equal(module.targets, expected.argmax(1))


def test_freeze_done_keeps_fooled_images_fixed(tiny_net):
    """A frozen image never moves again, even with momentum in the optimizer."""
    torch.manual_seed(0)
    module = InputOptimization(Problem(tiny_net, NegativeCrossEntropy()), init=torch.rand(8, 3, 32, 32),
                               optimizer=partial(torch.optim.SGD, lr=0.5, momentum=0.9), freeze_done=True)

    class Watch(Callback):
        def __init__(self):
            self.snapshots = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.snapshots.append((pl_module.done.clone(), pl_module.images()))

    watch = Watch()
    fit(module, 15, callbacks=[watch])
    assert module.done.any(), "no image was fooled: the test needs a stronger attack"
    for (done_a, x_a), (done_b, x_b) in zip(watch.snapshots, watch.snapshots[1:]):
        assert (done_b >= done_a).all()
        assert torch.equal(x_a[done_a], x_b[done_a])
    predicted = module.predict_classes()
    assert (predicted[module.done] != module.targets[module.done]).all()


class RecordImages(Callback):
    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images.append(pl_module.images())


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_every_step_is_projected_into_the_box_and_the_ball(tiny_net, norm):
    param = PixelImage(mean=0.5, std=0.3, clamp=(0.0, 1.0), eps=0.05, norm=norm)
    module = InputOptimization(Problem(tiny_net, UnitActivation(None, unit=3), param=param), image_shape=SHAPE,
                               optimizer=partial(torch.optim.SGD, lr=100.0))
    start = module.start.clone()
    assert start.min() >= 0 and start.max() <= 1  # the start itself is moved into the box
    record = RecordImages()
    fit(module, 4, callbacks=[record])
    for images in record.images:
        assert images.min() >= 0 and images.max() <= 1
        delta = (images - start).flatten(1)
        size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
        assert (size <= 0.05 + 1e-6).all()
    if norm == "Linf":  # a large step: the image reached the border (in L2, the box then shortens it)
        assert torch.allclose(size, torch.full_like(size, 0.05), atol=1e-5)


@pytest.mark.parametrize("precision", ["16-true", "bf16-true"])
def test_exception_half_precision_input_is_refused(tiny_net, precision):
    module = InputOptimization(Problem(tiny_net, UnitActivation(None, unit=3)), image_shape=SHAPE)
    with pytest.raises(ValueError, match="cast the input itself"):
        fit(module, 1, precision=precision)


@pytest.mark.parametrize("param", [FourierImage(decorrelate=True, sigmoid=[0, 1]), PixelImage(decorrelate=True)])
def test_64_true_runs_the_images_in_float64(tiny_net, param):
    """``precision="64-true"`` makes the parameterization float64, its colour matrix included (no float32
    rounding left: what the batch-independence property tests rely on)."""
    module = InputOptimization(Problem(tiny_net, UnitActivation(None, unit=[3, 4]), [MultiScaleEdgeEnergy(0.1)],
                                       param=param), image_shape=SHAPE)
    fit(module, 2, precision="64-true")
    assert module.images().dtype == torch.float64 and torch.isfinite(module.images()).all()


def test_bf16_mixed_runs_and_keeps_input_float32(tiny_net):
    module = InputOptimization(Problem(tiny_net, UnitActivation(None, unit=3), [MultiScaleEdgeEnergy(0.1)]),
                               image_shape=SHAPE)
    fit(module, 2, precision="bf16-mixed")
    assert module.param.pixels.dtype == torch.float32 and torch.isfinite(module.images()).all()


def test_exception_messages(tiny_net):
    with pytest.raises(ValueError, match="closest valid names: features.4"):
        InputOptimization(Problem(tiny_net, UnitActivation("feature.4", unit=1)), image_shape=SHAPE)
    with pytest.raises(ValueError, match=r"valid units are 0\.\.7"):
        InputOptimization(Problem(tiny_net, UnitActivation("features.4", unit=8)), image_shape=SHAPE)
    with pytest.raises(ValueError, match="smaller side is > 5"):
        module = InputOptimization(Problem(tiny_net, UnitActivation("features.0", unit=1), [MultiScaleEdgeEnergy()]),
                                   image_shape=(3, 4, 32))
        module.compute_loss(module.param())
    with pytest.raises(ValueError, match=r"init must be images of shape \(B, C, H, W\)"):
        InputOptimization(Problem(tiny_net, UnitActivation(None, unit=1)), init=torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        InputOptimization(Problem(tiny_net, UnitActivation(None, unit=1)), image_shape=(32, 32))
    with pytest.raises(ValueError, match="batch_size=2 but the objective targets 3 units"):
        InputOptimization(Problem(tiny_net, UnitActivation(None, unit=[1, 2, 3])), image_shape=SHAPE, batch_size=2)
    with pytest.raises(ValueError, match="give both mean and std"):
        InputOptimization(Problem(NetworkSpec(tiny_net, std=[0.5, 0.5, 0.5]), UnitActivation(None, unit=1)),
                          image_shape=SHAPE)
    with pytest.raises(ValueError, match="apply to a network given by name"):
        InputOptimization(Problem(NetworkSpec(tiny_net, weights="DEFAULT"), UnitActivation(None, unit=1)),
                          image_shape=SHAPE)
    with pytest.raises(ValueError, match="max_steps"):
        Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False).fit(
            InputOptimization(Problem(tiny_net, UnitActivation(None, unit=1)), image_shape=SHAPE))


def test_random_weights_depend_on_the_seed_only():
    a = InputOptimization(Problem("alexnet", UnitActivation(None, unit=1), seed=3), image_shape=(3, 64, 64))
    torch.rand(10)  # global RNG state must not matter
    b = InputOptimization(Problem("alexnet", UnitActivation(None, unit=1), seed=3), image_shape=(3, 64, 64))
    assert torch.equal(a.network.features[0].weight, b.network.features[0].weight)


def test_init_from_files(tiny_net, tmp_path):
    from torchvision.utils import save_image

    image = torch.rand(3, 32, 32)
    save_image(image, tmp_path / "photo.png")
    torch.save(image.unsqueeze(0), tmp_path / "photo.pt")
    from_png = InputOptimization(Problem(tiny_net, NegativeCrossEntropy()), init=str(tmp_path / "photo.png")).images()
    from_pt = InputOptimization(Problem(tiny_net, NegativeCrossEntropy()), init=str(tmp_path / "photo.pt")).images()
    assert from_png.shape == (1, 3, 32, 32) and torch.equal(from_pt[0], image)
    assert (from_png[0] - image).abs().max() <= 1 / 255 + 1e-6  # 8-bit PNG quantization


def test_units_all_is_resolved_from_the_layers_real_shape(tiny_net):
    module = InputOptimization(Problem(tiny_net, ChannelSum("features.4", channel="all")), image_shape=(3, 32, 32))
    assert module.images().shape == (8, 3, 32, 32)  # TinyConvNet's features.4 has 8 channels
    assert module.image_names() == [f"features.4-{c}" for c in range(8)]
    some = InputOptimization(Problem(tiny_net, ChannelSum("features.4", channel=[5, 2])), image_shape=(3, 32, 32))
    torch.testing.assert_close(some.images(), module.images()[[5, 2]])  # a unit's noise does not depend on its batch


def test_load_from_checkpoint_with_labels_from_the_starting_images(tiny_net, tmp_path):
    """The labels of a default NegativeCrossEntropy are data computed from the start, not saved state."""
    problem = Problem(tiny_net, NegativeCrossEntropy())
    module = InputOptimization(problem, init=torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    fit(module, 3, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    init = module.start.clone()
    with pytest.raises(ValueError, match=r"load_from_checkpoint\(path, problem=problem\)"):  # a module: give it again
        InputOptimization.load_from_checkpoint(tmp_path / "last.ckpt", init=init)
    restored = InputOptimization.load_from_checkpoint(tmp_path / "last.ckpt", problem=problem, init=init)
    assert torch.equal(restored.targets, module.targets)
    assert torch.equal(restored.images(), module.images())
    assert restored.image_names() == ["row-0", "row-1", "row-2"]  # no units: named by row


class CountForwards(torch.nn.Module):
    """Wraps a network and records the spatial size of every input it sees."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.net(x)


def test_transforms_reach_the_loss_forward_only(tiny_net, tmp_path):
    """Pad(4) makes transformed images 40x40 when they keep the padded size (by default they are resized back to
    32x32): only the loss forward may see that size."""
    from inputopt.callbacks.images import SaveImages
    from inputopt.callbacks.tables import PredictionTable, SphereCheck

    net = CountForwards(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(32), tiny_net))
    module = InputOptimization(Problem(net, NegativeCrossEntropy(), [MultiScaleEdgeEnergy(0.1)],
                                       transforms=[Pad(4, value=0.5), Jitter(2), RandomScale(0.9, 1.1),
                                                   RandomRotate(10)]),
                               init=torch.rand(2, 3, 32, 32), freeze_done=True)
    module.transforms.keep_size = False  # the padded size tells the loss forward from the evaluation forward
    table, sphere = PredictionTable(print_table=False), SphereCheck(num_points=4)
    fit(module, 3, callbacks=[table, sphere, SaveImages(tmp_path)])
    loss_sizes = [s for s in net.sizes if s == (40, 40)]
    assert len(loss_sizes) == 3  # one transformed loss forward per step
    evaluation = [s for s in net.sizes if s != (40, 40)]
    assert evaluation and all(s == (32, 32) for s in evaluation)  # targets, is_done, table, sphere check
    assert torch.equal(torch.load(tmp_path / "input.pt"), module.images())  # results are the images
    assert len(table.predictions) == 4 and sphere.fractions.shape == (2,)


def test_transform_draws_depend_on_unit_and_step_only(tiny_net):
    transforms = [Pad(2), Jitter(3), RandomRotate(20)]
    both = InputOptimization(Problem(tiny_net, ChannelSum("features.4", channel=[2, 5]), transforms=transforms),
                             image_shape=SHAPE)
    alone = InputOptimization(Problem(tiny_net, ChannelSum("features.4", channel=5), transforms=transforms),
                              image_shape=SHAPE)
    for step in (0, 7):
        torch.testing.assert_close(both.compute_loss(both.param(), step=step)["loss"][1],
                                   alone.compute_loss(alone.param(), step=step)["loss"][0])
    assert not torch.equal(both.compute_loss(both.param(), step=0)["loss"], both.compute_loss(both.param(), step=1)["loss"])


def test_one_problem_serves_a_fit_and_a_sweep(tmp_path):
    """The same Problem object describes a fit and a sweep: each takes its own copy of the parameterization, and
    the sweep's image of a unit is the fit's row of that unit (same seed, same steps, same optimizer)."""
    from inputopt.callbacks.sweep import SaveSweep
    from inputopt.runners.sweep import FeatureSweep

    problem = Problem("digits", ChannelSum("features.4", channel=[5, 1, 30]), [MultiScaleEdgeEnergy(0.3)],
                      param=PixelImage(mean=0.5, std=0.1), transforms=[Jitter(1)], seed=2)
    adam = partial(torch.optim.Adam, lr=0.05)
    module = InputOptimization(problem, image_shape=(1, 32, 32), optimizer=adam)
    fit(module, 4)
    sweep = FeatureSweep(problem, image_shape=(1, 32, 32), optimizer=adam, steps=4, units_per_batch=2)
    Trainer(callbacks=[SaveSweep(tmp_path, progress=False)], logger=False, enable_progress_bar=False,
            enable_model_summary=False).test(sweep, verbose=False)
    assert module.param is not problem.param and sweep.units == [5, 1, 30]
    torch.testing.assert_close(torch.load(tmp_path / "input.pt"), module.images(), rtol=1e-5, atol=1e-6)
    assert sweep.record()["seed"] == 2 and module.problem is problem


def test_a_plain_loop_gives_the_images_of_a_fit(tiny_net):
    """The loss path and projection are written once: `optimize` in a plain loop equals a Trainer fit."""
    from inputopt.engine import optimize

    def make():
        return InputOptimization(Problem(tiny_net, UnitActivation("features.4", unit=[1, 6]),
                                         [MultiScaleEdgeEnergy(0.1)],
                                         param=FourierImage(mean=0.5, std=0.1, clamp=(0, 1)), transforms=[Jitter(2)]),
                                 image_shape=SHAPE, optimizer=partial(torch.optim.Adam, lr=0.05))

    fitted = make()
    fit(fitted, 5)
    looped = make()
    optimize(looped.param, looped.path, 5, partial(torch.optim.Adam, lr=0.05), seeds=looped.row_seeds)
    torch.testing.assert_close(looped.images(), fitted.images(), rtol=1e-5, atol=1e-6)


def test_fourier_run_resumes_bit_identically(tiny_net, tmp_path):
    def make():
        return InputOptimization(Problem(tiny_net, ChannelSum("features.4", channel=[0, 3]),
                                         [MultiScaleEdgeEnergy(0.1)],
                                         param=FourierImage(decorrelate=True, sigmoid=(0, 1)),
                                         transforms=[Pad(2, value=0.5), Jitter(2), RandomRotate(5)]), image_shape=SHAPE)

    whole = make()
    fit(whole, 6)
    first = make()
    fit(first, 3, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert set(saved["state_dict"]) == {"param.spectrum", "done"}  # the parameters, not the images
    resumed = make()
    Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(resumed, ckpt_path=str(tmp_path / "last.ckpt"))
    assert torch.equal(resumed.images(), whole.images())


def test_image_shape_defaults_from_the_network():
    """No image_shape: the zoo's 1×32×32, a torchvision network's own crop size, instead of a fixed 3×224×224."""
    assert InputOptimization(Problem("digits", UnitActivation(None, unit=3))).images().shape == (1, 1, 32, 32)
    alexnet = InputOptimization(Problem("alexnet", UnitActivation("features.0", unit=0)))
    assert alexnet.images().shape == (1, 3, 224, 224)


def test_grayscale_file_for_a_one_channel_network(tmp_path):
    """A grayscale image file starts a 1-channel network's images as stored (it used to become RGB, and fail)."""
    from PIL import Image

    pixels = torch.randint(0, 256, (32, 32), dtype=torch.uint8)
    Image.fromarray(pixels.numpy(), mode="L").save(tmp_path / "digit.png")
    problem = Problem("digits", UnitActivation(None, unit=3))
    images = InputOptimization(problem, init=str(tmp_path / "digit.png")).images()
    torch.testing.assert_close(images, pixels.float().div(255).view(1, 1, 32, 32))


def test_uint8_pt_init_is_scaled_like_an_image_file(tmp_path):
    pixels = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    torch.save(pixels, tmp_path / "digits.pt")
    problem = Problem("digits", UnitActivation(None, unit=3))
    images = InputOptimization(problem, init=str(tmp_path / "digits.pt")).images()
    torch.testing.assert_close(images, pixels.float() / 255)


def test_targets_are_checked_at_construction():
    """The shape probe runs in the constructor: the targets exist before any Trainer."""
    module = InputOptimization(Problem("digits", NegativeCrossEntropy(labels=[4, 7])), init=torch.rand(2, 1, 32, 32))
    assert module.targets.tolist() == [4, 7]


@pytest.mark.parametrize("every, rows", [(None, 5), (2, 2)])
def test_scalars_are_logged_at_every_step_unless_the_trainer_says_otherwise(tiny_net, tmp_path, every, rows):
    """From Python, a Trainer left at Lightning's log_every_n_steps=50 logs every step (like the command line);
    another value is the user's and is kept."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    module = InputOptimization(Problem(tiny_net, ChannelSum("features.4", channel=[0, 1])), image_shape=(3, 16, 16))
    kwargs = {} if every is None else {"log_every_n_steps": every}
    trainer = Trainer(max_steps=5, logger=CSVLogger(tmp_path, name="run", version=0), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", **kwargs)
    trainer.fit(module)
    with open(tmp_path / "run" / "version_0" / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row["loss"]]
    assert len(logged) == rows
    assert trainer.log_every_n_steps == (1 if every is None else every)
