#!/usr/bin/python3
"""Exports torchvision ImageNet CNNs with random weights to ONNX, for trying qnas on real
architectures (the files are large and are not committed). Run by hand:

    /usr/bin/python3 scripts/torch/torchvision_export.py OUTDIR [--models resnet18,...]

Each model: weights=None (seeded random init), eval mode, input 1x3x224x224 named "input"
(batch dimension dynamic, "N"), output "logits", opset 13, do_constant_folding=True (so
BatchNorm is folded into the convs). Checked with onnx.checker. Prints per model the MACs per
sample counted by forward hooks on nn.Conv2d (H_out*W_out*C_out*(C_in/groups)*k_h*k_w) and
nn.Linear (in*out), the torch parameter count, and the Conv/Gemm weight+bias elements of the
exported graph; writes the same as OUTDIR/summary.json. A model that fails to export is
reported with the error and the others continue.
"""

import argparse
import collections
import json
import os
import sys
import time
import traceback

import numpy as np
import onnx
import torch
import torch.nn as nn
import torchvision

MODELS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1",
          "shufflenet_v2_x1_0", "efficientnet_b0"]


def count_macs(model, x):
    total, layers = 0, 0
    handles = []

    def hook(m, inp, out):
        nonlocal total, layers
        if isinstance(m, nn.Conv2d):
            _, c, h, w = out.shape
            total += h * w * c * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features
        layers += 1

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return int(total), layers


def onnx_conv_gemm_params(proto):
    """Elements of the weight/bias initializers of Conv, Gemm and MatMul nodes (looking through
    Identity nodes of initializers)."""
    inits = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    n = 0
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            for name in node.input[1:]:
                if name in inits:
                    n += int(np.prod(inits[name].dims))
    return n


def undo_dedup(proto):
    """torch 1.13's exporter (eval mode) merges initializers with equal values and recreates the
    duplicates as Identity(first) nodes; with random weights every folded conv bias is zero, so
    there are dozens. Give each consumer its own initializer again and drop those Identity
    nodes. Returns how many were undone."""
    inits = {t.name: t for t in proto.graph.initializer}
    keep, undone = [], 0
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            proto.graph.initializer.append(t)
            undone += 1
        else:
            keep.append(node)
    if undone:
        del proto.graph.node[:]
        proto.graph.node.extend(keep)
    return undone


def export_one(name, out_dir, seed, keep_identity):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    macs, layers = count_macs(model, x)
    params = sum(p.numel() for p in model.parameters())
    path = os.path.join(out_dir, f"{name}.onnx")
    row = {"model": name, "macs": macs, "params": int(params), "hooked_layers": layers}
    try:
        t0 = time.time()
        torch.onnx.export(model, x, path, opset_version=13, input_names=["input"],
                          output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL)
        proto = onnx.load(path)
        undone = 0
        if not keep_identity:
            undone = undo_dedup(proto)
            if undone:
                onnx.save(proto, path)
        onnx.checker.check_model(proto, full_check=True)
        ops = collections.Counter(n.op_type for n in proto.graph.node)
        row.update({
            "file": path,
            "file_bytes": os.path.getsize(path),
            "onnx_conv_gemm_params": onnx_conv_gemm_params(proto),
            "ops": dict(sorted(ops.items())),
            "export_s": round(time.time() - t0, 1),
            "dedup_undone": undone,
            "ok": True,
        })
    except Exception as e:  # report and go on with the next model
        row.update({"ok": False, "error": f"{type(e).__name__}: {e}"})
        traceback.print_exc(file=sys.stderr)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-identity", action="store_true",
                    help="keep the exporter's Identity nodes for equal-valued initializers "
                         "(default: give each consumer its own initializer)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.outdir, exist_ok=True)

    rows = [export_one(m, args.outdir, args.seed, args.keep_identity)
            for m in args.models.split(",") if m]
    print(f"{'model':<22}{'MACs':>15}{'params':>12}{'onnx params':>13}{'undone':>8}  result")
    for r in rows:
        res = "ok" if r["ok"] else "FAILED: " + r["error"].splitlines()[0]
        print(f"{r['model']:<22}{r['macs']:>15,}{r['params']:>12,}"
              f"{r.get('onnx_conv_gemm_params', 0):>13,}{r.get('dedup_undone', 0):>8}  {res}")
    with open(os.path.join(args.outdir, "summary.json"), "w") as f:
        json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__,
                   "input": [1, 3, 224, 224], "opset": 13, "models": rows}, f, indent=1)
        f.write("\n")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
