package onnxio

import (
	"fmt"
	"strconv"
	"strings"
)

// Error describes a problem with an ONNX file or one of its parts.
type Error struct {
	// File is the file the problem was found in; empty when decoding from a reader.
	File string
	// Path locates the offending part of the model as a protobuf field path,
	// e.g. graph.node[12].attribute["pads"]; empty for whole-file problems.
	Path string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error, if any.
	Err error
}

// Error renders the error on one line: "file: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(oneLine(e.Msg))
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// oneLine replaces line breaks so an error always renders on a single line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// withFile returns err with its File set to file when err is an *Error without one.
func withFile(err error, file string) error {
	if e, ok := err.(*Error); ok && e.File == "" {
		c := *e
		c.File = file
		return &c
	}
	return err
}

// path is a lazily rendered protobuf field path: each step is one small allocation,
// and the string is built only when an error is reported.
type path struct {
	up    *path
	fname string // field name, e.g. "node"; empty for a pure index step
	key   string // map-like key (rendered ["key"]) when hasKey
	index int    // list index (rendered [i]) when index >= 0
	// hasKey selects key over index.
	hasKey bool
}

// field returns p extended by a plain field, e.g. ".g".
func (p *path) field(name string) *path { return &path{up: p, fname: name, index: -1} }

// at returns p extended by an indexed field, e.g. ".node[3]".
func (p *path) at(name string, i int) *path { return &path{up: p, fname: name, index: i} }

// named returns p extended by a field keyed by name, e.g. `.attribute["pads"]`;
// it falls back to the index when name is empty.
func (p *path) named(name, key string, i int) *path {
	if key == "" {
		return p.at(name, i)
	}
	return &path{up: p, fname: name, key: key, hasKey: true, index: -1}
}

// String renders the path, e.g. graph.node[12].attribute["pads"].
func (p *path) String() string {
	if p == nil {
		return ""
	}
	var steps []*path
	for q := p; q != nil; q = q.up {
		steps = append(steps, q)
	}
	var b strings.Builder
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if s.fname != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.fname)
		}
		switch {
		case s.hasKey:
			b.WriteByte('[')
			b.WriteString(strconv.Quote(s.key))
			b.WriteByte(']')
		case s.index >= 0:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// errAt builds an *Error located at p.
func errAt(p *path, format string, args ...any) *Error {
	return &Error{Path: p.String(), Msg: fmt.Sprintf(format, args...)}
}
