"""A small vision transformer for the digits (``digits_vit``): the trained transformer of the zoo.

Pre-norm blocks, a class token, learned position embeddings, patches of 4×4 pixels on the 1×32×32 digits
of :func:`~inputopt.zoo.digits.load_digits_split` (an 8×8 patch grid). Every layer's layout is declared
(:meth:`DigitsViT.inputopt_layouts`): the blocks give ``(B, 65, D)`` tokens (the class token, then the
64 patch tokens in row-major order), and each attention module exposes its heads' outputs side by side
before the projection (``blocks.<i>.attn.heads``), for :class:`~inputopt.objectives.AttentionHead`.
The training script is ``python -m inputopt.zoo.train_digits_vit``.

Example:
    >>> from inputopt.zoo.vit import digits_vit
    >>> from inputopt.zoo.digits import load_digits_split
    >>> model = digits_vit()  # pretrained, eval mode
    >>> images, labels = load_digits_split("test")
    >>> accuracy = (model(images).argmax(1) == labels).float().mean()
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inputopt.layouts import Layout

__all__ = ["DigitsViT", "digits_vit", "vit_weights_path"]

_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_vit.pt"


class Attention(nn.Module):
    """Multi-head self-attention whose heads' outputs pass through ``heads`` (an identity) before ``proj``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.heads = nn.Identity()  # (B, N, dim): head h is features h*dim/num_heads .. (h+1)*dim/num_heads - 1
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(self.heads(out.transpose(1, 2).reshape(batch, tokens, dim)))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DigitsViT(nn.Module):
    """A small ViT: patch embedding (a strided convolution), a class token, pre-norm blocks, a linear head
    on the class token.

    Layer names and outputs (per sample, defaults): ``patch_embed`` ``(D, 8, 8)`` channels first;
    ``blocks.<i>``, ``blocks.<i>.mlp.<j>``, ``blocks.<i>.attn``, ``norm``: ``(65, D)`` tokens (1 special,
    an 8×8 patch grid); ``blocks.<i>.attn.heads``: the same, its features ``num_heads`` heads side by side;
    ``head``: ``(num_classes,)`` logits.

    Args:
        in_chans: image channels.
        image_size: image side in pixels.
        patch: patch side in pixels.
        dim: token width ``D``.
        depth: number of blocks.
        num_heads: attention heads per block.
        num_classes: logits.

    Example:
        >>> model = DigitsViT(dim=16, depth=1, num_heads=2).eval()
        >>> model(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_chans: int = 1, image_size: int = 32, patch: int = 4, dim: int = 64, depth: int = 4,
                 num_heads: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} must be a multiple of patch {patch}")
        self.patch = patch
        self.num_heads = num_heads
        self.patch_embed = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (image_size // patch) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])

    def inputopt_layouts(self) -> dict[str, Layout]:
        """The layouts of its layers (names relative to the model), read by :func:`inputopt.layouts.declared_layouts`."""
        tokens = Layout("tokens", special=1, patch=(self.patch, self.patch))
        found = {f"blocks.{name}" if name else "blocks": tokens for name, _ in self.blocks.named_modules()}
        found["norm"] = tokens
        for index in range(len(self.blocks)):
            found[f"blocks.{index}.attn.heads"] = Layout("tokens", special=1, patch=(self.patch, self.patch),
                                                         heads=self.num_heads)
        return found


def vit_weights_path() -> Path:
    """The shipped weights of ``digits_vit``."""
    return _WEIGHTS


def digits_vit(pretrained: bool = True) -> DigitsViT:
    """The digits ViT in eval mode, with its shipped weights (``pretrained``) or random ones.

    Example:
        >>> digits_vit(pretrained=False).training
        False
    """
    model = DigitsViT()
    if pretrained:
        if not _WEIGHTS.is_file():
            raise FileNotFoundError(f"the digits_vit weights {_WEIGHTS} are missing: python -m "
                                    f"inputopt.zoo.train_digits_vit writes them")
        model.load_state_dict(torch.load(_WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()
