#!/usr/bin/python3
"""Times PyTorch training steps on a CIFAR-style ResNet-20 at 1x28x28 (Fashion-MNIST shape), or
on torchvision's MobileNetV2 at 3x224x224 (1000 classes), the references that `qnas bench` is
compared with. Self-contained; run by hand:

    /usr/bin/python3 scripts/torch/bench_torch.py [--model resnet20|mobilenet_v2] [--threads 2]
        [--batch 128] [--steps 20] [--export FILE.onnx]

--export writes the timed model (seeded random weights, BatchNorm kept as BatchNormalization
nodes: eval-mode export with training=PRESERVE, opset 13, batch dimension "N") for `qnas
bench` to time the same network, and exits.

Modes:
    float   one plain training step: forward, softmax cross-entropy, backward, SGD update
            (momentum 0.9, weight decay 5e-4), BatchNorm in training mode.
    qat     the same step with every conv and the linear layer quantization-aware at w4a4,
            as `qnas bench --mode qat`: weights fake-quantized per output channel,
            symmetric, scale max|W_c|/7 (torch.fake_quantize_per_channel_affine); each
            layer's input clipped at a learned PACT bound and fake-quantized onto 15 steps
            (onto ±7 steps where the input can be negative, as qnas decides from the graph:
            here from a forward pass; signed onto ±127 steps at 8 bits for the network
            input), straight-through gradients.
    search  one iteration of a differentiable mixed-precision search built as qnas builds
            it (`qnas bench --mode search`): every layer but the first reads its weight as
            the composite Σ_i p_i·Q_{b_i}(W) per group of filters (4 groups) and its input as
            Σ_j q_j·Q_{b_j}(x) with a clip per bitwidth, b in {2,3,4,6,8}, p and q
            Gumbel-softmax samples of learned logits, one convolution per layer; a weight step
            (SGD) on one batch, then an architecture step (Adam on the logits, the expected
            BOPs as a penalty, BatchNorm running statistics frozen) on another.

Data are random (seeded) tensors of the input shape, as in `qnas bench`. The step time is the
median over --steps timed steps after --warmup untimed ones; images_per_sec = batch / median
step time; best_step_ms is the fastest step, the one least disturbed by other load.
peak_rss_mb is the process's peak resident set size (getrusage ru_maxrss).
Prints one JSON object on stdout:
    {"mode", "images_per_sec", "step_ms", "peak_rss_mb", "threads", ...}
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:  # option B: 1x1 conv + BN
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class FakeQuant(nn.Module):
    """PACT activation quantizer: clip at a learned bound, fake-quantize, straight through."""

    def __init__(self, bits, signed):
        super().__init__()
        self.bits, self.signed = bits, signed
        self.clip = nn.Parameter(torch.tensor(3.0))

    def forward(self, x):
        if self.signed:
            x = torch.maximum(torch.minimum(x, self.clip), -self.clip)
            qmax = 2 ** (self.bits - 1) - 1
            return torch.fake_quantize_per_tensor_affine(x, self.clip.detach() / qmax, torch.tensor(0), -qmax, qmax)
        x = torch.minimum(F.relu(x), self.clip)
        qmax = 2 ** self.bits - 1
        return torch.fake_quantize_per_tensor_affine(x, self.clip.detach() / qmax, torch.tensor(0), 0, qmax)


def quant_weight(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / qmax).clamp_min(1e-12)
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -qmax, qmax)


class QConv2d(nn.Conv2d):
    def __init__(self, *a, abits=4, wbits=4, signed, **k):
        super().__init__(*a, **k)
        self.wbits, self.aq = wbits, FakeQuant(abits, signed)

    def forward(self, x):
        return self._conv_forward(self.aq(x), quant_weight(self.weight, self.wbits), self.bias)


class QLinear(nn.Linear):
    def __init__(self, *a, abits=4, wbits=4, signed, **k):
        super().__init__(*a, **k)
        self.wbits, self.aq = wbits, FakeQuant(abits, signed)

    def forward(self, x):
        return F.linear(self.aq(x), quant_weight(self.weight, self.wbits), self.bias)


def signed_inputs(model, x):
    """Returns the Conv2d and Linear modules whose input has negative values in a forward pass
    of x (no ReLU-like op bounds it below), as qnas decides from the graph."""
    signed, hooks = set(), []

    def record(mod, inp, out):
        if inp[0].min() < 0:
            signed.add(mod)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(record))
    with torch.no_grad():
        model.eval()(x)
    model.train()
    for h in hooks:
        h.remove()
    return signed


def quantize_model(model, x):
    """Replaces every Conv2d and Linear by its w4a4 quantization-aware version (the network
    input at 8 bits, signed), keeping the weights."""
    signed = signed_inputs(model, x)
    first = True
    for name, m in list(model.named_modules()):
        for cname, c in list(m.named_children()):
            if isinstance(c, nn.Conv2d):
                q = QConv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                            groups=c.groups, bias=c.bias is not None, abits=8 if first else 4,
                            signed=c in signed)
                first = False
            elif isinstance(c, nn.Linear):
                q = QLinear(c.in_features, c.out_features, bias=c.bias is not None, signed=c in signed)
            else:
                continue
            q.load_state_dict(c.state_dict(), strict=False)
            setattr(m, cname, q)
    return model


BITS = (2, 3, 4, 6, 8)


def fq_act(x, clip, bits, signed):
    if signed:
        qmax = 2 ** (bits - 1) - 1
        x = torch.maximum(torch.minimum(x, clip), -clip)
        return torch.fake_quantize_per_tensor_affine(x, clip.detach() / qmax, torch.tensor(0), -qmax, qmax)
    qmax = 2 ** bits - 1
    x = torch.minimum(F.relu(x), clip)
    return torch.fake_quantize_per_tensor_affine(x, clip.detach() / qmax, torch.tensor(0), 0, qmax)


class MixedConv2d(nn.Conv2d):
    """A conv whose weight and input are Gumbel-softmax mixtures over BITS."""

    def __init__(self, *a, units=4, signed=False, fixed_input_bits=None, **k):
        super().__init__(*a, **k)
        self.units, self.signed, self.fixed = units, signed, fixed_input_bits
        self.alpha_w = nn.Parameter(torch.zeros(units, len(BITS)))
        self.alpha_a = nn.Parameter(torch.zeros(len(BITS)))
        self.clips = nn.Parameter(torch.full((len(BITS),), 3.0))
        self.tau = 1.0

    def arch_parameters(self):
        return [self.alpha_w, self.alpha_a]

    def forward(self, x):
        p = F.gumbel_softmax(self.alpha_w, tau=self.tau)                       # units × K
        pc = p.repeat_interleave(self.out_channels // self.units, dim=0)      # filters × K
        w = sum(pc[:, i].view(-1, 1, 1, 1) * quant_weight(self.weight, b) for i, b in enumerate(BITS))
        if self.fixed:
            xin = fq_act(x, self.clips[-1], self.fixed, self.signed)
        else:
            q = F.gumbel_softmax(self.alpha_a, tau=self.tau)
            xin = sum(q[j] * fq_act(x, self.clips[j], b, self.signed) for j, b in enumerate(BITS))
        return self._conv_forward(xin, w, self.bias)

    def expected_bops(self, hw):
        p, q = F.softmax(self.alpha_w, -1), F.softmax(self.alpha_a, -1)
        bits = torch.tensor(BITS, dtype=torch.float32)
        eb = (p @ bits).mean() * (8.0 if self.fixed else q @ bits)
        return eb * self.weight.numel() * hw


def searchify(model, x):
    """Replaces every Conv2d by a MixedConv2d (the first one's input fixed at 8 bits)."""
    signed = signed_inputs(model, x)
    first = True
    for m in list(model.modules()):
        for cname, c in list(m.named_children()):
            if isinstance(c, nn.Conv2d):
                q = MixedConv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                groups=c.groups, bias=c.bias is not None, signed=c in signed,
                                fixed_input_bits=8 if first else None)
                first = False
                q.load_state_dict(c.state_dict(), strict=False)
                setattr(m, cname, q)
    return model


class ResNet20(nn.Module):
    def __init__(self, in_ch=1, classes=10, n=3, widths=(16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for w, s in zip(widths, (1, 2, 2)):
            for i in range(n):
                blocks.append(Block(cin, w, s if i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# The models: constructor, input shape, classes.
MODELS = {
    "resnet20": (ResNet20, (1, 28, 28), 10),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), (3, 224, 224), 1000),
}


def export(model, shape, path):
    """Writes model as qnas reads it for `qnas bench`: BatchNorm kept (eval-mode statistics in
    the file; qnas trains it in training mode as PyTorch does), opset 13."""
    model.eval()
    torch.onnx.export(model, torch.randn(1, *shape), path, opset_version=13, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20", choices=sorted(MODELS))
    ap.add_argument("--export", metavar="FILE", help="write the model to FILE (ONNX) and exit")
    ap.add_argument("--mode", default="float", choices=["float", "qat", "search"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--channels-last", action="store_true",
                    help="NHWC memory format (oneDNN's preferred layout); default NCHW")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads < 1 or args.batch < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("threads, batch and steps must be positive, warmup non-negative")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    make, shape, classes = MODELS[args.model]
    model = make()
    if args.export:
        export(model, shape, args.export)
        return
    x = torch.randn(args.batch, *shape)
    y = torch.randint(0, classes, (args.batch,))
    if args.mode == "qat":
        model = quantize_model(model, x[:2])
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if args.mode == "search":
        model = searchify(model, x[:2])
        mixed = [m for m in model.modules() if isinstance(m, MixedConv2d)]
        arch = [p for m in mixed for p in m.arch_parameters()]
        arch_ids = {id(p) for p in arch}
        weights = [p for p in model.parameters() if id(p) not in arch_ids]
        wopt = torch.optim.SGD(weights, lr=0.01, momentum=0.9, weight_decay=5e-4)
        aopt = torch.optim.Adam(arch, lr=0.01)
        x2 = torch.randn_like(x)
        hws = {}

        def record(mod, inp, out):
            hws[mod] = out.shape[2] * out.shape[3]
        hooks = [m.register_forward_hook(record) for m in mixed]
        model(x)
        for h in hooks:
            h.remove()
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

        def step():
            loss = F.cross_entropy(model(x), y)
            wopt.zero_grad(set_to_none=True)
            loss.backward()
            wopt.step()
            for b in bns:
                b.momentum = 0.0
            aloss = F.cross_entropy(model(x2), y)
            cost = sum(m.expected_bops(hws[m]) for m in mixed)
            aopt.zero_grad(set_to_none=True)
            (aloss + 1e-10 * cost).backward(inputs=arch)
            aopt.step()
            for b in bns:
                b.momentum = 0.1
            return loss

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        print("bench_torch: loss is not finite", file=sys.stderr)
        sys.exit(1)
    med = statistics.median(times)
    out = {
        "mode": args.mode,
        "images_per_sec": round(args.batch / med, 1),
        "step_ms": round(med * 1000, 2),
        "best_step_ms": round(min(times) * 1000, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "steps": args.steps,
        "model": args.model,
        "channels_last": args.channels_last,
        "torch": torch.__version__,
        # Other jobs on the machine distort the timing badly (OpenMP threads spin at barriers);
        # a 1-minute load average above the thread count means the figure is not trustworthy.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
