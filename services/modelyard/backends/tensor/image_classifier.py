"""An ONNX image classifier: an image in, its pixels as the model's one NCHW input, the
top label out.

A model is a classifier when it has labels — ``<model>.labels.txt`` beside the
``.onnx`` file, one label per line in the order of the model's scores, or the
file `ClassifierSettings.labels` names — and its one input is float32
``[N, C, H, W]`` with N 1 or free, C 1 (grey) or 3 (RGB) and H, W fixed. Its
first output holds one score per label (logits or probabilities: the top one
is the same).

An image (`Input.image`, PNG, JPEG, WebP or GIF bytes, checked as the
gateway checks a chat's image, `content_parts.read_image`) is decoded with
Pillow (EXIF orientation applied, the first frame of a GIF), converted to RGB
(or grey for C = 1), resized to W x H bilinearly (no crop: the whole image,
its aspect ratio not kept), scaled to [0, 1] and normalised per channel,
``(x - mean) / std``, ImageNet's mean and std unless the configuration gives
the model its own. An image over `MAX_IMAGE_PIXELS` is refused before it is
decoded.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.backends.content_parts import read_image
from modelyard.backends.tensor.tensor_specs import TensorSpec
from modelyard_client.errors import FailedPrecondition, InvalidRequest
from modelyard_client.v1 import common_pb2

# torchvision's ImageNet statistics, what most exported classifiers were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Decoded, an image takes width x height x 3 bytes and more: a 1 MiB PNG of one colour
# can claim 100 megapixels. 4096 x 4096 is a large photo.
MAX_IMAGE_PIXELS = 4096 * 4096
LABELS_SUFFIX = ".labels.txt"
_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # Pillow's names of content_parts.IMAGE_TYPES


@dataclass(frozen=True)
class ClassifierSettings:
    """What the configuration says of one classifier: its labels file (None: the one
    beside the model) and the per-channel normalisation of its pixels."""

    labels: Path | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class ImageClassifier:
    """How one model reads an image and names its answer."""

    input_name: str
    channels: int
    height: int
    width: int
    scores: str  # the output holding one score per label
    labels: tuple[str, ...]
    labels_path: Path
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def describe(self) -> str:
        """``3x224x224, mean (0.485, ...) std (...)``: the catalog entry's metadata."""
        return (
            f"{self.channels}x{self.height}x{self.width}, mean {self.mean} std {self.std}, "
            f"bilinear resize"
        )

    def pixels(self, image: common_pb2.Image, model_id: str) -> npt.NDArray[np.float32]:
        """The image as this model's input, ``[1, C, H, W]`` float32; `InvalidRequest`
        naming ``input.image`` when it is not an image this can decode."""
        from PIL import Image, ImageOps, UnidentifiedImageError

        read = read_image(image, "input.image")
        read.refuse_url(f"model '{model_id}' (tensor engine)")
        mode = "L" if self.channels == 1 else "RGB"
        try:
            with Image.open(io.BytesIO(read.data), formats=_FORMATS) as opened:
                width, height = opened.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise InvalidRequest(
                        f"input.image is {width}x{height} pixels; the tensor engine decodes "
                        f"at most {MAX_IMAGE_PIXELS} pixels",
                        field="input.image",
                    )
                opened.draft(mode, (self.width, self.height))  # JPEG: decode scaled down
                picture = ImageOps.exif_transpose(opened).convert(mode)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise InvalidRequest(
                f"input.image cannot be decoded as a {read.mime_type} image: {exc}",
                field="input.image",
            ) from exc
        picture = picture.resize((self.width, self.height), Image.Resampling.BILINEAR)
        x = np.asarray(picture, dtype=np.float32) / 255.0
        if x.ndim == 2:
            x = x[:, :, np.newaxis]
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)

    def top_label(self, scores: npt.NDArray[Any], model_id: str) -> str:
        """The label of the highest score (the first of equal ones)."""
        flat = np.asarray(scores).reshape(-1)
        if flat.size != len(self.labels):
            raise FailedPrecondition(
                f"model '{model_id}' gave {flat.size} scores for the {len(self.labels)} labels "
                f"of {self.labels_path}"
            )
        return self.labels[int(np.argmax(flat))]


def labels_path(model_file: Path, settings: ClassifierSettings | None) -> Path:
    """Where a model's labels are: the configured file, or ``<model>.labels.txt`` beside it."""
    if settings is not None and settings.labels is not None:
        return settings.labels
    return model_file.with_name(model_file.stem + LABELS_SUFFIX)


def classifier_of(
    model_file: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    settings: ClassifierSettings | None,
) -> tuple[ImageClassifier | None, str]:
    """The model as an image classifier, or None and why not ("" when it has no labels
    and no settings: a tensor model, nothing wrong)."""
    path = labels_path(model_file, settings)
    if not path.is_file():
        return None, f"no labels file {path}" if settings is not None else ""
    problem = _input_problem(inputs)
    if problem:
        return None, f"it has labels ({path.name}) but {problem}"
    [spec] = inputs
    channels, height, width = (int(d) for d in spec.shape[1:] if isinstance(d, int))
    wanted = settings or ClassifierSettings()
    for key, values in (("mean", wanted.mean), ("std", wanted.std)):
        if len(values) not in (1, channels):
            return None, f"its {key} has {len(values)} values for {channels} channel(s)"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"its labels file {path} cannot be read: {exc}"
    labels = tuple(line.strip() for line in lines)
    empty = [i + 1 for i, label in enumerate(labels) if not label]
    if not labels or empty:
        return None, f"its labels file {path} has empty lines ({empty or 'no labels'})"
    scores = outputs[0]
    dims = scores.shape[1:] if len(scores.shape) > 1 else scores.shape  # past the batch
    count = math.prod(d for d in dims if isinstance(d, int))
    if not all(isinstance(d, int) for d in dims):
        count = -1  # known when it runs (`top_label`)
    if not scores.dtype.startswith("float"):
        return None, f"its first output {scores.describe()} holds no scores"
    if count not in (-1, len(labels)):
        return None, (
            f"its first output {scores.describe()} has {count} scores for the "
            f"{len(labels)} labels of {path}"
        )
    classifier = ImageClassifier(
        spec.name, channels, height, width, scores.name, labels, path, wanted.mean, wanted.std
    )
    return classifier, ""


def _input_problem(inputs: Sequence[TensorSpec]) -> str:
    """Why the model's inputs are not one NCHW float32 image, or ""."""
    if len(inputs) != 1:
        return f"it has {len(inputs)} inputs, not one image"
    spec = inputs[0]
    shape = spec.shape
    if spec.dtype != "float32" or len(shape) != 4:
        return f"its input {spec.describe()} is not float32 [N, C, H, W]"
    if isinstance(shape[0], int) and shape[0] != 1:
        return f"its input {spec.describe()} takes a batch of {shape[0]}, not one image"
    channels, height, width = shape[1:]
    if channels not in (1, 3):
        return f"its input {spec.describe()} has {channels} channels, not 1 or 3"
    if not (isinstance(height, int) and isinstance(width, int) and height and width):
        return f"its input {spec.describe()} has no fixed height and width to resize to"
    return ""
