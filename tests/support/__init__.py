"""Test doubles of modelyard's own interfaces (never of a third-party system), and the
helpers several test folders share (a real Redis, a failed call's trailers)."""
