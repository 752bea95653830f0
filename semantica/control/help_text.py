"""``semctl --help``, as typer prints it at 80 columns or more, kept here so that the
help a person asks for first costs no typer import (typer, every command module, and
every command built only to list them: about four fifths of its CPU time).

The fast path (fast_path.py) prints :data:`TOP` for ``semctl --help`` and ``semctl
-h`` when the help would be laid out at 80 columns or more (what click does for a
pipe, a file, and any terminal that wide); a narrower terminal, or any other help,
gets typer's, and so does a program click names other than ``semctl`` or ``python -m
semantica.control`` (whose usage line is the same but for the name).
tests/unit/test_help_text.py checks that :data:`TOP` is exactly what typer prints;
when a command or its first docstring line changes, it fails showing the new text
to paste here.
"""

TOP = """\
Usage: semctl [OPTIONS] COMMAND [ARGS]...

  Control a Semantica supervisor: enqueue jobs, watch them, manage the engine.

Options:
  --home <str>    State directory [env: SEMANTICA_HOME].
  --socket <str>  Control socket [env: SEMANTICA_SOCKET].
  --version       Print the version and exit.
  -h, --help      Show this message and exit.

Commands:
  enqueue      Add a job and print its id.
  show         Show one job: state, attempts, timings, error, result.
  list         List jobs, newest first; the last line says if more match...
  wait         Wait until the jobs finish; exit 0 only if all of them are...
  logs         Print a job's log (the last N lines with -n).
  tail         Follow a job's log until it ends (exit 0 if DONE); without...
  status       Counts by state, workers, database size, uptime, version,...
  cancel       Cancel jobs: queued ones at once, running ones stopped...
  retry        Put a FAILED or CANCELLED job back in the queue with a...
  pause        Start no new job from QUEUE (running jobs go on).
  resume       Start jobs from QUEUE again (a queue never seen is an error).
  limit        Run at most N jobs of QUEUE at once (0: no cap).
  queues       List queues with their counts by state, paused flag and...
  top          Live dashboard: workers, their jobs, CPU and memory,...
  maintenance  Delete old finished jobs and their logs, checkpoint,...
  metrics      Print the Prometheus text exposition (--json: each family,...
  shutdown     Drain and stop the supervisor, as SIGTERM does.
  web          Serve the browser view: dashboard, jobs, live logs, actions.
  schedule     Jobs made on a schedule: cron expressions or intervals, in...
  service      Run the supervisor (--web: the web view) as a service: a...
"""
