#!/usr/bin/python3
"""
make_model_ref.py - PyTorch reference for saccade's whole model (encoder + attention + decoder).

Builds the same tiny model as tests/test_model.c in PyTorch (Debian's python3-torch), runs one
training forward/backward on fixed inputs, and writes everything the C test compares into
tests/data/model_ref.safetensors: inputs, parameters (saccade's tensor names), the loss, its
cross-entropy and penalty parts, the attention weights, every parameter gradient and the
batchnorm running statistics after the forward.

Run by hand when the model changes (meson test never needs Python):
    /usr/bin/python3 tests/pyref/make_model_ref.py tests/data/model_ref.safetensors

Semantics (what saccade implements, see decoder/decoder.h): a caption of n words runs n + 1
steps; the loss is mean CE over the target tokens + lambda * mean over captions of
sum_p (1 - sum_t alpha_tp)^2, both over each caption's own steps. BatchNorm in training mode.
No dropout (its random mask cannot be shared between the two implementations).
"""
import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)  # the reference is computed in double

S = 16
CONV = [(4, 2, False), (6, 1, True), (8, 1, False)]  # (out, stride, pool)
E, A, D, M, V, T = 8, 5, 6, 4, 9, 5
LAMBDA = 0.8
B_IMG = 2
CAPS = [  # (image, words); ids 4..8 are words, 1 <start>, 2 <end>
    (0, [4, 5, 6]),
    (1, [7, 8, 4, 5]),
    (1, [6]),
]

config = dict(image_size=S, batchnorm=True,
              conv=[dict(out=o, stride=s, pool=p) for o, s, p in CONV],
              E=E, A=A, D=D, M=M, V=V, T=T, dropout=0.0, lambda_=LAMBDA)
config["lambda"] = config.pop("lambda_")


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs, self.bns, cin = nn.ModuleList(), nn.ModuleList(), 3
        for o, s, p in CONV:
            self.convs.append(nn.Conv2d(cin, o, 3, stride=s, padding=1, bias=False))
            self.bns.append(nn.BatchNorm2d(o))
            cin = o

    def forward(self, x):
        for (o, s, p), conv, bn in zip(CONV, self.convs, self.bns):
            x = F.relu(bn(conv(x)))
            if p:
                x = F.max_pool2d(x, 2)
        return x.flatten(2).transpose(1, 2)  # (B, P, E), p = y * W + x


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, M)
        self.encoder_att = nn.Linear(E, A)
        self.decoder_att = nn.Linear(D, A)
        self.full_att = nn.Linear(A, 1)
        self.init_h = nn.Linear(E, D)
        self.init_c = nn.Linear(E, D)
        self.f_beta = nn.Linear(D, E)
        self.lstm = nn.LSTMCell(M + E, D)
        self.fc = nn.Linear(D, V)


enc, dec = Encoder(), Decoder()
with torch.no_grad():  # non-trivial batchnorm affine parameters
    for bn in enc.bns:
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    for p in dec.parameters():
        p.uniform_(-0.5, 0.5)

images = torch.rand(B_IMG, 3, S, S) * 2 - 1
feats = enc(images)  # training-mode batchnorm
P = feats.size(1)
att1 = dec.encoder_att(feats)
ce_sum, n_tok, pen = 0.0, 0, 0.0
alphas = torch.zeros(len(CAPS), T, P)
tokens = torch.zeros(len(CAPS), T + 1, dtype=torch.int32)
lens = torch.zeros(len(CAPS), dtype=torch.int32)
imgs = torch.zeros(len(CAPS), dtype=torch.int32)
for b, (i, words) in enumerate(CAPS):
    seq = [1] + words + [2]
    L = len(words) + 1
    tokens[b, :len(seq)] = torch.tensor(seq, dtype=torch.int32)
    lens[b], imgs[b] = L, i
    f, a1 = feats[i:i + 1], att1[i:i + 1]
    mean = f.mean(1)
    h, c = dec.init_h(mean), dec.init_c(mean)
    asum = torch.zeros(1, P)
    for t in range(L):
        e = dec.full_att(torch.tanh(a1 + dec.decoder_att(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(e, 1)
        z = torch.bmm(alpha.unsqueeze(1), f).squeeze(1)
        z = torch.sigmoid(dec.f_beta(h)) * z
        x = torch.cat([dec.embed(torch.tensor([seq[t]])), z], 1)
        h, c = dec.lstm(x, (h, c))
        logits = dec.fc(h)
        ce_sum = ce_sum + F.cross_entropy(logits, torch.tensor([seq[t + 1]]), reduction="sum")
        n_tok += 1
        asum = asum + alpha
        alphas[b, t] = alpha[0].detach()
    pen = pen + ((1 - asum) ** 2).sum()
ce = ce_sum / n_tok
penalty = pen / len(CAPS)
loss = ce + LAMBDA * penalty
loss.backward()
print(f"loss {loss.item():.10f}  ce {ce.item():.10f}  penalty {penalty.item():.10f}  P={P}")

# ---- saccade's names
named = {}
for k, (conv, bn) in enumerate(zip(enc.convs, enc.bns), 1):
    named[f"encoder.conv{k}.weight"] = conv.weight
    named[f"encoder.bn{k}.weight"] = bn.weight
    named[f"encoder.bn{k}.bias"] = bn.bias
for n, p in dec.named_parameters():
    named["decoder." + n.replace("lstm.weight_ih", "lstm.weight_ih")] = p

out = {}
for n, p in named.items():
    out["param." + n] = p.detach()
    out["grad." + n] = p.grad.detach()
for k, bn in enumerate(enc.bns, 1):  # before the forward: torch's defaults
    out[f"param.encoder.bn{k}.running_mean"] = torch.zeros_like(bn.running_mean)
    out[f"param.encoder.bn{k}.running_var"] = torch.ones_like(bn.running_var)
    out[f"after.encoder.bn{k}.running_mean"] = bn.running_mean.detach()
    out[f"after.encoder.bn{k}.running_var"] = bn.running_var.detach()
out["input.images"] = images
out["input.tokens"] = tokens
out["input.lens"] = lens
out["input.img"] = imgs
out["output.loss"] = loss.detach().reshape(1)
out["output.ce"] = ce.detach().reshape(1)
out["output.penalty"] = penalty.detach().reshape(1)
out["output.alphas"] = alphas
out["output.feats"] = feats.detach()


def write_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype == torch.int32:
            dt, raw = "I32", t.numpy().astype("<i4").tobytes()
        else:
            dt, raw = "F32", t.to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)))
        fh.write(h)
        for b in blobs:
            fh.write(b)


write_safetensors(sys.argv[1] if len(sys.argv) > 1 else "model_ref.safetensors", out,
                  {"config": json.dumps(config), "torch": torch.__version__,
                   "generator": "tests/pyref/make_model_ref.py"})
