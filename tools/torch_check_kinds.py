#!/usr/bin/python3
"""Checks layernorm and gelu against PyTorch's definitions, by hand (make
test does not need torch): a conv net with layernorm over channels, gelu
and layernorm over features, every layer on bp, starts from one random
checkpoint in wtn and in PyTorch (nn.LayerNorm, nn.GELU), takes one SGD step
on the same IDX batch, and the two sets of parameters are compared.

    /usr/bin/python3 tools/torch_check_kinds.py [build/wtnc]
"""
import json, os, struct, subprocess, sys, tempfile
import torch

WTNC = sys.argv[1] if len(sys.argv) > 1 else "build/wtnc"
N, LR = 32, 0.1
NET = """
network torch_check {
    input x[1, 4, 4]
    conv1 = conv2d(x, 3, 3, pad=1)
    ln1   = layernorm(conv1)
    g1    = gelu(ln1)
    flat  = flatten(g1)
    h     = dense(flat, 6)
    g2    = gelu(h)
    ln2   = layernorm(g2, eps=0.001)
    out   = dense(ln2, 3)
    loss softmax_cross_entropy(out)
}
train { batch %d  optimizer sgd(lr=%g) }
""" % (N, LR)


class ChannelNorm(torch.nn.Module):
    """nn.LayerNorm over the channels of NCHW data."""
    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.ln = torch.nn.LayerNorm(c, eps=eps)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        b = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(e["shape"])
    return out


def idx(path, magic, dims, payload):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)


def main():
    torch.manual_seed(0)
    d = tempfile.mkdtemp()
    pix = torch.randint(0, 256, (N, 4, 4), dtype=torch.uint8)
    lab = torch.randint(0, 3, (N,), dtype=torch.uint8)
    for pre in ("train", "t10k"):
        idx(f"{d}/{pre}-images-idx3-ubyte", 2051, (N, 4, 4), pix.numpy().tobytes())
        idx(f"{d}/{pre}-labels-idx1-ubyte", 2049, (N,), lab.numpy().tobytes())
    with open(f"{d}/net.wtn", "w") as f:
        f.write(NET)
    subprocess.run([WTNC, f"{d}/net.wtn", "-o", f"{d}/net"], check=True)

    model = torch.nn.ModuleDict({
        "conv1": torch.nn.Conv2d(1, 3, 3, padding=1), "ln1": ChannelNorm(3),
        "h": torch.nn.Linear(48, 6), "ln2": torch.nn.LayerNorm(6, eps=1e-3),
        "out": torch.nn.Linear(6, 3)})
    with torch.no_grad():   # gamma and beta away from 1 and 0
        for ln in (model["ln1"].ln, model["ln2"]):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    params = {k.replace(".ln.", "."): v.clone() for k, v in model.state_dict().items()}
    write_safetensors(f"{d}/start.safetensors", params)

    gelu = torch.nn.GELU()   # approximate='none': x Phi(x) with erf
    x = pix.float().div(255).reshape(N, 1, 4, 4)
    y = model["conv1"](x)
    y = gelu(model["ln1"](y)).flatten(1)
    y = model["ln2"](gelu(model["h"](y)))
    loss = torch.nn.functional.cross_entropy(model["out"](y), lab.long())
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    want = {k.replace(".ln.", "."): v for k, v in model.state_dict().items()}

    run = subprocess.run([f"{d}/net", "train", "--data", d, "--init", f"{d}/start.safetensors",
                          "--steps", "1", "--no-shuffle", "--threads", "1",
                          "--save", f"{d}/after.safetensors"], capture_output=True, text=True)
    print(run.stdout.strip().splitlines()[-1] if run.stdout else run.stderr)
    got = read_safetensors(f"{d}/after.safetensors")
    worst = 0
    for name, w in want.items():
        start = params[name]
        step = (w - start).abs().max().item()
        err = (got[name] - w).abs().max().item()
        worst = max(worst, err / max(step, 1e-12))
        print(f"{name:12s} step {step:.3e}  |wtn - torch| {err:.3e}")
    print(f"torch loss {loss.item():.6f}; worst difference {worst:.2e} of the step")
    ok = worst < 1e-3
    print("layernorm and gelu match PyTorch" if ok else "MISMATCH")
    return 0 if ok else 1


sys.exit(main())
