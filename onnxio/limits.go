package onnxio

// Limits bounds the resources a model may claim while it is loaded. Every limit is
// checked before memory proportional to it is allocated. A zero or negative field
// means "use the default" (see DefaultLimits).
type Limits struct {
	// MaxModelBytes is the largest accepted size of a serialized model or tensor file.
	MaxModelBytes int64
	// MaxTensorElements is the largest accepted element count of one tensor.
	MaxTensorElements int64
	// MaxTotalTensorBytes bounds the summed data size of all tensors of a model,
	// inline and external.
	MaxTotalTensorBytes int64
	// MaxGraphDepth bounds the nesting of graphs: the main graph, a function body and a
	// training graph have depth 1, a subgraph in one of their node attributes depth 2.
	MaxGraphDepth int
	// MaxNodes bounds the number of nodes of all graphs and functions of a model together.
	MaxNodes int
}

// Default values of Limits.
const (
	DefaultMaxModelBytes       int64 = 2 << 30
	DefaultMaxTensorElements   int64 = 1 << 31
	DefaultMaxTotalTensorBytes int64 = 8 << 30
	DefaultMaxGraphDepth             = 32
	DefaultMaxNodes                  = 1 << 20
)

// DefaultLimits returns the default limits: 2 GiB model files, 2^31 elements per
// tensor, 8 GiB of tensor data, graphs nested 32 deep and 2^20 nodes.
func DefaultLimits() Limits {
	return Limits{
		MaxModelBytes:       DefaultMaxModelBytes,
		MaxTensorElements:   DefaultMaxTensorElements,
		MaxTotalTensorBytes: DefaultMaxTotalTensorBytes,
		MaxGraphDepth:       DefaultMaxGraphDepth,
		MaxNodes:            DefaultMaxNodes,
	}
}

// orDefault returns lim with every unset (zero or negative) field replaced by its default.
func (lim Limits) orDefault() Limits {
	d := DefaultLimits()
	if lim.MaxModelBytes <= 0 {
		lim.MaxModelBytes = d.MaxModelBytes
	}
	if lim.MaxTensorElements <= 0 {
		lim.MaxTensorElements = d.MaxTensorElements
	}
	if lim.MaxTotalTensorBytes <= 0 {
		lim.MaxTotalTensorBytes = d.MaxTotalTensorBytes
	}
	if lim.MaxGraphDepth <= 0 {
		lim.MaxGraphDepth = d.MaxGraphDepth
	}
	if lim.MaxNodes <= 0 {
		lim.MaxNodes = d.MaxNodes
	}
	return lim
}
