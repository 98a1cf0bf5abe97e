"""Peer benchmark: the networks of make bench, trained in PyTorch on the same
Fashion-MNIST files with the same hyperparameters (softmax cross-entropy,
SGD lr 0.01 momentum 0.9 weight decay 1e-4, batch 128):
  mlp      784-1000-1000-10 relu (examples/fashion_mlp.wtn)
  convnet  conv 5x5 32 pad 2, relu, maxpool 2, conv 5x5 64 pad 2, relu,
           maxpool 2, dense 1024 relu, dense 10 (bench/convnet.wtn)
usage: torch_peer.py NET THREADS STEPS
Prints one line: 'torch NET threads=T samples/s=S'. Only the training steps
are timed, as wtn's binary times them."""
import gzip, os, sys, time
import numpy as np
import torch
from torch import nn

def idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)

def network(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(),
                             nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
    if name == "convnet":
        return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
                             nn.Linear(1024, 10))
    sys.exit(f"unknown network {name!r}")

def main():
    name, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    root = os.environ.get("WTN_FASHION", "/usr/share/datasets/fashion-mnist")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x = torch.from_numpy(idx(root + "/train-images-idx3-ubyte.gz").astype(np.float32) / 255)
    x = x.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(idx(root + "/train-labels-idx1-ubyte.gz").astype(np.int64))
    net = network(name)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    batch, n = 128, x.shape[0]
    perm = torch.randperm(n)
    seen, start = 0, time.perf_counter()
    for s in range(steps):
        i = perm[(s * batch) % n:(s * batch) % n + batch]
        xb, yb = x[i], y[i]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        opt.step()
        seen += xb.shape[0]
    elapsed = time.perf_counter() - start
    print(f"torch {name} threads={threads} samples/s={seen / elapsed:.0f}")

if __name__ == "__main__":
    main()
