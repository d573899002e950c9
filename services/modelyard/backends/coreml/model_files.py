"""CoreML models (``*.mlmodel`` files, ``*.mlpackage`` folders) in a models directory.

coremltools reads a model's spec on any OS (``skip_model_load=True``); only
prediction needs macOS. From the spec come the inputs and outputs (as JSON
Schema), the capabilities they imply, and the author's metadata. Off macOS the
entries say why they cannot be served (HEALTH_STATUS_UNAVAILABLE).

The `coreml` engine serves these entries and CoreML discovery reports them,
both through `CoreMLModelsDir`, so the two always describe a model alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from modelyard.backends.coreml.runtime import coremltools, unsupported_reason
from modelyard.backends.local.model_files import model_id_for
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

C = common_pb2
SUFFIXES = (".mlmodel", ".mlpackage")
_CLASSIFIER_TYPES = {
    "neuralNetworkClassifier",
    "pipelineClassifier",
    "glmClassifier",
    "supportVectorClassifier",
    "treeEnsembleClassifier",
    "kNearestNeighborsClassifier",
}
_TEXT_CLASSIFIER_TYPES = {"textClassifier", "wordTagger", "gazetteer"}
_AUDIO_WORDS = ("audio", "waveform", "speech", "sound", "mel", "pcm", "samples")


class CoreMLModelsDir:
    """Every CoreML model directly in `path`, as the models of backend `backend`."""

    def __init__(self, path: Path, *, backend: str = "coreml") -> None:
        self.path = path
        self.backend = backend
        self.name = f"coreml:{path}"  # what messages about this directory start with

    async def read(self) -> tuple[tuple[common_pb2.ModelEntry, ...], tuple[str, ...]]:
        """The entries of the readable models, and one message per model left out.

        Raises `BackendUnavailable` when the directory is missing or coremltools
        is not installed: then nothing in it can be read.
        """
        if not self.path.is_dir():
            raise BackendUnavailable(
                f"{self.name}: models directory {self.path} does not exist or is not a directory"
            )
        try:
            coremltools()
        except ImportError as exc:
            raise BackendUnavailable(f"{self.name}: {exc}") from exc
        return await asyncio.to_thread(self._read)

    def _read(self) -> tuple[tuple[common_pb2.ModelEntry, ...], tuple[str, ...]]:
        entries, errors = [], []
        for path in sorted(self.path.iterdir()):
            if path.suffix not in SUFFIXES:
                continue
            try:
                entries.append(coreml_entry(path, self.backend))
            except Exception as exc:  # any parse failure is this model's problem only
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                errors.append(f"{self.name}: {path.name} is not a readable CoreML model ({cause})")
        for error in errors:
            log.warning("%s", error)
        return tuple(entries), tuple(errors)


def coreml_entry(path: Path, backend: str = "coreml") -> common_pb2.ModelEntry:
    """The catalog entry of one CoreML model; raises if coremltools cannot read its spec."""
    ct = coremltools()
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    desc = spec.description
    types = set(_model_types(spec))
    capabilities, inputs, outputs = infer_capabilities(desc, types)
    meta = desc.metadata
    size = _disk_size(path)
    metadata = {
        "path": str(path),
        "format": path.suffix.lstrip("."),
        "model_type": spec.WhichOneof("Type") or "",
        "specification_version": str(spec.specificationVersion),
        "author": meta.author,
        "license": meta.license,
        "description": meta.shortDescription,
        **{f"user.{k}": v for k, v in sorted(meta.userDefined.items())},
    }
    reason = unsupported_reason()
    return common_pb2.ModelEntry(
        id=model_id_for(path, backend),
        name=path.stem,
        provider=backend,
        version=meta.versionString,
        capabilities=capabilities,
        input_modalities=inputs,
        output_modalities=outputs,
        input_schema_json=json.dumps(features_schema(desc.input), sort_keys=True),
        output_schema_json=json.dumps(features_schema(desc.output), sort_keys=True),
        resources=common_pb2.ResourceRequirements(memory_bytes=size, disk_bytes=size),
        health=C.HEALTH_STATUS_UNAVAILABLE if reason else C.HEALTH_STATUS_UNSPECIFIED,
        health_reason=reason,
        metadata={k: v for k, v in metadata.items() if v},
    )


def _model_types(spec: Any) -> Iterator[str]:
    """The spec's model type and those of every model inside its pipelines."""
    kind = spec.WhichOneof("Type")
    if kind:
        yield kind
    if kind in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
        for sub in getattr(spec, kind).pipeline.models:
            yield from _model_types(sub)


def _modality(feature: Any, model_types: set[str]) -> common_pb2.Modality.ValueType:
    kind = feature.type.WhichOneof("Type")
    if kind == "imageType":
        return C.MODALITY_IMAGE
    if kind == "stringType":
        return C.MODALITY_TEXT
    if kind == "multiArrayType":
        name = feature.name.lower()
        if "soundAnalysisPreprocessing" in model_types or any(w in name for w in _AUDIO_WORDS):
            return C.MODALITY_AUDIO
        return C.MODALITY_TENSOR
    return C.MODALITY_STRUCTURED  # int64, double, dictionary, sequence


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def infer_capabilities(
    desc: Any, model_types: set[str]
) -> tuple[
    list[common_pb2.Capability.ValueType],
    list[common_pb2.Modality.ValueType],
    list[common_pb2.Modality.ValueType],
]:
    """Capabilities and modalities a model's inputs and outputs imply.

    An image in and a class out is image classification; audio in and text out,
    speech to text; text in and audio out, text to speech; text in and a vector
    out, an embedding; any other vector out, feature extraction.
    """
    inputs = _unique(_modality(f, model_types) for f in desc.input)
    outputs = _unique(_modality(f, model_types) for f in desc.output)
    classifier = bool(desc.predictedFeatureName) or bool(model_types & _CLASSIFIER_TYPES)
    caps: list[common_pb2.Capability.ValueType] = []
    if classifier and C.MODALITY_IMAGE in inputs:
        caps.append(C.CAPABILITY_IMAGE_CLASSIFICATION)
    if C.MODALITY_AUDIO in inputs and C.MODALITY_TEXT in outputs:
        caps.append(C.CAPABILITY_SPEECH_TO_TEXT)
    if C.MODALITY_TEXT in inputs and C.MODALITY_AUDIO in outputs:
        caps.append(C.CAPABILITY_TEXT_TO_SPEECH)
    text_classifier = classifier or bool(model_types & _TEXT_CLASSIFIER_TYPES)
    if C.MODALITY_TEXT in inputs and C.MODALITY_TEXT in outputs and not text_classifier:
        caps.append(C.CAPABILITY_TEXT_GENERATION)
    if "wordEmbedding" in model_types or (
        C.MODALITY_TEXT in inputs and C.MODALITY_TENSOR in outputs and not classifier
    ):
        caps.append(C.CAPABILITY_EMBEDDING)
    elif C.MODALITY_TENSOR in outputs and not classifier:
        caps.append(C.CAPABILITY_FEATURE_EXTRACTION)
    return caps, inputs, outputs


def features_schema(features: Iterable[Any]) -> dict[str, Any]:
    """JSON Schema of a feature list: one property per feature, with CoreML's details."""
    props: dict[str, Any] = {}
    required = []
    for f in features:
        schema = _feature_schema(f.type)
        if f.shortDescription:
            schema["description"] = f.shortDescription
        props[f.name] = schema
        if not f.type.isOptional:
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required}


def _feature_schema(ft: Any) -> dict[str, Any]:
    kind = ft.WhichOneof("Type")
    if kind == "int64Type":
        return {"type": "integer"}
    if kind == "doubleType":
        return {"type": "number"}
    if kind == "stringType":
        return {"type": "string"}
    if kind == "imageType":
        return _image_schema(ft.imageType)
    if kind == "multiArrayType":
        return _array_schema(ft.multiArrayType)
    if kind == "dictionaryType":
        key = "integer" if ft.dictionaryType.WhichOneof("KeyType") == "int64KeyType" else "string"
        return {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "x-coreml-key-type": key,
        }
    if kind == "sequenceType":
        item = "integer" if ft.sequenceType.WhichOneof("Type") == "int64Type" else "string"
        return {"type": "array", "items": {"type": item}}
    return {"x-coreml-type": kind or "unknown"}


def _image_schema(image: Any) -> dict[str, Any]:
    space = type(image).ColorSpace.Name(image.colorSpace)
    schema: dict[str, Any] = {
        "type": "string",
        "contentEncoding": "base64",
        "contentMediaType": "image/*",
        "x-coreml-type": "image",
        "x-color-space": space,
    }
    if image.width and image.height:
        schema["x-width"], schema["x-height"] = int(image.width), int(image.height)
    flex = image.WhichOneof("SizeFlexibility")
    if flex == "enumeratedSizes":
        schema["x-sizes"] = [[s.width, s.height] for s in image.enumeratedSizes.sizes]
    elif flex == "imageSizeRange":
        r = image.imageSizeRange
        schema["x-width-range"] = [r.widthRange.lowerBound, r.widthRange.upperBound]
        schema["x-height-range"] = [r.heightRange.lowerBound, r.heightRange.upperBound]
    return schema


def _array_schema(array: Any) -> dict[str, Any]:
    dtype = type(array).ArrayDataType.Name(array.dataType).lower()
    schema: dict[str, Any] = {
        "type": "array",
        "items": {"type": "integer" if dtype.startswith("int") else "number"},
        "x-coreml-type": "multiArray",
        "x-dtype": dtype,
        "x-shape": [int(d) for d in array.shape],
    }
    flex = array.WhichOneof("ShapeFlexibility")
    if flex == "enumeratedShapes":
        schema["x-shapes"] = [[int(d) for d in s.shape] for s in array.enumeratedShapes.shapes]
    elif flex == "shapeRange":
        # upperBound -1 means unbounded
        schema["x-shape-range"] = [
            [int(r.lowerBound), int(r.upperBound)] for r in array.shapeRange.sizeRanges
        ]
    return schema


def _disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
