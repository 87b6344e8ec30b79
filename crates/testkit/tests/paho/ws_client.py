"""An MQTT-over-WebSocket round trip with the Eclipse Paho Python client
(paho-mqtt 2.x, transport="websockets"), driven by
crates/testkit/tests/interop_paho_websocket.rs.

Usage: ws_client.py HOST PORT PATH VERSION SUB_TOPIC PUB_TOPIC PUB_PAYLOAD

Connects over WebSocket to ws://HOST:PORT/PATH with MQTT VERSION (3 for
3.1.1, 5 for 5.0), subscribes to SUB_TOPIC with QoS 1, publishes
PUB_PAYLOAD to PUB_TOPIC with QoS 1, waits for one message on SUB_TOPIC
and disconnects. Prints one line per step, flushed, for the test to follow:

    CONNECTED <reason>
    SUBSCRIBED <granted>
    PUBLISHED
    MESSAGE <topic> <retain 0|1> <payload as UTF-8>
    DONE

Exits 0 when all steps happened, 2 on timeout (15 s), 3 if the connection
was refused; 1 (ImportError) when paho-mqtt is missing.
"""

import sys
import threading

import paho.mqtt.client as mqtt

DEADLINE_SECONDS = 15


def say(*words):
    print(*words, flush=True)


def main():
    host, port, path, version, sub_topic, pub_topic, pub_payload = sys.argv[1:8]
    protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    done = threading.Event()
    failed = []

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"paho-ws-v{version}",
        transport="websockets",
        protocol=protocol,
    )
    client.ws_set_options(path=path)

    def on_connect(client, userdata, flags, reason_code, properties):
        say("CONNECTED", reason_code)
        if reason_code.is_failure:
            failed.append(str(reason_code))
            done.set()
            return
        client.subscribe(sub_topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        say("SUBSCRIBED", ",".join(str(int(getattr(rc, "value", rc))) for rc in reason_codes))
        client.publish(pub_topic, pub_payload.encode(), qos=1)

    def on_publish(client, userdata, mid, reason_code, properties):
        say("PUBLISHED")

    def on_message(client, userdata, message):
        say("MESSAGE", message.topic, int(message.retain), message.payload.decode("utf-8", "replace"))
        client.disconnect()
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message

    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    finished = done.wait(DEADLINE_SECONDS)
    client.loop_stop()
    if not finished:
        say("TIMEOUT")
        return 2
    if failed:
        return 3
    say("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
