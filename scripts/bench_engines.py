#!/usr/bin/env python3
"""Measurement part of scripts/bench_engines.sh (see there): PostgreSQL rows/s
and query rate for the catalog's tables, Milvus HNSW insert / query rate,
recall, filtered search, deletes and memory per vector. Prints a table."""
import os, sys, time

import numpy as np
import psycopg
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

from urllib.parse import urlsplit

n, dim, pg_url, mv_url, mv_pid = sys.argv[1:6]
n, dim, mv_pid = int(n), int(dim), int(mv_pid)
mv = urlsplit(mv_url)  # milvus://root:PASSWORD@HOST:PORT, as scripts/cluster.sh prints it
rng = np.random.default_rng(7)
rows = []


def row(what, value, note=""):
    rows.append((what, value, note))


def rss_tree(pid):
    """Resident bytes of a process and its children (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * 4096
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# Clustered unit vectors (cosine to their centre ~0.85, like two photos of one product).
centres = unit(rng.standard_normal((max(n // 20, 1), dim)))
noise = 0.62 / np.sqrt(dim)
def synth(count):
    c = centres[rng.integers(0, len(centres), count)]
    return unit(c + noise * rng.standard_normal((count, dim)).astype(np.float32))
base, queries = synth(n), synth(1000)
labels = np.where(rng.random(n) < 0.5, "authentic", "counterfeit")

# ---------------------------------------------------------------- PostgreSQL
with psycopg.connect(pg_url, autocommit=True) as pg:
    pg.execute("""CREATE TABLE products (id BIGSERIAL PRIMARY KEY, product_id TEXT UNIQUE NOT NULL, label TEXT NOT NULL,
                  brand TEXT, name TEXT, category TEXT, deleted BOOLEAN NOT NULL DEFAULT false)""")
    pg.execute("""CREATE TABLE images (id BIGSERIAL PRIMARY KEY, product BIGINT NOT NULL REFERENCES products(id), source TEXT NOT NULL,
                  sha256 TEXT NOT NULL, width INT, height INT, added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                  deleted BOOLEAN NOT NULL DEFAULT false, vector BYTEA NOT NULL)""")
    pg.execute("CREATE INDEX images_product ON images(product)")
    n_products = max(n // 20, 1)
    with pg.transaction():
        with pg.cursor() as cur:
            cur.executemany("INSERT INTO products (product_id, label, brand, name, category) VALUES (%s, %s, %s, %s, %s)",
                            [(f"p{i}", "authentic", "Brand", f"Product {i}", "cat") for i in range(n_products)])
    t = time.perf_counter()
    batch = 1000
    for i in range(0, n, batch):
        with pg.transaction():
            with pg.cursor() as cur:
                cur.executemany("INSERT INTO images (product, source, sha256, width, height, vector) VALUES (%s, %s, %s, 640, 480, %s)",
                                [(1 + (j % n_products), f"img/{j}.jpg", f"{j:064x}", base[j].tobytes()) for j in range(i, min(n, i + batch))])
    bulk = n / (time.perf_counter() - t)
    row("PostgreSQL: image rows/s, batches of 1,000 per transaction (row + 5 KB vector)", f"{bulk:,.0f}")
    t = time.perf_counter()
    for j in range(300):
        with pg.transaction():
            pg.execute("INSERT INTO images (product, source, sha256, vector) VALUES (1, 'api', %s, %s)", (f"{j:064x}", base[j].tobytes()))
    row("PostgreSQL: image rows/s, one committed transaction each (an API add)", f"{300 / (time.perf_counter() - t):,.0f}", "fsync per commit")
    ids = [int(r[0]) for r in pg.execute("SELECT id FROM images ORDER BY random() LIMIT 20000").fetchall()]
    t = time.perf_counter()
    for q in range(2000):
        pg.execute("SELECT i.id, p.product_id, p.label, p.brand, p.name FROM images i JOIN products p ON p.id = i.product WHERE i.id = ANY(%s)",
                   (ids[q * 10 % len(ids):q * 10 % len(ids) + 10],)).fetchall()
    row("PostgreSQL: lookups' metadata queries/s (10 images joined to products, one connection)", f"{2000 / (time.perf_counter() - t):,.0f}")
    size = pg.execute("SELECT pg_total_relation_size('images')").fetchone()[0]
    row("PostgreSQL: bytes per image row (with its vector, indexes)", f"{size / (n + 300):,.0f}")

# -------------------------------------------------------------------- Milvus
connections.connect(alias="default", uri=f"http://{mv.hostname}:{mv.port}", user=mv.username, password=mv.password)
rss0 = rss_tree(mv_pid)
schema = CollectionSchema([
    FieldSchema("id", DataType.INT64, is_primary=True),
    FieldSchema("label", DataType.VARCHAR, max_length=16),
    FieldSchema("vector", DataType.FLOAT_VECTOR, dim=dim),
])
col = Collection("bench", schema)
t = time.perf_counter()
for i in range(0, n, 2000):
    j = min(n, i + 2000)
    col.insert([list(range(i, j)), labels[i:j].tolist(), base[i:j]])
col.flush()
ins = n / (time.perf_counter() - t)
row("Milvus: vectors inserted/s (batches of 2,000, flushed)", f"{ins:,.0f}")
t = time.perf_counter()
col.create_index("vector", {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 16, "efConstruction": 200}})
utility.wait_for_index_building_complete("bench")
col.load()
row("Milvus: HNSW build + load, seconds (M 16, ef_construction 200)", f"{time.perf_counter() - t:,.1f}")
rss1 = rss_tree(mv_pid)
row("Milvus: resident bytes per vector after load (process tree growth)", f"{(rss1 - rss0) / n:,.0f}")
sims = queries @ base.T
truth = np.argsort(-sims, axis=1)[:, :10]
auth = labels == "authentic"
truth_auth = np.argsort(-np.where(auth[None, :], sims, -np.inf), axis=1)[:, :10]
params = {"metric_type": "IP", "params": {"ef": 64}}
for expr, want, what in ((None, truth, "unfiltered"), ('label == "authentic"', truth_auth, "filtered by label (half the vectors)")):
    t = time.perf_counter()
    got = [{h.id for h in col.search([q], "vector", params, limit=10, expr=expr)[0]} for q in queries]
    qps = len(queries) / (time.perf_counter() - t)
    hits = sum(len(g & {int(x) for x in w}) for g, w in zip(got, want))
    row(f"Milvus: queries/s, one client, top 10, ef 64, {what}", f"{qps:,.0f}", f"recall@10 {hits / (10 * len(queries)):.3f}")
from concurrent.futures import ThreadPoolExecutor
t = time.perf_counter()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda q: col.search([q], "vector", params, limit=10), queries))
row("Milvus: queries/s, 8 concurrent clients, top 10, ef 64, unfiltered", f"{len(queries) / (time.perf_counter() - t):,.0f}")
col.delete(f"id in {list(range(100))}")
time.sleep(1.5)
res = col.search([base[5]], "vector", params, limit=3, consistency_level="Strong")
row("Milvus: a deleted vector is gone from search (strong consistency)", "yes" if all(h.id >= 100 for h in res[0]) else "NO")

print(f"engines: {n} vectors of dim {dim}; PostgreSQL {psycopg.connect(pg_url).info.server_version}, Milvus 2.3.5 standalone")
print("| measured | value | note |")
print("|---|---|---|")
for what, value, note in rows:
    print(f"| {what} | {value} | {note} |")
