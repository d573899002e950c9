"""Test doubles of modelyard's own interfaces (never of a third-party system)."""
