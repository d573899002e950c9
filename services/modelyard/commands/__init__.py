"""`modelyard` subcommands that live beside the CLI's core, one module per command.

Each module has ``register(sub)``, which adds its parser to the CLI's
subparsers and sets ``run`` (``args -> exit status``) as the parser's default;
`COMMANDS` lists the modules, in the order ``modelyard --help`` shows them
after the core's commands, and `modelyard.cli` calls ``args.run(args)``.
"""

from __future__ import annotations

from types import ModuleType

from modelyard.commands import (
    abtest,
    audit,
    certs,
    chat,
    evaluate,
    hotswap,
    keys,
    provider_check,
    stats,
    usage,
)

COMMANDS: tuple[ModuleType, ...] = (
    hotswap,
    chat,
    abtest,
    certs,
    keys,
    audit,
    usage,
    stats,
    evaluate,
    provider_check,
)
