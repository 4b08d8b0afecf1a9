"""Reads a run folder's TensorBoard events with TensorBoard's own reader, for
crates/mlp-cli/tests/tensorboard.rs: prints one JSON object with every scalar series
([step, value] pairs), the steps of every histogram (and the count of values of its first),
and the steps and sizes of every image.

    python tensorboard_read.py RUN_DIR
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

events = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0, "images": 0})
events.Reload()
tags = events.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in events.Scalars(t)] for t in tags["scalars"]},
    "histograms": {
        t: {"steps": [e.step for e in events.Histograms(t)],
            "count": events.Histograms(t)[0].histogram_value.num}
        for t in tags["histograms"]
    },
    "images": {t: [[e.step, e.width, e.height] for e in events.Images(t)] for t in tags["images"]},
}))
