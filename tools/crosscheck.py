#!/usr/bin/python3
"""make crosscheck: every learning rule, on a small dense and a small conv
network, against an independent PyTorch implementation of docs/rules.md.

For each rule and network: wtnc compiles the network with every layer on the
rule; this script draws one initial state, writes it as a safetensors
checkpoint, and both the compiled binary (--init, --no-shuffle, one thread)
and the PyTorch reference below take the same steps on the same
Fashion-MNIST batches. Compared after the steps: every W, b and B (D for
dfa), as max |wtn - ref| / max |ref| per tensor.

Two rules draw random numbers the reference cannot reproduce:
- wm: B moves in mirror steps on noise. The reference takes wtn's B after
  step k (from `train --steps k`) for step k+1, so W and b are compared
  exactly over the whole trajectory; B is checked by its statistics: after
  K mirror steps with W fixed (`mirror --steps K`), B's distance from its
  expectation (1-d)^K B0 + (1-(1-d)^K) (rate noise^2 / d) W_eff must lie in
  the spread of the reference's own noisy runs (W_eff: W with each conv tap
  scaled by the share of output pixels where it falls inside the image).
- brsf: B = |m| sign(W) with m redrawn every batch. W and b are compared
  exactly the same way; B must carry W's signs exactly, have the mean square
  of W's initial distribution, and its magnitudes must be uncorrelated from
  one step to the next.

The reference is written from the equations in docs/rules.md and
docs/language.md (losses, optimiser), in float64: autograd functions whose
backward sends the error through the rule's matrix C, a hook that replaces
a dfa layer's incoming error with d_L D, and the optimiser written out.

Environment: WTNC (default build/wtnc), CROSSCHECK_STEPS (default 6),
CROSSCHECK_RULES (default all eight), CROSSCHECK_KEEP=1 keeps the work
directory. Exit status 1 on any mismatch.
"""
import gzip
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WTNC = os.environ.get("WTNC", os.path.join(ROOT, "build", "wtnc"))
STEPS = int(os.environ.get("CROSSCHECK_STEPS", "6"))
RULES = os.environ.get("CROSSCHECK_RULES", "bp fa usf frsf brsf kp kp-wd kp-steps wm wm-growth dfa").split()
DATA = "/usr/share/datasets/fashion-mnist"
TOL = 1e-4          # float32 against float64 over a few steps
BATCH = 16
LR, MOMENTUM, WD = 0.05, 0.9, 1e-3
KP_DECAY = 0.02     # kp's own decay (the optimiser's is also tried: kp-wd)
KP_DECAY_STEPS = 3  # kp-steps: KP_DECAY for the first 3 steps, then the optimiser's
WM = dict(noise=0.5, rate=0.004, decay=0.01, batch=32, warmup=0)
MIRROR_STEPS = 400
MIRROR_RUNS = 12    # the reference's noisy runs that set the spread
GROWTH = 0.5        # wm-growth: B rescaled after every mirror step

# ---- the two networks: one description drives the .wtn text and the reference
# (name, kind, args); kinds: dense(units, act, init), conv(F, k, stride, pad, act, init),
# maxpool(k), flatten
NETS = {
    "dense": {
        "input": (1, 28, 28), "flat_input": True,
        "layers": [
            ("h1", "dense", dict(units=24, act="relu", init="xavier")),
            ("h2", "dense", dict(units=16, act="tanh", init="he")),
            ("out", "dense", dict(units=10, act="identity", init="xavier")),
        ],
    },
    "conv": {
        "input": (1, 28, 28), "flat_input": False,
        "layers": [
            ("c1", "conv", dict(F=4, k=5, stride=1, pad=2, act="relu", init="xavier")),
            ("p1", "maxpool", dict(k=2)),
            ("c2", "conv", dict(F=6, k=3, stride=2, pad=1, act="relu", init="he")),
            ("flat", "flatten", {}),
            ("out", "dense", dict(units=10, act="identity", init="xavier")),
        ],
    },
}


def wtn_source(name, net):
    c, h, w = net["input"]
    lines = ["network x%s {" % name]
    lines.append("    input x[%d]" % (c * h * w) if net["flat_input"]
                 else "    input x[%d, %d, %d]" % (c, h, w))
    src = "x"
    for lname, kind, a in net["layers"]:
        if kind == "dense":
            lines.append("    %s = dense(%s, %d, act=%s, init=%s)" % (lname, src, a["units"], a["act"], a["init"]))
        elif kind == "conv":
            lines.append("    %s = conv2d(%s, %d, %d, stride=%d, pad=%d, act=%s, init=%s)" % (
                lname, src, a["F"], a["k"], a["stride"], a["pad"], a["act"], a["init"]))
        elif kind == "maxpool":
            lines.append("    %s = maxpool(%s, %d)" % (lname, src, a["k"]))
        elif kind == "flatten":
            lines.append("    %s = flatten(%s)" % (lname, src))
        src = lname
    lines.append("    loss softmax_cross_entropy(%s)" % src)
    lines.append("}")
    lines.append("train {")
    lines.append("    data fashion_mnist")
    lines.append("    batch %d" % BATCH)
    lines.append("    epochs 1")
    lines.append("    optimizer sgd(lr=%g, momentum=%g, weight_decay=%g)" % (LR, MOMENTUM, WD))
    lines.append("    seed 1")
    lines.append("}")
    return "\n".join(lines) + "\n"


def rule_entry(rule):
    if rule == "wm":
        return "wm(" + ", ".join("%s=%g" % kv for kv in WM.items()) + ")"
    if rule == "wm-growth":
        return "wm(" + ", ".join("%s=%g" % kv for kv in WM.items()) + ", growth=%g)" % GROWTH
    if rule == "kp":
        return "kp(decay=%g)" % KP_DECAY
    if rule == "kp-wd":
        return "kp"
    if rule == "kp-steps":
        return "kp(decay=%g, decay_steps=%d)" % (KP_DECAY, KP_DECAY_STEPS)
    return rule


# ---- shapes and fans
def shapes(net):
    """Per weighted layer: dict(name, kind, W shape, fan_in, fan_out, in shape, out shape)."""
    c, h, w = net["input"]
    cur = (c, h, w)
    out = []
    for lname, kind, a in net["layers"]:
        if kind == "dense":
            n_in = cur[0] * cur[1] * cur[2]
            out.append(dict(name=lname, kind=kind, a=a, W=(a["units"], n_in), fan_in=n_in,
                            fan_out=a["units"], inshape=cur, outshape=(a["units"], 1, 1)))
            cur = (a["units"], 1, 1)
        elif kind == "conv":
            oh = (cur[1] + 2 * a["pad"] - a["k"]) // a["stride"] + 1
            ow = (cur[2] + 2 * a["pad"] - a["k"]) // a["stride"] + 1
            k2 = a["k"] * a["k"]
            out.append(dict(name=lname, kind=kind, a=a, W=(a["F"], cur[0], a["k"], a["k"]),
                            fan_in=cur[0] * k2, fan_out=a["F"] * k2, inshape=cur,
                            outshape=(a["F"], oh, ow)))
            cur = (a["F"], oh, ow)
        elif kind == "maxpool":
            cur = (cur[0], cur[1] // a["k"], cur[2] // a["k"])
        elif kind == "flatten":
            cur = (cur[0] * cur[1] * cur[2], 1, 1)
    return out


def init_std(L):
    if L["a"]["init"] == "he":
        return math.sqrt(2.0 / L["fan_in"])
    return math.sqrt(2.0 / (L["fan_in"] + L["fan_out"]))   # xavier uniform


def draw_like_w(L, shape, rng):
    if L["a"]["init"] == "he":
        return rng.normal(0, init_std(L), size=shape)
    a = math.sqrt(6.0 / (L["fan_in"] + L["fan_out"]))
    return rng.uniform(-a, a, size=shape)


def usf_scale(L):
    if L["kind"] == "conv":
        return math.sqrt(2.0 / (L["a"]["k"] ** 2 * L["a"]["F"]))
    return 1.0 / math.sqrt(L["fan_in"])


def initial_state(net, rule, seed=7):
    rng = np.random.default_rng(seed)
    Ls = shapes(net)
    st = {}
    for i, L in enumerate(Ls):
        W = draw_like_w(L, L["W"], rng)
        st[L["name"] + ".weight"] = W
        st[L["name"] + ".bias"] = rng.normal(0, 0.05, size=L["W"][0])
        if rule in ("fa", "kp", "kp-wd", "kp-steps", "wm", "wm-growth"):
            B = draw_like_w(L, L["W"], rng)
        elif rule == "usf":
            B = np.sign(W) * usf_scale(L)
        elif rule in ("frsf", "brsf"):
            B = np.abs(draw_like_w(L, L["W"], rng)) * np.sign(W)
        elif rule == "dfa":
            if i == len(Ls) - 1:
                continue   # the output layer gets no D
            o = L["outshape"]
            B = draw_like_w(L, (Ls[-1]["W"][0], o[0] * o[1] * o[2]), rng)
        else:
            continue
        st[L["name"] + ".feedback"] = B
    return st


# ---- safetensors, as docs/binary.md describes them
def st_write(path, tensors, network):
    header, off, blobs = {}, 0, []
    for k, v in tensors.items():
        b = np.ascontiguousarray(v, dtype="<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    header["__metadata__"] = {"format": "pt", "producer": "crosscheck", "network": network, "epoch": "0"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(v["shape"]).astype(np.float64)
    return out


# ---- data: the first training images in file order, pixels / 255
def load_batches(nbatches):
    with gzip.open(os.path.join(DATA, "train-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    with gzip.open(os.path.join(DATA, "train-labels-idx1-ubyte.gz")) as f:
        lab = f.read()
    n = nbatches * BATCH
    x = np.frombuffer(raw, dtype=np.uint8, count=n * 784, offset=16).astype(np.float64) / 255.0
    y = np.frombuffer(lab, dtype=np.uint8, count=n, offset=8).astype(np.int64)
    return [(torch.tensor(x[i * BATCH * 784:(i + 1) * BATCH * 784].reshape(BATCH, 1, 28, 28)),
             torch.tensor(y[i * BATCH:(i + 1) * BATCH])) for i in range(nbatches)]


# ---- the reference: layers whose backward sends the error through C
class LinearC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W, b, C):
        ctx.save_for_backward(x, C)
        return x @ W.t() + b

    @staticmethod
    def backward(ctx, d):
        x, C = ctx.saved_tensors
        return d @ C, d.t() @ x, d.sum(0), None


class ConvC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W, b, C, stride, pad):
        ctx.save_for_backward(x, W, C)
        ctx.stride, ctx.pad = stride, pad
        return F.conv2d(x, W, b, stride=stride, padding=pad)

    @staticmethod
    def backward(ctx, d):
        x, W, C = ctx.saved_tensors
        gx = torch.nn.grad.conv2d_input(x.shape, C, d, stride=ctx.stride, padding=ctx.pad)
        gW = torch.nn.grad.conv2d_weight(x, W.shape, d, stride=ctx.stride, padding=ctx.pad)
        return gx, gW, d.sum((0, 2, 3)), None, None, None


ACT = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda a: a}


def ref_forward_backward(net, P, rule, x, y):
    """One forward and backward pass; returns the gradients of every W and b."""
    Ls = {L["name"]: L for L in shapes(net)}
    h = x.reshape(x.shape[0], -1) if net["flat_input"] else x
    params = {}
    dfa_outputs = []
    out_err = {}
    last = net["layers"][-1][0]
    for lname, kind, a in net["layers"]:
        if kind in ("dense", "conv"):
            W = P[lname + ".weight"].clone().requires_grad_(True)
            b = P[lname + ".bias"].clone().requires_grad_(True)
            params[lname] = (W, b)
            # the matrix that carries the error: W (bp; dfa sends nothing it uses), else B
            C = P[lname + ".weight"] if rule in ("bp", "dfa") else P[lname + ".feedback"]
            if kind == "dense":
                z = LinearC.apply(h, W, b, C)
            else:
                z = ConvC.apply(h, W, b, C, a["stride"], a["pad"])
            if lname == last:
                z.register_hook(lambda g: out_err.__setitem__("d", g))
            h = ACT[a["act"]](z)
            if rule == "dfa" and lname != last:
                h.register_hook(lambda g, n=lname: dfa_error(P[n + ".feedback"], out_err["d"], g))
        elif kind == "maxpool":
            h = F.max_pool2d(h, a["k"])
        elif kind == "flatten":
            h = h.reshape(h.shape[0], -1)
    loss = F.cross_entropy(h, y)   # mean over the batch: d_L = (softmax - t) / n
    loss.backward()
    return {n: (W.grad, b.grad) for n, (W, b) in params.items()}


def dfa_error(D, dL, g):
    """d_L D in the shape of the layer's output; D's columns in NHWC order."""
    e = dL @ D
    if g.dim() == 4:
        n, c, hh, ww = g.shape
        e = e.reshape(n, hh, ww, c).permute(0, 3, 1, 2)
    return e.reshape(g.shape)


def ref_steps(net, rule, P0, batches, nsteps, wtn_B=None):
    """nsteps optimiser steps from P0 (numpy dict). wtn_B[k]: wtn's B after
    step k (wm, brsf), used in step k+1."""
    P = {k: torch.tensor(v) for k, v in P0.items()}
    mom = {k: torch.zeros_like(v) for k, v in P.items()}
    Ls = shapes(net)
    M = {L["name"]: P[L["name"] + ".feedback"].abs() for L in Ls if rule == "frsf"}
    for k in range(nsteps):
        if wtn_B is not None and k > 0:
            for L in Ls:
                P[L["name"] + ".feedback"] = torch.tensor(wtn_B[k][L["name"] + ".feedback"])
        x, y = batches[k]
        grads = ref_forward_backward(net, P, rule, x, y)
        for L in Ls:
            n = L["name"]
            gW, gb = grads[n]
            # kp's decay is W's and B's (docs/rules.md); biases keep the optimiser's
            lam = KP_DECAY if rule == "kp" or (rule == "kp-steps" and k < KP_DECAY_STEPS) else WD
            for key, g in ((n + ".weight", gW), (n + ".bias", gb)):
                g = g + (lam if key.endswith(".weight") else WD) * P[key]
                mom[key] = MOMENTUM * mom[key] + g
                P[key] = P[key] - LR * mom[key]
            fb = n + ".feedback"
            if rule in ("kp", "kp-wd", "kp-steps"):
                g = gW + lam * P[fb]
                mom[fb] = MOMENTUM * mom[fb] + g
                P[fb] = P[fb] - LR * mom[fb]
            elif rule == "usf":
                P[fb] = torch.sign(P[n + ".weight"]) * usf_scale(L)
            elif rule == "frsf":
                P[fb] = M[n] * torch.sign(P[n + ".weight"])
    return {k: v.numpy() for k, v in P.items()}


# ---- the weight mirror's expectation and the reference's own noisy mirror
def tap_share(L):
    """Per weight [F, C, k, k]: the share of output pixels where the tap lies inside the input."""
    C, H, Wd = L["inshape"]
    _, OH, OW = L["outshape"]
    k, s, p = L["a"]["k"], L["a"]["stride"], L["a"]["pad"]
    share = np.zeros((k, k))
    for i in range(k):
        rows = sum(1 for oh in range(OH) if 0 <= oh * s - p + i < H)
        for j in range(k):
            cols = sum(1 for ow in range(OW) if 0 <= ow * s - p + j < Wd)
            share[i, j] = rows * cols / (OH * OW)
    return np.broadcast_to(share, L["W"])


def mirror_expectation(L, W, B0, K):
    d = WM["decay"]
    target = WM["rate"] * WM["noise"] ** 2 / d * (W * tap_share(L) if L["kind"] == "conv" else W)
    keep = (1 - d) ** K
    return keep * B0 + (1 - keep) * target


def growth_control(L, B):
    """biotorch's growth control: one factor per layer, so that the mean
    unit-noise response std (a row's or a filter's norm) is GROWTH."""
    rows = B.reshape(B.shape[0], -1).norm(dim=1)
    return B * (GROWTH / rows.mean())


def ref_mirror(L, W, B0, K, gen, growth=False):
    """K mirror steps, written from docs/rules.md, with torch's noise."""
    W, B = torch.tensor(W), torch.tensor(B0)
    n, d, r, s = WM["batch"], WM["decay"], WM["rate"], WM["noise"]
    for _ in range(K):
        if L["kind"] == "dense":
            x = torch.randn(n, W.shape[1], generator=gen) * s
            y = x @ W.t()
            B = (1 - d) * B + r / n * (y.t() @ x)
        else:
            x = torch.randn((n,) + tuple(L["inshape"]), generator=gen) * s
            y = F.conv2d(x, W, stride=L["a"]["stride"], padding=L["a"]["pad"])
            pix = y.shape[2] * y.shape[3]
            corr = torch.nn.grad.conv2d_weight(x, W.shape, y, stride=L["a"]["stride"],
                                               padding=L["a"]["pad"])
            B = (1 - d) * B + r / (n * pix) * corr
        if growth:
            B = growth_control(L, B)
    return B.numpy()


# ---- running wtn
def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout[-2000:]))
    return p.stdout


def build(tmp, netname, net, rule):
    src = os.path.join(tmp, "%s.wtn" % netname)
    with open(src, "w") as f:
        f.write(wtn_source(netname, net))
    exe = os.path.join(tmp, "%s_%s" % (netname, rule))
    run([WTNC, src, "--feedback", "*=" + rule_entry(rule), "-o", exe], tmp)
    return exe


def wtn_train(exe, tmp, init, steps, tag):
    out = os.path.join(tmp, "%s.%s.safetensors" % (os.path.basename(exe), tag))
    run([exe, "train", "--init", init, "--steps", str(steps), "--epochs", "1", "--no-shuffle",
         "--threads", "1", "--save", out], tmp)
    return st_read(out)


def rel_err(a, b):
    scale = max(np.abs(b).max(), 1e-30)
    return float(np.abs(a - b).max() / scale)


class Table:
    def __init__(self):
        self.rows, self.failed = [], 0

    def add(self, rule, net, check, value, bound, ok):
        self.rows.append((rule, net, check, value, bound, "ok" if ok else "MISMATCH"))
        self.failed += not ok
        r = self.rows[-1]
        print("%-6s %-6s %-44s %12s %12s  %s" % r, flush=True)


def fmt(v):
    return "%.3g" % v if isinstance(v, float) else str(v)


def check_exact(tab, netname, net, rule, exe, tmp, init_path, P0, batches):
    """Exact trajectory of W and b (and B where deterministic)."""
    stochastic = rule in ("wm", "wm-growth", "brsf")
    wtn_B = None
    if stochastic:
        wtn_B = {k: wtn_train(exe, tmp, init_path, k, "s%d" % k) for k in range(1, STEPS)}
    got = wtn_train(exe, tmp, init_path, STEPS, "s%d" % STEPS)
    ref = ref_steps(net, rule, P0, batches, STEPS, wtn_B)
    worst, where = 0.0, ""
    for k, v in ref.items():
        if stochastic and k.endswith(".feedback"):
            continue
        if k not in got:
            tab.add(rule, netname, "tensor %s in wtn's checkpoint" % k, "missing", "-", False)
            continue
        e = rel_err(got[k], v)
        if e >= worst:
            worst, where = e, k
    what = "W, b" + ("" if stochastic or rule == "bp" else (", D" if rule == "dfa" else ", B"))
    tab.add(rule, netname, "%s after %d steps (worst: %s)" % (what, STEPS, where), fmt(worst),
            "< %g" % TOL, worst < TOL)
    return got, wtn_B


def check_brsf(tab, netname, net, got, prev):
    for L in shapes(net):
        n = L["name"]
        W, B, Bp = got[n + ".weight"], got[n + ".feedback"], prev[n + ".feedback"]
        signs = float(np.mean(np.sign(B) == np.sign(W)))
        tab.add("brsf", netname, "%s sign(B) = sign(W), share" % n, fmt(signs), "= 1", signs == 1.0)
        cnt = B.size
        ms = float(np.mean(B ** 2) / init_std(L) ** 2)
        bound = 5 * math.sqrt(2.0 / cnt)
        tab.add("brsf", netname, "%s mean(B^2) / std_init^2" % n, fmt(ms), "1 +- %.2f" % bound,
                abs(ms - 1) < bound)
        c = float(np.corrcoef(np.abs(B).ravel(), np.abs(Bp).ravel())[0, 1])
        cb = 5 / math.sqrt(cnt)
        tab.add("brsf", netname, "%s corr(|B_k|, |B_k-1|) (redrawn)" % n, fmt(c), "|.| < %.2f" % cb,
                abs(c) < cb)


def angle(a, b):
    a, b = a.ravel() / np.linalg.norm(a), b.ravel() / np.linalg.norm(b)
    return math.degrees(2 * math.atan2(np.linalg.norm(a - b), np.linalg.norm(a + b)))


def check_growth(tab, netname, net, exe, tmp, init_path, P0):
    """With growth control B's scale is fixed and its direction is the mirror's."""
    out = os.path.join(tmp, "%s.mirror.safetensors" % os.path.basename(exe))
    run([exe, "mirror", "--init", init_path, "--steps", str(MIRROR_STEPS), "--threads", "1",
         "--save", out], tmp)
    got = st_read(out)
    gen = torch.Generator().manual_seed(12)
    for L in shapes(net):
        n = L["name"]
        B, W, B0 = got[n + ".feedback"], P0[n + ".weight"], P0[n + ".feedback"]
        rows = np.linalg.norm(B.reshape(B.shape[0], -1), axis=1)
        scale = float(rows.mean())
        tab.add("wm-growth", netname, "%s %s" % (n, "mean row norm" if L["kind"] == "dense" else
                "mean filter norm"), fmt(scale), "%g" % GROWTH, abs(scale - GROWTH) < 1e-4)
        Weff = W * tap_share(L) if L["kind"] == "conv" else W
        refs = [angle(ref_mirror(L, W, B0, MIRROR_STEPS, gen, growth=True), Weff)
                for _ in range(MIRROR_RUNS // 2)]
        mu, sd = float(np.mean(refs)), float(np.std(refs, ddof=1))
        a = angle(B, Weff)
        tab.add("wm-growth", netname, "%s angle(B, W_eff) after %d mirror steps" % (n, MIRROR_STEPS),
                fmt(a), "ref %.3g..%.3g" % (min(refs), max(refs)),
                abs(a - mu) <= 4 * sd + 0.1 * mu)


def check_mirror(tab, netname, net, exe, tmp, init_path, P0):
    out = os.path.join(tmp, "%s.mirror.safetensors" % os.path.basename(exe))
    run([exe, "mirror", "--init", init_path, "--steps", str(MIRROR_STEPS), "--threads", "1",
         "--save", out], tmp)
    got = st_read(out)
    gen = torch.Generator().manual_seed(11)
    for L in shapes(net):
        n = L["name"]
        W, B0 = P0[n + ".weight"], P0[n + ".feedback"]
        E = mirror_expectation(L, W, B0, MIRROR_STEPS)
        dist = lambda B: float(np.linalg.norm(B - E) / np.linalg.norm(E))
        refs = [dist(ref_mirror(L, W, B0, MIRROR_STEPS, gen)) for _ in range(MIRROR_RUNS)]
        mu, sd = float(np.mean(refs)), float(np.std(refs, ddof=1))
        lo, hi = min(refs), max(refs)
        # inside the reference runs' spread, widened by 4 std either side
        ok = mu - 4 * sd - 0.1 * mu <= dist(got[n + ".feedback"]) <= mu + 4 * sd + 0.1 * mu
        tab.add("wm", netname, "%s |B-E[B]|/|E[B]| after %d mirror steps" % (n, MIRROR_STEPS),
                fmt(dist(got[n + ".feedback"])), "ref %.3g..%.3g" % (lo, hi), ok)
        if not np.allclose(got[n + ".weight"], W, rtol=0, atol=1e-6):
            tab.add("wm", netname, "%s W unchanged by mirror steps" % n, "changed", "-", False)


def main():
    if not os.access(WTNC, os.X_OK):
        sys.exit("crosscheck: %s missing: run 'make all' first" % WTNC)
    keep = os.environ.get("CROSSCHECK_KEEP") == "1"
    tmp = tempfile.mkdtemp(prefix="wtn_crosscheck.")
    tab = Table()
    batches = load_batches(STEPS)
    print("%-6s %-6s %-44s %12s %12s  %s" % ("rule", "net", "check", "value", "bound", ""))
    try:
        for rule in RULES:
            for netname, net in NETS.items():
                try:
                    exe = build(tmp, netname, net, rule)
                    P0 = initial_state(net, rule)
                    init_path = os.path.join(tmp, "%s_%s.init.safetensors" % (netname, rule))
                    st_write(init_path, P0, "x" + netname)
                    # the checkpoint holds float32: start the reference from the same values
                    P0 = st_read(init_path)
                    got, wtn_B = check_exact(tab, netname, net, rule, exe, tmp, init_path, P0, batches)
                    if rule == "brsf":
                        check_brsf(tab, netname, net, got, wtn_B[STEPS - 1])
                    if rule == "wm":
                        check_mirror(tab, netname, net, exe, tmp, init_path, P0)
                    if rule == "wm-growth":
                        check_growth(tab, netname, net, exe, tmp, init_path, P0)
                except RuntimeError as e:
                    tab.add(rule, netname, "build and run", "error", "-", False)
                    print(str(e), file=sys.stderr)
    finally:
        if keep:
            print("crosscheck: work directory kept: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = len(tab.rows)
    print("crosscheck: %d of %d checks %s" % (total - tab.failed, total,
          "passed" if not tab.failed else "passed, %d MISMATCH" % tab.failed))
    sys.exit(1 if tab.failed else 0)


if __name__ == "__main__":
    main()
