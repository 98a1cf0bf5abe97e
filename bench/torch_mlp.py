"""Peer benchmark: the network of examples/fashion_mlp.wtn (784-1000-1000-10,
relu, softmax cross-entropy, SGD lr 0.01 momentum 0.9 weight decay 1e-4,
batch 128) trained in PyTorch on the same Fashion-MNIST files.
Prints one line: 'torch threads=T samples/s=S'. Only the training steps are
timed, as wtn's binary times them."""
import gzip, os, sys, time
import numpy as np
import torch

def idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)

def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    epochs = float(sys.argv[2]) if len(sys.argv) > 2 else 1
    root = os.environ.get("WTN_FASHION", "/usr/share/datasets/fashion-mnist")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x = torch.from_numpy(idx(root + "/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(idx(root + "/train-labels-idx1-ubyte.gz").astype(np.int64))
    net = torch.nn.Sequential(torch.nn.Linear(784, 1000), torch.nn.ReLU(),
                              torch.nn.Linear(1000, 1000), torch.nn.ReLU(),
                              torch.nn.Linear(1000, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch, n = 128, x.shape[0]
    steps = int(epochs * ((n + batch - 1) // batch))
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
    print(f"torch threads={threads} samples/s={seen / elapsed:.0f}")

if __name__ == "__main__":
    main()
