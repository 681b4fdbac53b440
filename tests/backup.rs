//! `knockoff backup` / `restore` on both backends, taken while lookups and
//! an indexing job run: the backup holds the catalog as of one moment (the
//! original's rows up to some image, nothing half-written), restores into an
//! empty place with the backup's counts, and a backup of the quiet catalog
//! restores to one whose lookups equal the original's on 50 photos. A
//! partial, damaged or foreign backup, a non-empty destination and an
//! occupied target are refused with a message that says so.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod common;

use common::replica::{at, job, replica, send, until, Replica};
use common::{bin, make_catalog, make_shots, root, SharedDb};
use knockoff::catalog::Location;

/// Runs `knockoff ARGS` with `env`; (success, stderr, stdout as JSON or null).
fn knockoff(args: &[&str], env: &[(&str, String)]) -> (bool, String, serde_json::Value) {
    let mut cmd = Command::new(bin());
    cmd.current_dir(root()).args(args).env_remove("KNOCKOFF_STORE").env_remove("KNOCKOFF_VECTORS").env_remove("KNOCKOFF_INDEX");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), json)
}

/// The live images of the catalog at `env`, as (id, sha256), in id order.
fn images(loc: &Location) -> Vec<(i64, String)> {
    let records = loc.records().unwrap().expect("a catalog");
    let model = records.meta("model").unwrap().unwrap();
    records.export_images(&model, 0, i64::MAX).unwrap().into_iter().map(|i| (i.id, i.sha256)).collect()
}

/// Top match and confidences of each photo: (product, similarity, confidence, `p_counterfeit`).
fn lookups(r: &Replica, photos: &[Vec<u8>]) -> Vec<(String, f64, f64, f64)> {
    photos
        .iter()
        .map(|p| {
            let (st, _, j) = send(ureq::post(&at(r, "/v1/lookup")), Some(("image/jpeg", p)));
            assert_eq!(st, 200, "{j}");
            let m = &j["matches"][0];
            let f = |v: &serde_json::Value| v.as_f64().unwrap_or(-1.0);
            (m["product_id"].as_str().unwrap_or("").to_string(), f(&m["similarity"]), f(&m["confidence"]), f(&j["p_counterfeit"]))
        })
        .collect()
}

fn absolute(manifest: &Path) -> String {
    let dir = manifest.parent().unwrap();
    std::fs::read_to_string(manifest).unwrap().replace("img/", &format!("{}/img/", dir.display()))
}

/// The whole scenario for one backend: `source` and `target` are the
/// settings of an empty catalog each (a folder or a shared database).
fn backup_during_a_job_restores(source: &[(&str, String)], source_at: &Location, targets: [(&[(&str, String)], Location); 2]) {
    let work = tempfile::tempdir().unwrap();
    // 50 products, two photos each in the catalog; a third of each is a query.
    let all = make_catalog(&work.path().join("cat"), 50, 3);
    let text = std::fs::read_to_string(&all).unwrap();
    let (indexed, queried): (Vec<&str>, Vec<&str>) = text.lines().skip(1).partition(|l| !l.contains("-02.jpg"));
    let manifest = work.path().join("cat/indexed.csv");
    std::fs::write(&manifest, format!("image,product_id,label,brand,name,category\n{}\n", indexed.join("\n"))).unwrap();
    let photos: Vec<Vec<u8>> =
        queried.iter().map(|l| std::fs::read(work.path().join("cat").join(l.split(',').next().unwrap())).unwrap()).collect();
    assert_eq!(photos.len(), 50);
    let (ok, err, _) = knockoff(&["index", manifest.to_str().unwrap()], source);
    assert!(ok, "{err}");

    let original = replica(source);
    let before = images(source_at).len();
    let more = absolute(&make_shots(&work.path().join("more"), 100, 3));
    let (st, _, j) = send(ureq::post(&at(&original, "/v1/jobs/index")), Some(("text/csv", more.as_bytes())));
    assert_eq!(st, 202, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    until("the job has indexed some photos", || job(&original, &id)["counts"]["indexed"].as_u64().unwrap_or(0) > 0);

    // Lookups go on all along.
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let during = work.path().join("during");
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let (st, _, j) = send(ureq::post(&at(&original, "/v1/lookup")), Some(("image/jpeg", &photos[0])));
                assert_eq!(st, 200, "a lookup during the backup: {j}");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
        let (ok, err, m) = knockoff(&["backup", during.to_str().unwrap()], source);
        stop.store(true, Ordering::Relaxed);
        assert!(ok, "backup during a job: {err}");
        assert!(m["images"].as_u64().unwrap() >= before as u64, "{m}");
    });
    assert!(answered.load(Ordering::Relaxed) > 0);
    until("the job is done", || job(&original, &id)["status"] == "done");

    // Restored mid-job: exactly the original's images up to the last one it holds.
    let [(mid_env, mid_at), (quiet_env, quiet_at)] = targets;
    let (ok, err, report) = knockoff(&["restore", during.to_str().unwrap()], mid_env);
    assert!(ok, "restore: {err}");
    let got = images(&mid_at);
    let last = got.last().unwrap().0;
    let want: Vec<_> = images(source_at).into_iter().filter(|(i, _)| *i <= last).collect();
    assert_eq!(got, want, "the backup is the catalog as of one moment");
    assert_eq!(report["searchable"].as_u64(), Some(got.len() as u64), "{report}");

    // A review case, decided: it goes along with the backup.
    let (st, _, j) = send(ureq::post(&at(&original, "/v1/lookup?seller_id=s1")), Some(("image/jpeg", &photos[0])));
    let case = format!("/v1/cases/{}", j["case_id"].as_i64().unwrap_or_else(|| panic!("{st} {j}")));
    let body = br#"{"decision": "not_in_catalog", "note": "kept by the backup"}"#;
    let (st, _, j) =
        send(ureq::post(&at(&original, &format!("{case}/decision"))).set("If-Match", "\"1\""), Some(("application/json", body)));
    assert_eq!(st, 200, "{j}");

    // A backup of the quiet catalog restores to equal lookups.
    let quiet = work.path().join("quiet");
    let (ok, err, _) = knockoff(&["backup", quiet.to_str().unwrap()], source);
    assert!(ok, "{err}");
    let (ok, err, _) = knockoff(&["restore", quiet.to_str().unwrap()], quiet_env);
    assert!(ok, "{err}");
    assert_eq!(images(&quiet_at), images(source_at), "a backup of the quiet catalog holds all of it");
    let restored = replica(quiet_env);
    let (st, _, j) = send(ureq::get(&at(&restored, &case)), None);
    assert_eq!(
        (st, j["decision"]["note"].as_str(), j["audit"].as_array().map(Vec::len)),
        (200, Some("kept by the backup"), Some(1)),
        "{j}"
    );
    let (a, b) = (lookups(&original, &photos), lookups(&restored, &photos));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0, "top product");
        assert!((x.1 - y.1).abs() < 1e-4 && (x.2 - y.2).abs() < 1e-4 && (x.3 - y.3).abs() < 1e-4, "{x:?} vs {y:?}");
    }

    // Restoring onto a catalog is refused; so is backing up into a folder that holds files.
    let (ok, err, _) = knockoff(&["restore", quiet.to_str().unwrap()], source);
    assert!(!ok && err.contains("already holds a catalog"), "{err}");
    let (ok, err, _) = knockoff(&["backup", quiet.to_str().unwrap()], source);
    assert!(!ok && err.contains("not empty"), "{err}");
}

#[test]
fn a_folder_backup_taken_during_a_job_restores_to_the_same_lookups() {
    let work = tempfile::tempdir().unwrap();
    let place = |name: &str| {
        let dir = work.path().join(name);
        (vec![("KNOCKOFF_INDEX", dir.to_str().unwrap().to_string())], Location::Folder(dir))
    };
    let ((src, src_at), (mid, mid_at), (quiet, quiet_at)) = (place("a"), place("mid"), place("quiet"));
    backup_during_a_job_restores(&src, &src_at, [(&mid, mid_at), (&quiet, quiet_at)]);
}

#[test]
fn a_shared_backup_taken_during_a_job_restores_to_the_same_lookups() {
    let (Some(a), Some(mid), Some(quiet)) = (SharedDb::create("bka"), SharedDb::create("bkm"), SharedDb::create("bkq")) else { return };
    let at = |db: &SharedDb| Location::Shared(db.spec.clone());
    backup_during_a_job_restores(&a.env(), &at(&a), [(&mid.env(), at(&mid)), (&quiet.env(), at(&quiet))]);
}

#[test]
fn partial_damaged_and_foreign_backups_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let index = work.path().join("index");
    let env = [("KNOCKOFF_INDEX", index.to_str().unwrap().to_string())];
    let (ok, err, _) = knockoff(&["index", make_catalog(&work.path().join("cat"), 4, 1).to_str().unwrap()], &env);
    assert!(ok, "{err}");
    let good = work.path().join("good");
    let (ok, err, m) = knockoff(&["backup", good.to_str().unwrap()], &env);
    assert!(ok, "{err}");
    assert_eq!((m["products"].as_u64(), m["images"].as_u64()), (Some(4), Some(4)), "{m}");
    // The store file of a backup is complete by itself.
    assert!(!good.join("catalog.sqlite3-wal").exists());
    let restore = |src: &Path, to: &str| {
        knockoff(&["restore", src.to_str().unwrap()], &[("KNOCKOFF_INDEX", work.path().join(to).to_str().unwrap().to_string())])
    };
    // An index folder is not a backup; neither is an interrupted one (no backup.json).
    let (ok, err, _) = restore(&index, "r1");
    assert!(!ok && err.contains("not a complete knockoff backup"), "{err}");
    // A damaged file is named.
    let damaged = work.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for f in std::fs::read_dir(&good).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, damaged.join(f.file_name().unwrap())).unwrap();
    }
    let mut bytes = std::fs::read(damaged.join("catalog.sqlite3")).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(damaged.join("catalog.sqlite3"), bytes).unwrap();
    let (ok, err, _) = restore(&damaged, "r2");
    assert!(!ok && err.contains("catalog.sqlite3 differs"), "{err}");
    // Another program's manifest.
    std::fs::write(damaged.join("backup.json"), r#"{"format": "other/9"}"#).unwrap();
    let (ok, err, _) = restore(&damaged, "r3");
    assert!(!ok && err.contains("not a knockoff backup manifest"), "{err}");
    // Nothing was restored anywhere by the refusals.
    for r in ["r1", "r2", "r3"] {
        assert!(!work.path().join(r).exists(), "{r}");
    }
    // The good one restores.
    let (ok, err, report) = restore(&good, "r4");
    assert!(ok, "{err}");
    assert_eq!(report["searchable"].as_u64(), Some(4), "{report}");
}
