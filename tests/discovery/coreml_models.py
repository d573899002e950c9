"""Tiny CoreML models built with coremltools (no torch), for discovery and engine tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelyard.backends.coreml.runtime import coremltools


def image_classifier(path: Path) -> Path:
    """A 4x4 RGB image in, ``label`` (cat/dog) and ``labelProbs`` out; an ``.mlmodel`` file."""
    ct = coremltools()
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    b = NeuralNetworkBuilder(
        [("image", datatypes.Array(3, 4, 4))], [("scores", datatypes.Array(2))], mode="classifier"
    )
    b.add_flatten("flat", mode=0, input_name="image", output_name="flat")
    weights = np.vstack([np.ones(48), -np.ones(48)]).astype(np.float32)
    b.add_inner_product(
        "ip", W=weights, b=None, input_channels=48, output_channels=2, has_bias=False,
        input_name="flat", output_name="scores",
    )  # fmt: skip
    b.add_softmax("softmax", input_name="scores", output_name="probs")
    b.set_class_labels(["cat", "dog"], predicted_feature_name="label", prediction_blob="probs")
    b.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255.0)
    spec = b.spec
    spec.description.metadata.author = "modelyard tests"
    spec.description.metadata.shortDescription = "tiny cat/dog classifier"
    spec.description.input[0].shortDescription = "a photo"
    ct.models.MLModel(spec, skip_model_load=True).save(str(path))
    return path


def feature_extractor(path: Path) -> Path:
    """A (1, 8) float32 array in, its ReLU out; an ML program saved as ``.mlpackage``."""
    ct = coremltools()
    from coremltools.converters.mil import Builder as mb

    def prog(x: object) -> object:
        return mb.relu(x=x, name="features")

    # Not a decorator: coremltools is untyped, and `@mb.program` would make `prog` untyped too.
    program = mb.program(input_specs=[mb.TensorSpec(shape=(1, 8))])(prog)
    model = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS15,
        skip_model_load=True,
    )
    model.author = "modelyard tests"
    model.short_description = "ReLU features"
    model.version = "1.2.0"
    model.user_defined_metadata["training_set"] = "none"
    model.save(str(path))
    return path
