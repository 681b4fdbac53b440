#!/usr/bin/env python3
"""Model choice table: nearest-image retrieval on ../shared/data/grocery for ONNX
models, with the plain reference pipeline (onnxruntime + Pillow, squash resize
to the model's input, (x-127)/128, L2-normalised, nearest image wins).

P1: catalog = catalog.csv; P2: catalog = catalog.csv + photos-train.csv;
queries = photos-val.csv. Prints R@1 overall and for packaged goods, and
inference speed (images/s, batch 16, 2 threads).

  .venv/bin/python scripts/compare_models.py models/efficientnet-lite0/efficientnet-lite0.onnx ...
"""
import csv, os, sys, time

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "grocery")


def rows(name):
    return list(csv.DictReader(open(os.path.join(ROOT, name))))


def embed(sess, paths, size, bs=16):
    out = []
    t = 0.0
    for i in range(0, len(paths), bs):
        x = np.stack([
            ((np.asarray(Image.open(os.path.join(ROOT, p)).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)
            for p in paths[i:i + bs]]).astype(np.float32)
        t0 = time.perf_counter()
        out.append(sess.run(None, {"input": x})[0])
        t += time.perf_counter() - t0
    e = np.concatenate(out)
    return e / np.linalg.norm(e, axis=1, keepdims=True), len(paths) / t


def main():
    cat, train, val = rows("catalog.csv"), rows("photos-train.csv"), rows("photos-val.csv")
    print("| model | input | P1 pkg R@1 | P2 pkg R@1 | P1 all R@1 | P2 all R@1 | infer img/s (b16, 2 thr) |")
    print("|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        o = ort.SessionOptions(); o.intra_op_num_threads = 2
        sess = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        size = sess.get_inputs()[0].shape[2]
        ec, _ = embed(sess, [r["image"] for r in cat], size)
        et, _ = embed(sess, [r["image"] for r in train], size)
        ev, ips = embed(sess, [r["image"] for r in val], size)
        qids = np.array([r["product_id"] for r in val])
        pkg = np.array([r["category"].startswith("Packages/") for r in val])
        res = []
        for gal, gids in ((ec, [r["product_id"] for r in cat]), (np.concatenate([ec, et]), [r["product_id"] for r in cat + train])):
            top = np.array(gids)[np.argmax(ev @ gal.T, axis=1)]
            hit = top == qids
            res.append((hit[pkg].mean(), hit.mean()))
        name = os.path.basename(path)
        print(f"| {name} | {size} | {res[0][0]:.2f} | {res[1][0]:.2f} | {res[0][1]:.2f} | {res[1][1]:.2f} | {ips:.0f} |")


if __name__ == "__main__":
    main()
