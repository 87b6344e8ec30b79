//! Property tests: every packet of both protocol versions, with every property
//! it may carry, survives encode -> decode unchanged; `encoded_len` is exact;
//! decoding a stream split at any byte gives the same packets; and decoding
//! arbitrary bytes never panics (the in-CI smoke of the fuzz target).

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use mqdb_codec::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn string() -> impl Strategy<Value = ByteString> {
    // Any Unicode scalar value but U+0000 (MQTT-1.5.4-2), a few multi-byte ones.
    "[^\u{0}]{0,12}".prop_map(ByteString::from)
}

fn response_topic() -> impl Strategy<Value = ByteString> {
    topic().prop_map(TopicName::into_inner)
}

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn topic() -> impl Strategy<Value = TopicName> {
    "[a-z$/ é]{1,10}".prop_map(|s| TopicName::new(s).unwrap())
}

fn filter() -> impl Strategy<Value = TopicFilter> {
    prop_oneof![
        "[a-z/]{1,8}",
        "[a-z]{1,4}/\\+/[a-z]{1,3}",
        "[a-z]{1,4}/#",
        Just("#".to_string()),
        "\\$share/[a-z]{1,3}/[a-z]{1,3}/#",
    ]
    .prop_map(|s| TopicFilter::new(s).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pid() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|v| NonZeroU16::new(v).unwrap())
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (string(), string()).prop_map(|(n, v)| UserProperty::new(n, v)),
        0..4,
    )
}

fn nz16() -> impl Strategy<Value = NonZeroU16> {
    (1u16..).prop_map(|v| NonZeroU16::new(v).unwrap())
}

fn nz32() -> impl Strategy<Value = NonZeroU32> {
    (1u32..).prop_map(|v| NonZeroU32::new(v).unwrap())
}

fn sub_id() -> impl Strategy<Value = SubscriptionId> {
    (1u32..=SubscriptionId::MAX).prop_map(|v| SubscriptionId::new(v).unwrap())
}

fn format() -> impl Strategy<Value = PayloadFormat> {
    prop_oneof![Just(PayloadFormat::Unspecified), Just(PayloadFormat::Utf8)]
}

fn reason(allowed: ReasonContext) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = ReasonCode::ALL
        .iter()
        .copied()
        .filter(|c| c.allowed_in(allowed))
        .collect();
    proptest::sample::select(codes)
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(nz16()),
        option::of(nz32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(string()),
        option::of(bytes()),
        user_properties(),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, am, ad, up)| {
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                // Authentication Data needs a method (section 3.1.2.11.10).
                authentication_data: if am.is_some() { ad } else { None },
                authentication_method: am,
                user_properties: up,
            }
        })
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(format()),
        option::of(any::<u32>()),
        option::of(string()),
        option::of(response_topic()),
        option::of(bytes()),
        user_properties(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, up)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        })
}

fn connect(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        any::<bool>(),
        any::<u16>(),
        connect_properties(),
        string(),
        option::of((topic(), bytes(), qos(), any::<bool>(), will_properties())),
        option::of(string()),
        option::of(bytes()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                let will = will.map(|(topic, payload, qos, retain, properties)| Will {
                    topic,
                    payload,
                    qos,
                    retain,
                    properties: if v5 { properties } else { Default::default() },
                });
                // 3.1.1 MQTT-3.1.2-22: no password without a user name.
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    properties: if v5 { properties } else { Default::default() },
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(nz16()),
            option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
            option::of(any::<bool>()),
            option::of(nz32()),
            option::of(string()),
            option::of(any::<u16>()),
            option::of(string()),
        ),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<u16>()),
            option::of(string()),
            option::of(string()),
            option::of((string(), option::of(bytes()))),
            user_properties(),
        ),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci, tam, rs), (wsa, sia, ssa, ska, ri, sr, auth, up))| {
                let (authentication_method, authentication_data) = match auth {
                    Some((method, data)) => (Some(method), data),
                    None => (None, None),
                };
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method,
                    authentication_data,
                    user_properties: up,
                }
            },
        )
}

fn connack(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    let code = if v5 {
        reason(ReasonContext::ConnAck).boxed()
    } else {
        (0u8..=5)
            .prop_map(|c| ReasonCode::from_v3_connack(c).unwrap())
            .boxed()
    };
    (any::<bool>(), code, connack_properties()).prop_map(
        move |(session_present, reason_code, p)| {
            Packet::ConnAck(Box::new(ConnAck {
                session_present,
                reason_code,
                properties: if v5 { p } else { Default::default() },
            }))
        },
    )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(format()),
        option::of(any::<u32>()),
        option::of(nz16()),
        option::of(response_topic()),
        option::of(bytes()),
        option::of(string()),
        vec(sub_id(), 0..3),
        user_properties(),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, ct, ids, up)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            content_type: ct,
            subscription_identifiers: ids,
            user_properties: up,
        })
}

fn publish(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic(),
        pid(),
        publish_properties(),
        bytes(),
    )
        .prop_map(move |(dup, qos, retain, topic, id, properties, payload)| {
            let at_most_once = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: (!at_most_once).then_some(id),
                properties: if v5 { properties } else { Default::default() },
                payload,
            })
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(string()), user_properties()).prop_map(|(rs, up)| AckProperties {
        reason_string: rs,
        user_properties: up,
    })
}

fn pub_responses(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        0..4u8,
        pid(),
        reason(ReasonContext::PubAckOrRec),
        reason(ReasonContext::PubRelOrComp),
        ack_properties(),
    )
        .prop_map(move |(kind, packet_id, ack_code, rel_code, props)| {
            let (ack_code, rel_code, properties) = if v5 {
                (ack_code, rel_code, props)
            } else {
                (
                    ReasonCode::Success,
                    ReasonCode::Success,
                    AckProperties::default(),
                )
            };
            match kind {
                0 => Packet::PubAck(PubAck {
                    packet_id,
                    reason_code: ack_code,
                    properties,
                }),
                1 => Packet::PubRec(PubRec {
                    packet_id,
                    reason_code: ack_code,
                    properties,
                }),
                2 => Packet::PubRel(PubRel {
                    packet_id,
                    reason_code: rel_code,
                    properties,
                }),
                _ => Packet::PubComp(PubComp {
                    packet_id,
                    reason_code: rel_code,
                    properties,
                }),
            }
        })
}

fn options(version: Version) -> impl Strategy<Value = SubscriptionOptions> {
    let v5 = version == Version::V5;
    (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
        if !v5 {
            return SubscriptionOptions {
                qos,
                ..Default::default()
            };
        }
        SubscriptionOptions {
            qos,
            no_local: nl,
            retain_as_published: rap,
            retain_handling: match rh {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            },
        }
    })
}

fn subscribe(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        pid(),
        option::of(sub_id()),
        user_properties(),
        vec((filter(), options(version)), 1..4),
    )
        .prop_map(move |(packet_id, id, up, filters)| {
            let mut properties = SubscribeProperties::default();
            if v5 {
                properties.subscription_identifier = id;
                properties.user_properties = up;
            }
            // MQTT-3.8.3-4: no No Local on shared subscriptions.
            let filters = filters
                .into_iter()
                .map(|(f, mut o)| {
                    o.no_local &= !f.is_shared();
                    (f, o)
                })
                .collect();
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn suback(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    let codes = if v5 {
        vec(reason(ReasonContext::SubAck), 1..5).boxed()
    } else {
        vec(prop_oneof![0u8..=2, Just(0x80)], 1..5)
            .prop_map(|c| {
                c.into_iter()
                    .map(|c| ReasonCode::from_v3_suback(c).unwrap())
                    .collect()
            })
            .boxed()
    };
    (pid(), ack_properties(), codes).prop_map(move |(packet_id, properties, reason_codes)| {
        Packet::SubAck(SubAck {
            packet_id,
            properties: if v5 { properties } else { Default::default() },
            reason_codes,
        })
    })
}

fn unsubscribe(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (pid(), user_properties(), vec(filter(), 1..4)).prop_map(move |(packet_id, up, filters)| {
        let mut properties = UnsubscribeProperties::default();
        if v5 {
            properties.user_properties = up;
        }
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    })
}

fn unsuback(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        pid(),
        ack_properties(),
        vec(reason(ReasonContext::UnsubAck), 1..4),
    )
        .prop_map(move |(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(if v5 {
                UnsubAck {
                    packet_id,
                    properties,
                    reason_codes,
                }
            } else {
                UnsubAck {
                    packet_id,
                    properties: Default::default(),
                    reason_codes: vec![],
                }
            })
        })
}

fn disconnect(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        reason(ReasonContext::Disconnect),
        option::of(any::<u32>()),
        option::of(string()),
        option::of(string()),
        user_properties(),
    )
        .prop_map(move |(reason_code, sei, rs, sr, up)| {
            if !v5 {
                return Packet::Disconnect(Disconnect::default());
            }
            let properties = DisconnectProperties {
                session_expiry_interval: sei,
                reason_string: rs,
                server_reference: sr,
                user_properties: up,
            };
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        })
}

fn auth() -> impl Strategy<Value = Packet> {
    let with_method = (
        reason(ReasonContext::Auth),
        string(),
        option::of(bytes()),
        option::of(string()),
        user_properties(),
    )
        .prop_map(|(reason_code, method, data, rs, up)| {
            // Section 3.15.2.2.2: an AUTH with properties names its method.
            let properties = AuthProperties {
                authentication_method: Some(method),
                authentication_data: data,
                reason_string: rs,
                user_properties: up,
            };
            Packet::Auth(Auth {
                reason_code,
                properties,
            })
        });
    prop_oneof![4 => with_method, 1 => Just(Packet::Auth(Auth::default()))]
}

fn packet(version: Version) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        pub_responses(version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    match version {
        Version::V5 => prop_oneof![10 => common, 1 => auth()].boxed(),
        Version::V311 => common.boxed(),
    }
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V311), Just(Version::V5)]
}

fn versioned_packet() -> impl Strategy<Value = (Version, Packet)> {
    version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_packet_round_trips((version, packet) in versioned_packet()) {
        let mut buf = BytesMut::new();
        let written = encode(&packet, version, &mut buf).unwrap();
        prop_assert_eq!(written, buf.len());
        prop_assert_eq!(encoded_len(&packet, version).unwrap(), written);
        let decoded = decode(&mut buf, version, &Limits::default()).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encode_publish_writes_the_bytes_of_encode(
        (version, packet) in version().prop_flat_map(|v| publish(v).prop_map(move |p| (v, p))),
    ) {
        let Packet::Publish(publish) = &packet else { unreachable!() };
        let mut whole = BytesMut::from(&b"before"[..]);
        encode(&packet, version, &mut whole).unwrap();
        let mut direct = BytesMut::from(&b"before"[..]);
        let written = encode_publish(publish, version, &mut direct).unwrap();
        prop_assert_eq!(&direct[..], &whole[..]);
        prop_assert_eq!(written, direct.len() - 6);
        prop_assert_eq!(encoded_publish_len(publish, version).unwrap(), written);
    }

    #[test]
    fn a_stream_split_anywhere_decodes_the_same(
        (version, packets) in version().prop_flat_map(|v| vec(packet(v), 1..6).prop_map(move |p| (v, p))),
        split in any::<prop::sample::Index>(),
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            encode(p, version, &mut wire).unwrap();
        }
        let wire = wire.freeze();
        let cut = split.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut out = Vec::new();
        let limits = Limits::default();
        while let Some(p) = decode(&mut buf, version, &limits).unwrap() {
            out.push(p);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(p) = decode(&mut buf, version, &limits).unwrap() {
            out.push(p);
        }
        prop_assert_eq!(out, packets);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_packet_over_the_limit_is_refused_from_its_header((version, packet) in versioned_packet()) {
        let mut wire = BytesMut::new();
        let len = encode(&packet, version, &mut wire).unwrap();
        prop_assume!(len > 2);
        let limits = Limits { max_packet_size: (len - 1) as u32 };
        // Only the fixed header has arrived: the verdict must not wait for the body.
        let header_len = 1 + wire[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        let mut head = BytesMut::from(&wire[..header_len]);
        prop_assert_eq!(
            decode(&mut head, version, &limits),
            Err(DecodeError::PacketTooLarge { size: len, max: (len - 1) as u32 })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..256), v5 in any::<bool>()) {
        let version = if v5 { Version::V5 } else { Version::V311 };
        let mut buf = BytesMut::from(&data[..]);
        let limits = Limits { max_packet_size: 1024 };
        while let Ok(Some(_)) = decode(&mut buf, version, &limits) {}
    }
}
