"""``bench downstream``: photo-trained classifier accuracy on paintings and their translations."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from benchmark.cli.common import DataRoot, Home, err, out
from benchmark.core.errors import ArtshiftError


def _pct(p) -> str:
    return f"{100 * p.value:.1f}% [{100 * p.low:.1f}, {100 * p.high:.1f}]"


def downstream_cmd(
    artist: str = typer.Option("pacs", "--artist", "-a", help="a labelled domain (pacs)"),
    profile: str = typer.Option("smoke", "--profile", "-p",
                                help="which runs to score (ci, smoke, quick, paper); also sizes the scratch "
                                     "classifier (not --probe or --finetune)"),
    seed: int = typer.Option(0, "--seed", help="which runs to score"),
    runs: str = typer.Option("", "--runs", help="run ids, comma-separated (default: every method's newest finished "
                                                "run of the artist at --profile and --seed)"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    device: Optional[str] = typer.Option(None, "--device",
                                         help="cpu (default), or cuda; with --finetune: cuda when available"),
    probe: bool = typer.Option(False, "--probe", help="a linear classifier on frozen pretrained features (see "
                                                      "--backbone) instead of the small CNN trained from scratch"),
    backbone: Optional[str] = typer.Option(None, "--backbone",
                                           help="with --probe: effnet-lite0 (default; ImageNet EfficientNet-Lite0's "
                                                "pooled head), inception (the FID Inception's pool3) or resnet152 "
                                                "(needs its ImageNet file); comma-separated for one table each, "
                                                "e.g. effnet-lite0,inception"),
    finetune: bool = typer.Option(False, "--finetune",
                                  help="fine-tune a whole ImageNet network (see --arch; DomainBed's ERM recipe) "
                                       "instead of the small CNN trained from scratch"),
    arch: Optional[str] = typer.Option(None, "--arch",
                                       help="with --finetune: resnet152 (default; a GPU, needs its ImageNet file, "
                                            "5000 steps) or effnet-lite0 (the wheel's EfficientNet-Lite0; runs on "
                                            "the CPU, 500 steps)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                        help="with --finetune: training steps (default: the network's, see --arch)"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu",
                                   help="with --finetune: run ResNet-152 (or more than effnet-lite0's default "
                                        "steps) on the CPU (takes hours)"),
    weights: Optional[str] = typer.Option(None, "--weights",
                                          help="with --probe or --finetune: pretrained (default; the trained weights "
                                               "must be present) or random (a random-init network, labelled so)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Train (or reuse) a photo classifier; score photos, the test paintings and every run's translations."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses.downstream import evaluate

    if probe and finetune:
        raise ArtshiftError("--probe and --finetune are two different classifiers (a linear probe on frozen "
                            "features, the whole network fine-tuned); one call scores one",
                            hint="drop one of them; run the command twice for both (their rows never mix)")
    if allow_cpu and not finetune:
        raise ArtshiftError("--allow-cpu lets --finetune run on the CPU; the other classifiers always may",
                            hint="add --finetune, or drop --allow-cpu")
    if (arch is not None or steps is not None) and not finetune:
        raise ArtshiftError("--arch and --steps choose the network and length of --finetune",
                            hint="add --finetune, or drop --arch/--steps")
    if backbone is not None and not probe:
        raise ArtshiftError("--backbone chooses the network under --probe",
                            hint="add --probe, or drop --backbone")
    probe_cfgs: list = [None]
    finetune_cfg = None
    if probe:
        # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
        from benchmark.analyses.probe import ProbeConfig, parse_backbones

        # every name checked before any work; one probe (and one table) per backbone
        probe_cfgs = [ProbeConfig(weights=weights or "pretrained", backbone=b) for b in parse_backbones(backbone)]
    elif finetune:
        # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
        from benchmark.analyses.finetune import FinetuneConfig, check_device, default_device

        finetune_cfg = FinetuneConfig(weights=weights or "pretrained", arch=arch or "resnet152")
        if steps is not None:  # else the network's own default (5000, or effnet-lite0's 500)
            finetune_cfg = dataclasses.replace(finetune_cfg, steps=steps)
        device = device or default_device()
        check_device(device, allow_cpu, finetune_cfg)
    elif weights is not None:
        raise ArtshiftError("--weights chooses the network of --probe or --finetune; the default classifier is "
                            "trained from scratch and has no pretrained weights",
                            hint="add --probe or --finetune, or drop --weights")
    for i, probe_cfg in enumerate(probe_cfgs):
        res = evaluate(artist, profile=profile, seed=seed,
                       run_ids=[r.strip() for r in runs.split(",") if r.strip()], data_root=data_root, home=home,
                       device=device or "cpu", progress=not quiet, probe=probe_cfg, finetune=finetune_cfg,
                       allow_cpu=allow_cpu, log_fn=lambda m: err.print(escape(m), highlight=False))
        _print(res, artist, profile, seed, notes=i == len(probe_cfgs) - 1)


def _print(res, artist: str, profile: str, seed: int, notes: bool = True) -> None:
    """The tables of one classifier's ``evaluate`` result, and (``notes``: once per command) what it lacked."""
    clf = res.classifier
    table = Table(title=escape(f"downstream accuracy on {artist} / {profile} / seed {seed}: {clf.title} trained on "
                               f"{clf.n_train} photos (95% Wilson intervals; McNemar vs original paintings)"))
    for col in ("set", "n", "accuracy \u2191", "balanced accuracy \u2191", "McNemar (orig only / trans only, p)",
                "gap closed"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for s in (res.photo, res.original):
        label = f"{s.name}" + (f" [run {res.original_run}]" if s is res.original and res.original_run else "")
        table.add_row(escape(label), str(s.n), _pct(s.accuracy), _pct_b(s), "", "")
    for c in res.runs:
        m = c.mcnemar
        gap = "n/a (no gap)" if c.gap_closed is None else f"{100 * c.gap_closed:.1f}%"
        table.add_row(escape(c.score.name), str(c.score.n), _pct(c.score.accuracy), _pct_b(c.score),
                      f"{m.only_first} / {m.only_second}, p={m.p_value:.3g}", gap)
    out.print(table)
    per = Table(title="per-class accuracy (n)")
    per.add_column("class")
    sets = [res.photo, res.original] + [c.score for c in res.runs]
    for s in sets:
        per.add_column(escape(s.name), justify="right")
    for cls in clf.classes:
        per.add_row(cls, *[f"{100 * s.per_class[cls].value:.1f}% ({s.per_class[cls].n})" if cls in s.per_class
                           else "-" for s in sets])
    out.print(per)
    if notes and not res.runs:
        err.print(escape(f"no finished translation runs of {artist} at profile {profile}, seed {seed}: run "
                         f"`bench run --method cyclegan --artist {artist} --profile {profile}` first, or pass --runs"))
    if notes and res.original_run is None:
        err.print(escape(f"no finished `original` run of {artist} at profile {profile}, seed {seed}: the paintings' "
                         f"accuracy is printed but not stored (run `bench run --method original --artist {artist} "
                         f"--profile {profile}` to get its leaderboard row)"))
    err.print(escape("the photo-test ceiling is printed, not stored: it measures the classifier, not a method. "
                     + (f"rows stored on runs {', '.join(res.stored)}" if res.stored else "no rows stored")),
              highlight=False)


def _pct_b(s) -> str:
    b = s.balanced_interval
    return f"{100 * s.balanced:.1f}% [{100 * b.low:.1f}, {100 * b.high:.1f}]"


def register(app: typer.Typer) -> None:
    app.command("downstream")(downstream_cmd)
