"""The Typer application object; command modules attach themselves to it."""

import typer

app = typer.Typer(
    name="cnnkit",
    help="Image classification with convolutional networks: train, fine-tune, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from cnnkit import __version__

        print(f"cnnkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Image classification with convolutional networks: train, fine-tune, evaluate, predict.

    Exit codes: 0 success, 1 a problem with data, files, checkpoints or the
    environment, 2 command-line usage, 130 interrupted. CNNKIT_DEBUG=1 shows tracebacks.
    """
