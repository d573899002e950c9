"""The dashboard: one static page (`dashboard.html`, shipped as package data, no build
step) and the JSON it polls, assembled from the gateway's own views (`data.py`) and the
hot-swap service's swaps and A/B tests (`hotswap_readout.py`). The HTTP edge serves both
(`modelyard.edges.dashboard`)."""
