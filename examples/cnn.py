"""A small CNN that learns to tell the orientation of bars in 16x16 images, trained eagerly and then compiled.

The images are generated here, so the example needs no download: each holds one bar, horizontal,
vertical, diagonal or anti-diagonal, of random length and position, on a noisy background; the class
is the orientation. The same PyTorch-style code trains twice from the same initial weights on the same
batches: once eagerly, once with the loss function compiled by `jitorch.compile` (forward and, since
the parameters require grad, backward). Then it times inference, eager against a compiled model, and
prints the speedups.

    python examples/cnn.py [--epochs N] [--quick] [--backend llvm|interpreter]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import jitorch as torch
from jitorch import nn
from jitorch.nn import functional as F

ORIENTATIONS = ["horizontal", "vertical", "diagonal", "anti-diagonal"]
STEPS = [(0, 1), (1, 0), (1, 1), (1, -1)]  # (row, column) step along a bar of each orientation


def make_images(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` noisy images of shape (1, size, size) with one bar each, and its orientation (0..3)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.3, (n, 1, size, size)).astype(np.float32)
    labels = rng.integers(0, len(STEPS), n)
    for image, label in zip(images, labels):
        dr, dc = STEPS[label]
        length = int(rng.integers(5, 11))
        # a start from which the whole bar stays inside the image
        row = int(rng.integers(0, size - dr * (length - 1)))
        column = int(rng.integers(max(0, -dc) * (length - 1), size - max(0, dc) * (length - 1)))
        for step in range(length):
            image[0, row + dr * step, column + dc * step] += 1.0 + 0.2 * rng.standard_normal()
    return torch.from_numpy(images), torch.from_numpy(labels)


class BarNet(nn.Module):
    """conv 3x3 (8) -> ReLU -> max-pool -> conv 3x3 (16) -> ReLU -> max-pool -> linear."""

    def __init__(self, classes: int = len(ORIENTATIONS)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(images).argmax(dim=1) == labels).float().mean().item()


def train(model: nn.Module, loss_of: object, data: tuple, test: tuple, epochs: int, batch: int,
          label: str) -> list[float]:
    """Train with SGD; `loss_of(x, y)` is the loss of `model` on one batch (eager or compiled)."""
    images, labels = data
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    n = images.shape[0] - images.shape[0] % batch  # whole batches only: one shape, one compiled graph
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        total = 0.0
        for i in range(0, n, batch):
            loss = loss_of(images[i:i + batch], labels[i:i + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        seconds.append(time.perf_counter() - start)
        print(f"  {label:8s} epoch {epoch + 1}/{epochs}  loss {total / (n // batch):.4f}  "
              f"test accuracy {accuracy(model, *test):.3f}  {seconds[-1] * 1e3:7.1f} ms", flush=True)
    return seconds


def steady(seconds: list[float]) -> float:
    """Mean epoch time after the first (which includes compiling), or the only epoch's time."""
    return sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else seconds[0]


def time_inference(model: object, images: torch.Tensor, batch: int, repeats: int) -> float:
    """Seconds for one pass of `model` over `images` in batches, the best of `repeats` after a warm-up."""
    def one_pass() -> None:
        with torch.no_grad():
            for i in range(0, images.shape[0] - batch + 1, batch):
                model(images[i:i + batch])
    one_pass()  # warm-up: a compiled model traces and compiles here
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 4, 2 with --quick)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs")
    parser.add_argument("--backend", default=None, help="compile backend (default: jitorch's default)")
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    epochs = args.epochs or (2 if args.quick else 4)
    train_size, test_size = (512, 256) if args.quick else (3072, 512)

    data, test = make_images(train_size, seed=0), make_images(test_size, seed=1)
    print(f"{train_size} training and {test_size} test images of 16x16 bars: {', '.join(ORIENTATIONS)}")

    print("training eagerly:")
    torch.manual_seed(0)
    model = BarNet()
    eager = train(model, lambda x, y: F.cross_entropy(model(x), y), data, test, epochs, args.batch, "eager")

    print("the same, with the loss function compiled (jitorch.compile):")
    torch.manual_seed(0)
    model = BarNet()

    @torch.compile(backend=args.backend)
    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    compiled = train(model, loss_of, data, test, epochs, args.batch, "compiled")
    stats = loss_of.stats
    print(f"compiled calls {stats['calls']}, compiles {stats['compiles']}, fallbacks {stats['fallbacks']}")

    print("inference over the test images, eager and with the model compiled:")
    model.eval()
    eager_inference = time_inference(model, test[0], args.batch, repeats=3)
    compiled_inference = time_inference(torch.compile(model, backend=args.backend), test[0], args.batch, repeats=3)

    eager_epoch, compiled_epoch = steady(eager), steady(compiled)
    warm = "after warm-up" if epochs > 1 else "(one, with compiling)"
    print(f"training epoch {warm}: eager {eager_epoch * 1e3:.1f} ms, compiled {compiled_epoch * 1e3:.1f} ms, "
          f"speedup {eager_epoch / compiled_epoch:.2f}x")
    print(f"inference pass (after warm-up): eager {eager_inference * 1e3:.1f} ms, compiled "
          f"{compiled_inference * 1e3:.1f} ms, speedup {eager_inference / compiled_inference:.2f}x")


if __name__ == "__main__":
    main()
