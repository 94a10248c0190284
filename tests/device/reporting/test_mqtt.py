"""device/reporting/mqtt.py against a real mosquitto broker started on a free loopback port (skips without
one, fails without one on CI): events, availability and last will, the stats topic, Home Assistant discovery."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from _device_events import make_event, make_group_event, make_track_event
from _services import service_missing
from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.reporting.mqtt import OFFLINE, ONLINE, MqttConfig, MqttPublisher

paho = pytest.importorskip("paho.mqtt.client")
ROOT = Path(__file__).resolve().parents[3]


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
                                              if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A mosquitto process on 127.0.0.1:<port> with an anonymous listener and no persistence."""

    def __init__(self, binary: str, folder: Path, port: int | None = None) -> None:
        self.binary, self.folder, self.port = binary, folder, port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        conf = self.folder / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    binary = mosquitto_binary()
    if binary is None:
        service_missing("mosquitto is not installed (apt-get install mosquitto)")
    b = Broker(binary, tmp_path_factory.mktemp("mqtt"))
    try:
        b.start()
    except (RuntimeError, OSError) as e:
        service_missing(f"cannot start mosquitto here: {e}")
    yield b
    b.stop()


class Subscriber:
    """A second paho client collecting (topic, payload, retain) for ``topic``."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue = queue.Queue()
        subscribed = queue.Queue()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.retain))
        self.client.on_subscribe = lambda *args: subscribed.put(True)
        self.client.on_connect = lambda c, *args: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        subscribed.get(timeout=5)

    def next(self, timeout: float = 5.0) -> tuple[str, str, bool]:
        return self.messages.get(timeout=timeout)

    def wait_for(self, topic: str, payload: str | None = None, timeout: float = 5.0) -> tuple[str, str, bool]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(0.01, deadline - time.monotonic()))
            if msg[0] == topic and (payload is None or msg[1] == payload):
                return msg

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config(port: int, **kw) -> MqttConfig:
    return MqttConfig(enabled=True, port=port, topic_prefix=f"test/{uuid.uuid4().hex[:8]}", keepalive_s=5, **kw)


def test_events_and_retained_online(broker):
    cfg = config(broker.port)
    with MqttPublisher(cfg).start() as pub:
        assert pub.wait_connected(5)
        late = Subscriber(broker.port, f"{cfg.topic_prefix}/#")  # subscribes after the publisher connected
        try:
            topic, payload, retained = late.wait_for(pub.availability_topic)
            assert (payload, retained) == (ONLINE, True)
            event = make_event(42, track_id=7)
            assert pub.publish(event)
            topic, payload, retained = late.wait_for(pub.events_topic)
            assert json.loads(payload) == event.to_dict() and not retained
        finally:
            late.close()
    assert pub.published == 1 and pub.dropped == 0


def test_tracks_and_the_group_summary_have_their_own_topics_and_the_group_is_retained(broker):
    cfg = config(broker.port)
    with MqttPublisher(cfg).start() as pub:
        assert pub.wait_connected(5)
        early = Subscriber(broker.port, f"{cfg.topic_prefix}/#")
        try:
            track, group = make_track_event(5), make_group_event()
            assert pub.publish(track) and pub.publish(group)
            topic, payload, retained = early.wait_for(f"{cfg.topic_prefix}/tracks")
            assert json.loads(payload) == json.loads(track.to_json()) and not retained
            early.wait_for(f"{cfg.topic_prefix}/group")
        finally:
            early.close()
        late = Subscriber(broker.port, f"{cfg.topic_prefix}/group")  # a dashboard connecting later
        try:
            topic, payload, retained = late.next()
            assert retained and json.loads(payload)["kind"] == "group" and json.loads(payload)["faces"] == 3
        finally:
            late.close()
    assert pub.published == 2


def test_clean_close_leaves_a_retained_offline(broker):
    cfg = config(broker.port)
    pub = MqttPublisher(cfg).start()
    assert pub.wait_connected(5)
    pub.close()
    sub = Subscriber(broker.port, f"{cfg.topic_prefix}/availability")
    try:
        assert sub.next()[1:] == (OFFLINE, True)
    finally:
        sub.close()


CHILD = """
import sys, time
from edge_affectsr.device.reporting.mqtt import MqttConfig, MqttPublisher
pub = MqttPublisher(MqttConfig(enabled=True, port=int(sys.argv[1]), topic_prefix=sys.argv[2], keepalive_s=5)).start()
assert pub.wait_connected(5)
print("connected", flush=True)
time.sleep(60)
"""


def test_last_will_when_the_process_dies_without_disconnect(broker):
    """SIGKILL: the kernel closes the socket, no DISCONNECT is sent, the broker publishes the will."""
    prefix = f"test/{uuid.uuid4().hex[:8]}"
    sub = Subscriber(broker.port, f"{prefix}/availability")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(broker.port), prefix], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "connected"
        assert sub.wait_for(f"{prefix}/availability", ONLINE)[1] == ONLINE
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        start = time.monotonic()
        topic, payload, _ = sub.wait_for(f"{prefix}/availability", timeout=5)
        assert payload == OFFLINE
        assert time.monotonic() - start < 3  # at once, not after the keep-alive runs out
    finally:
        child.kill()
        child.stdout.close()
        sub.close()
    late = Subscriber(broker.port, f"{prefix}/availability")  # and it is retained for later subscribers
    try:
        assert late.next()[1:] == (OFFLINE, True)
    finally:
        late.close()


def test_a_connection_cut_without_disconnect_fires_the_will_then_reconnects(broker):
    """The publisher's socket is shut under it (no DISCONNECT): the broker publishes the will; paho's
    backoff reconnects and the publisher says ``online`` again and keeps publishing."""
    cfg = config(broker.port, reconnect_min_s=1, reconnect_max_s=2)
    sub = Subscriber(broker.port, f"{cfg.topic_prefix}/#")
    try:
        with MqttPublisher(cfg).start() as pub:
            assert pub.wait_connected(5)
            assert sub.wait_for(pub.availability_topic, ONLINE)
            pub._client.socket().shutdown(socket.SHUT_RDWR)  # the network drops; no DISCONNECT packet
            assert sub.wait_for(pub.availability_topic)[1] == OFFLINE
            assert sub.wait_for(pub.availability_topic, ONLINE, timeout=6)  # back after the backoff
            assert pub.wait_connected(5)
            pub.publish(make_event(3))
            assert json.loads(sub.wait_for(pub.events_topic)[1])["frame"] == 3
    finally:
        sub.close()


def test_publish_never_blocks_while_the_broker_is_down_and_catches_up_when_it_comes(broker):
    port = free_port()  # nothing listens here yet
    cfg = config(port, queue_size=5, reconnect_min_s=1, reconnect_max_s=1)
    pub = MqttPublisher(cfg).start()
    try:
        start = time.monotonic()
        results = [pub.publish(make_event(i)) for i in range(50)]
        assert time.monotonic() - start < 0.1  # 50 publishes, no network wait
        assert results.count(False) == 45 and pub.dropped == 45 and not pub.connected
        late = Broker(broker.binary, broker.folder, port).start()
        try:
            sub = Subscriber(port, f"{cfg.topic_prefix}/events")
            assert pub.wait_connected(6)  # the backoff retries found it
            frames = sorted(json.loads(sub.next()[1])["frame"] for _ in range(5))
            assert frames == [45, 46, 47, 48, 49]  # the newest survived the full queue
            sub.close()
        finally:
            pub.close()
            late.stop()
    finally:
        pub.close()
    assert pub.published == 5


def test_close_is_bounded_when_the_broker_never_answers():
    pub = MqttPublisher(config(free_port(), reconnect_min_s=1)).start()
    for i in range(3):
        pub.publish(make_event(i))
    start = time.monotonic()
    pub.close(timeout=0.5)
    assert time.monotonic() - start < 1.5
    assert pub.dropped == 3 and pub.published == 0


def test_config():
    cfg = validate({"enabled": True, "host": "broker.lan", "topic_prefix": "cams/door/"}, MqttConfig)
    assert cfg.topic_prefix == "cams/door" and cfg.port == 1883
    assert MqttConfig().enabled is False and MqttConfig().topic_prefix.startswith("edge-affectsr/")
    assert MqttPublisher.from_config(MqttConfig()) is None
    with pytest.raises(ConfigError, match="topic_prefix: .*wildcards"):
        validate({"topic_prefix": "cams/#"}, MqttConfig)
    with pytest.raises(ConfigError, match="qos"):
        validate({"qos": 2}, MqttConfig)
    with pytest.raises(ConfigError, match="brocker: unknown key"):
        validate({"brocker": "x"}, MqttConfig)


# --- stats topic and Home Assistant discovery (issue 15) ---------------------------------------------


def test_home_assistant_discovery_is_retained_and_sent_again_when_home_assistant_restarts(broker):
    cfg = config(broker.port, discovery_prefix=f"ha-{uuid.uuid4().hex[:6]}", stats_every_s=10)
    node = "edge_affectsr_front_door"
    with MqttPublisher(cfg, camera="front door").start() as pub:
        assert pub.wait_connected(5)
        sub = Subscriber(broker.port, f"{cfg.discovery_prefix}/sensor/#")  # Home Assistant, subscribing later
        try:
            seen = {t: (json.loads(p), r) for t, p, r in (sub.next() for _ in range(2))}
            expression, retained = seen[f"{cfg.discovery_prefix}/sensor/{node}/expression/config"]
            assert retained and expression["state_topic"] == pub.events_topic
            assert expression["value_template"] == "{{ value_json.expression }}"
            assert expression["availability_topic"] == pub.availability_topic
            assert expression["unique_id"] == f"{node}_expression" and expression["device"]["identifiers"] == [node]
            assert expression["device"]["name"] == "front door"
            fps, retained = seen[f"{cfg.discovery_prefix}/sensor/{node}/fps/config"]
            assert retained and fps["state_topic"] == pub.stats_topic and fps["unit_of_measurement"] == "fps"
            announce = paho.Client(paho.CallbackAPIVersion.VERSION2)  # Home Assistant comes back online
            announce.connect("127.0.0.1", broker.port)
            announce.loop_start()
            announce.publish(f"{cfg.discovery_prefix}/status", "online", qos=1).wait_for_publish(5)
            again = [sub.next() for _ in range(2)]
            assert sorted(t for t, _, _ in again) == sorted(seen) and not any(r for _, _, r in again)  # sent live
            announce.loop_stop()
            announce.disconnect()
        finally:
            sub.close()


def test_stats_are_published_retained_and_not_queued_while_away(broker):
    cfg = config(broker.port, ha_discovery=False)
    with MqttPublisher(cfg).start() as pub:
        assert pub.wait_connected(5)
        assert pub.publish_stats({"fps": 12.5, "counters": {"frames": 3}, "status": "ok"})
        late = Subscriber(broker.port, pub.stats_topic)
        try:
            topic, payload, retained = late.next()
            assert retained and json.loads(payload) == {"fps": 12.5, "counters": {"frames": 3}, "status": "ok"}
        finally:
            late.close()
        assert pub.summary()["stats_published"] == 1
    away = MqttPublisher(config(free_port())).start()
    try:
        assert not away.publish_stats({"fps": 1.0}) and away.dropped == 0  # not an event lost
    finally:
        away.close(timeout=0.3)


def test_the_daemon_publishes_stats_and_announces_its_camera(broker, tmp_path):
    """The daemon with MQTT on: <prefix>/stats every stats_every_s with fps, health and every counter,
    and its camera (capture.camera) as a Home Assistant device whose expression sensor reads the events."""
    from _device_daemon import looping_builtin, start_daemon, wait_for
    from device_bundle import require_bundle

    prefix, discovery = f"test/{uuid.uuid4().hex[:8]}", f"ha-{uuid.uuid4().hex[:6]}"
    sub = Subscriber(broker.port, "#")
    extra = (f"  camera: lobby\nmqtt:\n  enabled: true\n  port: {broker.port}\n  topic_prefix: {prefix}\n"
             f"  stats_every_s: 0.5\n  discovery_prefix: {discovery}\n")
    proc, log = start_daemon(tmp_path, "--model", str(require_bundle()), "--http", "off", config=looping_builtin(extra=extra))
    messages: list[tuple[str, str, bool]] = []
    try:
        def stats_with_frames():
            while not sub.messages.empty():
                messages.append(sub.messages.get())
            return next((json.loads(p) for t, p, _ in reversed(messages)
                         if t == f"{prefix}/stats" and json.loads(p)["counters"]["frames"] > 0), None)
        stats = wait_for(stats_with_frames, timeout=90, what="stats with frames", proc=proc, log=log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        sub.close()
    assert stats["camera"] == "lobby" and stats["status"] in ("ok", "starting") and stats["fps"] >= 0
    assert {"frames", "faces", "store_failed", "mqtt_dropped", "unreadable_inputs", "oversized_inputs"} <= set(stats["counters"])
    configs = {t: json.loads(p) for t, p, r in messages if t.startswith(f"{discovery}/sensor/edge_affectsr_lobby/")}
    assert configs[f"{discovery}/sensor/edge_affectsr_lobby/expression/config"]["state_topic"] == f"{prefix}/events"
    assert configs[f"{discovery}/sensor/edge_affectsr_lobby/fps/config"]["state_topic"] == f"{prefix}/stats"
    faces = [json.loads(p) for t, p, _ in messages if t == f"{prefix}/events"]
    assert faces and all(f["expression"] for f in faces)  # what the expression sensor's template reads
