"""ONNX models (``*.onnx`` files) in a models directory, and their catalog entries.

Each file directly in the directory is one model, ``<backend>/<file stem>``
(`local.model_files.model_name_for`). Its inputs and outputs are what
onnxruntime reads from it: the file is opened once with graph optimisations
off and closed again, and what it said is kept until the file's size or
modification time change. A model whose inputs or outputs the wire cannot
carry (strings, sequences, maps, bfloat16) is left out, with the reason.

A model with labels whose one input is an image is an image classifier
(`image_classifier`): CAPABILITY_IMAGE_CLASSIFICATION, image or tensors in,
text (the top label) and tensors (its scores) out. Any other model is a
tensor model: CAPABILITY_FEATURE_EXTRACTION, tensors in and out.

The `tensor` engine serves these models and ONNX discovery reports them,
both through `OnnxModelsDir`, so the two always describe a model alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from modelyard.backends.local.model_files import model_id_for, model_name_for
from modelyard.backends.tensor.image_classifier import (
    ClassifierSettings,
    ImageClassifier,
    classifier_of,
)
from modelyard.backends.tensor.tensor_specs import TensorSpec, schema_of, spec_of
from modelyard.catalog_ids import catalog_id_problem, split_catalog_id
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

C = common_pb2
SUFFIX = ".onnx"
NO_CLASSIFIERS: Mapping[str, ClassifierSettings] = MappingProxyType({})


def onnxruntime() -> ModuleType:
    """Import onnxruntime; ImportError naming the extra that installs it."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(
            "onnxruntime is not installed: install modelyard with the 'local' extra"
        ) from exc
    module: ModuleType = ort
    return module


@dataclass(frozen=True)
class OnnxModel:
    """One model file as the engine serves it."""

    model_id: str
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    classifier: ImageClassifier | None = None
    producer: str = ""
    description: str = ""

    def size_bytes(self) -> int:
        """The file's size: the weights, loaded once (onnxruntime's arena comes on top)."""
        return self.path.stat().st_size

    def entry(self, backend: str) -> common_pb2.ModelEntry:
        """The catalog entry (without deployments)."""
        size = self.size_bytes()
        metadata = {
            "path": str(self.path),
            "format": "onnx",
            "producer": self.producer,
            "description": self.description,
            "inputs": "; ".join(s.describe() for s in self.inputs),
            "outputs": "; ".join(s.describe() for s in self.outputs),
        }
        if self.classifier is None:
            caps = [C.CAPABILITY_FEATURE_EXTRACTION]
            inputs, outputs = [C.MODALITY_TENSOR], [C.MODALITY_TENSOR]
        else:
            caps = [C.CAPABILITY_IMAGE_CLASSIFICATION]
            inputs, outputs = (
                [C.MODALITY_IMAGE, C.MODALITY_TENSOR],
                [C.MODALITY_TEXT, C.MODALITY_TENSOR],
            )
            metadata["labels"] = str(self.classifier.labels_path)
            metadata["image_input"] = self.classifier.describe()
            size += self.classifier.labels_path.stat().st_size
        return common_pb2.ModelEntry(
            id=self.model_id,
            name=split_catalog_id(self.model_id)[1],
            provider=backend,
            capabilities=caps,
            input_modalities=inputs,
            output_modalities=outputs,
            input_schema_json=json.dumps(schema_of(self.inputs), sort_keys=True),
            output_schema_json=json.dumps(schema_of(self.outputs), sort_keys=True),
            resources=common_pb2.ResourceRequirements(
                memory_bytes=self.size_bytes(), disk_bytes=size
            ),
            metadata={k: v for k, v in metadata.items() if v},
        )


@dataclass(frozen=True)
class _Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    producer: str
    description: str


class OnnxModelsDir:
    """Every ``*.onnx`` file directly in `path`, as the models of backend `backend`.

    `models` (names; empty: all) narrows the files served; `classifiers` gives
    models by name their labels file and normalisation (`ClassifierSettings`).
    """

    def __init__(
        self,
        path: Path,
        *,
        backend: str = "tensor",
        models: Sequence[str] = (),
        classifiers: Mapping[str, ClassifierSettings] = NO_CLASSIFIERS,
    ) -> None:
        self.path = path
        self.backend = backend
        self.models = tuple(models)
        self.classifiers = classifiers
        self.name = f"onnx:{path}"  # what messages about this directory start with
        self._signatures: dict[Path, tuple[tuple[int, int], _Signature]] = {}

    async def read(self) -> tuple[dict[str, OnnxModel], tuple[str, ...]]:
        """The readable models by catalog id, and one message per model left out.

        Raises `BackendUnavailable` when the directory is missing or onnxruntime
        is not installed: then nothing in it can be read.
        """
        if not self.path.is_dir():
            raise BackendUnavailable(
                f"{self.name}: models directory {self.path} does not exist or is not a directory"
            )
        try:
            onnxruntime()
        except ImportError as exc:
            raise BackendUnavailable(f"{self.name}: {exc}") from exc
        return await asyncio.to_thread(self._read)

    def _read(self) -> tuple[dict[str, OnnxModel], tuple[str, ...]]:
        found: dict[str, OnnxModel] = {}
        errors: list[str] = []
        names: set[str] = set()
        for path in sorted(p for p in self.path.glob(f"*{SUFFIX}") if p.is_file()):
            name = model_name_for(path)
            names.add(name)
            if self.models and name not in self.models:
                continue
            model_id = model_id_for(path, self.backend)
            problem = catalog_id_problem(model_id)
            if problem is not None:
                errors.append(
                    f"{self.name}: {path.name} makes the invalid id {model_id!r}: {problem}"
                )
                continue
            try:
                model, note = self._model(model_id, path, self.classifiers.get(name))
            except Exception as exc:  # any failure to read is this model's problem only
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                errors.append(f"{self.name}: {path.name} is not a readable ONNX model ({cause})")
                continue
            if model is None:
                errors.append(f"{self.name}: {path.name} left out: {note}")
                continue
            if note:
                errors.append(f"{self.name}: {path.name} is served as a tensor model: {note}")
            found[model_id] = model
        for kind, wanted in (("models", self.models), ("classifiers", tuple(self.classifiers))):
            for name in wanted:
                if name not in names:
                    errors.append(
                        f"{self.name}: {kind} names '{name}', but there is no {name}.onnx"
                    )
        for error in errors:
            log.warning("%s", error)
        return found, tuple(errors)

    def _model(
        self, model_id: str, path: Path, settings: ClassifierSettings | None
    ) -> tuple[OnnxModel | None, str]:
        """The model, or None and why it cannot be served; the note says why a model
        with labels or settings is not a classifier."""
        signature = self._signature(path)
        uncarried = [s.describe() for s in (*signature.inputs, *signature.outputs) if not s.carried]
        if uncarried:
            return None, f"Input.tensors and Output.tensors cannot carry {', '.join(uncarried)}"
        if not signature.outputs:
            return None, "it has no outputs"
        classifier, note = classifier_of(path, signature.inputs, signature.outputs, settings)
        model = OnnxModel(
            model_id,
            path,
            signature.inputs,
            signature.outputs,
            classifier,
            signature.producer,
            signature.description,
        )
        return model, note

    def _signature(self, path: Path) -> _Signature:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        known = self._signatures.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        session = open_session(path, threads=1, optimise=False)
        meta = session.get_modelmeta()
        signature = _Signature(
            tuple(spec_of(n) for n in session.get_inputs()),
            tuple(spec_of(n) for n in session.get_outputs()),
            str(meta.producer_name or ""),
            str(meta.description or ""),
        )
        del session
        self._signatures[path] = (stamp, signature)
        return signature


def open_session(path: Path, *, threads: int, optimise: bool = True) -> Any:
    """An onnxruntime session on the CPU over `path`, using `threads` threads per run."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are about the graph, not us
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
