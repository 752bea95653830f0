"""The metrics exposition: counters and the duration histogram as jobs end."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from semantica.models import JobState
from semantica.supervisor.metrics import DURATION_BUCKETS, Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text())
        for s in family.samples
    }


def test_ends_count_by_type_and_state_and_fill_the_histogram() -> None:
    metrics = Metrics(lambda: {"DONE": 2}, lambda: {"idle": 1, "busy": 1})
    metrics.enqueued(3)
    metrics.job_ended("A", JobState.DONE, 0.001)  # on a bucket's bound: counted in it
    metrics.job_ended("A", JobState.QUEUED, 0.7)  # a retry: timed, not finished
    metrics.job_ended("B", JobState.FAILED, 7200.0)  # past the last finite bound
    metrics.job_finished_unrun("A", JobState.CANCELLED)
    samples = _samples(metrics)
    assert samples[("semantica_enqueued_total", ())] == 3
    finished = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "semantica_jobs_finished_total"
    }
    assert finished == {
        (("state", "DONE"), ("type", "A")): 1,
        (("state", "CANCELLED"), ("type", "A")): 1,
        (("state", "FAILED"), ("type", "B")): 1,
    }
    bucket = "semantica_job_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.001"),))] == 1
    assert samples[(bucket, (("le", "0.5"),))] == 1
    assert samples[(bucket, (("le", "1.0"),))] == 2
    assert samples[(bucket, (("le", "3600.0"),))] == 2
    assert samples[(bucket, (("le", "+Inf"),))] == 3
    assert len([k for k in samples if k[0] == bucket]) == len(DURATION_BUCKETS)
    assert samples[("semantica_job_duration_seconds_count", ())] == 3
    assert samples[("semantica_job_duration_seconds_sum", ())] == 0.001 + 0.7 + 7200.0
    assert samples[("semantica_jobs", (("state", "DONE"),))] == 2
    assert samples[("semantica_workers", (("state", "busy"),))] == 1


def test_a_batch_of_done_ends_counts_as_each_end_would() -> None:
    """jobs_done (a drain's batch of DONE ends) leaves the same counters and histogram as
    job_ended of each, beside ends counted one by one."""
    ends = [("A", 0.001), ("B", 0.0004), ("A", 2.5), ("A", 7200.0)]
    one_by_one = Metrics(lambda: {}, lambda: {})
    batched = Metrics(lambda: {}, lambda: {})
    for metrics in (one_by_one, batched):
        metrics.job_ended("A", JobState.FAILED, 0.2)
    for type_, duration_s in ends:
        one_by_one.job_ended(type_, JobState.DONE, duration_s)
    batched.jobs_done(ends)
    assert _samples(batched) == _samples(one_by_one)
    finished = _samples(batched)[
        ("semantica_jobs_finished_total", (("state", "DONE"), ("type", "A")))
    ]
    assert finished == 3
