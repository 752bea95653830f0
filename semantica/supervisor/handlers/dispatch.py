"""The one place that dispatches a control request to its ``handle_<verb>``.

The dispatch is a ``match`` over message types (an explicit list), never a
lookup of a name the client sent: a request the list does not name is a
protocol error, whatever it calls itself.
"""

from __future__ import annotations

from semantica.errors import ProtocolError
from semantica.protocol import (
    ApplySchedules,
    Cancel,
    ControlReply,
    EnqueueLazy,
    Events,
    Follow,
    GetJob,
    GetLogs,
    GetMetrics,
    GetSchedule,
    GetStatus,
    GetTop,
    Hello,
    LimitQueue,
    ListJobs,
    ListQueues,
    ListSchedules,
    Maintain,
    PauseQueue,
    PauseSchedule,
    PutSchedule,
    RemoveSchedule,
    ResumeQueue,
    Retry,
    RunSchedule,
    Shutdown,
    SupervisorRequest,
    Wait,
    WatchChanges,
)
from semantica.supervisor.handlers.admin import (
    handle_limit,
    handle_maintenance,
    handle_metrics,
    handle_pause,
    handle_queues,
    handle_resume,
    handle_shutdown,
    handle_status,
)
from semantica.supervisor.handlers.common import Send
from semantica.supervisor.handlers.jobs import handle_cancel, handle_enqueue, handle_retry
from semantica.supervisor.handlers.live import (
    handle_changes,
    handle_events,
    handle_follow,
    handle_top,
)
from semantica.supervisor.handlers.reads import handle_get, handle_list, handle_logs, handle_wait
from semantica.supervisor.handlers.schedules import (
    handle_schedule_apply,
    handle_schedule_get,
    handle_schedule_pause,
    handle_schedule_put,
    handle_schedule_remove,
    handle_schedule_run,
    handle_schedules,
)
from semantica.supervisor.services import Services


async def dispatch(
    services: Services, request: SupervisorRequest, send: Send
) -> ControlReply | None:
    """Carry out one request and return its reply (errors are raised as SemanticaError).

    Streaming requests (``Follow``, ``Events``, ``WatchChanges``) push messages with ``send``
    and return their last one, or None when they end without one.
    """
    match request:
        case EnqueueLazy():
            return await handle_enqueue(services, request)
        case GetJob():
            return handle_get(services, request)
        case ListJobs():
            return await handle_list(services, request)
        case Wait():
            return await handle_wait(services, request)
        case GetLogs():
            return handle_logs(services, request)
        case GetStatus():
            return handle_status(services, request)
        case Cancel():
            return await handle_cancel(services, request)
        case Retry():
            return await handle_retry(services, request)
        case PauseQueue():
            return await handle_pause(services, request)
        case ResumeQueue():
            return await handle_resume(services, request)
        case LimitQueue():
            return await handle_limit(services, request)
        case ListQueues():
            return handle_queues(services, request)
        case Maintain():
            return await handle_maintenance(services, request)
        case GetMetrics():
            return handle_metrics(services, request)
        case GetTop():
            return handle_top(services, request)
        case Follow():
            return await handle_follow(services, request, send)
        case Events():
            return await handle_events(services, request, send)
        case WatchChanges():
            return await handle_changes(services, request, send)
        case PutSchedule():
            return await handle_schedule_put(services, request)
        case GetSchedule():
            return handle_schedule_get(services, request)
        case ListSchedules():
            return handle_schedules(services, request)
        case PauseSchedule():
            return await handle_schedule_pause(services, request)
        case RemoveSchedule():
            return await handle_schedule_remove(services, request)
        case RunSchedule():
            return await handle_schedule_run(services, request)
        case ApplySchedules():
            return await handle_schedule_apply(services, request)
        case Shutdown():
            return handle_shutdown(services, request)
        case Hello():
            raise ProtocolError("already authenticated: hello is only the first frame")
    raise ProtocolError(f"unknown request {type(request).__name__}")
