#!/usr/bin/python3
"""
make_mnv2_ref.py - PyTorch reference for saccade's MobileNetV2 forward (encoder/mobilenet.c).

torchvision.models.mobilenet_v2() in eval mode, float64, with every BatchNorm made the identity
plus the folded conv bias (weight 1, running mean 0, running var 1, eps 0, bias = the folded bias),
so its convolutions are exactly those of a batchnorm-folded backbone file. The weights are not
stored: tensor t of the spec order (encoder/mobilenet.h, mobilenet_specs: features.0.0.weight,
features.0.0.bias, features.1.conv.0.0.weight, ...), element i (row-major, torch layout) is

    x = (i * 0x9E3779B1 + (t + 1) * 0x85EBCA77) mod 2^32, then the murmur3 finaliser:
    x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16  (mod 2^32)
    u = (x >> 8) / 2^24                                  in [0, 1)
    value = float32(a_t * (2u - 1)),  computed in double then rounded once to float32
    a_t = sqrt(6 / fan_in) for a conv followed by ReLU6, sqrt(3 / fan_in) for a linear one
          (the projections features.N.conv.2 / features.1.conv.1 and classifier.1), 0.2 for biases

which tests/test_mobilenet.c computes the same way (so activations stay of order 1 through all
52 layers). Two paddings: symmetric (torchvision as is) and SAME (TensorFlow: before every
stride-2 3x3 conv, F.pad by total = max((out - 1) * 2 + 3 - in, 0) split left = total // 2,
right = the rest, then the conv with padding 0).

Writes two files (float32; the reference is computed in float64 from the float32 inputs):
  tests/data/mnv2_ref.safetensors     side 64, 2 images (uniform in [-1, 1], stored as "images"),
      for pad in (same, symmetric): {pad}.grid14 (2, 16, 576), {pad}.grid7 (2, 4, 1280),
      {pad}.logits (2, 1001)
  tests/data/mnv2_ref224.safetensors  side 224, 1 image (not stored: the same formula with t = 1000
      and a = 1), SAME padding: same.grid7 (1, 49, 1280), same.logits (1, 1001)
Run by hand when the forward changes (meson test never needs Python):
    /usr/bin/python3 tests/pyref/make_mnv2_ref.py tests/data
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

torch.set_default_dtype(torch.float64)
N_CLASSES = 1001
IMAGE_TENSOR = 1000  # formula index of the 224 test image


def formula(t, n, a):
    i = np.arange(n, dtype=np.uint64)
    x = (i * np.uint64(0x9E3779B1) + np.uint64((t + 1) * 0x85EBCA77)) & np.uint64(0xFFFFFFFF)
    m = np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & m
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & m
    x ^= x >> np.uint64(16)
    u = (x >> np.uint64(8)).astype(np.float64) / float(1 << 24)
    return (a * (2.0 * u - 1.0)).astype(np.float32)


def is_linear(name):
    return name.startswith("classifier") or name.endswith("conv.2.weight") or name == "features.1.conv.1.weight"


def scale(name, shape):
    if name.endswith("bias"):
        return 0.2
    fan_in = int(np.prod(shape[1:]))
    return float(np.sqrt((3.0 if is_linear(name) else 6.0) / fan_in))


def specs():
    """(name, shape) in mobilenet_specs order for the classify config."""
    out = []

    def conv(name, cout, cin, k):
        out.append((name + ".weight", (cout, cin, k, k)))
        out.append((name + ".bias", (cout,)))

    conv("features.0.0", 32, 3, 3)
    conv("features.1.conv.0.0", 32, 1, 3)
    conv("features.1.conv.1", 16, 32, 1)
    cin, n = 16, 2
    for t, c, reps, s in [(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for _ in range(reps):
            hid = cin * t
            conv("features.%d.conv.0.0" % n, hid, cin, 1)
            conv("features.%d.conv.1.0" % n, hid, 1, 3)
            conv("features.%d.conv.2" % n, c, hid, 1)
            cin, n = c, n + 1
    conv("features.18.0", 1280, 320, 1)
    out.append(("classifier.1.weight", (N_CLASSES, 1280)))
    out.append(("classifier.1.bias", (N_CLASSES,)))
    return out


class SamePad(nn.Module):
    """TensorFlow SAME padding for a 3x3 stride-2 conv (run with padding 0)."""

    def forward(self, x):
        def split(n):
            out = (n + 1) // 2
            total = max((out - 1) * 2 + 3 - n, 0)
            return total // 2, total - total // 2

        t, b = split(x.shape[2])
        l, r = split(x.shape[3])
        return F.pad(x, (l, r, t, b))


def build(same):
    net = torchvision.models.mobilenet_v2(num_classes=N_CLASSES).double().eval()
    sd = net.state_dict()
    new = {}
    for t, (name, shape) in enumerate(specs()):
        v = torch.from_numpy(formula(t, int(np.prod(shape)), scale(name, shape)).astype(np.float64)).reshape(shape)
        if name.endswith(".bias") and name not in sd:  # conv bias -> the following BatchNorm's bias
            conv = name[: -len(".bias")]
            parts = conv.split(".")
            bn = ".".join(parts[:-1] + [str(int(parts[-1]) + 1)])
            new[bn + ".bias"] = v
            new[bn + ".weight"] = torch.ones(shape)
            new[bn + ".running_mean"] = torch.zeros(shape)
            new[bn + ".running_var"] = torch.ones(shape)
        else:
            assert tuple(sd[name].shape) == tuple(shape), (name, sd[name].shape, shape)
            new[name] = v
    missing = [k for k in sd if k not in new and not k.endswith("num_batches_tracked")]
    assert not missing, missing
    net.load_state_dict(new, strict=False)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.0
    if same:
        for parent in list(net.modules()):
            for key, m in list(parent.named_children()):
                if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                    assert m.kernel_size == (3, 3)
                    m.padding = (0, 0)
                    setattr(parent, key, nn.Sequential(SamePad(), m))
    return net


def outputs(net, x):
    with torch.no_grad():
        f = net.features
        g14 = nn.Sequential(*f[:14], f[14].conv[0])(x)
        g7 = f(x)
        logits = net(x)
    grid = lambda y: y.flatten(2).transpose(1, 2).contiguous()
    return grid(g14), grid(g7), logits


def write(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fo:
        fo.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def stats(tag, *ts):
    print(tag, " ".join("[%.3g, %.3g] rms %.3g" % (t.min(), t.max(), t.pow(2).mean().sqrt()) for t in ts))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    meta = {"generator": "tests/pyref/make_mnv2_ref.py", "torchvision": torchvision.__version__}
    nets = {"same": build(True), "symmetric": build(False)}

    rng = np.random.default_rng(20261130)
    images = rng.uniform(-1.0, 1.0, size=(2, 3, 64, 64)).astype(np.float32)
    x = torch.from_numpy(images.astype(np.float64))
    t = {"images": images}
    for pad, net in nets.items():
        g14, g7, logits = outputs(net, x)
        stats("64 " + pad, g14, g7, logits)
        t[pad + ".grid14"], t[pad + ".grid7"], t[pad + ".logits"] = g14.numpy(), g7.numpy(), logits.numpy()
    write(os.path.join(out_dir, "mnv2_ref.safetensors"), t, meta)

    img = formula(IMAGE_TENSOR, 3 * 224 * 224, 1.0).reshape(1, 3, 224, 224)
    _, g7, logits = outputs(nets["same"], torch.from_numpy(img.astype(np.float64)))
    stats("224 same", g7, logits)
    write(os.path.join(out_dir, "mnv2_ref224.safetensors"), {"same.grid7": g7.numpy(), "same.logits": logits.numpy()},
          meta)


if __name__ == "__main__":
    main()
