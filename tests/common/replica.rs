//! `knockoff serve` processes for the tests of the shared backend's replicas.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, eventually, fixture, root};

pub struct Replica {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub fn serve(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin());
    // `--create`: each test starts from a database that holds no catalog yet.
    cmd.current_dir(root()).args(["serve", "--create"]).env_remove("KNOCKOFF_API_KEYS").env("KNOCKOFF_JOB_LEASE_MS", "2000");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn replica(env: &[(&str, String)]) -> Replica {
    let addr = free_addr();
    let child = serve(env).args(["--addr", &addr.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_up(addr);
    Replica { child, addr }
}

/// Waits until a server at `addr` answers `/healthz` (the deadline only catches one that never does).
pub fn wait_up(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while ureq::get(&format!("http://{addr}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "the server at {addr} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (status, Retry-After, body as JSON or null).
pub fn send(req: ureq::Request, body: Option<(&str, &[u8])>) -> (u16, Option<String>, serde_json::Value) {
    let (status, retry, json) = super::send_reading(req, body, "retry-after");
    (status, Some(retry).filter(|r| !r.is_empty()), json)
}

pub fn at(r: &Replica, path: &str) -> String {
    format!("http://{}{path}", r.addr)
}

pub fn photo(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("photos/{name}.jpg"))).unwrap()
}

pub fn top(r: &Replica, img: &[u8]) -> Option<String> {
    let (st, _, j) = send(ureq::post(&at(r, "/v1/lookup")), Some(("image/jpeg", img)));
    assert_eq!(st, 200, "{j}");
    j["matches"][0]["product_id"].as_str().map(String::from)
}

/// Polls until `cond` holds ([`eventually`]); returns how long that took.
pub fn until(what: &str, cond: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    eventually(what, cond);
    t.elapsed()
}

pub fn job(r: &Replica, id: &str) -> serde_json::Value {
    let (st, _, j) = send(ureq::get(&at(r, &format!("/v1/jobs/{id}"))), None);
    assert_eq!(st, 200, "{j}");
    j
}
