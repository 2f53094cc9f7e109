#!/usr/bin/python3
"""make_seeds.py - write the seed corpus fuzz/corpus/<target>/ (small valid inputs of every
format a target reads) and the regression corpus fuzz/regress/<target>/ (minimised reproducers
of the input defects fixed for issue 11). Run from the repository root with Debian's python3
(PIL for the image seeds): /usr/bin/python3 fuzz/make_seeds.py. Deterministic output."""
import io, json, os, shutil, struct, sys

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)))


def put(kind, target, name, data):
    d = os.path.join(ROOT, kind, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pattern(w, h, mode="RGB"):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 37) % 256, (y * 53) % 256, (x * y * 11) % 256) for y in range(h) for x in range(w)])
    return im.convert(mode)


def saved(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def psd(w, h, rle):
    head = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3) + struct.pack(">III", 0, 0, 0)
    px = bytes((i * 7) % 256 for i in range(w * h))
    if not rle:
        return head + struct.pack(">H", 0) + px * 3
    rows = b"".join(struct.pack(">H", 2) for _ in range(h * 3))
    data = b"".join(bytes([257 - w, 90 + c]) for c in range(3) for _ in range(h))  # one run per row
    return head + struct.pack(">H", 1) + rows + data


def hdr(w, h):
    head = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (h, w)
    return head + bytes([128, 64, 32, 129]) * (w * h)


def pgm16(w, h):
    return b"P5\n%d %d\n65535\n" % (w, h) + b"".join(struct.pack(">H", i * 911) for i in range(w * h))


def safetensors(tensors, meta=None):
    header, data = {}, b""
    if meta:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    # the regression corpus also holds fuzzer findings this script does not write: keep them
    shutil.rmtree(os.path.join(ROOT, "corpus"), ignore_errors=True)

    # ---- image
    im = pattern(7, 5)
    seeds = {
        "rgb.png": saved(im, "PNG"), "rgba.png": saved(pattern(7, 5, "RGBA"), "PNG"),
        "gray.png": saved(pattern(7, 5, "L"), "PNG"), "pal.png": saved(pattern(7, 5, "P"), "PNG"),
        "base.jpg": saved(im, "JPEG", quality=90), "prog.jpg": saved(pattern(19, 11), "JPEG", progressive=True),
        "gray.jpg": saved(pattern(9, 9, "L"), "JPEG"), "sub.jpg": saved(pattern(17, 9), "JPEG", subsampling=2),
        "rgb.bmp": saved(im, "BMP"), "pal.bmp": saved(pattern(7, 5, "P"), "BMP"), "one.bmp": saved(pattern(9, 5, "1"), "BMP"),
        "a.gif": saved(im, "GIF"), "raw.tga": saved(im, "TGA"), "rle.tga": saved(im, "TGA", compression="tga_rle"),
        "rgba.tga": saved(pattern(7, 5, "RGBA"), "TGA"), "a.ppm": saved(im, "PPM"), "a.pgm": saved(pattern(7, 5, "L"), "PPM"),
        "a16.pgm": pgm16(5, 3), "a.hdr": hdr(5, 3), "raw.psd": psd(4, 3, False), "rle.psd": psd(9, 2, True),
    }
    ex = Image.Exif()
    ex[0x0112] = 6
    seeds["exif6.jpg"] = saved(pattern(6, 4), "JPEG", exif=ex.tobytes())
    for k, v in seeds.items():
        put("corpus", "image", k, v)
    # regressions: stb's DHT overflow (9 bytes, and a complete segment of 276 codes), headers that
    # claim more than the data holds (JPEG, PNG, PSD), PIC, sides of 2^32-1
    put("regress", "image", "dht_9_bytes.jpg", bytes.fromhex("ffd8ffc4ffc40015ff"))
    counts = [0] * 14 + [21, 255]
    put("regress", "image", "dht_276_codes.jpg", b"\xff\xd8\xff\xc4" + struct.pack(">H", 2 + 17 + 276) + b"\x00" +
        bytes(counts) + bytes(k & 255 for k in range(276)) + b"\xff\xd9")
    j = bytearray(saved(pattern(16, 16), "JPEG"))
    sof = j.index(b"\xff\xc0")
    j[sof + 5:sof + 9] = struct.pack(">HH", 3000, 4000)
    put("regress", "image", "claims_4000x3000.jpg", bytes(j))
    full = saved(pattern(64, 48, "RGB").rotate(33), "JPEG", quality=95)
    put("regress", "image", "cut_no_eoi.jpg", full[: len(full) * 6 // 10])
    p = bytearray(saved(Image.new("RGB", (1, 1)), "PNG"))
    import zlib
    def fix_ihdr(w, h):
        q = bytearray(p)
        q[16:24] = struct.pack(">II", w, h)
        q[29:33] = struct.pack(">I", zlib.crc32(bytes(q[12:29])))
        return bytes(q)
    put("regress", "image", "claims_4000x3000.png", fix_ihdr(4000, 3000))
    put("regress", "image", "sides_2e32.png", fix_ihdr(0xFFFFFFFF, 0xFFFFFFFF))
    slow = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 8000, 8000, 8, 3) + struct.pack(">IIIH", 0, 0, 0, 1)
    put("regress", "image", "slow_359.psd", slow + b"\x80" * (359 - len(slow)))
    pic = b"\x53\x80\xf6\x34" + bytes(84) + b"PICT" + struct.pack(">HH", 1, 1) + bytes(8) + bytes([0, 8, 0, 0xE0, 10, 20, 30])
    put("regress", "image", "softimage.pic", pic)
    # found by fuzz_image: stb_image 2.27 accumulates PNM header numbers in an int
    put("regress", "image", "pnm_int_overflow.pgm", b"P5\n72222222222222222222 1\n255\n\x00")

    # ---- safetensors
    f32 = struct.pack("<6f", 1, -2, 0.5, 3.25, -0.0, 1e30)
    put("corpus", "safetensors", "f32.st", safetensors([("w", "F32", [2, 3], f32)], {"format": "pt", "vocab": "<pad>\n<start>\n"}))
    put("corpus", "safetensors", "mixed.st", safetensors([
        ("a.f16", "F16", [3], struct.pack("<3H", 0x3C00, 0x7C00, 0x0001)),
        ("b.bf16", "BF16", [2], struct.pack("<2H", 0x3F80, 0xFF80)),
        ("c.f64", "F64", [1], struct.pack("<d", 2.5)), ("d.i64", "I64", [], struct.pack("<q", -7)),
        ("e.u8", "U8", [2, 2], b"\x01\x02\x03\x04"), ("f.empty", "F32", [0, 4], b"")]))
    put("corpus", "safetensors", "meta_only.st", safetensors([], {"k": "v"}))

    # ---- datasets (fuzz_dataset.c: flickr/karpathy/coco/tsv)
    tokens = "a.jpg#0\tA dog runs .\na.jpg#1\tA brown dog's ball .\r\nb.jpg#0\tTwo cats sit .\n\nc.jpg#0\t \n"
    put("corpus", "flickr", "tokens.txt", "x" + tokens)  # 'x' is even: no split list
    put("corpus", "flickr", "with_list.txt", "a" + tokens + "\n--\nb.jpg\na.jpg\nb.jpg\n")  # 'a' odd
    put("regress", "flickr", "bad_text.txt", "x.jpg#0\tok\nx.jpg#1\tcaf\xe9 \x07\n".encode("latin-1"))
    put("regress", "flickr", "only_bad.txt", b"y.jpg#0\t\x1b[31m\xff\n")
    kj = {"images": [{"filename": "a.jpg", "filepath": "val2014", "split": "train", "cocoid": 5,
                      "sentences": [{"raw": "A dog.", "tokens": ["a", "dog"]}, {"tokens": ["two", "cats"]}]},
                     {"filename": "b.jpg", "split": "restval", "imgid": 7, "sentences": [{"raw": "x"}]},
                     {"filename": "c.jpg", "split": "test", "sentences": [{"raw": " "}]}]}
    for lead, name in ((" ", "all.json"), ("\t", "train.json"), ("\n", "valtest.json"), ("", "restval.json")):
        put("corpus", "karpathy", name, lead + json.dumps(kj))
    for bad in ("1e300", "-5", "1.5", '"7"'):
        put("regress", "karpathy", "cocoid_%s.json" % bad.strip('"').replace(".", "_"),
            ' {"images": [{"filename": "a.jpg", "cocoid": %s, "sentences": [{"raw": "x"}]}]}' % bad)
    put("regress", "karpathy", "bad_text.json", b' {"images": [{"filename": "a.jpg", "sentences": [{"raw": "ok"}, '
        b'{"raw": "\\u0001"}, {"tokens": ["\xc0\xaf"]}]}]}')
    cj = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 391895, "file_name": "COCO_val2014_000000391895.jpg"},
                     {"id": 9007199254740992, "file_name": "n.jpg"}],
          "annotations": [{"image_id": 1, "caption": "A man rides a bike.\n"}, {"image_id": 391895, "caption": "x"},
                          {"image_id": 99, "caption": "orphan"}, {"image_id": 1, "caption": ""}]}
    put("corpus", "coco", "captions.json", json.dumps(cj))
    for bad in ("1e300", "-5", "1.5", '"7"'):
        name = bad.strip('"').replace(".", "_")
        put("regress", "coco", "id_%s.json" % name, '{"images": [{"id": %s, "file_name": "a.jpg"}], "annotations": []}' % bad)
        put("regress", "coco", "image_id_%s.json" % name, '{"images": [{"id": 1, "file_name": "a.jpg"}], '
            '"annotations": [{"image_id": %s, "caption": "x"}]}' % bad)
    put("regress", "coco", "bad_text.json", b'{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": '
        b'[{"image_id": 1, "caption": "\\u001b[2J"}, {"image_id": 1, "caption": "\xed\xa0\x80"}]}')
    put("corpus", "tsv", "captions.tsv", "# comment\nimg/a.png\tA dog runs .\nimg/a.png\tA brown dog\r\n\nb.jpg\t  \n/abs/c.jpg\tc\n")
    put("regress", "tsv", "bad_text.tsv", b"x.png\tfine\nx.png\tbad \xff byte\ny.png\t\x01\n")

    # ---- vocabulary / tokenizer
    for i, s in enumerate(["A dog's ball, at 3:30 -- \u201cquoted\u201d (x) #25 50% at&t can't gonna",
                           "<pad>\n<start>\n<end>\n<unk>\ndog\ncaf\u00e9\n", "t-shirt o'clock 1,000 3.5 statefarm.com ..."]):
        put("corpus", "vocab", "seed%d.txt" % i, s)
    put("regress", "vocab", "latin1_word.txt", "un caf\xe9".encode("latin-1"))
    put("regress", "vocab", "control_char.txt", b"a\x01dog\x1b[0m runs")
    put("regress", "vocab", "vocab_latin1.txt", b"<pad>\n<start>\n<end>\n<unk>\ncaf\xe9\n")

    # ---- COCO results (refs in fuzz_coco_results.c: ids 1, 2, 391895, 2^53; a.jpg, b.jpg, ...)
    put("corpus", "coco_results", "ids.json", json.dumps([{"image_id": 1, "caption": "a dog"}, {"image_id": 391895, "caption": "x"}]))
    put("corpus", "coco_results", "names.json", json.dumps([{"image_id": "b.jpg", "caption": "two dogs"}, {"image_id": "d e.png", "caption": ""}]))
    put("corpus", "coco_results", "big.json", '[{"image_id": 9007199254740992, "caption": "big"}, {"image_id": 1e300, "caption": "x"}]')

    # ---- batch --resume (first byte: format 0 jsonl, 1 tsv, 2 coco .partial, 3 html)
    jl = '{"image": "a/b.jpg", "caption": "a dog", "logprob": -1.5}\n{"image": "c.png", "error": "truncated"}\n'
    put("corpus", "batch_resume", "jsonl", "0" + jl + '{"image": "torn')
    put("corpus", "batch_resume", "tsv", "1a\\tb.jpg\ta dog\nc.png\t\terror=truncated\nd.jpg\tto")
    put("corpus", "batch_resume", "coco", "2" + jl)
    html_header = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>saccade batch</title>\n'
                   "<style>body{font-family:sans-serif;margin:16px;background:#fafafa}"
                   ".g{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}"
                   "figure{margin:0;padding:8px;background:#fff;border:1px solid #ddd;max-width:100%}"
                   "figure img.t{display:block;max-width:160px;max-height:160px}"
                   "figure img.a{display:block;max-width:100%;margin-top:6px}"
                   "figcaption{max-width:320px;font-size:14px;margin-top:4px;overflow-wrap:anywhere}"
                   "figure.err{background:#fee}</style></head>\n"
                   '<body><h1>saccade batch</h1>\n<div class="g">\n')
    put("corpus", "batch_resume", "html", "3" + html_header +
        '<!--{"image": "a.jpg", "caption": "a dog", "logprob": -1}--><figure><figcaption>a dog</figcaption></figure>\n'
        "</div></body></html>\n")

    # ---- TFLite: the test fixture (tests/pyref/make_tflite_fixture.py)
    tfl = os.path.join(ROOT, "..", "tests", "data", "tiny.tflite")
    if os.path.exists(tfl):
        put("corpus", "tflite", "tiny.tflite", open(tfl, "rb").read())


if __name__ == "__main__":
    sys.exit(main())
