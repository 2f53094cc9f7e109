#!/usr/bin/python3
"""
make_encoder_ref.py - PyTorch reference for saccade's convolutional encoder (encoder/encoder.c).

Builds the tiny encoder tests/test_encoder.c builds (16x16 RGB input; conv3x3 4 ch stride 2,
conv3x3 6 ch + maxpool 2, conv3x3 8 ch -> 4x4 grid, E = 8), once with BatchNorm2d after every
conv (convs without bias) and once without (convs with bias), as
torch.nn.Sequential(Conv2d, [BatchNorm2d], ReLU, [MaxPool2d(2)]) per layer, and writes into
tests/data/encoder_ref.safetensors, per variant ("bn." / "plain."):
    images (B,3,S,S), every parameter and buffer before the step (conv{i}.weight, conv{i}.bias,
    bn{i}.weight, bn{i}.bias, bn{i}.running_mean, bn{i}.running_var), feats (B,P,E) of one
    training-mode forward, dfeats (B,P,E), grad.<param> = dL/dparam for L = sum(feats * dfeats),
    bn{i}.running_mean_after / running_var_after (after that forward), and feats_eval (B,P,E)
    of an eval-mode forward with the updated running statistics.
Computed in float64, stored as F32 (so the C test measures saccade's float error alone).

Run by hand when the encoder changes (meson test never needs Python):
    /usr/bin/python3 tests/pyref/make_encoder_ref.py tests/data/encoder_ref.safetensors
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

torch.set_default_dtype(torch.float64)

S = 16
B = 3
CONV = [(4, 2, False), (6, 1, True), (8, 1, False)]  # (out channels, stride, pool)


def build(bn, seed):
    torch.manual_seed(seed)
    layers, cin = [], 3
    for cout, stride, pool in CONV:
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not bn)
        with torch.no_grad():  # larger than torch's default init, so every path carries signal
            conv.weight.normal_(0.0, 0.5)
            if conv.bias is not None:
                conv.bias.uniform_(-0.3, 0.3)
        layers.append(conv)
        if bn:
            norm = nn.BatchNorm2d(cout)  # eps 1e-5, momentum 0.1
            with torch.no_grad():  # non-default affine parameters and running statistics
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.3, 0.3)
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
            layers.append(norm)
        layers.append(nn.ReLU())
        if pool:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(*layers)


def named_tensors(net, bn):
    """saccade-side names -> tensors, in layer order."""
    out, i = {}, 0
    for m in net:
        if isinstance(m, nn.Conv2d):
            i += 1
            out[f"conv{i}.weight"] = m.weight
            if m.bias is not None:
                out[f"conv{i}.bias"] = m.bias
        elif isinstance(m, nn.BatchNorm2d):
            out[f"bn{i}.weight"] = m.weight
            out[f"bn{i}.bias"] = m.bias
            out[f"bn{i}.running_mean"] = m.running_mean
            out[f"bn{i}.running_var"] = m.running_var
    return out


def to_grid(f):
    return f.flatten(2).transpose(1, 2).contiguous()  # (B, C, H, W) -> (B, P, E), p = y * W + x


def variant(prefix, bn, seed, tensors):
    net = build(bn, seed)
    g = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(B, 3, S, S, generator=g).float().double()
    named = named_tensors(net, bn)
    with torch.no_grad():  # the C side gets these rounded to float: compute from the same values
        for v in named.values():
            v.copy_(v.float().double())
    for k, v in named.items():
        tensors[f"{prefix}.{k}"] = v.detach().clone()
    net.train()
    feats = to_grid(net(images))
    dfeats = torch.randn(feats.shape, generator=g).float().double()
    (feats * dfeats).sum().backward()
    tensors[f"{prefix}.images"] = images
    tensors[f"{prefix}.feats"] = feats.detach()
    tensors[f"{prefix}.dfeats"] = dfeats
    for k, v in named.items():
        if v.grad is not None:
            tensors[f"{prefix}.grad.{k}"] = v.grad.detach().clone()
        elif "running" in k:
            tensors[f"{prefix}.{k}_after"] = v.detach().clone()
    net.eval()
    with torch.no_grad():
        tensors[f"{prefix}.feats_eval"] = to_grid(net(images))


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the spec allows trailing spaces; keeps the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/encoder_ref.safetensors"
    tensors = {}
    variant("bn", True, 7, tensors)
    variant("plain", False, 11, tensors)
    meta = {"image_size": str(S), "batch": str(B),
            "conv": ",".join(f"{o}s{s}{'p' if p else ''}" for o, s, p in CONV),
            "generator": "tests/pyref/make_encoder_ref.py, torch " + torch.__version__ + ", float64"}
    write_safetensors(path, tensors, meta)
    print(f"wrote {len(tensors)} tensors to {path}")


if __name__ == "__main__":
    main()
