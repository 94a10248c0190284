"""Home Assistant MQTT discovery: a device per camera with two sensors, its current expression and its fps.

Why discovery: Home Assistant then shows a camera the moment its daemon connects to the broker,
with nothing to configure there. Each sensor's config goes, retained, to
``<discovery_prefix>/sensor/<node>/<sensor>/config`` (Home Assistant's documented layout):

- ``expression``: ``value_json.expression`` of ``<prefix>/events``, the latest face's (smoothed)
  expression; it expires after ``EXPRESSION_EXPIRE_S`` without a face (unknown, not stale);
- ``fps``: ``value_json.fps`` of ``<prefix>/stats`` (published every ``mqtt.stats_every_s``).

Both follow ``<prefix>/availability`` (``online`` / ``offline``, the publisher's last will), so a
dead daemon shows as unavailable. ``<node>`` is ``edge_affectsr_<camera>`` with every character
outside ``[A-Za-z0-9_-]`` replaced, so any camera name makes a valid topic and unique id.
"""

from __future__ import annotations

import json
import re
from importlib import metadata

EXPRESSION_EXPIRE_S = 60


def node_id(camera: str) -> str:
    return "edge_affectsr_" + re.sub(r"[^A-Za-z0-9_-]", "_", camera)


def _version() -> str:
    try:
        return metadata.version("edge-affectsr")
    except metadata.PackageNotFoundError:
        return "unknown"


def discovery_messages(discovery_prefix: str, topic_prefix: str, camera: str,
                       stats_every_s: float | None) -> list[tuple[str, str]]:
    """``(topic, JSON payload)`` of each sensor's config, to publish retained. Without a stats topic
    (``stats_every_s`` null) there is no fps sensor."""
    node = node_id(camera)
    device = {"identifiers": [node], "name": camera, "manufacturer": "edge-affectsr",
              "model": "emotion-aware face super-resolution camera", "sw_version": _version()}
    common = {"availability_topic": f"{topic_prefix}/availability", "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    sensors = {"expression": {"name": "Expression", "state_topic": f"{topic_prefix}/events",
                              "value_template": "{{ value_json.expression }}", "icon": "mdi:emoticon-outline",
                              "expire_after": EXPRESSION_EXPIRE_S}}
    if stats_every_s:
        sensors["fps"] = {"name": "FPS", "state_topic": f"{topic_prefix}/stats", "value_template": "{{ value_json.fps }}",
                          "unit_of_measurement": "fps", "state_class": "measurement", "icon": "mdi:speedometer",
                          "expire_after": int(3 * stats_every_s) + 1}
    return [(f"{discovery_prefix}/sensor/{node}/{key}/config",
             json.dumps({**sensor, **common, "unique_id": f"{node}_{key}", "object_id": f"{node}_{key}"}))
            for key, sensor in sensors.items()]
