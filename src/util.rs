//! Small helpers shared by several modules: hashing, atomic file writes,
//! timestamps, little-endian `f32` blobs, a seeded generator and locating
//! the project's folders.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of a file's contents, streamed.
pub fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the
/// new content: temp file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(&dir)?.sync_all()
}

/// The current time in RFC 3339, UTC, whole seconds (`2026-11-29T07:33:55Z`).
#[must_use]
/// `scheme://host:port` of a URL, without the credentials it may carry.
pub fn address_only(value: &str) -> String {
    let Ok(u) = url::Url::parse(value) else { return "a value that is not a URL".into() };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or_default())
}

/// A new identifier, `<prefix>_<24 hex>`, unique across processes and
/// replicas (a hash of the time, the process and a counter).
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let host = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let seed = format!("{t}-{}-{}-{host}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    format!("{prefix}_{}", &sha256_hex(seed.as_bytes())[..24])
}

pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).map_or_else(|_| now.to_string(), |t| t.to_string())
}

/// `f32` values as little-endian bytes.
#[must_use]
pub fn f32s_to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes as `f32` values (a trailing partial value is ignored).
#[must_use]
pub fn f32s_from_le_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Finds the project's folder that holds `name` (e.g. `models`): `$KNOCKOFF_HOME`
/// first, then the current directory and its ancestors, then the executable's
/// ancestors (so `target/release/knockoff` finds the checkout it was built in).
#[must_use]
pub fn find_project_dir(name: &str) -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("KNOCKOFF_HOME") {
        let p = Path::new(&home).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(parent) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        starts.push(parent);
    }
    starts.iter().flat_map(|s| s.ancestors()).map(|d| d.join(name)).find(|p| p.exists())
}

/// Solves the 3×3 system `a x = b` by Cramer's rule; `None` when
/// `|det a| < singular_below` (the caller's notion of singular).
pub fn solve3(a: [[f64; 3]; 3], b: [f64; 3], singular_below: f64) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&a);
    if d.abs() < singular_below {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut m = a;
        for (row, v) in m.iter_mut().zip(b) {
            row[k] = v;
        }
        *o = det(&m) / d;
    }
    Some(out)
}

/// Solves the `N × N` system `a x = b` by Gaussian elimination with partial
/// pivoting; `None` when a pivot is below `singular_below` in size.
pub fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N], singular_below: f64) -> Option<[f64; N]> {
    for col in 0..N {
        let pivot = (col..N).max_by(|i, j| a[*i][col].abs().total_cmp(&a[*j][col].abs()))?;
        if a[pivot][col].abs() < singular_below {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let b_col = b[col];
        let (done, rest) = a.split_at_mut(col + 1);
        let pivot_row = &done[col];
        for (row, rb) in rest.iter_mut().zip(&mut b[col + 1..]) {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            *rb -= f * b_col;
        }
    }
    let mut x = [0.0; N];
    for row in (0..N).rev() {
        let tail: f64 = (row + 1..N).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    Some(x)
}

/// A small seeded generator (xorshift64*), so a protocol is reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_seconds() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(t.parse::<jiff::Timestamp>().is_ok());
    }

    #[test]
    fn blobs_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0e-8];
        assert_eq!(f32s_from_le_bytes(&f32s_to_le_bytes(&v)), v);
    }

    #[test]
    fn atomic_write_replaces_whole_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn solve_finds_the_solution_and_refuses_a_singular_system() {
        let a = [[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 1.0]];
        let x = solve(a, [5.0, 3.0, 6.0], 1e-12).unwrap();
        for (row, b) in a.iter().zip([5.0, 3.0, 6.0]) {
            assert!((row.iter().zip(&x).map(|(r, v)| r * v).sum::<f64>() - b).abs() < 1e-9, "{x:?}");
        }
        assert_eq!(solve([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0], 1e-12), None);
    }
}
