// Package fmnist embeds a small Fashion-MNIST subset for qnas's demo and tests: 4 000
// training images (400 per class) and the first 1 000 test images, as IDX gzip files.
//
// Fashion-MNIST is by Zalando Research, released under the MIT licence.
package fmnist

import "embed"

// Files holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.
//
//go:embed *.gz
var Files embed.FS
