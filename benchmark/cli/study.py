"""``bench study make|serve|tally``: user studies in the paper's three protocols (see ``reports.user_study``).

Registered in ``benchmark.core.registry.commands`` as ``benchmark.cli.study:register``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import DataRoot, Home, err, out
from benchmark.core import paths
from benchmark.core.errors import ArtshiftError

# paper > quick > smoke > ci: without --profile, the most thorough profile every method has finished at
PROFILE_PREFERENCE = ("paper", "quick", "cpu", "smoke", "ci")


def _split(text: Optional[str]) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def resolve_runs(store, artist: str, runs: list[str], methods: list[str], profile: Optional[str], run_seed: int):
    """Finished runs named by id (``--runs``) or by method (``--methods``: the newest finished run
    of each at ``--profile``; without it, at the most thorough profile all of them share)."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.pipeline.runs import find_run

    if bool(runs) == bool(methods):
        raise ArtshiftError("name the runs to compare with either --runs R1,R2 or --methods M1,M2")
    if runs:
        found = [find_run(store, run_id=r) for r in runs]
    elif profile:
        found = [find_run(store, method=m, artist=artist, profile=profile, seed=run_seed) for m in methods]
    else:
        for prof in PROFILE_PREFERENCE:
            if all(store.find_runs(method=m, artist=artist, profile=prof, seed=run_seed, status="done")
                   for m in methods):
                found = [find_run(store, method=m, artist=artist, profile=prof, seed=run_seed) for m in methods]
                break
        else:
            raise ArtshiftError(f"no profile has finished runs of all of {', '.join(methods)} for {artist} "
                                f"(seed {run_seed}) in {store.path}",
                                hint="run them first (`bench run --method M --artist A --profile ci`), or pass "
                                     "--runs")
    for r in found:
        if r.artist != artist:
            raise ArtshiftError(f"run {r.run_id} translated {r.artist}, not {artist}")
    names = [r.method for r in found]
    if len(set(names)) != len(names):
        raise ArtshiftError(f"two runs of the same method ({', '.join(names)}): the key names methods, so each "
                            "method may appear once")
    return found


def make_cmd(
    protocol: str = typer.Option(..., "--protocol", help="realism, coherency or vs-real"),
    artist: str = typer.Option(..., "--artist", "-a"),
    runs: Optional[str] = typer.Option(None, "--runs", help="run ids, comma-separated (realism/coherency: two)"),
    methods: Optional[str] = typer.Option(None, "--methods", help="methods, comma-separated: the newest finished "
                                                                  "run of each (see --profile)"),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="with --methods: runs of this profile "
                                          "(default: the most thorough profile, paper > quick > smoke > ci, at "
                                          "which every method has finished)"),
    run_seed: int = typer.Option(0, "--run-seed", help="with --methods: the runs' seed"),
    participants: int = typer.Option(..., "--participants", help="how many participants (one token and sheet each)"),
    trials: int = typer.Option(..., "--trials", help="tallied pairs per participant, without catch and practice"),
    seed: int = typer.Option(0, "--seed", help="seeds every participant's order and sides"),
    scales: Optional[str] = typer.Option(None, "--scales", help="image sizes in px, comma-separated (default 256; "
                                                                "vs-real 256,170,128)"),
    catch: int = typer.Option(2, "--catch", help="catch trials per participant: a painting vs a real photo"),
    practice: int = typer.Option(1, "--practice", help="practice pairs per participant (never tallied)"),
    no_pdf: bool = typer.Option(False, "--no-pdf", help="HTML sheets only"),
    output: Path = typer.Option(..., "--out", "-o", help="a new (or empty) folder for the study"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
) -> None:
    """Write participants' tokens, sheets (HTML, PDF), re-encoded images and a separate answer key."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark import data
    from benchmark.core.store import Store
    from reports import user_study

    user_study.protocol(protocol)
    try:
        sizes = [int(s) for s in _split(scales)] or None
    except ValueError:
        raise ArtshiftError(f"--scales must be integers, got {scales!r}") from None
    home_dir = paths.home(home)
    store = Store(home_dir / "results.sqlite")
    found = resolve_runs(store, artist, _split(runs), _split(methods), profile, run_seed)
    root = data_root or (Path(os.environ["ARTSHIFT_DATA"]) if os.environ.get("ARTSHIFT_DATA") else found[0].data_root)
    domain = data.ensure_domain(artist, root, home_dir, allow_download=False, progress=False)
    generated: dict[str, dict[str, Path]] = {}
    for r in found:
        generated[r.method] = {}
        for p in domain.paintings_test:
            f = r.output(domain.relpath(p))
            if f.exists():
                generated[r.method][domain.relpath(p)] = f
    names = {p: f"{split}/{domain.relpath(p)}" for split, (_, files) in domain.splits().items() for p in files}
    sources = user_study.Sources(
        generated=generated, paintings={domain.relpath(p): p for p in domain.paintings_test},
        real=list(domain.photos_test), practice_paintings=list(domain.paintings_train),
        practice_photos=list(domain.photos_train), runs={r.method: r.run_id for r in found}, artist=artist,
        names=names)
    made = user_study.make_study(output, protocol_name=protocol, methods=[r.method for r in found], sources=sources,
                                 participants=participants, trials=trials, seed=seed, scales=sizes, catch=catch,
                                 practice=practice, pdf=not no_pdf)
    out.print(escape(f"study ({protocol}, {artist}) written to {made.folder}"), highlight=False)
    for r in found:
        out.print(escape(f"  {r.method}: run {r.run_id} ({r.profile}, seed {r.seed})"), highlight=False)
    out.print(escape(f"  sheets: {made.folder / 'sheets'}; answer key (keep apart): {made.folder / 'key'}"),
              highlight=False)
    out.print(escape(f"  {len(made.tokens)} participant tokens in {made.folder / 'tokens.txt'} "
                     "(the study keeps only their hashes)"), highlight=False)


def serve_cmd(
    folder: Path = typer.Option(..., "--dir", help="a folder written by `bench study make`"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback unless asked)"),
    port: int = typer.Option(8765, "--port"),
    exposure: Optional[float] = typer.Option(None, "--exposure", help="hide the images after this many seconds "
                                                                      "(e.g. 1 as in the pix2pix study)"),
) -> None:
    """Collect answers on a local page: one pair at a time, stored in DIR/answers.sqlite as given."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from reports.study_server import make_server

    server = make_server(folder, host=host, port=port, exposure_s=exposure, quiet=False)
    shown_host, shown_port = str(server.server_address[0]), int(server.server_address[1])
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(escape(f"warning: listening on {host}, reachable from other machines"))
    out.print(escape(f"serving {folder} on http://{shown_host}:{shown_port}/  (participants open "
                     f"http://{shown_host}:{shown_port}/#t=TOKEN with a token from {Path(folder) / 'tokens.txt'}); "
                     "Ctrl-C stops"), highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def tally_cmd(
    folder: Path = typer.Option(..., "--dir", help="a folder written by `bench study make`"),
    answers: list[Path] = typer.Option([], "--answers", help="CSV typed from paper sheets: participant,trial,choice "
                                                             "(choice A or B; repeatable)"),
    max_catch_failures: int = typer.Option(0, "--max-catch-failures", help="exclude participants who fail more "
                                                                           "catch trials than this"),
    bootstrap: int = typer.Option(2000, "--bootstrap", help="bootstrap replicates (B)"),
) -> None:
    """Share of choices per method in the paper's layout; writes DIR/tally.json."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from reports import user_study

    if bootstrap < 100:
        raise ArtshiftError("--bootstrap must be at least 100")
    result = user_study.tally_folder(folder, answers, max_catch_failures=max_catch_failures, b=bootstrap)
    sys.stdout.write(user_study.to_markdown(result))
    out.print(escape(f"wrote {Path(folder) / 'tally.json'}"), highlight=False)


def register(app: typer.Typer) -> None:
    study = typer.Typer(no_args_is_help=True, help="user studies: make sheets, serve the page, tally the answers")
    study.command("make")(make_cmd)
    study.command("serve")(serve_cmd)
    study.command("tally")(tally_cmd)
    app.add_typer(study, name="study")
