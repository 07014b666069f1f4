"""The Microsoft Teams front door: an adapter over bot/chat on the Microsoft 365 Agents SDK."""
