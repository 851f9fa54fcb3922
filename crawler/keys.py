"""A set of image keys that stays small for millions: integer ids in a roaring bitmap, uuids in a set.

    keys = KeySet(); keys.add(12345678); 12345678 in keys   # ~1-4 bytes per id instead of ~70

pyroaring is a dependency because a compressed integer set is exactly what a done-set of 10M ids
needs (tens of MB instead of ~700 MB, and it serialises in milliseconds for the resume snapshot);
writing one by hand would be slower and longer. Image ids are non-negative and fit 64 bits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pyroaring import BitMap64

Key = int | str  # the image id, or its uuid when the API gave no id


class KeySet:
    __slots__ = ("ints", "strs")

    def __init__(self, keys: Iterable[Key] = (), ints: BitMap64 | None = None) -> None:
        self.ints = ints if ints is not None else BitMap64()
        self.strs: set[str] = set()
        for key in keys:
            self.add(key)

    def add(self, key: Key) -> None:
        if type(key) is int and key >= 0:
            self.ints.add(key)
        else:
            self.strs.add(key)  # type: ignore[arg-type]

    def add_ids(self, ids: BitMap64) -> None:
        """Non-negative integer ids in bulk (a run of a manifest): one union of bitmaps."""
        self.ints |= ids

    def discard_ids(self, ids: BitMap64) -> None:
        self.ints -= ids

    def discard(self, key: Key) -> None:
        if type(key) is int and key >= 0:
            self.ints.discard(key)
        else:
            self.strs.discard(key)  # type: ignore[arg-type]

    def __contains__(self, key: object) -> bool:
        if type(key) is int and key >= 0:
            return key in self.ints
        return key in self.strs  # a negative id is kept with the uuids, as `add` files it

    def __len__(self) -> int:
        return len(self.ints) + len(self.strs)

    def __iter__(self) -> Iterator[Key]:
        yield from self.ints
        yield from self.strs

    __hash__ = None  # type: ignore[assignment]  # mutable, like set

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeySet):
            return self.ints == other.ints and self.strs == other.strs
        if isinstance(other, (set, frozenset)):
            return len(self) == len(other) and all(k in self for k in other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"KeySet({len(self.ints)} ids, {len(self.strs)} uuids)"

    def serialize(self) -> bytes:
        return self.ints.serialize()

    @classmethod
    def deserialize(cls, data: bytes, strs: Iterable[str] = ()) -> KeySet:
        keys = cls(ints=BitMap64.deserialize(data))
        keys.strs.update(strs)
        return keys
