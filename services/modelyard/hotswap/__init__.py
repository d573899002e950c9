"""The hot-swap service: aliases, zero-downtime swaps and A/B tests."""
