"""Server-side request batching, as TF Serving's `--enable_batching` does it.

Concurrent requests for the same signature wait in a queue; a batch thread takes the oldest
request and keeps adding queued ones (concatenated along dimension 0) until the batch holds
`max_batch_size` rows or the oldest request has waited `batch_timeout_micros`; the batch runs
once and its outputs are split back along dimension 0. The knobs are TF Serving's
`BatchingParameters` (`serving/batching_parameters.txt`):

* `max_batch_size`, `batch_timeout_micros`: as above.
* `max_enqueued_batches`: the queue holds at most this many full batches of rows; beyond, a
  request is refused with UNAVAILABLE ("queue is full"), which clients retry with backoff.
* `num_batch_threads`: batches run in parallel on this many threads.
* `allowed_batch_sizes`: a batch is padded (repeating its first row) up to the next allowed size
  so that the model sees few distinct shapes (what matters for XLA/GPU kernels); the padding rows'
  outputs are dropped.
* `enable_large_batch_splitting`, `max_execution_batch_size`: batches hold at most
  `max_execution_batch_size` rows (default `max_batch_size`) and a larger request is split into
  pieces that run in separate batches; its outputs are the pieces' outputs concatenated.

A request is refused, as by TF Serving's `BatchingSession` and `SharedBatchScheduler`, with
INVALID_ARGUMENT when an input has no dimension 0 (a scalar cannot be concatenated), when its
inputs disagree on dimension 0, or when it holds more than `max_batch_size` rows ("Task size ...
is larger than maximum input batch size ..."), splitting or not. Outputs whose dimension 0 is
not the batch's rows cannot be split back and fail the request with FAILED_PRECONDITION.

Differences from the model server, on purpose: requests whose non-batch dimensions differ are
never mixed (TF Serving would fail such a batch unless `pad_variable_length_inputs`); when a mixed
batch fails (say one request carries bytes that are not an image), each of its requests is re-run
alone so that only the bad one fails (TF Serving fails every request of the batch); a large
request is split into pieces of `max_execution_batch_size` rows (TF Serving first tops up the
batch being formed).

Example:
```python
scheduler = BatchScheduler(signature.run, BatchOptions(max_batch_size=16,
                                                       batch_timeout_micros=2000))
outputs = scheduler.submit({"image_bytes": np.array([jpeg], object)}).result()
```
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import dataclasses
import threading
import time

import grpc
import numpy as np

from vcaption.serving.servables import ServingError, invalid


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """Batching knobs (TF Serving's `BatchingParameters`, with its defaults)."""
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1
    allowed_batch_sizes: tuple = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None  # None: max_batch_size

    def __post_init__(self):
        if self.max_batch_size < 1 or self.num_batch_threads < 1:
            raise ValueError(f"max_batch_size and num_batch_threads must be >= 1: {self}")
        if not 1 <= self.execution_batch_size <= self.max_batch_size:
            raise ValueError("max_execution_batch_size must be between 1 and max_batch_size, "
                             f"got {self.max_execution_batch_size}")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != self.execution_batch_size):
            raise ValueError("allowed_batch_sizes must increase and end at max_batch_size "
                             f"(max_execution_batch_size when splitting), "
                             f"{self.execution_batch_size}; got {sizes}")

    @property
    def execution_batch_size(self) -> int:
        """Rows one batch may hold (`max_execution_batch_size` only counts with splitting)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size

    @classmethod
    def from_proto(cls, params) -> "BatchOptions":
        """From a `BatchingParameters` message; unset fields keep TF Serving's defaults."""
        defaults = cls()
        pick = lambda field: (getattr(params, field).value if params.HasField(field)  # noqa: E731
                              else getattr(defaults, field))
        return cls(max_batch_size=pick("max_batch_size"),
                   batch_timeout_micros=pick("batch_timeout_micros"),
                   max_enqueued_batches=pick("max_enqueued_batches"),
                   num_batch_threads=pick("num_batch_threads"),
                   allowed_batch_sizes=tuple(params.allowed_batch_sizes),
                   enable_large_batch_splitting=pick("enable_large_batch_splitting"),
                   max_execution_batch_size=pick("max_execution_batch_size"))

    def task_size(self, shapes: dict) -> int:
        """The rows of a request with input `shapes` ({name: dims}), or INVALID_ARGUMENT with
        TF Serving's message when batching cannot take it.

        Called on the declared shapes, before the request's tensors are read, so that an
        over-size request costs nothing.
        """
        if any(len(dims) == 0 for dims in shapes.values()):
            raise invalid("Batching session Run() input tensors must have at least one dimension")
        rows = {int(dims[0]) for dims in shapes.values()}
        if len(rows) != 1:
            raise invalid("Batching session Run() input tensors must have equal 0th-dimension "
                          f"size; got {sorted(rows)}")
        size = rows.pop()
        if size > self.max_batch_size:
            raise invalid(f"Task size {size} is larger than maximum input batch size "
                          f"{self.max_batch_size}")
        return size


@dataclasses.dataclass
class _Task:
    inputs: dict
    rows: int
    key: tuple  # the non-batch shapes: only tasks with equal keys are concatenated
    enqueued: float
    future: concurrent.futures.Future


class BatchScheduler:
    """Queues `submit`ted requests of one signature and runs them in batches.

    Args:
        run: `{name: ndarray}` -> `{name: ndarray}`, every array with the batch on dimension 0
            (e.g. `servables.Signature.run`); raises `ServingError` for a bad request.
        options: `BatchOptions`.
    """

    def __init__(self, run, options: BatchOptions):
        self.run = run
        self.options = options
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self.batch_sizes: list[int] = []  # rows per executed batch (before padding), for tests
        self._threads = [threading.Thread(target=self._loop, daemon=True, name=f"batch-{i}")
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, inputs: dict) -> concurrent.futures.Future:
        """Enqueues one request; the future resolves to its outputs or a `ServingError`."""
        rows = self.options.task_size({k: np.shape(v) for k, v in inputs.items()})
        step = self.options.execution_batch_size
        pieces = [{k: v[start:start + step] for k, v in inputs.items()}  # [<= step, ...]
                  for start in range(0, rows, step)] if rows > step else [inputs]
        tasks = [_Task(piece, min(step, rows - i * step),
                       tuple(sorted((k, np.shape(v)[1:]) for k, v in piece.items())),
                       time.monotonic(), concurrent.futures.Future())
                 for i, piece in enumerate(pieces)]
        limit = self.options.max_enqueued_batches * step
        with self._cond:
            if self._closed:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "batch scheduler is shut down")
            if self._queued_rows + rows > limit and self._queue:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   f"the batch scheduling queue is full ({limit} rows)")
            self._queue.extend(tasks)
            self._queued_rows += rows
            self._cond.notify_all()
        return tasks[0].future if len(tasks) == 1 else _Joined([t.future for t in tasks])

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def _take_batch(self) -> list[_Task] | None:
        """Blocks until a batch is due (full, or its oldest task timed out); pops it."""
        timeout = self.options.batch_timeout_micros / 1e6
        limit = self.options.execution_batch_size
        with self._cond:
            while True:
                if self._closed:
                    return None
                if not self._queue:
                    self._cond.wait()
                    continue
                first = self._queue[0]
                fits = [t for t in self._queue if t.key == first.key]
                rows = 0
                for task in fits:
                    rows += task.rows
                due = first.enqueued + timeout - time.monotonic()
                if rows >= limit or due <= 0:
                    break
                self._cond.wait(due)
            batch, rows = [], 0
            for task in list(self._queue):
                if task.key != first.key:
                    continue
                if batch and rows + task.rows > limit:
                    break
                batch.append(task)
                rows += task.rows
                self._queue.remove(task)
                self._queued_rows -= task.rows
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            batch = [t for t in batch if t.future.set_running_or_notify_cancel()]
            if batch:
                self._execute(batch)

    def _padded_size(self, rows: int) -> int:
        sizes = self.options.allowed_batch_sizes
        if not sizes or rows > sizes[-1]:
            return rows
        return sizes[bisect.bisect_left(sizes, rows)]

    def _execute(self, batch: list[_Task]) -> None:
        rows = sum(t.rows for t in batch)
        self.batch_sizes.append(rows)
        if len(batch) == 1 and self._padded_size(rows) == rows:
            self._run_alone(batch[0])
            return
        inputs = {}
        pad = self._padded_size(rows) - rows
        for key in batch[0].inputs:
            merged = np.concatenate([t.inputs[key] for t in batch], axis=0)  # [rows, ...]
            if pad:  # repeat row 0: a valid input, whose outputs are dropped below
                merged = np.concatenate([merged, np.repeat(merged[:1], pad, axis=0)], axis=0)
            inputs[key] = merged
        try:
            outputs = _split_ready(self.run(inputs), rows + pad)
        except Exception:
            # One bad request (or outputs that cannot be split): every request runs alone, so
            # each gets its own answer and only the bad ones fail.
            for task in batch:
                self._run_alone(task)
            return
        start = 0
        for task in batch:
            stop = start + task.rows
            task.future.set_result({k: v[start:stop] for k, v in outputs.items()})
            start = stop

    def _run_alone(self, task: _Task) -> None:
        try:
            task.future.set_result(_split_ready(self.run(task.inputs), task.rows))
        except Exception as error:
            task.future.set_exception(error)


def _split_ready(outputs: dict, rows: int) -> dict:
    """`outputs` if every one has `rows` on dimension 0; TF Serving's `SplitOutputTensors`
    refuses the rest, even for a request alone in its batch (a signature whose outputs do not
    line up row for row with its inputs cannot be batched)."""
    for key, value in outputs.items():
        if np.ndim(value) == 0 or np.shape(value)[0] != rows:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Batched output tensor's 0th dimension does not equal the sum of "
                               f"the 0th dimension sizes of the input tensors: output '{key}' "
                               f"has shape {list(np.shape(value))} for {rows} rows")
    return outputs


class _Joined(concurrent.futures.Future):
    """The future of a split request: its pieces' outputs concatenated along dimension 0, or the
    first piece's error. `cancel` cancels the pieces still queued (a deadline passed)."""

    def __init__(self, pieces: list):
        super().__init__()
        self.set_running_or_notify_cancel()
        self._pieces = pieces
        self._remaining = len(pieces)
        self._lock = threading.Lock()
        for piece in pieces:
            piece.add_done_callback(self._piece_done)

    def cancel(self) -> bool:
        return all([piece.cancel() for piece in self._pieces])

    def _piece_done(self, _) -> None:
        with self._lock:
            self._remaining -= 1
            if self._remaining:
                return
        if any(piece.cancelled() for piece in self._pieces):
            self.set_exception(ServingError(grpc.StatusCode.CANCELLED, "request cancelled"))
            return
        errors = [piece.exception() for piece in self._pieces if piece.exception()]
        if errors:
            self.set_exception(errors[0])
            return
        outputs = [piece.result() for piece in self._pieces]
        self.set_result({k: np.concatenate([o[k] for o in outputs], axis=0) for k in outputs[0]})
