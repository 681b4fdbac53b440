#!/usr/bin/env python3
"""Regenerates tests/fixtures/ from public-domain / CC0 photos shipped in the
scikit-image wheel (see tests/fixtures/README.md). Needs pillow and numpy.

  pip download --no-deps --only-binary=:all: scikit-image==0.26.0 -d /tmp/sk
  python3 scripts/make_fixtures.py /tmp/sk/scikit_image-0.26.0-*.whl
  python3 scripts/make_fixtures.py --adam7   # the interlaced 16-bit PNG (needs pypng)
"""
import io, os, sys, zipfile, zlib, struct

try:
    from PIL import Image
except ImportError:  # --adam7 needs only pypng
    Image = None

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
PHOTOS = {"coffee": "coffee.png", "chelsea": "chelsea.png", "astronaut": "astronaut.png", "rocket": "rocket.jpg"}


def main():
    whl = zipfile.ZipFile(sys.argv[1])
    os.makedirs(f"{OUT}/photos", exist_ok=True)
    os.makedirs(f"{OUT}/formats", exist_ok=True)
    os.makedirs(f"{OUT}/bad", exist_ok=True)
    ims = {}
    for name, f in PHOTOS.items():
        im = Image.open(io.BytesIO(whl.read(f"skimage/data/{f}"))).convert("RGB")
        im.thumbnail((360, 360), Image.LANCZOS)
        im.save(f"{OUT}/photos/{name}.jpg", quality=90)
        ims[name] = Image.open(f"{OUT}/photos/{name}.jpg").convert("RGB")

    c, k, a, r = ims["coffee"], ims["chelsea"], ims["astronaut"], ims["rocket"]
    rgba = c.convert("RGBA")
    px = rgba.load()
    for y in range(rgba.height):
        for x in range(min(40, rgba.width)):
            px[x, y] = (0, 0, 0, 0)  # a transparent band on the left: must become white
    rgba.save(f"{OUT}/formats/coffee-alpha.png")
    k.save(f"{OUT}/formats/chelsea.webp", quality=90)
    r.save(f"{OUT}/formats/rocket.gif")
    a.save(f"{OUT}/formats/astronaut.bmp")
    c.save(f"{OUT}/formats/coffee.tiff")
    k.convert("L").save(f"{OUT}/formats/chelsea-grey.jpg", quality=92)
    c.convert("CMYK").save(f"{OUT}/formats/coffee-cmyk.jpg", quality=95)
    # Stored rotated 90° counter-clockwise, tagged EXIF Orientation=6 so that the upright view is the original.
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer must rotate 90° clockwise
    a.transpose(Image.Transpose.ROTATE_90).save(f"{OUT}/formats/astronaut-exif6.jpg", quality=92, exif=exif)

    # A decompression bomb: a valid PNG header declaring 50,000 x 50,000 RGB pixels.
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 150001 * 4, 9)
    open(f"{OUT}/bad/bomb.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def adam7():
    """A 37 x 23 16-bit RGBA gradient, Adam7-interlaced (pypng writes interlaced PNGs)."""
    import png

    w, h = 37, 23
    rows = []
    for y in range(h):
        row = []
        for x in range(w):
            row += [x * 1771 % 65536, y * 2850 % 65536, (x * y * 97) % 65536, 65535 if (x + y) % 5 else (x * 3000) % 65536]
        rows.append(row)
    with open(f"{OUT}/formats/gradient-adam7-rgba16.png", "wb") as f:
        png.Writer(w, h, greyscale=False, alpha=True, bitdepth=16, interlace=True).write(f, rows)


if __name__ == "__main__":
    adam7() if sys.argv[1:] == ["--adam7"] else main()
