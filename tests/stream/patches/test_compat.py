"""The embedded broker's end offsets, corrected (stream/patches/embedded_end_offsets.py, embedded_slow_fetch.py)."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.patches.embedded_end_offsets import true_end_offsets

pytestmark = pytest.mark.broker


def test_end_offsets_corrected_to_after_the_last_record(broker, embedded_only):
    topic = "compat-check"
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=50)
    for batch in (10, 5):
        for i in range(batch):
            producer.send(topic, key=b"k", value=b"%d" % i, partition=0)
        producer.flush()
    producer.close()
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=broker)
    reported = consumer.end_offsets([tp])
    consumer.close()
    corrected = asyncio.run(true_end_offsets(broker, {tp: reported[tp]}))
    assert corrected[tp] == 15
    # If this ever fails, the broker got fixed and the workaround can go.
    assert reported[tp] < 15, "the embedded broker now reports end offsets correctly"


# A consumer reading near the end of a partition of single-record batches with a 1 ms fetch wait.
_SLOW_FETCH = """
import asyncio, sys, time
from aiokafka import AIOKafkaConsumer, TopicPartition
bootstrap, topic, offset, adapt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if adapt:
    from stream.patches.embedded_slow_fetch import wait_longer_when_the_broker_is_slow
    wait_longer_when_the_broker_is_slow()

async def main():
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=1, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, offset)
    got, deadline = 0, time.monotonic() + 5
    while got < 5 and time.monotonic() < deadline:  # a fetch may return fewer than all five batches
        got += sum(len(v) for v in (await consumer.getmany(timeout_ms=200)).values())
    await consumer.stop()
    print(got)

asyncio.run(main())
"""


def test_fetch_wait_grows_until_a_slow_broker_finds_the_records(broker, embedded_only, tmp_path):
    import subprocess
    import sys

    from kafka import KafkaProducer

    from tests.support import REPO

    topic, n = "compat-slow-fetch", 4000
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=0)
    for i in range(n):  # one batch per record: the broker walks them all to find an offset
        producer.send(topic, value=b"%d" % i, partition=0).get(timeout=10)
    producer.close()

    def records_found(adapt: bool) -> int:
        out = subprocess.run([sys.executable, "-c", _SLOW_FETCH, broker, topic, str(n - 5), "1" if adapt else "0"],
                             cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
        return int(out.stdout.split()[-1])

    assert records_found(adapt=True) == 5
    # If this ever fails, the broker finds offsets fast enough now and the patch can go.
    assert records_found(adapt=False) == 0, "the embedded broker now answers this fetch within 1 ms"
