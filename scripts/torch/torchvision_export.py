#!/usr/bin/python3
"""Exports torchvision ImageNet CNNs with random weights to ONNX, for trying qnas on real
architectures (the files are large and are not committed). Run by hand:

    /usr/bin/python3 scripts/torch/torchvision_export.py OUTDIR [--models resnet18,convnext_tiny@17,...]

Each model: weights=None (seeded random init), eval mode, input 1x3x224x224 (299x299 for
inception_v3, 384x384 for efficientnet_v2_s, the sizes torchvision publishes their
costs at) named "input" (batch dimension dynamic, "N"), output "logits", opset 13 unless
the name carries "@OPSET" (the file is then NAME_opsetOPSET.onnx), do_constant_folding=True
(so BatchNorm is folded into the convs). Unless --no-perturb is given, the parameters that
torchvision initializes to constants are drawn at random first: norm scales and shifts,
biases and BatchNorm running statistics moved by noise, ConvNeXt's layer scales (1e-6 at
init) drawn from [0.5, 1], so every path of the network shows in the logits and no two
initializers are equal. Checked with onnx.checker. Prints per model the MACs per sample
counted by forward hooks on nn.Conv2d (H_out*W_out*C_out*(C_in/groups)*k_h*k_w) and
nn.Linear (in*out per position: a Linear over channels-last B×H×W×C counts H*W times), the
torch parameter count, and the Conv/Gemm/MatMul weight+bias elements of the exported graph;
writes the same as OUTDIR/summary.json. A model that fails to export is reported with the
error and the others continue.

--probe DIR replaces the classifier of resnet*/mobilenet_v2 by a linear probe of DIR's image
folder (DIR/train/<class>/*.png|jpg, as qnas reads it): the random network's pooled features of
every training image (shorter side resized to the input size with PIL's bilinear filter,
center-cropped, ImageNet mean and std) are standardized (those whose spread is under 1e-3 of
the largest left out), and a ridge regression (lambda 100) onto the
one-hot classes gives a Linear layer with one output per class folder. A random network's
1 000 logits hardly depend on the image (one or two classes win on every input); the probe
gives logits that do, so that predictions can be compared class by class.

--train DIR trains resnet*/mobilenet_v2 instead on DIR's training photos (same preprocessing,
plus a random horizontal flip): torchvision's initialization with one output per class
folder, --epochs epochs of Adam (one-cycle learning rate peaking at 2e-3, batch 32, BatchNorm
in training mode; all but the last --full-epochs epochs (default 2) on the images subsampled
to half the size, a quarter of the work), then exported like the others (eval mode, BatchNorm folded). It prints the
accuracy on DIR/test. A trained network has logits whose margins between classes are those of
a real classifier, which a random network with a probe does not have: its predictions are
decided by differences so small that any two runtimes disagree on some images.
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
          "shufflenet_v2_x1_0", "efficientnet_b0", "convnext_tiny", "convnext_tiny@17",
          "regnet_x_400mf", "regnet_y_400mf", "mnasnet1_0", "mobilenet_v3_large", "resnet50",
          "resnext50_32x4d", "wide_resnet50_2", "densenet121", "googlenet", "inception_v3",
          "efficientnet_v2_s", "alexnet", "vgg11_bn"]

# Models whose published figures are for another input size.
INPUT_SIZE = {"inception_v3": 299, "efficientnet_v2_s": 384}


def count_macs(model, x):
    total, layers = 0, 0
    handles = []

    def hook(m, inp, out):
        nonlocal total, layers
        if isinstance(m, nn.Conv2d):
            _, c, h, w = out.shape
            total += h * w * c * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features * (out.numel() // out.shape[-1])
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


def perturb(model, seed):
    """Draws the parameters torchvision initializes to constants at random (see the module
    doc), so that the logits depend on every layer and no initializers are equal."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_scale" in name:
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.add_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.mul_(0.5 + torch.rand(b.shape, generator=g))


def photo_batches(folder, size, batch=50, split="train"):
    """Yields (images N×3×size×size normalized, class indices) over folder/split, in sorted order."""
    from PIL import Image
    root = os.path.join(folder, split)
    classes = sorted(c for c in os.listdir(root) if not c.startswith(".") and os.path.isdir(os.path.join(root, c)))
    files = [(os.path.join(root, c, f), k) for k, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(root, c)))
             if f.lower().endswith((".png", ".jpg", ".jpeg")) and not f.startswith(".")]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for i in range(0, len(files), batch):
        xs, ys = [], []
        for path, k in files[i:i + batch]:
            im = Image.open(path).convert("RGB")
            w, h = im.size
            r = size / min(w, h)
            im = im.resize((max(size, round(w * r)), max(size, round(h * r))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            x = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1) / 255
            xs.append((x - mean) / std)
            ys.append(k)
        yield torch.stack(xs), torch.tensor(ys)
    if not files:
        raise ValueError(f"{root}: no class folders with .png/.jpg images")


def fit_probe(model, name, folder, size, ridge=100.0):
    """Replaces model's classifier by a linear probe of folder's training images (see --probe)."""
    owner, attr = classifier(model, name)
    head = getattr(owner, attr)
    setattr(owner, attr, nn.Identity())
    feats, labels = [], []
    with torch.no_grad():
        for x, y in photo_batches(folder, size):
            feats.append(model(x).double())
            labels.append(y)
    f, y = torch.cat(feats), torch.cat(labels)
    classes = int(y.max()) + 1
    # Features that hardly vary are left out (a dead ReLU's, or one whose variation is float
    # noise, which another runtime's summation order would change): scaled to unit variance
    # they would decide the logits by noise.
    mu, sigma = f.mean(0), f.std(0)
    used = sigma > 1e-3 * sigma.max()
    sigma = torch.where(used, sigma, torch.ones_like(sigma))
    z = (f - mu) / sigma * used
    onehot = torch.nn.functional.one_hot(y, classes).double()
    w = torch.linalg.solve(z.T @ z + ridge * torch.eye(z.shape[1], dtype=torch.float64), z.T @ (onehot - onehot.mean(0)))
    w = w * used[:, None]
    b = onehot.mean(0) - (mu / sigma) @ w
    probe = nn.Linear(head.in_features, classes)
    with torch.no_grad():
        probe.weight.copy_((w / sigma[:, None]).T.float())
        probe.bias.copy_(b.float())
    setattr(owner, attr, probe)
    acc = float(((z @ w + onehot.mean(0)).argmax(1) == y).double().mean())
    print(f"{name}: linear probe of {len(y)} images, {classes} classes, {int(used.sum())} of {len(used)} features, "
          f"training accuracy {acc:.3f}", file=sys.stderr)


def classifier(model, name):
    """The module holding model's last Linear layer and its attribute name there."""
    if name.startswith("resnet"):
        return model, "fc"
    if name == "mobilenet_v2":
        return model.classifier, "1"
    raise ValueError(f"no classifier known for {name}")


def train_on(model, name, folder, size, epochs, seed, full_epochs=2):
    """Trains model on folder's training photos (see --train) and returns its test accuracy."""
    owner, attr = classifier(model, name)
    xs, ys = zip(*photo_batches(folder, size))
    x, y = torch.cat(xs), torch.cat(ys)
    classes = int(y.max()) + 1
    setattr(owner, attr, nn.Linear(getattr(owner, attr).in_features, classes))
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = 32
    steps = epochs * (len(y) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    small = x[:, :, ::2, ::2].contiguous() if epochs > full_epochs else None
    model.train()
    t0 = time.time()
    for epoch in range(epochs):
        # All but the last full_epochs epochs at half the input size (a quarter of the work),
        # the last ones at full size, which also settles the BatchNorm statistics there.
        src = small if epoch < epochs - full_epochs else x
        order = torch.randperm(len(y), generator=g)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(y) - batch + 1, batch):
            idx = order[i:i + batch]
            xb, yb = src[idx], y[idx]
            flip = torch.rand(batch, generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            out = model(xb)
            loss = nn.functional.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * batch
            correct += int((out.argmax(1) == yb).sum())
            total += batch
        print(f"{name}: epoch {epoch + 1}/{epochs} loss {loss_sum / total:.4f} training accuracy "
              f"{correct / total:.3f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for xb, yb in photo_batches(folder, size, split="test"):
            correct += int((model(xb).argmax(1) == yb).sum())
            total += len(yb)
    acc = correct / total
    print(f"{name}: test accuracy {acc:.4f} on {total} photos", file=sys.stderr)
    return acc


def export_one(spec, out_dir, seed, keep_identity, do_perturb, probe=None, train=None, epochs=8, full_epochs=2):
    name, _, opset = spec.partition("@")
    opset = int(opset or 13)
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).eval()
    if do_perturb and not train:
        perturb(model, seed)
    size = INPUT_SIZE.get(name, 224)
    test_accuracy = None
    if train:
        test_accuracy = train_on(model, name, train, size, epochs, seed, full_epochs)
    elif probe:
        fit_probe(model, name, probe, size)
    x = torch.randn(1, 3, size, size)
    macs, layers = count_macs(model, x)
    params = sum(p.numel() for p in model.parameters())
    base = name if opset == 13 else f"{name}_opset{opset}"
    path = os.path.join(out_dir, f"{base}.onnx")
    row = {"model": base, "torchvision": name, "opset": opset, "input": [1, 3, size, size],
           "macs": macs, "params": int(params), "hooked_layers": layers}
    if test_accuracy is not None:
        row["test_accuracy"] = test_accuracy
    try:
        t0 = time.time()
        torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"],
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
    ap.add_argument("--no-perturb", dest="perturb", action="store_false",
                    help="keep torchvision's initialization (constant norm parameters, "
                         "ConvNeXt layer scales of 1e-6)")
    ap.add_argument("--keep-identity", action="store_true",
                    help="keep the exporter's Identity nodes for equal-valued initializers "
                         "(default: give each consumer its own initializer)")
    ap.add_argument("--probe", metavar="DIR",
                    help="replace the classifier by a linear probe of the image folder DIR (resnet*, mobilenet_v2)")
    ap.add_argument("--train", metavar="DIR",
                    help="train resnet*/mobilenet_v2 on the image folder DIR first (see above)")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs for --train")
    ap.add_argument("--full-epochs", type=int, default=2,
                    help="how many of the last --train epochs run at full size (the others at half size)")
    args = ap.parse_args()
    if args.train and args.probe:
        ap.error("--train and --probe exclude each other")
    torch.set_num_threads(args.threads)
    os.makedirs(args.outdir, exist_ok=True)

    rows = [export_one(m, args.outdir, args.seed, args.keep_identity, args.perturb, args.probe,
                          args.train, args.epochs, args.full_epochs)
            for m in args.models.split(",") if m]
    print(f"{'model':<26}{'MACs':>15}{'params':>12}{'onnx params':>13}{'undone':>8}  result")
    for r in rows:
        res = "ok" if r["ok"] else "FAILED: " + r["error"].splitlines()[0]
        print(f"{r['model']:<26}{r['macs']:>15,}{r['params']:>12,}"
              f"{r.get('onnx_conv_gemm_params', 0):>13,}{r.get('dedup_undone', 0):>8}  {res}")
    with open(os.path.join(args.outdir, "summary.json"), "w") as f:
        json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__,
                   "perturbed": args.perturb and not args.train, "probe": args.probe,
                   "train": args.train, "epochs": args.epochs if args.train else None,
                   "full_epochs": args.full_epochs if args.train else None, "models": rows}, f, indent=1)
        f.write("\n")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
