//! Hidden benchmark subcommands (`scripts/bench*.sh` run them): the HNSW
//! graph on raw vectors, library lookups without HTTP, and embedding
//! throughput. Each prints one JSON object.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::args::{BenchAnnArgs, BenchEmbedArgs, BenchLookupArgs, Global};
use super::commands::{embed_options, open};
use crate::catalog::vectors::HnswIndex;
use crate::catalog::IndexParams;
use crate::embed::{run_pipeline, Embedder, PipelineOptions, Prepared};
use crate::index::open_registry;

fn read_f32(p: &Path) -> anyhow::Result<Vec<f32>> {
    Ok(crate::util::f32s_from_le_bytes(&std::fs::read(p)?))
}

/// Resident memory of this process, from `/proc/self/statm` (0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Build, query (recall@10 against the exact neighbours), dump and load.
pub fn ann(a: &BenchAnnArgs) -> anyhow::Result<i32> {
    let (dim, params) = (a.dim, IndexParams { m: a.m, ef_construction: a.ef_construction, ef_search: a.ef_search });
    let base_v = read_f32(&a.base)?;
    let qv = read_f32(&a.queries)?;
    let truth: Vec<i32> = std::fs::read(&a.truth)?.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let n = base_v.len() / dim;
    let items: Vec<(i64, Vec<f32>)> = base_v.chunks_exact(dim).zip(0i64..).map(|(v, i)| (i, v.to_vec())).collect();
    drop(base_v);
    let rss0 = rss_bytes();
    let t = Instant::now();
    let idx = HnswIndex::new(dim, params, n);
    idx.add_many(&items)?;
    let build_s = t.elapsed().as_secs_f64();
    let rss_per_vector = rss_bytes().saturating_sub(rss0) as f64 / n as f64;
    drop(items);
    let nq = qv.len() / dim;
    let t = Instant::now();
    let mut hits = 0usize;
    for (qi, q) in qv.chunks_exact(dim).enumerate() {
        let want = &truth[qi * 10..qi * 10 + 10];
        hits += idx
            .nearest(q, 10, params.ef_search, None)
            .iter()
            .filter(|(id, _)| i32::try_from(*id).is_ok_and(|id| want.contains(&id)))
            .count();
    }
    let query_s = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let marker = idx.dump(dir.path(), 1)?;
    let dump_s = t.elapsed().as_secs_f64();
    let dump_bytes: u64 = std::fs::read_dir(dir.path())?.flatten().filter_map(|e| e.metadata().ok().map(|m| m.len())).sum();
    drop(idx);
    let t = Instant::now();
    let (loaded, _) = HnswIndex::load(dir.path(), dim, params)?.ok_or_else(|| anyhow::anyhow!("dump vanished"))?;
    let load_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(loaded.len() == marker.points, "loaded {} points, dumped {}", loaded.len(), marker.points);
    // The first write after a load reads the hnsw_rs part of the dump.
    let t = Instant::now();
    loaded.add(i64::MAX / 2, &qv[..dim])?;
    let first_write_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "n": n, "dim": dim, "queries": nq, "params": params,
            "build_s": build_s, "queries_per_s": nq as f64 / query_s, "recall_at_10": hits as f64 / (nq * 10) as f64,
            "dump_s": dump_s, "load_s": load_s, "first_write_after_load_s": first_write_s,
            "dump_bytes_per_vector": dump_bytes as f64 / n as f64,
            "rss_bytes_per_vector": rss_per_vector,
        })
    );
    Ok(0)
}

/// Library lookups (read + decode + embed + [`crate::search::lookup`]) on `concurrency` threads.
pub fn lookup(g: &Global, a: &BenchLookupArgs) -> anyhow::Result<i32> {
    let opened = open(g, &a.index.spec())?;
    let c = a.concurrency.max(1);
    let embedder = opened.embedder(&embed_options(g, c, 1))?;
    let verdict = crate::search::calibration::verdict_config(&opened.catalog, &opened.manifest.dir, None);
    let bodies: Vec<Vec<u8>> = a.images.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    let per: Vec<f64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..c)
            .map(|_| {
                sc.spawn(|| {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= a.requests {
                            break;
                        }
                        let t = Instant::now();
                        let body = &bodies[i % bodies.len()];
                        let described = if a.no_copies {
                            embedder.embed_bytes(body, "bench").map(|vector| crate::embed::Described {
                                vector,
                                copy: None,
                                regions: Vec::new(),
                            })
                        } else {
                            embedder.describe_bytes(body, "bench")
                        };
                        if let Ok(v) = described {
                            let _ = crate::search::lookup(&opened.catalog, &v, &crate::search::SearchRequest::default(), &verdict);
                        }
                        lat.push(t.elapsed().as_secs_f64());
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut sorted = per.clone();
    sorted.sort_by(f64::total_cmp);
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    println!(
        "{}",
        serde_json::json!({ "concurrency": c, "requests": per.len(), "per_s": per.len() as f64 / secs,
            "p50_ms": p50 * 1e3, "mean_ms": per.iter().sum::<f64>() / per.len().max(1) as f64 * 1e3 })
    );
    Ok(0)
}

/// Sequential run (read + decode + preprocess, then the model, batch by batch)
/// to split the time, then a pipelined run for throughput.
pub fn embed(g: &Global, a: &BenchEmbedArgs) -> anyhow::Result<i32> {
    let reg = open_registry(g.models.as_deref())?;
    let embedder = Embedder::load(reg.get(a.model.as_deref())?, &embed_options(g, a.sessions, crate::embed::available_cores()))?;
    let batch = a.batch.max(1);
    let (seq_s, prep_s, infer_s) = sequential(&embedder, &a.images, batch)?;
    let pipelined = if a.workers > 0 { pipelined(&embedder, &a.images, batch, a.workers, a.sessions) } else { serde_json::Value::Null };
    let n = a.images.len();
    let report = serde_json::json!({
        "model": embedder.name(),
        "batch": batch,
        "images": n,
        "sequential": { "seconds": seq_s, "images_per_s": n as f64 / seq_s, "preprocess_share": prep_s / (prep_s + infer_s), "infer_s": infer_s },
        "pipelined": pipelined,
    });
    println!("{report}");
    Ok(0)
}

/// (total, preprocessing, inference) seconds of a sequential run, after a warm-up.
fn sequential(embedder: &Embedder, images: &[PathBuf], batch: usize) -> anyhow::Result<(f64, f64, f64)> {
    let warm = std::fs::read(images.first().ok_or_else(|| anyhow::anyhow!("no images"))?)?;
    for _ in 0..2 {
        embedder.embed_bytes(&warm, "warm-up")?;
    }
    let mut resizer = fast_image_resize::Resizer::new();
    let (mut prep_s, mut infer_s) = (0.0f64, 0.0f64);
    let t0 = Instant::now();
    for chunk in images.chunks(batch) {
        let t = Instant::now();
        let mut buf = Vec::with_capacity(chunk.len() * embedder.preprocessor().tensor_len());
        for p in chunk {
            let bytes = std::fs::read(p)?;
            buf.extend(embedder.prepare(&bytes, &p.display().to_string(), &mut resizer)?);
        }
        let t2 = Instant::now();
        embedder.embed_tensors(&buf, chunk.len())?;
        prep_s += (t2 - t).as_secs_f64();
        infer_s += t2.elapsed().as_secs_f64();
    }
    Ok((t0.elapsed().as_secs_f64(), prep_s, infer_s))
}

fn pipelined(embedder: &Embedder, images: &[PathBuf], batch: usize, workers: usize, sessions: usize) -> serde_json::Value {
    let t0 = Instant::now();
    let mut n = 0usize;
    let opts = PipelineOptions { workers, batch_size: batch, inference_threads: sessions };
    run_pipeline(
        embedder,
        images.iter(),
        &opts,
        |p, r| match std::fs::read(p).map_err(anyhow::Error::from).and_then(|b| Ok(embedder.prepare(&b, "", r)?)) {
            Ok(t) => Prepared::Tensor((), t),
            Err(_) => Prepared::Done(()),
        },
        |(), r| n += usize::from(matches!(r, Some(Ok(_)))),
    );
    let s = t0.elapsed().as_secs_f64();
    serde_json::json!({ "images": n, "seconds": s, "images_per_s": n as f64 / s, "workers": workers, "sessions": sessions })
}
