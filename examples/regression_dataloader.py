"""Regression with the usual PyTorch pieces: a Dataset, a DataLoader, Adam and a learning-rate schedule,
trained eagerly and then with the model compiled.

The data is a noisy function of 8 features generated here (y = sin(3 x0) x1 + x2^2 / 2 - x3 + noise,
the other four features are distractors). Both runs start from the same weights and see the same
shuffled batches. Each epoch reports the training loss, the validation loss, the learning rate, and
where the time went: in the DataLoader (indexing and collating samples) or in the training steps
(forward, loss, backward, optimizer), which is the part `jitorch.compile` speeds up.

    python examples/regression_dataloader.py [--epochs N] [--quick] [--backend llvm|interpreter]

The compiled model is cached per input shape: the last, smaller batch of an epoch and the evaluation
under `no_grad` each get their own compiled graph, as `stats` shows at the end.
"""
from __future__ import annotations

import argparse
import math
import time

import jitorch as torch
from jitorch import nn
from jitorch.utils.data import DataLoader, Dataset

FEATURES = 8


class NoisyFunction(Dataset):
    """`size` samples (x, y) with x ~ N(0, 1)^8 and y = sin(3 x0) x1 + x2^2 / 2 - x3 + 0.1 noise."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, FEATURES, generator=generator)
        x0, x1, x2, x3 = self.x[:, 0], self.x[:, 1], self.x[:, 2], self.x[:, 3]
        noise = 0.1 * torch.randn(size, generator=generator)
        self.y = ((3 * x0).sin() * x1 + 0.5 * x2 * x2 - x3 + noise).unsqueeze(1)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def make_model(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, 1))


def evaluate(model: object, loader: DataLoader) -> float:
    loss_fn = nn.MSELoss(reduction="sum")
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += loss_fn(model(x), y).item()
            count += x.shape[0]
    return total / count


def train(model: nn.Module, step_model: object, train_set: Dataset, validation: DataLoader, epochs: int,
          batch: int, label: str) -> list[tuple[float, float]]:
    """Train `model` through `step_model` (itself, or compiled); per epoch (total seconds, step seconds)."""
    loader = DataLoader(train_set, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=3e-4)
    loss_fn = nn.MSELoss()
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        stepping, total, batches = 0.0, 0.0, 0
        for x, y in loader:
            step_start = time.perf_counter()
            loss = loss_fn(step_model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            stepping += time.perf_counter() - step_start
            batches += 1
        elapsed = time.perf_counter() - start
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        times.append((elapsed, stepping))
        print(f"  {label:8s} epoch {epoch + 1}/{epochs}  lr {lr:.5f}  train mse {total / batches:.4f}  "
              f"validation mse {evaluate(step_model, validation):.4f}  "
              f"{elapsed * 1e3:6.0f} ms ({stepping * 1e3:.0f} ms in steps, "
              f"{(elapsed - stepping) * 1e3:.0f} ms loading)", flush=True)
    return times


def steady(seconds: list[float]) -> float:
    """Mean epoch time after the first (which includes compiling), or the only epoch's time."""
    return sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 5, 2 with --quick)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="less data and fewer epochs")
    parser.add_argument("--backend", default=None, help="compile backend (default: jitorch's default)")
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    epochs = args.epochs or (2 if args.quick else 5)
    size = 500 if args.quick else 2000

    train_set, validation_set = NoisyFunction(size, seed=0), NoisyFunction(size // 4, seed=1)
    validation = DataLoader(validation_set, batch_size=256)
    print(f"{len(train_set)} training and {len(validation_set)} validation samples, {FEATURES} features; "
          f"MLP {FEATURES}-{args.hidden}-{args.hidden}-1, batch {args.batch} "
          f"({math.ceil(len(train_set) / args.batch)} steps per epoch); Adam with cosine learning rate")

    print("training eagerly:")
    torch.manual_seed(0)
    model = make_model(args.hidden)
    eager = train(model, model, train_set, validation, epochs, args.batch, "eager")

    print("the same, with the model compiled (jitorch.compile):")
    torch.manual_seed(0)
    model = make_model(args.hidden)
    compiled_model = torch.compile(model, backend=args.backend)
    compiled = train(model, compiled_model, train_set, validation, epochs, args.batch, "compiled")
    stats = compiled_model.stats
    print(f"compiled calls {stats['calls']}, compiles {stats['compiles']} (one per batch shape and grad mode), "
          f"fallbacks {stats['fallbacks']}")

    eager_epoch, compiled_epoch = steady([t for t, _ in eager]), steady([t for t, _ in compiled])
    eager_steps, compiled_steps = steady([s for _, s in eager]), steady([s for _, s in compiled])
    warm = "after warm-up" if epochs > 1 else "(one, with compiling)"
    print(f"training steps per epoch {warm}: eager {eager_steps * 1e3:.1f} ms, "
          f"compiled {compiled_steps * 1e3:.1f} ms, speedup {eager_steps / compiled_steps:.2f}x")
    print(f"whole epoch, with data loading: eager {eager_epoch * 1e3:.1f} ms, "
          f"compiled {compiled_epoch * 1e3:.1f} ms, speedup {eager_epoch / compiled_epoch:.2f}x")


if __name__ == "__main__":
    main()
