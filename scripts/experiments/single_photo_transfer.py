"""Which confidence mapping transfers between catalog make-ups with one photo per
product (docs/evaluation.md, "Catalogs with one photo per product"): the shipped-style
isotonic map fitted on studio packshots vs train photos, the same after catalog-level
similarity normalisation (z-norm / shift / quantile match of the nearest-other-product
similarity), and mappings fitted on synthetic views (PIL prototype of src/fit/views.rs)
— logistic of (similarity, margin), margin alone, isotonic of similarity — on plain views
and on "hard" views (the product slanted by a homography, an occluder in front of one side
70 % of the time: what src/fit/views.rs makes now), where the margin in units of the
spread of the 2nd–10th products' similarities (Mapping::RelativeMargin) is also fitted.
Three make-ups: studio packshots, first and last shelf photo per product. Queries: val.
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
SHELF, SHELF_LAST = first_each(T), first_each(T[::-1])

def coeffs(src, dst):
    """PIL perspective coefficients taking each dst corner to its src corner."""
    A, B = [], []
    for (x, y), (u, v) in zip(dst, src):
        A += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]; B += [u, v]
    return np.linalg.solve(np.array(A, float), np.array(B, float)).tolist()

def views(name, src_rows, n=8, seed=0, hard=False):
    """8 synthetic listing photos per image, from a 256-px copy (as the stored thumbnail)."""
    d = f"{OUT}/views-{name}" + ("-hard" if hard else "")
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
        fg = fg.convert("RGBA")
        if hard:  # seen at a slant: each corner pulled in by up to 18 %
            w2, h2 = fg.size; j = lambda s: rng.uniform(0, 0.18) * s
            quad = [(j(w2), j(h2)), (w2 - j(w2), j(h2)), (w2 - j(w2), h2 - j(h2)), (j(w2), h2 - j(h2))]
            fg = fg.transform((w2, h2), Image.PERSPECTIVE, coeffs([(0, 0), (w2, 0), (w2, h2), (0, h2)], quad), Image.BILINEAR)
        fg = fg.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=True)
        px = rng.randint(int(-0.15 * fg.width), max(int(-0.15 * fg.width), W - int(0.85 * fg.width)))
        py = rng.randint(int(-0.15 * fg.height), max(int(-0.15 * fg.height), W - int(0.85 * fg.height)))
        bg.paste(fg, (px, py), fg); im = bg
        if hard and rng.random() < 0.7:  # something in front of one side
            j = rng.randrange(len(imgs))
            o = imgs[j if j != i else (j + 1) % len(imgs)]; s = rng.uniform(0.3, 0.6) * W / max(o.size)
            o = o.resize((max(1, int(o.width * s)), max(1, int(o.height * s))))
            im.paste(o, (px + rng.choice([-o.width // 2, fg.width - o.width // 2]), py + rng.randint(0, max(1, fg.height - o.height))))
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

def lookup(q, qp, g, gp, relative=False):
    """Top similarity, margin (or, relative, the margin over the spread of the 2nd-10th), right?"""
    S = q @ g.T; prods = np.unique(gp); M = np.stack([S[:, gp == p].max(1) for p in prods], 1)
    o = np.argsort(-M, 1); R = np.take_along_axis(M, o[:, :10], 1); s1, m = R[:, 0], R[:, 0] - R[:, 1]
    return s1, m / np.maximum(R[:, 1:].std(1), 1e-3) if relative else m, prods[o[:, 0]] == qp
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
    eC, eT, eV = embed(model, "catalog", img(C)), embed(model, "train", img(T)), embed(model, "val", img(V))
    eS, eL = embed(model, "shelf", img(SHELF)), embed(model, "shelf-last", img(SHELF_LAST))
    pC, pT, pV = pid(C), pid(T), pid(V)
    # The shipped-style map: studio catalog, train photos as queries.
    s1, _, y = lookup(eT, pT, eC, pC); ref = pav(s1, y); imp_ref = impostor(eC, pC)
    print(f"== {model}")
    for name, g, vrows in [("studio", eC, C), ("first shelf photo", eS, SHELF), ("last shelf photo", eL, SHELF_LAST)]:
        gp, tag = pid(vrows), name.split()[0]
        s1, m, y = lookup(eV, pV, g, gp); _, rm, _ = lookup(eV, pV, g, gp, relative=True); imp = impostor(g, gp)
        z = imp_ref.mean() + (s1 - imp.mean()) * imp_ref.std() / imp.std()
        cells = {"shipped-style iso": iso(ref, s1), "same, z-normalised": iso(ref, z)}
        for hard in (False, True):
            vd = views(tag, vrows, hard=hard); vr = list(csv.DictReader(open(f"{vd}/views.csv")))
            a = embed(model, f"views-{tag}" + ("-hard" if hard else ""), [r["image"] for r in vr])
            (s1a, ma, ya), (_, rma, _) = lookup(a, pid(vr), g, gp), lookup(a, pid(vr), g, gp, relative=True)
            k = "hard views" if hard else "views"
            cells[f"{k} logit(s1,m)"] = logit(np.stack([s1a, ma], 1), ya.astype(float))(np.stack([s1, m], 1))
            cells[f"{k} logit(m/spread)"] = logit(rma[:, None], ya.astype(float))(rm[:, None])
            if not hard:
                cells["views logit(m)"] = logit(ma[:, None], ya.astype(float))(m[:, None])
                cells["views iso(s1)"] = iso(pav(s1a, ya), s1)
            print(f"  {name:18s} {k}: top-1 {ya.mean():.3f} (val {y.mean():.3f})")
        print(f"  {name:18s} ECE of the mapping alone: " + "; ".join(f"{k} {ece(p, y):.3f}" for k, p in cells.items()))
