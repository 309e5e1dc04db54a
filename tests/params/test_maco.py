"""MacoImage: the magnitude stays fixed, only the phase trains; the magnitude's sources; the importance map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from inputopt import ChannelSum, InputOptimization, Jitter, MultiScaleEdgeEnergy, RandomRotate
from inputopt.callbacks.importance import SaveImportance
from inputopt.commands.fit import cli
from inputopt.functional.magnitude import default_magnitude, estimate_magnitude
from inputopt.params import MacoImage
from inputopt.problem import Problem

SHAPE = (3, 32, 32)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def fit(module: InputOptimization, steps: int, ckpt_path: str | None = None, **kwargs) -> Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    trainer = Trainer(max_steps=steps, **{**options, **kwargs})
    trainer.fit(module, ckpt_path=ckpt_path)
    return trainer


def make_module(net, param=None, transforms=None, **kwargs) -> InputOptimization:
    problem = Problem(net, ChannelSum("features.4", channel=[1, 5]), [MultiScaleEdgeEnergy(0.1)],
                      param=param or MacoImage(), transforms=transforms)
    return InputOptimization(problem, image_shape=SHAPE, **kwargs)


def spectrum_magnitude(param: MacoImage) -> torch.Tensor:
    return torch.fft.rfft2(param.unstandardized(param.phase.detach()), norm="ortho").abs()


def test_magnitude_is_fixed_and_only_the_phase_trains(tiny_net):
    module = make_module(tiny_net, transforms=[Jitter(2), RandomRotate(5)])
    param = module.param
    magnitude, phase, images = param.magnitude.clone(), param.phase.detach().clone(), module.images()
    assert [name for name, _ in module.named_parameters()] == ["param.phase"]
    torch.testing.assert_close(spectrum_magnitude(param), magnitude.expand(2, *magnitude.shape), rtol=1e-4, atol=1e-5)
    fit(module, 5)
    assert torch.equal(param.magnitude, magnitude)
    assert (param.phase - phase).abs().amax() > 0.1 and (module.images() - images).abs().amax() > 0.05
    torch.testing.assert_close(spectrum_magnitude(param), magnitude.expand(2, *magnitude.shape), rtol=1e-4, atol=1e-5)
    x = module.images()
    assert x.min() > 0 and x.max() < 1  # the sigmoid's range
    assert param.decorrelate  # RGB: decorrelated colours by default, mixed into RGB before the sigmoid
    mixed = torch.logit(x.double())
    standardized = torch.einsum("cd,bdhw->bchw", torch.linalg.inv(param.color_matrix.double()), mixed)
    torch.testing.assert_close(standardized.mean((1, 2, 3)), torch.zeros(2, dtype=torch.double), atol=1e-4, rtol=0)
    torch.testing.assert_close(standardized.std((1, 2, 3), correction=0), torch.ones(2, dtype=torch.double),
                               atol=1e-4, rtol=0)


def test_odd_sizes_keep_the_magnitude_too():
    param = MacoImage().initialize((1, 15, 9), keys=[0, 1, 2])
    magnitude = spectrum_magnitude(param)
    torch.testing.assert_close(magnitude, param.magnitude.expand_as(magnitude), rtol=1e-4, atol=1e-5)


def test_initialize_from_takes_the_phase_of_the_images():
    images = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    param = MacoImage(sigmoid=None, decorrelate=False).initialize_from(images)  # no sigmoid or colours to invert
    made, given = (torch.fft.rfft2(x, norm="ortho") for x in (param.unstandardized(param.phase.detach()), images))
    columns = slice(1, SHAPE[2] // 2)  # away from the self-conjugate columns, whose phase is made odd
    torch.testing.assert_close(made[..., columns].angle(), given[..., columns].angle(), rtol=0, atol=1e-4)
    torch.testing.assert_close(made.abs(), param.magnitude.expand_as(made), rtol=1e-4, atol=1e-5)


def test_magnitude_sources_give_the_same_parameterization(tmp_path):
    images = torch.rand(6, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    estimated = estimate_magnitude(images, 20)
    torch.save(estimated, tmp_path / "magnitude.pt")
    params = [MacoImage(magnitude=estimated), MacoImage(magnitude=str(tmp_path / "magnitude.pt")),
              MacoImage.from_images(images, 20)]
    made = [p.initialize((1, 20, 20), keys=[4]) for p in params]
    for param in made[1:]:
        assert torch.equal(param.magnitude, made[0].magnitude) and torch.equal(param(), made[0]())
    default = MacoImage().initialize((1, 20, 20), keys=[4])
    assert torch.equal(default.magnitude, default_magnitude(1, 20)) and not torch.equal(default(), made[0]())


def test_exceptions(tmp_path):
    with pytest.raises(FileNotFoundError, match="no magnitude file"):
        MacoImage(magnitude=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="finite values >= 0"):
        MacoImage(magnitude=-torch.ones(1, 8, 5))
    with pytest.raises(ValueError, match=r"\(C, H, W // 2 \+ 1\)"):
        MacoImage(magnitude=torch.ones(8, 5))
    with pytest.raises(ValueError, match="the magnitude has 1 channel"):
        MacoImage(magnitude=torch.ones(1, 8, 5)).initialize((3, 8, 8), keys=[0])
    with pytest.raises(ValueError, match="default magnitude is for 1 or 3 channels"):
        MacoImage().initialize((2, 8, 8), keys=[0])
    with pytest.raises(TypeError):
        MacoImage(clamp=(0, 1))  # a box projection would break the fixed magnitude


def test_run_resumes_bit_identically(tiny_net, tmp_path):
    whole = make_module(tiny_net, transforms=[Jitter(2)])
    fit(whole, 4)
    first = make_module(tiny_net, transforms=[Jitter(2)])
    fit(first, 2, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    assert set(torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]) == {"param.phase", "done"}
    resumed = make_module(tiny_net, transforms=[Jitter(2)])
    fit(resumed, 4, ckpt_path=str(tmp_path / "last.ckpt"))
    assert torch.equal(resumed.images(), whole.images())


def test_importance_is_the_summed_gradient_magnitude_and_is_saved(tiny_net, tmp_path):
    module = make_module(tiny_net)
    x = module.param()
    (first,) = torch.autograd.grad(module.compute_loss(x, step=0)["loss"].sum(), x)
    callback = SaveImportance(tmp_path, scale=2)
    fit(module, 1, callbacks=[callback])
    x = module.param()
    (second,) = torch.autograd.grad(module.compute_loss(x, step=1)["loss"].sum(), x)
    torch.testing.assert_close(callback.importance, first.abs())  # the hook is gone after the run
    more = make_module(tiny_net)
    fit(more, 2, callbacks=[callback])
    torch.testing.assert_close(callback.importance, first.abs() + second.abs())
    saved = torch.load(tmp_path / "importance.pt")
    assert torch.equal(saved, callback.importance) and saved.shape == (2, *SHAPE)
    heat = callback.heat_maps()
    assert heat.shape == (2, 1, 32, 32) and torch.equal(heat.flatten(1).amax(1), torch.ones(2))
    assert (tmp_path / "importance.png").is_file()


def test_importance_is_in_the_images_coordinates_with_the_transforms_undone(tmp_path):
    """The objective reads one pixel of the *transformed* image (a quarter turn): the importance lands on the
    pixel of the image itself that the transform moved there, not on the pixel the objective reads."""
    from inputopt import PixelImage, UnitActivation

    i, j = 1, 2  # the objective reads row 1, column 2 of the rotated 9x9 image, = pixel (2, 9 - 1 - 1) of the image
    module = InputOptimization(Problem(torch.nn.Flatten(), UnitActivation(None, unit=[i * 9 + j]),
                                       param=PixelImage(mean=0.5), transforms=[RandomRotate((90, 90))]),
                               image_shape=(1, 9, 9))
    callback = SaveImportance(tmp_path)
    fit(module, 3, callbacks=[callback])
    importance = callback.importance[0, 0]
    assert importance[j, 9 - 1 - i] > 1
    importance[j, 9 - 1 - i] = 0
    assert importance.abs().max() < 1e-4  # nowhere else, in particular not at (i, j)


def test_digits_maco_config_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "digits_maco.yaml"), "--trainer.max_steps", "3",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    module = cli(args).model
    assert isinstance(module.param, MacoImage) and len(module.transforms) > 0
    run_dir = tmp_path / "results" / "digits_maco" / "run"
    assert torch.equal(torch.load(run_dir / "input.pt"), module.images())
    importance = torch.load(run_dir / "importance.pt")
    assert importance.shape == (10, 1, 32, 32) and importance.sum() > 0 and (run_dir / "importance.png").is_file()
    # a magnitude saved as .pt, given by path on the command line (as in a YAML config)
    torch.save(estimate_magnitude(torch.rand(4, 1, 32, 32), 32), tmp_path / "magnitude.pt")
    module = cli([*args, "--trainer.logger", "false", "--trainer.callbacks", "[]",
                  "--model.problem.param.init_args.magnitude", str(tmp_path / "magnitude.pt")]).model
    assert torch.equal(module.param.magnitude, torch.load(tmp_path / "magnitude.pt"))
