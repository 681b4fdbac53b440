//! What a graph dump's marker (`CURRENT.json`) says: its files with their
//! sizes and CRC-32, the store generation and highest image id it holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IndexParams;

/// The marker's file name in a dump folder.
pub const MARKER: &str = "CURRENT.json";

/// The dump layout this code writes (int8 graph, exact rows, flat copy);
/// a dump of another layout is not loaded (the graph is rebuilt).
pub const DUMP_FORMAT: u32 = 2;

/// One file of a dump: its size and CRC-32 (torn or damaged writes show).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DumpFile {
    pub bytes: u64,
    pub crc32: u32,
}

/// What a dump contains; written last, atomically.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpMarker {
    pub basename: String,
    pub generation: u64,
    pub max_image_id: i64,
    pub points: usize,
    pub dim: usize,
    pub params: IndexParams,
    /// Dump layout (absent in the first one: f32 points, sha256 per file).
    #[serde(default)]
    pub format: u32,
    /// Each file by suffix (`graph`, `data`, `exact`, `flat`).
    #[serde(default)]
    pub files: BTreeMap<String, DumpFile>,
}
