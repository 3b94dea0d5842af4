"""Flagship example: train an MLP on a synthetic classification task, eagerly and then compiled.

The same PyTorch-style code runs both ways; `jitorch.compile(model)` compiles the forward (and, since
the parameters require grad, its backward). Prints loss, accuracy and time per epoch for each, then
the speedup.

    python examples/train_mlp.py [--epochs N] [--backend llvm|interpreter]
"""
from __future__ import annotations

import argparse
import time

import jitorch as torch
from jitorch import nn


def make_data(n: int, features: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around one random centre per class; the centres are close enough (relative to the noise) that
    learning to tell the classes apart takes a few epochs."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, features, generator=generator) * 0.1
    labels = torch.randint(0, classes, (n,), generator=generator)
    points = centres[labels] + torch.randn(n, features, generator=generator)
    return points, labels


def make_model(features: int, hidden: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))


def train(model: nn.Module, step_model: object, data: tuple, epochs: int, batch: int, label: str) -> float:
    points, labels = data
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    n = points.shape[0] - points.shape[0] % batch
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        total = 0.0
        for i in range(0, n, batch):
            x, y = points[i:i + batch], labels[i:i + batch]
            loss = loss_fn(step_model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        with torch.no_grad():
            accuracy = (model(points).argmax(dim=1) == labels).float().mean().item()
        print(f"  {label:9s} epoch {epoch + 1}/{epochs}  loss {total / (n // batch):.4f}  "
              f"accuracy {accuracy:.3f}  {elapsed * 1e3:7.1f} ms", flush=True)
    # the first epoch includes compilation: compare the epochs after it, when there are any
    return sum(seconds[1:]) / (epochs - 1) if epochs > 1 else seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (at least 1)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--backend", default=None, help="compile backend (default: jitorch's default)")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    data = make_data(n=8192, features=784, classes=10)
    print("MLP 784-512-512-10, batch", args.batch, "- training eagerly:")
    torch.manual_seed(0)
    model = make_model(784, 512, 10)
    eager = train(model, model, data, args.epochs, args.batch, "eager")

    print("the same, with the model compiled (jitorch.compile):")
    torch.manual_seed(0)
    model = make_model(784, 512, 10)
    compiled_model = torch.compile(model, backend=args.backend)
    compiled = train(model, compiled_model, data, args.epochs, args.batch, "compiled")
    warm = "after warm-up" if args.epochs > 1 else "(one epoch, including compilation)"
    print(f"epoch time {warm}: eager {eager * 1e3:.1f} ms, compiled {compiled * 1e3:.1f} ms, "
          f"speedup {eager / compiled:.2f}x")


if __name__ == "__main__":
    main()
