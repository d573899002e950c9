"""The `coreml` backend: CoreML models predicted through coremltools on macOS hosts."""
