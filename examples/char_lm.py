"""A character-level language model (an LSTM, or a tiny Transformer) trained eagerly and then compiled.

The text comes from a tiny grammar of English-like sentences generated here ("the small cat sees a
red ball near the old tree."), a few KB, so the example needs no download. The model predicts each next
character; the same PyTorch-style code trains twice from the same initial weights on the same batches,
once eagerly and once with `jitorch.compile(model)`, printing loss and time per epoch for each, the
speedup, and a sample of generated text.

    python examples/char_lm.py [--epochs N] [--quick] [--model lstm|transformer] [--backend llvm|interpreter]
"""
from __future__ import annotations

import argparse
import random
import time

import jitorch as torch
from jitorch import nn

NOUNS = ["cat", "dog", "bird", "child", "farmer", "robot", "teacher", "fox"]
THINGS = ["ball", "tree", "river", "house", "book", "garden", "hill", "boat"]
ADJECTIVES = ["small", "old", "red", "quiet", "happy", "tall", "green", "clever"]
VERBS = ["sees", "finds", "likes", "paints", "follows", "carries", "watches", "builds"]
PLACES = ["near", "behind", "under", "beside", "across"]


def sentence(rng: random.Random) -> str:
    """One sentence of the grammar: subject verb object [place phrase]."""
    def phrase(words: list[str]) -> str:
        article = rng.choice(["the", "a"])
        adjective = rng.choice(ADJECTIVES) + " " if rng.random() < 0.6 else ""
        return f"{article} {adjective}{rng.choice(words)}"

    text = f"{phrase(NOUNS)} {rng.choice(VERBS)} {phrase(THINGS)}"
    if rng.random() < 0.5:
        text += f" {rng.choice(PLACES)} {phrase(THINGS)}"
    return text + "."


def make_text(size: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < size:
        parts.append(sentence(rng))
    return " ".join(parts)


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


class CharTransformer(nn.Module):
    """A tiny decoder-only Transformer: token + position embeddings, causal self-attention layers."""

    def __init__(self, vocab: int, embed: int, hidden: int, context: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.position = nn.Embedding(context, embed)
        layer = nn.TransformerEncoderLayer(embed, nhead=4, dim_feedforward=hidden, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers=2)
        self.head = nn.Linear(embed, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        h = self.embed(x) + self.position(torch.arange(length))
        mask = self.mask[:length, :length]
        return self.head(self.layers(h, mask=mask, is_causal=True))


def make_model(kind: str, vocab: int, context: int, quick: bool) -> nn.Module:
    if kind == "lstm":
        return CharLSTM(vocab, 16, 32 if quick else 64)
    return CharTransformer(vocab, 32, 64 if quick else 128, context)


def batches(data: torch.Tensor, steps: int, batch: int, context: int, seed: int) -> list[tuple]:
    """`steps` batches of random windows: inputs and the next characters, the same for both runs."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        starts = torch.randint(0, data.shape[0] - context - 1, (batch,), generator=generator)
        windows = torch.stack([data[s:s + context + 1] for s in starts.tolist()])
        out.append((windows[:, :-1], windows[:, 1:]))
    return out


def train(model: nn.Module, step_model: object, epochs: list[list[tuple]], vocab: int, label: str) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    seconds = []
    for epoch, epoch_batches in enumerate(epochs):
        start = time.perf_counter()
        total = 0.0
        for x, y in epoch_batches:
            logits = step_model(x)
            loss = loss_fn(logits.reshape(-1, vocab), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        seconds.append(time.perf_counter() - start)
        print(f"  {label:8s} epoch {epoch + 1}/{len(epochs)}  loss {total / len(epoch_batches):.3f}  "
              f"{seconds[-1] * 1e3:8.1f} ms", flush=True)
    return seconds


def sample(model: nn.Module, prompt: str, length: int, stoi: dict, itos: dict, context: int,
           temperature: float = 0.7) -> str:
    """Continue `prompt` by sampling each next character, eagerly (a compiled model would compile a graph for
    every new prompt length)."""
    generator = torch.Generator().manual_seed(0)
    model.eval()
    ids = [stoi[c] for c in prompt]
    with torch.no_grad():
        for _ in range(length):
            logits = model(torch.tensor([ids[-context:]]))[0, -1]
            probs = (logits / temperature).softmax(-1)
            ids.append(int(torch.multinomial(probs, 1, generator=generator)))
    model.train()
    return "".join(itos[i] for i in ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 6, 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smaller model, shorter sequences, fewer steps")
    parser.add_argument("--model", choices=["lstm", "transformer"], default="lstm")
    parser.add_argument("--backend", default=None, help="compile backend (default: jitorch's default)")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 6)
    context, batch, steps = (12, 16, 8) if args.quick else (24, 24, 12)

    text = make_text(3000 if args.quick else 6000)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    itos = dict(enumerate(chars))
    data = torch.tensor([stoi[c] for c in text])
    plan = [batches(data, steps, batch, context, seed=epoch) for epoch in range(epochs)]
    print(f"{len(text)} characters, vocabulary {len(chars)}; {args.model}, {epochs} epochs of {steps} steps "
          f"(batch {batch}, context {context})")

    print("training eagerly:")
    torch.manual_seed(0)
    model = make_model(args.model, len(chars), context, args.quick)
    eager = train(model, model, plan, len(chars), "eager")

    print("the same, with the model compiled (jitorch.compile):")
    torch.manual_seed(0)
    model = make_model(args.model, len(chars), context, args.quick)
    compiled_model = torch.compile(model, backend=args.backend)
    compiled = train(model, compiled_model, plan, len(chars), "compiled")
    stats = compiled_model.stats
    print(f"compiled calls {stats['calls']}, compiles {stats['compiles']}, fallbacks {stats['fallbacks']}")

    # the first epoch includes tracing and compiling: compare the epochs after it
    steady_eager = sum(eager[1:]) / max(len(eager) - 1, 1) if len(eager) > 1 else eager[0]
    steady_compiled = sum(compiled[1:]) / max(len(compiled) - 1, 1) if len(compiled) > 1 else compiled[0]
    print(f"epoch time after warm-up: eager {steady_eager * 1e3:.1f} ms, compiled {steady_compiled * 1e3:.1f} ms, "
          f"speedup {steady_eager / steady_compiled:.2f}x (first compiled epoch, with compilation: "
          f"{compiled[0] * 1e3:.0f} ms)")
    print("sample:", repr(sample(model, "the ", 60, stoi, itos, context)))


if __name__ == "__main__":
    main()
