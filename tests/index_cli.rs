//! `knockoff index / search / stats / delete / compact` end to end with the
//! real model, including a SIGKILL in the middle of indexing.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use knockoff::catalog::store::sqlite::SqliteStore as Store;

fn knockoff(args: &[&str]) -> std::process::Output {
    Command::new(bin()).current_dir(root()).args(args).output().unwrap()
}

fn pairs(index: &Path) -> Vec<(String, String)> {
    let s = Store::open(index).unwrap();
    let mut v: Vec<(String, String)> = s.live_hashes().unwrap().into_iter().collect();
    v.sort();
    v
}

fn search_json(index: &Path, image: &Path) -> serde_json::Value {
    let out = knockoff(&["search", "--json", "-k", "5", "--index", index.to_str().unwrap(), image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sigkill_mid_index_then_resume_loses_nothing_and_duplicates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let manifest = make_catalog(work.path(), 40, 10);
    let total = 400;

    // Reference: one uninterrupted run.
    let a = work.path().join("a");
    // Durability is the subject here: the index fitting at the end depends on the
    // order images were committed in, which a kill changes, so it is left out.
    let out = knockoff(&["index", manifest.to_str().unwrap(), "--index", a.to_str().unwrap(), "--no-calibrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pairs(&a).len(), total);

    // Interrupted run: SIGKILL once some transactions are committed.
    let b = work.path().join("b");
    let mut child = Command::new(bin())
        .current_dir(root())
        .args(["index", manifest.to_str().unwrap(), "--index", b.to_str().unwrap(), "--batch", "4", "--no-calibrate"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let committed = loop {
        assert!(Instant::now() < deadline, "indexing never committed anything");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the indexing run ended before it was killed: {status}");
        }
        // Only a file the run has begun to write: opening a still empty one would
        // create the schema beside the run's own (and make the run fail).
        if std::fs::metadata(b.join("catalog.sqlite3")).is_ok_and(|m| m.len() > 0) {
            if let Ok(s) = Store::open(&b) {
                if s.meta("model").ok().flatten().is_some() {
                    let n = s.counts().unwrap().images;
                    if n > 0 {
                        break n;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run must have been killed, not finished");
    let before: HashSet<(String, String)> = pairs(&b).into_iter().collect();
    assert!(before.len() as i64 >= committed && before.len() < total, "killed mid-run: {} of {total} committed", before.len());

    // Resume: the same command completes the run.
    let out = knockoff(&["index", manifest.to_str().unwrap(), "--index", b.to_str().unwrap(), "--no-calibrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("skipped {} already indexed", before.len())), "{stderr}");
    let after = pairs(&b);
    assert_eq!(after.len(), total, "every image present");
    assert_eq!(after.iter().collect::<HashSet<_>>().len(), total, "each exactly once");
    assert!(before.iter().all(|p| after.contains(p)), "everything committed before the kill survived");
    assert_eq!(after, pairs(&a));

    // Same answers as the uninterrupted run.
    for q in ["img/p003-04.jpg", "img/p017-09.jpg", "img/p030-00.jpg"] {
        let (ra, rb) = (search_json(&a, &work.path().join(q)), search_json(&b, &work.path().join(q)));
        let ids = |r: &serde_json::Value| -> Vec<String> {
            r["matches"].as_array().unwrap().iter().map(|m| m["product_id"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(ids(&ra), ids(&rb), "query {q}");
        assert_eq!(ids(&ra).len(), 5);
        let sims = |r: &serde_json::Value| -> Vec<f64> {
            r["matches"].as_array().unwrap().iter().map(|m| m["similarity"].as_f64().unwrap()).collect()
        };
        for (x, y) in sims(&ra).iter().zip(sims(&rb)) {
            assert!((x - y).abs() < 1e-4);
        }
    }
    // And the query image's own product comes first.
    let r = search_json(&a, &work.path().join("img/p017-09.jpg"));
    assert_eq!(r["matches"][0]["product_id"], "prod-017");
    assert!(r["matches"][0]["similarity"].as_f64().unwrap() > 0.99);
}

/// After `knockoff index` exits, the store file alone holds the catalog: an
/// operator who backs up by copying `catalog.sqlite3` (without its `-wal`)
/// gets every image, not an empty file knockoff refuses.
#[test]
fn the_store_file_alone_is_complete_after_index_exits() {
    let work = tempfile::tempdir().unwrap();
    let manifest = make_catalog(work.path(), 10, 3);
    let idx = work.path().join("idx");
    let out = knockoff(&["index", manifest.to_str().unwrap(), "--index", idx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let copy = work.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(idx.join("catalog.sqlite3"), copy.join("catalog.sqlite3")).unwrap();
    let s = Store::open(&copy).expect("the copied store file opens");
    assert_eq!(s.counts().unwrap().images, 30);
    assert_eq!(pairs(&copy), pairs(&idx));
}

#[test]
fn bad_rows_and_images_are_reported_never_abort_and_deletes_work() {
    let work = tempfile::tempdir().unwrap();
    let manifest = make_catalog(work.path(), 6, 3);
    std::fs::write(work.path().join("img/empty.jpg"), b"").unwrap();
    std::fs::write(work.path().join("img/notes.jpg"), b"not an image at all").unwrap();
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("img/empty.jpg,prod-900,authentic,,,\n");
    text.push_str("img/notes.jpg,prod-901,authentic,,,\n");
    text.push_str("img/missing.jpg,prod-902,authentic,,,\n");
    text.push_str("img/p000-00.jpg,prod-903,genuine,,,\n");
    std::fs::write(&manifest, text).unwrap();
    let idx = work.path().join("idx");
    let out = knockoff(&["index", manifest.to_str().unwrap(), "--index", idx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "failures give a non-zero exit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("indexed 18 new images") && stderr.contains("4 failed"), "{stderr}");
    let errors = std::fs::read_to_string(idx.join("ingest-errors.csv")).unwrap();
    assert!(errors.contains("empty.jpg") && errors.contains("file is empty"), "{errors}");
    assert!(errors.contains("notes.jpg") && errors.contains("not an image"), "{errors}");
    assert!(errors.contains("missing.jpg") && errors.contains("cannot read"), "{errors}");
    assert!(errors.contains("line 23") && errors.contains("genuine"), "{errors}");

    let stats = |idx: &Path| -> serde_json::Value {
        let out = knockoff(&["stats", "--json", "--index", idx.to_str().unwrap()]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = stats(&idx);
    assert_eq!((s["products"].as_i64(), s["images"].as_i64(), s["tombstones"].as_i64()), (Some(6), Some(18), Some(0)));
    assert_eq!(s["model"], "efficientnet-lite0");

    // Delete a product: gone from search, before and after compaction.
    let q = work.path().join("img/p002-01.jpg");
    assert_eq!(search_json(&idx, &q)["matches"][0]["product_id"], "prod-002");
    let out = knockoff(&["delete", "--index", idx.to_str().unwrap(), "--product", "prod-002"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = search_json(&idx, &q);
    assert!(r["matches"].as_array().unwrap().iter().all(|m| m["product_id"] != "prod-002"));
    // 3 of 18 = 17% tombstones: below the 20% default, so not compacted yet.
    assert_eq!(stats(&idx)["tombstones"].as_i64(), Some(3));
    let out = knockoff(&["compact", "--index", idx.to_str().unwrap()]);
    assert!(out.status.success());
    let s = stats(&idx);
    assert_eq!((s["tombstones"].as_i64(), s["graph_points"].as_i64()), (Some(0), Some(15)));
    let r = search_json(&idx, &q);
    assert!(r["matches"].as_array().unwrap().iter().all(|m| m["product_id"] != "prod-002"));
    // Deleting it again succeeds with nothing to do (a retried delete); a product never indexed fails.
    let out = knockoff(&["delete", "--index", idx.to_str().unwrap(), "--product", "prod-002"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("deleted already"), "{out:?}");
    let out = knockoff(&["delete", "--index", idx.to_str().unwrap(), "--product", "prod-never"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown product"), "{out:?}");
    // A folder source: one sub-folder per product.
    let folder = work.path().join("folder");
    for p in ["shoe-a", "shoe-b"] {
        std::fs::create_dir_all(folder.join(p)).unwrap();
    }
    std::fs::copy(work.path().join("img/p000-00.jpg"), folder.join("shoe-a/1.jpg")).unwrap();
    std::fs::copy(work.path().join("img/p001-00.jpg"), folder.join("shoe-b/1.jpg")).unwrap();
    let idx2 = work.path().join("idx2");
    let out =
        knockoff(&["index", folder.to_str().unwrap(), "--index", idx2.to_str().unwrap(), "--label", "counterfeit", "--brand", "Fake"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = search_json(&idx2, &work.path().join("img/p001-00.jpg"));
    assert_eq!(r["matches"][0]["product_id"], "shoe-b");
    assert_eq!(r["matches"][0]["label"], "counterfeit");
    assert_eq!(r["matches"][0]["brand"], "Fake");
}

#[test]
fn unreadable_sources_fail_clearly_and_write_nothing() {
    let work = tempfile::tempdir().unwrap();
    let idx = work.path().join("idx");
    let bad = work.path().join("bad.csv");
    std::fs::write(&bad, "path,sku\na.jpg,1\n").unwrap();
    let out = knockoff(&["index", bad.to_str().unwrap(), "--index", idx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CSV header lacks 'image'"));
    let out = knockoff(&["index", work.path().join("nope.csv").to_str().unwrap(), "--index", idx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let s = Store::open(&idx).unwrap();
    assert_eq!(s.counts().unwrap().images, 0);
}

/// A new index where no row succeeds: every row's error is reported and
/// written to the errors file, the exit status is 1, and the index left
/// behind is a valid empty one (no "dump: unexpected error").
#[test]
fn a_source_where_no_row_succeeds_reports_every_row_and_leaves_a_valid_index() {
    let work = tempfile::tempdir().unwrap();
    let coffee = fixture("photos/coffee.jpg");
    let rock = fixture("photos/rocket.jpg");
    // Control characters in ids, a conflicting label, a non-UTF-8 line, a missing label.
    let mut bytes = format!(
        "image,product_id,label\n{c},\"tab\tid\",authentic\n{c},\"nul\0id\",authentic\n{r},same,authentic\n{r},same,counterfeit\n",
        c = coffee.display(),
        r = rock.display()
    )
    .into_bytes();
    bytes.extend_from_slice(format!("{},caf\u{e9}", coffee.display()).as_bytes());
    bytes.pop(); // drop the last byte of 'é' (0xA9): the line is no longer UTF-8
    bytes.extend_from_slice(b",authentic\n");
    bytes.extend_from_slice(format!("{},{},authentic\n", coffee.display(), "y".repeat(201)).as_bytes());
    let manifest = work.path().join("bad.csv");
    std::fs::write(&manifest, &bytes).unwrap();
    let idx = work.path().join("idx");
    let out = knockoff(&["index", manifest.to_str().unwrap(), "--index", idx.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("indexed 1 new images") && stderr.contains("5 failed"), "{stderr}");
    let errors = std::fs::read_to_string(idx.join("ingest-errors.csv")).unwrap();
    for want in [
        "line 2",
        "line 3",
        "control character",
        "line 5",
        "labelled authentic on line 4",
        "line 6",
        "not valid UTF-8",
        "line 7",
        "longer than 200",
    ] {
        assert!(errors.contains(want), "{want}: {errors}");
    }
    // Only rows that fail: the same, and the index is still a valid (empty) one.
    let none = work.path().join("none.csv");
    std::fs::write(&none, format!("image,product_id\n{},p1\n{},p2\n", coffee.display(), rock.display())).unwrap();
    let idx2 = work.path().join("idx2");
    let out = knockoff(&["index", none.to_str().unwrap(), "--index", idx2.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 failed") && !stderr.contains("unexpected error"), "{stderr}");
    assert!(std::fs::read_to_string(idx2.join("ingest-errors.csv")).unwrap().contains("'label' is empty"));
    let out = knockoff(&["stats", "--json", "--index", idx2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn shared_backend_settings_are_used_or_refused_clearly_without_echoing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.current_dir(root()).env_remove("KNOCKOFF_STORE").env_remove("KNOCKOFF_VECTORS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.args(["stats", "--index", dir.path().to_str().unwrap()]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    // One setting without the other.
    let (code, err) = run(&[("KNOCKOFF_STORE", "postgres://knockoff:s3cret-pw@127.0.0.1:5544/knockoff")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("KNOCKOFF_VECTORS") && err.contains("needs both"), "{err}");
    // Both, but nothing listens there: one sentence naming the setting and the address.
    let (code, err) = run(&[
        ("KNOCKOFF_STORE", "postgres://knockoff:s3cret-pw@127.0.0.1:9/knockoff"),
        ("KNOCKOFF_VECTORS", "milvus://root:pw2@127.0.0.1:9"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("KNOCKOFF_STORE") && err.contains("127.0.0.1:9/knockoff") && err.contains("cannot reach PostgreSQL"), "{err}");
    assert!(!err.contains("s3cret-pw") && !err.contains("pw2"), "{err}");
    // Nothing was written where the embedded index would be.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A mistyped index folder is refused, naming it, by every command that reads
/// a catalog (and nothing is created there): it never serves an empty catalog
/// whose every lookup is `no_match`. `serve --create` starts an empty one on purpose.
#[test]
fn a_folder_without_a_catalog_is_refused_not_created() {
    let work = tempfile::tempdir().unwrap();
    let typo = work.path().join("knockof");
    let photo = fixture("photos/coffee.jpg");
    let t = typo.to_str().unwrap();
    for args in [
        vec!["serve", "--index", t, "--addr", "127.0.0.1:0"],
        vec!["search", "--index", t, photo.to_str().unwrap()],
        vec!["stats", "--index", t],
        vec!["compact", "--index", t],
        vec!["delete", "--index", t, "--product", "some-product"],
    ] {
        let out = knockoff(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(t) && err.contains("holds no catalog") && err.contains("--create"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} created {t}");
    }
    // An address another process holds: the message names it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = knockoff(&["serve", "--create", "--index", t, "--addr", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    drop(taken);
    // On purpose: an empty catalog, served.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = Command::new(bin())
        .current_dir(root())
        .args(["serve", "--create", "--index", t, "--addr", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while ureq::get(&format!("http://{addr}/v1/stats")).call().is_err() {
        assert!(Instant::now() < deadline, "serve --create did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let get = |p: &str| -> serde_json::Value {
        serde_json::from_str(&ureq::get(&format!("http://{addr}{p}")).call().unwrap().into_string().unwrap()).unwrap()
    };
    let (stats, ready) = (get("/v1/stats"), get("/readyz"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(stats["images"], 0);
    // Ready (it was asked for), and it says what that means.
    assert!(ready["ready"] == true && ready["note"].as_str().unwrap_or("").contains("catalog is empty"), "{ready}");
    assert!(typo.join("catalog.sqlite3").exists());
}

/// `migrate` takes the shared backend from the environment (`--to-shared`,
/// `--from-shared`), so the engines' passwords stay out of the process list;
/// URLs with passwords on the command line still work, with a warning.
#[test]
fn migrate_takes_the_engines_passwords_from_the_environment() {
    let work = tempfile::tempdir().unwrap();
    let from = work.path().join("from");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.current_dir(root()).env_remove("KNOCKOFF_STORE").env_remove("KNOCKOFF_VECTORS").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, err) = run(&["migrate", "--from", from.to_str().unwrap(), "--to-shared"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("KNOCKOFF_STORE and KNOCKOFF_VECTORS"), "{err}");
    // From the environment: nothing listens there, and the message names the address only.
    let env = [
        ("KNOCKOFF_STORE", "postgres://knockoff:env-secret-1@127.0.0.1:9/k"),
        ("KNOCKOFF_VECTORS", "milvus://root:env-secret-2@127.0.0.1:9"),
    ];
    let index = make_catalog(work.path(), 2, 1);
    assert_eq!(knockoff(&["index", index.to_str().unwrap(), "--index", from.to_str().unwrap(), "--no-calibrate"]).status.code(), Some(0));
    let (code, err) = run(&["migrate", "--from", from.to_str().unwrap(), "--to-shared"], &env);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("127.0.0.1:9") && !err.contains("env-secret") && !err.contains("warning"), "{err}");
    let (code, err) = run(&["migrate", "--from", from.to_str().unwrap(), "--to-store", env[0].1, "--to-vectors", env[1].1], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("visible to every local user") && !err.contains("env-secret"), "{err}");
}
