"""Named random streams from one seed: the one key helper of every experiment.

A run has one integer seed. Each independent use of randomness (initialisation, data, evaluation,
attacks, one model of several) is a named *stream*, and its key is ``fold_in(key(seed), id)``
with ``id`` the stream's integer id. By default the id is derived from the name (CRC-32 of its
UTF-8 bytes, 31 bits), so adding a stream never changes the others. A caller may pin ids instead
(``{"init": 0, "data": 1}``): the sphere experiments do, so that their archived runs reproduce.
Inside a stream, per-step keys are ``fold_in(stream_key, step)``.
"""

from __future__ import annotations

import zlib
from typing import Iterable, Mapping

import jax


def stream_id(name: str) -> int:
    """The default integer id of stream ``name``: CRC-32 of its UTF-8 bytes, 31 bits."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def named_keys(seed: int, streams: Iterable[str] | Mapping[str, int]) -> dict[str, jax.Array]:
    """``{name: fold_in(key(seed), id)}`` for every stream; ids from `stream_id` or given.

    Example::

        k = named_keys(0, ("init", "data"))
        k["init"], k["data"]                     # independent typed keys
    """
    if isinstance(streams, str):
        raise TypeError("streams must be a sequence or mapping of names, not one string")
    ids = dict(streams) if isinstance(streams, Mapping) else {n: stream_id(n) for n in streams}
    if len(set(ids.values())) != len(ids):
        raise ValueError(f"stream ids must be distinct: {ids}")
    root = jax.random.key(int(seed))
    return {name: jax.random.fold_in(root, i) for name, i in ids.items()}


def stream_key(seed: int, name: str) -> jax.Array:
    """The key of one stream, ``named_keys(seed, (name,))[name]``."""
    return named_keys(seed, (name,))[name]
