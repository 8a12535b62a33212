#!/usr/bin/env bash
# Prints one line naming this host's CPU and topology, for benchmark output: speed ratios
# against PyTorch differ between the CPU families these 2-vCPU machines come with, and two
# vCPUs that are hyperthreads of one core share its vector units.
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
tpc=$(lscpu | sed -n 's/^Thread(s) per core: *//p' | head -1)
cores=$(lscpu | sed -n 's/^Core(s) per socket: *//p' | head -1)
sockets=$(lscpu | sed -n 's/^Socket(s): *//p' | head -1)
# "AMD EPYC" alone hides the generation: family 25 is Zen 3/4 (512-bit vectors in two
# 256-bit halves), 26 Zen 5 (two full 512-bit FMA pipes, as Intel's server cores).
fam=$(sed -n 's/^cpu family[[:space:]]*: *//p' /proc/cpuinfo | head -1)
mdl=$(sed -n 's/^model[[:space:]]*: *//p' /proc/cpuinfo | head -1)
avx512=no
grep -qw avx512f /proc/cpuinfo && avx512=yes
echo "host: ${model:-unknown CPU} (family ${fam:-?} model ${mdl:-?}), $(nproc) CPUs = ${sockets:-?} socket(s) × ${cores:-?} core(s) × ${tpc:-?} thread(s) per core, AVX-512 $avx512"
