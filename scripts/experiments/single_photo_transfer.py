"""Which confidence mapping transfers between catalog make-ups with one photo per
product (docs/evaluation.md, "Catalogs with one photo per product"): the shipped-style
isotonic map fitted on studio packshots vs train photos, the same after catalog-level
similarity normalisation (z-norm / shift / quantile match of the nearest-other-product
similarity), and mappings fitted on synthetic views (PIL prototype of src/fit/views.rs)
— logistic of (similarity, margin), margin alone, isotonic of similarity. Queries: val.
Embeds through the built binary (`knockoff embed`, the product's own pipeline) into
$EXP_DIR/single-photo/. Args: model names (default: efficientnet-lite0 sscd-lite0)."""
import csv, json, os, random, subprocess, sys
import numpy as np
from PIL import Image, ImageOps, ImageEnhance, ImageFilter
HERE = os.path.dirname(os.path.abspath(__file__)); ROOT = os.path.join(HERE, "../..")
G = os.path.join(ROOT, "../shared/data/grocery")
OUT = os.path.join(os.environ.get("EXP_DIR", "/tmp/knockoff-exp"), "single-photo"); os.makedirs(OUT, exist_ok=True)
K = os.path.join(ROOT, "target/release/knockoff")
rows = lambda n: list(csv.DictReader(open(f"{G}/{n}.csv")))
C, T, V = rows("catalog"), rows("photos-train"), rows("photos-val")
def first_each(rs):
    seen, out = set(), []
    for r in rs:
        if r["product_id"] not in seen: seen.add(r["product_id"]); out.append(r)
    return out
SHELF = first_each(T)

def views(name, src_rows, n=8, seed=0):
    """8 synthetic listing photos per image, from a 256-px copy (as the stored thumbnail)."""
    d = f"{OUT}/views-{name}"
    if os.path.exists(f"{d}/views.csv"): return d
    os.makedirs(d, exist_ok=True); rng = random.Random(seed)
    def load(p):
        im = ImageOps.exif_transpose(Image.open(os.path.join(G, p))).convert("RGB"); s = 256 / max(im.size)
        return im.resize((max(1, int(im.width * s)), max(1, int(im.height * s))), Image.BILINEAR) if s < 1 else im
    imgs = [load(r["image"]) for r in src_rows]
    def view(i):
        W = rng.choice([256, 320, 384]); bg = Image.new("RGB", (W, W), tuple(rng.randint(40, 220) for _ in range(3)))
        for _ in range(rng.randint(2, 5)):
            j = rng.randrange(len(imgs))
            if j == i: continue
            o = imgs[j]; s = rng.uniform(0.4, 1.0) * W / max(o.size); o = o.resize((max(1, int(o.width * s)), max(1, int(o.height * s))))
            bg.paste(o, (rng.randint(-o.width // 2, W - o.width // 2), rng.randint(-o.height // 2, W - o.height // 2)))
        im = imgs[i]; w, h = im.size; a = rng.uniform(0.5, 1.0)
        cw = int(w * min(1, a ** 0.5 * rng.uniform(0.85, 1.15))); ch = int(h * min(1, a ** 0.5 * rng.uniform(0.85, 1.15)))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch); fg = im.crop((x, y, x + cw, y + ch))
        s = rng.uniform(0.45, 0.95) * W / max(fg.size); fg = fg.resize((max(1, int(fg.width * s)), max(1, int(fg.height * s))))
        fg = fg.convert("RGBA").rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=True)
        px = rng.randint(int(-0.15 * fg.width), max(int(-0.15 * fg.width), W - int(0.85 * fg.width)))
        py = rng.randint(int(-0.15 * fg.height), max(int(-0.15 * fg.height), W - int(0.85 * fg.height)))
        bg.paste(fg, (px, py), fg); im = bg
        for E, lo, hi in [(ImageEnhance.Brightness, 0.6, 1.3), (ImageEnhance.Contrast, 0.7, 1.3), (ImageEnhance.Color, 0.6, 1.3)]:
            im = E(im).enhance(rng.uniform(lo, hi))
        if rng.random() < 0.5: im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
        if rng.random() < 0.5:
            f = rng.uniform(0.3, 0.7); im = im.resize((int(W * f), int(W * f))).resize((W, W))
        return im
    with open(f"{d}/views.csv", "w") as f:
        f.write("image,product_id\n")
        for i, r in enumerate(src_rows):
            for k in range(n):
                p = f"{d}/{i:03d}_{k}.jpg"; view(i).save(p, quality=rng.randint(40, 85)); f.write(f"{p},{r['product_id']}\n")
    return d

def embed(model, tag, paths):
    f = f"{OUT}/{model}-{tag}.jsonl"
    if not os.path.exists(f):
        with open(f + ".tmp", "w") as out:
            subprocess.run([K, "embed", "--model", model, *paths], stdout=out, check=True, cwd=ROOT)
        os.rename(f + ".tmp", f)
    return np.array([json.loads(l)["embedding"] for l in open(f)], np.float32)

def lookup(q, qp, g, gp):
    S = q @ g.T; prods = np.unique(gp); M = np.stack([S[:, gp == p].max(1) for p in prods], 1)
    o = np.argsort(-M, 1); s1 = M[np.arange(len(q)), o[:, 0]]; s2 = M[np.arange(len(q)), o[:, 1]]
    return s1, s1 - s2, prods[o[:, 0]] == qp
def impostor(g, gp):
    S = g @ g.T; S[gp[:, None] == gp[None, :]] = -9; return S.max(1)
def pav(x, y):
    o = np.argsort(x); B = []
    for xi, yi in zip(x[o], y[o].astype(float)):
        B.append([xi, yi, 1.0])
        while len(B) > 1 and B[-2][1] / B[-2][2] > B[-1][1] / B[-1][2]:
            b = B.pop(); B[-1][1] += b[1]; B[-1][2] += b[2]
    return np.array([b[0] for b in B]), np.array([b[1] / b[2] for b in B])
def iso(m, s):
    xs, ys = m; i = np.searchsorted(xs, s, side="right") - 1; return ys[np.clip(i, 0, len(ys) - 1)]
def logit(X, y):
    X1 = np.hstack([X, np.ones((len(X), 1))]); b = np.zeros(X1.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-X1 @ b)); H = (X1 * (p * (1 - p))[:, None]).T @ X1 + 1e-3 * np.eye(len(b))
        b -= np.linalg.solve(H, X1.T @ (p - y) + 1e-3 * b)
    return lambda Z: 1 / (1 + np.exp(-(np.hstack([Z, np.ones((len(Z), 1))]) @ b)))
def ece(p, y):
    return sum((m.sum() / len(p)) * abs(p[m].mean() - y[m].mean()) for i in range(10)
               for m in [(p >= i / 10) & ((p < (i + 1) / 10) | (i == 9))] if m.any())

pid = lambda rs: np.array([r["product_id"] for r in rs])
img = lambda rs: [os.path.join(G, r["image"]) for r in rs]
for model in sys.argv[1:] or ["efficientnet-lite0", "sscd-lite0"]:
    eC, eT, eV, eS = embed(model, "catalog", img(C)), embed(model, "train", img(T)), embed(model, "val", img(V)), embed(model, "shelf", img(SHELF))
    pC, pT, pV, pS = pid(C), pid(T), pid(V), pid(SHELF)
    # The shipped-style map: studio catalog, train photos as queries.
    s1, _, y = lookup(eT, pT, eC, pC); ref = pav(s1, y); imp_ref = impostor(eC, pC)
    print(f"== {model}")
    for name, g, gp, vrows in [("studio", eC, pC, C), ("first shelf photo", eS, pS, SHELF)]:
        s1, m, y = lookup(eV, pV, g, gp); imp = impostor(g, gp)
        z = imp_ref.mean() + (s1 - imp.mean()) * imp_ref.std() / imp.std()
        vd = views(name.split()[0], vrows); vr = list(csv.DictReader(open(f"{vd}/views.csv")))
        a = embed(model, f"views-{name.split()[0]}", [r["image"] for r in vr]); s1a, ma, ya = lookup(a, pid(vr), g, gp)
        cells = {
            "shipped-style iso": iso(ref, s1),
            "same, z-normalised": iso(ref, z),
            "views logit(s1,m)": logit(np.stack([s1a, ma], 1), ya.astype(float))(np.stack([s1, m], 1)),
            "views logit(m)": logit(ma[:, None], ya.astype(float))(m[:, None]),
            "views iso(s1)": iso(pav(s1a, ya), s1),
        }
        print(f"  {name:18s} top-1 {y.mean():.3f} (views {ya.mean():.3f}): " + "; ".join(f"{k} ECE {ece(p, y):.3f}" for k, p in cells.items()))
