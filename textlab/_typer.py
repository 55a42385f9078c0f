"""typer's vendored click, imported in this one place.

typer (pinned to a tested minor range in pyproject.toml) ships its own copy of click as the
private module `typer._click`; textlab needs its exception classes to turn click's errors into one
line. `tests/test_core_cli.py::test_typer_still_vendors_click_where_textlab_imports_it` fails when a
typer release moves it.
"""

from typer import _click as click  # noqa: F401

from typer._click.shell_completion import CompletionItem  # noqa: E402,F401

ClickException = click.exceptions.ClickException
ClickUsageError = click.exceptions.UsageError
NoArgsIsHelpError = click.exceptions.NoArgsIsHelpError


def remaining_args(ctx: "click.Context") -> list[str]:
    """The words a group's context left for its subcommand (click keeps them in a private list)."""
    return [*getattr(ctx, "_protected_args", []), *ctx.args]
