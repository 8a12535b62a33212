package engine_test

import (
	"math/rand/v2"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/qnas/qnas/internal/blas"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/optim"
	"github.com/qnas/qnas/internal/testenv"
)

// BenchmarkTrainStep times the float training step `qnas bench` times
// (forward, cross-entropy, backward, SGD with momentum and weight decay)
// on ResNet-20 with BatchNorm, batch 128, on GOMAXPROCS threads, so that
// profiles of it can be taken:
//
//	go test ./internal/engine -run x -bench TrainStep -cpuprofile /tmp/cpu.out
func BenchmarkTrainStep(b *testing.B) {
	blas.SetThreads(1)
	const batch = 128
	g := loadCanonical(b, testenv.Path("testdata", "models", "resnet20_bn.onnx"), false)
	p, err := engine.Compile(g, batch, engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, v := range p.Values {
		if v.Kind == engine.Input {
			for i := range v.Data {
				v.Data[i] = float32(r.NormFloat64())
			}
		}
	}
	labels := make([]int32, batch)
	for i := range labels {
		labels[i] = int32(r.IntN(10))
	}
	var params []optim.Param
	for _, v := range p.Params {
		params = append(params, optim.Param{Name: v.Name, Data: v.Data, Grad: v.Grad})
	}
	opt := &optim.SGD{Params: params, Momentum: 0.9, WeightDecay: 5e-4}
	for b.Loop() {
		p.Forward(true)
		p.SoftmaxCrossEntropy(g.Outputs[0], labels)
		p.Backward()
		opt.Step(1e-3)
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "img/s")
	if testing.Verbose() {
		p.Times = engine.OpTimes{}
		t0 := time.Now()
		const steps = 10
		for range steps {
			p.Forward(true)
			p.SoftmaxCrossEntropy(g.Outputs[0], labels)
			p.Backward()
			opt.Step(1e-3)
		}
		total := time.Since(t0)
		var ops []string
		for op := range p.Times {
			ops = append(ops, op)
		}
		sort.Slice(ops, func(i, j int) bool { return p.Times[ops[i]] > p.Times[ops[j]] })
		for _, op := range ops {
			b.Logf("%-45s %6.1f ms/step %5.1f%%", op, p.Times[op].Seconds()*1e3/steps, 100*p.Times[op].Seconds()/total.Seconds())
		}
		b.Logf("%-45s %6.1f ms/step", "total", total.Seconds()*1e3/steps)
	}
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "threads")
}
