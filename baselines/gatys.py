"""Neural style transfer (Gatys, Ecker, Bethge, CVPR 2016) as a painting -> photo baseline.

The painting is the *content* and a real training photo the *style*: optimising the pixels of
the painting so that its VGG-19 Gram statistics match a photo's is the "Style Transfer" row of
Tomei et al. (2018), Table 1. Nothing is trained; ``fit`` prepares the network and the
candidate style photos so ``translate`` can pick one per painting by a named, seeded policy:

- ``random`` (every profile's default): a photo drawn from a hash of (seed, painting pixels), so
  the choice for one painting is reproducible and never depends on which other paintings share
  its batch. Which photo is the "style" is not in Tomei et al.; a random one is the neutral
  choice;
- ``nearest``: the training photo whose globally pooled VGG ``pool5`` features are closest
  (cosine) to the painting's. This project's invention (a variant, not the paper): it imposes the
  statistics of a semantically similar scene and so favours Gatys over the other methods.

The objective is the paper's (eq. 7): alpha * 1/2 sum (F - P)^2 at relu4_2 plus beta * sum_l
w_l E_l over relu1_1..relu5_1, w_l = 1/5, alpha/beta = 1e-3. That ratio is in the units of
Gatys' VGG, rescaled so every channel's mean activation is 1 (on the training photos here:
``normalise``); without that rescaling the ratio would not transfer to torchvision's weights.
Average pooling (Gatys' choice) replaces max pooling, after the rescaling, which the paper
defines on the network as trained. The profiles differ only in cost (steps, size, photo
counts), never in the method; ``content_loss="mean"``, ``pooling="max"`` and ``nearest`` are
the earlier variants, kept as settings. docs/methods/gatys.md lists every remaining difference.

``translate`` runs one L-BFGS optimisation per image (never one line search over a batch, which
would couple the images through the shared step length), initialised from the painting. It
optimises at the size it is given: at ci and smoke the harness resizes every painting to the
profile's translate size (``benchmark.data.resolution``: 32 / 64 px) for every method and resizes the
result back, so Gatys is not favoured or penalised by its own resolution. ``image_size`` (0: off)
optimises at a smaller shorter side still and upsamples (bilinear) the result to the size given.

Weights: ImageNet VGG-19 (torchvision's file, resolved and sha256-checked through
``benchmark.features.weights``; the network itself lives in ``benchmark.features.vgg``). A random-init VGG is used
only when asked for with ``weights="random"``; its convolutions are then drawn with fan-in
Kaiming scaling from a fixed seed. Such a run is labelled through ``weights_id`` and its
translations are not comparable to the pretrained baseline.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import ArtshiftError
from benchmark.core.method import Method, RunContext, TrainData
from benchmark.core.profiles import check_profile
from benchmark.data import BadImageError, load_image, offline
from benchmark.features import vgg
from benchmark.features import weights as weight_files
from benchmark.features.tv_features import normalise_stages_
from benchmark.features.vgg import VGGFeatures, random_vgg19
from benchmark.pipeline.training import save_atomic

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
POLICIES = ("random", "nearest")
CONTENT_LOSSES = ("paper", "mean")
POOLINGS = ("avg", "max")
INDEX_FILE = "gatys_style_index.pt"


@dataclass
class GatysConfig:
    weights: str = "pretrained"  # "pretrained" (ImageNet, via benchmark.weights), "random" (labelled) or
    # "auto" (ci/smoke: pretrained when present or downloadable, else random-init with a warning)
    random_init_seed: int = 0  # seed of the random-init VGG (weights="random" only)
    allow_download: bool = False  # let benchmark.weights fetch the VGG-19 file if it is missing
    # "paper": alpha * 1/2 sum (F - P)^2 (Gatys eq. 1); "mean": alpha * MSE (version 1's, a variant)
    content_loss: str = "paper"
    content_weight: float = 1.0  # alpha
    style_weight: float = 1e3  # beta: alpha/beta = 1e-3, the paper's value (1e-5 .. 1e-2 in its Fig. 3)
    pooling: str = "avg"  # "avg" (Gatys' choice for synthesis) or "max" (VGG as trained)
    normalise: bool = True  # rescale channels to mean activation 1 (Gatys sec. 2), before the pooling swap
    normalise_photos: int = 64  # training photos (evenly spaced, fixed) the mean activations are taken over
    normalise_size: int = 224  # side those photos are resized to (square) for it
    steps: int = 300  # L-BFGS budget in function evaluations (forward+backward passes) per image
    image_size: int = 0  # optimise at this shorter side (0 = the image's own size); result is upsampled back
    history_size: int = 50
    style_policy: str = "random"  # "random" (seeded per painting) or "nearest" (VGG pool5; a variant)
    index_size: int = 224  # side the paintings and photos are resized to for the pool-feature index
    max_style_photos: int = 0  # 0 = index all training photos; else a seeded subsample of this many

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "weights": ("pretrained", "random", "auto"), "content_loss": CONTENT_LOSSES, "pooling": POOLINGS,
        "style_policy": POLICIES}


def pretrained_vgg19(allow_download: bool = False, home: Path | None = None) -> tuple[VGGFeatures, str]:
    """ImageNet VGG-19 from the sha256-verified weight file, or an ArtshiftError saying how to get it."""
    try:
        return vgg.pretrained_vgg19(allow_download, home)
    except ArtshiftError as exc:
        raise ArtshiftError(
            f"gatys needs the ImageNet VGG-19 weights, which are not available: {str(exc).splitlines()[0]}",
            hint="run `bench weights fetch vgg19` (or `bench weights import vgg19 PATH` offline), or run with "
                 "`--set weights=random` for a random-init VGG (labelled; not comparable to the paper)") from None


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of [B, C, H, W] features divided by C*H*W, so its scale is independent of size."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Gatys' E_l = 1/(4 N^2 M^2) sum (G - A)^2, i.e. a quarter of the summed squared difference of
    the size-normalised Grams. Summing (not averaging) over the N^2 entries keeps the deep layers,
    whose normalised Gram entries are ~1/N, from vanishing next to the shallow ones."""
    return (gram(features) - target_gram).pow(2).sum(dim=(1, 2)).mean() / 4


def content_layer_loss(features: torch.Tensor, target: torch.Tensor, kind: str = "paper") -> torch.Tensor:
    """Gatys' L_content = 1/2 sum (F - P)^2 (``paper``), or the per-entry mean (``mean``, version 1).

    The sum grows with the feature map's size while E_l does not, so at a fixed alpha/beta a
    larger image keeps more of its content: the paper's ratio is meant for its ~512 px images.
    """
    if kind == "paper":
        return (features - target).pow(2).sum() / 2
    return F.mse_loss(features, target)


def total_loss(feats: dict[str, torch.Tensor], target_content: torch.Tensor, target_grams: dict[str, torch.Tensor],
               config: GatysConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha L_content + beta sum_l w_l E_l, L_content, sum_l w_l E_l) with w_l = 1/5 (Gatys eq. 7)."""
    content = content_layer_loss(feats[CONTENT_LAYER], target_content, config.content_loss)
    style = sum(style_layer_loss(feats[k], target_grams[k]) for k in STYLE_LAYERS) / len(STYLE_LAYERS)
    assert isinstance(style, torch.Tensor)
    return config.content_weight * content + config.style_weight * style, content, style


def use_average_pooling_(vgg: VGGFeatures) -> None:
    """Replace every 2x2 max pooling of the stack with 2x2 average pooling (Gatys' synthesis choice)."""
    for i, m in enumerate(vgg.features):
        if isinstance(m, nn.MaxPool2d):
            vgg.features[i] = nn.AvgPool2d(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                           ceil_mode=m.ceil_mode)


def mean_activation_scales(vgg: VGGFeatures, images: torch.Tensor, batch_size: int = 8) -> dict[int, torch.Tensor]:
    """Per-output-channel factors that bring each conv's mean post-ReLU activation over ``images``
    (in [-1, 1]) and positions to 1, in network order (``benchmark.features.tv_features``' normalisation, run on
    a copy so the factors can be cached and applied again to the same weights bit for bit)."""
    work = copy.deepcopy(vgg.features).float()
    batches = [((images[s:s + batch_size] + 1) / 2 - vgg.mean.cpu()) / vgg.std.cpu()
               for s in range(0, len(images), batch_size)]
    normalise_stages_(list(work.cpu()), batches)
    scales = {}
    for i, (old, new) in enumerate(zip(vgg.features, work)):
        if isinstance(old, nn.Conv2d) and isinstance(new, nn.Conv2d):
            before = old.weight.detach().cpu().double().flatten(1).norm(dim=1)
            after = new.weight.detach().double().flatten(1).norm(dim=1)
            scales[i] = torch.where(before > 0, after / before.clamp_min(1e-300), torch.ones_like(before)).float()
    return scales


def apply_scales_(vgg: VGGFeatures, scales: dict[int, torch.Tensor]) -> None:
    with torch.no_grad():
        for i, s in scales.items():
            conv = vgg.features[int(i)]
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            s = s.to(conv.weight.device, conv.weight.dtype)
            conv.weight.mul_(s.view(-1, 1, 1, 1))
            conv.bias.mul_(s)


def scales_hash(scales: dict[int, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for i in sorted(scales):
        h.update(str(i).encode())
        h.update(scales[i].float().contiguous().numpy().tobytes())
    return h.hexdigest()[:6]


def _to_float(images: list[Any]) -> torch.Tensor:
    """PIL images -> [N, 3, H, W] in [-1, 1]."""
    import numpy as np

    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _resize_short(images: torch.Tensor, short: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    if min(h, w) == short:
        return images
    scale = short / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def _pool_features(vgg: VGGFeatures, images: torch.Tensor) -> torch.Tensor:
    """Globally averaged, L2-normalised pool5 features: the descriptor the nearest policy compares."""
    feats = vgg(images, ("pool5",))["pool5"].mean(dim=(2, 3))
    return F.normalize(feats, dim=1)


def _image_hash(image: torch.Tensor) -> bytes:
    return hashlib.sha256(image.detach().cpu().float().contiguous().numpy().tobytes()).digest()


class Gatys(Method):
    name = "gatys"
    # 2: the paper's content loss, random style photos, average pooling and mean-activation
    # normalisation became the defaults of every profile
    VERSION = "2"

    def __init__(self, config: GatysConfig | None = None, device: torch.device | str = "cpu"):
        super().__init__(config or GatysConfig(), device)
        c = self.config
        if c.weights not in ("pretrained", "random", "auto"):
            raise ArtshiftError(f"gatys: unknown weights {c.weights!r}",
                                hint="use weights=pretrained (ImageNet VGG-19) or weights=random (labelled)")
        if c.style_policy not in POLICIES:
            raise ArtshiftError(f"gatys: unknown style_policy {c.style_policy!r} (known: {', '.join(POLICIES)})")
        if c.content_loss not in CONTENT_LOSSES:
            raise ArtshiftError(f"gatys: unknown content_loss {c.content_loss!r} (known: {', '.join(CONTENT_LOSSES)})")
        if c.pooling not in POOLINGS:
            raise ArtshiftError(f"gatys: unknown pooling {c.pooling!r} (known: {', '.join(POOLINGS)})")
        if c.steps < 1:
            raise ArtshiftError(f"gatys: steps must be at least 1, got {c.steps}")
        if c.normalise and (c.normalise_photos < 1 or c.normalise_size < 32):
            raise ArtshiftError("gatys: normalise needs normalise_photos >= 1 and normalise_size >= 32 px, got "
                                f"{c.normalise_photos} and {c.normalise_size}")
        # The VGG is loaded by load_network (fit calls it with the run's home, where the weights
        # live); weights_id then names it: "pretrained:<sha256[:12]>" or "random-init:seed<N>:sd-<hash>".
        self.vgg: VGGFeatures | None = None
        self.weights_id: str | None = None
        self.seed = 0
        self.progress = True
        self.photo_paths: list[Path] = []
        self.photo_features: torch.Tensor | None = None
        self.base_weights_id: str | None = None
        self._prepared = False

    @classmethod
    def default_config(cls, profile: str) -> GatysConfig:
        check_profile(profile)
        if profile == "ci":
            return GatysConfig(steps=5, index_size=32, max_style_photos=16, weights="auto",
                               normalise_photos=4, normalise_size=32)
        if profile in ("smoke", "cpu"):  # cpu: Gatys has no training to lengthen; smoke's setting
            # the harness hands every method the painting at the profile's translate size (64 px,
            # benchmark.resolution) and resizes the result back, so Gatys optimises at 64 px like
            # the GANs' crops: 40 evaluations per painting; the mean activations over 16 photos at
            # 128 px (~10 s); with style_policy=nearest, 800 photos indexed at 64 px (~20 s).
            return GatysConfig(steps=40, index_size=64, max_style_photos=800, weights="auto",
                               normalise_photos=16, normalise_size=128)
        if profile == "quick":
            return GatysConfig(steps=200, image_size=256)
        return GatysConfig()  # paper: 300 evaluations at the image's own size

    @classmethod
    def label_tags(cls, config: GatysConfig) -> tuple[str, ...]:
        """The style-photo policy is always named: ``nearest`` favours Gatys, so its rows must say so."""
        return (f"style photo {config.style_policy}",)

    def load_network(self, home: Path | None = None, log=None) -> str:
        """Load the VGG-19 (once) and return its ``weights_id``; random-init only when configured."""
        if self.vgg is None:
            c = self.config
            if c.weights == "auto":
                # the ci/smoke policy, as for the FID Inception: pretrained when present (or
                # downloadable), otherwise a random-init VGG with a warning and a weights_id that
                # the harness records, so the run can never pass for the paper's baseline

                try:
                    vgg, wid = pretrained_vgg19(not offline(), home)
                except ArtshiftError as exc:
                    if weight_files.path_of("vgg19", home).is_file():
                        raise  # a present but corrupt file is an error, never a silent fallback
                    vgg, wid = random_vgg19(c.random_init_seed)
                    if log is not None:
                        log.warning("gatys: ImageNet VGG-19 unavailable (%s); using a RANDOM-INIT VGG-19 (%s). "
                                    "Its translations are not comparable to the pretrained style-transfer "
                                    "baseline", str(exc).splitlines()[0], wid)
            elif c.weights == "random":
                vgg, wid = random_vgg19(c.random_init_seed)
                if log is not None:
                    log.warning("gatys: random-init VGG-19 (%s) as asked (weights=random): its translations are "
                                "not comparable to the pretrained style-transfer baseline", wid)
            else:
                vgg, wid = pretrained_vgg19(c.allow_download, home)
            self.vgg, self.weights_id = vgg.to(self.device), wid
            self.base_weights_id, self._prepared = wid, False
        assert self.weights_id is not None
        return self.weights_id

    def _prepare_network(self, scales: dict[int, torch.Tensor] | None) -> None:
        """Rescale (when ``normalise``), then swap the pooling: the paper normalises the network as
        trained, with max pooling. ``weights_id`` then names the rescaling too (``...:meannorm-<hash>``)."""
        vgg = self._net()
        if self._prepared:
            return
        if scales is not None:
            apply_scales_(vgg, scales)
            self.weights_id = f"{self.base_weights_id}:meannorm-{scales_hash(scales)}"
        if self.config.pooling == "avg":
            use_average_pooling_(vgg)
        self._prepared = True

    def _net(self) -> VGGFeatures:
        if self.vgg is None:
            raise ArtshiftError("gatys: translate() called before fit() loaded the VGG and indexed the style photos")
        return self.vgg

    # --- fit: index the style photos -----------------------------------------------------------
    def _index_key(self, photos: list[Path], calibration: list[Path]) -> dict[str, Any]:
        c = self.config
        return {"weights_id": self.base_weights_id, "policy": c.style_policy, "index_size": c.index_size,
                "seed": self.seed, "max_style_photos": c.max_style_photos, "photos": [str(p) for p in photos],
                "pooling": c.pooling, "normalise": c.normalise, "normalise_size": c.normalise_size,
                "calibration": [str(p) for p in calibration]}

    def _calibration_photos(self, photos: list[Path]) -> list[Path]:
        """Evenly spaced over the sorted training photos, independent of the run seed: the network is
        part of the method, so every seed of a run uses the same rescaled VGG."""
        if not self.config.normalise:
            return []
        photos = sorted(Path(p) for p in photos)
        n = min(self.config.normalise_photos, len(photos))
        return [photos[(i * len(photos)) // n] for i in range(n)]

    def _scales(self, calibration: list[Path], skip_bad: bool, run: RunContext) -> dict[int, torch.Tensor]:
        size = self.config.normalise_size
        images = []
        for p in calibration:
            try:
                img = load_image(p)
            except BadImageError:
                if not skip_bad:
                    raise
                run.log.warning("gatys: skipping bad photo %s", p)
                continue
            images.append(F.interpolate(_to_float([img]), size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=True))
        if not images:
            raise ArtshiftError("gatys: no readable photo to normalise the VGG's activations on")
        run.log.info("gatys: rescaling the VGG-19 to mean activation 1 on %d photos at %d px", len(images), size)
        return mean_activation_scales(self._net(), torch.cat(images))

    def _select_photos(self, photos: list[Path]) -> list[Path]:
        photos = sorted(Path(p) for p in photos)
        n = self.config.max_style_photos
        if n and n < len(photos):
            gen = torch.Generator().manual_seed(self.seed)
            keep = sorted(torch.randperm(len(photos), generator=gen)[:n].tolist())
            photos = [photos[i] for i in keep]
        return photos

    def fit(self, data: TrainData, run: RunContext) -> None:
        self.seed = run.seed
        self.progress = run.progress
        self.load_network(run.home, run.log)
        photos = self._select_photos(list(data.photos))
        if not photos:
            raise ArtshiftError("gatys: no training photos to take the style from",
                                hint="check the photo training split of the data root")
        calibration = self._calibration_photos(list(data.photos))
        cache = run.run_dir / INDEX_FILE
        key = self._index_key(photos, calibration)
        saved: dict[str, Any] = {}
        if cache.exists():
            try:
                saved = torch.load(cache, map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated or foreign: rebuilt, not fatal
                run.log.warning("gatys: unreadable style index %s (%s): rebuilding it", cache,
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if saved.get("key") == key:
            self._prepare_network(saved["scales"])
            self.photo_paths = [Path(p) for p in saved["paths"]]
            self.photo_features = saved["features"]
            run.log.info("gatys: reusing the style index of %d photos (%s)", len(self.photo_paths), cache)
        else:
            scales = self._scales(calibration, data.skip_bad_images, run) if calibration else None
            self._prepare_network(scales)
            if self.config.style_policy == "random":
                self.photo_paths, self.photo_features = photos, None
            else:
                self.photo_paths, self.photo_features = self._index(photos, data.skip_bad_images, run)
            if not run.read_only:  # a finished run is never written to (its index was checked before)
                save_atomic({"key": key, "paths": [str(p) for p in self.photo_paths], "scales": scales,
                             "features": self.photo_features}, cache)
        if not run.read_only:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            (run.run_dir / "weights_id.txt").write_text(f"vgg19 {self.weights_id}\n")

    def _index(self, photos: list[Path], skip_bad: bool, run: RunContext) -> tuple[list[Path], torch.Tensor]:
        """Pool5 descriptors of the photos (resized to index_size squared), in batches of 32."""
        from tqdm.auto import tqdm

        kept, feats = [], []
        batch_paths: list[Path] = []
        batch_imgs: list[torch.Tensor] = []

        def flush():
            if batch_imgs:
                x = torch.cat(batch_imgs).to(self.device)
                with torch.no_grad():
                    feats.append(_pool_features(self._net(), x).cpu())
                kept.extend(batch_paths)
                batch_imgs.clear()
                batch_paths.clear()

        for p in tqdm(photos, desc="gatys: index style photos", disable=not run.progress, leave=False):
            try:
                img = load_image(p)
            except BadImageError:
                if not skip_bad:
                    raise
                run.log.warning("gatys: skipping bad photo %s", p)
                continue
            size = self.config.index_size
            batch_imgs.append(F.interpolate(_to_float([img]), size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=True))
            batch_paths.append(p)
            if len(batch_imgs) == 32:
                flush()
        flush()
        if not kept:
            raise ArtshiftError("gatys: every training photo was unreadable")
        return kept, torch.cat(feats)

    # --- style choice ------------------------------------------------------------------------------
    def choose_style(self, image: torch.Tensor) -> int:
        """Index into ``photo_paths`` of the style photo for one painting [3, H, W] in [-1, 1]."""
        if not self.photo_paths:
            raise ArtshiftError("gatys: translate() called before fit() indexed the style photos")
        if self.config.style_policy == "random":
            digest = hashlib.sha256(self.seed.to_bytes(8, "little", signed=True) + _image_hash(image)).digest()
            return int.from_bytes(digest[:8], "little") % len(self.photo_paths)
        size = self.config.index_size
        x = F.interpolate(image[None].to(self.device), size=(size, size), mode="bilinear",
                          align_corners=False, antialias=True)
        with torch.no_grad():
            q = _pool_features(self._net(), x).cpu()
        assert self.photo_features is not None
        return int(torch.argmax(self.photo_features @ q[0]))

    def _load_style(self, index: int, short: int) -> torch.Tensor:
        style = _to_float([load_image(self.photo_paths[index])]).to(self.device)
        return _resize_short(style, short)

    # --- translate: one L-BFGS optimisation per image -------------------------------------------
    def stylise(self, content: torch.Tensor, style: torch.Tensor, bar=None) -> torch.Tensor:
        """Optimise one image [1, 3, h, w] (init = content) towards the style photo's Grams."""
        c = self.config
        vgg = self._net()
        with torch.no_grad():
            target_content = vgg(content, (CONTENT_LAYER,))[CONTENT_LAYER]
            s_feats = vgg(style, STYLE_LAYERS)
            target_grams = {k: gram(v) for k, v in s_feats.items()}
        x = content.clone().contiguous().requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=c.steps, max_eval=c.steps,
                                history_size=c.history_size, tolerance_grad=1e-9, tolerance_change=1e-12,
                                line_search_fn="strong_wolfe")
        last: dict[str, float] = {}

        def closure():
            opt.zero_grad()
            feats = vgg(x, STYLE_LAYERS + (CONTENT_LAYER,))
            loss, content_loss, style_loss = total_loss(feats, target_content, target_grams, c)
            loss.backward()
            last.update(content=content_loss.item(), style=style_loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(last, refresh=False)
            return loss

        opt.step(closure)
        return x.detach().clamp(-1, 1)

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        from tqdm.auto import tqdm

        c = self.config
        out = torch.empty_like(images)
        with tqdm(total=len(images) * c.steps, desc="gatys: stylise", disable=not self.progress,
                  leave=False, dynamic_ncols=True) as bar:
            for i, image in enumerate(images):
                h, w = image.shape[-2:]
                content = image[None].to(self.device, torch.float32)
                short = min(h, w) if not c.image_size else min(c.image_size, min(h, w))
                content = _resize_short(content, short)
                style = self._load_style(self.choose_style(image), short)
                result = self.stylise(content, style, bar)
                if result.shape[-2:] != (h, w):
                    result = F.interpolate(result, size=(h, w), mode="bilinear", align_corners=False).clamp(-1, 1)
                out[i] = result[0].to(out.device, out.dtype)
                bar.n = (i + 1) * c.steps  # L-BFGS may stop early; keep the bar per image
                bar.refresh()
        return out
