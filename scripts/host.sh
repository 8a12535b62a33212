#!/usr/bin/env bash
# Prints one line naming this host's CPU and topology, for benchmark output: speed ratios
# against PyTorch differ between the CPU families these 2-vCPU machines come with, and two
# vCPUs that are hyperthreads of one core share its vector units.
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
tpc=$(lscpu | sed -n 's/^Thread(s) per core: *//p' | head -1)
cores=$(lscpu | sed -n 's/^Core(s) per socket: *//p' | head -1)
sockets=$(lscpu | sed -n 's/^Socket(s): *//p' | head -1)
avx512=no
grep -qw avx512f /proc/cpuinfo && avx512=yes
echo "host: ${model:-unknown CPU}, $(nproc) CPUs = ${sockets:-?} socket(s) × ${cores:-?} core(s) × ${tpc:-?} thread(s) per core, AVX-512 $avx512"
