//! Stateless replicas: `knockoff serve` processes on one shared catalog
//! (PostgreSQL + Milvus, started by `./scripts/test.sh` through
//! `scripts/cluster.sh`; under CI their absence fails these tests).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::replica::{at, free_addr, job, photo, replica, send, serve, top, until, Replica};
use common::{make_catalog, SharedDb};

#[test]
fn two_replicas_share_writes_deletes_and_jobs_and_survive_a_kill() {
    let Some(db) = SharedDb::create("replicas_http") else { return };
    let env = db.env();
    let a = replica(&env);
    let mut b = Some(replica(&env));
    let bref = b.as_ref().unwrap();

    // Added through A, found through B (replicas sync every 200 ms; the wait only catches a change that never arrives).
    let body = br#"{"label": "authentic", "brand": "Acme", "name": "Coffee"}"#;
    assert_eq!(send(ureq::put(&at(&a, "/v1/products/coffee-cup")), Some(("application/json", body))).0, 201, "created");
    let (st, _, j) = send(ureq::post(&at(&a, "/v1/products/coffee-cup/images")), Some(("image/jpeg", &photo("coffee"))));
    assert_eq!(st, 201, "{j}");
    assert_eq!(top(&a, &photo("coffee")).as_deref(), Some("coffee-cup"), "the writer reads its own write");
    let lag = until("B sees A's image", || top(bref, &photo("coffee")).as_deref() == Some("coffee-cup"));
    eprintln!("visible on the other replica after {lag:?}");

    // Deleted through B, gone from A.
    assert_eq!(send(ureq::delete(&at(bref, "/v1/products/coffee-cup")), None).0, 200);
    until("A drops the deleted product", || top(&a, &photo("coffee")).as_deref() != Some("coffee-cup"));
    assert_eq!(send(ureq::delete(&at(&a, "/v1/products/coffee-cup")), None).0, 204, "a retried delete, through the other replica");

    // A job submitted to A runs on exactly one replica; killing that one
    // mid-job leaves it to the other, which finishes it: every image once.
    let work = tempfile::tempdir().unwrap();
    let manifest = make_catalog(work.path(), 30, 8);
    let text = std::fs::read_to_string(&manifest).unwrap().replace("img/", &format!("{}/img/", work.path().display()));
    let (st, _, j) = send(ureq::post(&at(&a, "/v1/jobs/index")), Some(("text/csv", text.as_bytes())));
    assert_eq!(st, 202, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    until("the job starts", || job(&a, &id)["counts"]["indexed"].as_u64().unwrap_or(0) > 0);
    let runner = job(bref, &id)["runner"].as_str().unwrap().to_string();
    let pid_of = |r: &Replica| r.child.id().to_string();
    let (killed, survivor) = if runner.ends_with(&format!(":{}", pid_of(&a))) {
        (a, b.take().unwrap())
    } else {
        assert!(runner.ends_with(&format!(":{}", pid_of(bref))), "runner {runner} is one of the replicas");
        (b.take().unwrap(), a)
    };
    assert_ne!(job(&survivor, &id)["status"], "done", "killed mid-job");
    drop(killed); // SIGKILL
    assert_eq!(top(&survivor, &photo("chelsea")), top(&survivor, &photo("chelsea")), "the survivor keeps answering");
    until("the survivor finishes the job", || job(&survivor, &id)["status"] == "done");
    let j = job(&survivor, &id);
    assert!(j["runner"].as_str().unwrap().ends_with(&format!(":{}", pid_of(&survivor))), "{j}");
    let (_, _, stats) = send(ureq::get(&at(&survivor, "/v1/stats")), None);
    assert_eq!(stats["images"], 240, "every image of the job once: {stats}");
    let probe = std::fs::read(work.path().join("img/p007-03.jpg")).unwrap();
    assert_eq!(top(&survivor, &probe).as_deref(), Some("prod-007"));
}

/// A loopback TCP forwarder the test can cut, standing between a replica and an engine.
struct Cable {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cable {
    fn to(target: SocketAddr) -> Cable {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (cut, open) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<TcpStream>::new())));
        let cable = Cable { addr: listener.local_addr().unwrap(), cut: cut.clone(), open: open.clone() };
        std::thread::spawn(move || {
            for inbound in listener.incoming().flatten() {
                if cut.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let Ok(outbound) = TcpStream::connect(target) else { continue };
                for s in [&inbound, &outbound] {
                    open.lock().unwrap().push(s.try_clone().unwrap());
                }
                let (mut i2, mut o2) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                let (mut i1, mut o1) = (inbound, outbound);
                std::thread::spawn(move || std::io::copy(&mut i1, &mut o1));
                std::thread::spawn(move || std::io::copy(&mut o2, &mut i2));
            }
        });
        cable
    }
    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn with_port(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

fn target(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap()).parse().unwrap()
}

#[test]
fn a_lost_engine_is_a_503_with_retry_after_and_the_replica_recovers_by_itself() {
    let Some(db) = SharedDb::create("outage") else { return };
    let (pg, milvus) = (Cable::to(target(&db.spec.store)), Cable::to(target(&db.spec.vectors)));
    let env = [
        ("KNOCKOFF_STORE", with_port(&db.spec.store, pg.addr.port())),
        ("KNOCKOFF_VECTORS", with_port(&db.spec.vectors, milvus.addr.port())),
    ];
    let r = replica(&env);
    let body = br#"{"label": "counterfeit"}"#;
    assert_eq!(send(ureq::put(&at(&r, "/v1/products/rocket-toy")), Some(("application/json", body))).0, 201, "created");
    assert_eq!(send(ureq::post(&at(&r, "/v1/products/rocket-toy/images")), Some(("image/jpeg", &photo("rocket")))).0, 201);
    assert_eq!(send(ureq::get(&at(&r, "/readyz")), None).0, 200);

    for (cable, name) in [(&milvus, "milvus"), (&pg, "postgresql")] {
        cable.set_cut(true);
        until("lookups answer 503 while an engine is down", || {
            let (st, retry, j) = send(ureq::post(&at(&r, "/v1/lookup")), Some(("image/jpeg", &photo("rocket"))));
            st == 503 && retry.is_some() && j["type"].as_str().is_some_and(|t| t.ends_with("dependency-unavailable"))
        });
        let (st, retry, j) = send(ureq::get(&at(&r, "/readyz")), None);
        assert_eq!((st, retry.is_some()), (503, true), "{j}");
        assert!(j["detail"].as_str().unwrap().contains(name), "readyz names the engine that is down: {j}");
        cable.set_cut(false);
        until("the replica recovers by itself", || {
            let (st, _, j) = send(ureq::post(&at(&r, "/v1/lookup")), Some(("image/jpeg", &photo("rocket"))));
            st == 200 && j["matches"][0]["product_id"] == "rocket-toy"
        });
        assert_eq!(send(ureq::get(&at(&r, "/readyz")), None).0, 200);
    }

    // At start, an unreachable engine is one sentence naming the setting and the address, and a non-zero exit.
    let closed = free_addr();
    for (key, url) in
        [("KNOCKOFF_STORE", with_port(&db.spec.store, closed.port())), ("KNOCKOFF_VECTORS", with_port(&db.spec.vectors, closed.port()))]
    {
        let mut env = db.env().to_vec();
        env.retain(|(k, _)| *k != key);
        env.push((key, url));
        let out = serve(&env).args(["--addr", &free_addr().to_string()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(key) && err.contains(&format!("127.0.0.1:{}", closed.port())), "{err}");
        assert!(!err.contains(&db.spec.store) && !err.contains(&db.spec.vectors), "no password in messages: {err}");
    }
}

/// Nothing of the engines `scripts/cluster.sh` starts answers without
/// credentials: Milvus runs fenced in a network namespace of its own, so its
/// management port (9091, whose `/expr` took the default cluster token), its
/// etcd and its coordinators cannot be reached at all; its proxy port and
/// PostgreSQL take only the generated passwords.
#[test]
fn the_engines_answer_nothing_without_credentials() {
    let Some(db) = SharedDb::create("locked") else { return };
    // Milvus standalone's fixed ports: management and metrics, etcd, the coordinators and nodes, the proxy's own.
    for port in [9091u16, 2379, 19530, 19529, 53100, 19531, 21123, 22930, 21121, 13333, 21124] {
        let open = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2)).is_ok();
        assert!(!open, "port {port} of the engines answers on this machine");
    }
    let proxy = target(&db.spec.vectors);
    let (st, _, j) = send(ureq::get(&format!("http://{proxy}/v1/vector/collections")), None);
    assert_eq!((st, j["code"].as_i64()), (401, Some(1800)), "the proxy without the password: {j}");
    let mut no_password = url::Url::parse(&db.spec.store).unwrap();
    no_password.set_password(None).unwrap();
    assert!(postgres::Client::connect(no_password.as_str(), postgres::NoTls).is_err(), "PostgreSQL without the password");
}
