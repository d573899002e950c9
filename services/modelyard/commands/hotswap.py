"""`modelyard routes|swap|swap-status|swaps|rollback|fallbacks`: the hot-swap service's
routes and swaps from the command line.

`swap` follows its swap to the end and exits 0 once DONE, 1 when it failed or was rolled
back, REFUSED when the service refused it; Ctrl-C stops following (the swap goes on).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

from modelyard.commands.client_options import (
    REFUSAL_CODES,
    REFUSED,
    add_address,
    add_json,
    non_negative,
    print_error,
    print_json,
)
from modelyard.security.client_channel import channel_for
from modelyard_client.errors import ModelyardError

T = TypeVar("T", bound=Message)

if TYPE_CHECKING:
    from modelyard_client.v1 import hotswap_pb2


def register(sub: Any) -> None:
    """Add the hot-swap commands to the CLI's subparsers."""
    routes = sub.add_parser("routes", help="list the routes: which model serves each alias")
    add_address(routes)
    add_json(routes)
    routes.set_defaults(run=_routes)

    swap = sub.add_parser(
        "swap",
        help="move ALIAS to MODEL with no request cut and follow the swap "
        "(exit 0: done, 1: failed or rolled back, 2: refused)",
    )
    swap.add_argument("alias")
    swap.add_argument("model", help="the target: a catalog id")
    swap.add_argument(
        "--grace-ms",
        type=non_negative,
        default=0,
        help="how long calls running on the previous model get to finish "
        "(default: hot_swap.grace_period_ms)",
    )
    swap.add_argument(
        "--validation-timeout-ms",
        type=non_negative,
        default=0,
        help="time the target gets per validation prompt (default: hot_swap.validation_timeout_ms)",
    )
    swap.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="a validation prompt the target must answer first; repeatable "
        "(default: one short prompt)",
    )
    swap.add_argument(
        "--canary",
        action="store_true",
        help="after validation, move the calls over in steps (hot_swap.canary.steps), each "
        "judged on live calls against the current model; a regression rolls the swap back",
    )
    add_address(swap)
    swap.set_defaults(run=_swap)

    swap_status = sub.add_parser("swap-status", help="print a swap's status")
    swap_status.add_argument("swap_id")
    add_address(swap_status)
    add_json(swap_status)
    swap_status.set_defaults(run=_swap_status)

    swaps = sub.add_parser("swaps", help="list the swaps the hot-swap service keeps, newest first")
    swaps.add_argument("--running", action="store_true", help="only those not ended")
    which = swaps.add_mutually_exclusive_group()
    which.add_argument("--alias", default="", help="only this alias's swaps")
    which.add_argument(
        "--task", default="", metavar="TASK_TYPE", help="only this task type's (e.g. code)"
    )
    swaps.add_argument(
        "--limit",
        type=non_negative,
        default=0,
        help="at most this many (default 100, at most 1000)",
    )
    add_address(swaps)
    add_json(swaps)
    swaps.set_defaults(run=_swaps)

    rollback = sub.add_parser(
        "rollback", help="put a swap's previous model back (or stop it before its switch)"
    )
    rollback.add_argument("swap_id")
    add_address(rollback)
    rollback.set_defaults(run=_rollback)

    fallbacks = sub.add_parser(
        "fallbacks",
        help="set the models an alias's (or a model's) calls fall back to; none: clear the list",
    )
    fallbacks.add_argument("target", help="an alias, or a catalog id (it has a '/')")
    fallbacks.add_argument("models", nargs="*", help="catalog ids or aliases, in the order tried")
    add_address(fallbacks)
    fallbacks.set_defaults(run=_fallbacks)


def _routes(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    with channel_for(args) as channel:
        routes = remote.list_routes(channel, timeout_s=10)
    return _listing(args, routes, "no routes", _route_line)


def _swap(args: argparse.Namespace) -> int:
    from modelyard_client import remote
    from modelyard_client.v1 import hotswap_pb2

    request = hotswap_pb2.SwapRequest(
        alias=args.alias,
        target_model_id=args.model,
        grace_period_ms=args.grace_ms,
        validation_timeout_ms=args.validation_timeout_ms,
        validation_prompts=args.prompt,
        canary=args.canary,
    )
    with channel_for(args) as channel:
        try:
            status = remote.start_swap(channel, request, timeout_s=10)
        except ModelyardError as exc:
            if exc.code.name not in REFUSAL_CODES:
                raise
            print_error(exc)
            return REFUSED
        print(_swap_line(status), flush=True)
        watch = remote.watch_swap(channel, status.swap_id)
        try:
            for now in watch:
                for line in _watch_lines(status, now):
                    print(line, flush=True)
                status = now
        except KeyboardInterrupt:
            watch.close()  # cancels the watch only: the swap goes on
            swap_id = status.swap_id
            print(
                f"modelyard: stopped following swap {swap_id}; it goes on "
                f"(modelyard swap-status {swap_id}); to undo it: modelyard rollback {swap_id}",
                file=sys.stderr,
            )
            return 130
    print(_swap_line(status))
    return 0 if status.phase == hotswap_pb2.SwapStatus.PHASE_DONE else 1


def _swap_status(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    with channel_for(args) as channel:
        status = remote.get_swap(channel, args.swap_id, timeout_s=10)
    if args.json:
        print_json([status])
        return 0
    print(_swap_line(status))
    for step in status.steps:
        print(f"  {_step_line(step)}")
    return 0


def _swaps(args: argparse.Namespace) -> int:
    from modelyard.route_keys import TASK_TYPES
    from modelyard_client import remote
    from modelyard_client.v1 import hotswap_pb2

    task_type = 0
    if args.task:
        task_type = TASK_TYPES.get(args.task, -1)
        if task_type < 0:
            known = ", ".join(sorted(TASK_TYPES))
            print(f"modelyard: --task {args.task!r} is not a task type: {known}", file=sys.stderr)
            return REFUSED
    request = hotswap_pb2.ListSwapsRequest(
        running_only=args.running,
        alias=args.alias,
        task_type=task_type,  # type: ignore[arg-type]  # a TaskType number, checked above
        limit=args.limit,
    )
    with channel_for(args) as channel:
        swaps = remote.list_swaps(channel, request, timeout_s=10)
    return _listing(args, swaps, "no swaps", _swap_line)


def _rollback(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    with channel_for(args) as channel:
        print(_swap_line(remote.rollback(channel, args.swap_id, timeout_s=10)))
    return 0


def _fallbacks(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    alias, model = ("", args.target) if "/" in args.target else (args.target, "")
    with channel_for(args) as channel:
        route = remote.set_fallbacks(channel, alias, model, args.models, timeout_s=10)
    print(_route_line(route))
    return 0


def _listing(
    args: argparse.Namespace, items: Sequence[T], none: str, line_of: Callable[[T], str]
) -> int:
    """A listing's output: with --json one JSON document, else a line per item (`none`
    when there is none)."""
    if args.json:
        print_json(items)
        return 0
    if not items:
        print(none)
    for item in items:
        print(line_of(item))
    return 0


# How the hot-swap commands print routes and swaps: every line they write comes from here.


def _route_line(route: hotswap_pb2.Route) -> str:
    """``chat-default<TAB>local/gemma<TAB>rev=3``; a task type's route is ``task:code``, a
    model's fallback list ``model:<id><TAB>-``; ``fallbacks=a,b`` when there are some."""
    from modelyard.route_keys import TASK_TYPES

    if route.alias:
        name = route.alias
    elif route.for_model:
        name = f"model:{route.for_model}"
    else:
        names = {number: name for name, number in TASK_TYPES.items()}
        name = f"task:{names.get(route.task_type, str(route.task_type))}"
    line = f"{name}\t{route.model_id or '-'}\trev={route.revision}"
    if route.ab_test_id:
        line += f"\tab_test={route.ab_test_id}"
    if route.fallback_models:
        line += f"\tfallbacks={','.join(route.fallback_models)}"
    return line


def _phase(phase: int) -> str:
    from modelyard.enum_values import value_name
    from modelyard_client.v1 import hotswap_pb2

    return value_name(hotswap_pb2.SwapStatus.Phase.DESCRIPTOR, phase).removeprefix("PHASE_").lower()


def _warm(status: hotswap_pb2.SwapStatus) -> str:
    return f" (warm {status.warm_ms:.0f} ms)" if status.warm_ms else ""


def _swap_line(status: hotswap_pb2.SwapStatus) -> str:
    """``swap ID: alias 'a' x → y, done (warm 12 ms)`` (a task type's: ``task 'code'``),
    then ``: why`` when the swap says;
    a canary swap in its canary phase adds its share (``, canary 25 %``)."""
    from modelyard.route_keys import TASK_TYPES
    from modelyard_client.v1 import hotswap_pb2

    if status.alias:
        route = f"alias '{status.alias}'"
    else:  # a task type's route
        names = {number: name for name, number in TASK_TYPES.items()}
        route = f"task '{names.get(status.task_type, str(status.task_type))}'"
    line = (
        f"swap {status.swap_id}: {route} {status.from_model_id or '(none)'} → "
        f"{status.to_model_id}, {_phase(status.phase)}{_warm(status)}"
    )
    if status.phase == hotswap_pb2.SwapStatus.PHASE_CANARY:
        line += f", canary {status.canary_percent:g} %"
    return f"{line}: {status.error}" if status.error else line


def _step_line(step: hotswap_pb2.CanaryStep) -> str:
    """``step 5 %: advance — why`` (the reason gives the figures)."""
    return f"step {step.percent:g} %: {step.decision} — {step.reason}"


def _watch_lines(before: hotswap_pb2.SwapStatus, after: hotswap_pb2.SwapStatus) -> list[str]:
    """What `swap` prints for one status of its watch: the phase change, and for a canary
    swap each share it moves to (``canary 25 %``) and each step decided, in the order they
    happened: into CANARY, the steps (each before the share it led to), out of CANARY."""
    from modelyard_client.v1 import hotswap_pb2

    canary = hotswap_pb2.SwapStatus.PHASE_CANARY
    moved = after.phase != before.phase
    lines = []
    if moved and after.phase == canary:
        lines.append(_phase_change_line(before, after))
    for step in after.steps[len(before.steps) :]:
        lines.append(_step_line(step))
        if step.decision == "hold":
            lines.append(
                f"held at {step.percent:g} % for a person to decide; "
                f"modelyard rollback {after.swap_id} puts '{after.from_model_id}' back"
            )
    if after.phase == canary and (moved or after.canary_percent != before.canary_percent):
        lines.append(f"canary {after.canary_percent:g} %")
    if moved and after.phase != canary:
        lines.append(_phase_change_line(before, after))
    return lines


def _phase_change_line(before: hotswap_pb2.SwapStatus, after: hotswap_pb2.SwapStatus) -> str:
    """``warming → validating (warm 12 ms)``: the warm time on the change that measured it."""
    warm = _warm(after) if not before.warm_ms else ""
    return f"{_phase(before.phase)} → {_phase(after.phase)}{warm}"
