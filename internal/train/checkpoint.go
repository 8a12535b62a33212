package train

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/qnas/qnas/onnxio"
)

// checkpoint is the whole state of a training run between two steps: enough to continue
// and reach the same bytes as a run that was never stopped.
type checkpoint struct {
	Version     int
	Fingerprint string               // the settings that must match on resume
	Epoch, Step int                  // the next step to run
	Stats       []EpochStats         // finished epochs
	LossSum     float64              // running sums of the current epoch
	Correct     int                  //
	Seen        int                  //
	Tensors     map[string][]float32 // parameters and BatchNorm running statistics
	Velocity    map[string][]float32 // SGD momentum buffers
}

const checkpointVersion = 1

// ErrInterrupted is returned (wrapped) when training stopped on request after saving a
// checkpoint.
var ErrInterrupted = errors.New("interrupted")

// InterruptedError names the checkpoint an interrupted run saved.
type InterruptedError struct{ Checkpoint string }

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("interrupted; the training state is saved in %s (continue with --resume %s)", e.Checkpoint, e.Checkpoint)
}

// Unwrap lets errors.Is(err, ErrInterrupted) match.
func (e *InterruptedError) Unwrap() error { return ErrInterrupted }

func saveCheckpoint(path string, c *checkpoint) error {
	return onnxio.WriteFileAtomic(path, func(w io.Writer) error { return gob.NewEncoder(w).Encode(c) })
}

func loadCheckpoint(path string) (*checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--resume: %w", err)
	}
	defer f.Close()
	var c checkpoint
	if err := gob.NewDecoder(io.LimitReader(f, 8<<30)).Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: not a qnas training checkpoint: %v", path, err)
	}
	if c.Version != checkpointVersion {
		return nil, fmt.Errorf("%s: checkpoint version %d, this qnas reads %d", path, c.Version, checkpointVersion)
	}
	return &c, nil
}
