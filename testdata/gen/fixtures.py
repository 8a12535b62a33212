#!/usr/bin/python3
"""Generates qnas's test fixtures with PyTorch (Debian python3-torch 1.13, CPU).

Run from anywhere, by hand (CI never runs it):

    /usr/bin/python3 testdata/gen/fixtures.py                 # everything
    /usr/bin/python3 testdata/gen/fixtures.py --only grad     # one part: fmnist,resnet8,mbv2,resnet20,resnet20-folded,cnx,inception,grad

Writes, relative to the repository root:

    internal/fmnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   embedded data subset
    testdata/models/{resnet8,mbv2,resnet20,inception}{,_bn}.onnx, cnx.onnx  trained Fashion-MNIST CNNs
    testdata/models/fixtures.json                                      accuracy, params, MACs, layers
    testdata/grad/small_net.onnx, small_net_grad.json                  gradient golden

Everything is seeded; with the same torch build and thread count the outputs repeat.
Each ONNX file is checked with onnx.checker and executed by a small ONNX interpreter written
below on top of torch.nn.functional (onnxruntime is not available to Python here); its outputs
must match the torch model's.
"""

import argparse
import collections
import gzip
import io
import json
import math
import os
import struct
import sys
import time

# Threads that sleep instead of spinning at OpenMP barriers: the numerics are the same, and on
# a machine shared with other jobs spinning made training 3-30x slower here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from onnx import numpy_helper  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FMNIST_SRC = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
OPSET = 13
SEED = 20261126

# --------------------------------------------------------------------------------------------
# IDX files


def read_idx(path):
    """Returns a uint8 numpy array from an IDX file (gzip or raw)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {arr.size} bytes of data for dims {dims}")
    return arr.reshape(dims)


def write_idx_gz(path, arr):
    """Writes a uint8 array as a gzip IDX file; mtime 0 and no file name so bytes repeat."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(header)
            gz.write(arr.tobytes())
    os.replace(tmp, path)
    back = read_idx(path)
    assert back.shape == arr.shape and np.array_equal(back, arr), path


def load_fmnist():
    def part(prefix):
        x = read_idx(os.path.join(FMNIST_SRC, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(FMNIST_SRC, f"{prefix}-labels-idx1-ubyte.gz"))
        return x, y

    return part("train"), part("t10k")


def to_tensor(x_u8):
    """uint8 N×28×28 -> normalized float32 N×1×28×28, exactly as `qnas eval` does it."""
    x = torch.from_numpy(x_u8.astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    return (x - MEAN) / STD


def make_fmnist_subset(train, test, out_dir):
    (xtr, ytr), (xte, yte) = train, test
    picked = []
    per_class = collections.Counter()
    for i, c in enumerate(ytr):
        if per_class[int(c)] < 400:
            per_class[int(c)] += 1
            picked.append(i)
    assert len(picked) == 4000 and all(v == 400 for v in per_class.values())
    idx = np.array(picked)
    os.makedirs(out_dir, exist_ok=True)
    write_idx_gz(os.path.join(out_dir, "train-images-idx3-ubyte.gz"), xtr[idx])
    write_idx_gz(os.path.join(out_dir, "train-labels-idx1-ubyte.gz"), ytr[idx])
    write_idx_gz(os.path.join(out_dir, "t10k-images-idx3-ubyte.gz"), xte[:1000])
    write_idx_gz(os.path.join(out_dir, "t10k-labels-idx1-ubyte.gz"), yte[:1000])
    print(f"fmnist: 4000 train (400/class, last index {picked[-1]}), 1000 test -> {out_dir}")


# --------------------------------------------------------------------------------------------
# Models


class BasicBlock(nn.Module):
    """Two 3×3 conv+BN, ReLU between and after the residual Add; 1×1 conv+BN shortcut (option B)
    when the stride or the width changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(collections.OrderedDict([
                ("conv", nn.Conv2d(cin, cout, 1, stride, 0, bias=False)),
                ("bn", nn.BatchNorm2d(cout)),
            ]))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + skip)


class CifarResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem, three stages (16/32/64, strides 1/2/2), GAP, Linear."""

    def __init__(self, blocks_per_stage, widths=(16, 32, 64), in_ch=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        cin = widths[0]
        for s, (w, stride) in enumerate(zip(widths, (1, 2, 2))):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, w, stride if b == 0 else 1))
                cin = w
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expansion (skipped when t = 1), depthwise 3×3, linear 1×1
    projection; residual Add when stride 1 and the width is unchanged."""

    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.expand = None
        if t != 1:
            self.expand = nn.Sequential(collections.OrderedDict([
                ("conv", nn.Conv2d(cin, hidden, 1, 1, 0, bias=False)),
                ("bn", nn.BatchNorm2d(hidden)),
                ("act", nn.ReLU6()),
            ]))
        self.dw = nn.Sequential(collections.OrderedDict([
            ("conv", nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)),
            ("bn", nn.BatchNorm2d(hidden)),
            ("act", nn.ReLU6()),
        ]))
        self.project = nn.Sequential(collections.OrderedDict([
            ("conv", nn.Conv2d(hidden, cout, 1, 1, 0, bias=False)),
            ("bn", nn.BatchNorm2d(cout)),
        ]))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.dw(out))
        return x + out if self.residual else out


class MobileNetV2Small(nn.Module):
    # (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
    # The stem has stride 2 (28x28 -> 14x14) and the 24-channel stage keeps 14x14: with the
    # first downsampling inside the blocks instead, the 96-channel expansion runs at 28x28 and
    # training gets ~3x slower on this CPU for little accuracy.
    CONFIG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 2, 2), (6, 64, 1, 1)]

    def __init__(self, in_ch=1, num_classes=10, stem=16, head=256, stem_stride=2, config=None):
        super().__init__()
        self.stem = nn.Sequential(collections.OrderedDict([
            ("conv", nn.Conv2d(in_ch, stem, 3, stem_stride, 1, bias=False)),
            ("bn", nn.BatchNorm2d(stem)),
            ("act", nn.ReLU6()),
        ]))
        blocks, cin = [], stem
        for t, c, n, s in (config or self.CONFIG):
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(collections.OrderedDict([
            ("conv", nn.Conv2d(cin, head, 1, 1, 0, bias=False)),
            ("bn", nn.BatchNorm2d(head)),
            ("act", nn.ReLU6()),
        ]))
        self.fc = nn.Linear(head, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class CNBlock(nn.Module):
    """ConvNeXt block as torchvision writes it: depthwise 7×7, then channels-last LayerNorm,
    Linear 4× expansion, GELU, Linear back (MatMul + Add in ONNX), back to NCHW, a per-channel
    layer scale, and the residual Add."""

    def __init__(self, dim, scale_init=0.1):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, 1, 3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), scale_init))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y))))
        return x + self.layer_scale * y.permute(0, 3, 1, 2)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (torchvision's, for ConvNeXt)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtSmall(nn.Module):
    """ConvNeXt-style: 2×2 stride-2 stem + LayerNorm2d (14×14), one block of 24 channels,
    LayerNorm2d + 2×2 stride-2 downsampling to 48 channels (7×7), two blocks, GAP, LayerNorm,
    Linear 48→10."""

    def __init__(self, widths=(24, 48), depths=(1, 2), in_ch=1, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, widths[0], 2, 2), LayerNorm2d(widths[0], eps=1e-6))
        self.stage1 = nn.Sequential(*[CNBlock(widths[0]) for _ in range(depths[0])])
        self.down = nn.Sequential(LayerNorm2d(widths[0], eps=1e-6), nn.Conv2d(widths[0], widths[1], 2, 2))
        self.stage2 = nn.Sequential(*[CNBlock(widths[1]) for _ in range(depths[1])])
        self.norm = nn.LayerNorm(widths[1], eps=1e-6)
        self.fc = nn.Linear(widths[1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.norm(x))


def conv_bn(cin, cout, k, stride=1):
    return nn.Sequential(collections.OrderedDict([
        ("conv", nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)),
        ("bn", nn.BatchNorm2d(cout)),
        ("act", nn.ReLU()),
    ]))


class InceptionBlock(nn.Module):
    """GoogLeNet's block: 1×1; 1×1 then 3×3; 1×1 then 3×3; 3×3 max-pool then 1×1; the four
    concatenated along the channels."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = conv_bn(cin, c1, 1)
        self.b2 = nn.Sequential(conv_bn(cin, c3r, 1), conv_bn(c3r, c3, 3))
        self.b3 = nn.Sequential(conv_bn(cin, c5r, 1), conv_bn(c5r, c5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, cp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class InceptionSmall(nn.Module):
    """Inception-style: 3×3 stem + 2×2 max-pool (14×14), an Inception block (32 channels)
    read by a 3×3 stride-2 conv (7×7), a second block (48 channels), GAP, Linear 48→10."""

    def __init__(self, in_ch=1, num_classes=10):
        super().__init__()
        self.stem = conv_bn(in_ch, 16, 3)
        self.pool = nn.MaxPool2d(2, 2)
        self.inc1 = InceptionBlock(16, 8, 8, 12, 4, 8, 4)
        self.reduce = conv_bn(32, 32, 3, 2)
        self.inc2 = InceptionBlock(32, 16, 16, 16, 8, 8, 8)
        self.fc = nn.Linear(48, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.inc2(self.reduce(self.inc1(self.pool(self.stem(x)))))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class SmallNet(nn.Module):
    """The gradient-golden net: two conv+BN+ReLU, GAP, Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def init_weights(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# Training and evaluation


def train(model, x, y, epochs, lr, wd, seed, batch=128, log_prefix="", adamw=False):
    """SGD with Nesterov momentum (AdamW with adamw), half an epoch of linear warm-up then
    cosine decay to 0, weight decay on conv/linear weights only, random horizontal flips.
    Data order and flips come from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and not n.endswith("layer_scale")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1 or n.endswith("layer_scale")]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if adamw:
        opt = torch.optim.AdamW(groups, lr=lr)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch)
    total = epochs * steps_per_epoch
    warm = steps_per_epoch // 2
    step = 0
    # channels_last lets oneDNN run the depthwise convs fast (NCHW depthwise is 5-40x slower
    # here); the values trained are the same parameters, only their memory layout differs.
    model.to(memory_format=torch.channels_last)
    model.train()
    for epoch in range(epochs):
        t0 = time.time()
        perm = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        run_loss, run_correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * batch:(b + 1) * batch]
            xb = x[idx]
            xb = torch.where(flips[idx].view(-1, 1, 1, 1), xb.flip(3), xb)
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb = y[idx]
            if step < warm:
                cur = lr * (step + 1) / warm
            else:
                cur = 0.5 * lr * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
            for g in opt.param_groups:
                g["lr"] = cur
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run_loss += loss.item() * len(idx)
            run_correct += (out.argmax(1) == yb).sum().item()
        print(f"{log_prefix}epoch {epoch + 1}/{epochs}: loss {run_loss / n:.4f} "
              f"train acc {run_correct / n:.4f} ({time.time() - t0:.1f}s, "
              f"{n / (time.time() - t0):.0f} img/s)", flush=True)
    model.to(memory_format=torch.contiguous_format)
    model.eval()


@torch.no_grad()
def predict(fn, x, batch=500):
    return torch.cat([fn(x[i:i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])


# --------------------------------------------------------------------------------------------
# MACs and params


def count_macs(model, sample):
    """Forward hooks on every Conv2d and Linear, in execution order.
    MACs(conv) = H_out·W_out·C_out·(C_in/groups)·k_h·k_w, MACs(linear) = in·out per position,
    per sample."""
    layers, handles = [], []
    names = {m: n for n, m in model.named_modules()}

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            _, c, h, w = out.shape
            macs = h * w * c * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            layers.append({"module": names[m], "op": "Conv", "macs": int(macs),
                           "output_shape": [int(c), int(h), int(w)]})
        else:  # a Linear over N×…×C counts once per position (an ONNX MatMul)
            positions = out.numel() // out.shape[-1]
            layers.append({"module": names[m], "op": "Gemm" if out.dim() == 2 else "MatMul",
                           "macs": int(m.in_features * m.out_features * positions),
                           "output_shape": [int(d) for d in out.shape[1:]]})

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(sample[:1])
    model.train(was_training)
    for h in handles:
        h.remove()
    return layers


def onnx_layer_table(proto, layers):
    """Pairs the hooked layers with the Conv/Gemm/MatMul nodes of the exported graph (same
    order: the exporter traces the same forward) and counts each node's weight and bias
    elements (a MatMul's bias is a separate Add, not counted)."""
    inits = {t.name: t for t in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    if len(nodes) != len(layers):
        raise AssertionError(f"{len(nodes)} Conv/Gemm/MatMul nodes but {len(layers)} hooked layers")
    out = []
    for layer, node in zip(layers, nodes):
        if node.op_type != layer["op"]:
            raise AssertionError(f"order mismatch: {node.name} {node.op_type} vs {layer}")
        params = 0
        for name in node.input[1:]:
            if name not in inits:
                raise AssertionError(f"{node.name}: input {name} is not an initializer")
            params += int(np.prod(inits[name].dims))
        w_dims = list(inits[node.input[1]].dims)
        if layer["op"] == "Conv" and w_dims[0] != layer["output_shape"][0]:
            raise AssertionError(f"{node.name}: weight {w_dims} vs output {layer['output_shape']}")
        if layer["op"] == "Gemm" and w_dims[0] != layer["output_shape"][0]:
            raise AssertionError(f"{node.name}: weight {w_dims} vs output {layer['output_shape']}")
        if layer["op"] == "MatMul" and w_dims[1] != layer["output_shape"][-1]:
            raise AssertionError(f"{node.name}: weight {w_dims} vs output {layer['output_shape']}")
        row = dict(layer)
        row.update({"params": params, "onnx_node": node.name, "weight": node.input[1],
                    "bias": node.input[2] if len(node.input) > 2 else None})
        out.append(row)
    return out


def bn_param_count(proto):
    inits = {t.name: t for t in proto.graph.initializer}
    return sum(int(np.prod(inits[n.input[i]].dims))
               for n in proto.graph.node if n.op_type == "BatchNormalization" for i in (1, 2))


# --------------------------------------------------------------------------------------------
# A minimal ONNX interpreter on torch.nn.functional, for checking the exports


def run_onnx(proto, x):
    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}
    env[proto.graph.input[0].name] = x
    for node in proto.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
        ins = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            assert pads[0] == pads[2] and pads[1] == pads[3], pads
            y = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                         stride=a.get("strides", [1, 1]), padding=pads[:2],
                         dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))
        elif op == "BatchNormalization":
            assert len(node.output) == 1, "training-mode BN in an inference graph"
            y = F.batch_norm(ins[0], ins[3], ins[4], ins[1], ins[2], False, 0.0, a.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(ins[0])
        elif op == "Clip":
            lo = ins[1] if len(ins) > 1 and ins[1] is not None else None
            hi = ins[2] if len(ins) > 2 and ins[2] is not None else None
            y = torch.clamp(ins[0], lo.item() if lo is not None else None,
                            hi.item() if hi is not None else None)
        elif op == "Add":
            y = ins[0] + ins[1]
        elif op == "GlobalAveragePool":
            y = ins[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif op == "Gemm":
            w = ins[1].t() if a.get("transB", 0) else ins[1]
            aa = ins[0].t() if a.get("transA", 0) else ins[0]
            y = a.get("alpha", 1.0) * aa @ w
            if len(ins) > 2:
                y = y + a.get("beta", 1.0) * ins[2]
        elif op in ("Sub", "Mul", "Div", "Pow"):
            y = {"Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Pow": torch.pow}[op](ins[0], ins[1])
        elif op in ("Sqrt", "Erf"):
            y = torch.sqrt(ins[0]) if op == "Sqrt" else torch.erf(ins[0])
        elif op == "Transpose":
            y = ins[0].permute(*a["perm"])
        elif op == "MatMul":
            y = ins[0] @ ins[1]
        elif op == "ReduceMean":
            y = ins[0].mean(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))
        elif op == "Concat":
            y = torch.cat(ins, dim=a["axis"])
        elif op == "MaxPool":
            pads = a.get("pads", [0, 0, 0, 0])
            assert pads[0] == pads[2] and pads[1] == pads[3], pads
            y = F.max_pool2d(ins[0], a["kernel_shape"], a.get("strides", [1, 1]), pads[:2],
                             ceil_mode=bool(a.get("ceil_mode", 0)))
        elif op == "Constant":
            y = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        elif op == "Identity":
            y = ins[0]
        else:
            raise NotImplementedError(f"interpreter: op {op} ({node.name})")
        env[node.output[0]] = y
    return env[proto.graph.output[0].name]


# --------------------------------------------------------------------------------------------
# Export


def export(model, path, keep_bn, sample):
    model.eval()
    kw = dict(opset_version=OPSET, input_names=["input"], output_names=["logits"],
              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, export_params=True)
    if keep_bn:
        kw.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        kw.update(training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    buf = io.BytesIO()
    torch.onnx.export(model, sample[:2], buf, **kw)
    proto = onnx.load_from_string(buf.getvalue())
    undone = undo_dedup(proto)
    onnx.checker.check_model(proto, full_check=True)
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if keep_bn:
        assert ops["BatchNormalization"] == n_bn, (path, ops, n_bn)
        for n in proto.graph.node:
            if n.op_type == "BatchNormalization":
                assert len(n.output) == 1, f"{n.name}: BN exported in training form"
        # Every initializer carries its torch name and exactly the torch value.
        state = model.state_dict()
        for t in proto.graph.initializer:
            assert t.name in state, f"{path}: initializer {t.name} has no torch name"
            assert np.array_equal(numpy_helper.to_array(t), state[t.name].numpy()), t.name
    else:
        assert ops["BatchNormalization"] == 0, (path, ops)
    # torch deduplicates equal-valued initializers into Identity nodes (e.g. a fresh BN's
    # γ = 1 = running_var); a fixture should not depend on that.
    idents = [(list(n.input), list(n.output)) for n in proto.graph.node if n.op_type == "Identity"]
    assert not idents, (path, idents)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, 28, 28] or dims[0] == "N", dims
    data = proto.SerializeToString()
    size = len(data)
    assert size <= 2 * 1024 * 1024, f"{path}: {size} bytes"
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return proto, dict(ops), size, undone


def undo_dedup(proto):
    """In eval mode torch 1.13's exporter merges initializers with equal values and recreates
    the others as `Identity(first)` nodes. Equal values do arise honestly: in a residual block
    with a BN shortcut, both BN biases start at 0 and always get the same gradient (they feed
    one Add), so they stay bit-identical. A fixture should hold each parameter as its own
    initializer under its own name, so turn every Identity of an initializer back into one."""
    inits = {t.name: t for t in proto.graph.initializer}
    keep, undone = [], []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            proto.graph.initializer.append(t)
            undone.append(node.output[0])
        else:
            keep.append(node)
    if undone:
        del proto.graph.node[:]
        proto.graph.node.extend(keep)
    return undone


def check_export(model, proto, x_test, y_test, name):
    """Runs the exported graph with the interpreter on the whole test set; returns the
    interpreter's accuracy and the largest logit difference to torch on the first 500."""
    model.eval()
    with torch.no_grad():
        ref = model(x_test[:500])
        got = run_onnx(proto, x_test[:500])
    diff = (ref - got).abs().max().item()
    assert diff < 1e-3, f"{name}: torch vs ONNX max |Δlogit| = {diff}"
    pred = predict(lambda xb: run_onnx(proto, xb), x_test)
    acc = (pred == y_test).float().mean().item()
    return acc, diff


# --------------------------------------------------------------------------------------------
# Stages


def build(name):
    if name == "resnet8":
        return CifarResNet(1)
    if name == "resnet20":
        return CifarResNet(3)
    if name == "mbv2":
        return MobileNetV2Small()
    if name == "cnx":
        return ConvNeXtSmall()
    if name == "inception":
        return InceptionSmall()
    raise ValueError(name)


HYPER = {  # epochs, peak lr, weight decay
    "resnet8": (5, 0.1, 5e-4),
    "mbv2": (5, 0.1, 5e-4),
    "resnet20": (20, 0.1, 5e-4),
    "cnx": (3, 4e-3, 0.05),  # AdamW
    "inception": (3, 0.1, 5e-4),
}


def make_model(name, data, out_dir, summary, epochs_override=None):
    (xtr, ytr), (xte, yte) = data
    epochs, lr, wd = HYPER[name]
    if epochs_override is not None:
        epochs = epochs_override
    seed = SEED + sum(map(ord, name))
    torch.manual_seed(seed)
    model = build(name)
    t0 = time.time()
    train(model, xtr, ytr, epochs, lr, wd, seed, log_prefix=f"{name}: ", adamw=name == "cnx")
    train_s = time.time() - t0
    model.eval()
    acc = (predict(model, xte) == yte).float().mean().item()
    print(f"{name}: test accuracy {acc:.4f} after {epochs} epochs ({train_s:.0f}s)", flush=True)
    layers = count_macs(model, xte)
    files = [(f"{name}.onnx", False), (f"{name}_bn.onnx", True)]
    if name == "resnet20":
        files = files[1:]
    if name == "cnx":  # no BatchNorm to keep
        files = files[:1]
    for fname, keep_bn in files:
        summary[fname] = export_entry(model, name, fname, out_dir, keep_bn, layers, acc, epochs, xte, yte)


def make_folded_twin(name, data, out_dir, summary):
    """Exports the BatchNorm-folded twin of an already trained NAME_bn.onnx (the weights read
    back from that file, whose initializers carry the torch names), as torch.onnx's defaults
    write it: eval mode, constant folding on. No training."""
    (_, _), (xte, yte) = data
    src = onnx.load(os.path.join(out_dir, f"{name}_bn.onnx"))
    model = build(name)
    state = model.state_dict()
    loaded = 0
    for t in src.graph.initializer:
        if t.name in state:
            state[t.name].copy_(torch.from_numpy(numpy_helper.to_array(t).copy()))
            loaded += 1
    missing = [k for k in state if not k.endswith("num_batches_tracked")
               and k not in {t.name for t in src.graph.initializer}]
    assert not missing, f"{name}_bn.onnx lacks {missing}"
    model.eval()
    acc = (predict(model, xte) == yte).float().mean().item()
    kept = summary.get(f"{name}_bn.onnx", {})
    print(f"{name}: {loaded} tensors from {name}_bn.onnx, test accuracy {acc:.4f} "
          f"(recorded for the BN-kept file: {kept.get('accuracy')})", flush=True)
    layers = count_macs(model, xte)
    entry = export_entry(model, name, f"{name}.onnx", out_dir, False, layers, acc, kept.get("epochs"), xte, yte)
    entry["folded_from"] = f"{name}_bn.onnx"
    summary[f"{name}.onnx"] = entry


def export_entry(model, name, fname, out_dir, keep_bn, layers, acc, epochs, xte, yte):
    """Exports model to out_dir/fname, checks it, and returns its fixtures.json entry."""
    proto, ops, size, undone = export(model, os.path.join(out_dir, fname), keep_bn, xte)
    table = onnx_layer_table(proto, layers)
    onnx_acc, diff = check_export(model, proto, xte, yte, fname)
    entry = {
        "model": name,
        "bn": "kept" if keep_bn else "folded",
        "accuracy": round(acc, 6),
        "samples": int(xte.shape[0]),
        "mean": [MEAN],
        "std": [STD],
        "input_shape": [1, 28, 28],
        "params": sum(r["params"] for r in table),
        "bn_params": bn_param_count(proto),
        "torch_params": int(sum(p.numel() for p in model.parameters())),
        "macs": sum(r["macs"] for r in table),
        "epochs": epochs,
        "is_accuracy_fixture": True,
        "interpreter_accuracy": round(onnx_acc, 6),
        "max_abs_logit_diff": float(f"{diff:.3g}"),
        "file_bytes": size,
        "dedup_undone": undone,
        "ops": dict(sorted(ops.items())),
        "layers": table,
    }
    print(f"{fname}: {size} bytes, params {entry['params']}, MACs {entry['macs']}, "
          f"interpreter accuracy {onnx_acc:.4f}, max |Δlogit| {diff:.2e}, ops {entry['ops']}",
          flush=True)
    return entry


def make_grad(out_dir):
    """Gradient golden: one training-mode forward/backward of SmallNet on a fixed batch."""
    seed = SEED + 7
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = SmallNet()
    # Non-trivial BN state, so that γ, β and the running statistics all matter and differ from
    # each other (equal-valued tensors would also be merged by the exporter).
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            c = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(c, generator=gen))
            bn.bias.copy_(0.1 * torch.randn(c, generator=gen))
            bn.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    x = torch.randn(4, 1, 8, 8, generator=gen)
    labels = torch.randint(0, 10, (4,), generator=gen)

    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.join(out_dir, "small_net.onnx")
    net.eval()
    buf = io.BytesIO()
    torch.onnx.export(net, x, buf, opset_version=OPSET, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    proto = onnx.load_from_string(buf.getvalue())
    assert not undo_dedup(proto)
    onnx.checker.check_model(proto, full_check=True)
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    assert ops["BatchNormalization"] == 2 and ops["Identity"] == 0, ops
    with open(onnx_path + ".tmp", "wb") as f:
        f.write(buf.getvalue())
    os.replace(onnx_path + ".tmp", onnx_path)

    # Map torch names to initializer names: they must be identical, and the values bitwise equal.
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    state = net.state_dict()
    mapping = {}
    for pname, p in list(net.named_parameters()) + [(n, b) for n, b in net.named_buffers()
                                                    if "running" in n]:
        assert pname in inits, f"{pname} not among initializers {sorted(inits)}"
        assert np.array_equal(inits[pname], p.detach().numpy()), pname
        mapping[pname] = pname
    extra = set(inits) - set(mapping)
    assert not extra, f"unexpected initializers {extra}"
    bn_momentum = {n.input[1].rsplit(".", 1)[0]: onnx.helper.get_attribute_value(
        [a for a in n.attribute if a.name == "momentum"][0])
        for n in proto.graph.node if n.op_type == "BatchNormalization"}

    # Eval-mode interpreter check of the file.
    with torch.no_grad():
        diff = (run_onnx(proto, x) - net(x)).abs().max().item()
    assert diff < 1e-5, diff

    # Training-mode step in float64 from the float32 values (the reference), and in float32.
    def step(dtype):
        m = SmallNet()
        m.load_state_dict(state)
        m = m.to(dtype).train()
        stats = {}

        def bn_hook(mod, inp, out, name):
            v = inp[0].detach()
            stats[name] = {"mean": v.mean(dim=(0, 2, 3)),
                           "var": v.var(dim=(0, 2, 3), unbiased=False),
                           "var_unbiased": v.var(dim=(0, 2, 3), unbiased=True)}

        hs = [getattr(m, n).register_forward_hook(lambda mod, i, o, n=n: bn_hook(mod, i, o, n))
              for n in ("bn1", "bn2")]
        xi = x.to(dtype).clone().requires_grad_(True)
        logits = m(xi)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        for h in hs:
            h.remove()
        return m, xi, logits, loss, stats

    m64, x64, logits64, loss64, stats64 = step(torch.float64)
    m32, x32, logits32, loss32, _ = step(torch.float32)
    grad_diff = max((p64.grad - p32.grad.double()).abs().max().item()
                    for p64, p32 in zip(m64.parameters(), m32.parameters()))

    def flat(t):
        return [float(v) for v in t.detach().double().reshape(-1).tolist()]

    def tens(t):
        return {"shape": list(t.shape), "values": flat(t)}

    params = [n for n, _ in m64.named_parameters()]
    doc = {
        "format": (
            "Gradient golden for qnas's training engine, written by testdata/gen/fixtures.py. "
            "Model: small_net.onnx (opset 13; Conv 3x3 1->4 pad 1, BatchNormalization, Relu, "
            "Conv 3x3 stride 2 4->8 pad 1, BatchNormalization, Relu, GlobalAveragePool, Flatten, "
            "Gemm 8->10; convs have no bias). The file was exported from an eval-mode module with "
            "TrainingMode.PRESERVE, so its BN nodes are ordinary inference BNs (one output) holding "
            "gamma, beta, running_mean, running_var as initializers; the engine is expected to run "
            "them in TRAINING mode here. Every tensor is {\"shape\": [...], \"values\": [row-major "
            "flat list]}. 'input' (NCHW) and the float32 initializers are the exact inputs; every "
            "result was computed in float64 from those float32 values (PyTorch). Training mode: "
            "each BN normalizes with the batch mean and the biased batch variance over (N,H,W), "
            "epsilon 1e-5; 'bn_batch_stats' gives both variances. loss = mean over the batch of "
            "softmax cross-entropy of 'logits' against 'labels' (class indices). 'grads' maps each "
            "ONNX initializer name of a trainable parameter to d loss / d parameter (same shape "
            "as the initializer); 'input_grad' is d loss / d input. 'running_after' holds each BN's "
            "running statistics after this one training forward, PyTorch convention with "
            "momentum 0.1: running_mean' = 0.9*running_mean + 0.1*batch_mean, running_var' = "
            "0.9*running_var + 0.1*batch_var_unbiased (n/(n-1) correction, n = N*H*W). In the ONNX "
            "file the same rule appears as attribute momentum = 0.9 (ONNX weights the old value). "
            "'running_before' repeats the initial values stored in the file. "
            "'max_abs_grad_diff_float32' is how far a float32 PyTorch run was from these values."),
        "model": "small_net.onnx",
        "torch_version": torch.__version__,
        "seed": seed,
        "input": tens(x),
        "labels": [int(v) for v in labels.tolist()],
        "loss": float(loss64.item()),
        "logits": tens(logits64),
        "params": params,
        "param_to_initializer": {p: mapping[p] for p in params},
        "grads": {mapping[n]: tens(p.grad) for n, p in m64.named_parameters()},
        "input_grad": tens(x64.grad),
        "bn_momentum_torch": 0.1,
        "bn_momentum_onnx_attr": {k: float(f"{v:.6g}") for k, v in bn_momentum.items()},
        "bn_epsilon": 1e-5,
        "bn_batch_stats": {k: {kk: tens(vv) for kk, vv in v.items()} for k, v in stats64.items()},
        "running_before": {f"{b}.{s}": tens(state[f"{b}.{s}"])
                           for b in ("bn1", "bn2") for s in ("running_mean", "running_var")},
        "running_after": {f"{b}.{s}": tens(getattr(getattr(m64, b), s))
                          for b in ("bn1", "bn2") for s in ("running_mean", "running_var")},
        "max_abs_grad_diff_float32": float(f"{grad_diff:.3g}"),
        "loss_float32": float(loss32.item()),
    }
    path = os.path.join(out_dir, "small_net_grad.json")
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"grad: loss {doc['loss']:.6f}, params {params}, initializers {sorted(inits)}, "
          f"float32 vs float64 max |Δgrad| {grad_diff:.2e}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="fmnist,resnet8,mbv2,resnet20,resnet20-folded,cnx,inception,grad",
                    help="comma-separated parts to (re)generate")
    ap.add_argument("--epochs", type=int, default=None, help="override epochs (smoke tests only)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = set(parts) - {"fmnist", "resnet8", "mbv2", "resnet20", "resnet20-folded", "cnx", "inception", "grad"}
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t_start = time.time()
    models_dir = os.path.join(REPO, "testdata", "models")
    os.makedirs(models_dir, exist_ok=True)

    train_np, test_np = load_fmnist()
    if "fmnist" in parts:
        make_fmnist_subset(train_np, test_np, os.path.join(REPO, "internal", "fmnist"))

    model_parts = [p for p in parts if p in HYPER]
    twins = [p[:-len("-folded")] for p in parts if p.endswith("-folded")]
    if model_parts or twins:
        data = ((to_tensor(train_np[0]), torch.from_numpy(train_np[1].astype(np.int64))),
                (to_tensor(test_np[0]), torch.from_numpy(test_np[1].astype(np.int64))))
        json_path = os.path.join(models_dir, "fixtures.json")
        summary = {}
        if os.path.exists(json_path):
            with open(json_path) as f:
                summary = json.load(f).get("models", {})
        for name in model_parts:
            make_model(name, data, models_dir, summary, args.epochs)
            write_summary(json_path, summary)
        for name in twins:
            make_folded_twin(name, data, models_dir, summary)
            write_summary(json_path, summary)

    if "grad" in parts:
        make_grad(os.path.join(REPO, "testdata", "grad"))
    print(f"done in {time.time() - t_start:.0f}s")


def write_summary(json_path, summary):
    doc = {
        "format": (
            "Facts about the ONNX files in this directory, written by testdata/gen/fixtures.py "
            "(keyed by file name). All models take 'input' [N,1,28,28] (Fashion-MNIST, pixels "
            "scaled to [0,1] then (x - mean)/std) and return 'logits' [N,10]; opset 13. "
            "accuracy: top-1 of the trained torch model in eval mode on all 'samples' test "
            "images (identical for the folded and the BN-kept file); interpreter_accuracy: the "
            "same measured by executing the ONNX graph itself. params: elements of the weight "
            "and bias initializers of all Conv, Gemm and MatMul nodes as they appear in this "
            "ONNX graph (folded files have conv biases from BN folding; BN-kept files have "
            "bias-free convs; a MatMul's bias is a separate Add, not counted). bn_params: "
            "elements of BatchNormalization scale and B "
            "(running statistics excluded; 0 when folded). torch_params: sum of numel of the "
            "torch module's parameters (conv + BN gamma/beta + linear). macs: per sample, sum "
            "over layers, from forward hooks on nn.Conv2d (H_out*W_out*C_out*(C_in/groups)*"
            "k_h*k_w) and nn.Linear (in*out per position: a Linear over a channels-last "
            "N*H*W*C tensor counts H*W times). layers: in execution order, with the matching "
            "ONNX node, its weight/bias initializer names and params. dedup_undone: initializers the "
            "torch exporter had merged into Identity nodes because their values were equal "
            "(e.g. the two BN biases feeding one residual Add), restored as separate "
            "initializers."),
        "generator": "testdata/gen/fixtures.py",
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "models": dict(sorted(summary.items())),
    }
    with open(json_path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(json_path + ".tmp", json_path)


if __name__ == "__main__":
    main()
