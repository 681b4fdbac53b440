//! Int8 points for the HNSW graph walk, and the exact f32 rows the
//! shortlist is rescored with.
//!
//! The graph walk is bound by memory traffic (each step reads a neighbour's
//! whole vector), so the graph holds each vector as 8-bit integers with its
//! own scale: a point is `[scale as 4 bytes] + dim × i8`, a quarter of the
//! f32 vector. A walk's distances are then approximate (a dot-product error
//! of about 5e-4 on unit vectors of dimension 1280); the `ef` candidates it
//! ends with are rescored exactly from [`ExactRows`], one contiguous f32
//! matrix, so every similarity the index returns is the exact one.

use std::collections::HashMap;

use hnsw_rs::prelude::Distance;

/// Bytes before the integer values: the point's scale (an f32's bytes).
const HEADER: usize = 4;

/// `v` as a graph point: its scale (`max |v_i| / 127`) then `round(v_i / scale)`.
#[must_use]
pub fn quantize(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut out = Vec::with_capacity(HEADER + v.len());
    out.extend(scale.to_le_bytes().map(|b| b as i8));
    // In range by construction: |v_i / scale| <= 127.
    out.extend(v.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8));
    out
}

fn scale_of(p: &[i8]) -> f32 {
    match p.get(..HEADER) {
        Some(h) => f32::from_le_bytes([h[0] as u8, h[1] as u8, h[2] as u8, h[3] as u8]),
        None => 0.0,
    }
}

/// The approximate dot product of two quantised points.
#[must_use]
pub fn dot_q(a: &[i8], b: &[i8]) -> f32 {
    let (Some(va), Some(vb)) = (a.get(HEADER..), b.get(HEADER..)) else { return 0.0 };
    scale_of(a) * scale_of(b) * dot_i8(va, vb) as f32
}

/// `1 − a·b` over quantised unit vectors, clamped at 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuantDot;

impl Distance<i8> for QuantDot {
    fn eval(&self, a: &[i8], b: &[i8]) -> f32 {
        (1.0 - dot_q(a, b)).max(0.0)
    }
}

/// Integer dot product (exact: at most 127² × n, well inside i32 for any embedding size).
#[must_use]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    // The compiler turns this into sign-extending loads and vpmaddwd with AVX2 enabled.
    dot_i8_lanes(a, b)
}

/// Thirty-two independent i32 lanes, so the compiler can vectorise.
#[inline(always)]
fn dot_i8_lanes(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0i32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let mut s: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += i32::from(*x) * i32::from(*y);
    }
    s
}

/// The exact vectors of the graph's points, in one contiguous matrix (row
/// per point, in insertion order), for rescoring and for the dump.
#[derive(Debug, Default)]
pub struct ExactRows {
    dim: usize,
    ids: Vec<i64>,
    data: Vec<f32>,
    row_of: HashMap<i64, usize>,
}

impl ExactRows {
    #[must_use]
    pub fn with_capacity(dim: usize, capacity: usize) -> Self {
        ExactRows {
            dim,
            ids: Vec::with_capacity(capacity),
            data: Vec::with_capacity(capacity.saturating_mul(dim)),
            row_of: HashMap::with_capacity(capacity),
        }
    }

    /// Adds (or replaces) the vector of `id`; `v` has the matrix's dimension.
    pub fn push(&mut self, id: i64, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        if let Some(row) = self.row_of.get(&id) {
            self.data[row * self.dim..(row + 1) * self.dim].copy_from_slice(v);
            return;
        }
        self.row_of.insert(id, self.ids.len());
        self.ids.push(id);
        self.data.extend_from_slice(v);
    }

    #[must_use]
    pub fn get(&self, id: i64) -> Option<&[f32]> {
        self.row_of.get(&id).map(|row| &self.data[row * self.dim..(row + 1) * self.dim])
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Rows from `start` on, in insertion order.
    pub fn rows_from(&self, start: usize) -> impl Iterator<Item = (i64, &[f32])> {
        self.ids.iter().enumerate().skip(start).map(|(row, id)| (*id, &self.data[row * self.dim..(row + 1) * self.dim]))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rows as dumped: `n`, `dim` (u64 LE), the ids (i64 LE), then the
    /// vectors (f32 LE, row after row).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 * self.ids.len() + 4 * self.data.len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// [`ExactRows::to_bytes`] streamed to `w` (no copy of the matrix).
    pub fn write_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        w.write_all(&(self.ids.len() as u64).to_le_bytes())?;
        w.write_all(&(self.dim as u64).to_le_bytes())?;
        w.write_all(bytemuck::cast_slice(&self.ids))?;
        w.write_all(bytemuck::cast_slice(&self.data))
    }

    /// The inverse of [`ExactRows::to_bytes`]; `None` unless the bytes are
    /// exactly that for vectors of `dim`.
    #[must_use]
    pub fn from_bytes(dim: usize, bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let (n, d) = (r.usize()?, r.usize()?);
        if d != dim || dim == 0 {
            return None;
        }
        let ids: Vec<i64> = r.pods(n)?;
        let data: Vec<f32> = r.pods(n.checked_mul(dim)?)?;
        if !r.0.is_empty() {
            return None;
        }
        let row_of = ids.iter().enumerate().map(|(row, id)| (*id, row)).collect();
        Some(ExactRows { dim, ids, data, row_of })
    }
}

// Dumps are little-endian and read back with plain casts.
const _: () = assert!(cfg!(target_endian = "little"), "index dumps assume a little-endian machine");

/// Reads a dump's fields in order; every read is bounds-checked (a short
/// or damaged file gives `None`, never a panic or an oversized allocation).
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    pub(super) fn usize(&mut self) -> Option<usize> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        usize::try_from(u64::from_le_bytes(*head)).ok()
    }

    /// `n` plain values (copied out, so alignment does not matter).
    pub(super) fn pods<T: bytemuck::Pod>(&mut self, n: usize) -> Option<Vec<T>> {
        let len = n.checked_mul(std::mem::size_of::<T>())?;
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(bytemuck::pod_collect_to_vec(head))
    }
}

/// A pseudo-random unit vector (xorshift), for tests of the index.
#[cfg(test)]
pub(crate) fn test_unit(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, n: usize) -> Vec<f32> {
        test_unit(seed, n)
    }

    #[test]
    fn quantised_dot_is_close_to_the_exact_one_and_the_integer_dot_is_exact() {
        for seed in 1..20u64 {
            let (a, b) = (unit(seed, 1280), unit(seed * 7919, 1280));
            let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let approx = dot_q(&quantize(&a), &quantize(&b));
            assert!((approx - exact).abs() < 2e-3, "{approx} vs {exact}");
            let self_dot = dot_q(&quantize(&a), &quantize(&a));
            assert!((self_dot - 1.0).abs() < 2e-3 && QuantDot.eval(&quantize(&a), &quantize(&a)) >= 0.0);
        }
        let x: Vec<i8> = (0..1283).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let y: Vec<i8> = (0..1283).map(|i| ((i * 53) % 255 - 127) as i8).collect();
        let naive: i32 = x.iter().zip(&y).map(|(p, q)| i32::from(*p) * i32::from(*q)).sum();
        assert_eq!(dot_i8(&x, &y), naive);
        assert_eq!(dot_q(&quantize(&[0.0; 8]), &quantize(&[0.5; 8])), 0.0);
    }

    #[test]
    fn exact_rows_round_trip_and_replace() {
        let mut rows = ExactRows::with_capacity(3, 2);
        rows.push(7, &[1.0, 2.0, 3.0]);
        rows.push(-2, &[4.0, 5.0, 6.0]);
        rows.push(7, &[0.5, 0.5, 0.5]);
        assert_eq!((rows.len(), rows.get(7), rows.get(9)), (2, Some(&[0.5f32, 0.5, 0.5][..]), None));
        let back = ExactRows::from_bytes(3, &rows.to_bytes()).unwrap();
        assert_eq!((back.get(-2), back.len()), (Some(&[4.0f32, 5.0, 6.0][..]), 2));
        assert!(ExactRows::from_bytes(3, &rows.to_bytes()[1..]).is_none());
        assert!(ExactRows::from_bytes(4, &rows.to_bytes()).is_none());
        // A row count no file could hold is refused before anything is allocated.
        let mut huge = rows.to_bytes();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ExactRows::from_bytes(3, &huge).is_none());
    }
}
