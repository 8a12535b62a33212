package train

import (
	"fmt"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
)

// Distill is knowledge distillation from a teacher (the input float model) while training:
// the loss is (1−Weight)·CE + Weight·T²·KL(teacher ‖ student) at temperature T
// (engine.Plan.DistillCrossEntropy).
type Distill struct {
	Teacher     *graph.Graph
	Weight      float64 // the KL term's share, in [0, 1]
	Temperature float64 // > 0
}

// String describes the settings, for checkpoint fingerprints.
func (d *Distill) String() string {
	if d == nil {
		return "none"
	}
	return fmt.Sprintf("weight=%g T=%g", d.Weight, d.Temperature)
}

// Teacher runs a distillation teacher at one batch size.
type Teacher struct {
	d   *Distill
	p   *engine.Plan
	in  []float32
	out string
}

// NewTeacher compiles d's teacher for batches of n; nil when d is nil.
func NewTeacher(d *Distill, n int) (*Teacher, error) {
	if d == nil {
		return nil, nil
	}
	if !(d.Temperature > 0) || d.Weight < 0 || d.Weight > 1 {
		return nil, fmt.Errorf("distillation weight %g must be in [0, 1] and temperature %g positive", d.Weight, d.Temperature)
	}
	p, err := engine.Compile(d.Teacher, n, engine.Options{Inference: true})
	if err != nil {
		return nil, fmt.Errorf("distillation teacher: %w", err)
	}
	return &Teacher{d: d, p: p, in: p.Value(d.Teacher.Inputs[0]).Data, out: d.Teacher.Outputs[0]}, nil
}

// Loss runs the teacher on the batch x (the student's input) and computes the student
// plan's loss on output with labels, storing its gradient: the distillation loss with a
// teacher, the plain cross-entropy without one (t nil).
func (t *Teacher) Loss(student *engine.Plan, output string, x []float32, labels []int32) (loss float64, correct int) {
	if t == nil {
		return student.SoftmaxCrossEntropy(output, labels)
	}
	copy(t.in, x)
	t.p.Forward(false)
	return student.DistillCrossEntropy(output, labels, t.p.Value(t.out).Data, t.d.Temperature, t.d.Weight)
}
