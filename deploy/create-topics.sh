#!/bin/sh
# Create fraudstream's topics up front, idempotently, with Kafka's own CLI.
#
# Run by the one-shot `topics` / `topics-ha` services of docker-compose.yml
# inside the apache/kafka image (POSIX sh: the image's /bin/sh is busybox).
# Why up front: per-card state needs every topic the engine joins to have the
# same partition count (FRAUDSTREAM_TOPIC_PARTITIONS). A producer that writes
# before any worker has started would otherwise let the broker auto-create
# `transactions` with its own default, and the workers would then refuse to
# start (Faust's PartitionsMismatch). This is `fraudstream topics` without
# Python, plus topic configs (retention, compaction) the engine does not set.
#
# Environment (defaults in brackets):
#   BOOTSTRAP_SERVERS                 [kafka:19092]
#   FRAUDSTREAM_TOPIC_PARTITIONS      [8]   partitions of every engine topic
#   FRAUDSTREAM_REPLICATION_FACTOR    [1]   3 on the three-broker profile
#   TOPIC_MIN_INSYNC_REPLICAS         [1]   2 on the three-broker profile
#   DLQ_RETENTION_MS                  [2592000000 = 30 days] dead letters are kept
#                                     longer than traffic, to be investigated and replayed
#   MODELS_TOPIC                      [fraudstream-models] compacted model snapshots
#   FRAUDSTREAM_TOPIC_*               topic names, as the engine reads them
#   FRAUDSTREAM_APP_ID                [fraudstream] prefix of the engine's internal topics
#   FRAUDSTREAM_ENTITIES              [merchant_id] entity kinds with a profile: one
#                                     repartition topic each, and the enriched topic
#   FRAUDSTREAM_ALERT_BUDGET          [unset] with a budget: its two one-partition topics
#   KAFKA_BIN_DIR                     [/opt/kafka/bin] where kafka-topics.sh is
#   WAIT_SECONDS                      [120] how long to wait for the brokers
set -eu

BOOTSTRAP="${BOOTSTRAP_SERVERS:-kafka:19092}"
PARTITIONS="${FRAUDSTREAM_TOPIC_PARTITIONS:-8}"
RF="${FRAUDSTREAM_REPLICATION_FACTOR:-1}"
MIN_ISR="${TOPIC_MIN_INSYNC_REPLICAS:-1}"
DLQ_RETENTION="${DLQ_RETENTION_MS:-2592000000}"
MODELS="${MODELS_TOPIC:-fraudstream-models}"
BIN="${KAFKA_BIN_DIR:-/opt/kafka/bin}"
WAIT="${WAIT_SECONDS:-120}"

TRANSACTIONS="${FRAUDSTREAM_TOPIC_TRANSACTIONS:-transactions}"
FEEDBACK="${FRAUDSTREAM_TOPIC_FEEDBACK:-feedback}"

topics() {
    "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "$@"
}

# depends_on already waits for a healthy broker; this covers a quorum that
# is still electing its controller, or a run outside compose.
waited=0
until topics --list >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT" ]; then
        echo "create-topics: no broker answered at $BOOTSTRAP after ${WAIT}s" >&2
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done

# create_topic NAME PARTITIONS [--config k=v ...]
create_topic() {
    name="$1"
    count="$2"
    shift 2
    topics --create --if-not-exists --topic "$name" \
        --partitions "$count" --replication-factor "$RF" \
        --config "min.insync.replicas=$MIN_ISR" "$@"
    echo "create-topics: $name ready"
}

create_topic "${FRAUDSTREAM_TOPIC_TRANSACTIONS:-transactions}" "$PARTITIONS"
create_topic "${FRAUDSTREAM_TOPIC_FEEDBACK:-feedback}" "$PARTITIONS"
create_topic "${FRAUDSTREAM_TOPIC_SCORES:-scores}" "$PARTITIONS"
create_topic "${FRAUDSTREAM_TOPIC_ALERTS:-alerts}" "$PARTITIONS"
create_topic "${FRAUDSTREAM_TOPIC_TRANSACTIONS_DLQ:-transactions.dlq}" "$PARTITIONS" --config "retention.ms=$DLQ_RETENTION"
create_topic "${FRAUDSTREAM_TOPIC_FEEDBACK_DLQ:-feedback.dlq}" "$PARTITIONS" --config "retention.ms=$DLQ_RETENTION"
# Entity profiles (docs/entities.md): one repartition topic per entity kind,
# keyed by the entity's value, and the enriched topic back to the card's
# partition; co-partitioned like the rest.
APP_ID="${FRAUDSTREAM_APP_ID:-fraudstream}"
ENTITIES="${FRAUDSTREAM_ENTITIES-merchant_id}"
if [ -n "$ENTITIES" ]; then
    for field in $(echo "$ENTITIES" | tr ',' ' '); do
        create_topic "$APP_ID-entity-$field" "$PARTITIONS"
    done
    create_topic "$APP_ID-enriched" "$PARTITIONS"
fi
# One partition: snapshots are few and read whole; compaction keeps the
# latest snapshot per key (model name) forever. Snapshots can be MBs, hence
# the larger message limit (producers must raise max.request.size to match).
create_topic "$MODELS" 1 --config cleanup.policy=compact --config max.message.bytes=16777216
# Dynamic rules (docs/rules.md): one partition, every worker reads it whole;
# compaction keeps each rule's newest version, a tombstone deletes it.
create_topic "${FRAUDSTREAM_TOPIC_RULES:-rules}" 1 --config cleanup.policy=compact
# Alert budget (docs/alert-budget.md): each micro-batch's scores to the one
# controller, and the threshold it publishes (compacted: the newest is in force).
if [ -n "${FRAUDSTREAM_ALERT_BUDGET:-}" ]; then
    create_topic "$APP_ID-budget-scores" 1
    create_topic "$APP_ID-threshold" 1 --config cleanup.policy=compact
fi

# --if-not-exists leaves an existing topic as it is, even with another
# partition count: check the two inputs the way `fraudstream topics` does.
for name in "$TRANSACTIONS" "$FEEDBACK"; do
    actual=$(topics --describe --topic "$name" | sed -n 's/.*PartitionCount:[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n 1)
    if [ "$actual" != "$PARTITIONS" ]; then
        echo "create-topics: topic $name has ${actual:-no} partitions but FRAUDSTREAM_TOPIC_PARTITIONS=$PARTITIONS;" \
             "per-card state needs them equal (delete the topic or set the variable to match)" >&2
        exit 1
    fi
done
echo "create-topics: all topics ready on $BOOTSTRAP ($PARTITIONS partitions, replication factor $RF)"
