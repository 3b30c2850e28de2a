"""BlockRing with real threads: every byte through every stage in order, block memory
reused only when every stage is done with it, errors and aborts."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.storage.ring import BlockRing

SIZE = 8192


async def pour(ring: BlockRing, data: bytes) -> None:
    """Fill blocks as FileStore.receive does: a short (or empty) block ends the body."""
    at = 0
    while True:
        block = await ring.take()
        piece = data[at : at + len(block)]
        block[: len(piece)] = piece
        at += len(piece)
        ring.send(block, len(piece))
        if len(piece) < len(block):
            return


class Recorder:
    """A stage that keeps copies of what it saw; ``gate`` holds it before each block."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.gate: threading.Semaphore | None = None

    def __call__(self, block: memoryview) -> None:
        if self.gate is not None:
            self.gate.acquire()
        self.seen.append(bytes(block))


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 7 * SIZE + 3), count=st.integers(1, 4))
def test_every_stage_sees_every_byte_in_order(size: int, count: int) -> None:
    data = bytes(i % 251 for i in range(size))
    first, second = Recorder(), Recorder()

    async def run() -> None:
        ring = BlockRing([first, second], count=count, size=SIZE)
        await pour(ring, data)
        await ring.close()

    asyncio.run(run())
    assert b"".join(first.seen) == data and b"".join(second.seen) == data
    assert all(len(seen) == SIZE for seen in first.seen[:-1])  # only the last block is short


async def test_a_block_is_reused_only_once_every_stage_is_done() -> None:
    first, second = Recorder(), Recorder()
    second.gate = threading.Semaphore(0)
    ring = BlockRing([first, second], count=2, size=SIZE)
    for fill in (b"a", b"b"):
        block = await ring.take()
        block[:SIZE] = fill * SIZE
        ring.send(block, SIZE)
    third = asyncio.ensure_future(ring.take())
    await asyncio.sleep(0.05)
    assert not third.done()  # the second stage holds both blocks
    second.gate.release()
    block = await asyncio.wait_for(third, 5)
    assert bytes(block) == b"a" * SIZE  # the first block, back once written
    second.gate.release()
    ring.send(block, 0)
    second.gate.release()
    await ring.close()
    assert second.seen == [b"a" * SIZE, b"b" * SIZE, b""]


async def test_a_stage_error_is_raised_and_later_blocks_are_skipped() -> None:
    written: list[bytes] = []

    def full_disk(block: memoryview) -> None:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(bytes(block))

    ring = BlockRing([lambda block: None, full_disk], count=2, size=SIZE)
    with pytest.raises(OSError) as caught:
        for _ in range(10):
            block = await ring.take()
            ring.send(block, SIZE)
    assert caught.value.errno == errno.ENOSPC
    await ring.abort()
    assert len(written) == 1


async def test_close_raises_a_late_error() -> None:
    def broken(block: memoryview) -> None:
        raise ValueError("bad block")

    ring = BlockRing([broken], count=2, size=SIZE)
    ring.send(await ring.take(), 10)
    with pytest.raises(ValueError, match="bad block"):
        await ring.close()


async def test_abort_waits_for_the_block_in_hand_and_drops_the_rest() -> None:
    stage = Recorder()
    stage.gate = threading.Semaphore(0)
    ring = BlockRing([stage], count=3, size=SIZE)
    for _ in range(3):
        ring.send(await ring.take(), SIZE)
    await asyncio.sleep(0.05)  # the stage now waits at the gate with the first block
    aborting = asyncio.ensure_future(ring.abort())
    await asyncio.sleep(0.05)
    assert not aborting.done()  # it must not return while a thread holds a block
    stage.gate.release()
    await asyncio.wait_for(aborting, 5)
    assert len(stage.seen) == 1


async def test_no_thread_to_be_had_ends_the_ones_started(monkeypatch: pytest.MonkeyPatch) -> None:
    real_start = threading.Thread.start
    started: list[threading.Thread] = []

    def start_once(thread: threading.Thread) -> None:
        if started:
            raise RuntimeError("can't start new thread")
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_once)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        BlockRing([lambda block: None, lambda block: None], count=1, size=SIZE)
    started[0].join(5)
    assert not started[0].is_alive()


async def test_a_filler_slower_than_the_stages_needs_one_block() -> None:
    """Memory follows the client's speed: a caller that takes its next block only once
    the client's next bytes are there (as FileStore.receive does) finds the block it
    sent last free again, and the ring never makes a second."""
    ring = BlockRing([Recorder(), Recorder()], count=4, size=SIZE)
    memory = set()
    for _ in range(6):
        block = await ring.take()
        memory.add(id(block.obj))
        ring.send(block, SIZE)
        await asyncio.sleep(0.05)  # a slow client: the stages are done long before
    await ring.close()
    assert len(memory) == 1


async def test_a_filler_faster_than_the_stages_gets_up_to_count_blocks() -> None:
    stage = Recorder()
    stage.gate = threading.Semaphore(0)
    ring = BlockRing([stage], count=3, size=SIZE)
    taken = [await ring.take() for _ in range(3)]  # none comes free: each one is new
    assert len({id(block.obj) for block in taken}) == 3
    for block in taken:
        ring.send(block, SIZE)
    fourth = asyncio.ensure_future(ring.take())
    await asyncio.sleep(0.05)
    assert not fourth.done()  # three is the most
    stage.gate.release()
    assert (await asyncio.wait_for(fourth, 5)).obj is taken[0].obj
    for _ in range(3):
        stage.gate.release()
    ring.send(taken[0], 0)
    await ring.close()
