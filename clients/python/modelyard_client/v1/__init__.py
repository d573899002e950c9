"""Generated gRPC stubs of proto/modelyard/v1 (scripts/genproto.py). DO NOT EDIT."""
