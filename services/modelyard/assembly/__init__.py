"""Assembly: settings read once, the table of backend kinds, and the running stack.

- `settings`: flags, environment, file and built-in default → one frozen `Settings`;
- `kinds`: one `BackendKind` per kind of backend (engine, discovery, role);
- `plugins`: backend kinds from outside the project (entry points ``modelyard.engines``);
- `plan`: each configured backend paired with its kind and models directory, once;
- `profiles`, `selection`: configuration laid over catalog entries and the selector;
- `stack`: the services built from all of it and served on one address.
"""

from modelyard.assembly.settings import (
    DEFAULT_ADDRESS,
    ROLES,
    Settings,
    default_data_dir,
    resolve_settings,
)
from modelyard.assembly.stack import Stack, start_stack

__all__ = [
    "DEFAULT_ADDRESS",
    "ROLES",
    "Settings",
    "Stack",
    "default_data_dir",
    "resolve_settings",
    "start_stack",
]
