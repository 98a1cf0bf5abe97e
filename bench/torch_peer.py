"""Peer benchmark: the networks of make bench, trained in PyTorch with the
same layers, batch (128) and optimiser as their .wtn files (softmax
cross-entropy, SGD with momentum 0.9 and weight decay 1e-4; every layer on
backprop, as bench/run.sh compiles them):
  mlp       784-1000-1000-10 relu (examples/fashion_mlp.wtn), lr 0.01
  convnet   conv 5x5 32 pad 2, relu, maxpool 2, conv 5x5 64 pad 2, relu,
            maxpool 2, dense 1024 relu, dense 10 (bench/convnet.wtn), lr 0.01
  lenet     conv 5x5 6 pad 2, relu, maxpool 2, conv 5x5 16, relu, maxpool 2,
            dense 120 relu, 84 relu, 10 (examples/lenet.wtn), lr 0.01
  resnet20  ResNet-20 (examples/resnet20.wtn): 3x3 conv 16, batchnorm, relu,
            three stages of three basic blocks (16, 32, 64 channels; a
            strided 1x1 conv and batchnorm on the shortcut that halves the
            image), global average pooling, dense 10; lr 0.1
The first three train on the Fashion-MNIST files wtn reads; ResNet-20 on
random CIFAR-shaped images (wtn runs it on its synthetic set, without
augmentation: the speed does not depend on the pixels).
usage: torch_peer.py NET THREADS STEPS
Prints one line: 'torch NET threads=T samples/s=S kernel=K ...' with the
OpenBLAS kernel and the threads it ran with. Only the training steps are
timed, as wtn's binary times them."""
import ctypes, gzip, os, sys, time
import numpy as np
import torch
from torch import nn

def idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)

class Basic(nn.Module):
    """examples/resnet20.wtn's block basic(in, planes, stride)."""
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.downsample(x) if self.downsample else x))

def resnet20():
    layers = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for planes, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(Basic(cin, planes, stride if i == 0 else 1))
            cin = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)

def network(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(),
                             nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10)), 0.01
    if name == "convnet":
        return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
                             nn.Linear(1024, 10)), 0.01
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                             nn.Linear(84, 10)), 0.01
    if name == "resnet20":
        return resnet20(), 0.1
    sys.exit(f"unknown network {name!r}")

def data(name):
    if name == "resnet20":
        g = torch.Generator().manual_seed(1)
        return (torch.rand(2048, 3, 32, 32, generator=g),
                torch.randint(0, 10, (2048,), generator=g))
    root = os.environ.get("WTN_FASHION", "/usr/share/datasets/fashion-mnist")
    x = torch.from_numpy(idx(root + "/train-images-idx3-ubyte.gz").astype(np.float32) / 255)
    y = torch.from_numpy(idx(root + "/train-labels-idx1-ubyte.gz").astype(np.int64))
    return x.reshape(-1, 1, 28, 28), y

def openblas():
    """The OpenBLAS this process loaded (Debian's torch links the system
    one), its kernel and threads; None if it loaded none."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "libopenblas" in line}
    if not paths:
        return None
    lib = ctypes.CDLL(sorted(paths)[0])
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()

def main():
    name, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x, y = data(name)
    net, lr = network(name)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
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
    blas = openblas()
    kernel, blas_threads = blas if blas else ("none", 0)
    print(f"torch {name} threads={threads} samples/s={seen / elapsed:.0f} kernel={kernel} "
          f"openblas_threads={blas_threads} torch_threads={torch.get_num_threads()} "
          f"mkldnn={int(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)} "
          f"omp_wait_policy={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
          f"version={torch.__version__}")

if __name__ == "__main__":
    main()
