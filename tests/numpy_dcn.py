"""Modulated deformable convolution (DCNv2) in plain NumPy, float64.

An independent check of the Paddle and torchvision kernels: both are compiled code whose
offset layout and border rules are easy to get wrong and hard to read, so the tests
compare them with this short, readable version. Layout (the DCNv2 / torchvision one):
offset channel ``2k`` is dy and ``2k + 1`` is dx of kernel tap ``k = i * kw + j``;
mask channel ``k`` scales tap ``k``. A sample counts only where ``-1 < y < H`` and
``-1 < x < W``; its bilinear corners outside the image read 0. One deformable group,
``groups=1``.
"""
import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _bilinear(x, y, xs):
    """Sample ``x`` (N, C, H, W) at float positions ``y``, ``xs`` (N, Ho, Wo): (N, C, Ho, Wo)."""
    n, _, h, w = x.shape
    inside = (y > -1) & (y < h) & (xs > -1) & (xs < w)
    y0, x0 = np.floor(y).astype(np.int64), np.floor(xs).astype(np.int64)
    ly, lx = y - y0, xs - x0
    batch = np.arange(n)[:, None, None]
    out = 0.0
    for yc, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xc, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            ok = inside & (yc >= 0) & (yc < h) & (xc >= 0) & (xc < w)
            corner = x[batch, :, np.clip(yc, 0, h - 1), np.clip(xc, 0, w - 1)]  # N, Ho, Wo, C
            out = out + corner * (wy * wx * ok)[..., None]
    return out.transpose(0, 3, 1, 2)


def modulated_deform_conv2d(x, offset, mask, weight, bias=None, stride=1, padding=1, dilation=1):
    """DCNv2 forward: x (N, C, H, W), offset (N, 2*kh*kw, Ho, Wo), mask (N, kh*kw, Ho, Wo),
    weight (Cout, C, kh, kw), bias (Cout,) or None. Returns (N, Cout, Ho, Wo) float64."""
    x, offset, mask, weight = (np.asarray(a, np.float64) for a in (x, offset, mask, weight))
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    assert cin == c, 'groups=1 only'
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    assert offset.shape == (n, 2 * kh * kw, ho, wo) and mask.shape == (n, kh * kw, ho, wo)
    base_y = (np.arange(ho) * sh - ph)[:, None]
    base_x = (np.arange(wo) * sw - pw)[None, :]
    columns = np.empty((n, c, kh * kw, ho, wo))
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        y = base_y + i * dh + offset[:, 2 * k]
        xs = base_x + j * dw + offset[:, 2 * k + 1]
        columns[:, :, k] = _bilinear(x, y, xs) * mask[:, k][:, None]
    out = np.einsum('nckhw,ock->nohw', columns, weight.reshape(cout, c, kh * kw))
    if bias is not None:
        out = out + np.asarray(bias, np.float64)[None, :, None, None]
    return out
