// Package stats has the summary statistics qnas reports over seeds.
package stats

import "math"

// MeanStd returns the mean of v and its sample standard deviation (n−1 in the
// denominator; 0 for fewer than two values). The mean of nothing is NaN.
func MeanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return math.NaN(), 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) > 1 {
		for _, x := range v {
			std += (x - mean) * (x - mean)
		}
		std = math.Sqrt(std / float64(len(v)-1))
	}
	return mean, std
}
