#!/usr/bin/env python3
"""The reference (Python) embedding pipeline, used by the parity test and the
benchmark: Pillow decode + EXIF transpose + alpha onto white + RGB, Pillow
bilinear resize as model.toml says, normalise, onnxruntime, L2-normalise.

  .venv/bin/python scripts/reference_embed.py models/efficientnet-lite0 IMAGE...   # JSON lines
  .venv/bin/python scripts/reference_embed.py --bench --threads 2 --batch 16 models/efficientnet-lite0 IMAGE...
"""
import argparse, json, math, os, sys, time, tomllib

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def load_rgb(path):
    im = Image.open(path)
    im.seek(0)
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")


def plain_border_share(im):
    """Share of the outer 4% band near its per-channel median (as src/embed/preprocess.rs)."""
    w, h = im.size
    if w < 8 or h < 8:
        return 1.0
    bw, bh = max(w // 25, 1), max(h // 25, 1)
    step = max(math.ceil(math.sqrt(2 * (w * bh + h * bw) / 4096.0)), 1)
    a = np.asarray(im)
    ys, xs = np.meshgrid(np.arange(0, h, step), np.arange(0, w, step), indexing="ij")
    mask = (xs < bw) | (xs >= w - bw) | (ys < bh) | (ys >= h - bh)
    px = a[ys[mask], xs[mask]].astype(np.int16)
    if len(px) == 0:
        return 1.0
    median = np.array([np.sort(px[:, c])[len(px) // 2] for c in range(3)], np.int16)
    return float((np.abs(px - median) <= 24).all(axis=1).mean())


def focus_region(im, fraction):
    """Central part of a photo with a busy border, easing to the whole image
    as the border gets plain (as FocusCrop in src/embed/preprocess.rs)."""
    whole = (0.0, 0.0, float(im.width), float(im.height))
    if fraction is None or fraction >= 1.0:
        return whole
    fr = np.float32(fraction)
    t = np.float32(min(max((np.float32(plain_border_share(im)) - np.float32(0.5)) / (np.float32(0.8) - np.float32(0.5)), 0.0), 1.0))
    f = float(np.float32(fr + (np.float32(1.0) - fr) * t))
    if f >= 1.0:
        return whole
    return (im.width * (1 - f) / 2, im.height * (1 - f) / 2, im.width * f, im.height * f)


def preprocess(im, spec, focus_crop=None):
    w, h = spec["width"], spec["height"]
    l, t, rw, rh = focus_region(im, focus_crop)
    if spec["resize"] == "center-crop":
        target = w / h
        if rw / rh > target:
            cw = rh * target
            l, rw = l + (rw - cw) / 2, cw
        else:
            ch = rw / target
            t, rh = t + (rh - ch) / 2, ch
    if (l, t, rw, rh) == (0.0, 0.0, float(im.width), float(im.height)):
        im = im.resize((w, h), Image.BILINEAR)
    else:
        im = im.resize((w, h), Image.BILINEAR, box=(l, t, l + rw, t + rh))
    x = np.asarray(im, dtype=np.float32)
    if spec["dtype"] == "u8":
        x = np.asarray(im, dtype=np.uint8)
    else:
        n = spec["normalization"]
        x = (x - np.array(n["mean"], np.float32)) / np.array(n["std"], np.float32)
    return x.transpose(2, 0, 1) if spec["layout"] == "NCHW" else x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--bench", action="store_true", help="print timing JSON instead of embeddings")
    a = ap.parse_args()
    m = tomllib.load(open(os.path.join(a.model_dir, "model.toml"), "rb"))
    so = ort.SessionOptions()
    if a.threads:
        so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(a.model_dir, m["file"]), so, providers=["CPUExecutionProvider"])
    spec = m["input"]
    t_pre = t_inf = 0.0
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(a.images), a.batch):
        s = time.perf_counter()
        x = np.stack([preprocess(load_rgb(p), spec, m.get("focus_crop")) for p in a.images[i:i + a.batch]])
        s2 = time.perf_counter()
        e = sess.run([m["output"]["name"]], {spec["name"]: x})[0].reshape(len(x), -1)
        t_inf += time.perf_counter() - s2
        t_pre += s2 - s
        out.extend(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
    total = time.perf_counter() - t0
    if a.bench:
        print(json.dumps({"images": len(a.images), "seconds": total, "images_per_s": len(a.images) / total,
                          "preprocess_share": t_pre / total, "infer_s": t_inf}))
        return
    for p, e in zip(a.images, out):
        print(json.dumps({"image": p, "model": m["name"], "dim": len(e), "embedding": [float(v) for v in e]}))


if __name__ == "__main__":
    main()
