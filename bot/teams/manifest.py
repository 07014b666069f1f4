"""The Teams app package an admin uploads to install IMP: manifest.json and two icons, zipped.

This is what `imp teams manifest` writes (``write_package``) for the Teams adapter (bot/teams): the
manifest declares the bot (its Microsoft App ID, the scopes it works in, the ``ask`` and ``minutes``
commands, files in 1:1 chats) and the resource-specific permissions that let it see every message of a
channel or chat it is added to, so a file dropped there without a mention is still indexed (Slack's
``message.channels`` events do the same). The icons are drawn here with Pillow, so the package needs no
binary files in the source tree; an admin may pass their own.

Every input is checked against the limits of the Teams manifest schema (and the tighter ones of its
documentation, such as 32 characters for a command) before anything is written: a package Teams would
refuse is never produced.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.errors import InvalidRequest

MANIFEST_VERSION = "1.22"
SCHEMA_URL = f"https://developer.microsoft.com/en-us/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
COLOR_ICON = "color.png"
OUTLINE_ICON = "outline.png"
COLOR_SIZE = 192
OUTLINE_SIZE = 32
ACCENT = "#2C3E50"
ICON_BYTES = 1_000_000  # an icon file an admin passes is read up to this size
SCOPES = ("personal", "team", "groupChat")
# Without these an app only hears messages that @mention it in channels and group chats; with them
# (granted by the team or chat owner when adding IMP) it also sees files shared there without a mention.
RSC_ALL_MESSAGES = ("ChannelMessage.Read.Group", "ChatMessage.Read.Chat")
# (title, description) per command list: in a 1:1 chat IMP answers from every conversation the person is in.
PERSONAL_COMMANDS = (
    ("ask", "Ask a question: IMP answers from the documents and recordings of your teams and chats, with sources."),
    ("minutes", "Write minutes of the latest recording you shared with IMP here, or name one: minutes FILE."),
)
GROUP_COMMANDS = (
    ("ask", "Ask a question: IMP answers from the documents and recordings shared here, with sources."),
    ("minutes", "Write minutes of the latest recording shared here, or name one: minutes FILE."),
)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8})$")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?$")  # host[:port], *.domain
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TeamsApp:
    """What the manifest says. Only ``app_id`` has no default.

    ``app_id``: the bot's Microsoft App ID (its Entra app registration's client id, IMP_TEAMS__APP_ID).
    ``teams_app_id``: the Teams app's own id; by default the same GUID, so one id names IMP everywhere.
    ``host``: the public HTTPS host of `imp serve` (where Azure Bot sends /api/messages); the developer
    pages default to its dashboard. ``all_messages``: ask for the resource-specific permissions above.
    """

    app_id: str
    teams_app_id: str | None = None
    version: str = "1.0.0"
    short_name: str = "IMP"
    full_name: str = "IMP: answers from your documents and meetings"
    short_description: str = "Answers with sources from your documents and recordings; writes minutes."
    full_description: str = (
        "IMP answers questions from the documents and recordings shared in your channels and chats, and "
        "cites its sources: the page of a document, or the minute and speaker of a recording. Mention IMP "
        "in a channel or write to it in a chat. Share a file with it to make it searchable for the members "
        "of that conversation, and type \"minutes\" to get the minutes of a recorded meeting: summary, "
        "decisions, action items with owners and due dates, and open questions. React with a thumbs up or "
        "down to an answer so IMP learns.")
    developer_name: str = "IMP"
    host: str | None = None
    website_url: str | None = None
    privacy_url: str | None = None
    terms_url: str | None = None
    accent_color: str = ACCENT
    valid_domains: tuple[str, ...] = ()
    all_messages: bool = True
    color_icon: Path | None = None
    outline_icon: Path | None = None


def _guid(value: str, what: str) -> str:
    if not isinstance(value, str) or not _GUID.fullmatch(value.strip()):
        raise InvalidRequest(f"the {what} must be a GUID like 1b4c9a6e-3f1d-4d2a-9c8b-5e7f6a1b2c3d")
    value = value.strip().lower()
    if value.replace("-", "").strip("0") == "":
        raise InvalidRequest(f"the {what} is the empty GUID")
    return value


def _words(value: str, what: str, limit: int) -> str:
    value = (value or "").strip()
    if not value or _CONTROLS.search(value):
        raise InvalidRequest(f"the {what} must be one line of text")
    if len(value) > limit:
        raise InvalidRequest(f"the {what} holds {len(value)} characters; Teams allows at most {limit}")
    return value


def _paragraph(value: str, what: str, limit: int) -> str:
    value = (value or "").replace("\r\n", "\n").strip()
    if not value or _CONTROLS.search(value.replace("\n", "")):
        raise InvalidRequest(f"the {what} must be text")
    if len(value) > limit:
        raise InvalidRequest(f"the {what} holds {len(value)} characters; Teams allows at most {limit}")
    return value


def _https(value: str, what: str) -> str:
    value = (value or "").strip()
    bad = InvalidRequest(f"the {what} must be an https:// address (no user name or password) of at most "
                         "2,048 characters")
    if len(value) > 2048 or _CONTROLS.search(value) or any(c.isspace() for c in value):
        raise bad
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise bad from None
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc or not _HOST.fullmatch(parts.netloc):
        raise bad
    return value


def _host(value: str, what: str) -> str:
    value = (value or "").strip().lower().rstrip(".")
    if len(value) > 253 or not _HOST.fullmatch(value):
        raise InvalidRequest(f"the {what} must be a host name such as imp.example.com, without https:// or a path")
    return value


def manifest(app: TeamsApp) -> dict[str, Any]:
    """manifest.json as a dict, every field checked; raises InvalidRequest on the first bad one."""
    bot_id = _guid(app.app_id, "bot's app id (the Application (client) ID of its app registration)")
    teams_id = _guid(app.teams_app_id, "Teams app id") if app.teams_app_id else bot_id
    if not isinstance(app.version, str) or not _SEMVER.fullmatch(app.version.strip()):
        raise InvalidRequest("the app version must be three numbers like 1.0.0; raise it each time you upload a change")
    if not isinstance(app.accent_color, str) or not _HEX.fullmatch(app.accent_color):
        raise InvalidRequest("the accent colour must be a hex colour like #2C3E50")
    host = _host(app.host, "host") if app.host else None
    if not (app.website_url or host):
        raise InvalidRequest("give the public host of IMP (host=imp.example.com) or a website_url for the developer page")
    website = _https(app.website_url or f"https://{host}/dashboard", "website URL")
    domains = [_host(d, "valid domain") for d in app.valid_domains]
    if len(domains) > 16:
        raise InvalidRequest("Teams allows at most 16 valid domains")
    out: dict[str, Any] = {
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": app.version.strip(),
        "id": teams_id,
        "developer": {
            "name": _words(app.developer_name, "developer name", 32),
            "websiteUrl": website,
            "privacyUrl": _https(app.privacy_url or website, "privacy URL"),
            "termsOfUseUrl": _https(app.terms_url or website, "terms of use URL"),
        },
        "name": {"short": _words(app.short_name, "short name", 30), "full": _words(app.full_name, "full name", 100)},
        "description": {"short": _words(app.short_description, "short description", 80),
                        "full": _paragraph(app.full_description, "full description", 4000)},
        "icons": {"color": COLOR_ICON, "outline": OUTLINE_ICON},
        "accentColor": app.accent_color.upper(),
        "bots": [{
            "botId": bot_id,
            "scopes": list(SCOPES),
            "supportsFiles": True,  # files sent to IMP in a 1:1 chat
            "isNotificationOnly": False,
            "commandLists": [
                {"scopes": ["personal"], "commands": [{"title": t, "description": d} for t, d in PERSONAL_COMMANDS]},
                {"scopes": ["team", "groupChat"],
                 "commands": [{"title": t, "description": d} for t, d in GROUP_COMMANDS]},
            ],
        }],
    }
    if domains:
        out["validDomains"] = list(dict.fromkeys(domains))
    if app.all_messages:
        # Resource-specific consent needs webApplicationInfo; its resource is unused by RSC but must be set.
        out["webApplicationInfo"] = {"id": bot_id, "resource": f"api://botid-{bot_id}"}
        out["authorization"] = {"permissions": {"resourceSpecific": [
            {"name": name, "type": "Application"} for name in RSC_ALL_MESSAGES]}}
    return out


# -- icons -----------------------------------------------------------------------------


def _bubble(draw: Any, size: int, inset: float, value: Any) -> None:
    """A speech bubble (IMP answers in chat) filling ``size`` less ``inset`` pixels on every side."""
    lo, hi = inset, size - 1 - inset
    bottom = lo + (hi - lo) * 0.74
    draw.rounded_rectangle((lo, lo + (hi - lo) * 0.04, hi, bottom), radius=(hi - lo) * 0.2, fill=value)
    w = hi - lo
    draw.polygon([(lo + w * 0.2, bottom - 1), (lo + w * 0.2, hi), (lo + w * 0.5, bottom - 1)], fill=value)


def draw_icons(accent: str = ACCENT) -> tuple[bytes, bytes]:
    """(color.png, outline.png): a white speech bubble holding three lines of text on the accent colour,
    192x192; and the bubble as a white outline on a transparent background, 32x32, as Teams asks of each."""
    from PIL import Image, ImageDraw  # Pillow: only the package writer needs it

    rgb = tuple(int(accent[i:i + 2], 16) for i in (1, 3, 5))
    color = Image.new("RGB", (COLOR_SIZE, COLOR_SIZE), rgb)
    d = ImageDraw.Draw(color)
    inset = COLOR_SIZE * 0.22  # Teams crops the colour icon's corners; the symbol stays in the middle
    _bubble(d, COLOR_SIZE, inset, (255, 255, 255))
    span = COLOR_SIZE - 2 * inset
    for i, length in enumerate((0.62, 0.48, 0.55)):  # three lines of "text"
        y = inset + span * (0.2 + 0.15 * i)
        d.rounded_rectangle((inset + span * 0.16, y, inset + span * (0.16 + length), y + span * 0.07),
                            radius=span * 0.035, fill=rgb)
    # The outline: the bubble less a smaller bubble, drawn four times larger and reduced for smooth edges,
    # as the alpha of pure white pixels (Teams wants only white and transparency here).
    big = OUTLINE_SIZE * 4
    mask = Image.new("L", (big, big), 0)
    m = ImageDraw.Draw(mask)
    _bubble(m, big, big * 0.06, 255)
    _bubble(m, big, big * 0.06 + 9, 0)
    alpha = mask.resize((OUTLINE_SIZE, OUTLINE_SIZE), Image.Resampling.LANCZOS)
    outline = Image.new("RGBA", (OUTLINE_SIZE, OUTLINE_SIZE), (255, 255, 255, 0))
    outline.putalpha(alpha)
    return _png(color), _png(outline)


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _own_icon(path: Path, size: int, *, outline: bool) -> bytes:
    """An icon an admin supplies, checked as Teams checks it: a PNG of the exact size; the outline only
    white on transparent."""
    from PIL import Image, UnidentifiedImageError

    what = "outline icon" if outline else "colour icon"
    try:
        data = Path(path).read_bytes()[: ICON_BYTES + 1]
    except OSError as e:
        raise InvalidRequest(f"cannot read the {what} {path}: {e.strerror or e}") from e
    if len(data) > ICON_BYTES:
        raise InvalidRequest(f"the {what} is larger than {ICON_BYTES // 1000} KB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG" or img.size != (size, size):
                raise InvalidRequest(f"the {what} must be a {size}x{size} PNG (it is a {img.size[0]}x{img.size[1]} "
                                     f"{img.format})")
            if outline:
                px = img.convert("RGBA").tobytes()  # r, g, b, a for each pixel
                if any(px[i + 3] and px[i:i + 3] != b"\xff\xff\xff" for i in range(0, len(px), 4)):
                    raise InvalidRequest("the outline icon must be white on a transparent background")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise InvalidRequest(f"the {what} is not a readable PNG") from e
    return data


def package(app: TeamsApp) -> bytes:
    """The zip Teams uploads: manifest.json, color.png and outline.png at its root.

    Entries carry a fixed date, so the same settings give the same bytes (a package can be diffed).
    """
    doc = manifest(app)
    color, outline = draw_icons(doc["accentColor"])
    if app.color_icon is not None:
        color = _own_icon(app.color_icon, COLOR_SIZE, outline=False)
    if app.outline_icon is not None:
        outline = _own_icon(app.outline_icon, OUTLINE_SIZE, outline=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in (("manifest.json", json.dumps(doc, ensure_ascii=False, indent=2).encode() + b"\n"),
                           (COLOR_ICON, color), (OUTLINE_ICON, outline)):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def write_package(path: Path | str, *, app_id: str, **options: Any) -> Path:
    """Write the app package to ``path`` (a .zip file, or a folder to put ``imp-teams-VERSION.zip`` in)
    and return where it went. ``options`` are the other fields of ``TeamsApp``.

    Nothing is written unless every field is valid; the file appears whole or not at all.
    """
    unknown = set(options) - set(TeamsApp.__dataclass_fields__)
    if unknown:
        raise InvalidRequest(f"unknown package option(s): {', '.join(sorted(unknown))}")
    if "valid_domains" in options:
        options["valid_domains"] = tuple(_as_list(options["valid_domains"]))
    app = TeamsApp(app_id=app_id, **options)
    data = package(app)
    target = Path(path)
    if target.is_dir():
        target = target / f"imp-teams-{app.version.strip()}.zip"
    if target.suffix.lower() != ".zip":
        raise InvalidRequest("the app package is a .zip file; give a path ending in .zip or a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".imp-teams-", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the package holds no secret
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _as_list(value: str | Sequence[str]) -> list[str]:
    """A list of domains given as a sequence, or as one comma-separated string (as a CLI option arrives)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]
