//go:build purego

package qnas_test

// buildTags are the build tags this test binary was built with, for the command it builds.
const buildTags = "purego"
