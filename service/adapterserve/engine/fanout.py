"""Several adapters over the same inputs: fan-out (/classify?adapter=a,b,c) and ensembles.

Names resolve to adapters or ensembles; an ensemble expands to its members. Every adapter needed (each
once, however many names share it) gets one row per input, all rows of one work item, so the backbone
runs once; the results are then split back per name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import tasks
from ..adapters.ensemble import Ensemble
from ..errors import AdapterNotFound, BadRequest, Conflict, PayloadTooLarge
from ..snapshot import Snapshot
from ..store import validate_name

if TYPE_CHECKING:
    from ..lifecycle import Lifecycle


MAX_NAME_LENGTH = 128


def parse_names(value: str, limit: int) -> list[str]:
    names = value.split(",")
    for n in names:  # the query's pattern checked the characters; a name this long cannot be in any store
        if len(n) > MAX_NAME_LENGTH:
            raise AdapterNotFound(f"no adapter is named {n[:40]!r}...: names have at most {MAX_NAME_LENGTH} characters")
        validate_name(n)
    if len(set(names)) != len(names):
        raise BadRequest(f"adapter names repeat in {value!r}; name each adapter once")
    if len(names) > limit:
        raise PayloadTooLarge(
            f"{len(names)} adapters in one request; the limit is {limit}: split the request",
            adapters=len(names),
            limit=limit,
        )
    return names


async def resolve_names(get: Callable[[str], Awaitable[Snapshot]], names: list[str]) -> dict[str, Snapshot]:
    """Every name resolved by `get` (the router's resolve for a route, or the lifecycle's get), or one 404
    naming all the unknown ones."""
    got = await asyncio.gather(*(get(n) for n in names), return_exceptions=True)
    missing = [(n, g) for n, g in zip(names, got) if isinstance(g, AdapterNotFound)]
    if missing:  # each message says its closest names (store.not_found)
        raise AdapterNotFound("; ".join(g.message for _, g in missing), names=[n for n, _ in missing])
    for g in got:
        if isinstance(g, BaseException):
            raise g
    return dict(zip(names, got))


def check_members(name: str, ensemble: Ensemble, members: dict[str, Snapshot]) -> tuple[str, list[str]]:
    """The members' common task and labels; a 4xx naming the difference otherwise."""
    first, task, labels = None, None, None
    for member, loaded in members.items():
        adapter = loaded.adapter
        if isinstance(adapter, Ensemble):
            raise BadRequest(f"ensemble {name!r}: member {member!r} is itself an ensemble; name adapters only")
        if tasks.get(adapter.task).route != "classify":
            raise BadRequest(
                f"ensemble {name!r}: member {member!r} is a {adapter.task} adapter; ensembles combine classifiers"
            )
        if first is None:
            first, task, labels = member, adapter.task, list(adapter.labels)
        elif adapter.task != task:
            raise BadRequest(f"ensemble {name!r}: member {member!r} is {adapter.task} but {first!r} is {task}")
        elif list(adapter.labels) != labels:
            raise BadRequest(
                f"ensemble {name!r}: member {member!r} has labels {list(adapter.labels)} but {first!r} has {labels}",
                member=member,
                labels=list(adapter.labels),
                expected=labels,
            )
    if ensemble.combine == "vote" and task == "multilabel":
        raise BadRequest(
            f"ensemble {name!r}: 'vote' needs single-label classifiers; combine multi-label ones by 'mean'"
        )
    return task, labels


async def resolve_members(lifecycle: Lifecycle, name: str, ensemble: Ensemble) -> tuple[Ensemble, dict[str, Snapshot]]:
    """An ensemble's members as they are now, and the ensemble with their task and labels (one published
    straight into a store, not through the admin API, has none recorded): 409 when a member was deleted or
    no longer fits."""
    try:
        members = await resolve_names(lifecycle.get, ensemble.members)
    except AdapterNotFound as e:
        missing = e.details.get("names", [])
        raise Conflict(
            f"ensemble {name!r} cannot answer: member(s) {missing} were deleted; publish them again, or a new "
            "version of the ensemble without them",
            ensemble=name,
            missing=missing,
        ) from None
    try:
        task, labels = check_members(name, ensemble, members)
    except BadRequest as e:
        raise Conflict(f"{e.message}; publish a new version of the ensemble", ensemble=name) from None
    if ensemble.task is not None and (task, labels) != (ensemble.task, ensemble.labels):
        raise Conflict(
            f"ensemble {name!r} was published for {ensemble.task} labels {ensemble.labels}; its members now "
            f"give {task} labels {labels}: publish a new version of the ensemble",
            ensemble=name,
        )
    return replace(ensemble, task=task, labels=labels), members
