"""The item memory's data file (format 3): one safetensors file, ``memory.safetensors``,
holding ``item_ids`` [count] int64 and ``vectors`` [count, D], created at its full size
when a build starts and filled shard by shard in place.

Why one file written in place: loading maps it (``safe_open``: no copy, O(1) RAM however
many shards it has; a memory larger than RAM is searched through the page cache), no pass
at the end concatenates shards, and the ranks of a data-parallel build write their shards
into the same file at fixed offsets (shard i holds samples [i * shard_size, ...)), so the
result is row-for-row the single-process one whatever the number of ranks.

Each shard's bytes (its ids, then its vectors) have a sha256 recorded when written (after
``fsync``); loading and resuming re-hash the byte ranges (streaming, about a second per GB),
so a flipped byte or a truncated file is an error naming the file and the shard.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import struct

import torch

from pyl2d.l2d._files import fsync_dir, naming
from pyl2d.l2d.memory.manifest import MemoryFormatError

DATA_FILE = "memory.safetensors"
_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
_CHUNK = 1 << 20


def header_bytes(count: int, dim: int, dtype: str) -> bytes:
    """The safetensors header (length prefix included) of a memory of ``count`` rows: ids
    first, so both tensors start 8-byte aligned whatever D is."""
    ids_bytes = 8 * count
    vec_bytes = count * dim * torch.empty((), dtype=getattr(torch, dtype)).element_size()
    meta = {"item_ids": {"dtype": "I64", "shape": [count], "data_offsets": [0, ids_bytes]},
            "vectors": {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": [count, dim],
                        "data_offsets": [ids_bytes, ids_bytes + vec_bytes]},
            "__metadata__": {"format": "pt", "written_by": "pyl2d item memory"}}
    text = json.dumps(meta, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text


class Layout:
    """Where shard ``i``'s bytes lie in the data file of a memory with these sizes."""

    def __init__(self, count: int, dim: int, dtype: str, shard_size: int):
        self.count, self.dim, self.dtype, self.shard_size = count, dim, dtype, shard_size
        self.row_bytes = dim * torch.empty((), dtype=getattr(torch, dtype)).element_size()
        self.header = header_bytes(count, dim, dtype)
        self.ids_start = len(self.header)
        self.vectors_start = self.ids_start + 8 * count
        self.size = self.vectors_start + count * self.row_bytes

    def rows(self, index: int) -> tuple[int, int]:
        begin = index * self.shard_size
        return begin, min(begin + self.shard_size, self.count)

    def ranges(self, index: int) -> list[tuple[int, int]]:
        """[(offset, length)] of shard ``index``'s ids and vectors."""
        begin, end = self.rows(index)
        return [(self.ids_start + 8 * begin, 8 * (end - begin)),
                (self.vectors_start + self.row_bytes * begin, self.row_bytes * (end - begin))]


def create(path: pathlib.Path, layout: Layout) -> None:
    """A data file of the full size (sparse until written) with its header, durable."""
    tmp = path.with_name(path.name + ".tmp")
    with naming(tmp), open(tmp, "wb") as f:
        f.write(layout.header)
        f.truncate(layout.size)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def is_usable(path: pathlib.Path, layout: Layout) -> bool:
    """Whether ``path`` is a data file of this layout (size and header), to resume into."""
    try:
        if path.stat().st_size != layout.size:
            return False
        with open(path, "rb") as f:
            return f.read(len(layout.header)) == layout.header
    except OSError:
        return False


def write_shard(path: pathlib.Path, layout: Layout, index: int, ids: torch.Tensor, vectors: torch.Tensor) -> str:
    """Write shard ``index`` in place, fsync it, and return the sha256 of its bytes."""
    begin, end = layout.rows(index)
    if ids.shape != (end - begin,) or vectors.shape != (end - begin, layout.dim):
        raise ValueError(f"shard {index} must hold {end - begin} rows of dimension {layout.dim}, got "
                         f"{tuple(vectors.shape)}")
    parts = [ids.to(torch.int64).contiguous().view(torch.uint8).numpy(),
             vectors.to(getattr(torch, layout.dtype)).contiguous().view(torch.uint8).numpy()]
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY)
    try:
        with naming(path):  # a full disk fails here, in a hole of the sparse file
            for (offset, length), data in zip(layout.ranges(index), parts):
                view = memoryview(data).cast("B")
                assert len(view) == length
                written = 0
                while written < length:
                    written += os.pwrite(fd, view[written:], offset + written)
                digest.update(view)
            os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


def shard_digest(path: pathlib.Path, layout: Layout, index: int) -> str:
    """sha256 of shard ``index``'s bytes as they are in the file now."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for offset, length in layout.ranges(index):
            f.seek(offset)
            left = length
            while left:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class FileState:
    """A mapped file's identity and contents stamp (inode, size, modification time), to tell
    when another writer truncated, replaced (``cp new old``) or rewrote it in place."""
    path: pathlib.Path
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: pathlib.Path) -> "FileState":
        st = os.stat(path)
        return cls(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def check(self) -> None:
        """MemoryFormatError naming what changed since this state was taken."""
        try:
            now = FileState.of(self.path)
        except OSError as exc:
            raise MemoryFormatError(f"{self.path}: the mapped memory file is gone ({exc.strerror}); load the "
                                    "memory again") from None
        if now.size != self.size:
            what = f"truncated or replaced: {now.size} bytes, {self.size} when loaded"
        elif (now.device, now.inode) != (self.device, self.inode):
            what = "replaced by another file"
        elif now.mtime_ns != self.mtime_ns:
            what = "rewritten in place"
        else:
            return
        raise MemoryFormatError(f"{self.path} was {what} since the memory was loaded (another writer?); its "
                                "mapped contents can no longer be trusted: load the memory again")


def open_mapped(path: pathlib.Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors, item_ids) mapped from the file: nothing is read until used."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor("vectors"), f.get_tensor("item_ids")
