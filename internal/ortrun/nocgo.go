//go:build !cgo

package ortrun

// Init reports that ONNX Runtime is unavailable without cgo.
func Init() error { return errNoCgo }

// Version returns "": no runtime is loaded without cgo.
func Version() string { return "" }

// Session is an open ONNX Runtime session; without cgo none can be opened.
type Session struct{}

// NewSession fails without cgo.
func NewSession(path string, inputNames, outputNames []string, opts Options) (*Session, error) {
	return nil, errNoCgo
}

// NewSessionBytes fails without cgo.
func NewSessionBytes(model []byte, inputNames, outputNames []string, opts Options) (*Session, error) {
	return nil, errNoCgo
}

// InputNames returns nil.
func (s *Session) InputNames() []string { return nil }

// OutputNames returns nil.
func (s *Session) OutputNames() []string { return nil }

// Run fails without cgo.
func (s *Session) Run(inputs map[string]Tensor) (map[string]Tensor, error) { return nil, errNoCgo }

// Close does nothing.
func (s *Session) Close() error { return nil }

// Run fails without cgo.
func Run(path string, inputs map[string]Tensor, outputNames []string, opts Options) (map[string]Tensor, error) {
	return nil, errNoCgo
}

// RunBytes fails without cgo.
func RunBytes(model []byte, inputs map[string]Tensor, outputNames []string, opts Options) (map[string]Tensor, error) {
	return nil, errNoCgo
}
