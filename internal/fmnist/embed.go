// Package fmnist embeds a small subset of Fashion-MNIST so that qnas's demo and tests run with
// no downloads. Files holds four gzip-compressed IDX files named like the originals:
//
//	train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz  4000 training images: the first 400
//	                                                          of each class, in file order
//	t10k-images-idx3-ubyte.gz,  t10k-labels-idx1-ubyte.gz   the first 1000 test images
//
// They were cut from the full data set by testdata/gen/fixtures.py. Pixels are uint8 28×28;
// labels are 0–9 (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag,
// Ankle boot).
//
// Fashion-MNIST is by Zalando Research (https://github.com/zalandoresearch/fashion-mnist),
// Copyright (c) 2017 Zalando SE, and is distributed under the MIT licence:
//
// Permission is hereby granted, free of charge, to any person obtaining a copy of this software
// and associated documentation files (the "Software"), to deal in the Software without
// restriction, including without limitation the rights to use, copy, modify, merge, publish,
// distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
// Software is furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in all copies or
// substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
// BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
// NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
// DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
// OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
package fmnist

import "embed"

// Files is the embedded subset; read it with fs.ReadFile(fmnist.Files, name).
//
//go:embed *.gz
var Files embed.FS
