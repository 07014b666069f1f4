"""The Teams app package an admin uploads: a zip Teams accepts, declaring what IMP's Teams adapter does.

The package is written to a temp folder and read back as Teams reads it: manifest.json and the two icons
at the zip's root, the icons opened with Pillow (sizes, the outline only white on transparency), and the
manifest's fields checked against what the Teams manifest schema (v1.22) requires and bounds. The schema
itself is not downloaded here (tests run offline); the required fields and limits below are copied from it.
Bad inputs (an app id that is not a GUID, over-long names, http:// pages) are refused before anything is written.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from bot.teams.manifest import (
    MANIFEST_VERSION,
    RSC_ALL_MESSAGES,
    SCHEMA_URL,
    TeamsApp,
    draw_icons,
    manifest,
    package,
    write_package,
)
from core.errors import InvalidRequest

APP_ID = "0b7e5a3c-1d2e-4f50-9a8b-7c6d5e4f3a21"
TEAMS_ID = "5d0c7f6e-2b1a-4c3d-8e9f-0a1b2c3d4e5f"
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# MicrosoftTeams.schema.json v1.22: the top-level required properties, and those of developer and bots.
REQUIRED = {"manifestVersion", "version", "id", "developer", "name", "description", "icons", "accentColor"}
DEVELOPER_REQUIRED = {"name", "websiteUrl", "privacyUrl", "termsOfUseUrl"}


def pixels(img: Image.Image) -> list[tuple[int, ...]]:
    """Every pixel of the image, as RGBA tuples, in rows from the top left."""
    data = img.convert("RGBA").tobytes()
    return [tuple(data[i:i + 4]) for i in range(0, len(data), 4)]


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return {name: z.read(name) for name in z.namelist()}


def test_package_holds_the_manifest_and_both_icons_at_its_root(tmp_path):
    path = write_package(tmp_path / "imp.zip", app_id=APP_ID, host="imp.example.com")
    assert path == tmp_path / "imp.zip"
    files = read_zip(path.read_bytes())
    assert set(files) == {"manifest.json", "color.png", "outline.png"}
    doc = json.loads(files["manifest.json"])
    assert doc["icons"] == {"color": "color.png", "outline": "outline.png"}

    color = Image.open(io.BytesIO(files["color.png"]))
    assert (color.format, color.size) == ("PNG", (192, 192))
    assert color.convert("RGBA").getextrema()[3] == (255, 255)  # full colour, no transparency
    # a white symbol on the accent colour, not a blank square
    px = pixels(color)
    assert px[0] == (0x2C, 0x3E, 0x50, 255) and 0.1 < px.count((255, 255, 255, 255)) / len(px) < 0.5

    outline = Image.open(io.BytesIO(files["outline.png"]))
    assert (outline.format, outline.size, outline.mode) == ("PNG", (32, 32), "RGBA")
    px = pixels(outline)
    assert all((r, g, b) == (255, 255, 255) for r, g, b, a in px if a)  # white only
    assert px[0][3] == 0 and px[12 * 32 + 16][3] == 0  # transparent outside and inside the bubble
    assert sum(1 for p in px if p[3] == 255) > 40  # a visible outline


def test_manifest_has_what_the_schema_requires_within_its_limits():
    doc = manifest(TeamsApp(app_id=APP_ID, host="imp.example.com"))
    assert REQUIRED <= set(doc)
    assert doc["manifestVersion"] == MANIFEST_VERSION == "1.22"
    assert doc["$schema"] == SCHEMA_URL and f"/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json" in SCHEMA_URL
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["version"])
    assert GUID.match(doc["id"]) and doc["id"] == APP_ID
    assert set(doc["developer"]) == DEVELOPER_REQUIRED and len(doc["developer"]["name"]) <= 32
    assert all(doc["developer"][k].startswith("https://") for k in DEVELOPER_REQUIRED - {"name"})
    assert doc["developer"]["websiteUrl"] == "https://imp.example.com/dashboard"
    assert len(doc["name"]["short"]) <= 30 and len(doc["name"]["full"]) <= 100
    assert 0 < len(doc["description"]["short"]) <= 80 and 0 < len(doc["description"]["full"]) <= 4000
    assert re.fullmatch(r"#[0-9A-F]{6}", doc["accentColor"])

    (bot,) = doc["bots"]
    assert bot["botId"] == APP_ID and set(bot) <= {"botId", "scopes", "supportsFiles", "isNotificationOnly",
                                                   "commandLists"}
    assert bot["scopes"] == ["personal", "team", "groupChat"]
    assert bot["supportsFiles"] is True and bot["isNotificationOnly"] is False
    lists = bot["commandLists"]
    assert len(lists) <= 3 and sorted(s for c in lists for s in c["scopes"]) == sorted(bot["scopes"])
    for cl in lists:
        assert [c["title"] for c in cl["commands"]] == ["ask", "minutes"]
        # Teams shows at most 10 commands a list, titles up to 32 characters, descriptions up to 128
        assert len(cl["commands"]) <= 10
        assert all(len(c["title"]) <= 32 and 0 < len(c["description"]) <= 128 for c in cl["commands"])
    assert "composeExtensions" not in doc  # IMP has no message extension
    assert "validDomains" not in doc  # a bot needs none; the admin may add some


def test_resource_specific_permissions_let_imp_see_files_shared_without_a_mention():
    doc = manifest(TeamsApp(app_id=APP_ID, host="imp.example.com"))
    assert doc["webApplicationInfo"] == {"id": APP_ID, "resource": f"api://botid-{APP_ID}"}
    assert doc["authorization"]["permissions"]["resourceSpecific"] == [
        {"name": "ChannelMessage.Read.Group", "type": "Application"},
        {"name": "ChatMessage.Read.Chat", "type": "Application"}]
    assert set(RSC_ALL_MESSAGES) == {"ChannelMessage.Read.Group", "ChatMessage.Read.Chat"}
    mention_only = manifest(TeamsApp(app_id=APP_ID, host="imp.example.com", all_messages=False))
    assert "authorization" not in mention_only and "webApplicationInfo" not in mention_only


def test_every_field_can_be_set():
    app = TeamsApp(app_id=f" {APP_ID.upper()}\n", teams_app_id=TEAMS_ID, version="2.3.4", short_name="Ask Contoso",
                   full_name="Contoso's knowledge assistant", short_description="Answers from Contoso documents.",
                   full_description="Line one.\nLine two.", developer_name="Contoso IT",
                   website_url="https://contoso.example/imp", privacy_url="https://contoso.example/privacy",
                   terms_url="https://contoso.example/terms", accent_color="#ff8800",
                   valid_domains=("imp.contoso.example", "*.contoso.example"))
    doc = manifest(app)
    assert doc["id"] == TEAMS_ID and doc["bots"][0]["botId"] == APP_ID  # the bot id as pasted, normalised
    assert doc["version"] == "2.3.4" and doc["accentColor"] == "#FF8800"
    assert doc["name"] == {"short": "Ask Contoso", "full": "Contoso's knowledge assistant"}
    assert doc["description"] == {"short": "Answers from Contoso documents.", "full": "Line one.\nLine two."}
    assert doc["developer"] == {"name": "Contoso IT", "websiteUrl": "https://contoso.example/imp",
                                "privacyUrl": "https://contoso.example/privacy",
                                "termsOfUseUrl": "https://contoso.example/terms"}
    assert doc["validDomains"] == ["imp.contoso.example", "*.contoso.example"]


@pytest.mark.parametrize("bad", [
    "", "not-a-guid", "0b7e5a3c1d2e4f509a8b7c6d5e4f3a21", "{0b7e5a3c-1d2e-4f50-9a8b-7c6d5e4f3a21}",
    "0b7e5a3c-1d2e-4f50-9a8b-7c6d5e4f3a21x", "0b7e5a3c-1d2e-4f50-9a8b-7c6d5e4f3a2g",
    "00000000-0000-0000-0000-000000000000", "0b7e5a3c-1d2e-4f50-9a8b-7c6d5e4f3a21\nx", "x" * 100_000,
])
def test_bad_app_ids_are_refused_and_nothing_is_written(tmp_path, bad):
    with pytest.raises(InvalidRequest, match="GUID"):
        write_package(tmp_path / "imp.zip", app_id=bad, host="imp.example.com")
    with pytest.raises(InvalidRequest, match="GUID"):
        write_package(tmp_path / "imp.zip", app_id=APP_ID, teams_app_id=bad or "no", host="imp.example.com")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "value", "says"), [
    ("short_name", "I" * 31, "at most 30"),
    ("short_name", "IMP\nAdmin", "one line"),
    ("short_name", "   ", "one line"),
    ("full_name", "F" * 101, "at most 100"),
    ("short_description", "d" * 81, "at most 80"),
    ("full_description", "d" * 4001, "at most 4000"),
    ("developer_name", "D" * 33, "at most 32"),
    ("version", "1.0", "three numbers"),
    ("version", "01.0.0", "three numbers"),
    ("accent_color", "blue", "hex colour"),
    ("website_url", "http://imp.example.com", "https://"),
    ("website_url", "https://user:pw@imp.example.com/", "https://"),
    ("website_url", "https://imp.example.com/a b", "https://"),
    ("website_url", "https://" + "a" * 2050 + ".com", "https://"),
    ("privacy_url", "javascript:alert(1)", "https://"),
    ("terms_url", "https://imp.example.com:99999/", "https://"),
    ("host", "https://imp.example.com", "host name"),
    ("host", "imp.example.com/path", "host name"),
    ("valid_domains", ("imp.example.com", "bad domain"), "host name"),
    ("valid_domains", tuple(f"d{i}.example.com" for i in range(17)), "at most 16"),
])
def test_bad_fields_are_refused_with_a_reason(tmp_path, option, value, says):
    with pytest.raises(InvalidRequest, match=re.escape(says)):
        write_package(tmp_path / "imp.zip", app_id=APP_ID, **{"host": "imp.example.com", option: value})
    assert list(tmp_path.iterdir()) == []


def test_a_developer_page_is_needed():
    with pytest.raises(InvalidRequest, match="host"):
        manifest(TeamsApp(app_id=APP_ID))
    doc = manifest(TeamsApp(app_id=APP_ID, website_url="https://intranet.example/imp"))
    assert doc["developer"]["privacyUrl"] == doc["developer"]["termsOfUseUrl"] == "https://intranet.example/imp"


def test_unknown_options_are_refused(tmp_path):
    with pytest.raises(InvalidRequest, match="unknown package option"):
        write_package(tmp_path / "imp.zip", app_id=APP_ID, host="imp.example.com", botId="x")


def test_written_to_a_folder_and_the_same_settings_give_the_same_bytes(tmp_path):
    first = write_package(tmp_path, app_id=APP_ID, host="imp.example.com", version="1.2.0")
    assert first == tmp_path / "imp-teams-1.2.0.zip"
    again = write_package(tmp_path / "copy" / "app.ZIP", app_id=APP_ID, host="imp.example.com", version="1.2.0")
    assert first.read_bytes() == again.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["app.ZIP", "imp-teams-1.2.0.zip"]
    with pytest.raises(InvalidRequest, match=r"\.zip"):
        write_package(tmp_path / "imp.json", app_id=APP_ID, host="imp.example.com")


def test_valid_domains_given_as_one_string_as_a_cli_option_arrives(tmp_path):
    path = write_package(tmp_path / "imp.zip", app_id=APP_ID, host="imp.example.com",
                         valid_domains="imp.example.com, files.example.com")
    assert json.loads(read_zip(path.read_bytes())["manifest.json"])["validDomains"] == [
        "imp.example.com", "files.example.com"]


def test_the_icons_take_the_accent_colour():
    color, _ = draw_icons("#FF8800")
    assert Image.open(io.BytesIO(color)).convert("RGB").getpixel((2, 2)) == (255, 136, 0)
    files = read_zip(package(TeamsApp(app_id=APP_ID, host="imp.example.com", accent_color="#118844")))
    assert Image.open(io.BytesIO(files["color.png"])).convert("RGB").getpixel((2, 2)) == (17, 136, 68)


def save(img: Image.Image, path: Path, fmt: str = "PNG") -> Path:
    img.save(path, format=fmt)
    return path


def test_an_admin_may_bring_their_own_icons(tmp_path):
    color = save(Image.new("RGB", (192, 192), (10, 20, 30)), tmp_path / "c.png")
    outline = Image.new("RGBA", (32, 32), (255, 255, 255, 0))
    outline.paste((255, 255, 255, 255), (8, 8, 24, 24))
    outline = save(outline, tmp_path / "o.png")
    files = read_zip(package(TeamsApp(app_id=APP_ID, host="imp.example.com", color_icon=color,
                                      outline_icon=outline)))
    assert files["color.png"] == color.read_bytes() and files["outline.png"] == outline.read_bytes()


@pytest.mark.parametrize(("which", "make", "says"), [
    ("color_icon", lambda p: save(Image.new("RGB", (100, 100)), p), "192x192 PNG"),
    ("color_icon", lambda p: save(Image.new("RGB", (192, 192)), p, "JPEG"), "192x192 PNG"),
    ("color_icon", lambda p: p.write_bytes(b"not an image") and p, "not a readable PNG"),
    ("color_icon", lambda p: p.write_bytes(b"\x89PNG" + b"\0" * 1_000_001) and p, "larger than"),
    ("color_icon", lambda p: p.parent / "missing.png", "cannot read"),
    ("outline_icon", lambda p: save(Image.new("RGBA", (32, 32), (255, 0, 0, 255)), p), "white on a transparent"),
    ("outline_icon", lambda p: save(Image.new("RGBA", (192, 192)), p), "32x32 PNG"),
])
def test_icons_teams_would_refuse_are_refused(tmp_path, which, make, says):
    path = make(tmp_path / "icon.png")
    with pytest.raises(InvalidRequest, match=re.escape(says)):
        write_package(tmp_path / "out" / "imp.zip", app_id=APP_ID, host="imp.example.com", **{which: path})
    assert not (tmp_path / "out").exists()
