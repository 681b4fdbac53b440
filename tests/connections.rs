//! Connections are bounded: a client trickling header bytes is cut off,
//! and a crowd of half-sent requests cannot keep `/healthz` from answering,
//! even with the open-file limit a stock system gives a process (1024).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::replica::{free_addr, wait_up};
use common::{bin, root};

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `knockoff serve` on an empty catalog, with at most 1024 open files.
fn serve(dir: &std::path::Path, addr: SocketAddr) -> Serving {
    let cmd = format!("ulimit -n 1024 && exec '{}' serve --create --index '{}' --addr {addr}", bin().display(), dir.display());
    let child = Command::new("sh")
        .args(["-c", &cmd])
        .current_dir(root())
        .env_remove("KNOCKOFF_API_KEYS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_up(addr);
    Serving(child)
}

/// Whether the server has cut `s` off (a read sees the end, a reset, or a 4xx answer).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(n) => n == 0 || buf[..n].starts_with(b"HTTP/1.1 4"),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn slow_and_half_sent_requests_are_cut_off_and_cannot_starve_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let _server = serve(&dir.path().join("idx"), addr);

    // A header byte every second: cut off by the header timeout, however long it goes on.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: knockoff\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if slow.write_all(b"X").is_err() || closed(&mut slow) {
            break;
        }
        assert!(Instant::now() < deadline, "a connection trickling header bytes was never closed");
    }

    // More half-sent requests than the process may open files: the server stays reachable.
    let crowd: Vec<TcpStream> = (0..1100)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"POST /v1/lookup HTTP/1.1\r\nHost: knockoff\r\n").ok()?;
            Some(s)
        })
        .collect();
    assert!(crowd.len() >= 1000, "only {} connections opened", crowd.len());
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
    let health = agent.get(&format!("http://{addr}/healthz")).call();
    assert!(matches!(&health, Ok(r) if r.status() == 200), "/healthz beside 1100 half-sent requests: {health:?}");
    drop(crowd);
}
