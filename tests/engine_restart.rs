//! An engine restart needs no person. After `scripts/cluster.sh down` and
//! `up` with the data kept (as docs/operations.md describes), Milvus loads
//! the collection again by itself, which takes a while: a replica that was
//! running answers 503 with `Retry-After` meanwhile (never 500) and recovers
//! by itself, and one started right after `up` waits for the load and serves.
//!
//! A test binary of its own: it restarts the test engines, and cargo runs
//! test binaries one after another, so no other test is using them then.

use std::path::PathBuf;
use std::process::Command;

mod common;

use common::replica::{at, photo, replica, send, Replica};
use common::{available, eventually, root, SharedDb};

/// The engines' folder of `scripts/cluster.sh` (the one `./scripts/test.sh` starts).
fn cluster_dir() -> PathBuf {
    std::env::var_os("KNOCKOFF_TEST_CLUSTER_DIR").map_or_else(|| root().join(".cluster"), PathBuf::from)
}

fn cluster(cmd: &str) {
    let out = Command::new(root().join("scripts/cluster.sh")).args([cmd, cluster_dir().to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "cluster.sh {cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Polls lookups until one finds `product`; every answer before it is a 503
/// with `Retry-After`, never a server error.
fn recovers(r: &Replica, product: &str, who: &str) {
    eventually(&format!("{who} answers again"), || {
        let (st, retry, j) = send(ureq::post(&at(r, "/v1/lookup")), Some(("image/jpeg", &photo("rocket"))));
        assert!(st == 200 || (st == 503 && retry.is_some()), "{who}: {st} (Retry-After {retry:?}) while the engines restart: {j}");
        st == 200 && j["matches"][0]["product_id"] == product
    });
    assert_eq!(send(ureq::get(&at(r, "/readyz")), None).0, 200, "{who} is ready once it answers");
}

#[test]
fn after_the_engines_restart_replicas_recover_and_start_without_a_person() {
    let Some(db) = SharedDb::create("restart") else { return };
    let how = "./scripts/test.sh starts the engines with scripts/cluster.sh in .cluster/ (or set KNOCKOFF_TEST_CLUSTER_DIR)";
    if !available("the test engines' folder", cluster_dir().join("milvus-port").exists(), how) {
        return;
    }
    let env = db.env();
    let running = replica(&env);
    let body = br#"{"label": "counterfeit"}"#;
    assert_eq!(send(ureq::put(&at(&running, "/v1/products/rocket-toy")), Some(("application/json", body))).0, 201, "created");
    assert_eq!(send(ureq::post(&at(&running, "/v1/products/rocket-toy/images")), Some(("image/jpeg", &photo("rocket")))).0, 201);
    recovers(&running, "rocket-toy", "the replica before the restart");

    cluster("down");
    cluster("up");
    // Started right after `up`, while Milvus may still be loading.
    let started = replica(&env);
    recovers(&started, "rocket-toy", "a replica started right after `up`");
    recovers(&running, "rocket-toy", "the replica that was running");
}
