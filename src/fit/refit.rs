//! The service's refit policy: the verdict settings lookups use are swapped
//! whole, and refitted in the background when the catalog's image count
//! moved by at least 10 % (and 10 images) since the last fit, or the set of
//! its counterfeit-labelled products changed (the thresholds are fitted on
//! the labels), or when the catalog holds no calibration of its own for
//! its current projection (a refit killed half-way is redone after the
//! restart). One refit at a time; on the shared backend one replica
//! refits and the others load its result. Lookups come first: a refit runs
//! at the lowest CPU priority.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::priority::{age_until, lower_priority};
use crate::catalog::store::{EventKind, NewEvent};
use crate::catalog::{Catalog, Label};
use crate::embed::Embedder;
use crate::search::calibration::{verdict_config_described, CalibrationInfo};
use crate::search::VerdictConfig;

/// The verdict settings lookups use, with what they were fitted on and when.
#[derive(Debug, Clone)]
pub struct Verdicts {
    pub config: VerdictConfig,
    pub info: Option<CalibrationInfo>,
    /// The live image count they were fitted at.
    pub fitted_at_images: i64,
    /// Which products were labelled `counterfeit` when they were fitted ([`counterfeit_products`]).
    pub fitted_at_labels: u64,
    /// The catalog's shared state they were loaded from ([`Catalog::state_version`]).
    pub state_version: u64,
}

/// How many refits ran: what a test or a metric waits on instead of a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RefitCounts {
    /// Fits begun by this server.
    pub started: u64,
    /// Fits this server finished (fitted, too little to fit on, or failed: the old settings stay).
    pub finished: u64,
    /// Verdict settings swapped in (after a fit here, or one another replica shared).
    pub loaded: u64,
}

/// The verdict settings in force and the policy that refits them.
pub struct Refitter {
    model_dir: PathBuf,
    /// A `[verdict]` section of the service config: the stated rates and defaults.
    configured: Option<VerdictConfig>,
    current: RwLock<Arc<Verdicts>>,
    refitting: AtomicBool,
    started: AtomicU64,
    finished: AtomicU64,
    loaded: AtomicU64,
}

impl Refitter {
    /// The settings `catalog` holds now (its calibration, else the model's in `model_dir`).
    pub fn new(catalog: &Catalog, model_dir: &Path, configured: Option<VerdictConfig>) -> Refitter {
        let current = load(catalog, model_dir, configured.as_ref());
        Refitter {
            model_dir: model_dir.into(),
            configured,
            current: RwLock::new(Arc::new(current)),
            refitting: AtomicBool::new(false),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
        }
    }

    /// The settings in force (one `Arc` clone; a refit swaps in new ones).
    pub fn verdicts(&self) -> Arc<Verdicts> {
        self.current.read().clone()
    }

    pub fn counts(&self) -> RefitCounts {
        RefitCounts {
            started: self.started.load(Ordering::SeqCst),
            finished: self.finished.load(Ordering::SeqCst),
            loaded: self.loaded.load(Ordering::SeqCst),
        }
    }

    fn swap(&self, fresh: Verdicts) {
        *self.current.write() = Arc::new(fresh);
        self.loaded.fetch_add(1, Ordering::SeqCst);
    }

    /// Loads settings another server shared, or refits when the catalog
    /// changed enough (see the module doc); returns whether new settings were swapped in.
    pub fn refit_if_changed(&self, catalog: &Catalog, embedder: &Embedder) -> bool {
        let now = catalog.live_image_count() as i64;
        let held = self.verdicts();
        if catalog.state_version() != held.state_version {
            self.swap(load(catalog, &self.model_dir, self.configured.as_ref()));
            return true;
        }
        let before = held.fitted_at_images;
        let moved = (now - before).abs();
        let labels = counterfeit_products(catalog);
        let relabelled = labels != held.fitted_at_labels;
        if (!relabelled && (moved < 10 || (moved as f64) < 0.1 * before as f64)) || self.refitting.swap(true, Ordering::SeqCst) {
            return false;
        }
        tracing::info!(images = now, before, relabelled, "refit started");
        let Ran::Here(outcome) = self.fit(catalog, embedder) else {
            // Another replica refits now; its calibration arrives as shared state.
            self.refitting.store(false, Ordering::SeqCst);
            return false;
        };
        let mut fresh = load(catalog, &self.model_dir, self.configured.as_ref());
        // Too little to fit on yet: check again next time (cheap for a catalog that small),
        // rather than wait for another 10 % of growth. A fit or a failure counts as done.
        // (A catalog counted as never fitted goes back to the growth rule after one such try.)
        fresh.fitted_at_images = if outcome == Some(false) && before >= 0 { before } else { now };
        // The labels as they were when the fit began: a relabelling during it is seen next time.
        fresh.fitted_at_labels = labels;
        if outcome == Some(true) {
            announce(catalog, now, fresh.info.as_ref());
        }
        self.swap(fresh);
        self.refitting.store(false, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Runs the index fitting on a thread of its own at the lowest CPU
    /// priority, raised the longer it runs ([`super::priority`]), unless
    /// another replica runs it.
    fn fit(&self, catalog: &Catalog, embedder: &Embedder) -> Ran {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let led = std::thread::scope(|s| {
            let fitting = s.spawn(move || {
                let _background = lower_priority();
                let led = catalog.lead("refit", || {
                    self.started.fetch_add(1, Ordering::SeqCst);
                    super::fit_index(catalog, Some(embedder), &mut |line| tracing::info!("refit: {line}"))
                });
                drop(done);
                led
            });
            age_until(&finished);
            fitting.join().ok()
        });
        match led {
            Some(Ok(Some(outcome))) => Ran::Here(outcome),
            Some(Ok(None)) => Ran::Elsewhere,
            Some(Err(e)) => {
                tracing::warn!("refit: {e}");
                Ran::Here(None)
            }
            None => Ran::Here(None),
        }
    }
}

/// Records a `catalog.refitted` event (for webhooks) for a fit that ran here.
fn announce(catalog: &Catalog, images: i64, info: Option<&CalibrationInfo>) {
    let data = serde_json::json!({
        "images": images,
        "fitted_at": info.map(|i| i.fitted_at.as_str()),
        "fitted_on": info.map(|i| i.fitted_on.as_str()),
        "thresholds": info.map(|i| &i.thresholds),
        "stats_url": "/v1/stats",
    });
    let event = NewEvent { kind: EventKind::CatalogRefitted, subject: Some("catalog".into()), risk: None, data };
    if let Err(e) = catalog.records().emit_event(&event) {
        tracing::warn!("refit: cannot record its event: {e}");
    }
}

/// Where a refit ran: here, with [`super::fit_index`]'s outcome, or on another replica.
enum Ran {
    Here(Option<bool>),
    Elsewhere,
}

/// The settings `catalog` holds now, tagged with what they were loaded at.
/// A catalog without a calibration of its own for its current projection
/// (never fitted, or a refit was killed half-way) counts as never fitted,
/// so the next check refits it once it has 10 images.
fn load(catalog: &Catalog, model_dir: &Path, configured: Option<&VerdictConfig>) -> Verdicts {
    let images = if crate::search::calibration::has_own(catalog) { catalog.live_image_count() as i64 } else { -1 };
    let state_version = catalog.state_version();
    let (config, info) = verdict_config_described(catalog, model_dir, configured);
    Verdicts { config, info, fitted_at_images: images, fitted_at_labels: counterfeit_products(catalog), state_version }
}

/// Which products are labelled `counterfeit`, as a fingerprint (a hash of their sorted rows).
fn counterfeit_products(catalog: &Catalog) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut rows: Vec<i64> = catalog.product_labels().into_iter().filter(|(_, l)| *l == Label::Counterfeit).map(|(row, _)| row).collect();
    rows.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut h);
    h.finish()
}
