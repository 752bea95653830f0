"""Requests about schedules: ``schedule_put``, ``schedule_get``, ``schedules``,
``schedule_pause``, ``schedule_remove``, ``schedule_run``, ``schedule_apply``.

A spec is checked whole (``validate_schedule``: its name, the cron expression
read by cronsim, the zone, the job) before the store sees it, even though the
client checked it too: a client is not trusted. Writes go through
the lifecycle (``services.jobs``, its schedule writes: schedule_writes.py)
under :func:`~.common.store_write`, like every write; reads through
``services.store``. A job type no worker can run is refused, as at enqueue. An
unknown name is ``no_such_schedule`` (semctl exit 5).
"""

from __future__ import annotations

from semantica.errors import BadInput
from semantica.models import short_repr
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
from semantica.schedules import (
    NoSuchSchedule,
    Schedule,
    schedule_exists,
    validate_schedule,
    validate_schedule_name,
)
from semantica.supervisor.handlers.common import store_write
from semantica.supervisor.services import Services
from semantica.supervisor.store.contract import RUNS_KEPT

#: The most schedules one apply may name.
APPLY_MAX = 1000


async def handle_schedule_put(services: Services, request: PutSchedule) -> ScheduleReply:
    """Create a schedule; one of that name already there is bad input unless ``replace``."""
    spec = request.spec
    validate_schedule(spec)

    def put() -> tuple[Schedule, bool]:
        if not request.replace and _exists(services, spec.name):
            raise BadInput(schedule_exists(spec.name))
        services.jobs.check([spec.job])  # a type the workers know, as at enqueue
        # (The store refuses it too: another node may create it between the two.)
        return services.jobs.put_schedule(spec, replace=request.replace)

    schedule, created = await store_write(services, put)
    return ScheduleReply(rid=request.rid, schedule=schedule, created=created)


def _exists(services: Services, name: str) -> bool:
    try:
        services.store.schedule(name, runs=0)
    except NoSuchSchedule:
        return False
    return True


def handle_schedule_get(services: Services, request: GetSchedule) -> ScheduleReply:
    """One schedule with its last ``runs`` runs."""
    validate_schedule_name(request.name)
    if not 0 <= request.runs <= RUNS_KEPT:
        raise BadInput(f"runs must be between 0 and {RUNS_KEPT}, got {request.runs}")
    schedule = services.store.schedule(request.name, runs=request.runs)
    return ScheduleReply(rid=request.rid, schedule=schedule)


def handle_schedules(services: Services, request: ListSchedules) -> ScheduleList:
    """Every schedule, by name, each with its latest run (two reads, whatever their number)."""
    return ScheduleList(rid=request.rid, schedules=services.store.schedules(latest_run=True))


async def handle_schedule_pause(services: Services, request: PauseSchedule) -> ScheduleReply:
    """Pause a schedule, or resume it."""
    validate_schedule_name(request.name)
    name, paused = request.name, request.paused
    schedule = await store_write(services, lambda: services.jobs.pause_schedule(name, paused))
    return ScheduleReply(rid=request.rid, schedule=schedule)


async def handle_schedule_remove(services: Services, request: RemoveSchedule) -> Ok:
    """Remove a schedule (its jobs stay)."""
    validate_schedule_name(request.name)
    name = request.name
    if not await store_write(services, lambda: services.jobs.remove_schedule(name)):
        raise NoSuchSchedule(f"no schedule {short_repr(name)}")
    return Ok(rid=request.rid)


async def handle_schedule_run(services: Services, request: RunSchedule) -> JobReply:
    """A job from the schedule's template now."""
    validate_schedule_name(request.name)
    name = request.name
    result = await store_write(services, lambda: services.jobs.run_schedule(name))
    return JobReply(rid=request.rid, job=services.explain(result.jobs[:1])[0])


async def handle_schedule_apply(services: Services, request: ApplySchedules) -> ScheduleDiff:
    """Make the schedules exactly those given, in one write (or say what that would do)."""
    specs = request.specs
    if len(specs) > APPLY_MAX:
        raise BadInput(f"at most {APPLY_MAX} schedules at once, got {len(specs)}")
    for spec in specs:
        try:
            validate_schedule(spec)
        except BadInput as exc:
            raise BadInput(f"schedule {short_repr(spec.name)}: {exc.message}") from None
    services.jobs.check([spec.job for spec in specs])  # types the workers know
    dry_run = request.dry_run
    changes = await store_write(services, lambda: services.jobs.apply_schedules(specs, dry_run))
    return ScheduleDiff(rid=request.rid, changes=changes)
