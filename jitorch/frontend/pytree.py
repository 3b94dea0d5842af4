"""Flattening nested arguments and results (tuples, lists, dicts, namedtuples) into leaves and back."""
from __future__ import annotations

from typing import Any, Callable

# a spec is hashable, so it can be part of a guard key: ("leaf",) or (kind, type, keys, children)
Spec = tuple


def flatten(tree: Any, path: str, leaves: list[Any], paths: list[str]) -> Spec:
    """Append the leaves of `tree` (and their access paths, for messages) and return its structure."""
    kind = type(tree)
    if kind is tuple or kind is list:
        children = tuple(flatten(item, f"{path}[{i}]", leaves, paths) for i, item in enumerate(tree))
        return (kind.__name__, kind, (), children)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        children = tuple(flatten(getattr(tree, f), f"{path}.{f}", leaves, paths) for f in tree._fields)
        return ("namedtuple", kind, tuple(tree._fields), children)
    if isinstance(tree, dict):
        keys = tuple(tree.keys())
        children = tuple(flatten(tree[k], f"{path}[{k!r}]", leaves, paths) for k in keys)
        return ("dict", kind, keys, children)
    leaves.append(tree)
    paths.append(path)
    return ("leaf",)


def unflatten(spec: Spec, leaves: Any) -> Any:
    """Rebuild a tree from its spec and an iterator over its leaves."""
    if spec[0] == "leaf":
        return next(leaves)
    name, kind, keys, children = spec
    items = [unflatten(child, leaves) for child in children]
    if name == "namedtuple":
        return kind(*items)
    if name == "dict":
        return kind(zip(keys, items))
    return kind(items)


def map_leaves(spec: Spec, leaves: list[Any], fn: Callable[[Any], Any]) -> Any:
    return unflatten(spec, iter([fn(leaf) for leaf in leaves]))
