"""The dashboard: an HTML page of how IMP is doing, with server-side SVG charts and a browser login."""

from bot.dashboard.router import dashboard_router

__all__ = ["dashboard_router"]
