"""The `tensor` backend kind: ONNX models served in process by onnxruntime."""
