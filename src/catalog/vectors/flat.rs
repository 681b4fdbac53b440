//! A read-only, contiguous copy of the `hnsw_rs` graph that queries walk.
//!
//! `hnsw_rs` builds, extends and persists the graph; its own search keeps
//! every visited point in a `SipHash` map of `Arc`s and allocates per
//! candidate, which costs more than the distances themselves. A
//! [`FlatGraph`] holds the same links as dense `u32` lists (layer 0 in one
//! array, 2·M slots per point), the int8 points in one matrix, and walks
//! them with a reusable bit set for "visited" and software prefetch of the
//! next vectors: the classic HNSW search (greedy descent, then a beam of
//! `ef` on layer 0) on a cache-friendly layout.
//!
//! The copy is taken from the graph in one pass ([`FlatGraph::freeze`]);
//! points added later are found by the caller (see `hnsw.rs`) until the
//! next copy.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use hnsw_rs::prelude::Hnsw;

use super::quant::{dot_q, QuantDot, Reader};

/// Distance as an orderable key (distances are finite and ≥ 0).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dist(f32);
impl Eq for Dist {}
impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Dist {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

pub struct FlatGraph {
    /// Origin (image) id of each dense point.
    ids: Vec<i64>,
    /// Int8 points, `stride` values each (scale header + dim).
    points: Vec<i8>,
    stride: usize,
    /// Layer-0 links: `slots` entries per point, `u32::MAX` = empty.
    links0: Vec<u32>,
    slots: usize,
    /// Links on layers 1.. (few points): `upper[layer - 1][point]`.
    upper: Vec<HashMap<u32, Vec<u32>>>,
    entry: u32,
    top_layer: usize,
}

thread_local! {
    /// Visited bits, reused across queries on this thread.
    static VISITED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl FlatGraph {
    /// Copies the graph's links and points (`None` when it is empty).
    pub fn freeze(hnsw: &Hnsw<'static, i8, QuantDot>, m: usize) -> Option<FlatGraph> {
        let index = hnsw.get_point_indexation();
        // Layer by layer (each iterator holds its own read guard; `hnsw_rs`'s
        // all-points iterator takes a second guard while holding one, which a
        // waiting writer can deadlock, and panics on an empty graph).
        let all: Vec<_> = (0..hnsw.get_max_level()).flat_map(|layer| index.get_layer_iterator(layer).collect::<Vec<_>>()).collect();
        let first = all.first()?;
        let stride = first.get_v().len();
        let dense: HashMap<usize, u32> = all.iter().enumerate().map(|(i, p)| (p.get_origin_id(), i as u32)).collect();
        let slots = 2 * m.max(1);
        let top_layer = all.iter().map(|p| usize::from(p.get_point_id().0)).max().unwrap_or(0);
        let mut g = FlatGraph {
            ids: Vec::with_capacity(all.len()),
            points: Vec::with_capacity(all.len() * stride),
            stride,
            links0: vec![u32::MAX; all.len() * slots],
            slots,
            upper: vec![HashMap::new(); top_layer],
            entry: 0,
            top_layer,
        };
        for (i, p) in all.iter().enumerate() {
            g.ids.push(p.get_origin_id() as i64);
            let v = p.get_v();
            if v.len() != stride {
                return None;
            }
            g.points.extend_from_slice(v);
            for (layer, list) in p.get_neighborhood_id().iter().enumerate() {
                let to: Vec<u32> = list.iter().filter_map(|n| dense.get(&n.d_id).copied()).collect();
                if layer == 0 {
                    for (slot, t) in g.links0[i * slots..(i + 1) * slots].iter_mut().zip(&to) {
                        *slot = *t;
                    }
                } else if layer <= top_layer && !to.is_empty() {
                    g.upper[layer - 1].insert(i as u32, to);
                }
            }
            if usize::from(p.get_point_id().0) == top_layer {
                g.entry = i as u32;
            }
        }
        Some(g)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The copy as dumped: `n`, stride, slots, top layer, entry (u64 LE),
    /// ids, int8 points, layer-0 links, then per upper layer its point count
    /// and `(point, count, links…)` (u32 LE).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + 8 * self.ids.len() + self.points.len() + 4 * self.links0.len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// [`FlatGraph::to_bytes`] streamed to `w`.
    pub fn write_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        for v in [self.ids.len(), self.stride, self.slots, self.top_layer, self.entry as usize] {
            w.write_all(&(v as u64).to_le_bytes())?;
        }
        w.write_all(bytemuck::cast_slice(&self.ids))?;
        w.write_all(bytemuck::cast_slice(&self.points))?;
        w.write_all(bytemuck::cast_slice(&self.links0))?;
        for layer in &self.upper {
            w.write_all(&(layer.len() as u64).to_le_bytes())?;
            let mut keys: Vec<&u32> = layer.keys().collect();
            keys.sort_unstable();
            for k in keys {
                let to = &layer[k];
                w.write_all(&k.to_le_bytes())?;
                w.write_all(&(to.len() as u32).to_le_bytes())?;
                w.write_all(bytemuck::cast_slice(to))?;
            }
        }
        Ok(())
    }

    /// The inverse of [`FlatGraph::to_bytes`]; `None` unless the bytes are
    /// exactly that, with every link inside the graph.
    pub fn from_bytes(bytes: &[u8]) -> Option<FlatGraph> {
        let mut r = Reader(bytes);
        let (n, stride, slots, top_layer, entry) = (r.usize()?, r.usize()?, r.usize()?, r.usize()?, r.usize()?);
        if n == 0 || entry >= n || slots == 0 || top_layer > 64 || u32::try_from(n).is_err() {
            return None;
        }
        let ids: Vec<i64> = r.pods(n)?;
        let points: Vec<i8> = r.pods(n.checked_mul(stride)?)?;
        let links0: Vec<u32> = r.pods(n.checked_mul(slots)?)?;
        let inside = |t: &u32| (*t as usize) < n;
        if !links0.iter().all(|t| *t == u32::MAX || inside(t)) {
            return None;
        }
        let mut upper = Vec::with_capacity(top_layer);
        for _ in 0..top_layer {
            let count = r.usize()?;
            let mut layer = HashMap::new();
            for _ in 0..count.min(n) {
                let head: Vec<u32> = r.pods(2)?;
                let to: Vec<u32> = r.pods(head[1] as usize)?;
                if !inside(&head[0]) || !to.iter().all(inside) {
                    return None;
                }
                layer.insert(head[0], to);
            }
            upper.push(layer);
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(FlatGraph { ids, points, stride, links0, slots, upper, entry: entry as u32, top_layer })
    }

    fn point(&self, i: u32) -> &[i8] {
        let s = i as usize * self.stride;
        &self.points[s..s + self.stride]
    }

    fn dist(&self, q: &[i8], i: u32) -> f32 {
        (1.0 - dot_q(q, self.point(i))).max(0.0)
    }

    fn neighbours(&self, layer: usize, i: u32) -> &[u32] {
        if layer == 0 {
            let row = &self.links0[i as usize * self.slots..(i as usize + 1) * self.slots];
            let n = row.iter().position(|t| *t == u32::MAX).unwrap_or(row.len());
            &row[..n]
        } else {
            self.upper.get(layer - 1).and_then(|m| m.get(&i)).map_or(&[], Vec::as_slice)
        }
    }

    #[inline]
    fn prefetch(&self, i: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.point(i);
            // The first cache lines; the hardware prefetcher follows the rest.
            for off in (0..p.len().min(256)).step_by(64) {
                // SAFETY: the address lies inside `p`; prefetching has no side effects.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.as_ptr().add(off)) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    /// The `n` nearest points (origin id, approximate distance), nearest
    /// first, among those `keep` accepts, with a beam of `ef` on layer 0.
    pub fn search(&self, q: &[i8], n: usize, ef: usize, keep: Option<&dyn Fn(i64) -> bool>) -> Vec<(i64, f32)> {
        if self.ids.is_empty() || q.len() != self.stride {
            return Vec::new();
        }
        let mut cur = self.entry;
        let mut cur_d = self.dist(q, cur);
        for layer in (1..=self.top_layer).rev() {
            let mut moved = true;
            while moved {
                moved = false;
                for &t in self.neighbours(layer, cur) {
                    let d = self.dist(q, t);
                    if d < cur_d {
                        (cur, cur_d, moved) = (t, d, true);
                    }
                }
            }
        }
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            visited.clear();
            visited.resize(self.ids.len().div_ceil(64), 0);
            self.beam(q, cur, cur_d, ef.max(n), keep, &mut visited, n)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn beam(
        &self,
        q: &[i8],
        start: u32,
        start_d: f32,
        ef: usize,
        keep: Option<&dyn Fn(i64) -> bool>,
        visited: &mut [u64],
        n: usize,
    ) -> Vec<(i64, f32)> {
        let kept = |i: u32| keep.is_none_or(|f| f(self.ids[i as usize]));
        let mut seen = |i: u32| {
            let (w, b) = (i as usize / 64, 1u64 << (i % 64));
            let was = visited[w] & b != 0;
            visited[w] |= b;
            was
        };
        seen(start);
        let mut candidates = BinaryHeap::from([Reverse((Dist(start_d), start))]);
        let mut results: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
        if kept(start) {
            results.push((Dist(start_d), start));
        }
        let mut next: Vec<u32> = Vec::with_capacity(self.slots);
        while let Some(Reverse((Dist(d), c))) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| d > w.0 .0) {
                break;
            }
            next.clear();
            next.extend(self.neighbours(0, c).iter().copied().filter(|t| !seen(*t)));
            for t in &next {
                self.prefetch(*t);
            }
            for &t in &next {
                let dt = self.dist(q, t);
                if results.len() < ef || results.peek().is_some_and(|w| dt < w.0 .0) {
                    candidates.push(Reverse((Dist(dt), t)));
                    if kept(t) {
                        results.push((Dist(dt), t));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<(i64, f32)> = results.into_iter().map(|(d, i)| (self.ids[i as usize], d.0)).collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::vectors::quant::{quantize, test_unit};

    #[test]
    fn a_copy_round_trips_and_damaged_bytes_are_refused() {
        let hnsw = Hnsw::new(8, 1024, 16, 64, QuantDot);
        let points: Vec<Vec<i8>> = (1..=300).map(|i| quantize(&test_unit(i * 7919, 16))).collect();
        let refs: Vec<(&[i8], usize)> = points.iter().enumerate().map(|(i, p)| (p.as_slice(), i + 100)).collect();
        hnsw.parallel_insert_slice(&refs);
        let g = FlatGraph::freeze(&hnsw, 8).unwrap();
        let bytes = g.to_bytes();
        let back = FlatGraph::from_bytes(&bytes).unwrap();
        assert_eq!(back.len(), 300);
        assert_eq!(back.search(&points[5], 3, 32, None), g.search(&points[5], 3, 32, None));
        assert_eq!(g.search(&points[5], 1, 32, None)[0].0, 105);
        assert!(FlatGraph::from_bytes(&bytes[..bytes.len() - 1]).is_none());
        // A link pointing outside the graph.
        let mut bad = bytes.clone();
        let links_at = 40 + 8 * 300 + 300 * g.stride;
        bad[links_at..links_at + 4].copy_from_slice(&5000u32.to_le_bytes());
        assert!(FlatGraph::from_bytes(&bad).is_none());
        assert!(FlatGraph::freeze(&Hnsw::new(8, 1024, 16, 64, QuantDot), 8).is_none());
    }
}
