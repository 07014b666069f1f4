"""The dashboard's HTML documents: the page with its panels, and the login form. No scripts, no external files.

Everything variable is escaped; the response headers (router.py) forbid scripts and
framing, so even a stray bit of markup could not run.
"""

from __future__ import annotations

from html import escape

from bot.dashboard import panels

RANGES = (1, 7, 30, 90, 365)

_STYLE = """
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;
color:#111827;background:#f3f4f6}header{display:flex;flex-wrap:wrap;align-items:center;gap:12px;
padding:12px 20px;background:#111827;color:#f9fafb}header h1{font-size:18px;margin:0 12px 0 0}
header a{color:#93c5fd;margin-right:6px}header a.on{color:#fff;font-weight:700;text-decoration:none}
header form{margin:0 0 0 auto}button{font:inherit;padding:4px 10px;border-radius:4px;border:1px solid #9ca3af;
background:#fff;cursor:pointer}main{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));
gap:14px;padding:14px 20px}.panel{background:#fff;border-radius:8px;padding:12px 14px;
box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}.panel.wide{grid-column:1/-1}h2{font-size:15px;margin:0 0 6px}
h3{font-size:13px;margin:10px 0 4px}.note{color:#4b5563;font-size:12px;margin:2px 0 6px}
.empty{color:#6b7280;font-style:italic;padding:28px 0;text-align:center;border:1px dashed #d1d5db;
border-radius:6px}svg.chart{width:100%;height:auto;display:block}svg .grid{stroke:#e5e7eb}
svg .axisline{stroke:#9ca3af}svg text{font-size:10px;fill:#4b5563}svg .axis{font-size:11px}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:12px;margin:2px 0}.key i{display:inline-block;
width:16px;margin-right:4px;vertical-align:middle}.tiles{display:flex;flex-wrap:wrap;gap:10px;padding:14px 20px 0}
.tile{background:#fff;border-radius:8px;padding:8px 14px;min-width:120px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.tile b{display:block;font-size:20px}.tile span{color:#6b7280;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:12px;margin-top:6px}th,td{text-align:left;
padding:3px 6px;border-bottom:1px solid #e5e7eb}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.small-multiples{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:10px}
figure{margin:0}figcaption{font-size:12px;color:#374151}.warn{background:#fef3c7;padding:6px 20px;margin:0}
.login{max-width:360px;margin:12vh auto;background:#fff;padding:24px;border-radius:8px;
box-shadow:0 1px 3px rgba(0,0,0,.12)}.login input{width:100%;padding:6px;margin:6px 0 12px;font:inherit}
.error{color:#b91c1c}
"""


def _document(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def dashboard(data, *, days: int, logout: bool, registry=None) -> str:  # noqa: ANN001 - DashboardData, RegistryReading
    """The whole page for ``data``; ``logout`` shows the log-out button (a browser session is in use);
    ``registry``: the last reading of the model registry (None: not connected to this page)."""
    links = " ".join(f'<a href="/dashboard?days={d}"{" class=on" if d == days else ""}>{d}d</a>' for d in RANGES)
    out = ('<form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form>'
           if logout else "")
    span = f"{data.since:%Y-%m-%d %H:%M} – {data.until:%Y-%m-%d %H:%M} UTC, per {data.bucket}"
    scopes = (f" · scopes: {', '.join(data.scopes)}" if data.scopes is not None else " · all scopes")
    head = (f"<header><h1>IMP dashboard</h1><span>{escape(span + scopes)}</span><nav>{links}</nav>{out}</header>")
    warn = ('<p class="warn">This range holds more rows than one page reads: the oldest part of it is left out.</p>'
            if data.truncated else "")
    body = "".join(f(data) for f in (panels.activity, panels.latency, panels.ratings, panels.failures,
                                     panels.documents))
    body += panels.models(data, registry) + panels.drift(data)
    return _document("IMP dashboard", head + warn + panels.tiles(data) + f"<main>{body}</main>")


def login(*, error: str = "") -> str:
    """The login form: the API token as a password, posted to /dashboard/login."""
    message = f'<p class="error">{escape(error)}</p>' if error else ""
    form = ('<form class="login" method="post" action="/dashboard/login"><h2>IMP dashboard</h2>'
            f'<p class="note">Sign in with an API token (IMP_API__TOKEN or one of IMP_API__TOKENS).</p>{message}'
            '<label for="token">Token</label><input id="token" name="token" type="password" '
            'autocomplete="current-password" required maxlength="512" autofocus>'
            '<button type="submit">Sign in</button></form>')
    return _document("IMP dashboard: sign in", form)


def message(title: str, text: str) -> str:
    """A short page for a refusal (a cross-site post, a body too large)."""
    return _document(title, f'<div class="login"><h2>{escape(title)}</h2><p>{escape(text)}</p>'
                            '<p><a href="/dashboard/login">Sign in</a></p></div>')
