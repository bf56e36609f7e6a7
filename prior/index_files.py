"""The index-file format: sharded, memory-mappable code arrays plus a JSON manifest. One writer, one reader.

A codes folder holds, per shard k (images [start, stop) of the source split):
    shard-0000k.codes.npy     (n, h, w)  uint16 (codebook <= 65,536 entries) or uint32
    shard-0000k.labels.npy    (n,)       int64, when the dataset has labels
    shard-0000k.flipped.npy   (n, h, w)  codes of the mirrored images, when written with flip
Codes of a two-level (VQ-VAE-2) tokenizer are one array per level: codes_top / codes_bottom (and flipped_top /
flipped_bottom), each of its level's grid; the manifest then has `codebook_sizes` (one per level, coarsest
first, as `grid_shapes`) where a one-level folder has `codebook_size`. A one-level folder is unchanged.
    shard-0000k.json          the shard's record (files, sha256, count, max code, skipped inputs);
                              written last, so a shard counts as complete only once this exists
plus plan.json (what the run was asked to do, so a rerun with other arguments is refused) and, at the
end, manifest.json. Every file is written under a temporary name and renamed when complete.
Arrays are .npy (read with allow_pickle=False, memory-mapped): no pickle anywhere.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

FORMAT_NAME = "tessera-codes"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PLAN_NAME = "plan.json"
ARRAY_KINDS = ("codes", "labels", "flipped")
SPLITS = ("all", "train", "validation")
LEVELS = ("top", "bottom")  # a two-level folder's grids, coarsest first


def array_kind(kind: str, level: int, num_levels: int) -> str:
    """The file kind of level `level`'s "codes" or "flipped": as it is for one level, else e.g. "codes_top"."""
    return kind if num_levels == 1 else f"{kind}_{LEVELS[level]}"


def codebook_sizes(plan: dict) -> list[int]:
    """One codebook size per level, from a plan or manifest of either form."""
    if "codebook_sizes" in plan:
        return [int(size) for size in plan["codebook_sizes"]]
    return [int(plan["codebook_size"])]


def check_levels(plan: dict, where: str) -> None:
    """ValueError unless a plan or manifest has one or two levels, and a codebook size for each."""
    if not 1 <= len(plan["grid_shapes"]) <= len(LEVELS) or len(codebook_sizes(plan)) != len(plan["grid_shapes"]):
        raise ValueError(f"{where}: grid_shapes {plan['grid_shapes']} and codebook sizes {codebook_sizes(plan)}; "
                         f"expected one or {len(LEVELS)} levels, a codebook size for each")


def code_dtype(codebook_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every index of the codebook."""
    if codebook_size <= 1 << 16:
        return np.dtype(np.uint16)
    if codebook_size <= 1 << 32:
        return np.dtype(np.uint32)
    raise ValueError(f"codebook_size={codebook_size}: expected at most 2**32 codes")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# (resolved path, sha256, size, mtime) of the shard files this process has hashed and found as the manifest says.
_VERIFIED: set[tuple[str, str, int, int]] = set()


def shard_file(directory: Path, name: Any, where: str) -> Path:
    """A file a manifest or shard record names, which must be a plain name inside `directory` (a record naming
    `../x.npy` must not read from outside the codes folder)."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(f"{where}: file name {name!r}; expected a plain file name inside {directory}")
    return directory / name


def _atomic_write_bytes(path: Path, writer) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, data: Any) -> None:
    _atomic_write_bytes(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def shard_stem(index: int) -> str:
    return f"shard-{index:05d}"


# --- writer -------------------------------------------------------------------------------------------------


class CodesWriter:
    """Writes shards and, once all exist, the manifest. Safe to use from several processes on distinct shards."""

    def __init__(self, directory: str | Path, plan: dict[str, Any]):
        """`plan` must hold grid_shapes (one per level), codebook_size (one level) or codebook_sizes (one per
        level), shard_size, num_inputs, has_labels, flipped and tokenizer_fingerprint, plus anything else that
        must match for a rerun to reuse shards."""
        sizes_key = "codebook_size" if len(plan.get("grid_shapes", [])) == 1 else "codebook_sizes"
        for key in (sizes_key, "grid_shapes", "shard_size", "num_inputs", "has_labels", "flipped", "tokenizer_fingerprint"):
            if key not in plan:
                raise ValueError(f"plan is missing {key!r}")
        check_levels(plan, "plan")
        self.directory = Path(directory)
        dtype = code_dtype(max(codebook_sizes(plan))).name
        self.plan = {**plan, "format": FORMAT_NAME, "version": FORMAT_VERSION, "dtype": dtype}
        self.dtype = np.dtype(self.plan["dtype"])
        self.num_levels = len(plan["grid_shapes"])

    @property
    def num_shards(self) -> int:
        return -(-self.plan["num_inputs"] // self.plan["shard_size"])

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.plan["shard_size"]
        return start, min(start + self.plan["shard_size"], self.plan["num_inputs"])

    def start(self) -> None:
        """Record the plan, or check that an earlier, interrupted run had the same one (main process only)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / PLAN_NAME
        if path.is_file():
            earlier = json.loads(path.read_text())
            if earlier != json.loads(json.dumps(self.plan)):
                changed = sorted(k for k in set(earlier) | set(self.plan) if earlier.get(k) != self.plan.get(k))
                raise ValueError(
                    f"{self.directory} holds codes from a run with different settings ({', '.join(changed)}); "
                    f"use another --output_dir or delete it"
                )
        else:
            _atomic_write_json(path, self.plan)

    def completed_shards(self) -> dict[int, dict]:
        """Records of the shards already written whole: their files exist with the recorded sizes and sha256. A
        shard whose files changed since is not complete (it is written again)."""
        done = {}
        for index in range(self.num_shards):
            record_path = self.directory / f"{shard_stem(index)}.json"
            if not record_path.is_file():
                continue
            record = json.loads(record_path.read_text())
            paths = [(shard_file(self.directory, f["path"], str(record_path)), f) for f in record["files"].values()]
            if all(path.is_file() and path.stat().st_size == f["bytes"] and _sha256(path) == f["sha256"]
                   for path, f in paths):
                done[index] = record
        return done

    def write_shard(
        self,
        index: int,
        codes: np.ndarray | list[np.ndarray],
        labels: np.ndarray | None,
        flipped: np.ndarray | list[np.ndarray] | None,
        skipped: list[tuple[str, str]],
    ) -> dict:
        """Write one shard's arrays, then its record (which marks it complete). codes: (n, h, w), or a list of
        one such array per level (coarsest first); flipped likewise."""
        grids = self._per_level(index, "codes", codes)
        arrays = {}
        for level, (grid, (h, w), size) in enumerate(zip(grids, self.plan["grid_shapes"], codebook_sizes(self.plan))):
            where = f"shard {index}" + (f" ({LEVELS[level]} level)" if self.num_levels > 1 else "")
            if grid.ndim != 3 or tuple(grid.shape[1:]) != (h, w):
                raise ValueError(f"{where}: codes of shape {grid.shape}; expected (n, {h}, {w})")
            if grid.size and int(grid.max()) >= size:
                raise ValueError(f"{where}: code {int(grid.max())} >= codebook_size {size}")
            arrays[array_kind("codes", level, self.num_levels)] = grid.astype(self.dtype)
        if self.plan["has_labels"]:
            arrays["labels"] = np.asarray(labels, dtype=np.int64)
        if self.plan["flipped"]:
            for level, grid in enumerate(self._per_level(index, "flipped", flipped)):
                arrays[array_kind("flipped", level, self.num_levels)] = grid.astype(self.dtype)
        rows = grids[0].shape[0]
        stem = shard_stem(index)
        files = {}
        for kind, array in arrays.items():
            if array.shape[0] != rows:
                raise ValueError(f"shard {index}: {kind} has {array.shape[0]} rows, codes {rows}")
            path = self.directory / f"{stem}.{kind}.npy"
            _atomic_write_bytes(path, lambda f, a=array: np.save(f, a, allow_pickle=False))
            files[kind] = {"path": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path),
                           "shape": list(array.shape), "dtype": array.dtype.name}
        start, stop = self.shard_range(index)
        record = {
            "index": index, "start": start, "stop": stop, "count": int(rows),
            "max_code": max((int(grid.max()) for grid in grids if grid.size), default=-1),
            "files": files, "skipped": [list(s) for s in skipped],
        }
        _atomic_write_json(self.directory / f"{stem}.json", record)
        return record

    def _per_level(self, index: int, what: str, arrays) -> list[np.ndarray]:
        grids = [arrays] if isinstance(arrays, np.ndarray) else [np.asarray(a) for a in arrays or []]
        if len(grids) != self.num_levels:
            raise ValueError(f"shard {index}: {len(grids)} {what} arrays; expected one per level ({self.num_levels})")
        return grids

    def write_manifest(self, metadata: dict[str, Any]) -> dict:
        """Merge every shard record into manifest.json (call once, after all shards are complete)."""
        done = self.completed_shards()
        missing = [i for i in range(self.num_shards) if i not in done]
        if missing:
            raise RuntimeError(f"cannot write the manifest: shards {missing[:10]} are not complete")
        records = [done[i] for i in range(self.num_shards)]
        skipped = [s for r in records for s in r["skipped"]]
        manifest = {
            **self.plan,
            **metadata,
            "count": sum(r["count"] for r in records),
            "num_skipped": len(skipped),
            "skipped": skipped,
            "shards": [{k: r[k] for k in ("index", "start", "stop", "count", "max_code", "files")} for r in records],
        }
        _atomic_write_json(self.directory / MANIFEST_NAME, manifest)
        return manifest


# --- reader -------------------------------------------------------------------------------------------------


class CodesDataset(Dataset):
    """A codes folder as a torch Dataset: `ds[i]` gives (codes LongTensor (h, w), label int, -1 if none).

    Opening reads only the manifest and the .npy headers (memory-mapped, no full read). Each shard's values
    are checked against the codebook size, and each file's sha256 against the manifest (unless
    `verify_checksums=False`), the first time it is touched in a process; `verify()` checks every shard now.
    `split` picks a fixed, seeded train/validation partition of the images (an image and its mirrored copy
    always fall on the same side).

    A two-level folder is read one level at a time (`level` "top" or "bottom"). The bottom level's items carry
    the top grid they were encoded with as a third element, the context a bottom prior is conditioned on:
    `ds[i]` gives (bottom codes (h, w), label, top codes (h_t, w_t)).
    """

    def __init__(
        self,
        codes_dir: str | Path,
        split: str = "all",
        validation_fraction: float = 0.05,
        seed: int = 0,
        tokenizer: Any = None,
        fingerprint: str | None = None,
        include_flipped: bool = False,
        level: str | None = None,
        verify_checksums: bool = True,
    ):
        self.directory = Path(codes_dir)
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {SPLITS}")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction={validation_fraction}: expected a value in [0, 1)")
        self.manifest = _read_manifest(self.directory)
        self.num_levels = len(self.manifest["grid_shapes"])
        self.level_index = _level_index(self.directory, level, self.num_levels)
        self._check_tokenizer(tokenizer.fingerprint() if tokenizer is not None else fingerprint)
        self.shards = self.manifest["shards"]
        self._offsets = np.cumsum([0] + [s["count"] for s in self.shards]).tolist()
        for shard in self.shards:
            self._check_shard_header(shard)
        self._arrays: dict[tuple[int, str], np.ndarray] = {}
        self._values_checked: set[int] = set()
        self.verify_checksums = verify_checksums
        self.include_flipped = include_flipped and self.manifest["flipped"]
        self.indices = _split_indices(self.manifest["count"], split, validation_fraction, seed)

    # --- properties ---
    @property
    def codebook_size(self) -> int:
        """The codebook size of this dataset's level."""
        return codebook_sizes(self.manifest)[self.level_index]

    @property
    def grid_shape(self) -> tuple[int, int]:
        """The grid of this dataset's level."""
        return tuple(self.manifest["grid_shapes"][self.level_index])

    @property
    def has_context(self) -> bool:
        """Whether items carry the top grid as context (the bottom level of a two-level folder)."""
        return self.level_index > 0

    @property
    def context_grid_shape(self) -> tuple[int, int] | None:
        return tuple(self.manifest["grid_shapes"][0]) if self.has_context else None

    @property
    def context_codebook_size(self) -> int | None:
        return codebook_sizes(self.manifest)[0] if self.has_context else None

    @property
    def has_labels(self) -> bool:
        return self.manifest["has_labels"]

    @property
    def num_classes(self) -> int:
        return self.manifest.get("num_classes", 0) if self.has_labels else 0

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.get("class_names", []))

    @property
    def fingerprint(self) -> str:
        return self.manifest["tokenizer_fingerprint"]

    # --- access ---
    def __len__(self) -> int:
        return len(self.indices) * (2 if self.include_flipped else 1)

    def __getitem__(self, item: int) -> tuple:
        if not -len(self) <= item < len(self):
            raise IndexError(f"index {item} out of range for {len(self)} items")
        item %= len(self)
        flipped, item = divmod(item, len(self.indices))
        global_index = int(self.indices[item])
        shard = bisect.bisect_right(self._offsets, global_index) - 1
        row = global_index - self._offsets[shard]
        kind = "flipped" if flipped else "codes"
        codes = self._array(shard, array_kind(kind, self.level_index, self.num_levels))[row]
        label = int(self._array(shard, "labels")[row]) if self.has_labels else -1
        if not self.has_context:
            return torch.from_numpy(codes.astype(np.int64)), label
        context = self._array(shard, array_kind(kind, 0, self.num_levels))[row]  # the same image's (mirrored) top grid
        return torch.from_numpy(codes.astype(np.int64)), label, torch.from_numpy(context.astype(np.int64))

    def labels(self) -> np.ndarray:
        """Labels of this split's images (N,), -1 where the data set has none."""
        if not self.has_labels:
            return np.full(len(self.indices), -1, dtype=np.int64)
        all_labels = np.concatenate([self._array(i, "labels") for i in range(len(self.shards))])
        return all_labels[self.indices]

    def code_histogram(self) -> np.ndarray:
        """How often each code of this level occurs over every stored grid (not only this split): (K,) int64."""
        counts = np.zeros(self.codebook_size, dtype=np.int64)
        kind = array_kind("codes", self.level_index, self.num_levels)
        for shard in range(len(self.shards)):
            counts += np.bincount(np.asarray(self._array(shard, kind)).ravel(), minlength=self.codebook_size)
        return counts

    def check_values(self) -> None:
        """Read every shard once: codes below the codebook size, labels below the number of classes."""
        for i in range(len(self.shards)):
            self._check_values(i)

    def verify(self) -> None:
        """Read every shard: checksums and code values. Raises ValueError naming the first bad shard."""
        for shard in self.shards:
            for kind, info in shard["files"].items():
                self._check_sha256(self._file(info), info, kind)
        self.check_values()

    def _check_sha256(self, path: Path, info: dict, kind: str) -> None:
        """Once per file per process (the train and validation splits read the same files): a file is hashed
        again only when its size or modification time changed since it matched."""
        stat = path.stat()
        seen = (str(path.resolve()), info["sha256"], stat.st_size, stat.st_mtime_ns)
        if seen in _VERIFIED:
            return
        if _sha256(path) != info["sha256"]:
            raise ValueError(f"{path}: its sha256 does not match the manifest's ({kind} data changed since it was "
                             "written): tokenize the data again (or pass --no_verify_checksums to train on it anyway)")
        _VERIFIED.add(seen)

    def _file(self, info: dict) -> Path:
        return shard_file(self.directory, info["path"], str(self.directory / MANIFEST_NAME))

    # --- internals ---
    def _array(self, shard: int, kind: str) -> np.ndarray:
        key = (shard, kind)
        if key not in self._arrays:
            info = self.shards[shard]["files"][kind]
            path = self._file(info)
            if self.verify_checksums:  # the first time it is opened
                self._check_sha256(path, info, kind)
            self._arrays[key] = np.load(path, mmap_mode="r", allow_pickle=False)
            if kind != "labels":
                self._check_values(shard)
        return self._arrays[key]

    def _code_kinds(self) -> dict[str, tuple[int, int]]:
        """File kind -> (level, its codebook size) for every code array a shard holds."""
        kinds = ("codes", "flipped") if self.manifest["flipped"] else ("codes",)
        sizes = codebook_sizes(self.manifest)
        return {array_kind(k, level, self.num_levels): (level, sizes[level]) for k in kinds for level in range(self.num_levels)}

    def _check_values(self, shard: int) -> None:
        if shard in self._values_checked:
            return
        self._values_checked.add(shard)
        info = self.shards[shard]
        for kind, (_, size) in self._code_kinds().items():
            array = self._array(shard, kind)
            top = int(array.max()) if array.size else -1
            if top >= size:
                raise ValueError(f"{info['files'][kind]['path']}: code {top} is not below the codebook size {size}")
        if self.has_labels and self.num_classes:
            labels = self._array(shard, "labels")
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"{info['files']['labels']['path']}: labels outside 0..{self.num_classes - 1}")

    def _check_tokenizer(self, expected: str | None) -> None:
        if expected is None or expected == self.fingerprint:
            return
        source = self.manifest.get("tokenizer_dir", "an unrecorded folder")
        raise ValueError(
            f"codes in {self.directory} were made by tokenizer {self.fingerprint[:12]} (from {source}), "
            f"not by the given tokenizer {expected[:12]}; tokenize the data again with that tokenizer"
        )

    def _check_shard_header(self, shard: dict) -> None:
        code_kinds = self._code_kinds()
        expected_kinds = set(code_kinds) | ({"labels"} if self.has_labels else set())
        if set(shard["files"]) != expected_kinds:
            raise ValueError(f"shard {shard['index']}: files {sorted(shard['files'])}; expected {sorted(expected_kinds)}")
        for kind, info in shard["files"].items():
            path = self._file(info)
            if not path.is_file():
                raise ValueError(f"{path} is missing (listed in the manifest)")
            if path.stat().st_size != info["bytes"]:
                raise ValueError(f"{path} has {path.stat().st_size} bytes; the manifest says {info['bytes']} (truncated or changed)")
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # reads the header only
            grid = () if kind == "labels" else tuple(self.manifest["grid_shapes"][code_kinds[kind][0]])
            want_shape = (shard["count"], *grid)
            want_dtype = "int64" if kind == "labels" else self.manifest["dtype"]
            if tuple(array.shape) != want_shape or array.dtype.name != want_dtype:
                raise ValueError(
                    f"{path}: array {tuple(array.shape)} {array.dtype.name}; expected {want_shape} {want_dtype}"
                )

    def __getstate__(self) -> dict:
        # DataLoader workers re-open the memory maps instead of receiving copies of them.
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        hint = " (tokenizing did not finish: run it again with the same arguments)" if (directory / PLAN_NAME).is_file() else ""
        raise ValueError(f"{path} is missing{hint}; expected a codes folder written by tessera tokenize")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"expected {FORMAT_NAME!r} version {FORMAT_VERSION}"
        )
    _check_manifest_fields(manifest, path)
    check_levels(manifest, str(path))
    largest = max(codebook_sizes(manifest))
    if manifest["dtype"] != code_dtype(largest).name:
        raise ValueError(
            f"{path}: dtype {manifest['dtype']} does not fit codebook size {largest} (expected {code_dtype(largest).name})"
        )
    return manifest


# What a reader needs from manifest.json, by type (a hand-edited or truncated manifest is named, not a KeyError).
MANIFEST_FIELDS = {"grid_shapes": list, "dtype": str, "count": int, "has_labels": bool, "flipped": bool,
                   "tokenizer_fingerprint": str, "shards": list}
SHARD_FIELDS = {"index": int, "count": int, "files": dict}


def _is(value: Any, kind: type) -> bool:
    """isinstance, except that a JSON true/false is not an int."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _check_manifest_fields(manifest: dict, path: Path) -> None:
    for name, kind in MANIFEST_FIELDS.items():
        if not _is(manifest.get(name), kind):
            raise ValueError(f"{path}: {name}={manifest.get(name)!r}; expected {kind.__name__} (a manifest written by "
                             "tessera tokenize)")
    if "codebook_size" not in manifest and "codebook_sizes" not in manifest:
        raise ValueError(f"{path}: no codebook_size; expected a manifest written by tessera tokenize")
    for i, shard in enumerate(manifest["shards"]):
        for name, kind in SHARD_FIELDS.items():
            if not isinstance(shard, dict) or not _is(shard.get(name), kind):
                raise ValueError(f"{path}: shards[{i}] has no {kind.__name__} {name!r}")
    total = sum(shard["count"] for shard in manifest["shards"])
    if total != manifest["count"]:
        raise ValueError(f"{path}: count={manifest['count']}, but its shards hold {total} images")


def _level_index(directory: Path, level: str | None, num_levels: int) -> int:
    """Which grid a dataset reads: the only one of a one-level folder (level None), or the named one of two."""
    if num_levels == 1:
        if level is not None:
            raise ValueError(f"level={level!r}, but {directory} holds one code grid per image; leave the level unset")
        return 0
    if level not in LEVELS:
        raise ValueError(f"{directory} holds {num_levels} code grids per image {list(LEVELS)}: "
                         f"expected level='top' or 'bottom' (train_prior.py --level), got {level!r}")
    return LEVELS.index(level)


def _split_indices(count: int, split: str, validation_fraction: float, seed: int) -> np.ndarray:
    if split == "all":
        return np.arange(count)
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(round(count * validation_fraction))
    return np.sort(order[:n_val] if split == "validation" else order[n_val:])
