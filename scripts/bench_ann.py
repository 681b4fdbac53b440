#!/usr/bin/env python3
"""ANN part of scripts/bench_index.sh: builds N synthetic vectors clustered like
real embeddings, exact ground truth, and runs hnswlib with the same
parameters; knockoff's numbers come from `knockoff bench-ann` on the same files.

Synthetic vectors: each is a real grocery embedding (read from the store of the
index that bench_index.sh just built) plus Gaussian noise scaled per dimension
by the real embeddings' spread, L2-normalised, with the noise chosen so that a
vector's cosine to its centre averages 0.85 (about the similarity of two photos
of the same product).
"""
import json, os, sqlite3, subprocess, sys, time

import numpy as np

index_dir, work, n, m, efc, efs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
NQ, K = 1000, 10
con = sqlite3.connect(os.path.join(index_dir, "catalog.sqlite3"))
real = np.stack([np.frombuffer(b, dtype="<f4") for (b,) in con.execute("SELECT vector FROM embeddings")])
d = real.shape[1]
rng = np.random.default_rng(42)
std = real.std(axis=0)
target = 0.85
sigma = np.sqrt((1 / target**2 - 1) / float((std**2).sum()))


def synth(count):
    out = np.empty((count, d), dtype=np.float32)
    for i in range(0, count, 20000):
        c = real[rng.integers(0, len(real), min(20000, count - i))]
        v = c + sigma * std * rng.standard_normal(c.shape).astype(np.float32)
        out[i:i + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


base, queries = synth(n), synth(NQ)
cos_to_centre = None
truth = np.empty((NQ, K), dtype=np.int32)
for i in range(0, NQ, 100):
    s = queries[i:i + 100] @ base.T
    top = np.argpartition(-s, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1)
    truth[i:i + 100] = np.take_along_axis(top, order, axis=1)
base.astype("<f4").tofile(f"{work}/base.f32")
queries.astype("<f4").tofile(f"{work}/queries.f32")
truth.astype("<i4").tofile(f"{work}/truth.i32")

ko = json.loads(subprocess.run(["./target/release/knockoff", "bench-ann", f"{work}/base.f32", f"{work}/queries.f32", f"{work}/truth.i32",
                                "--dim", str(d), "--m", str(m), "--ef-construction", str(efc), "--ef-search", str(efs)],
                               check=True, capture_output=True, text=True).stdout)

import hnswlib
p = hnswlib.Index(space="ip", dim=d)
t = time.perf_counter()
p.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=1)
p.add_items(base, np.arange(n), num_threads=2)
hb = time.perf_counter() - t
p.set_ef(efs)
t = time.perf_counter()
labels, _ = p.knn_query(queries, k=K, num_threads=1)
hq = NQ / (time.perf_counter() - t)
hr = np.mean([len(set(labels[i]) & set(truth[i])) / K for i in range(NQ)])
t = time.perf_counter()
p.save_index(f"{work}/hnswlib.bin")
hs = time.perf_counter() - t
hbytes = os.path.getsize(f"{work}/hnswlib.bin") / n
del p
t = time.perf_counter()
q = hnswlib.Index(space="ip", dim=d); q.load_index(f"{work}/hnswlib.bin", max_elements=n)
hl = time.perf_counter() - t

budget = 4 * d + 8 * m
print(f"vectors: {n} synthetic (real grocery embeddings + noise, cos to centre ~{target}), dim {d}, {NQ} queries; M {m}, ef_construction {efc}, ef_search {efs}")
print("| | knockoff (hnsw_rs) | hnswlib | ratio |")
print("|---|---|---|---|")
print(f"| recall@10 | {ko['recall_at_10']:.3f} | {hr:.3f} | |")
print(f"| queries/s, 1 thread | {ko['queries_per_s']:.0f} | {hq:.0f} | {ko['queries_per_s']/hq:.2f}x |")
print(f"| build time, 2 threads | {ko['build_s']:.1f} s | {hb:.1f} s | {ko['build_s']/hb:.2f}x |")
print(f"| save time | {ko['dump_s']:.2f} s | {hs:.2f} s | |")
print(f"| load time (ready to answer queries) | {ko['load_s']:.2f} s | {hl:.2f} s | {ko['load_s']/hl:.2f}x |")
print(f"| first write after a load (reads the hnsw_rs graph) | {ko['first_write_after_load_s']:.2f} s | | |")
print(f"| bytes/vector on disk | {ko['dump_bytes_per_vector']:.0f} | {hbytes:.0f} | {ko['dump_bytes_per_vector']/budget:.2f}x of 4d+8M={budget} |")
print(f"| bytes/vector in memory (RSS growth) | {ko['rss_bytes_per_vector']:.0f} | | {ko['rss_bytes_per_vector']/budget:.2f}x of 4d+8M |")
