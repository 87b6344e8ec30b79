//! The MQTT scenario and interop suite over real sockets, one module per
//! area. One test binary for all of them: each binary links the whole
//! server, so one instead of thirty keeps a clean build's disk and link
//! time small (test names are `<module>::<test>`).

#[macro_use]
mod common;

mod backpressure;
mod broker_smoke;
mod interop_mosquitto_auth;
mod interop_mosquitto_clients;
mod interop_mqttjs_scram;
mod interop_paho_mqtt5;
mod interop_paho_websocket;
mod interop_rumqttc;
mod mqtt5_features;
mod mqtt_enhanced_auth;
mod mqtt_errors;
mod mqtt_formats;
mod mqtt_free_topics;
mod mqtt_over_websocket;
mod mqtt_qos;
mod mqtt_records;
mod mqtt_restart;
mod mqtt_sessions;
mod mqtt_shared_subscriptions;
mod mqtt_typed_tables;
mod mqtt_will_keepalive;
mod qos0_batching;
mod qos0_pacing;
mod record_expiry_and_will_delay;
mod security_mqtt;
mod security_rest;
mod session_expiry;
mod sys_topics;
