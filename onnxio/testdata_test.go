package onnxio

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/qnas/qnas/onnxio/onnxpb"
)

// conformanceDir is where Debian's libonnx-testdata installs the ONNX test cases.
const conformanceDir = "/usr/share/libonnx-testdata/data"

// conformanceModels returns the model.onnx files of libonnx-testdata, sorted. It skips
// the test when the package is not installed, unless QNAS_REQUIRE_TESTDATA=1.
func conformanceModels(t testing.TB) []string {
	t.Helper()
	if _, err := os.Stat(conformanceDir); err != nil {
		if os.Getenv("QNAS_REQUIRE_TESTDATA") == "1" {
			t.Fatalf("libonnx-testdata is required (QNAS_REQUIRE_TESTDATA=1) but missing: %v; run scripts/deps.sh", err)
		}
		t.Skipf("libonnx-testdata not installed (%v); run scripts/deps.sh", err)
	}
	var paths []string
	err := filepath.WalkDir(conformanceDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "model.onnx" {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	return paths
}

func TestRoundTripConformanceModels(t *testing.T) {
	paths := conformanceModels(t)
	n := 0
	for _, p := range paths {
		in, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Load(p, DefaultLimits())
		if err != nil {
			t.Errorf("load: %v", err)
			continue
		}
		var out bytes.Buffer
		if err := Encode(&out, m.Proto); err != nil {
			t.Errorf("%s: encode: %v", p, err)
			continue
		}
		if !bytes.Equal(in, out.Bytes()) {
			t.Errorf("%s: re-encoded model differs (%d bytes in, %d out)", p, len(in), out.Len())
			continue
		}
		n++
	}
	t.Logf("round-tripped %d models", n)
	if n < 1000 {
		t.Errorf("round-tripped only %d models, want at least 1000", n)
	}
}

// graphIO returns the value infos of the graph inputs that are not initializers (the
// order of input_*.pb files) and of the outputs.
func graphIO(g *onnxpb.GraphProto) (ins, outs []*onnxpb.ValueInfoProto) {
	init := map[string]bool{}
	for _, t := range g.Initializer {
		init[t.GetName()] = true
	}
	for _, vi := range g.Input {
		if !init[vi.GetName()] {
			ins = append(ins, vi)
		}
	}
	return ins, g.Output
}

func TestConformanceTensors(t *testing.T) {
	paths := conformanceModels(t)
	var tensors, converted, other, bf16AsUint16 int
	for _, mp := range paths {
		m, err := Load(mp, DefaultLimits())
		if err != nil {
			t.Errorf("load: %v", err)
			continue
		}
		ins, outs := graphIO(m.Proto.Graph)
		files, _ := filepath.Glob(filepath.Join(filepath.Dir(mp), "test_data_set_*", "*.pb"))
		for _, f := range files {
			base := filepath.Base(f)
			var vis []*onnxpb.ValueInfoProto
			var idx int
			switch {
			case strings.HasPrefix(base, "input_"):
				vis = ins
				idx = atoiPrefix(strings.TrimPrefix(base, "input_"))
			case strings.HasPrefix(base, "output_"):
				vis = outs
				idx = atoiPrefix(strings.TrimPrefix(base, "output_"))
			default:
				continue
			}
			if idx < 0 || idx >= len(vis) {
				t.Errorf("%s: the graph has no matching input or output", f)
				continue
			}
			tt := vis[idx].GetType().GetTensorType()
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			tp, err := DecodeTensor(fh, DefaultLimits())
			fh.Close()
			if tt == nil {
				// A sequence, map or optional value (SequenceProto, OptionalProto): not a
				// TensorProto. Decoding it as one must not panic; nothing else is required.
				if err != nil {
					if _, ok := err.(*Error); !ok {
						t.Errorf("%s: error of type %T", f, err)
					}
				}
				other++
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			tensors++
			dt := tp.GetDataType()
			if want := tt.GetElemType(); want != 0 && dt != want {
				if want == TypeBFloat16 && dt == TypeUint16 {
					// Known quirk of ONNX 1.12's test generator: numpy has no bfloat16,
					// so the Cast/CastLike bfloat16 cases store the bits as UINT16.
					bf16AsUint16++
				} else {
					t.Errorf("%s: data_type %s, graph says %s", f, DataTypeName(dt), DataTypeName(want))
				}
			}
			if dt == TypeString || dt == TypeComplex64 || dt == TypeComplex128 || (IsFloatType(dt) && ElemBits(dt) <= 8) {
				continue
			}
			vals, err := TensorFloat32s(tp, "", DefaultLimits())
			if err != nil {
				t.Errorf("%s: TensorFloat32s: %v", f, err)
				continue
			}
			if n, _ := NumElements(tp); int64(len(vals)) != n {
				t.Errorf("%s: %d values for %d elements", f, len(vals), n)
			}
			if IsIntegerType(dt) {
				if _, err := TensorInt64s(tp, "", DefaultLimits()); err != nil {
					t.Errorf("%s: TensorInt64s: %v", f, err)
				}
			}
			converted++
		}
	}
	t.Logf("decoded %d tensor files, converted %d to float32; %d non-tensor files (sequences, optionals) refused or skipped; %d BFLOAT16 values stored as UINT16",
		tensors, converted, other, bf16AsUint16)
	if tensors < 2000 {
		t.Errorf("decoded only %d tensor files", tensors)
	}
}

// atoiPrefix parses the decimal number at the start of s, or returns -1.
func atoiPrefix(s string) int {
	n, digits := 0, 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
		digits++
	}
	if digits == 0 {
		return -1
	}
	return n
}
