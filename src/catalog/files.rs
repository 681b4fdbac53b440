//! File names of an index folder, in one place.
//!
//! ```text
//! <index>/catalog.sqlite3            the record store (SQLite, WAL)
//! <index>/vectors/<model>[@<proj>]/  the HNSW graph dump (see `vectors::dump`)
//! <index>/projection.json            the learned projection, if any  } shared files: on the
//! <index>/calibration.json           confidences and verdict thresholds } shared backend in PostgreSQL
//! ```

/// The embedded record store.
pub const STORE_FILE: &str = "catalog.sqlite3";
/// The folder holding graph dumps, one per model and projection.
pub const VECTORS_DIR: &str = "vectors";
/// The learned projection the vectors are searched in.
pub const PROJECTION_FILE: &str = "projection.json";
/// The fitted confidence calibration and verdict thresholds.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// Files every replica of a catalog must agree on (they define how lookups score).
pub const SHARED_FILES: [&str; 2] = [PROJECTION_FILE, CALIBRATION_FILE];
/// What an index folder holds besides its store.
pub const INDEX_FILES: [&str; 3] = [VECTORS_DIR, PROJECTION_FILE, CALIBRATION_FILE];
