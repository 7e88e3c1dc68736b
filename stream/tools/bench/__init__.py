"""``fraudstream bench``: the engine measured against its limits, each figure as a median and spread of repeated runs.

* :mod:`stream.tools.bench.run` — runs every phase ``--repeat`` times, each on a fresh broker, and prints the figures.
* :mod:`stream.tools.bench.config` — the run's configuration, generated data, topics and worker settings.
* :mod:`stream.tools.bench.bare` — the limit: a bare aiokafka consume, decode, encode, produce loop; under the offered
  load, the latency floor.
* :mod:`stream.tools.bench.passthrough` — Faust's floor: a per-event pass-through agent.
* :mod:`stream.tools.bench.plumbing` — the engine's floor: its micro-batched consume and produce path, forwarding every
  record, with none of its work.
* :mod:`stream.tools.bench.engine` — the engine's workers and their rate over the preload.
* :mod:`stream.tools.bench.latency` — the offered-load phases: latency, its floor, memory.
* :mod:`stream.tools.bench.summary` — median and spread of every figure, and the README's table.
* :mod:`stream.tools.bench.ab` — the same bench on two revisions in one run, interleaved, and B/A of the figures.
* :mod:`stream.tools.bench.proc`, :mod:`stream.tools.bench.broker_fetch` — CPU and memory from ``/proc``; a fetch's cost on the
  embedded broker.
"""

from stream.tools.bench.config import BenchConfig
from stream.tools.bench.run import run_bench
from stream.tools.bench.summary import markdown_table, summarise

__all__ = ["BenchConfig", "markdown_table", "run_bench", "summarise"]
