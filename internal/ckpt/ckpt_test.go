package ckpt

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

type state struct {
	Step    int
	Tensors map[string][]float32
}

func header(lr string) Header {
	return Header{Kind: "training", Version: 1, Settings: Settings{{"model", "abc"}, {"lr", lr}}}
}

// A checkpoint reads back; a header of another kind, version or setting is refused with
// one line naming the file and the first difference, before the state is read.
func TestRoundTripAndMismatch(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.ckpt")
	want := state{Step: 3, Tensors: map[string][]float32{"w": {1, 2, 3}}}
	if err := Write(p, header("0.1"), &want); err != nil {
		t.Fatal(err)
	}
	var got state
	if err := Read(p, header("0.1"), StateBound(3), &got); err != nil || got.Step != 3 || len(got.Tensors["w"]) != 3 {
		t.Fatalf("%v %+v", err, got)
	}
	other := header("0.5")
	for _, c := range []struct {
		h    Header
		want string
	}{
		{other, "a.ckpt was saved by another run: lr was 0.1, now 0.5"},
		{Header{Kind: "search", Version: 1, Settings: other.Settings}, "a.ckpt holds the state of a training run, not of a search run"},
		{Header{Kind: "training", Version: 2, Settings: other.Settings}, "version 1, this qnas reads 2"},
		{Header{Kind: "training", Version: 1, Settings: Settings{{"model", "abc"}}}, "it records lr, which this run does not have"},
		{Header{Kind: "training", Version: 1, Settings: Settings{{"data", "x"}, {"model", "abc"}, {"lr", "0.1"}}}, "it does not record data (now x)"},
	} {
		err := Read(p, c.h, StateBound(3), &got)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
	// A state larger than the run can hold is refused by the file's size.
	if err := Read(p, header("0.1"), 1, &got); err == nil {
		t.Error("a state larger than the bound was read")
	}
}

// Foreign, truncated, damaged and oversized files each give one line naming the file.
func TestHostileFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.ckpt")
	if err := Write(good, header("1"), &state{Step: 1}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	huge := append([]byte(magic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(huge[len(magic):], 1<<31)
	for name, body := range map[string][]byte{
		"empty":          nil,
		"model":          []byte("\x08\x07\x12\x04onnx"),
		"truncated-head": b[:len(magic)+6],
		"truncated-body": b[:len(b)-3],
		"huge-header":    huge,
		"bad-json":       append(append([]byte(magic), 2, 0, 0, 0), "{x"...),
		"garbage-state":  append(b[:len(b)-10], "0123456789"...),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, body, 0o644)
		var s state
		err := Read(p, header("1"), StateBound(10), &s)
		if err == nil || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v", name, err)
		}
	}
	for _, p := range []string{"/dev/zero", filepath.Join(dir, "fifo")} {
		if strings.HasSuffix(p, "fifo") {
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ReadHeader(p); err == nil || !strings.Contains(err.Error(), "not a regular file") { // and does not block
			t.Errorf("%s: %v", p, err)
		}
	}
	// Check reads the whole state: a flipped byte is found before anything is decoded.
	if err := Check(good, header("1")); err != nil {
		t.Error(err)
	}
	flipped := append([]byte{}, b...)
	flipped[len(flipped)-5] ^= 1
	p := filepath.Join(dir, "flipped.ckpt")
	os.WriteFile(p, flipped, 0o644)
	if err := Check(p, header("1")); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("flipped: %v", err)
	}
	if _, err := ReadHeader(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("missing: %v", err)
	}
}
