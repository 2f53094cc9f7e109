#!/usr/bin/python3
"""check_backbone.py - run a saccade backbone file (saccade-backbone-1, common/backbone_file.h) as a
float network in PyTorch and print the top-5 ImageNet classes of some photos.

A check of `saccade import` without the C forward: torchvision's mobilenet_v2 with every batchnorm
replaced by identity and every conv given the file's (folded) weight and bias. With "padding":
"same" (the TFLite model) each stride-2 conv pads 0 top/left and 1 bottom/right (TensorFlow SAME
on an even input) via F.pad(x, (0, 1, 0, 1)) and a padding-0 conv; stride-1 3x3 convs pad 1 all
round either way. Images are squashed to 224x224 (bilinear), x = (rgb/255 - mean)/std from the
file's metadata.

    /usr/bin/python3 tests/pyref/check_backbone.py BACKBONE.safetensors IMAGE...

The torchvision path (batchnorm folding, tensor names) against torchvision itself:

    check_backbone.py --make-state-dict SD.safetensors   # seeded random mobilenet_v2, random BN stats
    saccade import SD.safetensors -o B.safetensors
    check_backbone.py --state-dict SD.safetensors B.safetensors IMAGE...

runs the original network (eval mode, real BatchNorm2d) and the folded one on each image and
prints the largest logit difference.

Not run by meson (needs python3-torch, python3-torchvision, python3-pil).
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", (name, t["dtype"])
        b, e = t["data_offsets"]
        arr = np.frombuffer(blob[base + b:base + e], dtype="<f4").reshape(t["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


class SamePad(nn.Module):
    """TensorFlow SAME for a stride-2 3x3 conv on an even input: 0 top/left, 1 bottom/right."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        assert x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def build(tensors, meta):
    n_classes = int(meta["n_classes"])
    same = meta["padding"] == "same"
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=n_classes).eval()
    used = set()

    def convert(parent, prefix):
        for name, child in list(parent.named_children()):
            full = f"{prefix}{name}"
            if isinstance(child, nn.Conv2d):
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                 child.padding, groups=child.groups, bias=True)
                conv.weight.data.copy_(tensors[full + ".weight"])
                conv.bias.data.copy_(tensors[full + ".bias"])
                used.update({full + ".weight", full + ".bias"})
                if same and child.stride == (2, 2):
                    conv.padding = (0, 0)
                    setattr(parent, name, SamePad(conv))
                else:
                    setattr(parent, name, conv)
            elif isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
            else:
                convert(child, full + ".")

    convert(net, "")
    net.classifier[1].weight.data.copy_(tensors["classifier.1.weight"])
    net.classifier[1].bias.data.copy_(tensors["classifier.1.bias"])
    used.update({"classifier.1.weight", "classifier.1.bias"})
    assert used == set(tensors), sorted(set(tensors) ^ used)
    return net


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def make_state_dict(path):
    torch.manual_seed(1234)
    net = torchvision.models.mobilenet_v2(weights=None)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.5)
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.05, 2.0)
    write_safetensors(path, net.state_dict())
    print(f"wrote {path}: {len(net.state_dict())} tensors")


def load_state_dict(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        dt = {"F32": "<f4", "I64": "<i8"}[t["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(blob[8 + n + b:8 + n + e], dtype=dt).reshape(t["shape"]).copy())
    return out


def load_image(path, size, mean, std):
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((x - mean) / std).unsqueeze(0)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--make-state-dict":
        make_state_dict(sys.argv[2])
        return
    reference = None
    if len(sys.argv) > 2 and sys.argv[1] == "--state-dict":
        reference = torchvision.models.mobilenet_v2(weights=None)
        reference.load_state_dict(load_state_dict(sys.argv[2]))
        reference.eval()
        del sys.argv[1:3]
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    tensors, meta = read_safetensors(sys.argv[1])
    assert meta["format"] == "saccade-backbone-1", meta.get("format")
    net = build(tensors, meta)
    labels = json.loads(meta["labels"]) or [str(i) for i in range(int(meta["n_classes"]))]
    mean = torch.tensor(json.loads(meta["mean"])).view(3, 1, 1)
    std = torch.tensor(json.loads(meta["std"])).view(3, 1, 1)
    size = int(meta["input_size"])
    print(f"{sys.argv[1]}: {len(tensors)} tensors, padding {meta['padding']}, mean {meta['mean']}, "
          f"std {meta['std']}, source {meta['source']} ({meta['source_sha256'][:12]})")
    for path in sys.argv[2:]:
        x = load_image(path, size, mean, std)
        with torch.no_grad():
            logits = net(x)
            p = torch.softmax(logits, dim=1)[0]
            if reference is not None:
                ref = reference(x)
                diff = (logits - ref).abs().max().item()
                print(f"{path}: folded vs torchvision (BatchNorm2d, eval): max |logit difference| {diff:.3g}, "
                      f"max |logit| {ref.abs().max().item():.3g}, same top-1: {logits.argmax().item() == ref.argmax().item()}")
        top = torch.topk(p, 5)
        print(path + ": " + ", ".join(f"{labels[i]} {v:.3f}" for v, i in zip(top.values.tolist(), top.indices.tolist())))


if __name__ == "__main__":
    main()
