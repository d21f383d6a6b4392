"""Piccolo tables, the engine and database helpers. No business rules beyond constraints."""
