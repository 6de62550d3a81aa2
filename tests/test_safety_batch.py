"""The scan batcher (gateway/safety/batch.py): jobs of one loop turn go to the work function together, each
caller gets its own result or error, and a long queue yields the loop between slices."""

from __future__ import annotations

import asyncio

from gateway.safety.batch import Batcher


async def test_jobs_submitted_in_one_turn_run_back_to_back_before_any_caller_resumes() -> None:
    events: list[str] = []

    def work(jobs: list[int]) -> list[int]:
        events.append(f"work {jobs}")
        return [job * 10 for job in jobs]

    batcher: Batcher[int, int] = Batcher(work)

    async def caller(job: int) -> int:
        result = await batcher.run(job)
        events.append(f"resumed {job}")
        return result

    results = await asyncio.gather(*(caller(n) for n in range(4)))
    assert results == [0, 10, 20, 30]
    assert events[0] == "work [0, 1, 2, 3]", "one call for the whole turn"
    assert sorted(events[1:]) == ["resumed 0", "resumed 1", "resumed 2", "resumed 3"]


async def test_a_failing_job_fails_its_own_caller_only() -> None:
    def work(jobs: list[int]) -> list[int | Exception]:
        return [ValueError("bad job") if job == 1 else job for job in jobs]

    batcher: Batcher[int, int] = Batcher(work)
    results = await asyncio.gather(batcher.run(0), batcher.run(1), batcher.run(2), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError)


async def test_a_work_function_that_raises_fails_its_group_only() -> None:
    def work(jobs: list[int]) -> list[int]:
        if 1 in jobs:
            raise ValueError("bad group")
        return jobs

    batcher: Batcher[int, int] = Batcher(work, group=2)
    results = await asyncio.gather(*(batcher.run(n) for n in range(4)), return_exceptions=True)
    assert [type(r) for r in results[:2]] == [ValueError, ValueError]
    assert results[2:] == [2, 3]


async def test_a_cancelled_caller_costs_no_work() -> None:
    done: list[int] = []
    batcher: Batcher[int, int] = Batcher(lambda jobs: done.extend(jobs) or jobs)
    first, second = batcher.run(1), batcher.run(2)
    first.cancel()
    assert await second == 2
    assert done == [2]


async def test_a_long_queue_yields_the_loop_between_slices() -> None:
    events: list[str] = []
    batcher: Batcher[int, int] = Batcher(lambda jobs: events.extend(f"work {job}" for job in jobs) or jobs, slice_s=0.0, group=1)
    futures = [batcher.run(n) for n in range(3)]
    asyncio.get_running_loop().call_soon(events.append, "other")  # queued after the batcher's first slice
    assert await asyncio.gather(*futures) == [0, 1, 2]
    assert events == ["work 0", "other", "work 1", "work 2"]


async def test_a_new_turn_starts_a_new_batch() -> None:
    calls: list[int] = []
    batcher: Batcher[int, int] = Batcher(lambda jobs: calls.extend(jobs) or jobs)
    assert await batcher.run(1) == 1
    assert await batcher.run(2) == 2
    assert calls == [1, 2]

