#!/usr/bin/python3
"""Writes an image folder of photo-like pictures made from Fashion-MNIST, for trying qnas's
photo-folder path on ImageNet-size models without downloading anything:

    /usr/bin/python3 scripts/fashion_photos.py OUTDIR [--train 2000] [--test 300] [--seed 0]
        [--min 160] [--max 400] [--fmnist /usr/share/datasets/fashion-mnist]

OUTDIR/train/<class>/ and OUTDIR/test/<class>/ (10 classes, named after Fashion-MNIST's)
hold RGB images whose width and height are drawn independently from [--min, --max] pixels
(random aspect ratio). Each is one Fashion-MNIST image (train images for train/, test images
for test/, drawn at random without repetition, the classes in turn so that each has n/10), upscaled with a bicubic filter to 60-90 % of
the picture's shorter side, coloured (a random garment colour over a random background
colour, mixed by the original gray level, plus mild noise) and placed near the centre. Every
other image is a PNG, the rest JPEGs (quality 85-95). The same arguments give the same files.
"""

import argparse
import gzip
import os
import struct

import numpy as np
from PIL import Image

CLASSES = ["0_tshirt", "1_trouser", "2_pullover", "3_dress", "4_coat", "5_sandal", "6_shirt",
           "7_sneaker", "8_bag", "9_boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def picture(gray, rng, lo, hi):
    """One coloured picture of random size from a 28×28 gray image."""
    w, h = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    side = int(min(w, h) * rng.uniform(0.6, 0.9))
    a = np.asarray(Image.fromarray(gray).resize((side, side), Image.BICUBIC), dtype=np.float32) / 255
    bg = rng.uniform(0, 255, 3)
    fg = rng.uniform(0, 255, 3)
    while np.abs(fg - bg).sum() < 150:  # keep the garment visible
        fg = rng.uniform(0, 255, 3)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = bg
    x0 = (w - side) // 2 + int(rng.integers(-(w - side) // 8, (w - side) // 8 + 1))
    y0 = (h - side) // 2 + int(rng.integers(-(h - side) // 8, (h - side) // 8 + 1))
    patch = img[y0:y0 + side, x0:x0 + side]
    patch[:] = bg * (1 - a[..., None]) + fg * a[..., None]
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")


def write_split(out, split, images, labels, n, rng, lo, hi):
    if not len(CLASSES) <= n <= len(images):
        raise SystemExit(f"--{split} {n}: want 10 to {len(images)} images (Fashion-MNIST's {split} split)")
    for c in CLASSES:
        os.makedirs(os.path.join(out, split, c), exist_ok=True)
    # As many images of each class as possible (n/10, the first n mod 10 classes one more),
    # so that no class folder is empty.
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(len(CLASSES))]
    pick = [per_class[k % len(CLASSES)][k // len(CLASSES)] for k in range(n)]
    for k, i in enumerate(pick):
        img = picture(images[i], rng, lo, hi)
        base = os.path.join(out, split, CLASSES[labels[i]], f"{split}{k:05d}")
        if k % 2 == 0:
            img.save(base + ".png")
        else:
            img.save(base + ".jpg", quality=int(rng.integers(85, 96)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min", type=int, default=160)
    ap.add_argument("--max", type=int, default=400)
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    if not 0 < args.min <= args.max:
        raise SystemExit(f"--min {args.min} --max {args.max}: want 0 < min <= max")
    rng = np.random.default_rng(args.seed)
    for split, prefix, n in (("train", "train", args.train), ("test", "t10k", args.test)):
        images = read_idx(os.path.join(args.fmnist, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(args.fmnist, f"{prefix}-labels-idx1-ubyte.gz"))
        write_split(args.outdir, split, images, labels, n, rng, args.min, args.max)
    print(f"{args.outdir}: {args.train} training and {args.test} test images, "
          f"{args.min}-{args.max} px per side, seed {args.seed}")


if __name__ == "__main__":
    main()
