//! What decoding one photo allocates: a 16-bit PNG costs what an 8-bit one
//! does (break-it finding 9.3: a 1 MB 16-bit RGBA PNG of 6300² took +454 MB).
//! Its own test binary, because it counts every allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageFormat};
use knockoff::embed::{decode_image, DecodeLimits};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_16_bit_rgba_png_decodes_in_the_memory_of_its_8_bit_rgb_result() {
    let (w, h) = (2000u32, 2000u32);
    let img = image::ImageBuffer::from_fn(w, h, |x, y| image::Rgba([(x * 31) as u16, (y * 29) as u16, ((x ^ y) * 7) as u16, 65_535]));
    let mut png = Vec::new();
    DynamicImage::ImageRgba16(img).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let decoded = decode_image(&png, "deep.png", DecodeLimits::default()).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;
    assert_eq!(decoded.rgb.dimensions(), (w, h));
    let pixels = (w * h) as usize;
    // The RGB result is 3 bytes a pixel; allow one more byte a pixel and 4 MB
    // of decoder state. Through `image` the peak was 12 bytes a pixel (48 MB).
    assert!(peak < 4 * pixels + (4 << 20), "decoding a {w}x{h} 16-bit RGBA PNG peaked at {} MB", peak >> 20);
}
