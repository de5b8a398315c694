"""The contextual loss of Tomei et al. 2018 between generated patches and a memory bank.

Per scale (and per class with semantic banks), for generated patches k_i and real patches m_j:
    d_ij  = 1 - cos(k_i - mu_m, m_j - mu_m)
    d~_ij = d_ij / (min_l d_il + eps)
    A_ij  = softmax_j(1 - d~_ij / h)
    L_CX  = -log(mean_i max_j A_ij)
summed over scales and classes, averaged over the batch. As in the official code, j runs over
the candidate set J: the union of the k nearest real patches retrieved for all generated
patches of one image (deduplicated); every other bank patch counts as 0.

What the truncation to J costs (``truncation_bound``): with exact retrieval every patch i has
its k nearest in J, so the min in d~ is the dense one and every bank patch outside J is at
least as far as i's k-th nearest. The dense softmax therefore differs from the sparse one only
by the extra mass T_i <= (N - |J|) exp(1 - d~_i(k) / h) in its denominator; the row's total
variation distance is T_i / (Z_i + T_i) and 0 <= L_dense - L_sparse <= log(1 + max_i T_i / Z_i).
The bound is small when h is small or d~_i(k) is large (distinctive neighbours) and loose for
h = 1 on flat image regions, where the dense softmax spreads over many near-equal patches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from methods.memory_bank import MemoryBank, patch_classes, unfold_patches


def affinities(queries: torch.Tensor, candidates: torch.Tensor, mean: torch.Tensor,
               h: float = 1.0, eps: float = 1e-5) -> torch.Tensor:
    """A [N, M] of the formulas above (the official code's ``affinities``)."""
    q = F.normalize(queries - mean, dim=-1)
    c = F.normalize(candidates - mean, dim=-1)
    # Rounding can push cos a hair above 1; a negative distance would flip the normalisation.
    d = (1.0 - q @ c.T).clamp_min(0.0)
    d_norm = d / (d.min(dim=1, keepdim=True).values + eps)
    return torch.softmax(1.0 - d_norm / h, dim=1)


def cx_loss(queries: torch.Tensor, candidates: torch.Tensor, mean: torch.Tensor,
            h: float = 1.0, eps: float = 1e-5) -> torch.Tensor:
    """L_CX = -log(mean_i max_j A_ij) for one image, one scale, one class."""
    a = affinities(queries, candidates, mean, h, eps)
    return -torch.log(a.max(dim=1).values.mean())


def truncation_bound(queries: torch.Tensor, candidates: torch.Tensor, mean: torch.Tensor, n_bank: int,
                     k: int, h: float = 1.0, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Upper bounds on how far the sparse (candidate-set) affinity is from the dense one.

    Valid when ``candidates`` hold each query's exact k nearest (see the module docstring).
    Returns per-row total-variation bounds and the bound on L_dense - L_sparse.
    """
    q = F.normalize(queries - mean, dim=-1)
    c = F.normalize(candidates - mean, dim=-1)
    d = (1.0 - q @ c.T).clamp_min(0.0)
    dmin = d.min(dim=1, keepdim=True).values
    d_norm = d / (dmin + eps)
    logits = 1.0 - d_norm / h
    z = torch.exp(logits).sum(1)
    kth = d_norm.topk(min(k, d.shape[1]), dim=1, largest=False).values[:, -1]
    tail = (n_bank - candidates.shape[0]) * torch.exp(1.0 - kth / h)
    return {"tv": tail / (z + tail), "loss_gap": torch.log1p((tail / z).max())}


@dataclass
class ContextualLoss:
    """L_CX of generated images against a ``MemoryBank``: retrieval (no grad) + the loss (grad)."""

    bank: MemoryBank
    k: int = 5
    h: float = 1.0
    eps: float = 1e-5
    stats: dict[str, float] = field(default_factory=dict)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over the batch of the loss summed over scales (and classes).

        ``labels`` [B, H, W] are the paintings' label maps (-1 = no mask for that image); a
        patch belongs to class c when at least half its pixels are c, patches with no
        majority class are left out, and classes the bank lacks use the background bank.
        """
        b = images.shape[0]
        total = images.new_zeros(())
        search_s = 0.0
        n_cand = 0
        for sb in self.bank.scales:
            raw = unfold_patches(images, sb.patch, sb.stride)  # [B, L, d], keeps the graph
            groups = self._groups(labels, sb, b, raw.shape[1], images.device)
            # One search per class bank for the whole batch: faiss calls have a fixed overhead.
            for ci, members in groups.items():
                q_all = torch.cat([raw[i, idx] for i, _, idx in members])
                t0 = time.perf_counter()
                ids = ci.search(ci.to_search(q_all.detach()), self.k)
                search_s += time.perf_counter() - t0
                start = 0
                for i, _, idx in members:  # one term per (image, class), as the official code sums
                    own = ids[start:start + len(idx)]
                    start += len(idx)
                    cand = torch.unique(own[own >= 0])
                    if cand.numel() == 0:
                        continue
                    n_cand += int(cand.numel())
                    real = sb.gather(cand).to(images.device, images.dtype)
                    total = total + cx_loss(raw[i, idx], real, ci.mean.to(images.device), self.h, self.eps)
        self.stats = {"search_ms": 1000 * search_s, "candidates": float(n_cand) / b}
        return total / b

    def _groups(self, labels: torch.Tensor | None, sb: Any, b: int, n_patches: int,
                device: torch.device) -> dict[Any, list[tuple[int, int | None, torch.Tensor]]]:
        """Class bank -> [(image in batch, class, the patch indices of that class)]."""
        groups: dict[Any, list[tuple[int, int | None, torch.Tensor]]] = {}
        every = torch.arange(n_patches, device=device)
        for i in range(b):
            lab = None if labels is None else labels[i]
            if lab is None or bool((lab < 0).all()):
                groups.setdefault(sb.index_for(None), []).append((i, None, every))
                continue
            present = [int(c) for c in torch.unique(lab) if c >= 0]
            for c, member in patch_classes(lab[None], sb.patch, sb.stride, present).items():
                idx = torch.nonzero(member[0]).flatten()
                if idx.numel():
                    groups.setdefault(sb.index_for(c), []).append((i, c, idx))
        return groups
