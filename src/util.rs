//! Small helpers shared by several modules.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Finds the project's folder that holds `name` (e.g. `models`): `$KNOCKOFF_HOME`
/// first, then the current directory and its ancestors, then the executable's
/// ancestors (so `target/release/knockoff` finds the checkout it was built in).
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
    if let Ok(exe) = std::env::current_exe() {
        if let Some(parent) = exe.parent() {
            starts.push(parent.to_path_buf());
        }
    }
    for start in starts {
        for dir in start.ancestors() {
            let p = dir.join(name);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}
