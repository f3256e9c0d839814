"""The TF-ported Inception-v3 of pytorch-fid (``FIDInceptionA/C/E_1/E_2``), built from torchvision.

The FID network differs from torchvision's Inception-v3 in its pooling branches (the TF graph
the weights come from): average pooling without counting the zero padding in the A, C and first
E blocks, and max pooling in the last E block; 1008 output classes, no auxiliary head.  Layer
names are torchvision's, so the state_dict that pytorch-fid downloads
(``pt_inception-2015-12-05-6726825d.pth``) loads with ``strict=True``.  ``pool3`` returns the
2048-d average-pooled features; ``fc.weight`` gives the 1008-way logits without bias.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE


def _avg_pool_no_pad(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class FIDInceptionA(InceptionA):
    def _forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_no_pad(x))]


class FIDInceptionC(InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_no_pad(x))]


class FIDInceptionE(InceptionE):
    """E block; ``max_pool=False`` is pytorch-fid's FIDInceptionE_1, ``True`` its E_2."""

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x):
        a = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = _max_pool(x) if self.max_pool else _avg_pool_no_pad(x)
        return [self.branch1x1(x), b3, bd, self.branch_pool(pooled)]


TRUNK = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
         "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
         "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")


class FIDInceptionV3(Inception3):
    """pytorch-fid's ``fid_inception_v3()`` architecture (randomly initialised until loaded)."""

    def __init__(self):
        super().__init__(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            setattr(self, name, FIDInceptionC(768, channels_7x7=c7))
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 299 x 299 inputs scaled to [-1, 1] -> N x 2048 pool3 features."""
        for name in TRUNK:
            x = getattr(self, name)(x)
        return torch.flatten(x, 1)
