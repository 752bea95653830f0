"""The schedule verbs of the clients: :class:`ScheduleMethods` (mixed into ``Client``) and
:class:`AsyncScheduleMethods` (into ``AsyncClient``), and :func:`make_schedule_spec`.

::

    with Client() as c:
        c.schedule("nightly", "exec", {"argv": ["backup.sh"]}, cron="0 3 * * *",
                   tz="Europe/Berlin")
        c.schedule("often", "INDEX_FILE", {"path": "src"}, every="15m", jitter="30s")
        c.run_schedule("nightly")            # a job now, from its template

A spec is built and checked here (:func:`~semantica.schedules.validate_schedule`:
the name, the cron expression read by cronsim, the zone, the job) before
anything is sent, so bad input fails at once, even with no supervisor. Every
call raises what the supervisor said as its :class:`~semantica.errors.SemanticaError`
(an unknown name: :class:`~semantica.schedules.NoSuchSchedule`, exit 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from semantica.control.schedule_input import local_zone, parse_duration
from semantica.errors import BadInput, ProtocolError
from semantica.models import Job
from semantica.protocol import (
    ApplySchedules,
    GetSchedule,
    JobReply,
    ListSchedules,
    Ok,
    PauseSchedule,
    PutSchedule,
    RemoveSchedule,
    RunSchedule,
    ScheduleDiff,
    ScheduleList,
    ScheduleReply,
)
from semantica.schedules import Schedule, ScheduleChanges, ScheduleSpec, validate_schedule

R = TypeVar("R")
Schedules = list[Schedule]
#: What ``apply_schedules`` takes: specs, or mappings of :func:`make_schedule_spec`'s arguments.
SpecsIn = Iterable[ScheduleSpec | Mapping[str, Any]]


def make_schedule_spec(
    name: str,
    type: str,
    payload: Any = None,
    *,
    cron: str | None = None,
    every: float | str | None = None,
    tz: str | None = None,
    jitter: float | str = 0.0,
    catch_up: str = "one",
    overlap: str = "skip",
    paused: bool = False,
    **options: Any,
) -> ScheduleSpec:
    """A checked :class:`ScheduleSpec` from :meth:`ScheduleMethods.schedule`'s arguments.

    ``every`` and ``jitter`` take seconds or a duration (``"15m"``, ``"1h30m"``);
    ``tz`` defaults to this machine's zone (:func:`local_zone`); ``options`` are
    ``enqueue``'s (queue, priority, timeout, ...), but not ``delay`` or ``at``.

    Raises:
        BadInput: a bad name, expression, zone, duration or job option (one line).
    """
    from semantica.control.client import make_spec  # (client.py imports this module)

    spec = ScheduleSpec(
        name=name,
        job=make_spec(type, payload, **options),
        cron=cron,
        every=None if every is None else parse_duration(every, "--every"),
        tz=local_zone() if tz is None else tz,
        jitter=parse_duration(jitter, "--jitter"),
        catch_up=catch_up,
        overlap=overlap,
        paused=paused,
    )
    validate_schedule(spec)
    return spec


def specs_in(specs: SpecsIn) -> list[ScheduleSpec]:
    """Every item as a checked spec (a mapping holds :func:`make_schedule_spec`'s arguments).

    Raises:
        BadInput: a bad spec, naming it; or two of the same name.
    """
    checked: list[ScheduleSpec] = []
    seen: set[str] = set()
    for item in specs:
        if isinstance(item, ScheduleSpec):
            validate_schedule(item)
            spec = item
        else:
            fields = dict(item)
            if "name" not in fields or "type" not in fields:
                raise BadInput("every schedule needs a 'name' and a job 'type'")
            try:
                spec = make_schedule_spec(fields.pop("name"), fields.pop("type"), **fields)
            except TypeError as exc:  # a keyword make_schedule_spec does not take
                raise BadInput(f"bad schedule: {exc}") from None
        if spec.name in seen:
            raise BadInput(f"schedule {spec.name!r} is given twice")
        seen.add(spec.name)
        checked.append(spec)
    return checked


def _expect(reply: Any, kind: type[R]) -> R:
    if not isinstance(reply, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply


class ScheduleMethods:
    """The schedule verbs of :class:`~semantica.control.client.Client`."""

    def _call(self, msg: Any) -> Any:  # (Client's: send a request, return its reply)
        raise NotImplementedError

    def schedule(
        self,
        name: str,
        type: str,
        payload: Any = None,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        tz: str | None = None,
        jitter: float | str = 0.0,
        catch_up: str = "one",
        overlap: str = "skip",
        paused: bool = False,
        replace: bool = False,
        **options: Any,
    ) -> Schedule:
        """Create the schedule ``name``: a job of ``type`` per slot; returns it.

        Exactly one of ``cron`` (five fields, read in ``tz``, default this machine's
        zone) and ``every`` (seconds or ``"15m"``; slots counted from the epoch).
        ``jitter``: each slot's job is due up to that long after it. ``catch_up``
        ``"one"`` or ``"none"``: slots missed while no supervisor ran give one job
        or none. ``overlap`` ``"skip"`` or ``"allow"``: a slot while the previous job
        is queued or running. ``options`` are :meth:`enqueue`'s (no delay or at).

        Raises:
            BadInput: bad input, or a schedule of that name exists and not ``replace``.
        """
        spec = make_schedule_spec(
            name,
            type,
            payload,
            cron=cron,
            every=every,
            tz=tz,
            jitter=jitter,
            catch_up=catch_up,
            overlap=overlap,
            paused=paused,
            **options,
        )
        return _expect(self._call(PutSchedule(spec=spec, replace=replace)), ScheduleReply).schedule

    def put_schedule(self, spec: ScheduleSpec, replace: bool = False) -> Schedule:
        """Create (or with ``replace``, change) a schedule from a spec; returns it."""
        validate_schedule(spec)
        return _expect(self._call(PutSchedule(spec=spec, replace=replace)), ScheduleReply).schedule

    def schedules(self) -> Schedules:
        """Every schedule, by name (without runs)."""
        return _expect(self._call(ListSchedules()), ScheduleList).schedules

    def get_schedule(self, name: str, runs: int = 20) -> Schedule:
        """The schedule ``name`` with its last ``runs`` runs, newest first (NoSuchSchedule)."""
        return _expect(self._call(GetSchedule(name=name, runs=runs)), ScheduleReply).schedule

    def pause_schedule(self, name: str) -> Schedule:
        """Its slots give no job until :meth:`resume_schedule` (nor are they missed)."""
        return _expect(self._call(PauseSchedule(name=name)), ScheduleReply).schedule

    def resume_schedule(self, name: str) -> Schedule:
        """Fire again, from the first slot after now."""
        reply = self._call(PauseSchedule(name=name, paused=False))
        return _expect(reply, ScheduleReply).schedule

    def remove_schedule(self, name: str) -> None:
        """Remove the schedule (its jobs stay; NoSuchSchedule if there is none)."""
        _expect(self._call(RemoveSchedule(name=name)), Ok)

    def run_schedule(self, name: str) -> Job:
        """A job from the schedule's template now, recorded as a ``manual`` run."""
        return _expect(self._call(RunSchedule(name=name)), JobReply).job

    def apply_schedules(self, specs: SpecsIn, dry_run: bool = False) -> ScheduleChanges:
        """Make the schedules exactly ``specs`` (create, update, remove) in one transaction;
        ``dry_run``: only say what would change. Specs or mappings of :meth:`schedule`'s
        arguments (with ``name`` and ``type``).

        Raises:
            BadInput: a bad spec (nothing is changed).
        """
        request = ApplySchedules(specs=specs_in(specs), dry_run=dry_run)
        return _expect(self._call(request), ScheduleDiff).changes


class AsyncScheduleMethods:
    """The schedule verbs of :class:`~semantica.control.async_client.AsyncClient`, as
    coroutines; the same arguments as :class:`ScheduleMethods`."""

    async def _call(self, msg: Any, kind: type[R]) -> R:  # (AsyncClient's)
        raise NotImplementedError

    async def schedule(
        self,
        name: str,
        type: str,
        payload: Any = None,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        tz: str | None = None,
        jitter: float | str = 0.0,
        catch_up: str = "one",
        overlap: str = "skip",
        paused: bool = False,
        replace: bool = False,
        **options: Any,
    ) -> Schedule:
        """See :meth:`ScheduleMethods.schedule`."""
        spec = make_schedule_spec(
            name,
            type,
            payload,
            cron=cron,
            every=every,
            tz=tz,
            jitter=jitter,
            catch_up=catch_up,
            overlap=overlap,
            paused=paused,
            **options,
        )
        return (await self._call(PutSchedule(spec=spec, replace=replace), ScheduleReply)).schedule

    async def put_schedule(self, spec: ScheduleSpec, replace: bool = False) -> Schedule:
        """See :meth:`ScheduleMethods.put_schedule`."""
        validate_schedule(spec)
        return (await self._call(PutSchedule(spec=spec, replace=replace), ScheduleReply)).schedule

    async def schedules(self) -> Schedules:
        """Every schedule, by name (without runs)."""
        return (await self._call(ListSchedules(), ScheduleList)).schedules

    async def get_schedule(self, name: str, runs: int = 20) -> Schedule:
        """See :meth:`ScheduleMethods.get_schedule`."""
        return (await self._call(GetSchedule(name=name, runs=runs), ScheduleReply)).schedule

    async def pause_schedule(self, name: str) -> Schedule:
        """See :meth:`ScheduleMethods.pause_schedule`."""
        return (await self._call(PauseSchedule(name=name), ScheduleReply)).schedule

    async def resume_schedule(self, name: str) -> Schedule:
        """See :meth:`ScheduleMethods.resume_schedule`."""
        return (await self._call(PauseSchedule(name=name, paused=False), ScheduleReply)).schedule

    async def remove_schedule(self, name: str) -> None:
        """See :meth:`ScheduleMethods.remove_schedule`."""
        await self._call(RemoveSchedule(name=name), Ok)

    async def run_schedule(self, name: str) -> Job:
        """See :meth:`ScheduleMethods.run_schedule`."""
        return (await self._call(RunSchedule(name=name), JobReply)).job

    async def apply_schedules(self, specs: SpecsIn, dry_run: bool = False) -> ScheduleChanges:
        """See :meth:`ScheduleMethods.apply_schedules`."""
        request = ApplySchedules(specs=specs_in(specs), dry_run=dry_run)
        return (await self._call(request, ScheduleDiff)).changes
