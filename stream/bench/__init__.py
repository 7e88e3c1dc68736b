"""``fraudstream bench``: the engine measured against its limits, in one run.

* :mod:`stream.bench.bare` — the limit: a bare aiokafka consume, decode,
  encode, produce loop; under the offered load, the latency floor.
* :mod:`stream.bench.passthrough` — Faust's floor: a per-event pass-through agent.
* :mod:`stream.bench.plumbing` — the engine's floor: its micro-batched consume and
  produce path, forwarding every record, with none of its work.
* :mod:`stream.bench.run` — preloads the data, runs them and the engine (one
  and two workers), the fixed-load latency test and the memory soak, and
  prints and writes the figures.
"""

__all__: list[str] = []
