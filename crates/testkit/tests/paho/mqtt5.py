"""MQTT 5 features of mqdb seen through the Eclipse Paho Python client
(paho-mqtt 2.x, MQTT 5 API), driven by
crates/testkit/tests/interop_paho_mqtt5.rs.

Usage: mqtt5.py HOST PORT SCENARIO [ARG...]

Runs one scenario against the broker at HOST:PORT (plain TCP) with one or
more paho clients, and prints what paho saw as one line, flushed:

    RESULT {"...": ...}

The test asserts on that JSON. Every wait is bounded (WAIT seconds each,
the whole script well under the test's limit); when one gives up, the line
is `RESULT {"error": "...", "partial": {...}}` and the exit status 2. An
unexpected exception prints its traceback and exits 1; a missing paho-mqtt
is an ImportError (exit 1) the test recognises.

Scenarios (see SCENARIOS at the end): user_properties, content_type,
request_response, response_information, message_expiry, subscription_ids,
shared, topic_alias, will_delay, will_cancelled, session_expiry,
receive_maximum, reason_codes USER PASSWORD, server_keepalive.
"""

import json
import socket
import sys
import threading
import time
import traceback

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# How long one wait (a CONNACK, an ack, a message) may take.
WAIT = 10.0
# How long "nothing more arrives" checks listen.
QUIET = 0.7

HOST = "127.0.0.1"
PORT = 0


class GaveUp(Exception):
    pass


def props(packet_type, **values):
    """A paho Properties object for `packet_type` with `values` set."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def props_json(p):
    """Properties as a JSON-friendly dict (bytes as hex)."""
    if p is None:
        return {}
    out = {}
    for name, value in p.json().items():
        if isinstance(value, (bytes, bytearray)):
            value = value.hex()
        elif isinstance(value, list):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[name] = value
    return out


def rc_int(rc):
    return int(getattr(rc, "value", rc))


class Peer:
    """One paho MQTT 5 client and everything its callbacks saw."""

    def __init__(self, client_id, *, manual_ack=False, username=None, password=None):
        self.client_id = client_id
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        if username is not None:
            self.c.username_pw_set(username, password)
        self.cond = threading.Condition()
        self.connacks = []
        self.subacks = {}
        self.pubacks = {}
        self.messages = []
        self.disconnects = []
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.started = False

    # ---- callbacks (paho's network thread) ----

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connacks.append(
                {
                    "reason": rc_int(reason_code),
                    "session_present": bool(flags.session_present),
                    "properties": props_json(properties),
                }
            )
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subacks[mid] = {
                "codes": [rc_int(rc) for rc in reason_codes],
                "properties": props_json(properties),
            }
            self.cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.cond:
            self.pubacks[mid] = {
                "reason": rc_int(reason_code),
                "properties": props_json(properties),
            }
            self.cond.notify_all()

    def _on_message(self, client, userdata, message):
        try:
            payload = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            payload = "hex:" + message.payload.hex()
        with self.cond:
            self.messages.append(
                {
                    "topic": message.topic,
                    "payload": payload,
                    "qos": message.qos,
                    "retain": bool(message.retain),
                    "mid": message.mid,
                    "properties": props_json(message.properties),
                    "at": time.monotonic(),
                }
            )
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.disconnects.append(
                {"reason": rc_int(reason_code), "properties": props_json(properties)}
            )
            self.cond.notify_all()

    # ---- bounded waits ----

    def wait(self, predicate, what, timeout=WAIT):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise GaveUp(f"{self.client_id}: no {what} within {timeout} s")

    # ---- actions ----

    def connect(self, *, clean_start=True, keepalive=30, properties=None, expect_success=True):
        """Connects and waits for the CONNACK; returns what on_connect saw."""
        n = len(self.connacks)
        self.c.connect(
            HOST, PORT, keepalive=keepalive, clean_start=clean_start, properties=properties
        )
        if not self.started:
            self.c.loop_start()
            self.started = True
        self.wait(lambda: len(self.connacks) > n, "CONNACK")
        ack = self.connacks[n]
        if expect_success and ack["reason"] != 0:
            raise GaveUp(f"{self.client_id}: CONNACK refused: {ack}")
        return ack

    def subscribe(self, topic, qos=1, properties=None):
        """Subscribes and waits for the SUBACK; returns its reason codes."""
        if isinstance(topic, list):
            rc, mid = self.c.subscribe(topic, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos=qos, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return self.subacks[mid]

    def publish(self, topic, payload, qos=1, retain=False, properties=None, wait=True):
        """Publishes; for QoS 1/2 with `wait`, waits for the ack and
        returns what on_publish saw (the PUBACK reason and properties)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos == 0 or not wait:
            return info.mid
        self.wait(lambda: info.mid in self.pubacks, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def wait_messages(self, n, timeout=WAIT):
        self.wait(lambda: len(self.messages) >= n, f"{n} messages (got {len(self.messages)})", timeout)

    def quiet(self, seconds=QUIET):
        time.sleep(seconds)

    def disconnect(self):
        if self.started:
            self.c.disconnect()
            self.c.loop_stop()
            self.started = False

    def drop(self):
        """Ends the network connection without DISCONNECT (as a crash would);
        returns when the socket was closed (time.monotonic())."""
        self.c.loop_stop()
        self.started = False
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        return time.monotonic()

    def stop(self):
        if self.started:
            try:
                self.c.disconnect()
            except Exception:
                pass
            self.c.loop_stop()
            self.started = False


PEERS = []


def peer(client_id, **kw):
    p = Peer(client_id, **kw)
    PEERS.append(p)
    return p


def messages(p, keys=("topic", "payload", "properties")):
    return [{k: m[k] for k in keys} for m in p.messages]


# ---- scenarios ----


def user_properties(args):
    """User properties on CONNECT and SUBSCRIBE are accepted; a PUBLISH's
    reach the subscriber in order, repeated names included."""
    sub = peer("up-sub")
    ack = sub.connect(
        properties=props(PacketTypes.CONNECT, UserProperty=[("client", "paho"), ("x", "1")])
    )
    suback = sub.subscribe(
        "up/t", properties=props(PacketTypes.SUBSCRIBE, UserProperty=[("sub", "s1")])
    )
    pub = peer("up-pub")
    pub.connect(properties=props(PacketTypes.CONNECT, UserProperty=[("role", "publisher")]))
    sent = [("a", "1"), ("b", "2"), ("a", "3"), ("é", "ü"), ("z", "last")]
    puback = pub.publish("up/t", b"with props", properties=props(PacketTypes.PUBLISH, UserProperty=sent))
    pub.publish("up/t", b"without props")
    sub.wait_messages(2)
    return {
        "connack": ack,
        "suback": suback,
        "puback": puback,
        "sent": [list(s) for s in sent],
        "messages": messages(sub),
    }


def content_type(args):
    """Content Type and Payload Format Indicator of a PUBLISH reach the
    subscriber (a free topic); a message without them gets none."""
    sub = peer("ct-sub")
    sub.connect()
    sub.subscribe("ct/#")
    pub = peer("ct-pub")
    pub.connect()
    pub.publish(
        "ct/text",
        "héllo".encode(),
        properties=props(
            PacketTypes.PUBLISH, ContentType="text/plain; charset=utf-8", PayloadFormatIndicator=1
        ),
    )
    pub.publish(
        "ct/bin",
        bytes([0, 1, 2, 0xFF]),
        properties=props(PacketTypes.PUBLISH, ContentType="application/x-custom"),
    )
    pub.publish("ct/none", b"plain")
    sub.wait_messages(3)
    return {"messages": messages(sub)}


def request_response(args):
    """A request with Response Topic + Correlation Data from one paho client,
    answered by another paho client to that topic with the same data."""
    requester = peer("rr-requester")
    responder = peer("rr-responder")
    responder.connect()
    responder.subscribe("service/echo")

    def answer(client, userdata, message):
        responder._on_message(client, userdata, message)
        p = message.properties
        reply = props(PacketTypes.PUBLISH, CorrelationData=p.CorrelationData)
        client.publish(p.ResponseTopic, b"echo:" + message.payload, qos=1, properties=reply)

    responder.c.on_message = answer
    requester.connect()
    requester.subscribe("rr/replies/requester")
    sent = []
    for i, corr in enumerate([b"\x00id-1", b"id-2\xff"]):
        requester.publish(
            "service/echo",
            f"req{i}".encode(),
            properties=props(
                PacketTypes.PUBLISH, ResponseTopic="rr/replies/requester", CorrelationData=corr
            ),
        )
        sent.append(corr.hex())
    requester.wait_messages(2)
    return {
        "sent_correlation": sent,
        "requests": messages(responder),
        "replies": messages(requester),
    }


def response_information(args):
    """Request Response Information = 1 gets Response Information in the
    CONNACK; a request/response through that prefix works."""
    asks = peer("rri-1")
    ack = asks.connect(properties=props(PacketTypes.CONNECT, RequestResponseInformation=1))
    plain = peer("rri-2")
    plain_ack = plain.connect()
    prefix = ack["properties"].get("ResponseInformation")
    result = {"connack": ack, "plain_connack": plain_ack}
    if prefix:
        reply_topic = prefix + "answer"
        asks.subscribe(reply_topic)
        plain.publish(reply_topic, b"to the prefix")
        asks.wait_messages(1)
        result["messages"] = messages(asks)
    return result


def message_expiry(args):
    """Retained messages with a Message Expiry Interval, on a free topic and
    on a record: expiry 1 s is gone after 2 s (a new subscriber gets
    nothing); expiry 60 s is delivered with the interval counted down."""
    pub = peer("exp-pub")
    pub.connect()
    acks = {}
    for topic, expiry in [
        ("exp/short", 1),
        ("exp/long", 60),
        ("Sensor/short", 1),
        ("Sensor/long", 60),
    ]:
        body = b'{"v": 1}' if topic.startswith("Sensor/") else b"retained"
        acks[topic] = pub.publish(
            topic,
            body,
            retain=True,
            properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=expiry),
        )
    time.sleep(2.2)
    late = {}
    for name, filt in [("free", "exp/#"), ("record", "Sensor/#")]:
        s = peer(f"exp-late-{name}")
        s.connect()
        s.subscribe(filt)
        try:
            s.wait_messages(1)
        except GaveUp:
            pass
        s.quiet(1.0)
        late[name] = messages(s, ("topic", "payload", "retain", "properties"))
    return {"pubacks": acks, "late": late}


def subscription_ids(args):
    """Two overlapping subscriptions with different Subscription Identifiers:
    a message matching both carries both ids, one matching one carries its."""
    sub = peer("sid-sub")
    sub.connect()
    a = sub.subscribe("sid/#", properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=1))
    b = sub.subscribe("sid/+/x", properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=2))
    pub = peer("sid-pub")
    pub.connect()
    pub.publish("sid/a/x", b"both")
    pub.publish("sid/b", b"first only")
    sub.wait_messages(2)
    sub.quiet()
    return {"subacks": [a, b], "messages": messages(sub)}


def shared(args):
    """Two paho members of `$share/g/shr/t`: each message reaches exactly one."""
    members = [peer("shr-a"), peer("shr-b")]
    subacks = []
    for m in members:
        m.connect()
        subacks.append(m.subscribe("$share/g/shr/t"))
    pub = peer("shr-pub")
    pub.connect()
    n = 20
    for i in range(n):
        pub.publish("shr/t", f"m{i}".encode(), wait=False)
    pub.wait(lambda: len(pub.pubacks) >= n, "all PUBACKs")
    deadline = time.monotonic() + WAIT
    while sum(len(m.messages) for m in members) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(QUIET)
    return {
        "sent": n,
        "subacks": subacks,
        "members": {m.client_id: messages(m, ("topic", "payload")) for m in members},
    }


def topic_alias(args):
    """Paho with Topic Alias Maximum 10 receives repeated messages on one
    topic; paho publishes with its own topic alias to the broker."""
    sub = peer("ta-sub")
    ack = sub.connect(properties=props(PacketTypes.CONNECT, TopicAliasMaximum=10))
    sub.subscribe("alias/#")
    pub = peer("ta-pub")
    pub_ack = pub.connect()
    for i in range(5):
        pub.publish("alias/t", f"t{i}".encode())
    # Paho's own outbound alias: the topic once with alias 3, then only the alias.
    own = [pub.publish("alias/u", b"u0", properties=props(PacketTypes.PUBLISH, TopicAlias=3))]
    for i in range(1, 4):
        own.append(
            pub.publish("", f"u{i}".encode(), properties=props(PacketTypes.PUBLISH, TopicAlias=3))
        )
    sub.wait_messages(9)
    sub.quiet()
    # paho-mqtt 2.x hands on_message the topic as it was on the wire: an
    # aliased PUBLISH has an empty topic and a TopicAlias property. Resolve
    # them here as the spec asks of a receiver (MQTT 5.0 section 3.3.2.3.4).
    aliases = {}
    resolved = []
    for m in sub.messages:
        alias = m["properties"].get("TopicAlias")
        if m["topic"]:
            if alias is not None:
                aliases[alias] = m["topic"]
            resolved.append(m["topic"])
        else:
            resolved.append(aliases.get(alias))
    return {
        "connack": ack,
        "publisher_connack": pub_ack,
        "own_alias_pubacks": own,
        "messages": messages(sub, ("topic", "payload", "properties")),
        "resolved_topics": resolved,
        "pub_disconnects": list(pub.disconnects),
    }


def _will_client(client_id, topic, delay):
    w = peer(client_id)
    w.c.will_set(
        topic,
        b"gone",
        qos=1,
        properties=props(
            PacketTypes.WILLMESSAGE,
            WillDelayInterval=delay,
            ContentType="text/plain",
            PayloadFormatIndicator=1,
            MessageExpiryInterval=60,
            ResponseTopic="will/reply",
            CorrelationData=b"w-1",
            UserProperty=[("why", "dropped"), ("n", "1")],
        ),
    )
    return w


def will_delay(args):
    """A will with Will Delay Interval 2 (session expiry 10) is published
    about 2 s after the connection drops, with its properties."""
    watcher = peer("will-watcher")
    watcher.connect()
    watcher.subscribe("will/delayed")
    w = _will_client("will-1", "will/delayed", 2)
    w.connect(properties=props(PacketTypes.CONNECT, SessionExpiryInterval=10))
    dropped = w.drop()
    watcher.wait_messages(1, timeout=8)
    got = watcher.messages[0]
    watcher.quiet()
    return {
        "after_seconds": round(got["at"] - dropped, 2),
        "messages": messages(watcher, ("topic", "payload", "qos", "properties")),
    }


def will_cancelled(args):
    """A delayed will is not published when the client resumes its session
    before the delay ends."""
    watcher = peer("willc-watcher")
    watcher.connect()
    watcher.subscribe("will/cancelled")
    w = _will_client("will-2", "will/cancelled", 3)
    w.connect(properties=props(PacketTypes.CONNECT, SessionExpiryInterval=30))
    dropped = w.drop()
    time.sleep(0.5)
    again = peer("will-2")
    ack = again.connect(
        clean_start=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=30)
    )
    reconnected = round(time.monotonic() - dropped, 2)
    # Past the delay, with margin.
    time.sleep(max(0.0, 3 + 2 - (time.monotonic() - dropped)))
    again.disconnect()
    watcher.quiet()
    return {"reconnected_after": reconnected, "connack": ack, "messages": messages(watcher)}


def session_expiry(args):
    """A session with Session Expiry Interval 60 survives a disconnect: the
    reconnect (clean start 0) gets session present and the QoS 1 messages
    queued meanwhile, in order; one with expiry 1 is gone after 2.5 s."""
    s = peer("sess-1")
    first = s.connect(properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    s.subscribe("sess/t")
    s.disconnect()
    short = peer("sess-2")
    short.connect(properties=props(PacketTypes.CONNECT, SessionExpiryInterval=1))
    short.subscribe("sess/short")
    short.disconnect()
    pub = peer("sess-pub")
    pub.connect()
    for i in range(5):
        pub.publish("sess/t", f"q{i}".encode())
    back = peer("sess-1")
    resumed = back.connect(
        clean_start=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    )
    back.wait_messages(5)
    back.quiet()
    time.sleep(2.5)
    short_back = peer("sess-2")
    expired = short_back.connect(
        clean_start=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=1)
    )
    return {
        "first": first,
        "resumed": resumed,
        "messages": messages(back, ("topic", "payload", "qos")),
        "expired": expired,
    }


def receive_maximum(args):
    """Paho with Receive Maximum 1 (acking by hand, slowly) gets 20 QoS 1
    messages in order, never more than one unacknowledged."""
    n = 20
    sub = peer("rm-sub", manual_ack=True)
    sub.connect(properties=props(PacketTypes.CONNECT, ReceiveMaximum=1))
    sub.subscribe("rm/t")
    pub = peer("rm-pub")
    pub.connect()
    for i in range(n):
        pub.publish("rm/t", f"r{i:02}".encode(), wait=False)
    acked = 0
    max_unacked = 0
    deadline = time.monotonic() + 3 * WAIT
    while acked < n and time.monotonic() < deadline:
        sub.wait(lambda: len(sub.messages) > acked, f"message {acked + 1}")
        # Hold the ack: a broker ignoring Receive Maximum sends more meanwhile.
        time.sleep(0.1)
        with sub.cond:
            max_unacked = max(max_unacked, len(sub.messages) - acked)
            m = sub.messages[acked]
        sub.c.ack(m["mid"], m["qos"])
        acked += 1
    pub.wait(lambda: len(pub.pubacks) >= n, "all PUBACKs")
    sub.quiet()
    return {
        "payloads": [m["payload"] for m in sub.messages],
        "qos": sorted({m["qos"] for m in sub.messages}),
        "max_unacked": max_unacked,
        "acked": acked,
    }


def reason_codes(args):
    """Reason codes and strings with authentication on: SUBACK 0x87 for a
    refused filter, PUBACK 0x99 for a record failing its schema, PUBACK 0x87
    for a refused publish, CONNACK 0x86 for a wrong password."""
    user, password = args[0], args[1]
    c = peer("rc-1", username=user, password=password)
    ack = c.connect()
    suback = c.subscribe([("chat/room", 1), ("Secret/#", 1)])
    good = c.publish("Device/d1", b'{"temp": 21.5}', retain=True)
    bad = c.publish("Device/d2", b'{"temp": "hot"}', retain=True)
    refused = c.publish("Secret/s1", b'{"x": 1}', retain=True)
    after = c.subscribe("chat/other")
    wrong = peer("rc-2", username=user, password=password + "-wrong")
    wrong_ack = wrong.connect(expect_success=False)
    wrong.stop()
    return {
        "connack": ack,
        "suback": suback,
        "good_puback": good,
        "bad_puback": bad,
        "refused_puback": refused,
        "suback_after": after,
        "disconnects": list(c.disconnects),
        "wrong_password_connack": wrong_ack,
    }


def server_keepalive(args):
    """An empty client id and keep alive 0 against a broker with a maximum
    keep alive: CONNACK assigns a client identifier and a Server Keep Alive,
    and the connection works."""
    c = peer("")
    ack = c.connect(keepalive=0)
    c.subscribe("ka/t")
    c.publish("ka/t", b"alive")
    c.wait_messages(1)
    return {
        "connack": ack,
        "paho_keepalive": c.c._keepalive,
        "messages": messages(c, ("topic", "payload")),
    }


SCENARIOS = {
    f.__name__: f
    for f in [
        user_properties,
        content_type,
        request_response,
        response_information,
        message_expiry,
        subscription_ids,
        shared,
        topic_alias,
        will_delay,
        will_cancelled,
        session_expiry,
        receive_maximum,
        reason_codes,
        server_keepalive,
    ]
}


def main():
    global HOST, PORT
    HOST, PORT = sys.argv[1], int(sys.argv[2])
    scenario = SCENARIOS[sys.argv[3]]
    status = 0
    try:
        result = scenario(sys.argv[4:])
    except GaveUp as e:
        result = {"error": str(e)}
        status = 2
    finally:
        for p in PEERS:
            p.stop()
    if status:
        result["partial"] = {
            p.client_id: {
                "connacks": p.connacks,
                "messages": messages(p, ("topic", "payload")),
                "disconnects": p.disconnects,
            }
            for p in PEERS
        }
    print("RESULT " + json.dumps(result), flush=True)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
