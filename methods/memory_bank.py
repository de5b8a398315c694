"""Memory banks of real photo patches: build once, cache by fingerprint, search every iteration.

Why the bank stores images, not patches: every patch of every scale is a window of a training
photo, so keeping the resized photos as uint8 (plus the patch grid arithmetic) reproduces any
patch exactly at 1 byte per pixel. The paper-size bank (~10 M patches of 768 floats, ~32 GB)
then costs ~1.2 GB of images plus whatever the search index needs, and a compressed index
(IVF-PQ) can be re-ranked exactly from the images.

Why the default search geometry is the loss's own (patches centred by the bank mean and
L2-normalised, inner product): the contextual loss ranks real patches by centred cosine, so
neighbours found in that geometry are the ones the loss cares about. The official code
searches raw patches by L2 (``geometry="l2"``), kept for parity.

Layout under ``<cache>/banks/<fingerprint>/``: ``meta.json``, ``images.npy`` (uint8
[N, S, S, 3]) and per scale ``p<patch>s<stride>/<class>/{index.faiss, mean.npy, ids.npy}``,
where class ``all`` is the class-agnostic bank and ``c<label>`` the semantic ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.atomic import write_atomic
from benchmark.core.errors import ArtshiftError
from benchmark.data import BadImageError, fingerprint, load_image

FORMAT_VERSION = 1
DEFAULT_SCALES = "16:6,8:5"
GEOMETRIES = ("cosine", "l2")
RETRIEVAL_SPACES = {"cosine": "loss geometry (centred, L2-normalised patches, inner product)",
                    "l2": "raw patch pixels, L2 (official code)"}
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
BACKENDS = ("auto", "faiss", "torch")
# search-time only: not part of the cache key
SEARCH_FIELDS = ("ef_search", "nprobe", "refine", "search_chunk")
DEFAULT_SEARCH_CHUNK = 262_144  # bank vectors per block of the torch search: 1,681 queries -> 1.8 GB of scores
ALL = "all"
BACKGROUND = 0  # label of the background class in mask PNGs (the official code's class 0)

log = logging.getLogger("artshift.bank")


class CorruptBankError(ArtshiftError):
    """A cached bank that cannot be read (truncated files, another version's layout)."""


# ----------------------------------------------------------------------------- configuration
def parse_scales(text: str | Sequence[Any]) -> tuple[tuple[int, int], ...]:
    """``"16:6,8:5"`` (or ``[(16, 6), (8, 5)]``) -> ``((16, 6), (8, 5))`` after checking them."""
    if isinstance(text, str):
        items = [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]
        pairs = []
        for item in items:
            patch, sep, stride = item.partition(":")
            try:
                pairs.append((int(patch), int(stride)))
            except ValueError:
                raise ArtshiftError(f"bad patch scale {item!r} in {text!r}",
                                    hint="write scales as patch:stride pairs, e.g. 16:6,8:5") from None
            if not sep:
                raise ArtshiftError(f"bad patch scale {item!r} in {text!r}",
                                    hint="write scales as patch:stride pairs, e.g. 16:6,8:5")
    else:
        pairs = [(int(pair[0]), int(pair[1])) for pair in text]
    if not 1 <= len(pairs) <= 3:
        raise ArtshiftError(f"{len(pairs)} patch scales given: 1 to 3 are supported",
                            hint="e.g. --scales 16:6,8:5 or 16:6,8:5,4:3")
    for size, step in pairs:
        if size < 2 or step < 1:
            raise ArtshiftError(f"bad patch scale {size}:{step}", hint="patch >= 2 and stride >= 1")
    if len(set(pairs)) != len(pairs):
        raise ArtshiftError(f"repeated patch scale in {pairs}")
    return tuple(pairs)


def format_scales(scales: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{p}:{s}" for p, s in scales)


@dataclass(frozen=True)
class BankSpec:
    """Everything that decides the bank's content; its JSON (+ data hashes) is the cache key.

    ``index="auto"``: exact flat search up to ``exact_max`` patches, HNSW above, IVF-PQ when
    HNSW would not fit ``memory_gb``; any bank still over budget is subsampled (seeded).
    ``ivf_nlist=0`` means 4 sqrt(N) lists; ``pq_m=0`` means one sub-quantiser per 8 dims.
    ``refine`` re-ranks ``k * refine`` PQ candidates exactly from the stored images.
    ``hnsw_sq8`` stores HNSW vectors as 8-bit scalars (4x smaller, faster search, lower recall).
    ``pca`` > 0 searches a PCA projection to that many dims (per scale, when smaller than the
    patch dimension) and re-ranks ``k * refine`` candidates exactly: patches are so correlated
    that 768 -> 64 dims keeps the neighbourhoods, and HNSW builds and searches ~5x faster.
    ``search_chunk``: bank vectors scored per block by the exact torch search (CUDA without
    faiss-gpu), so its score matrix is [queries x search_chunk], never [queries x bank]; 0 = one block.
    """

    image_size: int
    scales: tuple[tuple[int, int], ...] = ((16, 6), (8, 5))
    geometry: str = "cosine"
    index: str = "auto"
    exact_max: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 64
    hnsw_sq8: bool = False
    pca: int = 0
    ivf_nlist: int = 0
    nprobe: int = 16
    pq_m: int = 0
    pq_bits: int = 8
    refine: int = 4
    memory_gb: float = 8.0
    seed: int = 0
    search_chunk: int = DEFAULT_SEARCH_CHUNK

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", parse_scales(self.scales))
        if self.geometry not in GEOMETRIES:
            raise ArtshiftError(f"unknown search geometry {self.geometry!r} (known: {', '.join(GEOMETRIES)})",
                                hint="cosine = the loss's centred cosine (default); l2 = raw patches (official code)")
        if self.index not in INDEX_TYPES:
            raise ArtshiftError(f"unknown bank index {self.index!r} (known: {', '.join(INDEX_TYPES)})")
        for patch, _ in self.scales:
            if patch > self.image_size:
                raise ArtshiftError(f"patch size {patch} is larger than the {self.image_size}px training images")
        if self.memory_gb <= 0:
            raise ArtshiftError(f"bank memory budget {self.memory_gb} GB must be positive")
        if self.search_chunk < 0:
            raise ArtshiftError(f"search_chunk {self.search_chunk} must be >= 0 (0 = the whole bank in one block)")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scales"] = [list(s) for s in self.scales]
        return d

    def build_json(self) -> dict[str, Any]:
        """The fields that change what is stored (search-time effort is set at load instead)."""
        return {k: v for k, v in self.to_json().items() if k not in SEARCH_FIELDS}

    def search_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SEARCH_FIELDS}


def grid(image_size: int, patch: int, stride: int) -> int:
    """Patch positions along one side (the windows ``unfold`` takes; the border remainder is dropped)."""
    return (image_size - patch) // stride + 1


def fingerprint_files(paths: Sequence[Path]) -> str:
    return fingerprint(list(paths))


def bank_fingerprint(spec: BankSpec, photos_fp: str, masks_fp: str | None = None) -> str:
    """Cache key: photo set content, masks, and every spec field (sizes, scales, geometry, index)."""
    key = {"format": FORMAT_VERSION, "photos": photos_fp, "masks": masks_fp, "resize": "pil-bicubic",
           "spec": spec.build_json()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- images and patches
def load_resized(paths: Sequence[Path], size: int, skip_bad: bool = False,
                 progress: bool = False) -> tuple[np.ndarray, list[Path]]:
    """Photos as uint8 [N, size, size, 3] (PIL bicubic), plus the files actually used."""
    from PIL import Image

    out, used = [], []
    it = paths
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(paths, desc="bank: load photos", leave=False, dynamic_ncols=True)
    for p in it:
        try:
            img = load_image(Path(p))
        except BadImageError:
            if not skip_bad:
                raise
            continue
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.asarray(img, dtype=np.uint8))
        used.append(Path(p))
    if not out:
        raise ArtshiftError("no usable photos to build the memory bank from")
    return np.stack(out), used


def load_masks(paths: Sequence[Path], masks_dir: Path, size: int) -> np.ndarray:
    """Label maps ``<masks_dir>/<image stem>.png`` resized (nearest) to ``size``; -1 where missing."""
    from PIL import Image

    out = np.full((len(paths), size, size), -1, dtype=np.int32)
    for i, p in enumerate(paths):
        mp = Path(masks_dir) / f"{Path(p).stem}.png"
        if mp.exists():
            with Image.open(mp) as m:
                if m.mode not in ("L", "P", "I", "I;16"):
                    raise ArtshiftError(f"mask {mp} is {m.mode}: expected a single-channel PNG label map")
                out[i] = np.asarray(m.resize((size, size), Image.Resampling.NEAREST), dtype=np.int32)
    return out


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC or NCHW -> float in [-1, 1] (same arithmetic as ToTensor + Normalize(0.5, 0.5))."""
    return images_uint8.float().mul_(1 / 127.5).sub_(1.0)


def unfold_patches(images: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, C*patch*patch], rows in raster order, vector order (C, y, x)."""
    return F.unfold(images, kernel_size=patch, stride=stride).transpose(1, 2)


def patch_classes(labels: torch.Tensor, patch: int, stride: int, classes: Sequence[int]) -> dict[int, torch.Tensor]:
    """For each class c, a bool [B, L]: at least half the patch's pixels have label c."""
    out = {}
    for c in classes:
        frac = F.avg_pool2d((labels == c).float().unsqueeze(1), patch, stride)  # [B,1,gh,gw]
        out[int(c)] = (frac.flatten(1) >= 0.5)
    return out


def geometry_vectors(raw: torch.Tensor, mean: torch.Tensor, geometry: str) -> torch.Tensor:
    """Raw patch vectors -> the space the index searches (centred unit vectors, or raw)."""
    if geometry == "cosine":
        return F.normalize(raw - mean, dim=-1)
    return raw


# ----------------------------------------------------------------------------- exact search
def scores(queries: torch.Tensor, vectors: torch.Tensor, geometry: str, sqnorm: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Float32 [n, m] similarity, larger = nearer: inner product (cosine geometry, unit vectors) or
    2 q.v - |v|^2 = |q|^2 - |q - v|^2 (l2; the per-query |q|^2 does not change the ranking)."""
    s = (queries @ vectors.T).float()
    if geometry == "cosine":
        return s
    if sqnorm is None:
        sqnorm = vectors.float().pow(2).sum(1)
    return 2 * s - sqnorm


def topk_rows(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest entries of each row and their columns, ordered by (value desc, column asc).

    Ties are broken towards the lower column, so a search gives the same answer whatever its
    block size (``torch.topk`` alone picks among equal values arbitrarily).
    """
    n, m = s.shape
    k = min(k, m)
    if k == 0:
        return s.new_empty(n, 0), torch.empty(n, 0, dtype=torch.long, device=s.device)
    kth = s.topk(k, dim=1).values[:, -1:]
    above = s > kth
    tied = s == kth
    need = k - above.sum(1, keepdim=True, dtype=torch.int32)
    keep = above | (tied & (tied.cumsum(1, dtype=torch.int32) <= need))
    cols = keep.nonzero()[:, 1].view(n, k)  # exactly k per row, in column order
    vals = s.gather(1, cols)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return vals.gather(1, order), cols.gather(1, order)


def merge_topk(best_v: torch.Tensor, best_i: torch.Tensor, v: torch.Tensor, i: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k: ``best`` (earlier blocks, lower ids) and a new block's top-k, each ordered by
    (value desc, id asc); a stable sort keeps the earlier, lower ids first among equal values."""
    cat_v, cat_i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
    order = torch.sort(cat_v, dim=1, descending=True, stable=True).indices[:, :k]
    return cat_v.gather(1, order), cat_i.gather(1, order)


def chunked_search(queries: torch.Tensor, vectors: torch.Tensor, k: int, geometry: str, chunk: int,
                   sqnorm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k-NN of ``queries`` among the rows of ``vectors``, scoring ``chunk`` rows at a time.

    Returns (similarity [n, k] as ``scores`` defines it, row positions [n, k]); equal to one
    block (``chunk=0``) to the last bit, ties included. Memory: [n x chunk] scores instead of
    [n x len(vectors)], which at paper scale (1,681 queries x 10.6 M patches) is 71 GB.
    """
    n, total = len(queries), len(vectors)
    k = min(k, total)
    chunk = chunk or total
    best_v = torch.empty(n, 0, device=queries.device)
    best_i = torch.empty(n, 0, dtype=torch.long, device=queries.device)
    for start in range(0, total, max(1, chunk)):
        block = vectors[start:start + chunk]
        sq = sqnorm[start:start + chunk] if sqnorm is not None else None
        v, i = topk_rows(scores(queries, block, geometry, sq), k)
        best_v, best_i = merge_topk(best_v, best_i, v, i + start, k)
    return best_v, best_i


# ----------------------------------------------------------------------------- index construction
def _pq_m(dim: int, spec: BankSpec) -> int:
    m = spec.pq_m or max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


def _nlist(n: int, spec: BankSpec) -> int:
    nlist = spec.ivf_nlist or int(round(4 * math.sqrt(n)))
    return int(max(1, min(nlist, n // 39 if n >= 39 else 1, 65536)))


def search_dim(dim: int, spec: BankSpec) -> int:
    """Dimension the index stores and compares (after the optional PCA)."""
    return spec.pca if 0 < spec.pca < dim else dim


def lossy(kind: str, dim: int, spec: BankSpec) -> bool:
    """Indexes whose distances are approximate get exact re-ranking from the stored photos."""
    return kind == "ivfpq" or (kind != "flat" and search_dim(dim, spec) < dim)


def bytes_per_vector(kind: str, dim: int, spec: BankSpec) -> float:
    """What one indexed vector costs in memory (plus 8 bytes of id map), for the budget."""
    dim = dim if kind == "flat" else search_dim(dim, spec)
    b: float
    if kind == "flat":
        b = 4 * dim
    elif kind == "hnsw":
        b = (dim if spec.hnsw_sq8 else 4 * dim) + 2 * spec.hnsw_m * 4 * 1.1
    elif kind == "ivf":
        b = 4 * dim + 8
    else:
        b = _pq_m(dim, spec) * spec.pq_bits / 8 + 8
    return b + 8


def plan(spec: BankSpec, n_images: int, counts: dict[tuple[int, int], int]) -> dict[str, Any]:
    """Choose index kind per scale and the kept fraction so that the whole bank fits the budget."""
    budget = spec.memory_gb * 1024**3
    image_bytes = n_images * spec.image_size**2 * 3
    dims = {s: 3 * s[0] ** 2 for s in counts}

    def kinds_for(prefer_pq: bool) -> dict:
        out = {}
        for s, n in counts.items():
            if spec.index != "auto":
                out[s] = spec.index
            elif n <= spec.exact_max:
                out[s] = "flat"
            else:
                out[s] = "ivfpq" if prefer_pq else "hnsw"
        return out

    def cost(kinds: dict) -> float:
        return sum(counts[s] * bytes_per_vector(kinds[s], dims[s], spec) for s in counts)

    kinds = kinds_for(False)
    if spec.index == "auto" and image_bytes + cost(kinds) > budget:
        kinds = kinds_for(True)
    need = cost(kinds)
    keep = 1.0 if image_bytes + need <= budget else max(0.0, (budget - image_bytes) / need)
    if keep <= 0:
        raise ArtshiftError(f"the bank's {image_bytes / 1024**3:.1f} GB of resized photos alone exceed the "
                            f"{spec.memory_gb} GB bank budget",
                            hint="raise the budget (bank_memory_gb) or use fewer / smaller training images")
    return {"kinds": kinds, "keep": keep, "image_bytes": image_bytes,
            "index_bytes": need * min(1.0, keep), "budget_bytes": budget}


def _factory(kind: str, dim: int, n: int, spec: BankSpec) -> str:
    if kind == "flat":
        return "Flat"
    pre = f"PCA{spec.pca}," if search_dim(dim, spec) < dim else ""
    if kind == "hnsw":
        return f"{pre}HNSW{spec.hnsw_m},{'SQ8' if spec.hnsw_sq8 else 'Flat'}"
    nlist = _nlist(n, spec)
    quant = f"IVF{nlist}_HNSW32" if nlist >= 4096 else f"IVF{nlist}"
    if kind == "ivf":
        return f"{pre}{quant},Flat"
    return f"{pre}{quant},PQ{_pq_m(search_dim(dim, spec), spec)}x{spec.pq_bits}"


def _inner(index: Any) -> Any:
    import faiss  # heavy native library: loaded only where a bank is built or searched

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


def set_search_params(index: Any, kind: str, spec: BankSpec) -> None:
    import faiss  # heavy native library: loaded only where a bank is built or searched

    if kind == "hnsw":
        _inner(index).hnsw.efSearch = spec.ef_search
    elif kind in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).nprobe = spec.nprobe


# ----------------------------------------------------------------------------- searchable bank
class ClassIndex:
    """One searchable set of patches (one scale, one class): index + kept ids + bank mean."""

    def __init__(self, scale: ScaleBank, name: str, index: Any, ids: np.ndarray, mean: np.ndarray,
                 kind: str, backend: str, device: torch.device):
        self.scale, self.name, self.index, self.kind = scale, name, index, kind
        self.ids = ids.astype(np.int64)
        self.mean = torch.from_numpy(mean.astype(np.float32)).to(device)
        self.backend = backend
        self.device = device
        self._matrix: torch.Tensor | None = None
        self._ids_t: torch.Tensor | None = None
        self._sqnorm: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to_search(self, raw: torch.Tensor) -> torch.Tensor:
        return geometry_vectors(raw, self.mean.to(raw.device), self.scale.geometry)

    def search(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """Global patch ids [n, k] of each query's k nearest (queries already in search geometry)."""
        k = min(k, len(self.ids))
        if self.backend == "torch":
            return self._torch_search(queries, k)
        refine = self.scale.spec.refine if lossy(self.kind, self.scale.dim, self.scale.spec) else 1
        kk = min(len(self.ids), k * max(1, refine))
        q = queries.detach().float().cpu().contiguous().numpy()
        _, pos = self.index.search(q, kk)
        pos_t = torch.from_numpy(pos)
        ids = torch.from_numpy(self.ids)[pos_t.clamp_min(0)]
        ids[pos_t < 0] = -1
        if kk > k:
            ids = self._rerank(queries.detach().float().cpu(), ids, k)
        return ids.to(queries.device)

    def _rerank(self, q: torch.Tensor, ids: torch.Tensor, k: int) -> torch.Tensor:
        """Exact re-ranking of compressed-index candidates from the stored photos."""
        n, kk = ids.shape
        valid = ids >= 0
        cand = self.scale.gather(ids.clamp_min(0).flatten()).cpu()
        vec = self.to_search(cand).view(n, kk, -1)
        if self.scale.geometry == "cosine":
            score = (vec @ q.unsqueeze(-1)).squeeze(-1)
        else:
            score = -((vec - q.unsqueeze(1)) ** 2).sum(-1)
        score[~valid] = -float("inf")
        top = score.topk(k, dim=1).indices
        return ids.gather(1, top)

    def matrix(self) -> torch.Tensor:
        """All kept vectors in search geometry on the bank's device (torch exact search)."""
        if self._matrix is None:
            chunks = []
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
            for start in range(0, len(self.ids), 65536):
                ids = torch.from_numpy(self.ids[start:start + 65536]).to(self.device)
                chunks.append(self.to_search(self.scale.gather(ids)).to(dtype))
            self._matrix = torch.cat(chunks)
            self._ids_t = torch.from_numpy(self.ids).to(self.device)
            self._sqnorm = (self._matrix.float() ** 2).sum(1)
        return self._matrix

    def _torch_search(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        m = self.matrix()
        q = queries.detach().to(self.device, m.dtype)
        _, pos = chunked_search(q, m, k, self.scale.geometry, self.scale.spec.search_chunk, self._sqnorm)
        assert self._ids_t is not None
        return self._ids_t[pos]

    def settings(self) -> dict[str, Any]:
        """How this bank is searched, as a run records it (the parameters that apply to its kind)."""
        spec = self.scale.spec
        out: dict[str, Any] = {"backend": self.backend, "index": self.kind, "n": len(self.ids),
                               "retrieval_space": RETRIEVAL_SPACES[spec.geometry]}
        if self.backend == "torch":
            out |= {"exact": True, "search_chunk": spec.search_chunk,
                    "dtype": "float16" if self.device.type == "cuda" else "float32"}
            return out
        out["exact"] = self.kind == "flat"
        if self.kind in ("ivf", "ivfpq"):
            out["nprobe"] = spec.nprobe
        if self.kind == "hnsw":
            out["ef_search"] = spec.ef_search
        if spec.pca and search_dim(self.scale.dim, spec) < self.scale.dim:
            out["pca"] = spec.pca
        if lossy(self.kind, self.scale.dim, spec):
            out["refine"] = spec.refine
        return out


class ScaleBank:
    """The banks of one patch scale: the class-agnostic one plus optional semantic ones."""

    def __init__(self, bank: MemoryBank, patch: int, stride: int):
        self.bank, self.patch, self.stride = bank, patch, stride
        self.spec = bank.spec
        self.geometry = bank.spec.geometry
        self.side = grid(bank.spec.image_size, patch, stride)
        self.per_image = self.side**2
        self.dim = 3 * patch * patch
        self.classes: dict[str, ClassIndex] = {}
        self._windows: torch.Tensor | None = None

    @property
    def key(self) -> str:
        return f"p{self.patch}s{self.stride}"

    def index_for(self, label: int | None) -> ClassIndex:
        """The class's bank; a class the photos lack falls back to background, then to all patches."""
        if label is not None:
            for name in (f"c{label}", f"c{BACKGROUND}"):
                if name in self.classes:
                    return self.classes[name]
        return self.classes[ALL]

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """Raw patch vectors in [-1, 1] for global patch ids (image, row, col in raster order)."""
        if self._windows is None:
            # A strided view [N, rows, cols, 3, p, p] of the stored photos: every patch without a copy,
            # so gathering indexes three dims and copies whole windows (~10x faster than pixel indexing).
            images = self.bank.images_t
            n, c, h, w = images.shape
            self._windows = images.as_strided(
                (n, self.side, self.side, c, self.patch, self.patch),
                (c * h * w, self.stride * w, self.stride, h * w, w, 1))
        ids = ids.to(self._windows.device)
        img = ids // self.per_image
        rest = ids % self.per_image
        return to_unit(self._windows[img, rest // self.side, rest % self.side]).flatten(1)


class MemoryBank:
    """A built bank loaded for searching: resized photos plus one ``ScaleBank`` per scale."""

    def __init__(self, root: Path, spec: BankSpec, meta: dict[str, Any], images: np.ndarray,
                 device: torch.device):
        self.root, self.spec, self.meta, self.device = Path(root), spec, meta, device
        self.images_t = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        self.scales: list[ScaleBank] = [ScaleBank(self, p, s) for p, s in spec.scales]

    @property
    def fingerprint(self) -> str:
        return self.root.name

    @classmethod
    def load(cls, root: Path, device: torch.device | str = "cpu", backend: str = "auto",
             search: dict[str, Any] | None = None) -> MemoryBank:
        root = Path(root)
        try:
            return cls._load(root, device, backend, search)
        except ArtshiftError:
            raise
        except Exception as exc:  # a truncated array or index file, a meta.json of another version
            raise CorruptBankError(f"memory bank at {root} is unreadable ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''})",
                                   hint="delete that folder; the bank is rebuilt on the next run") from None

    @classmethod
    def _load(cls, root: Path, device: torch.device | str, backend: str,
              search: dict[str, Any] | None) -> MemoryBank:
        import faiss  # heavy native library: loaded only where a bank is built or searched

        try:
            meta = json.loads((root / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CorruptBankError(f"memory bank at {root} is unreadable ({exc})",
                                   hint="delete that folder; the bank is rebuilt on the next run") from None
        d = dict(meta["spec"])
        d["scales"] = tuple(tuple(s) for s in d["scales"])
        d.update(search or {})  # this session's search effort (ef_search, nprobe, refine)
        spec = BankSpec(**d)
        device = torch.device(device)
        bank = cls(root, spec, meta, np.load(root / "images.npy"), device)
        chosen = resolve_backend(backend, device)
        gpu_res = None
        for sb in bank.scales:
            for name, info in meta["scales"][sb.key]["classes"].items():
                folder = root / sb.key / name
                kind = info["kind"]
                index = faiss.read_index(str(folder / "index.faiss"))
                set_search_params(index, kind, spec)
                be = chosen
                if be == "faiss-gpu":
                    if kind == "hnsw":  # faiss has no GPU HNSW: keep it on the CPU
                        be = "faiss"
                    else:
                        gpu_res = gpu_res or faiss.StandardGpuResources()
                        index = faiss.index_cpu_to_gpu(gpu_res, device.index or 0, index)
                        be = "faiss"
                sb.classes[name] = ClassIndex(sb, name, index, np.load(folder / "ids.npy"),
                                              np.load(folder / "mean.npy"), kind, be, device)
        return bank

    def describe(self) -> str:
        m = self.meta
        parts = [f"bank {self.fingerprint} at {self.root}",
                 f"  {m['n_images']} photos at {self.spec.image_size}px, geometry {self.spec.geometry}, "
                 f"{m['total_bytes'] / 1024**2:.0f} MB on disk, built in {m['build_seconds']:.1f}s"]
        for sb in self.scales:
            s = m["scales"][sb.key]
            a = s["classes"][ALL]
            rec = s.get("recall")
            at = _settings_text((rec or {}).get("search", {}))
            rtxt = (f"recall@{rec['k']} {rec['recall']:.3f} on {rec['n_queries']} queries ({rec['queries']}; {at})"
                    if rec else "recall not measured")
            parts.append(f"  {sb.patch}:{sb.stride}  {a['n']:,} of {s['n_patches']:,} patches, {a['factory']}, "
                         f"index {a['bytes'] / 1024**2:.0f} MB, built in {a['seconds']:.1f}s, {rtxt}"
                         + (f", {len(s['classes']) - 1} class banks" if len(s["classes"]) > 1 else ""))
        return "\n".join(parts)


def resolve_backend(backend: str, device: torch.device) -> str:
    """faiss on the CPU; the faiss GPU index with CUDA + faiss-gpu; exact torch search with CUDA only."""
    if backend not in BACKENDS:
        raise ArtshiftError(f"unknown search backend {backend!r} (known: {', '.join(BACKENDS)})")
    if backend == "torch":
        return "torch"
    if device.type == "cuda":
        import faiss  # heavy native library: loaded only where a bank is built or searched

        if hasattr(faiss, "StandardGpuResources"):
            return "faiss-gpu"
        if backend == "auto":
            return "torch"
    return "faiss"


# ----------------------------------------------------------------------------- building
def _patch_vectors(images: np.ndarray, start: int, stop: int, patch: int, stride: int) -> torch.Tensor:
    x = to_unit(torch.from_numpy(images[start:stop]).permute(0, 3, 1, 2))
    return unfold_patches(x, patch, stride).reshape(-1, 3 * patch * patch)


def _patches_at(images: np.ndarray, ids: np.ndarray, patch: int, stride: int) -> torch.Tensor:
    """Raw vectors of the patches ``ids`` (global, raster order) of uint8 NHWC ``images``: the rows
    ``_patch_vectors`` gives for them, cut through a strided window view so only these patches are
    made (unfolding 200 paintings to pick 500 patches made 1 GB of float32 at 16:6)."""
    n, h, w, c = images.shape
    side = grid(h, patch, stride)
    per = side * side
    x = torch.from_numpy(np.ascontiguousarray(images))
    windows = x.as_strided((n, side, side, c, patch, patch),
                           (h * w * c, stride * w * c, stride * c, 1, w * c, c))
    ids_t = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    img, rest = ids_t // per, ids_t % per
    return to_unit(windows[img, rest // side, rest % side]).reshape(len(ids_t), c * patch * patch)


def _iter_vectors(images: np.ndarray, patch: int, stride: int, chunk_images: int):
    """(first global id, raw vectors) chunks over all photos, so no step holds the whole bank twice."""
    per = grid(images.shape[1], patch, stride) ** 2
    for start in range(0, len(images), chunk_images):
        stop = min(len(images), start + chunk_images)
        yield start * per, _patch_vectors(images, start, stop, patch, stride)


def _build_index(kind: str, vectors_iter, n: int, dim: int, spec: BankSpec, train_vectors: torch.Tensor,
                 timings: dict[str, float] | None = None):
    """The trained, filled index and its factory string; ``timings`` (when given) gets train_s / add_s
    (add_s includes cutting the patches the iterator yields)."""
    import faiss  # heavy native library: loaded only where a bank is built or searched

    # On unit vectors L2 ranks exactly as inner product; faiss builds HNSW/IVF about twice as
    # fast with L2, so only the exact index uses the inner product itself.
    metric = faiss.METRIC_INNER_PRODUCT if spec.geometry == "cosine" and kind == "flat" else faiss.METRIC_L2
    factory = _factory(kind, dim, n, spec)
    index = faiss.index_factory(dim, factory, metric)
    if kind == "hnsw":
        _inner(index).hnsw.efConstruction = spec.ef_construction
    if kind == "ivfpq":
        # index_factory's IVF-PQ trains the PQ for polysemous (Hamming) filtering, a simulated
        # annealing over each sub-quantiser's 256 codes: ~3 s per sub-quantiser whatever the bank
        # size (PQ96: ~5 min of a 10-photo bank's 5-min build). It only relabels the codes, so
        # ADC distances and every search answer are the same without it, and polysemous search
        # is never used here.
        ivfpq: Any = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivfpq.do_polysemous_training = False
    t0 = time.perf_counter()
    if not index.is_trained:
        index.train(np.ascontiguousarray(train_vectors.numpy(), dtype=np.float32))
    t1 = time.perf_counter()
    for vec in vectors_iter:
        index.add(np.ascontiguousarray(vec.numpy(), dtype=np.float32))
    set_search_params(index, kind, spec)
    if timings is not None:
        timings |= {"train_s": t1 - t0, "add_s": time.perf_counter() - t1}
    return index, factory


def build_bank(photos: Sequence[Path], spec: BankSpec, cache_dir: Path, *, masks_dir: Path | None = None,
               query_images: Sequence[Path] | None = None, recall_k: int = 5, recall_queries: int = 1000,
               skip_bad: bool = False, progress: bool = False, device: torch.device | str = "cpu",
               backend: str = "auto", logger: logging.Logger | None = None) -> MemoryBank:
    """Load the bank for ``photos`` + ``spec`` from ``<cache_dir>/banks/<fingerprint>``, building it if missing.

    ``query_images`` (e.g. the artist's training paintings) provide the recall sample; without
    them, patches of a few bank photos are used. The build writes to a temporary folder renamed
    into place, so an interrupted build leaves nothing that looks finished.
    """
    logger = logger or log
    photos = [Path(p) for p in photos]
    masks_fp = None
    if masks_dir is not None:
        masks = sorted(Path(masks_dir).glob("*.png"))
        if not masks:
            raise ArtshiftError(f"masks folder {masks_dir} holds no PNG label maps",
                                hint="name them <image stem>.png, one label per pixel (0 = background)")
        masks_fp = fingerprint_files(masks)
    fp = bank_fingerprint(spec, fingerprint_files(photos), masks_fp)
    root = Path(cache_dir) / "banks" / fp
    if (root / "meta.json").exists():
        try:
            return MemoryBank.load(root, device=device, backend=backend, search=spec.search_params())
        except CorruptBankError as exc:  # a corrupt cache is rebuilt, with a warning, not fatal
            logger.warning("%s: moving it aside and rebuilding", str(exc).splitlines()[0])
            os.replace(root, root.with_name(f"{root.name}.corrupt-{os.getpid()}"))
    logger.info("building memory bank %s under %s", fp, root)
    _build(root, photos, spec, masks_dir, query_images, recall_k, recall_queries, skip_bad, progress, logger)
    return MemoryBank.load(root, device=device, backend=backend, search=spec.search_params())


def _build(root: Path, photos: list[Path], spec: BankSpec, masks_dir: Path | None,
           query_images: Sequence[Path] | None, recall_k: int, recall_queries: int, skip_bad: bool,
           progress: bool, logger: logging.Logger) -> None:
    t_start = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    images, used = load_resized(photos, spec.image_size, skip_bad=skip_bad, progress=progress)
    labels = load_masks(used, masks_dir, spec.image_size) if masks_dir is not None else None
    n_img = len(images)
    tmp = root.parent / f".{root.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        np.save(tmp / "images.npy", images)
        # semantic banks roughly double what is indexed (every patch is also in its class bank)
        factor = 2 if labels is not None else 1
        counts = {s: factor * n_img * grid(spec.image_size, *s) ** 2 for s in spec.scales}
        budget = plan(spec, n_img, counts)
        meta: dict[str, Any] = {"format": FORMAT_VERSION, "spec": spec.to_json(), "n_images": n_img,
                                "skipped": [str(p) for p in photos if p not in set(used)],
                                "masks_dir": str(masks_dir) if masks_dir else None,
                                "budget": budget | {"kinds": {format_scales([s]): k for s, k in budget["kinds"].items()}},
                                "scales": {}}
        chunk = max(1, 200_000 // max(counts[s] // n_img for s in spec.scales))
        q_raw_by_scale = _recall_queries(query_images, images, spec, recall_queries, rng, skip_bad)
        for patch, stride in spec.scales:
            key = f"p{patch}s{stride}"
            kind = budget["kinds"][(patch, stride)]
            dim = 3 * patch * patch
            per = grid(spec.image_size, patch, stride) ** 2
            total = n_img * per
            groups: dict[str, np.ndarray] = {ALL: np.arange(total, dtype=np.int64)}
            if labels is not None:
                lab = torch.from_numpy(labels)
                present = sorted(int(c) for c in np.unique(labels) if c >= 0)
                for c, m in patch_classes(lab, patch, stride, present).items():
                    ids = np.flatnonzero(m.flatten().numpy())
                    if len(ids):
                        groups[f"c{c}"] = ids
            smeta: dict[str, Any] = {"n_patches": total, "dim": dim, "classes": {}}
            for name, ids in groups.items():
                t0 = time.perf_counter()
                keep = budget["keep"]
                if keep < 1.0:
                    ids = np.sort(rng.choice(ids, size=max(1, int(len(ids) * keep)), replace=False))
                mean = _mean(images, patch, stride, ids, chunk)
                mean_t = torch.from_numpy(mean)
                stages = {"mean_s": time.perf_counter() - t0}
                kk = kind if len(ids) >= _min_trainable(kind, spec) else "flat"
                sub_dir = tmp / key / name
                sub_dir.mkdir(parents=True)
                t1 = time.perf_counter()
                train = _sample_vectors(images, patch, stride, ids, mean_t, spec, rng, kk)
                stages["sample_s"] = time.perf_counter() - t1
                vec_iter = _kept_vectors(images, patch, stride, ids, mean_t, spec.geometry, chunk)
                index, factory = _build_index(kk, vec_iter, len(ids), dim, spec, train, stages)
                del train
                import faiss  # heavy native library: loaded only where a bank is built or searched

                t1 = time.perf_counter()
                faiss.write_index(index, str(sub_dir / "index.faiss"))
                np.save(sub_dir / "ids.npy", ids)
                np.save(sub_dir / "mean.npy", mean)
                del index
                stages["write_s"] = time.perf_counter() - t1
                smeta["classes"][name] = {"n": int(len(ids)), "kind": kk, "factory": factory,
                                          "bytes": (sub_dir / "index.faiss").stat().st_size,
                                          "seconds": time.perf_counter() - t0, "stages": stages}
                logger.info("bank %s %s: %d patches, %s, %.1fs (%s)", key, name, len(ids), factory,
                            smeta["classes"][name]["seconds"], ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
            meta["scales"][key] = smeta
        meta["build_seconds"] = time.perf_counter() - t_start
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        # Recall needs a loaded bank (it searches exactly as training does), so measure it on the temp copy.
        bank = MemoryBank.load(tmp, device="cpu", backend="faiss", search=spec.search_params())
        for sb in bank.scales:
            q_raw = q_raw_by_scale[(sb.patch, sb.stride)]
            meta["scales"][sb.key]["recall"] = measure_recall(sb, q_raw, recall_k, max(1, 200_000 // sb.per_image),
                                                              source=q_raw_by_scale["source"])
        meta["recall_seconds"] = time.perf_counter() - t_start - meta["build_seconds"]
        meta["total_bytes"] = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        _write_json_atomic(tmp / "meta.json", meta)
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "meta.json").exists():  # a half-finished folder from someone else: replace it
                shutil.rmtree(root, ignore_errors=True)
                os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1))


def _kept_vectors(images, patch, stride, ids, mean, geometry, chunk):
    """Search-geometry vectors of the kept ids, in id order, chunk by chunk."""
    for first, raw in _iter_vectors(images, patch, stride, chunk):
        lo, hi = np.searchsorted(ids, [first, first + len(raw)])
        if hi > lo:
            yield geometry_vectors(raw[torch.from_numpy(ids[lo:hi] - first)], mean, geometry)


def _min_trainable(kind: str, spec: BankSpec) -> int:
    """Below this many patches a quantiser cannot be trained sensibly: such banks are exact."""
    if kind == "ivf":
        return 1000
    if kind == "ivfpq":
        return max(1000, 4 * 2**spec.pq_bits)
    return 0


def _mean(images, patch, stride, ids, chunk) -> np.ndarray:
    total = torch.zeros(3 * patch * patch, dtype=torch.float64)
    for first, raw in _iter_vectors(images, patch, stride, chunk):
        lo, hi = np.searchsorted(ids, [first, first + len(raw)])
        if hi > lo:
            total += raw[torch.from_numpy(ids[lo:hi] - first)].double().sum(0)
    return (total / max(1, len(ids))).float().numpy()


def _sample_vectors(images, patch, stride, ids, mean, spec, rng, kind) -> torch.Tensor:
    """Training sample for IVF / PQ quantisers (up to 64 vectors per list, at least 10k)."""
    dim = 3 * patch * patch
    if kind not in ("ivf", "ivfpq") and not (kind == "hnsw" and spec.hnsw_sq8) and search_dim(dim, spec) == dim:
        return torch.empty(0, dim)
    n = min(len(ids), max(10_000, 64 * _nlist(len(ids), spec) if kind != "hnsw" else 0, 256 * 40))
    pick = np.sort(rng.choice(ids, size=n, replace=False))
    return geometry_vectors(_patches_at(images, pick, patch, stride), mean, spec.geometry)


def _recall_queries(query_images, images, spec, n_queries, rng, skip_bad) -> dict:
    """Raw query patches per scale: painting patches when given, else patches of random bank photos."""
    if query_images:
        qimgs, _ = load_resized(list(query_images)[:200], spec.image_size, skip_bad=True)
        source = f"patches of {len(qimgs)} query images"
    else:
        qimgs = images[rng.choice(len(images), size=min(len(images), 20), replace=False)]
        source = f"patches of {len(qimgs)} bank photos"
    out: dict[Any, Any] = {"source": source}
    for patch, stride in spec.scales:
        total = len(qimgs) * grid(qimgs.shape[1], patch, stride) ** 2
        pick = rng.choice(total, size=min(n_queries, total), replace=False)
        out[(patch, stride)] = _patches_at(qimgs, np.sort(pick), patch, stride)
    return out


def exact_search(sb: ScaleBank, q: torch.Tensor, k: int, chunk_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth for recall: exact k-NN over every patch of every bank photo (kept by the budget
    or not), streamed a block of photos at a time on the bank's device; (similarity, global ids)."""
    images = sb.bank.images_t
    mean = sb.classes[ALL].mean.to(images.device)
    q = q.to(images.device, torch.float32)
    best_v = torch.empty(len(q), 0, device=images.device)
    best_i = torch.empty(len(q), 0, dtype=torch.long, device=images.device)
    for start in range(0, len(images), max(1, chunk_images)):
        raw = unfold_patches(to_unit(images[start:start + chunk_images]), sb.patch, sb.stride).reshape(-1, sb.dim)
        v, i = topk_rows(scores(q, geometry_vectors(raw, mean, sb.geometry), sb.geometry), k)
        best_v, best_i = merge_topk(best_v, best_i, v, i + start * sb.per_image, k)
    return best_v, best_i


def recall_at_k(sb: ScaleBank, q: torch.Tensor, found: torch.Tensor, exact_v: torch.Tensor) -> float:
    """Share of the returned ids that are true k nearest neighbours: an id counts when its exact
    similarity reaches the k-th exact one (float32 tolerance), so a tie (photos repeat patches, e.g.
    saturated sky) is a hit whichever of the equal patches the index returned."""
    n, k = found.shape
    valid = found >= 0
    raw = sb.gather(found.clamp_min(0).flatten()).to(q.device)
    vec = geometry_vectors(raw, sb.classes[ALL].mean.to(q.device), sb.geometry).view(n, k, -1).float()
    dot = (vec @ q.float().unsqueeze(-1)).squeeze(-1)
    sim = dot if sb.geometry == "cosine" else 2 * dot - vec.pow(2).sum(-1)
    kth = exact_v[:, k - 1:k].to(q.device)
    hits = (sim >= kth - 1e-4 * kth.abs().clamp_min(1.0)) & valid
    return float(hits.sum()) / max(1, n * k)


def measure_recall(sb: ScaleBank, q_raw: torch.Tensor, k: int, chunk_images: int, source: str = "",
                   exact_cache: dict | None = None) -> dict[str, Any]:
    """recall@k of the bank's search as loaded (index, backend, subsampling, re-ranking) against exact
    search over all patches, with the search settings it was measured at.

    ``exact_cache``: a dict kept across calls on the same bank content (e.g. one nprobe / refine
    grid) so the exact search, which does not depend on search settings, runs once per query set."""
    ci = sb.classes[ALL]
    q = ci.to_search(q_raw.to(ci.device))
    k = min(k, len(ci))
    t0 = time.perf_counter()
    found = ci.search(q, k)
    search_s = time.perf_counter() - t0
    key = (sb.bank.fingerprint, sb.key, k, hashlib.sha256(q.detach().float().cpu().numpy().tobytes()).hexdigest())
    if exact_cache is not None and key in exact_cache:
        exact_v = exact_cache[key]
    else:
        exact_v, _ = exact_search(sb, q, k, chunk_images)
        if exact_cache is not None:
            exact_cache[key] = exact_v
    return {"k": k, "recall": recall_at_k(sb, q, found, exact_v), "n_queries": int(len(q)), "queries": source,
            "search_ms_per_query": 1000 * search_s / max(1, len(q)), "search": ci.settings()}


class LowRecallError(ArtshiftError):
    """The bank's search misses too many true neighbours for the contextual loss to mean what it says."""


def recall_guard(bank: MemoryBank, query_images: Sequence[Path] | None, *, k: int, n_queries: int = 500,
                 min_recall: float = 0.9, seed: int = 0, skip_bad: bool = False,
                 exact_cache: dict | None = None) -> dict[str, Any]:
    """Measure recall@k of the loaded bank (the search training will use) per scale on ``n_queries``
    query patches (painting patches when given; fewer when the bank is smaller) and raise a one-line
    ``LowRecallError`` below ``min_recall``; returns the measurements for the run's record.
    ``exact_cache``: see ``measure_recall`` (for measuring several search settings of one bank)."""
    rng = np.random.default_rng(seed)
    images = bank.images_t.permute(0, 2, 3, 1).cpu().numpy()
    q_by_scale = _recall_queries(query_images, images, bank.spec, n_queries, rng, skip_bad)
    out: dict[str, Any] = {"min_recall": min_recall, "scales": {}}
    low = []
    for sb in bank.scales:
        q_raw = q_by_scale[(sb.patch, sb.stride)]
        q_raw = q_raw[:min(len(q_raw), len(sb.classes[ALL]))]
        chunk = max(1, 200_000 // sb.per_image)
        rec = measure_recall(sb, q_raw, k, chunk, source=q_by_scale["source"], exact_cache=exact_cache)
        out["scales"][sb.key] = rec
        if rec["recall"] < min_recall:
            low.append((sb, rec))
    if low:
        what = "; ".join(f"{sb.patch}:{sb.stride} {rec['recall']:.3f} on {rec['n_queries']} query patches "
                         f"({_settings_text(rec['search'])})" for sb, rec in low)
        raise LowRecallError(f"memory bank search recall@{k} below min_recall={min_recall}: {what}",
                             hint="search harder (nprobe, ef_search, refine), use bank_index=flat or "
                                  "search_backend=torch (exact), or pass --set min_recall=0 to train anyway")
    return out


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items() if k not in ("retrieval_space", "n"))
