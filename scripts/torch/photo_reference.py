#!/usr/bin/python3
"""Writes a small image folder of photo-like PNGs of assorted sizes and torchvision's
evaluation transform of each (Resize(short side) with PIL's bilinear filter, then
CenterCrop), so that qnas's photo-folder resizing can be compared with it:

    /usr/bin/python3 scripts/torch/photo_reference.py DIR [--size 224] [--crop 1.0]
    QNAS_PHOTO_REFERENCE=DIR go test ./internal/data -run TorchvisionReference -v

DIR/test/a/*.png are the images (file order = sample order); DIR/reference.npy holds the
uint8 crops, N×3×size×size; DIR/reference.txt the size and crop fraction.
"""

import argparse
import os

import numpy as np
from PIL import Image
import torchvision.transforms as T

SIZES = [(500, 375), (375, 500), (640, 480), (333, 333), (180, 120), (1024, 700), (97, 61)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--crop", type=float, default=1.0)
    args = ap.parse_args()
    folder = os.path.join(args.dir, "test", "a")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    resize = round(args.size / args.crop)
    t = T.Compose([T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(args.size)])
    out = []
    for k, (w, h) in enumerate(SIZES):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // w, yy * 255 // h, (xx * 7 + yy * 3) % 256], -1).astype(np.float64)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        pil = Image.fromarray(img)
        pil.save(os.path.join(folder, f"{k}.png"))
        out.append(np.asarray(t(pil)).astype(np.uint8).transpose(2, 0, 1))
    np.save(os.path.join(args.dir, "reference.npy"), np.stack(out))
    with open(os.path.join(args.dir, "reference.txt"), "w") as f:
        f.write(f"{args.size} {args.crop}\n")
    print(f"{len(out)} images and their {args.size}x{args.size} crops (resize {resize}) in {args.dir}")


if __name__ == "__main__":
    main()
