#!/usr/bin/env bash
# Small brand catalogs (3-9 products, several photos each), on ../shared/data/grocery:
# every fine category of 3-9 products (Fruit/Apple, Packages/Milk, ...: look-alike
# siblings, as one brand's products are) and six random 5-product catalogs, each made
# of its products' photos-train.csv rows. Queries: their photos-val.csv photos, plus
# 25 photos of other products (distractors: the catalog holds none of them).
# Each catalog is evaluated as `knockoff index` leaves it (self-calibrated on held-out
# halves) and with the model's shipped calibration (`--no-fit`, what a catalog of
# fewer than 10 products got before), pooled over the 14 catalogs: R@1, ECE of
# `confidence` on the catalogued queries with what a perfectly calibrated model would
# show on them, mean `p_no_match` of catalogued queries and distractors, and the
# distractors' false-match rate (verdict other than `no_match`).
#   ./scripts/eval_small_catalogs.sh [--model NAME]
#   SMALL_SIZE=N ./scripts/eval_small_catalogs.sh [--model NAME]   only catalogs of N products
#     (the fine categories of exactly N, and six random N-product catalogs)
#   ONE_PHOTO=studio|shelf ./scripts/eval_small_catalogs.sh [--model NAME]   one photo per
#     product instead: its studio packshot (catalog.csv) or its first shelf photo (such
#     catalogs cannot fit themselves: both rows are the shipped calibration)
set -euo pipefail
cd "$(dirname "$0")/.."
# KNOCKOFF_BIN: a built binary to use instead of building.
source scripts/eval_env.sh
python3 - "$DATA" "$WORK" "$K" "${SMALL_SIZE:-}" "${ONE_PHOTO:-}" "$@" <<'PYEOF'
import collections, csv, json, os, random, subprocess, sys
data, work, k, size, one, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
lo, hi, n_random = (int(size), int(size), int(size)) if size else (3, 9, 5)
rows = lambda n: [dict(r, image=os.path.abspath(os.path.join(data, r["image"]))) for r in csv.DictReader(open(os.path.join(data, n)))]
train, val = rows("photos-train.csv"), rows("photos-val.csv")
first = lambda rs: list({r["product_id"]: r for r in reversed(rs)}.values())
source = {"": train, "studio": rows("catalog.csv"), "shelf": first(train)}[one]
by_cat = collections.defaultdict(set)
for r in train:
    by_cat[r["category"]].add(r["product_id"])
catalogs = [(c.replace("/", "-"), p) for c, p in sorted(by_cat.items()) if lo <= len(p) <= hi]
rng, products = random.Random(0), sorted({r["product_id"] for r in val})
catalogs += [(f"random-{i}", set(rng.sample(products, n_random))) for i in range(6)]

def ece(p, y):
    bins = [[] for _ in range(10)]
    for pi, yi in zip(p, y):
        bins[min(int(pi * 10), 9)].append((pi, yi))
    return sum(len(b) / len(p) * abs(sum(x for x, _ in b) / len(b) - sum(t for _, t in b) / len(b)) for b in bins if b)

def write(path, rs):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "product_id", "label", "brand", "name", "category"], extrasaction="ignore")
        w.writeheader(); w.writerows(rs)

print("| calibration | catalogs | catalogued queries | R@1 | ECE | a calibrated model's ECE (median / 95th pct) | mean p_no_match, catalogued / distractors | catalogued called no_match | distractors' false-match rate |")
print("|---|---|---|---|---|---|---|---|---|")
for how in (["shipped"] if one else ["self-calibrated", "shipped"]):
    conf, right, pn_in, pn_out, matched, refused, fitted, used = [], [], [], [], [], [], 0, 0
    for name, prods in catalogs:
        cat, q, out = f"{work}/{name}.csv", f"{work}/{name}-q.csv", f"{work}/{name}.jsonl"
        write(cat, [r for r in source if r["product_id"] in prods])
        others = [dict(r, product_id="") for r in val if r["product_id"] not in prods]
        write(q, [r for r in val if r["product_id"] in prods] + random.Random(1).sample(others, 25))
        args = [k, "eval", "--catalog", cat, "--queries", q, "--per-query", out] + extra + (["--no-fit"] if how == "shipped" else [])
        err = subprocess.run(args, capture_output=True, text=True, check=True).stderr
        if not any(json.loads(l)["truth"] for l in open(out)):
            continue  # a category with no photos-val photos (Packages/Soy-Milk)
        fitted, used = fitted + ("held-out lookups" in err), used + 1
        for line in open(out):
            a = json.loads(line)
            if a["truth"]:
                conf.append(a["matches"][0]["confidence"]); right.append(a["matches"][0]["product_id"] == a["truth"]); pn_in.append(a["p_no_match"])
                refused.append(a["verdict"] == "no_match")
            else:
                pn_out.append(a["p_no_match"]); matched.append(a["verdict"] != "no_match")
    draws = sorted(ece(conf, [rng.random() < p for p in conf]) for _ in range(500))
    mean = lambda v: sum(v) / len(v)
    print(f"| {how} ({fitted} of {used} fitted) | {used} | {len(conf)} | {mean(right):.3f} | {ece(conf, right):.3f} | "
          f"{draws[250]:.3f} / {draws[475]:.3f} | {mean(pn_in):.3f} / {mean(pn_out):.3f} | {mean(refused):.3f} | {mean(matched):.3f} |")
PYEOF
