"""Figures of ``bench shift`` (PNG for the README, SVG for papers), drawn headless (Agg).

Distance vs depth: the raw KID of different layers is not comparable (each layer has its own
scale), so for the plot only every layer's features are standardised by photo half A's
per-channel mean and std first (``ShiftResult.plot_layers``); the stored rows and the CSV keep
the raw values. The t-SNE map is qualitative: t-SNE keeps neighbourhoods, not distances.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.features.tv_features import RESNET152, VGG19

if TYPE_CHECKING:
    from benchmark.analyses.shift import ShiftResult

TSNE_SEED = 0
TSNE_PCA_DIMS = 50
TSNE_PERPLEXITY = 30.0


def _save(fig, base: Path) -> list[Path]:
    base.parent.mkdir(parents=True, exist_ok=True)
    files = []
    for ext in ("png", "svg"):
        path = base.with_suffix(f".{ext}")
        fig.savefig(path, dpi=130 if ext == "png" else None, bbox_inches="tight")
        files.append(path)
    plt.close(fig)
    return files


def _qualifier(extractor) -> str:
    """What the row tag says beyond the network's name (``random-init``), or nothing: EfficientNet's
    rows are tagged with its name (``FD-1280[effnet-lite0]``), which a panel titled with it repeats."""
    tag, name = extractor.display_tag or "", getattr(extractor, "name", "")
    if tag == name:
        return ""
    return tag[len(name) + 1:] if name and tag.startswith(f"{name}:") else tag


def _title(network: str, extractor) -> str:
    title = {VGG19.name: VGG19.title, RESNET152.name: RESNET152.title}.get(network, network)
    qualifier = _qualifier(extractor)
    return f"{title}[{qualifier}]" if qualifier else title


def _tags(result: ShiftResult) -> str:
    tags = sorted({_qualifier(e) for e in result.extractors.values()} - {""})
    return "".join(f"[{t}]" for t in tags)


def distance_vs_depth(result: ShiftResult, base: Path, title_suffix: str = "") -> list[Path]:
    """One panel per network: KID to photo half A (standardised features) against depth, one line
    per set with its 95% bootstrap band, the photo noise floor as a grey band."""
    nets = [n for n in result.extractors if any(k.startswith(f"{n}:") for k in result.plot_layers)]
    fig, axes = plt.subplots(1, len(nets), figsize=(5.2 * len(nets), 3.8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, net in zip(axes[0], nets):
        layers = [k for k in result.plot_layers if k.startswith(f"{net}:")]
        x = np.arange(len(layers))
        floor = [result.plot_layers[k].floor for k in layers]
        ax.fill_between(x, [f.low for f in floor], [f.high for f in floor], color="0.8", label="photos B (floor)")
        ax.plot(x, [f.value for f in floor], color="0.5", lw=1, ls="--")
        for i, s in enumerate(result.sets):
            iv = [result.plot_layers[k].kid[s.label] for k in layers]
            c = colours[i % len(colours)]
            ax.plot(x, [v.value for v in iv], marker="o", ms=3, color=c, label=s.label)
            ax.fill_between(x, [v.low for v in iv], [v.high for v in iv], color=c, alpha=0.2, lw=0)
        ax.set_xticks(x, [k.partition(":")[2] for k in layers], rotation=30)
        ax.set_ylabel("KID to photos A (standardised features)")
        ax.set_title(_title(net, result.extractors[net]), fontsize=10)
        ax.axhline(0, color="k", lw=0.5)
        # the floor of a deep random-init layer can spread over orders of magnitude: linear near 0, log beyond
        ax.set_yscale("symlog", linthresh=1.0)
    axes[0][0].legend(fontsize=8)
    head = f"Distance to photos vs depth{_tags(result)} (n = {result.n} per set, {result.n_a} photos in A; 95% bootstrap)"
    fig.suptitle(head + (f"\n{title_suffix}" if title_suffix else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, base)


def tsne_embedding(groups: dict[str, np.ndarray], seed: int = TSNE_SEED) -> dict[str, np.ndarray]:
    """2-D t-SNE of the union of ``groups`` (PCA to 50 dims first), split back per group."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.concatenate(list(groups.values()))
    dims = min(TSNE_PCA_DIMS, x.shape[0] - 1, x.shape[1])
    z = PCA(n_components=dims, random_state=seed).fit_transform(x)
    perplexity = min(TSNE_PERPLEXITY, (x.shape[0] - 1) / 3)
    y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    out, start = {}, 0
    for k, g in groups.items():
        out[k] = y[start:start + len(g)]
        start += len(g)
    return out


def tsne_map(result: ShiftResult, base: Path, title_suffix: str = "", seed: int = TSNE_SEED) -> list[Path]:
    """The last layer of each network: photos (subsampled to the largest other set), paintings and
    translations in one t-SNE map per network."""
    nets = [n for n in result.extractors if any(k.startswith(f"{n}:") for k in result.layers)]
    fig, axes = plt.subplots(1, len(nets), figsize=(4.8 * len(nets), 4.4), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, net in zip(axes[0], nets):
        last = [k for k in result.layers if k.startswith(f"{net}:")][-1]
        a, b = result.photo_features[last]
        photos = np.concatenate([a, b])
        keep = np.sort(rng.choice(len(photos), min(len(photos), result.n), replace=False))
        groups = {"photos": photos[keep], **result.features[last]}
        emb = tsne_embedding(groups, seed)
        for label, pts in emb.items():
            ax.scatter(pts[:, 0], pts[:, 1], s=10, label=label, c="0.6" if label == "photos" else None)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{_title(net, result.extractors[net])} {last.partition(':')[2]}", fontsize=10)
    axes[0][0].legend(fontsize=8)
    head = f"t-SNE of the last layers{_tags(result)} (qualitative: neighbourhoods, not distances)"
    fig.suptitle(head + (f"\n{title_suffix}" if title_suffix else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, base)


def shift_figures(result, out_dir: Path, title_suffix: str) -> list[Path]:
    """Both ``bench shift`` figures (PNG + SVG each): distance vs depth and the t-SNE map."""
    out_dir = Path(out_dir)
    return (distance_vs_depth(result, out_dir / "distance_vs_depth", title_suffix=title_suffix)
            + tsne_map(result, out_dir / "tsne", title_suffix=title_suffix))
