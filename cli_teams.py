"""Teams commands: `imp teams manifest` writes the app package to upload in a tenant (registered by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from core.errors import ImpError

teams_cli = typer.Typer(no_args_is_help=True, help="Microsoft Teams: the app package.")
err = Console(stderr=True)


@teams_cli.command("manifest")
def manifest(
    out: Annotated[Path, typer.Option("--out", help="A .zip path, or a folder for imp-teams-VERSION.zip")] = Path("."),
    app_id: Annotated[str | None, typer.Option("--app-id", help="The bot's Microsoft App ID "
                                                                  "(default IMP_TEAMS__APP_ID)")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Where IMP is served (https); gives the web pages")] = None,
    website_url: Annotated[str | None, typer.Option("--website-url", help="The developer's web page (https)")] = None,
    privacy_url: Annotated[str | None, typer.Option("--privacy-url")] = None,
    terms_url: Annotated[str | None, typer.Option("--terms-url")] = None,
    teams_app_id: Annotated[str | None, typer.Option("--teams-app-id", help="The Teams app's own GUID "
                                                                            "(default: the App ID)")] = None,
    version: Annotated[str, typer.Option("--version", help="Raise it for every upload of a changed package")] = "1.0.0",
    name: Annotated[str | None, typer.Option("--name", help="Short name shown in Teams")] = None,
    developer: Annotated[str | None, typer.Option("--developer", help="Developer (company) name")] = None,
    valid_domain: Annotated[list[str] | None, typer.Option("--valid-domain", help="Repeatable")] = None,
    mention_only: Annotated[bool, typer.Option("--mention-only", help="Ask for no resource-specific consent: the "
                                                                      "bot sees only messages that mention it")] = False,
) -> None:
    """Write the Teams app package (manifest.json and two icons, zipped) ready to upload."""
    from bot.teams.manifest import write_package
    from cli import _settings_or_exit

    app_id = app_id or _settings_or_exit().teams.app_id
    if not app_id:
        err.print("[red]error[/red]: give --app-id or set IMP_TEAMS__APP_ID (the bot's Microsoft App ID)",
                  highlight=False)
        raise typer.Exit(2)
    options = {"host": host, "website_url": website_url, "privacy_url": privacy_url, "terms_url": terms_url,
               "teams_app_id": teams_app_id, "short_name": name, "developer_name": developer,
               "valid_domains": tuple(valid_domain or ())}
    try:
        written = write_package(out, app_id=app_id, version=version, all_messages=not mention_only,
                                **{k: v for k, v in options.items() if v})
    except ImpError as e:
        err.print(f"[red]error[/red] ({e.code}): {escape(e.detail)}", highlight=False)
        raise typer.Exit(2) from None
    err.print(f"wrote {escape(str(written))}: upload it in the Teams admin center (Manage apps → Upload) or the "
              "Developer Portal", highlight=False)
    print(written)
