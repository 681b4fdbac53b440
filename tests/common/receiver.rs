//! A webhook receiver for tests: a loopback HTTP server that records every
//! request (headers and body) and answers with the status it is set to.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The status it was answered with.
    pub answered: u16,
}

impl Received {
    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap().to_string()
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts answering `status` on a free loopback port.
    pub fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU16::new(status)),
            delay_ms: Arc::default(),
            log: Arc::default(),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.answer(conn));
            }
        });
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Answers only after `ms` from now on (a slow receiver).
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| (200..300).contains(&r.answered)).collect()
    }

    fn answer(&self, conn: std::net::TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(self.delay_ms.load(Ordering::SeqCst)));
        let status = self.status.load(Ordering::SeqCst);
        self.log.lock().unwrap().push(Received { headers, body: String::from_utf8_lossy(&body).into_owned(), answered: status });
        let mut out = conn;
        let _ = write!(out, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    }

    /// Checks every delivered request's signature with the Standard Webhooks reference
    /// library (Python `standardwebhooks`, installed by ./scripts/setup.sh);
    /// false when the library is missing outside CI (a failure under CI).
    pub fn verify_all(&self, secret: &str) -> bool {
        let python = super::python();
        let has_lib = python
            .as_ref()
            .is_some_and(|p| std::process::Command::new(p).args(["-c", "import standardwebhooks"]).status().is_ok_and(|s| s.success()));
        if !super::available("the standardwebhooks Python library", has_lib, "run ./scripts/setup.sh") {
            return false;
        }
        let lines: Vec<String> =
            self.delivered().iter().map(|r| serde_json::json!({ "headers": r.headers, "body": r.body }).to_string()).collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), lines.join("\n")).unwrap();
        let out = std::process::Command::new(python.unwrap())
            .arg(super::root().join("scripts/verify_webhooks.py"))
            .arg(file.path())
            .env("WEBHOOK_SECRET", secret)
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the reference library refused a signature: {said}");
        assert!(said.contains(&format!("verified {}", lines.len())), "{said}");
        true
    }
}
