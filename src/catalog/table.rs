//! The in-memory image → product table every catalog keeps beside its
//! vector index, so that a search can skip deleted images and filter on
//! brand, label and category inside the graph walk, and answer with the
//! product without asking the record store. The embedded catalog fills it
//! when it opens and as it writes; a replica from the change feed.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Filter, Label, Product};
use crate::embed::local::LocalFeatures;

/// What the table holds per image.
struct ImageEntry {
    product_row: i64,
    deleted: bool,
    /// A listing photo an analyst's decision made a reference ([`super::is_listing_reference`]).
    listing: bool,
    /// Copy-detection features (none for images indexed before they existed).
    copy: Option<Arc<LocalFeatures>>,
}

#[derive(Default)]
pub struct ImageTable {
    products: HashMap<i64, Arc<Product>>,
    images: HashMap<i64, ImageEntry>,
    tombstones: usize,
}

impl ImageTable {
    /// Sets a product (by row id), as stored now.
    pub fn put_product(&mut self, row: i64, p: Product) {
        self.products.insert(row, Arc::new(p));
    }

    /// Sets an image as stored now; `listing` when it is a listing photo a
    /// decision made a reference; `copy` are its stored copy features.
    pub fn put_image(&mut self, id: i64, product_row: i64, deleted: bool, listing: bool, copy: Option<&[u8]>) {
        let copy = copy.and_then(LocalFeatures::from_bytes).map(Arc::new);
        if let Some(old) = self.images.insert(id, ImageEntry { product_row, deleted, listing, copy }) {
            self.tombstones -= usize::from(old.deleted);
        }
        self.tombstones += usize::from(deleted);
    }

    /// Sets an image's copy features.
    pub fn set_copy(&mut self, id: i64, features: Option<LocalFeatures>) {
        if let Some(e) = self.images.get_mut(&id) {
            e.copy = features.map(Arc::new);
        }
    }

    /// Marks images deleted: hidden from every search at once.
    pub fn tombstone(&mut self, ids: &[i64]) {
        for id in ids {
            if let Some(e) = self.images.get_mut(id) {
                if !e.deleted {
                    e.deleted = true;
                    self.tombstones += 1;
                }
            }
        }
    }

    /// Forgets deleted images (once the vector index no longer holds them).
    pub fn purge_tombstones(&mut self) {
        self.images.retain(|_, e| !e.deleted);
        self.tombstones = 0;
    }

    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    pub fn live_count(&self) -> usize {
        self.images.len() - self.tombstones
    }

    /// Live images without copy features, in id order.
    pub fn missing_copy_features(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.images.iter().filter(|(_, e)| !e.deleted && e.copy.is_none()).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether a search may answer image `id`: live, and its product passes `filter`.
    pub fn keep(&self, id: i64, filter: &Filter) -> bool {
        self.hit(id, filter).is_some()
    }

    /// The product of a live image whose product passes `filter`.
    pub fn hit(&self, id: i64, filter: &Filter) -> Option<&Arc<Product>> {
        let e = self.images.get(&id).filter(|e| !e.deleted)?;
        self.products.get(&e.product_row).filter(|p| filter.is_empty() || filter.matches(p))
    }

    /// Whether an image is a listing photo a decision made a reference.
    pub fn is_listing(&self, id: i64) -> bool {
        self.images.get(&id).is_some_and(|e| e.listing)
    }

    /// A live image's copy-detection features and product, if it has features.
    pub fn copy_features(&self, id: i64) -> Option<(Arc<LocalFeatures>, Arc<Product>)> {
        let e = self.images.get(&id).filter(|e| !e.deleted)?;
        Some((e.copy.clone()?, self.products.get(&e.product_row)?.clone()))
    }

    /// The product row of each image (an image the table does not know gets a label of its own).
    pub fn labels_of(&self, ids: impl Iterator<Item = i64>) -> Vec<i64> {
        ids.map(|id| self.images.get(&id).map_or(-1 - id, |e| e.product_row)).collect()
    }

    /// Every product's label, by row id.
    pub fn product_labels(&self) -> HashMap<i64, Label> {
        self.products.iter().map(|(row, p)| (*row, p.label)).collect()
    }

    /// The product of image `id` (live or not).
    pub fn product_of(&self, id: i64) -> Option<&Arc<Product>> {
        self.products.get(&self.images.get(&id)?.product_row)
    }

    /// A product by its id.
    pub fn product(&self, product_id: &str) -> Option<&Arc<Product>> {
        self.products.values().find(|p| p.product_id == product_id)
    }
}
