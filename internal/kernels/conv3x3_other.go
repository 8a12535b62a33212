//go:build !amd64 || purego

package kernels

// The direct 3×3 path needs the amd64 micro-kernels; elsewhere
// haveConv3x3 stays false and convolutions take the im2col path.
