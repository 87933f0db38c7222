"""cnnkit download: datasets and ImageNet weights, verified, resumable, usable offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import DataDirOption, JsonOption, QuietOption, handle_errors, print_json, stdout_console


@app.command(
    epilog="Examples:\n"
    '  cnnkit download mnist cifar10\n'
    '  cnnkit download --weights resnet18 vgg16\n'
    '  cnnkit download --list\n'
    '  cnnkit download mnist --mirror http://10.0.0.5:8000/\n'
    '  cnnkit download cats-dogs --from ~/kagglecatsanddogs_5340.zip',
)
@handle_errors
def download(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Datasets (mnist, fashion-mnist, cifar10, cats-dogs), or models with --weights.", show_default=False)] = None,
    weights: Annotated[bool, typer.Option("--weights", help="NAMES are models: fetch their ImageNet weights into the torch hub cache.")] = False,
    list_all: Annotated[bool, typer.Option("--list", help="Show everything downloadable and whether it is present and verified.")] = False,
    mirror: Annotated[Optional[str], typer.Option(
        "--mirror", envvar="CNNKIT_MIRROR", metavar="URL",
        help="Base URL replacing the upstream host (path and file names kept; BASE/<file name> is tried next).")] = None,
    from_files: Annotated[Optional[list[Path]], typer.Option(
        "--from", metavar="FILE",
        help="A file or archive fetched by hand (or a folder of them): verified and installed as if downloaded. Repeatable.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even when present and verified.")] = False,
    data_dir: DataDirOption = Path("data"),
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download datasets or ImageNet weights, check their checksums and install them where train finds them.

    Downloads go to NAME.partial and resume with HTTP Range after an interruption
    (Ctrl-C keeps the partial file and exits 130). A body larger than the file's
    expected size is stopped and deleted; each file has a deadline (env
    CNNKIT_DOWNLOAD_DEADLINE in seconds; default 10 min + size at 64 KiB/s).
    Archives may hold only files and folders. Exit codes: 0 done, 1 a download,
    checksum or archive problem (or no network), 2 usage, 130 interrupted.
    """
    from cnnkit.data.catalog import catalog
    from cnnkit.errors import UsageError
    from cnnkit.hub import install as installer
    from cnnkit.reporting import Reporter

    if list_all:
        if names or from_files or weights:
            raise UsageError("--list takes no names, --weights or --from")
        _print_list(data_dir, mirror, json_output)
        return
    if not names:
        raise UsageError(
            "nothing to download: name datasets, or models with --weights",
            "try `cnnkit download mnist`, `cnnkit download --weights resnet18` or `cnnkit download --list`",
        )
    reporter = Reporter(quiet=quiet or json_output)
    options = installer.InstallOptions(Path(data_dir), mirror=mirror or None, force=force, reporter=reporter)
    results = []
    chosen = []
    for name in dict.fromkeys(names):
        entry = catalog().get(name.strip().lower())
        if not weights and entry is not None and entry.layout == "shipped":
            results.append(installer.InstallResult(name, "shipped", None, notes=[installer.SHIPPED_NOTE]))
            continue
        chosen.append(installer.weights_source(name) if weights else installer.dataset_source(name))
    imports = installer.match_imports(chosen, list(from_files or []))
    for source, imported in zip(chosen, imports):
        results.append(installer.install(source, options, imported))
        for note in results[-1].notes:
            reporter.warn(note)
    _print_results(results, json_output, quiet)


def _print_results(results, json_output: bool, quiet: bool) -> None:
    if json_output:
        print_json([r.as_dict() for r in results])
        return
    if quiet:
        for r in results:
            if r.path is not None:
                print(r.path)
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("name", "result", "path", "quarantined"):
        table.add_column(column)
    for r in results:
        quarantined = ", ".join(q.path for q in r.quarantined) if r.quarantined else ""
        table.add_row(r.name, r.action, str(r.path) if r.path else "-", quarantined)
    stdout_console().print(table)


def _print_list(data_dir: Path, mirror: Optional[str], json_output: bool) -> None:
    from cnnkit.hub import install as installer
    from cnnkit.hub.download import candidate_urls
    from cnnkit.hub.sources import sources
    from cnnkit.reporting import human_bytes

    rows = []
    for key, source in sources().items():
        rows.append({
            "name": key, "description": source.description, "size": source.size,
            "url": candidate_urls(source.files[0], mirror or None)[0] + (f" (+{len(source.files) - 1} files)" if len(source.files) > 1 else ""),
            "path": str(installer.target_dir(source, data_dir)), "status": installer.status(source, data_dir),
        })
    if json_output:
        print_json(rows)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("status", no_wrap=True)
    style = {"verified": "green", "missing": "dim", "corrupt": "red"}
    for row in rows:
        approx = "~" if not all(f.size_exact for f in sources()[row["name"]].files) else ""  # the size is only an order of magnitude
        table.add_row(row["name"], approx + human_bytes(row["size"]), row["url"],
                      Text(row["status"], style=style.get(row["status"], "yellow")))
    stdout_console().print(table)
