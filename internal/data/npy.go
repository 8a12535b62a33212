package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// NPY files: the magic "\x93NUMPY", a version (1.0, 2.0 or 3.0), a little-endian header
// length (2 bytes in version 1, else 4), then a Python dict literal with the keys
// descr, fortran_order and shape, then the raw array data in C order.

// npyHeader is a parsed NPY header.
type npyHeader struct {
	descr string
	kind  byte // 'u', 'i' or 'f'
	size  int  // bytes per element
	order binary.ByteOrder
	shape []int
	len   int64 // bytes before the data
}

// elems returns the element count, or -1 when it exceeds limit bytes.
func (h *npyHeader) elems(limit int64) int64 {
	n := int64(1)
	for _, d := range h.shape {
		if d != 0 && n > limit/int64(h.size)/int64(d) {
			return -1
		}
		n *= int64(d)
	}
	return n
}

func (h *npyHeader) shapeString() string {
	parts := make([]string, len(h.shape))
	for i, d := range h.shape {
		parts[i] = strconv.Itoa(d)
	}
	if len(parts) == 1 {
		return "(" + parts[0] + ",)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

const npyMaxHeader = 1 << 20

// readNPYHeader reads and checks an NPY header from r.
func readNPYHeader(r io.Reader) (*npyHeader, error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		return nil, errors.New("truncated: no NPY header")
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf("not an NPY array: bad magic %q", pre[:6])
	}
	h := &npyHeader{}
	var hlen int
	switch pre[6] {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return nil, errors.New("truncated NPY header")
		}
		hlen, h.len = int(binary.LittleEndian.Uint16(pre[8:10])), 10
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, errors.New("truncated NPY header")
		}
		v := binary.LittleEndian.Uint32(l[:])
		if v > npyMaxHeader {
			return nil, fmt.Errorf("NPY header length %d is absurd", v)
		}
		hlen, h.len = int(v), 12
	default:
		return nil, fmt.Errorf("NPY version %d.%d is not supported", pre[6], pre[7])
	}
	text := make([]byte, hlen)
	if _, err := io.ReadFull(r, text); err != nil {
		return nil, errors.New("truncated NPY header")
	}
	h.len += int64(hlen)
	v, err := parsePyLiteral(string(text))
	if err != nil {
		return nil, fmt.Errorf("bad NPY header: %v", err)
	}
	dict, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("bad NPY header: not a dict")
	}
	descr, ok := dict["descr"].(string)
	if !ok {
		return nil, errors.New("NPY header: descr is missing or a structured dtype (not supported)")
	}
	if err := h.setDescr(descr); err != nil {
		return nil, err
	}
	fortran, ok := dict["fortran_order"].(bool)
	if !ok {
		return nil, errors.New("NPY header: fortran_order is missing")
	}
	if fortran {
		return nil, errors.New("NPY array is in Fortran order; save it in C order (numpy.ascontiguousarray)")
	}
	shape, ok := dict["shape"].([]any)
	if !ok {
		return nil, errors.New("NPY header: shape is missing")
	}
	for _, s := range shape {
		d, ok := s.(int64)
		if !ok || d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("NPY header: bad dimension %v in shape", s)
		}
		h.shape = append(h.shape, int(d))
	}
	return h, nil
}

// setDescr parses a dtype string such as "<f4" or "|u1".
func (h *npyHeader) setDescr(descr string) error {
	h.descr = descr
	bad := fmt.Errorf("NPY dtype %q is not supported; want uint8, (u)int8..64, float32 or float64", descr)
	if len(descr) < 3 {
		return bad
	}
	switch descr[0] {
	case '<', '|':
		h.order = binary.LittleEndian
	case '>':
		h.order = binary.BigEndian
	case '=':
		h.order = binary.NativeEndian
	default:
		return bad
	}
	h.kind = descr[1]
	size, err := strconv.Atoi(descr[2:])
	if err != nil {
		return bad
	}
	h.size = size
	switch {
	case (h.kind == 'u' || h.kind == 'i') && (size == 1 || size == 2 || size == 4 || size == 8):
	case h.kind == 'f' && (size == 4 || size == 8):
	default:
		return bad
	}
	return nil
}

// readNPYFloats reads n float elements of h from r as float32, in chunks.
func readNPYFloats(r io.Reader, h *npyHeader, n int) ([]float32, error) {
	out := make([]float32, n)
	buf := make([]byte, 64<<10)
	per := len(buf) / h.size
	for i := 0; i < n; {
		k := min(per, n-i)
		if _, err := io.ReadFull(r, buf[:k*h.size]); err != nil {
			return nil, truncated(err, int64(i)*int64(h.size))
		}
		for j := range k {
			if h.size == 4 {
				out[i+j] = math.Float32frombits(h.order.Uint32(buf[4*j:]))
			} else {
				out[i+j] = float32(math.Float64frombits(h.order.Uint64(buf[8*j:])))
			}
		}
		i += k
	}
	return out, nil
}

// readNPYInts reads n integer elements of h from r.
func readNPYInts(r io.Reader, h *npyHeader, n int) ([]int64, error) {
	raw := make([]byte, n*h.size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, truncated(err, 0)
	}
	out := make([]int64, n)
	for i := range out {
		b := raw[i*h.size:]
		var u uint64
		switch h.size {
		case 1:
			u = uint64(b[0])
		case 2:
			u = uint64(h.order.Uint16(b))
		case 4:
			u = uint64(h.order.Uint32(b))
		case 8:
			u = h.order.Uint64(b)
		}
		if h.kind == 'i' { // sign-extend
			shift := 64 - 8*h.size
			out[i] = int64(u<<shift) >> shift
		} else if u > math.MaxInt64 {
			out[i] = -1 // out of any label range
		} else {
			out[i] = int64(u)
		}
	}
	return out, nil
}

// truncated turns a short read into a one-line message.
func truncated(err error, at int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated: array data ends early")
	}
	return fmt.Errorf("read error: %v", err)
}

// parsePyLiteral parses the subset of Python literals NPY headers use: dicts, tuples,
// lists, strings, integers, True, False and None.
func parsePyLiteral(s string) (any, error) {
	p := &pyParser{s: s}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("unexpected %q after the value", p.rest())
	}
	return v, nil
}

type pyParser struct {
	s string
	i int
}

func (p *pyParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pyParser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "…"
	}
	return r
}

func (p *pyParser) value(depth int) (any, error) {
	if depth > 16 {
		return nil, errors.New("nested too deeply")
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, errors.New("unexpected end")
	}
	switch ch := p.s[p.i]; {
	case ch == '{':
		p.i++
		m := map[string]any{}
		for {
			p.space()
			if p.i < len(p.s) && p.s[p.i] == '}' {
				p.i++
				return m, nil
			}
			k, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, errors.New("dict key is not a string")
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, fmt.Errorf("expected ':' at %q", p.rest())
			}
			p.i++
			if m[key], err = p.value(depth + 1); err != nil {
				return nil, err
			}
			if err := p.sep('}'); err != nil {
				return nil, err
			}
		}
	case ch == '(' || ch == '[':
		end := byte(')')
		if ch == '[' {
			end = ']'
		}
		p.i++
		list := []any{}
		for {
			p.space()
			if p.i < len(p.s) && p.s[p.i] == end {
				p.i++
				return list, nil
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
			if err := p.sep(end); err != nil {
				return nil, err
			}
		}
	case ch == '\'' || ch == '"':
		j := strings.IndexByte(p.s[p.i+1:], ch)
		if j < 0 {
			return nil, errors.New("unterminated string")
		}
		str := p.s[p.i+1 : p.i+1+j]
		p.i += j + 2
		return str, nil
	case ch == '-' || ch >= '0' && ch <= '9':
		j := p.i + 1
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		v, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer %q", p.s[p.i:j])
		}
		p.i = j
		if p.i < len(p.s) && p.s[p.i] == 'L' { // Python 2 long
			p.i++
		}
		return v, nil
	default:
		for _, kw := range []struct {
			word string
			val  any
		}{{"True", true}, {"False", false}, {"None", nil}} {
			if strings.HasPrefix(p.s[p.i:], kw.word) {
				p.i += len(kw.word)
				return kw.val, nil
			}
		}
		return nil, fmt.Errorf("unexpected %q", p.rest())
	}
}

// sep consumes a ',' or stops before end.
func (p *pyParser) sep(end byte) error {
	p.space()
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case ',':
			p.i++
			return nil
		case end:
			return nil
		}
	}
	return fmt.Errorf("expected ',' or %q at %q", end, p.rest())
}
