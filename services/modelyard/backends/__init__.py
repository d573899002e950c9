"""Backend services: every backend kind serves the same `BackendService` contract."""
