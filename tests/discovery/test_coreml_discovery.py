"""CoreML discovery over tiny models built here, corrupt ones, and spec-level inference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from discovery.coreml_models import feature_extractor, image_classifier

from modelyard.backends.coreml.model_files import infer_capabilities
from modelyard.backends.coreml.runtime import coremltools
from modelyard.discovery import CoreMLDirectorySource
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2 as C

LINUX_REASON = "CoreML prediction needs macOS; this host is Linux"


def populate(models: Path) -> None:
    image_classifier(models / "Pets Classifier.mlmodel")
    feature_extractor(models / "relu.mlpackage")
    (models / "broken.mlmodel").write_bytes(b"\x08\x01garbage that is no protobuf" * 4)
    (models / "empty.mlpackage").mkdir()
    (models / "README.txt").write_text("not a model")


async def test_lists_models_with_schemas_capabilities_and_names_corrupt_ones(
    tmp_path: Path,
) -> None:
    populate(tmp_path)
    snap = await CoreMLDirectorySource(tmp_path).discover()

    assert snap.source == f"coreml:{tmp_path}" and snap.complete
    entries = {e.id: e for e in snap.entries}
    assert sorted(entries) == ["coreml/pets-classifier", "coreml/relu"]

    pets = entries["coreml/pets-classifier"]
    assert (pets.name, pets.provider) == ("Pets Classifier", "coreml")
    assert list(pets.capabilities) == [C.CAPABILITY_IMAGE_CLASSIFICATION]
    assert list(pets.input_modalities) == [C.MODALITY_IMAGE]
    assert json.loads(pets.input_schema_json) == {
        "type": "object",
        "properties": {
            "image": {
                "type": "string",
                "contentEncoding": "base64",
                "contentMediaType": "image/*",
                "description": "a photo",
                "x-coreml-type": "image",
                "x-color-space": "RGB",
                "x-width": 4,
                "x-height": 4,
            }
        },
        "required": ["image"],
    }
    outputs = json.loads(pets.output_schema_json)["properties"]
    assert outputs["label"] == {"type": "string"}
    assert outputs["scores"]["type"] == "object"
    assert pets.metadata["author"] == "modelyard tests"
    assert pets.metadata["description"] == "tiny cat/dog classifier"
    assert pets.metadata["model_type"] == "neuralNetworkClassifier"
    assert pets.metadata["format"] == "mlmodel"
    assert pets.resources.disk_bytes > 0

    relu = entries["coreml/relu"]
    assert list(relu.capabilities) == [C.CAPABILITY_FEATURE_EXTRACTION]
    assert list(relu.input_modalities) == list(relu.output_modalities) == [C.MODALITY_TENSOR]
    assert relu.version == "1.2.0"
    assert relu.metadata["user.training_set"] == "none"
    assert relu.metadata["model_type"] == "mlProgram"
    features = json.loads(relu.output_schema_json)["properties"]["features"]
    assert (features["x-dtype"], features["x-shape"]) == ("float32", [1, 8])

    assert len(snap.errors) == 2
    broken, empty = sorted(snap.errors)
    assert broken.startswith(f"coreml:{tmp_path}: broken.mlmodel is not a readable CoreML model (")
    assert empty.startswith(f"coreml:{tmp_path}: empty.mlpackage is not a readable CoreML model (")
    assert "Manifest.json" in empty


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS hosts can serve CoreML models")
async def test_off_macos_every_entry_says_why_it_cannot_be_served(tmp_path: Path) -> None:
    image_classifier(tmp_path / "pets.mlmodel")
    [entry] = (await CoreMLDirectorySource(tmp_path).discover()).entries
    assert entry.health == C.HEALTH_STATUS_UNAVAILABLE
    assert entry.health_reason == LINUX_REASON


async def test_missing_directory_is_backend_unavailable_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "coreml-models"
    with pytest.raises(BackendUnavailable) as err:
        await CoreMLDirectorySource(missing).discover()
    assert str(missing) in err.value.message


def description(
    inputs: dict[str, str], outputs: dict[str, str], classifier: bool = False
) -> object:
    """A CoreML ModelDescription with features of the given kinds (name -> kind)."""
    ct = coremltools()
    desc = ct.proto.Model_pb2.ModelDescription()
    for features, kinds in ((desc.input, inputs), (desc.output, outputs)):
        for name, kind in kinds.items():
            f = features.add()
            f.name = name
            getattr(f.type, kind).SetInParent()
    if classifier:
        desc.predictedFeatureName = next(iter(outputs))
    return desc


@pytest.mark.parametrize(
    ("inputs", "outputs", "classifier", "model_types", "expected"),
    [
        ({"image": "imageType"}, {"label": "stringType"}, True, set(), "IMAGE_CLASSIFICATION"),
        ({"audio": "multiArrayType"}, {"text": "stringType"}, False, set(), "SPEECH_TO_TEXT"),
        ({"text": "stringType"}, {"waveform": "multiArrayType"}, False, set(), "TEXT_TO_SPEECH"),
        ({"text": "stringType"}, {"vector": "multiArrayType"}, False, set(), "EMBEDDING"),
        ({"prompt": "stringType"}, {"completion": "stringType"}, False, set(), "TEXT_GENERATION"),
        ({"image": "imageType"}, {"emb": "multiArrayType"}, False, set(), "FEATURE_EXTRACTION"),
        ({"x": "multiArrayType"}, {"y": "multiArrayType"}, False, set(), "FEATURE_EXTRACTION"),
        ({"text": "stringType"}, {"label": "stringType"}, False, {"textClassifier"}, None),
        ({"age": "int64Type"}, {"price": "doubleType"}, False, set(), None),
    ],
)  # fmt: skip
def test_capabilities_follow_inputs_and_outputs(
    inputs: dict[str, str],
    outputs: dict[str, str],
    classifier: bool,
    model_types: set[str],
    expected: str | None,
) -> None:
    caps, _, _ = infer_capabilities(description(inputs, outputs, classifier), model_types)
    assert caps == ([C.Capability.Value(f"CAPABILITY_{expected}")] if expected else [])
