"""Reader for the IDX format that MNIST and Fashion-MNIST ship in.

Layout: a 4-byte magic number (two zero bytes, a type code, the number of dimensions), then one
big-endian uint32 per dimension, then the data in C order. Only the unsigned-byte type code (0x08)
is used by these datasets, so it is the only one accepted.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

UBYTE_TYPE_CODE = 0x08


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Reads an IDX file (gzip-compressed when the name ends in .gz) holding uint8 data of `ndim` dims."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError on a cut file
        raise ValueError(f"{path}: cannot read IDX file ({e})") from e

    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX header with {ndim} dims")
    zero0, zero1, type_code, file_ndim = raw[:4]
    if zero0 != 0 or zero1 != 0 or type_code != UBYTE_TYPE_CODE or file_ndim != ndim:
        expected = 0x00000800 | ndim
        raise ValueError(
            f"{path}: bad IDX magic number 0x{int.from_bytes(raw[:4], 'big'):08x}, "
            f"expected 0x{expected:08x} (uint8 data with {ndim} dims)"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_bytes = int(np.prod(dims, dtype=np.int64))
    data_bytes = len(raw) - header_size
    if data_bytes != expected_bytes:
        raise ValueError(
            f"{path}: header says dims {dims} ({expected_bytes} bytes of data) but the file has {data_bytes}"
        )
    # Copy out of the bytes object so the array is writable and owns its memory.
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()
