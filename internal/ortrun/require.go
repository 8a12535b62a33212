package ortrun

import (
	"errors"
	"os"
	"testing"
)

// RequireORT initializes ONNX Runtime (see Init) or ends the test: it skips when the
// runtime is unavailable, but fails when QNAS_REQUIRE_TESTDATA=1, unless the build
// lacks cgo, which always skips.
func RequireORT(t testing.TB) {
	t.Helper()
	err := Init()
	if err == nil {
		return
	}
	if os.Getenv("QNAS_REQUIRE_TESTDATA") == "1" && !errors.Is(err, errNoCgo) {
		t.Fatalf("%v", err)
	}
	t.Skipf("%v", err)
}
