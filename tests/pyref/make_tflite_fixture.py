#!/usr/bin/python3
"""make_tflite_fixture.py - write tests/data/tiny.tflite, a small valid TFLite flatbuffer built by
hand with the struct module, and tests/data/tiny_tflite.json, every value the script wrote (what
test_tflite.c checks the reader against) plus the byte positions of a few fields that the test
patches to make broken files.

The graph has the op kinds of Google's quantized MobileNetV2 (schema tensorflow/lite/schema/
schema.fbs, version 3), uint8 weights, int32 biases, per-tensor quantization:

  input  uint8 [1,4,4,3] -> CONV_2D 3x3/2 SAME ReLU6 (weights [4,3,3,3], bias [4]) -> [1,2,2,4]
         -> DEPTHWISE_CONV_2D 3x3/1 SAME ReLU6 (weights [1,3,3,4], bias [4]) -> [1,2,2,4]
         -> ADD (conv output + depthwise output) -> AVERAGE_POOL_2D 2x2/2 VALID -> [1,1,1,4]
         -> RESHAPE (shape tensor [1,4]) -> SOFTMAX (beta 1) -> [1,4]

plus two tensors no operator uses: an int8 tensor with per-channel scales along dimension 0 and
a float variable. The operator codes use every encoding schema.fbs allows: the int8
deprecated_builtin_code alone (old files), the int32 builtin_code alone, both, neither (ADD = 0
by default), and an extended code (deprecated 127 = PLACEHOLDER_FOR_GREATER_OP_CODES, builtin 150)
plus a custom code string. Defaults are exercised by leaving fields out (padding SAME = 0,
dilation 1, version 1).

Weight bytes: conv q[i] = (7 i + 3) mod 256, depthwise q[i] = (11 i + 5) mod 256 (i = row-major
index in the stored OHWI / [1,kh,kw,C] layout); biases are listed below.

Layout, as flatc's output is: the root uoffset, the identifier "TFL3", then tables, vectors and
strings, each child after its parent (uoffsets are unsigned), vtables just before their table and
shared between identical tables, vectors aligned to their element size (buffers to 16). The
model description is written last, so that every truncation cuts a byte the reader needs.

    /usr/bin/python3 tests/pyref/make_tflite_fixture.py [OUTDIR]   (default tests/data)
"""
import json
import os
import struct
import sys

# ---- a forward flatbuffer writer -------------------------------------------------------------

SIZES = {"u8": 1, "i8": 1, "bool": 1, "i32": 4, "u32": 4, "f32": 4, "i64": 8, "u64": 8}
FMT = {"u8": "<B", "i8": "<b", "bool": "<B", "i32": "<i", "u32": "<I", "f32": "<f", "i64": "<q", "u64": "<Q"}


class Table:
    def __init__(self, fields, key=None, last=False):
        self.fields = fields  # {id: (kind, value)}; kind "ref" -> value is an object
        self.key = key
        self.last = last


class Vec:
    def __init__(self, kind, values, key=None, align=None, last=False):
        self.kind, self.values, self.key, self.align, self.last = kind, values, key, align, last


class Str:
    def __init__(self, text, key=None, last=False):
        self.text, self.key, self.last = text, key, last


class Writer:
    def __init__(self):
        self.buf = bytearray()
        self.pos = {}        # key -> position of the object (table: its soffset; vector: its length)
        self.field_pos = {}  # (key, id) -> position of a table field
        self.vtables = {}    # vtable bytes -> position
        self.queue = []      # (object, position of the uoffset that points to it)

    def align(self, n):
        while len(self.buf) % n:
            self.buf.append(0)

    def ref(self, obj, at):
        self.queue.append((obj, at))

    def patch(self, at, target):
        assert target > at
        struct.pack_into("<I", self.buf, at, target - at)

    def table(self, t):
        ids = sorted(t.fields)
        # layout: soffset, then 8-, 4-, 1-byte fields (refs are 4 bytes)
        width = {i: 4 if t.fields[i][0] == "ref" else SIZES[t.fields[i][0]] for i in ids}
        order = sorted(ids, key=lambda i: -width[i])
        off, offsets = 4, {}
        for i in order:
            while off % width[i]:
                off += 1
            offsets[i] = off
            off += width[i]
        size = (off + 3) // 4 * 4
        n_slots = (max(ids) + 1) if ids else 0
        vt = struct.pack("<HH", 4 + 2 * n_slots, size)
        for i in range(n_slots):
            vt += struct.pack("<H", offsets.get(i, 0))
        if vt in self.vtables:
            vt_pos = self.vtables[vt]
        else:
            self.align(2)
            vt_pos = len(self.buf)
            self.buf += vt
            self.vtables[vt] = vt_pos
        self.align(8)
        start = len(self.buf)
        self.buf += bytes(size)
        struct.pack_into("<i", self.buf, start, start - vt_pos)
        for i in ids:
            kind, value = t.fields[i]
            at = start + offsets[i]
            if t.key:
                self.field_pos[(t.key, i)] = at
            if kind == "ref":
                self.ref(value, at)
            else:
                struct.pack_into(FMT[kind], self.buf, at, value)
        return start

    def vector(self, v):
        es = 4 if v.kind == "ref" else SIZES[v.kind]
        a = max(4, es, v.align or 1)
        self.align(a)
        while (len(self.buf) + 4) % a:
            self.buf.append(0)
        start = len(self.buf)
        self.buf += struct.pack("<I", len(v.values))
        for x in v.values:
            if v.kind == "ref":
                self.ref(x, len(self.buf))
                self.buf += bytes(4)
            else:
                self.buf += struct.pack(FMT[v.kind], x)
        return start

    def string(self, s):
        self.align(4)
        start = len(self.buf)
        data = s.text.encode()
        self.buf += struct.pack("<I", len(data)) + data + b"\0"
        return start

    def emit(self, obj):
        if isinstance(obj, Table):
            p = self.table(obj)
        elif isinstance(obj, Vec):
            p = self.vector(obj)
        else:
            p = self.string(obj)
        if obj.key:
            self.pos[obj.key] = p
        return p

    def finish(self, root, ident):
        self.buf += bytes(4) + ident
        self.ref(root, 0)
        late = []
        while self.queue or late:
            if not self.queue:
                self.queue, late = late, []
            obj, at = self.queue.pop(0)
            if obj.last and self.queue:
                late.append((obj, at))
                continue
            self.patch(at, self.emit(obj))
        return bytes(self.buf)


# ---- the model -------------------------------------------------------------------------------

UINT8, INT32, FLOAT32, INT8 = 3, 2, 0, 9
SAME, VALID = 0, 1
NONE, RELU6 = 0, 3


def quant(scales, zps=None, qdim=None, lo=None, hi=None):
    f = {2: ("ref", Vec("f32", scales))}
    if zps is not None:
        f[3] = ("ref", Vec("i64", zps))
    if qdim is not None:
        f[6] = ("i32", qdim)
    if lo is not None:
        f[0] = ("ref", Vec("f32", lo))
        f[1] = ("ref", Vec("f32", hi))
    return f


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data")
    conv_w = [(7 * i + 3) % 256 for i in range(4 * 3 * 3 * 3)]
    dw_w = [(11 * i + 5) % 256 for i in range(1 * 3 * 3 * 4)]
    conv_b = [1000, -2000, 30000, -7]
    dw_b = [-5, 123456, 0, -99999]
    perchannel = [1, -2, 3, -4, 5, -6]
    variable = [0.0, 0.0]
    in_s, conv_ws, act_s, dw_ws = 1 / 128, 0.02, 0.0235, 0.3
    buffers = [
        None,
        bytes(conv_w),
        struct.pack("<4i", *conv_b),
        bytes(dw_w),
        struct.pack("<4i", *dw_b),
        struct.pack("<2i", 1, 4),
        struct.pack("<6b", *perchannel),
        struct.pack("<2f", *variable),
    ]
    # name, type, shape, buffer, quantization (scales, zero points, qdim, min, max) or None, is_variable
    tensors = [
        ("input", UINT8, [1, 4, 4, 3], 0, ([in_s], [128], None, [-1.0], [f32(127 / 128)]), 0),
        ("conv/weights", UINT8, [4, 3, 3, 3], 1, ([conv_ws], [120], None, [-2.4], [2.7]), 0),
        ("conv/bias", INT32, [4], 2, ([f32(f32(in_s) * f32(conv_ws))], [0], None, None, None), 0),
        ("conv/Relu6", UINT8, [1, 2, 2, 4], 0, ([act_s], [0], None, None, None), 0),
        ("dw/weights", UINT8, [1, 3, 3, 4], 3, ([dw_ws], [140], None, None, None), 0),
        ("dw/bias", INT32, [4], 4, ([f32(f32(act_s) * f32(dw_ws))], [0], None, None, None), 0),
        ("dw/Relu6", UINT8, [1, 2, 2, 4], 0, ([act_s], [0], None, None, None), 0),
        ("add", UINT8, [1, 2, 2, 4], 0, ([0.05], [0], None, None, None), 0),
        ("pool", UINT8, [1, 1, 1, 4], 0, ([0.05], [0], None, None, None), 0),
        ("reshape/shape", INT32, [2], 5, None, 0),
        ("reshape", UINT8, [1, 4], 0, ([0.05], [0], None, None, None), 0),
        ("softmax", UINT8, [1, 4], 0, ([1 / 256], [0], None, None, None), 0),
        ("perchannel", INT8, [2, 3], 6, ([0.5, 0.25], [0, -1], 0, None, None), 0),
        ("variable", FLOAT32, [2], 7, None, 1),
    ]
    # deprecated_builtin_code, custom_code, version, builtin_code (None = field left out)
    opcodes = [
        (3, None, None, None),       # CONV_2D, old style
        (4, None, 2, 4),             # DEPTHWISE_CONV_2D, both fields, version 2
        (None, None, None, None),    # ADD: everything default
        (None, None, None, 1),       # AVERAGE_POOL_2D, new field only
        (22, None, None, 22),        # RESHAPE
        (25, None, 1, 25),           # SOFTMAX
        (127, None, None, 150),      # GELU through the extended field
        (32, "SaccadeCustom", 3, None),  # CUSTOM
    ]
    resolved = [3, 4, 0, 1, 22, 25, 150, 32]
    # opcode, inputs, outputs, options type, options {id: (kind, value)}, decoded options for the JSON
    ops = [
        (0, [0, 1, 2], [3], 1, {1: ("i32", 2), 2: ("i32", 2), 3: ("i8", RELU6)},
         dict(padding=SAME, stride_w=2, stride_h=2, activation=RELU6, dilation_w=1, dilation_h=1)),
        (1, [3, 4, 5], [6], 2, {1: ("i32", 1), 2: ("i32", 1), 3: ("i32", 1), 4: ("i8", RELU6), 5: ("i32", 1),
                                6: ("i32", 1)},
         dict(padding=SAME, stride_w=1, stride_h=1, depth_multiplier=1, activation=RELU6, dilation_w=1,
              dilation_h=1)),
        (2, [3, 6], [7], 11, {0: ("i8", NONE)}, dict(activation=NONE)),
        (3, [7], [8], 5, {0: ("i8", VALID), 1: ("i32", 2), 2: ("i32", 2), 3: ("i32", 2), 4: ("i32", 2),
                          5: ("i8", NONE)},
         dict(padding=VALID, stride_w=2, stride_h=2, filter_w=2, filter_h=2, activation=NONE)),
        (4, [8, 9], [10], 17, {0: ("ref", Vec("i32", [1, 4]))}, dict(new_shape=[1, 4])),
        (5, [10], [11], 9, {0: ("f32", 1.0)}, dict(beta=1.0)),
    ]

    buffer_tables = []
    for i, b in enumerate(buffers):
        f = {} if b is None else {0: ("ref", Vec("u8", list(b), align=16))}
        buffer_tables.append(Table(f, key=f"buffer{i}"))
    tensor_tables = []
    for i, (name, typ, shape, buf, q, var) in enumerate(tensors):
        f = {0: ("ref", Vec("i32", shape, key=f"tensor{i}.shape")), 1: ("i8", typ), 3: ("ref", Str(name))}
        if buf:
            f[2] = ("u32", buf)
        if q is not None:
            f[4] = ("ref", Table(quant(*q)))
        if var:
            f[5] = ("bool", 1)
        tensor_tables.append(Table(f, key=f"tensor{i}"))
    code_tables = []
    for i, (dep, custom, version, code) in enumerate(opcodes):
        f = {}
        if dep is not None:
            f[0] = ("i8", dep)
        if custom is not None:
            f[1] = ("ref", Str(custom))
        if version is not None:
            f[2] = ("i32", version)
        if code is not None:
            f[3] = ("i32", code)
        code_tables.append(Table(f, key=f"opcode{i}"))
    op_tables = []
    for i, (code, ins, outs, otype, ofields, _) in enumerate(ops):
        f = {1: ("ref", Vec("i32", ins, key=f"op{i}.inputs")), 2: ("ref", Vec("i32", outs)),
             3: ("u8", otype), 4: ("ref", Table(ofields, key=f"op{i}.options"))}
        if code:
            f[0] = ("u32", code)
        op_tables.append(Table(f, key=f"op{i}"))
    subgraph = Table({0: ("ref", Vec("ref", tensor_tables, key="tensors")),
                      1: ("ref", Vec("i32", [0])), 2: ("ref", Vec("i32", [11])),
                      3: ("ref", Vec("ref", op_tables, key="operators")), 4: ("ref", Str("main"))}, key="subgraph")
    description = "saccade tflite test fixture"
    model = Table({0: ("u32", 3), 1: ("ref", Vec("ref", code_tables, key="opcodes")),
                   2: ("ref", Vec("ref", [subgraph], key="subgraphs")),
                   3: ("ref", Str(description, key="description", last=True)),
                   4: ("ref", Vec("ref", buffer_tables, key="buffers"))}, key="model")
    w = Writer()
    data = w.finish(model, b"TFL3")
    assert w.pos["description"] + 4 + len(description) + 1 == len(data), "the description must end the file"

    def tensor_json(i, t):
        name, typ, shape, buf, q, var = t
        b = buffers[buf] or b""
        return dict(name=name, type=typ, shape=shape, buffer=buf, nbytes=len(b), data=list(b),
                    scale=[f32(x) for x in q[0]] if q else [], zero_point=q[1] if q else [],
                    quantized_dimension=(q[2] or 0) if q else 0, is_variable=var)

    facts = {
        "file": "tiny.tflite",
        "size": len(data),
        "version": 3,
        "description": description,
        "n_subgraphs": 1,
        "n_buffers": len(buffers),
        "operator_codes": [dict(deprecated=dep or 0, builtin_code=code or 0, version=version or 1,
                                custom=custom, builtin=resolved[i])
                           for i, (dep, custom, version, code) in enumerate(opcodes)],
        "tensors": [tensor_json(i, t) for i, t in enumerate(tensors)],
        "inputs": [0],
        "outputs": [11],
        "operators": [dict(opcode_index=code, builtin=resolved[code], inputs=ins, outputs=outs, options_type=otype,
                           options=opts) for code, ins, outs, otype, _, opts in ops],
        "positions": {
            "model": w.pos["model"],
            "model.version": w.field_pos[("model", 0)],
            "tensors": w.pos["tensors"],
            "subgraph.tensors": w.field_pos[("subgraph", 0)],
            "operators": w.pos["operators"],
            "buffers": w.pos["buffers"],
            "tensor1": w.pos["tensor1"],
            "tensor1.shape": w.pos["tensor1.shape"],
            "tensor1.type": w.field_pos[("tensor1", 1)],
            "tensor1.buffer": w.field_pos[("tensor1", 2)],
            "tensor1.name": w.field_pos[("tensor1", 3)],
            "op0.opcode_index": w.field_pos.get(("op0", 0), -1),
            "op1.opcode_index": w.field_pos[("op1", 0)],
            "op1.inputs": w.pos["op1.inputs"],
            "op0.options.stride_w": w.field_pos[("op0.options", 1)],
            "op0.options.activation": w.field_pos[("op0.options", 3)],
            "opcode1.builtin_code": w.field_pos[("opcode1", 3)],
            "opcode1.deprecated": w.field_pos[("opcode1", 0)],
            "description": w.pos["description"],
        },
    }
    with open(os.path.join(out, "tiny.tflite"), "wb") as f:
        f.write(data)
    with open(os.path.join(out, "tiny_tflite.json"), "w") as f:
        json.dump(facts, f, indent=1)
        f.write("\n")
    print(f"wrote {out}/tiny.tflite ({len(data)} bytes) and {out}/tiny_tflite.json")


if __name__ == "__main__":
    main()
