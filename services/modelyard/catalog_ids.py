"""The one catalog-id rule: ``<backend name>/<provider model name>``, and what each may hold.

The backend name is the key of its `model_system.backends` entry (``local``,
``ollama-gpu``, ``openai-eu``), so two backends of one kind never share an id,
and engines and discovery sources of the same backend always agree.

What an id and a version may hold is checked on every write to the catalog
(the registry's `check_entry`, versions, pins, providers) and by discovery
before it hands an entry over (`SourceSnapshot`): ids end up in file names,
URLs, logs and SQL keys, so one with a ``..`` segment, a NUL or a control
character must never be stored.

- backend name: 1-63 characters of ``a-z 0-9 . _ -``, starting with a letter
  or a digit (``ollama``, ``openai-eu``, ``local``); a route's alias follows
  the same rule (`name_problem`), so it never holds the ``/`` of an id;
- provider model name: at least one character, each printable and none
  whitespace or ``\\``; ``/`` may separate parts (``meta-llama/llama-3.1-8b``,
  even ``/models/x`` as vLLM names a model by its path), none of which is
  ``.`` or ``..`` (``a/./b`` would alias ``a/b``, ``a/../b`` climb out of a directory);
- the whole id at most 255 characters;
- a version: 1-128 such characters with no ``/``, other than ``.`` and ``..``.

Real ids stay valid: ``ollama/gemma3:4b``, ``local/gemma-3-270m-q4_k_m``,
``openrouter/meta-llama/llama-3.1-8b-instruct:free``.
"""

from __future__ import annotations

import re

from modelyard.catalog_limits import BACKEND_NAME_CHARS, ID_CHARS, VERSION_CHARS

_BACKEND_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")

ID_RULE = (
    f"ids are <backend>/<model>: the backend 1-{BACKEND_NAME_CHARS} characters of a-z 0-9 . _ -, "
    "starting with a letter or digit; the model printable characters without whitespace, "
    f"'\\' or a '.' or '..' segment; {ID_CHARS} characters at most"
)
VERSION_RULE = (
    f"versions are 1-{VERSION_CHARS} printable characters without whitespace, '/' or '\\', "
    "other than '.' and '..'"
)


def catalog_id(backend: str, model: str) -> str:
    """The catalog id of `model` (the provider's own name) served by backend `backend`."""
    return f"{backend}/{model}"


def split_catalog_id(model_id: str) -> tuple[str, str]:
    """(backend name, provider model name) of a catalog id; the name may contain '/'."""
    backend, _, model = model_id.partition("/")
    return backend, model


def backend_name_problem(name: str) -> str | None:
    """Why `name` cannot be a backend name (the first part of an id), or None."""
    return name_problem("the backend name", name)


def name_problem(what: str, name: str) -> str | None:
    """Why `name` breaks the name rule (a backend's, an alias's), or None; `what` names it."""
    if not name:
        return f"{what} is empty"
    if len(name) > BACKEND_NAME_CHARS:
        return f"{what} is {len(name)} characters, over {BACKEND_NAME_CHARS}"
    if not _BACKEND_NAME.fullmatch(name):
        return (
            f"{what} {name!r} is not 1-{BACKEND_NAME_CHARS} characters of "
            "a-z 0-9 . _ -, starting with a letter or digit"
        )
    return None


def catalog_id_problem(model_id: str) -> str | None:
    """Why `model_id` cannot be a catalog id, or None when it can."""
    if len(model_id) > ID_CHARS:
        return f"it is {len(model_id)} characters, over {ID_CHARS}"
    backend, slash, model = model_id.partition("/")
    if not slash:
        return "it has no '/' between the backend and the model name"
    problem = backend_name_problem(backend)
    if problem is not None:
        return problem
    if not model:
        return "the model name is empty"
    problem = characters_problem(model)
    if problem is not None:
        return f"the model name {problem}"
    dots = next((part for part in model.split("/") if part in (".", "..")), None)
    if dots is not None:
        return f"the model name has a {dots!r} segment"
    return None


def version_problem(version: str) -> str | None:
    """Why `version` cannot be a model version, or None (empty is checked by the caller)."""
    if len(version) > VERSION_CHARS:
        return f"it is {len(version)} characters, over {VERSION_CHARS}"
    problem = characters_problem(version)
    if problem is not None:
        return problem
    if "/" in version:
        return "it holds '/'"
    if version in (".", ".."):
        return f"it is {version!r}"
    return None


def characters_problem(text: str) -> str | None:
    """Which character of `text` the id rule refuses ("holds ' ' (U+0020)"), or None."""
    for char in text:
        # isprintable: no control, format (bidi overrides), separator or unassigned character.
        if not char.isprintable() or char.isspace() or char == "\\":
            return f"holds {char!r} (U+{ord(char):04X})"
    return None
