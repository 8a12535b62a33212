// Package testenv locates the external test inputs qnas's tests use (the ONNX conformance
// models, Fashion-MNIST, ONNX Runtime) and decides whether their absence skips or fails a
// test: with QNAS_REQUIRE_TESTDATA=1 (set by .ci/run) a missing input is a failure.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// ConformanceDir is where Debian's libonnx-testdata installs the ONNX conformance models.
const ConformanceDir = "/usr/share/libonnx-testdata/data"

// FashionMNISTDir is where Debian's dataset-fashion-mnist installs the full data set.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// Require returns dir if it exists; otherwise it skips the test, or fails it when
// QNAS_REQUIRE_TESTDATA=1.
func Require(t testing.TB, dir, installHint string) string {
	t.Helper()
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("QNAS_REQUIRE_TESTDATA") == "1" {
			t.Fatalf("%s is missing (%s); run scripts/deps.sh", dir, installHint)
		}
		t.Skipf("%s is missing (%s); run scripts/deps.sh", dir, installHint)
	}
	return dir
}

// RepoRoot returns the repository's top folder (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Path joins parts onto the repository root.
func Path(parts ...string) string {
	return filepath.Join(append([]string{RepoRoot()}, parts...)...)
}

// DebianPython is the interpreter Debian's python3-onnx (the ONNX checker) is installed for;
// the python3 first on PATH may be another one.
const DebianPython = "/usr/bin/python3"

// CheckONNX runs onnx.checker.check_model(full_check=True) of Debian's python3-onnx on the
// model file and returns what it reported, or nil when it accepts the model. A missing
// checker skips the test, or fails it when QNAS_REQUIRE_TESTDATA=1.
func CheckONNX(t testing.TB, path string) error {
	t.Helper()
	if err := exec.Command(DebianPython, "-c", "import onnx").Run(); err != nil {
		msg := "the ONNX checker (apt python3-onnx) is missing; run scripts/deps.sh"
		if os.Getenv("QNAS_REQUIRE_TESTDATA") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(DebianPython, "-c",
		"import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
