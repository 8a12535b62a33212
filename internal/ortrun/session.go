//go:build cgo

package ortrun

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

var (
	initOnce sync.Once
	initErr  error
)

// Init loads the ONNX Runtime library (see LibraryPath) and creates the process-wide
// runtime environment, once; later calls return the first call's result. It is safe to
// call concurrently. The environment lives until the process exits.
func Init() error {
	initOnce.Do(func() {
		if ort.IsInitialized() {
			return // set up by someone else in this process
		}
		p, err := LibraryPath()
		if err != nil {
			initErr = err
			return
		}
		ort.SetSharedLibraryPath(p)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("ortrun: initializing ONNX Runtime from %s: %w", p, err)
		}
	})
	return initErr
}

// Version returns the loaded ONNX Runtime's version, or "" before a successful Init.
func Version() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

// Session is an open ONNX Runtime session. Run may be called from several goroutines
// at once; Close must be called once no Run is in progress.
type Session struct {
	s       *ort.DynamicAdvancedSession
	inputs  []string
	outputs []string
}

// NewSession opens the model file at path. Empty inputNames or outputNames are read
// from the model (see IONames); the file is then read once more, but no extra ONNX
// Runtime session is created. External data is resolved relative to the model's folder.
func NewSession(path string, inputNames, outputNames []string, opts Options) (*Session, error) {
	return newSession(path, nil, inputNames, outputNames, opts)
}

// NewSessionBytes is NewSession for a serialized model in memory. The model must not
// use external data.
func NewSessionBytes(model []byte, inputNames, outputNames []string, opts Options) (*Session, error) {
	if len(model) == 0 {
		return nil, errors.New("ortrun: empty model")
	}
	return newSession("", model, inputNames, outputNames, opts)
}

func newSession(path string, model []byte, inputNames, outputNames []string, opts Options) (*Session, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	if len(inputNames) == 0 || len(outputNames) == 0 {
		b := model
		if b == nil {
			var err error
			if b, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("ortrun: %w", err)
			}
		}
		ins, outs, err := IONames(b)
		if err != nil {
			return nil, err
		}
		if len(inputNames) == 0 {
			inputNames = ins
		}
		if len(outputNames) == 0 {
			outputNames = outs
		}
	}
	if len(inputNames) == 0 {
		return nil, errors.New("ortrun: model has no inputs")
	}
	so, err := sessionOptions(opts)
	if err != nil {
		return nil, err
	}
	defer so.Destroy() // the session keeps its own copy
	var s *ort.DynamicAdvancedSession
	if model != nil {
		s, err = ort.NewDynamicAdvancedSessionWithONNXData(model, inputNames, outputNames, so)
	} else {
		s, err = ort.NewDynamicAdvancedSession(path, inputNames, outputNames, so)
	}
	if err != nil {
		if path == "" {
			path = "model"
		}
		return nil, fmt.Errorf("ortrun: %s: %w", path, err)
	}
	return &Session{s: s, inputs: slices.Clone(inputNames), outputs: slices.Clone(outputNames)}, nil
}

func sessionOptions(opts Options) (*ort.SessionOptions, error) {
	var level ort.GraphOptimizationLevel
	switch opts.GraphOptimization {
	case OptDisable:
		level = ort.GraphOptimizationLevelDisableAll
	case OptBasic:
		level = ort.GraphOptimizationLevelEnableBasic
	case OptExtended:
		level = ort.GraphOptimizationLevelEnableExtended
	case OptLayout:
		level = 3 // ORT_ENABLE_LAYOUT; the wrapper names no constant for it
	case OptAll:
		level = ort.GraphOptimizationLevelEnableAll
	default:
		return nil, fmt.Errorf("ortrun: unknown graph optimization level %d", int(opts.GraphOptimization))
	}
	threads := max(opts.Threads, 1)
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ortrun: %w", err)
	}
	for _, set := range []func() error{
		func() error { return so.SetGraphOptimizationLevel(level) },
		func() error { return so.SetIntraOpNumThreads(threads) },
		func() error { return so.SetInterOpNumThreads(1) },
		func() error { return so.SetExecutionMode(ort.ExecutionModeSequential) },
		// Idle pool threads sleep instead of spinning, so they do not steal CPU
		// from the rest of a test run.
		func() error { return so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0") },
		func() error { return so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0") },
		func() error {
			if opts.OptimizedModelPath == "" {
				return nil
			}
			return so.SetOptimizedModelFilePath(opts.OptimizedModelPath)
		},
	} {
		if err := set(); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("ortrun: session options: %w", err)
		}
	}
	return so, nil
}

// InputNames returns the names of the inputs Run expects.
func (s *Session) InputNames() []string { return slices.Clone(s.inputs) }

// OutputNames returns the names of the outputs Run returns.
func (s *Session) OutputNames() []string { return slices.Clone(s.outputs) }

// Run feeds inputs, which must hold exactly the session's inputs, and returns the
// session's outputs by name. Non-float32 and rank-0 outputs are errors.
func (s *Session) Run(inputs map[string]Tensor) (map[string]Tensor, error) {
	if s.s == nil {
		return nil, errors.New("ortrun: session is closed")
	}
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("ortrun: got %d inputs, the session takes %d (%v)", len(inputs), len(s.inputs), s.inputs)
	}
	in := make([]ort.Value, 0, len(s.inputs))
	defer func() {
		for _, v := range in {
			v.Destroy()
		}
	}()
	for _, name := range s.inputs {
		t, ok := inputs[name]
		if !ok {
			return nil, fmt.Errorf("ortrun: input %q is missing", name)
		}
		if err := t.check(name); err != nil {
			return nil, err
		}
		v, err := ort.NewTensor(ort.NewShape(slices.Clone(t.Shape)...), t.Data)
		if err != nil {
			return nil, fmt.Errorf("ortrun: input %q: %w", name, err)
		}
		in = append(in, v)
	}
	out := make([]ort.Value, len(s.outputs)) // nil: allocated by ONNX Runtime
	defer func() {
		for _, v := range out {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	if err := s.s.Run(in, out); err != nil {
		return nil, fmt.Errorf("ortrun: %w", err)
	}
	res := make(map[string]Tensor, len(out))
	for i, v := range out {
		name := s.outputs[i]
		t, ok := v.(*ort.Tensor[float32])
		if !ok {
			kind := v.GetONNXType().String()
			if v.GetONNXType() == ort.ONNXTypeTensor {
				kind = ort.TensorElementDataType(v.DataType()).String()
			}
			return nil, fmt.Errorf("ortrun: output %q is %s; only float32 tensors are supported", name, kind)
		}
		// The wrapper already copied the data into a Go slice, which Destroy leaves
		// intact, so it can be returned as is.
		res[name] = Tensor{Shape: slices.Clone([]int64(t.GetShape())), Data: t.GetData()}
	}
	return res, nil
}

// Close releases the session. It is safe to call more than once.
func (s *Session) Close() error {
	if s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	return err
}

// Run opens the model file at path, runs it once on inputs (keyed by input name) and
// returns the outputs named by outputNames, or all graph outputs if outputNames is
// empty.
func Run(path string, inputs map[string]Tensor, outputNames []string, opts Options) (map[string]Tensor, error) {
	s, err := NewSession(path, inputNames(inputs), outputNames, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Run(inputs)
}

// RunBytes is Run for a serialized model in memory.
func RunBytes(model []byte, inputs map[string]Tensor, outputNames []string, opts Options) (map[string]Tensor, error) {
	s, err := NewSessionBytes(model, inputNames(inputs), outputNames, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Run(inputs)
}

// inputNames returns the keys of inputs, sorted.
func inputNames(inputs map[string]Tensor) []string {
	names := make([]string, 0, len(inputs))
	for n := range inputs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
