//! The embedded catalog and vector index: durability, dumps, deletes,
//! compaction, projections and concurrency, on synthetic vectors (no model
//! needed). What both backends must do is in `backends.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use knockoff::catalog::{Catalog, CatalogError, CatalogOptions, Hook, NewImage, OpenReport, Phase};
use knockoff::search::{search_products, SearchRequest};

mod common;

use common::synth::{images, opts, product, vector, DIM};

/// Runs `f` on a thread of its own and waits for it; the deadline (5
/// minutes) only catches a hang: here, `f` waiting for a lock the caller holds.
fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(300)).unwrap_or_else(|_| panic!("{what}: did not finish while the catalog held its writer lock"))
}

/// A hook that runs `f` (once) when the catalog reaches `phase`.
fn once_at(phase: Phase, f: impl FnOnce() + Send + 'static) -> Hook {
    let f = std::sync::Mutex::new(Some(f));
    Arc::new(move |p: Phase| {
        if p == phase {
            if let Some(f) = f.lock().unwrap().take() {
                f();
            }
        }
    })
}

fn top_ids(cat: &Catalog, q: &[f32], k: usize) -> Vec<String> {
    search_products(cat, q, &SearchRequest { k, ..Default::default() }).unwrap().iter().map(|m| m.product.product_id.clone()).collect()
}

#[test]
fn dump_is_reused_caught_up_and_rebuilt_when_damaged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
        assert!(matches!(report, OpenReport::Rebuilt { points: 0, .. }));
        cat.add_images(&images(20, 2)).unwrap();
        cat.persist().unwrap();
        // Committed after the dump: must be caught up from the store.
        cat.add_images(&images(25, 2)[40..]).unwrap();
    }
    let expected = {
        let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
        assert_eq!(report, OpenReport::Loaded { points: 50, caught_up: 10 });
        top_ids(&cat, &vector(22), 5)
    };
    assert_eq!(expected[0], "p22");

    let vdir = dir.path().join("vectors/test-model");
    let part = |suffix: &str| {
        std::fs::read_dir(&vdir).unwrap().flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with(suffix)).unwrap()
    };
    let flip_middle_byte = |path: &std::path::Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(path, &bytes).unwrap();
    };
    // Damage the exact rows (read at open): detected by checksum, rebuilt from the store, same answers.
    flip_middle_byte(&part(".hnsw.exact"));
    {
        let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
        match report {
            OpenReport::Rebuilt { points: 50, reason } => assert!(reason.contains("damaged"), "{reason}"),
            other => panic!("expected a rebuild, got {other:?}"),
        }
        assert_eq!(top_ids(&cat, &vector(22), 5), expected);
    }
    // The rebuild wrote a fresh dump; now truncate its flat graph.
    let flat = part(".hnsw.flat");
    let len = std::fs::metadata(&flat).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&flat).unwrap().set_len(len / 3).unwrap();
    {
        let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
        assert!(matches!(report, OpenReport::Rebuilt { points: 50, .. }), "{report:?}");
        assert_eq!(top_ids(&cat, &vector(22), 5), expected);
    }
    // The hnsw_rs part is read only when a write needs it: damage there does
    // not stop queries, and the first write rebuilds that part from the index's own vectors.
    flip_middle_byte(&part(".hnsw.data"));
    {
        let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
        assert_eq!(report, OpenReport::Loaded { points: 50, caught_up: 0 });
        assert_eq!(top_ids(&cat, &vector(22), 5), expected);
        cat.add_images(&images(31, 2)[60..]).unwrap();
        assert_eq!(top_ids(&cat, &vector(30), 1), vec!["p30".to_string()]);
        assert_eq!(top_ids(&cat, &vector(22), 5), expected);
        cat.persist().unwrap();
    }
    let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
    assert_eq!(report, OpenReport::Loaded { points: 52, caught_up: 0 });
    assert_eq!(top_ids(&cat, &vector(30), 1), vec!["p30".to_string()]);
    drop(cat);
    // A missing marker is a rebuild too.
    std::fs::remove_file(vdir.join("CURRENT.json")).unwrap();
    let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
    assert!(matches!(report, OpenReport::Rebuilt { points: 52, .. }));
    assert_eq!(cat.stats().unwrap().counts.images, 52, "no data lost");
}

#[test]
fn corrupt_store_is_a_clear_error_not_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
        cat.add_images(&images(30, 4)).unwrap();
    }
    let path = dir.path().join("catalog.sqlite3");
    // Fold the WAL into the main file first so the damage hits real pages.
    {
        let c = rusqlite_checkpoint(&path);
        drop(c);
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8192);
    let end = bytes.len() - 1024;
    for b in &mut bytes[4096..end] {
        *b = b.wrapping_mul(17).wrapping_add(91);
    }
    std::fs::write(&path, &bytes).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Catalog::open(dir.path(), opts()).err().expect("a corrupt store must not open");
    assert!(matches!(err, CatalogError::Corrupt { .. } | CatalogError::Store { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("catalog.sqlite3"), "{msg}");
    assert!(std::fs::read(&path).unwrap() == before, "the damaged store is left as it was");
}

fn rusqlite_checkpoint(path: &std::path::Path) -> knockoff::catalog::store::sqlite::SqliteStore {
    let s = knockoff::catalog::store::sqlite::SqliteStore::open(path.parent().unwrap()).unwrap();
    s.set_meta("checkpoint", "1").unwrap();
    drop(s);
    // Closing the last connection checkpoints the WAL into the database file.
    knockoff::catalog::store::sqlite::SqliteStore::open(path.parent().unwrap()).unwrap()
}

#[test]
fn model_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Catalog::open(dir.path(), opts()).unwrap());
    let other = CatalogOptions { model: "other".into(), ..opts() };
    assert!(matches!(Catalog::open(dir.path(), other), Err(CatalogError::ModelMismatch { .. })));
}

#[test]
fn an_index_refuses_vectors_from_a_changed_model() {
    let dir = tempfile::tempdir().unwrap();
    drop(Catalog::open(dir.path(), opts()).unwrap());
    let changed = CatalogOptions { fingerprint: Some("fp-2".into()), ..opts() };
    let err = Catalog::open(dir.path(), changed).err().expect("refused");
    assert!(matches!(err, CatalogError::ModelChanged { .. }), "{err}");
    assert!(err.to_string().contains("re-index"), "{err}");
    assert!(Catalog::open(dir.path(), opts()).is_ok(), "the same model still opens");
}

#[test]
fn deleted_products_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let o = CatalogOptions { auto_compact_share: 0.9, ..opts() };
    let (cat, _) = Catalog::open(dir.path(), o.clone()).unwrap();
    cat.add_images(&images(30, 3)).unwrap();
    let q = vector(5);
    assert_eq!(top_ids(&cat, &q, 1), vec!["p5"]);
    assert_eq!(cat.delete_product("p5").unwrap(), 3);
    let gone = |cat: &Catalog| {
        let ids = top_ids(cat, &q, 30);
        assert_eq!(ids.len(), 29);
        assert!(!ids.contains(&"p5".to_string()));
    };
    gone(&cat);
    assert!(cat.stats().unwrap().counts.tombstones == 3);
    // (What deleting one image does on both backends is in backends.rs; here: the tombstones it leaves.)
    let img = search_products(&cat, &vector(6), &SearchRequest { k: 1, ..Default::default() }).unwrap()[0].best.image_id;
    cat.delete_image(img).unwrap();
    cat.persist().unwrap();
    drop(cat);
    // After restart (dump loaded), still gone.
    let (cat, _) = Catalog::open(dir.path(), o.clone()).unwrap();
    gone(&cat);
    // After compaction, still gone, and the tombstones are purged.
    assert_eq!(cat.compact().unwrap(), 4);
    gone(&cat);
    let s = cat.stats().unwrap();
    assert_eq!((s.counts.tombstones, s.graph_points, s.counts.images), (0, 86, 86));
    drop(cat);
    let (cat, report) = Catalog::open(dir.path(), o).unwrap();
    assert!(matches!(report, OpenReport::Loaded { points: 86, caught_up: 0 }), "{report:?}");
    gone(&cat);
}

#[test]
fn compaction_runs_by_itself_past_the_tombstone_share() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
    cat.add_images(&images(10, 2)).unwrap();
    cat.delete_product("p1").unwrap(); // 2 of 20 = 10%: stays
    assert_eq!(cat.stats().unwrap().graph_points, 20);
    cat.delete_product("p2").unwrap();
    cat.delete_product("p3").unwrap(); // 6 of 20 = 30% > 20%: compacts
    let s = cat.stats().unwrap();
    assert_eq!((s.graph_points, s.counts.tombstones), (14, 0));
}

#[test]
fn searches_run_during_writes_and_see_consistent_results() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
    let cat = Arc::new(cat);
    cat.add_images(&images(10, 2)).unwrap();
    let all = images(300, 4);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let (cat, stop, reads) = (cat.clone(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            let mut seen_max = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let res = search_products(&cat, &vector(3), &SearchRequest { k: 5, ..Default::default() }).unwrap();
                assert_eq!(res[0].product.product_id, "p3", "the committed best match never disappears");
                assert!(res.windows(2).all(|w| w[0].best.similarity >= w[1].best.similarity));
                let count = cat.stats().unwrap().counts.images as usize;
                assert!(count >= seen_max, "the catalog never shrinks while adding");
                seen_max = count;
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // While a write holds the writer lock (images committed, not yet in the
    // graph), a search still runs to the end.
    let searcher = cat.clone();
    cat.set_hook(Some(once_at(Phase::Adding, move || {
        let found = finishes("a search during a write", move || top_ids(&searcher, &vector(3), 1));
        assert_eq!(found, vec!["p3"]);
    })));
    for (i, chunk) in all[20..].chunks(16).enumerate() {
        cat.add_images(chunk).unwrap();
        // Interleave: let a search or two run against each state (a reader
        // that failed or stalled fails the test instead of hanging it).
        let deadline = Instant::now() + Duration::from_secs(300);
        while reads.load(Ordering::Relaxed) < i {
            assert!(!reader.is_finished(), "the reader stopped early (it failed an assertion)");
            assert!(Instant::now() < deadline, "the reader made no progress for 5 minutes");
            std::thread::yield_now();
        }
    }
    cat.set_hook(None);
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 10, "searches ran during the writes");
    // 20 first + 1180 more, of which p5..p9's first two images repeat bytes already indexed.
    assert_eq!(cat.stats().unwrap().counts.images, 1190);
}

/// Photos of a product share its centre plus a nuisance component that all
/// products share in the same few directions, strong enough that raw cosine
/// confuses products; a projection fitted on the catalog removes it.
fn nuisance_images(n: u64, per: u64) -> Vec<NewImage> {
    (0..n)
        .flat_map(|i| {
            (0..per).map(move |j| {
                let c = vector(i);
                // A random mix of three directions shared by every product.
                let coef = vector(5_000_000 + i * 1000 + j);
                let nuisance: Vec<f32> = (0..DIM).map(|d| (0..3).map(|k| coef[k] * 4.0 * vector(9_000_000 + k as u64)[d]).sum()).collect();
                let mut v: Vec<f32> = c.iter().zip(&nuisance).map(|(a, b)| 0.35 * a + b).collect();
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
                for a in &mut v {
                    *a /= norm;
                }
                NewImage {
                    product: product(i),
                    source: format!("mem://{i}/{j}"),
                    sha256: format!("{:064x}", i * 1000 + j),
                    width: 10,
                    height: 10,
                    embedding: v,
                    thumbnail: None,
                    copy_features: None,
                }
            })
        })
        .collect()
}

#[test]
fn projection_is_fitted_persisted_applied_to_new_images_and_removable() {
    let dir = tempfile::tempdir().unwrap();
    let all = nuisance_images(13, 5);
    // Image 4 of products 0..12 is held out as a query; product 12 is added after the fit.
    let (queries, catalog): (Vec<_>, Vec<_>) = all.into_iter().partition(|it| it.source.ends_with("/4") && it.product.product_id != "p12");
    let accuracy = |cat: &Catalog| queries.iter().filter(|q| top_ids(cat, &q.embedding, 1)[0] == q.product.product_id).count();
    let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
    cat.add_images(&catalog[..catalog.len() - 5]).unwrap();
    let raw = accuracy(&cat);
    assert!(raw < queries.len(), "the nuisance must confuse raw cosine (test premise), got {raw}/{}", queries.len());
    let info = cat.fit_projection(knockoff::catalog::FitOptions { shrinkage: 0.1, dims: Some(16) }).unwrap();
    assert_eq!((info.in_dim, info.out_dim, info.n_products), (DIM, 16, 12), "p12 is added after the fit");
    let tuned = accuracy(&cat);
    assert!(tuned > raw, "projection should help: {tuned} vs {raw} of {}", queries.len());
    assert!(dir.path().join("projection.json").is_file());
    assert!(dir.path().join(format!("vectors/test-model@{}", info.id)).is_dir(), "dump named after the projection");
    // Images added after the fit are projected too.
    cat.add_images(&catalog[catalog.len() - 5..]).unwrap();
    let last = &catalog[catalog.len() - 1];
    assert_eq!(top_ids(&cat, &last.embedding, 1)[0], last.product.product_id);
    cat.persist().unwrap();
    drop(cat);

    // Reopened: the projection and its dump are loaded, not rebuilt.
    let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
    assert!(matches!(report, OpenReport::Loaded { points: 53, .. }), "{report:?}");
    assert_eq!(cat.stats().unwrap().projection.map(|p| p.id), Some(info.id.clone()));
    assert_eq!(accuracy(&cat), tuned);
    // Removed: back to raw vectors, stale dumps cleaned up.
    assert!(cat.clear_projection().unwrap());
    assert!(!dir.path().join("projection.json").exists());
    assert!(!dir.path().join(format!("vectors/test-model@{}", info.id)).exists());
    assert!(cat.stats().unwrap().projection.is_none());
    drop(cat);
    // A projection for another model is refused with a clear error, not silently used.
    let p = knockoff::catalog::Projection::fit(
        &catalog.iter().map(|i| i.embedding.as_slice()).collect::<Vec<_>>(),
        &catalog.iter().map(|i| i.product.product_id.len() as i64 + i.source.len() as i64).collect::<Vec<_>>(),
        "other-model",
        knockoff::catalog::FitOptions::default(),
    )
    .unwrap();
    std::fs::write(dir.path().join("projection.json"), p.to_json().unwrap()).unwrap();
    let err = Catalog::open(dir.path(), opts()).err().expect("refused");
    assert!(err.to_string().contains("other-model"), "{err}");
}

/// A restored older copy of the store must not be served with the newer
/// dump: it is rebuilt, and answers like a clean index of the same store.
#[test]
fn a_restored_older_store_is_never_served_with_a_newer_dump() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("catalog.sqlite3");
    let all = images(40, 2);
    {
        let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
        cat.add_images(&all[..20]).unwrap();
        cat.persist().unwrap();
    }
    // Back up the store (with its WAL folded in), index more, persist.
    drop(rusqlite_checkpoint(&store));
    let backup = std::fs::read(&store).unwrap();
    {
        let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
        cat.add_images(&all[20..]).unwrap();
        cat.persist().unwrap();
    }
    // Restore the backup beside the newer dump.
    drop(rusqlite_checkpoint(&store));
    std::fs::write(&store, &backup).unwrap();
    let _ = std::fs::remove_file(dir.path().join("catalog.sqlite3-wal"));
    let _ = std::fs::remove_file(dir.path().join("catalog.sqlite3-shm"));
    let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
    match &report {
        OpenReport::Rebuilt { points: 20, reason } => assert!(reason.contains("does not match the store"), "{reason}"),
        other => panic!("expected a rebuild from the restored store, got {other:?}"),
    }
    assert_eq!(cat.stats().unwrap().graph_points, 20);
    // Every answer names a product the restored store has, like a clean index of it.
    let clean = tempfile::tempdir().unwrap();
    let (fresh, _) = Catalog::open(clean.path(), opts()).unwrap();
    fresh.add_images(&all[..20]).unwrap();
    for q in [3, 7, 15, 25, 33] {
        assert_eq!(top_ids(&cat, &vector(q), 3), top_ids(&fresh, &vector(q), 3), "query {q}");
    }
}

#[test]
fn a_store_file_that_is_not_a_knockoff_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
        cat.add_images(&images(4, 2)).unwrap();
        cat.persist().unwrap();
    }
    let store = dir.path().join("catalog.sqlite3");
    for f in ["catalog.sqlite3-wal", "catalog.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    // A 0-byte store beside an existing vector dump: refused, not a new empty catalog.
    std::fs::write(&store, b"").unwrap();
    let err = Catalog::open(dir.path(), opts()).err().expect("an emptied store must not open");
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0, "left as it was");
    // Another application's SQLite file: refused, never migrated into a catalog.
    std::fs::remove_file(&store).unwrap();
    {
        let c = rusqlite::Connection::open(&store).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").unwrap();
    }
    let before = std::fs::read(&store).unwrap();
    let err = Catalog::open(dir.path(), opts()).err().expect("a foreign SQLite file must not open");
    assert!(err.to_string().contains("not a knockoff catalog store"), "{err}");
    assert!(std::fs::read(&store).unwrap() == before, "the foreign file is left byte for byte as it was");
}

#[test]
fn a_marker_cannot_send_the_loader_outside_the_index_folder() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
        cat.add_images(&images(6, 2)).unwrap();
        cat.persist().unwrap();
    }
    let marker = dir.path().join("vectors/test-model/CURRENT.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    m["basename"] = "../..".into();
    std::fs::write(&marker, serde_json::to_vec(&m).unwrap()).unwrap();
    let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
    match report {
        OpenReport::Rebuilt { points: 12, reason } => assert!(reason.contains("not a dump of this folder"), "{reason}"),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(top_ids(&cat, &vector(4), 1), ["p4"]);
}

/// What a lookup reads from the store (a copy candidate's thumbnail) and
/// what the API reads (a product, the counts) never wait for a writer that
/// holds the store for long, as a compaction does while it rebuilds the
/// graph, or a projection refit while it swaps its graph in.
#[test]
fn reads_do_not_wait_for_a_compaction_or_a_projection_refit() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
    let mut items = images(400, 5);
    for it in &mut items {
        it.thumbnail = Some(vec![0xFF, 0xD8, 0xFF, 0xD9]);
    }
    cat.add_images(&items).unwrap();
    let cat = Arc::new(cat);
    for phase in [Phase::Compacting, Phase::RefitLocked] {
        let reader = cat.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        cat.set_hook(Some(once_at(phase, move || {
            let read = finishes("reads while the writer lock is held", move || {
                let thumb = reader.records().thumbnail(1234).unwrap().is_some();
                let product = reader.records().product("p7").unwrap().is_some();
                let top = top_ids(&reader, &vector(11), 1);
                (thumb, product, reader.stats().unwrap().counts.images, top)
            });
            tx.send(read).unwrap();
        })));
        match phase {
            Phase::Compacting => {
                cat.compact().unwrap();
            }
            _ => {
                cat.fit_projection(knockoff::catalog::FitOptions { shrinkage: 0.1, dims: Some(16) }).unwrap();
            }
        }
        let read = rx.try_recv().unwrap_or_else(|_| panic!("the catalog never reached {phase:?}"));
        assert_eq!(read, (true, true, 2000, vec!["p11".to_string()]), "{phase:?}");
    }
    cat.set_hook(None);
}

/// Writers go on while a projection is fitted and its graph built, waiting
/// only for the swap: what they add meanwhile is in the new graph, what is
/// deleted meanwhile stays out of every answer, and the dump written at the
/// swap matches the store (the next open loads it instead of rebuilding).
#[test]
fn writes_during_a_projection_refit_are_kept_and_wait_for_the_swap_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, _) = Catalog::open(dir.path(), opts()).unwrap();
    cat.add_images(&images(400, 5)).unwrap();
    let cat = Arc::new(cat);
    // Products p400.. (two images each), written while the fit builds its graph.
    let more = images(1000, 2).split_off(800);
    let added = more.len();
    let writer = cat.clone();
    cat.set_hook(Some(once_at(Phase::RefitBuilding, move || {
        finishes("writes while a projection fit builds its graph", move || {
            for chunk in more.chunks(4) {
                writer.add_images(chunk).unwrap();
            }
        });
    })));
    cat.fit_projection(knockoff::catalog::FitOptions::default()).unwrap();
    // A delete while a fit builds its graph (the fit then builds it again, holding the writer lock).
    let deleter = cat.clone();
    cat.set_hook(Some(once_at(Phase::RefitBuilding, move || {
        assert_eq!(finishes("a delete while a projection fit builds its graph", move || deleter.delete_product("p5").unwrap()), 5);
    })));
    cat.fit_projection(knockoff::catalog::FitOptions { shrinkage: 0.2, dims: None }).unwrap();
    cat.set_hook(None);
    assert_eq!(cat.stats().unwrap().counts.images as usize, 2000 - 5 + added);
    let check = |cat: &Catalog| {
        for i in (400..400 + added as u64 / 2).step_by(7).chain([0, 6, 399]) {
            assert_eq!(top_ids(cat, &vector(i), 1), vec![format!("p{i}")], "an image added during the fits is found");
        }
        assert!(!top_ids(cat, &vector(5), 5).contains(&"p5".to_string()), "a deleted product never comes back");
    };
    check(&cat);
    cat.persist().unwrap();
    drop(cat);
    let (cat, report) = Catalog::open(dir.path(), opts()).unwrap();
    assert!(matches!(report, OpenReport::Loaded { .. }), "the dump matches the store: {report:?}");
    check(&cat);
}
