package data

import (
	"image"
	"image/color"
	"math"
)

// Resampling for photo folders: separable, with a triangle filter stretched over the
// source footprint of each output pixel when shrinking (so every source pixel counts, as
// an area average does) and plain bilinear interpolation when enlarging — what PIL and
// torchvision call antialiased bilinear resizing. Pixel centers sit at half-integers.

// taps are, for each output position along one axis, the first source index and the
// weights of the n source positions from there.
type taps struct {
	start []int
	n     int
	w     []float32 // n per output position
}

// makeTaps maps the source span [lo, lo+span) onto out output positions, reading only
// the pixels first..last: taps that fall outside are dropped and the others renormalized,
// as if the span were cut out of the image first.
func makeTaps(lo, span float64, out, first, last int) taps {
	scale := span / float64(out)
	r := math.Max(scale, 1)
	t := taps{start: make([]int, out), n: int(math.Ceil(2*r)) + 1}
	t.w = make([]float32, out*t.n)
	for o := range out {
		c := lo + (float64(o)+0.5)*scale - 0.5
		i0 := int(math.Ceil(c - r))
		s := min(max(i0, first), last)
		hi := s + t.n - 1
		if hi > last { // keep the window inside the span
			s = max(last-t.n+1, first)
		}
		t.start[o] = s
		ws := t.w[o*t.n : (o+1)*t.n]
		var sum float64
		for i := i0; float64(i) <= c+r; i++ {
			wt := 1 - math.Abs(float64(i)-c)/r
			if wt <= 0 {
				continue
			}
			j := i - s
			if i < first || i > last || j < 0 || j >= t.n {
				continue
			}
			ws[j] += float32(wt)
			sum += wt
		}
		if sum == 0 { // a degenerate span: take the nearest pixel
			ws[min(max(int(math.Round(c)), first), last)-s] = 1
			sum = 1
		}
		for j := range ws {
			ws[j] = float32(float64(ws[j]) / sum)
		}
	}
	return t
}

// rect is a crop of an image in pixels.
type rect struct{ x, y, w, h int }

// resample writes the crop r of the c planes src (each sw×sh) resized to dw×dh into dst
// (c planes of dw×dh floats on the 0–255 scale). tmp is reused scratch.
func resample(src []uint8, c, sw, sh int, r rect, dst []float32, dw, dh int, tmp []float32) []float32 {
	for ch := range c {
		tmp = resamplePlane(src[ch*sw*sh:(ch+1)*sw*sh], sw, r, dst[ch*dw*dh:(ch+1)*dw*dh], dw, dh, tmp)
	}
	return tmp
}

// resamplePlane resizes the crop r of one plane of bytes (rows stride apart) to dw×dh
// floats in dst.
func resamplePlane(src []uint8, stride int, r rect, dst []float32, dw, dh int, tmp []float32) []float32 {
	tx := makeTaps(float64(r.x), float64(r.w), dw, r.x, r.x+r.w-1)
	ty := makeTaps(float64(r.y), float64(r.h), dh, r.y, r.y+r.h-1)
	if need := r.h * dw; cap(tmp) < need {
		tmp = make([]float32, need)
	}
	tmp = tmp[:r.h*dw]
	for y := range r.h {
		row := src[(r.y+y)*stride:]
		out := tmp[y*dw : (y+1)*dw]
		for o := range out {
			s := tx.start[o]
			ws := tx.w[o*tx.n : (o+1)*tx.n]
			in := row[s : s+len(ws)]
			var acc float32
			for k, wt := range ws {
				acc += wt * float32(in[k])
			}
			out[o] = acc
		}
	}
	for o := range dh {
		out := dst[o*dw : (o+1)*dw]
		clear(out)
		ws := ty.w[o*ty.n : (o+1)*ty.n]
		for k, wt := range ws {
			if wt == 0 {
				continue
			}
			in := tmp[(ty.start[o]+k-r.y)*dw:][:dw]
			for x, v := range in {
				out[x] += wt * v
			}
		}
	}
	return tmp
}

// resizeYCbCr resizes a decoded JPEG to c planes of fw×fh bytes without converting it
// to RGB first: the luma and chroma planes are resized from their own resolutions (the
// chroma of most JPEGs has half the width and height), then converted at the target size.
func resizeYCbCr(m *image.YCbCr, c, fw, fh int) []uint8 {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]uint8, c*fw*fh)
	n := fw * fh
	y := make([]float32, n)
	var tmp []float32
	tmp = resamplePlane(m.Y[m.YOffset(b.Min.X, b.Min.Y):], m.YStride, rect{0, 0, w, h}, y, fw, fh, tmp)
	if c == 1 {
		toBytes(y, out)
		return out
	}
	cw, ch := w, h
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		cw = (w + 1) / 2
	case image.YCbCrSubsampleRatio420:
		cw, ch = (w+1)/2, (h+1)/2
	case image.YCbCrSubsampleRatio440:
		ch = (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		cw = (w + 3) / 4
	case image.YCbCrSubsampleRatio410:
		cw, ch = (w+3)/4, (h+1)/2
	}
	cb, cr := make([]float32, n), make([]float32, n)
	co := m.COffset(b.Min.X, b.Min.Y)
	tmp = resamplePlane(m.Cb[co:], m.CStride, rect{0, 0, cw, ch}, cb, fw, fh, tmp)
	resamplePlane(m.Cr[co:], m.CStride, rect{0, 0, cw, ch}, cr, fw, fh, tmp)
	for i := range n {
		r, g, bl := color.YCbCrToRGB(byteOf(y[i]), byteOf(cb[i]), byteOf(cr[i]))
		out[i], out[n+i], out[2*n+i] = r, g, bl
	}
	return out
}

func byteOf(v float32) uint8 { return uint8(min(max(v+0.5, 0), 255)) }

// toBytes rounds 0–255 floats to bytes.
func toBytes(src []float32, dst []uint8) {
	for i, v := range src {
		dst[i] = byteOf(v)
	}
}

// planes converts a decoded image to c planes of bytes (1: gray, 3: red, green, blue):
// alpha is composited onto black, 16-bit samples keep their high byte, color becomes
// gray with the ITU-R BT.601 luma weights, gray becomes three equal planes.
func planes(img image.Image, c int) []uint8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	dst := make([]uint8, c*w*h)
	toCHW(img, c, dst)
	return dst
}

// toCHW writes img into dst as c planes (see planes).
func toCHW(img image.Image, c int, dst []uint8) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	plane := w * h
	switch m := img.(type) {
	case *image.Gray:
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:w]
			for ch := range c {
				copy(dst[ch*plane+y*w:], row)
			}
		}
		return
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				yi := m.YOffset(b.Min.X+x, b.Min.Y+y)
				if c == 1 {
					dst[y*w+x] = m.Y[yi]
					continue
				}
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				dst[y*w+x], dst[plane+y*w+x], dst[2*plane+y*w+x] = r, g, bl
			}
		}
		return
	case *image.RGBA:
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:4*w]
			for x := range w {
				putRGB(dst, c, plane, y*w+x, uint32(row[4*x])*0x101, uint32(row[4*x+1])*0x101, uint32(row[4*x+2])*0x101)
			}
		}
		return
	case *image.NRGBA:
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:4*w]
			for x := range w {
				a := uint32(row[4*x+3]) * 0x101
				putRGB(dst, c, plane, y*w+x, uint32(row[4*x])*a/0xff, uint32(row[4*x+1])*a/0xff, uint32(row[4*x+2])*a/0xff)
			}
		}
		return
	case *image.Paletted:
		var lut [256][3]uint32
		for i, col := range m.Palette {
			r, g, bl, _ := col.RGBA()
			lut[i] = [3]uint32{r, g, bl}
		}
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:w]
			for x, p := range row {
				putRGB(dst, c, plane, y*w+x, lut[p][0], lut[p][1], lut[p][2])
			}
		}
		return
	}
	for y := range h { // CMYK, 16-bit and the rest, through the color interface
		for x := range w {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			putRGB(dst, c, plane, y*w+x, r, g, bl)
		}
	}
}

// putRGB stores one pixel given as 16-bit premultiplied r, g, b.
func putRGB(dst []uint8, c, plane, i int, r, g, b uint32) {
	if c == 1 {
		dst[i] = uint8((19595*r + 38470*g + 7471*b + 1<<15) >> 24)
		return
	}
	dst[i], dst[plane+i], dst[2*plane+i] = uint8(r>>8), uint8(g>>8), uint8(b>>8)
}
