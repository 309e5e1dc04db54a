"""Errors at the door: one table of bad inputs, each given the way a user gives it.

Every row asserts the exception (or, for a negative prior weight, the warning), that the message names the
bad value and says what is valid, and that nothing was written into the run folder. Constructor rows are
cheap; the command-line rows run ``inputopt fit`` in-process on configs/digits.yaml, inside a tmp folder.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from inputopt import InputOptimization
from inputopt.attacks import FGSM, FMN, PGD
from inputopt.callbacks.images import LogImages, SaveImages
from inputopt.callbacks.tables import PredictionTable, SphereCheck
from inputopt.cli import main
from inputopt.commands.common import CommandLineError
from inputopt.data import Digits, ImageFolder
from inputopt.functional.sphere import sphere_check
from inputopt.networks import NetworkSpec, build_network
from inputopt.objectives import ChannelSum, Margin, NegativeCrossEntropy, UnitActivation
from inputopt.params import FourierImage, PixelImage
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.problem import Problem
from inputopt.runners.attack import AttackEvaluation
from inputopt.runners.examples import DatasetExamples
from inputopt.runners.sweep import FeatureSweep
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def unit() -> UnitActivation:
    return UnitActivation(None, unit=3)


def module(**kwargs) -> InputOptimization:
    """An InputOptimization of the digits network and unit 3; the problem's parts and the network's fields (mean,
    std) among ``kwargs`` go to its Problem."""
    spec = {k: kwargs.pop(k) for k in ("mean", "std", "weights", "state_dict") if k in kwargs}
    parts = {k: kwargs.pop(k) for k in ("objective", "priors", "param", "transforms", "seed") if k in kwargs}
    parts.setdefault("objective", unit())
    network = kwargs.pop("network", "digits")
    return InputOptimization(Problem(NetworkSpec(network, **spec) if spec else network, **parts), **kwargs)


class TupleNet(nn.Module):
    """A network whose forward returns (logits, features), like some detection or auxiliary-head models."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.head(x.flatten(1)), x


def write_file(name: str, content) -> str:
    """Write a file into the (tmp) current folder: bytes, a tensor or dict (torch.save) or a PIL image."""
    path = Path(name)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, Image.Image):
        content.save(path)
    else:
        torch.save(content, path)
    return str(path)


def fit(*args: str) -> None:
    """``inputopt fit --config configs/digits.yaml ARGS`` in the current folder (2 steps, no progress bar)."""
    main(["fit", "--config", "configs/digits.yaml", "--trainer.max_steps", "2", "--trainer.enable_progress_bar",
          "false", *args])


digits_images = torch.rand(4, 1, 32, 32)
digits_labels = torch.tensor([0, 1, 2, 3])

# (id, what the user does, expected exception, regex on the message: names the bad value and what is valid)
ROWS = [
    # -- images the network cannot take: the shape probe at construction
    ("channels", lambda: module(image_shape=(3, 32, 32)), ValueError,
     r"\(3, 32, 32\).*digits takes \(C, H, W\) = \(1, 32, 32\)"),
    ("image-too-small", lambda: module(image_shape=(1, 4, 4)), ValueError,
     r"\(1, 4, 4\).*digits takes \(C, H, W\) = \(1, 32, 32\)"),
    ("init-channels", lambda: module(init=torch.rand(2, 3, 32, 32)), ValueError,
     r"\(3, 32, 32\).*\(1, 32, 32\)"),
    ("module-channels", lambda: InputOptimization(Problem(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), unit()),
                                                  image_shape=(1, 8, 8)), ValueError,
     r"\(1, 8, 8\).*first convolution '0' takes 3 channel"),
    ("module-no-image-shape",
     lambda: InputOptimization(Problem(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), unit())),
     ValueError, r"image_shape \(C, H, W\) is needed.*takes 3 channel"),
    ("image-shape-2-numbers", lambda: module(image_shape=(32, 32)), ValueError,
     r"image_shape must be \(C, H, W\) positive ints, got \(32, 32\)"),
    ("image-shape-4-numbers", lambda: module(image_shape=(1, 1, 32, 32)), ValueError,
     r"image_shape must be \(C, H, W\).*got \(1, 1, 32, 32\)"),
    ("zero-size-image", lambda: module(image_shape=(1, 0, 32)), ValueError,
     r"positive ints, got \(1, 0, 32\)"),
    ("image-shape-vs-init", lambda: module(image_shape=(1, 32, 32), init=torch.rand(1, 1, 28, 28)), ValueError,
     r"image_shape is \(1, 32, 32\) but init's images have shape \(1, 28, 28\)"),
    ("init-2d", lambda: module(init=torch.rand(32, 32)), ValueError,
     r"init must be images of shape \(B, C, H, W\) or \(C, H, W\), got shape \(32, 32\)"),
    # -- counts, seeds, numbers
    ("batch-size-0", lambda: module(image_shape=(1, 32, 32), batch_size=0), ValueError,
     r"batch_size must be an int >= 1 or None, got 0"),
    ("batch-size-negative", lambda: module(image_shape=(1, 32, 32), batch_size=-2), ValueError,
     r"batch_size must be an int >= 1 or None, got -2"),
    ("seed-over-64-bits", lambda: module(seed=2**64), ValueError,
     r"seed must be an int in \[0, 2\*\*64\).*got 18446744073709551616"),
    ("negative-prior-weight", lambda: MultiScaleEdgeEnergy(weight=-0.3), UserWarning,
     r"negative weight \(-0.3\).*give a weight >= 0"),
    ("nan-prior-weight", lambda: MultiScaleEdgeEnergy(weight=float("nan")), ValueError,
     r"weight must be a finite number, got nan"),
    ("optimizer-not-callable", lambda: module(optimizer="adam"), TypeError,
     r"optimizer must build the optimizer.*got 'adam'"),
    ("objective-not-objective", lambda: module(objective="UnitActivation"), TypeError,
     r"objective must be an InputObjective.*got 'UnitActivation'"),
    # -- networks, layers, units, classes
    ("unknown-network", lambda: module(network="digitz"), ValueError,
     r"unknown network 'digitz'; closest: digits"),
    ("unknown-weights", lambda: build_network("alexnet", weights="IMAGENET"), ValueError,
     r"unknown weights 'IMAGENET' for alexnet; valid: DEFAULT, IMAGENET1K_V1"),
    ("network-import-path", lambda: build_network("mypackage.mynet"), ValueError,
     r"network 'mypackage.mynet': package 'mypackage' is not allowed.*allow_packages: \[mypackage\]"),
    ("unknown-layer", lambda: module(objective=UnitActivation("feature.0", unit=3)), ValueError,
     r"unknown layer 'feature.0'.*closest valid names: features.0"),
    ("unit-out-of-range", lambda: module(objective=UnitActivation(None, unit=10)), ValueError,
     r"unit 10 is out of range.*valid units are 0..9"),
    ("channel-out-of-range", lambda: module(objective=ChannelSum("features.0", channel=[1, 99])), ValueError,
     r"channel 99 is out of range for layer 'features.0'.*valid channels are 0..\d+"),
    ("position-outside-map", lambda: module(objective=UnitActivation("features.0", 1, position=(40, 0))), ValueError,
     r"position \(40, 0\) is outside layer 'features.0'"),
    ("bool-unit", lambda: UnitActivation(None, unit=True), ValueError,
     r"units must be an int, a non-empty list of ints or 'all', got True"),
    ("bool-classes", lambda: NegativeCrossEntropy(labels=[True, False]), ValueError,
     r"labels must be an int or a non-empty list of ints, got \[True, False\]"),
    ("class-out-of-range", lambda: module(objective=NegativeCrossEntropy(labels=11)), ValueError,
     r"class 11 is out of range.*valid classes are 0..9"),
    ("position-three-numbers", lambda: UnitActivation("features.0", 1, position=(1, 2, 3)), ValueError,
     r"position must be \(row, column\) ints, got \(1, 2, 3\)"),
    ("margin-nan-confidence", lambda: Margin(labels=1, confidence=float("nan")), ValueError,
     r"confidence must be a finite number or None, got nan"),
    ("more-labels-than-images", lambda: module(objective=NegativeCrossEntropy(labels=[1, 2, 3]),
                                               init=torch.rand(2, 1, 32, 32)), ValueError,
     r"the objective targets 3 units, one per image, but init has 2 images"),
    ("tuple-output", lambda: InputOptimization(Problem(TupleNet(), unit()), image_shape=(3, 8, 8)), TypeError,
     r"layer '' of TupleNet returns a tuple, not a tensor.*name the output to use \(output: logits"),
    # -- input normalization
    ("mean-std-length", lambda: module(mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2]), ValueError,
     r"mean and std have 3 values, one per channel, but the images have 1 channel"),
    ("std-zero", lambda: module(mean=[0.5], std=[0.0]), ValueError, r"std > 0; got \[0.5\], \[0.0\]"),
    ("mean-without-std", lambda: module(mean=[0.5]), ValueError, r"give both mean and std"),
    # -- starting images from files
    ("init-missing-file", lambda: module(init="nothing.png"), FileNotFoundError,
     r"init file 'nothing.png' does not exist"),
    ("init-corrupt-image", lambda: module(init=write_file("broken.png", b"\x89PNG not really")), ValueError,
     r"cannot read init file 'broken.png' as an image"),
    ("init-corrupt-pt", lambda: module(init=write_file("broken.pt", b"garbage")), ValueError,
     r"cannot read init file 'broken.pt' \(corrupt, truncated"),
    ("init-pt-dict", lambda: module(init=write_file("images.pt", {"images": torch.rand(1, 1, 32, 32)})),
     ValueError, r"init file 'images.pt' must hold a tensor of images.*got a dict"),
    ("init-pt-int64", lambda: module(init=write_file("ints.pt", torch.randint(0, 255, (1, 1, 32, 32)))),
     ValueError, r"init file 'ints.pt' holds a torch.int64 tensor; give float images in \[0, 1\], or uint8"),
    # -- parameterizations and transforms
    ("param-unknown-argument", lambda: PixelImage(sigma=1), TypeError, r"unexpected keyword argument 'sigma'"),
    ("param-negative-std", lambda: PixelImage(std=-1), ValueError, r"std must be >= 0, got -1"),
    ("param-mean-length", lambda: module(param=PixelImage(mean=[0.1, 0.2])), ValueError,
     r"mean has 2 values; give one, or one per channel \(1\)"),
    ("decorrelate-gray", lambda: module(param=FourierImage(decorrelate=True)), ValueError,
     r"decorrelate=True mixes RGB colours, but the images have 1 channel"),
    ("fourier-decay", lambda: FourierImage(decay_power=-1), ValueError, r"decay_power must be a number >= 0, got -1"),
    ("param-norm", lambda: PixelImage(eps=0.1, norm="L1"), ValueError, r"norm must be 'Linf' or 'L2', got 'L1'"),
    ("jitter-larger-than-image", lambda: module(transforms=[Pad(2), Jitter(40)]), ValueError,
     r"Jitter\(pixels=40\).*36x36.*pixels must be < 36"),
    ("reflect-pad-larger-than-image", lambda: module(transforms=[Pad(40, mode="reflect")]), ValueError,
     r"Pad\(width=40, mode='reflect'\) needs width < the image size 32x32"),
    ("jitter-negative", lambda: Jitter(-1), ValueError, r"pixels must be an int >= 0, got -1"),
    ("pad-negative", lambda: Pad(-2), ValueError, r"width must be an int >= 0, got -2"),
    ("scale-negative", lambda: RandomScale(-1, 2), ValueError, r"scale factors must be > 0, got low=-1"),
    ("rotate-reversed", lambda: RandomRotate((10, 5)), ValueError, r"degrees must have low <= high, got \(10, 5\)"),
    # -- attacks
    ("attack-negative-eps", lambda: PGD("digits", eps=-0.1), ValueError, r"eps must be finite numbers >= 0, got -0.1"),
    ("attack-eps-list-negative", lambda: FGSM("digits", eps=[0.1, -0.1]), ValueError,
     r"eps must be finite numbers >= 0, got \[0.1, -0.1\]"),
    ("attack-unknown-norm", lambda: PGD("digits", norm="L3"), ValueError, r"norm must be 'Linf' or 'L2', got 'L3'"),
    ("attack-steps-0", lambda: PGD("digits", steps=0), ValueError, r"steps must be an int >= 1, got 0"),
    ("attack-unknown-loss", lambda: PGD("digits", loss="xent"), ValueError,
     r"loss must be one of \['ce', 'dlr', 'margin'\] or a LabelObjective config, got 'xent'"),
    ("attack-step-size-0", lambda: PGD("digits", alpha=0), ValueError, r"alpha must be a finite number > 0, got 0"),
    ("fmn-gamma", lambda: FMN("digits", gamma=2), ValueError, r"gamma must be in \(0, 1\), got 2"),
    ("attack-labels-length", lambda: PGD("digits", steps=1)(digits_images, digits_labels[:3]), ValueError,
     r"labels must have shape \(4,\) and hold int class indices, got .* shape \(3,\)"),
    ("attack-labels-range", lambda: PGD("digits", steps=1)(digits_images, torch.tensor([0, 1, 2, 12])), ValueError,
     r"labels must be class indices in 0..9 \(the network has 10 classes\), got 12"),
    ("attack-bool-labels", lambda: PGD("digits", steps=1)(digits_images, torch.tensor([True] * 4)), ValueError,
     r"labels must have shape \(4,\) and hold int class indices, got a torch.bool"),
    ("attack-images-0-255", lambda: PGD("digits", steps=1)(digits_images * 255, digits_labels), ValueError,
     r"images must lie in the attack's bounds \(0.0, 1.0\), got values in \[.*, 2\d\d.*\]"),
    ("attack-images-channels", lambda: PGD("digits", steps=1)(digits_images.expand(4, 3, 32, 32), digits_labels),
     ValueError, r"cannot take images of shape \(C, H, W\) = \(3, 32, 32\)"),
    ("attack-mean-std-length", lambda: PGD("digits", steps=1, mean=[0.5] * 3, std=[0.5] * 3)(digits_images,
                                                                                              digits_labels),
     ValueError, r"mean and std have 3 values, one per channel, but the images have 1 channel"),
    ("attack-target-range", lambda: PGD("digits", steps=1)(digits_images, digits_labels, target=15), ValueError,
     r"target must be class indices in 0..9 \(the network has 10 classes\), got 15"),
    ("attack-bounds-reversed", lambda: PGD("digits", bounds=(1, 0)), ValueError,
     r"bounds must be \(low, high\) finite numbers with low < high, got \(1, 0\)"),
    ("attack-evaluation-sphere-points", lambda: AttackEvaluation(PGD("digits"), Digits(limit=4), sphere_points=-1),
     ValueError, r"sphere_points must be an int >= 0, got -1"),
    ("attack-evaluation-batch-size", lambda: AttackEvaluation(PGD("digits"), Digits(limit=4), batch_size=0),
     ValueError, r"batch_size must be an int >= 1, got 0"),
    ("attack-evaluation-attack-name", lambda: AttackEvaluation("PGD", Digits(limit=4)), TypeError,
     r"attack must be an inputopt.attacks.Attack, got str"),
    # -- sweeps
    ("sweep-units-per-batch-0", lambda: FeatureSweep(Problem("digits", UnitActivation(None, unit=[1, 2])),
                                                     units_per_batch=0),
     ValueError, r"units_per_batch must be >= 1, got 0"),
    ("sweep-objective-without-units", lambda: FeatureSweep(Problem("digits", NegativeCrossEntropy())), ValueError,
     r"a sweep needs a UnitsObjective objective .*got NegativeCrossEntropy"),
    ("sweep-channels", lambda: FeatureSweep(Problem("digits", UnitActivation(None, unit=[1, 2])),
                                            image_shape=(3, 32, 32)),
     ValueError, r"\(3, 32, 32\).*digits takes \(C, H, W\) = \(1, 32, 32\)"),
    ("sweep-repeated-units", lambda: FeatureSweep(Problem("digits", UnitActivation(None, unit=[1, 1]))), ValueError,
     r"one image per unit, but units \[1, 1\] repeat"),
    # -- callbacks
    ("save-images-display", lambda: SaveImages(display="minmax"), ValueError,
     r"display must be 'std' or 'clamp', got 'minmax'"),
    ("save-images-scale-0", lambda: SaveImages(scale=0), ValueError, r"scale must be an int >= 1, got 0"),
    ("log-images-nrow-0", lambda: LogImages(nrow=0), ValueError, r"nrow must be an int >= 1 or None, got 0"),
    ("log-images-every-0", lambda: LogImages(every_n_steps=0), ValueError, r"every_n_steps must be >= 1, got 0"),
    ("sphere-check-factor-0", lambda: SphereCheck(factor=0), ValueError, r"factor must be > 0.*got 0"),
    ("prediction-table-max-rows-0", lambda: PredictionTable(max_rows=0), ValueError,
     r"max_rows must be an int >= 1, got 0"),
    ("prediction-table-compact-string", lambda: PredictionTable(compact="yes"), ValueError,
     r"compact must be true, false or null.*got 'yes'"),
    # -- data sources and files
    ("dataset-limit-0", lambda: Digits(limit=0), ValueError, r"limit must be an int >= 1 or None, got 0"),
    ("dataset-split", lambda: Digits("val"), ValueError, r"split must be 'train' or 'test', got 'val'"),
    ("image-folder-missing", lambda: ImageFolder("no_such_folder"), FileNotFoundError,
     r"ImageFolder: no folder 'no_such_folder'"),
    ("image-folder-channels", lambda: ImageFolder(".", image_shape=(2, 32, 32)), ValueError,
     r"image_shape must be \(C, H, W\) with C 1 or 3, got \(2, 32, 32\)"),
    ("state-dict-missing", lambda: build_network("digits", state_dict="weights.pt"), FileNotFoundError,
     r"state_dict file 'weights.pt' does not exist"),
    ("state-dict-corrupt", lambda: build_network("digits", state_dict=write_file("weights.pt", b"junk")), ValueError,
     r"cannot read state_dict file 'weights.pt' \(corrupt"),
    ("state-dict-other-network", lambda: build_network("digits", state_dict=write_file(
        "weights.pt", build_network("alexnet").state_dict())), ValueError,
     r"state_dict file 'weights.pt' does not fit network 'digits'"),
    # -- the command line (in-process): what only the command line sees
    ("cli-max-steps-0", lambda: fit("--trainer.max_steps", "0"), ValueError,
     r"max_steps must be an int >= 1.*got 0"),
    ("cli-refused-precision", lambda: fit("--trainer.precision", "bf16-true"), ValueError,
     r"precision 'bf16-true' would cast the input itself.*use '16-mixed' or 'bf16-mixed'"),
    ("cli-seed-everything-out-of-bounds", lambda: fit("--seed_everything", str(2**70)), ValueError,
     r"1180591620717411303424 is not in bounds, numpy accepts from 0 to 4294967295"),
    ("cli-ckpt-last-none", lambda: fit("--ckpt_path", "last"), FileNotFoundError,
     r"--ckpt_path last: there is no last checkpoint.*results/digits/run/checkpoints"),
    ("cli-ckpt-corrupt", lambda: fit("--ckpt_path", write_file("run.ckpt", b"PK junk")), ValueError,
     r"--ckpt_path 'run.ckpt' is not a checkpoint \(corrupt, truncated"),
    ("cli-ckpt-missing", lambda: fit("--ckpt_path", "old/last.ckpt"), FileNotFoundError,
     r"--ckpt_path 'old/last.ckpt': no such checkpoint file"),
    ("cli-image-shape-channels", lambda: fit("--model.image_shape", "[3, 32, 32]"), ValueError,
     r"\(3, 32, 32\).*digits takes \(C, H, W\) = \(1, 32, 32\)"),
    ("cli-unit-out-of-range", lambda: fit("--model.problem.objective.init_args.unit", "[3, 12]"), ValueError,
     r"unit 12 is out of range.*valid units are 0..9"),
]

def nan_images() -> torch.Tensor:
    images = digits_images.clone()
    images[1, 0, 3, 3] = float("nan")
    return images


def sweep(*args: str) -> None:
    """``inputopt sweep --config configs/digits.yaml ARGS`` in the current folder (no progress bar)."""
    main(["sweep", "--config", "configs/digits.yaml", "--sweep_dir", "results/sweep", "--trainer.enable_progress_bar",
          "false", *args])


# Accepted silently before, each one (a hostile probe's findings): now refused, naming the value.
ROWS += [
    ("cli-lr-0", lambda: fit("--model.optimizer.init_args.lr", "0"), ValueError,
     r"learning rate must be a finite number > 0, got 0"),
    ("cli-lr-negative", lambda: fit("--model.optimizer.init_args.lr", "-0.1"), ValueError,
     r"[Ii]nvalid learning rate: -0.1"),
    ("cli-max-steps-negative", lambda: fit("--trainer.max_steps", "-5"), ValueError,
     r"max_steps must be an int >= 1.*got -5"),
    ("sweep-max-steps-0", lambda: sweep("--trainer.max_steps", "0"), ValueError,
     r"--trainer.max_steps must be an int >= 1, the optimization steps per chunk, got 0"),
    ("cli-init-empty-file", lambda: fit("--model.init", write_file("empty.png", b"")), ValueError,
     r"--model.init 'empty.png' is an empty file"),
    # paths are paths: a file given as an option is that file, never its text read as the option's value
    ("cli-init-file-whose-text-is-null", lambda: fit("--model.init", write_file("null.png", b"null")), ValueError,
     r"cannot read init file 'null.png' as an image"),
    ("cli-init-file-whose-text-is-another-path", lambda: (write_file("real.png", Image.new("L", (32, 32))),
                                                          fit("--model.init", write_file("other.png", b"real.png"))),
     ValueError, r"cannot read init file 'other.png' as an image"),
    ("cli-init-text-file", lambda: fit("--model.init", write_file("hello.txt", b"hello world")), ValueError,
     r"cannot read init file 'hello.txt' as an image"),
    ("cli-ckpt-file-whose-text-is-last", lambda: fit("--ckpt_path", write_file("run.ckpt", b"last")), ValueError,
     r"--ckpt_path 'run.ckpt' is not a checkpoint"),
    ("cli-state-dict-file-whose-text-is-null", lambda: fit(
        "--model.problem.network", f"{{model: digits, state_dict: {write_file('weights.pt', b'null')}}}"),
     ValueError, r"cannot read state_dict file 'weights.pt'"),
    ("init-zero-images", lambda: module(init=torch.rand(0, 1, 32, 32)), ValueError,
     r"init holds no images \(shape \(0, 1, 32, 32\)\)"),
    ("pgd-eps-empty-list", lambda: PGD("digits", eps=[]), ValueError,
     r"eps must be a number or a non-empty list of numbers >= 0, got \[\]"),
    ("fgsm-eps-empty-list", lambda: FGSM("digits", eps=[]), ValueError,
     r"eps must be a number or a non-empty list of numbers >= 0, got \[\]"),
    ("attack-nan-pixel-without-bounds", lambda: PGD("digits", steps=1, bounds=None).run(nan_images(), digits_labels),
     ValueError, r"images must be finite, but images \[1\] hold NaN or Inf"),
    ("attack-empty-batch", lambda: PGD("digits", steps=1)(digits_images[:0], digits_labels[:0]), ValueError,
     r"images is an empty batch \(shape \(0, 1, 32, 32\)\)"),
    ("attack-target-equals-label", lambda: PGD("digits", steps=1)(digits_images, digits_labels,
                                                                  target=torch.tensor([0, 5, 5, 5])), ValueError,
     r"target must differ from each image's label.*images \[0\]"),
    ("sphere-check-0-points", lambda: sphere_check(lambda x: x.flatten(1).sum(1).long(), digits_images,
                                                   digits_images + 0.1, n=0), ValueError,
     r"number of random points must be an int >= 1, got 0"),
    ("sphere-clip-reversed", lambda: sphere_check(lambda x: x.flatten(1).sum(1).long(), digits_images,
                                                  digits_images + 0.1, n=4, clip=(1, 0)), ValueError,
     r"clip must be \(low, high\) with low < high, or None, got \(1, 0\)"),
]

def corrupt_image_folder() -> ImageFolder:
    Path("photos/cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save("photos/cat/a.png")
    Path("photos/cat/b.png").write_bytes(b"\x89PNG truncated")
    return ImageFolder("photos", image_shape=(1, 32, 32))


ROWS += [
    ("examples-k-larger-than-data",
     lambda: DatasetExamples(Problem("digits", ChannelSum("features.4", [0])), Digits(limit=4), k=5),
     ValueError, r"k must be an int in \[1, 4\] \(the size of the data set\), got 5"),
    ("image-folder-corrupt-file", lambda: corrupt_image_folder()[1], ValueError,
     r"ImageFolder: cannot read image '.*b.png' \(item 1; corrupt"),
]

# Rows where jsonargparse refuses the config: one line naming the option (exit code 2 from the command).
PARSER_ROWS = [
    ("cli-yaml-unknown-key", ["--config", "typo.yaml"], r"does not accept option 'trainer.max_step'"),
    ("cli-unknown-param-argument", ["--model.problem.param.init_args.sigma", "1"],
     r"--model.problem.init_args.param: .*'inputopt.PixelImage': Option 'sigma' is not accepted"),
    ("cli-max-steps-null", ["--trainer.max_steps", "null"], r"--trainer.max_steps: expected an int, got 'None'"),
    ("cli-batch-size-text", ["--model.batch_size", "ten"], r"--model.batch_size: expected an int.*got 'ten'"),
]


@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    """A tmp current folder holding configs/ (the CLI's relative run folder is results/ inside it)."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["inputopt"])  # the arguments are main()'s, not pytest's
    return tmp_path


def written(folder: Path) -> list[str]:
    """What a run wrote: anything under results/ (checkpoints, images, results, logs)."""
    results = folder / "results"
    return sorted(str(p.relative_to(folder)) for p in results.rglob("*")) if results.exists() else []


@pytest.mark.parametrize(("make", "error", "message"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_exception(run_folder, make, error, message):
    if issubclass(error, Warning):
        with pytest.warns(error, match=message):
            make()
    else:
        with pytest.raises(error, match=message):
            make()
    assert written(run_folder) == []


@pytest.mark.parametrize(("args", "message"), [row[1:] for row in PARSER_ROWS], ids=[row[0] for row in PARSER_ROWS])
def test_exception_parser(run_folder, capsys, args, message):
    (run_folder / "typo.yaml").write_text("trainer:\n  max_step: 5\n")
    with pytest.raises(CommandLineError, match=message) as info:
        fit(*args)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)  # one line, not the usage
    assert written(run_folder) == []


def test_table_size():
    """The issue's target: at least 40 distinct kinds of bad input, each a row."""
    ids = [row[0] for row in ROWS] + [row[0] for row in PARSER_ROWS]
    assert len(set(ids)) == len(ids) >= 40



def test_layers_refuses_a_zero_image_shape(capsys):
    with pytest.raises(SystemExit) as info:
        main(["layers", "digits", "--image_shape", "0", "0", "0"])
    assert info.value.code == 2
    assert "--image_shape must be three positive ints C H W, got 0 0 0" in capsys.readouterr().err


# -- the command itself: one line naming the option, the value and what is accepted; no usage dump, no traceback
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))  # 10**9 values


def command(capsys, monkeypatch, *argv: str) -> tuple[int, list[str]]:
    """``inputopt ARGV`` as the console script runs it (``main()`` on ``sys.argv``, in-process): its exit code
    and the lines it printed on stderr."""
    monkeypatch.setattr(sys, "argv", ["inputopt", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _atlas_with_corrupt_metrics() -> list[str]:
    Path("atlas/layers/l").mkdir(parents=True)
    Path("atlas/atlas.yaml").write_text("layers: {l: {}}\n")
    Path("atlas/layers/l/layer.json").write_text('{"name": "l", "seeds": [0], "units": []}')
    Path("atlas/layers/l/metrics.json").write_text('{"units": {"0": ')
    return ["atlas", "--config", "configs/digits_atlas.yaml", "--site_only", "--atlas_dir", "atlas"]


FIT = ["fit", "--config", "configs/digits.yaml", "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false"]
# (id, files to write first: name -> bytes, the command, regex on its one line of error)
COMMAND_ROWS = [
    ("max-steps-text", {}, [*FIT, "--trainer.max_steps", "abc"], r"--trainer.max_steps: expected an int, got 'abc'"),
    ("lr-nan", {}, [*FIT, "--model.optimizer.init_args.lr", "nan"],
     r"--model.optimizer.init_args.lr: expected a number, got 'nan'"),
    ("unit-text", {}, [*FIT, "--model.problem.objective.init_args.unit", "foo"],
     r"--model.problem.init_args.objective.init_args.unit: expected an int or a list or 'all', got 'foo'"),
    ("unit-huge", {}, [*FIT, "--model.problem.objective.init_args.unit", "99999999999999999999"],
     r"unit 99999999999999999999 is out of range"),
    ("precision-7", {}, [*FIT, "--trainer.precision", "7"], r"--trainer.precision: expected .*'32-true'.*got '7'"),
    ("precision-64-true", {}, [*FIT, "--trainer.precision", "64-true"],
     r"--trainer.precision '64-true' is not supported.*'32-true'"),
    ("devices-more-than-cores", {}, [*FIT, "--trainer.accelerator", "cpu", "--trainer.devices", "1000"],
     r"--trainer.devices 1000: more processes than this machine's \d+ CPU core"),
    ("attack-devices-more-than-cores", {}, ["attack", "--config", "configs/digits_pgd.yaml", "--trainer.accelerator",
                                            "cpu", "--trainer.devices", "1000"], r"--trainer.devices 1000: more processes"),
    ("config-missing", {}, ["fit", "--config", "missing.yaml"], r"--config 'missing.yaml': no such file"),
    ("config-empty", {"empty.yaml": b""}, ["fit", "--config", "empty.yaml"], r"--config 'empty.yaml' is an empty file"),
    ("config-truncated", {"cut.yaml": b"model:\n  network: [digits\n"}, ["fit", "--config", "cut.yaml"],
     r"--config 'cut.yaml' is not valid YAML at line \d+"),
    ("config-binary", {"bin.yaml": b"PK\x03\x04\x00\x00\xff\xfe"}, ["fit", "--config", "bin.yaml"],
     r"--config 'bin.yaml' is a binary file"),
    ("config-a-list", {"list.yaml": b"- model\n- trainer\n"}, ["fit", "--config", "list.yaml"],
     r"--config 'list.yaml' must hold a mapping of options"),
    ("config-too-large", {"big.yaml": b"# " + b"x" * (5 * 2**20) + b"\n"}, ["fit", "--config", "big.yaml"],
     r"--config 'big.yaml' is \d+ bytes, more than a config holds"),
    ("config-alias-bomb", {"bomb.yaml": BOMB.encode()}, ["fit", "--config", "bomb.yaml"],
     r"--config 'bomb.yaml': the YAML expands to more than \d+ values"),
    ("config-recursive-alias", {"loop.yaml": b"a: &a [1, *a]\n"}, ["fit", "--config", "loop.yaml"],
     r"--config 'loop.yaml': a YAML alias refers to a node that contains it"),
    ("value-alias-bomb", {}, [*FIT, "--model.image_shape", BOMB],
     r"the YAML expands to more than \d+ values"),
    ("atlas-config-alias-bomb", {"bomb.yaml": BOMB.encode()}, ["atlas", "--config", "bomb.yaml"],
     r"--config 'bomb.yaml': the YAML expands"),
    ("state-dict-bare-tensor", {}, [*FIT, "--model.problem.network", "{model: digits, state_dict: bare.pt}"],
     r"state_dict file 'bare.pt' must hold a dict of tensors.*got a tensor of shape \(3,\)"),
    ("output-folder-is-a-file", {"taken": b"a file"}, [*FIT, "--trainer.default_root_dir", "taken/run",
                                                      "--trainer.logger", "false"], r"taken"),
    ("atlas-corrupt-metrics", {}, None, r"cannot read atlas/layers/l/metrics.json \(corrupt or truncated"),
]


@pytest.mark.parametrize(("files", "argv", "message"), [row[1:] for row in COMMAND_ROWS],
                         ids=[row[0] for row in COMMAND_ROWS])
def test_command_error_is_one_line(run_folder, capsys, monkeypatch, files, argv, message):
    import time

    for name, content in files.items():
        Path(name).write_bytes(content)
    torch.save(torch.zeros(3), "bare.pt")
    argv = argv or _atlas_with_corrupt_metrics()
    start = time.perf_counter()
    code, lines = command(capsys, monkeypatch, *argv)
    assert time.perf_counter() - start < 2 or "bomb" not in str(argv)  # refused at once, not expanded
    assert code in (1, 2) and len(lines) == 2, lines  # the error, and where the usage and the traceback are
    assert lines[0].startswith(f"inputopt {argv[0]}: error: ") and re.search(message, lines[0]), lines[0]
    assert "--help shows the options" in lines[1]
    assert written(run_folder) == []


def test_help_still_shows_the_usage(run_folder, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["inputopt", "fit", "--help"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0 and "--trainer.max_steps" in capsys.readouterr().out


def test_debug_keeps_the_traceback(run_folder, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["inputopt", "fit", "--config", "configs/digits.yaml", "--trainer.max_steps",
                                      "abc", "--debug"])
    with pytest.raises(CommandLineError, match="--trainer.max_steps"):
        main()
