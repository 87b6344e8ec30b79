//! Values through JSON, CBOR and MessagePack: lossless round trips, what is
//! detected as a record, content negotiation, index-key order and CSV.

use std::cmp::Ordering;

use bytes::Bytes;
use mqdb_resource::Value;
use mqdb_resource::format::{Format, FormatError, to_csv};
use proptest::collection::vec;
use proptest::prelude::*;

// ------------------------------------------------------------ helpers

/// Structural equality that also tells `-0.0` from `0.0` (and NaN from
/// anything, NaN included: keep NaN out of the values compared with this).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

fn map(entries: &[(&str, Value)]) -> Value {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn special_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(-5e-324),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::EPSILON),
        Just(0.1),
        Just(1e21),
        Just(9_007_199_254_740_993.0),
        Just(18_446_744_073_709_551_616.0),
    ]
}

/// Any finite float, biased towards awkward ones.
fn finite_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>().prop_filter("finite", |f| f.is_finite()),
        1 => special_float(),
        1 => -1e6..1e6f64,
    ]
}

/// Map keys: any unicode, but not the JSON byte-string marker.
fn key() -> impl Strategy<Value = String> {
    "\\PC{0,8}".prop_filter("not $bytes", |k| k != "$bytes")
}

/// Arbitrary nested values without NaN; with `infinite`, ±inf floats too
/// (JSON writes those as null, so JSON tests leave them out).
fn arb_value(infinite: bool) -> impl Strategy<Value = Value> {
    let float = if infinite {
        prop_oneof![
            8 => finite_float(),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
        ]
        .boxed()
    } else {
        finite_float().boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1), Just(-33)]
            .prop_map(Value::Int),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Value::UInt),
        Just(Value::UInt(u64::MAX)),
        float.prop_map(Value::Float),
        "\\PC{0,12}".prop_map(Value::String),
        vec(any::<u8>(), 0..40).prop_map(|b| Value::Bytes(Bytes::from(b))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((key(), inner), 0..8).prop_map(|entries| entries.into_iter().collect()),
        ]
    })
}

fn roundtrip(format: Format, value: &Value) -> Value {
    let bytes = format.encode(value);
    format
        .decode(&bytes)
        .unwrap_or_else(|e| panic!("{format} could not read its own output {bytes:?}: {e}"))
}

// ------------------------------------------------------------ round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_format_reads_back_what_it_wrote(v in arb_value(false)) {
        for format in Format::ALL {
            let back = roundtrip(format, &v);
            prop_assert!(same(&back, &v), "{format}: {v:?} came back as {back:?}");
        }
    }

    #[test]
    fn cbor_and_msgpack_keep_infinities(v in arb_value(true)) {
        for format in [Format::Cbor, Format::MsgPack] {
            let back = roundtrip(format, &v);
            prop_assert!(same(&back, &v), "{format}: {v:?} came back as {back:?}");
        }
    }

    #[test]
    fn a_value_survives_a_trip_through_two_formats(v in arb_value(false)) {
        for first in Format::ALL {
            let middle = roundtrip(first, &v);
            for second in Format::ALL {
                let back = roundtrip(second, &middle);
                prop_assert!(same(&back, &v), "{first} then {second}: {v:?} came back as {back:?}");
            }
        }
    }

    #[test]
    fn any_finite_float_is_exact_in_json(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        // Both serde_json's shortest output and other writers' long forms.
        for text in [format!("{f:?}"), format!("{f:e}"), format!("{f:.17e}")] {
            let back = Format::Json.decode(format!("[{text}]").as_bytes()).unwrap();
            let Value::Array(items) = &back else { panic!("{back:?}") };
            let exact: f64 = text.parse().unwrap();
            match items[0] {
                Value::Float(g) => prop_assert_eq!(g.to_bits(), exact.to_bits(), "{}", text),
                Value::Int(i) => prop_assert_eq!(i as f64, exact, "{}", text),
                Value::UInt(u) => prop_assert_eq!(u as f64, exact, "{}", text),
                ref other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn nan_is_kept_by_cbor_and_msgpack_and_is_null_in_json() {
    for format in [Format::Cbor, Format::MsgPack] {
        let back = roundtrip(format, &Value::Float(f64::NAN));
        assert!(
            matches!(back, Value::Float(f) if f.is_nan()),
            "{format}: {back:?}"
        );
    }
    assert_eq!(Format::Json.encode(&Value::Float(f64::NAN)), b"null");
    assert_eq!(Format::Json.encode(&Value::Float(f64::INFINITY)), b"null");
}

#[test]
fn integers_come_back_normalised() {
    for format in Format::ALL {
        assert_eq!(
            roundtrip(format, &Value::UInt(5)),
            Value::Int(5),
            "{format}"
        );
        assert_eq!(
            roundtrip(format, &Value::Int(i64::MIN)),
            Value::Int(i64::MIN),
            "{format}"
        );
        let above = Value::UInt(i64::MAX as u64 + 1);
        assert_eq!(roundtrip(format, &above), above, "{format}");
    }
    assert_eq!(Value::from(u64::MAX), Value::UInt(u64::MAX));
    assert_eq!(Value::from(7u64), Value::Int(7));
}

// ------------------------------------------------------------ JSON

#[test]
fn json_numbers_are_read_exactly_even_next_to_look_alike_strings() {
    let text = br#"{"1-2": "-3.5 \"7e3", "b": [1, -2.5e-300, 0.30000000000000004, 18446744073709551615, 18446744073709551616, -0, 9007199254740993]}"#;
    let v = Format::Json.decode(text).unwrap();
    let expected = map(&[
        ("1-2", Value::from("-3.5 \"7e3")),
        (
            "b",
            Value::Array(vec![
                Value::Int(1),
                Value::Float(-2.5e-300),
                Value::Float(0.300_000_000_000_000_04),
                Value::UInt(u64::MAX),
                Value::Float(18_446_744_073_709_551_616.0),
                Value::Float(-0.0),
                Value::Int(9_007_199_254_740_993),
            ]),
        ),
    ]);
    assert!(same(&v, &expected), "{v:?}");
}

#[test]
fn json_bytes_are_a_one_key_base64_object() {
    let v = map(&[("raw", Value::from(vec![0u8, 1, 255]))]);
    assert_eq!(Format::Json.encode(&v), br#"{"raw":{"$bytes":"AAH/"}}"#);
    assert_eq!(
        Format::Json.decode(br#"{"$bytes": ""}"#).unwrap(),
        Value::from(Vec::<u8>::new())
    );
    // Any other shape stays a map.
    for text in [
        r#"{"$bytes": "not base64!"}"#,
        r#"{"$bytes": "AA==", "x": 1}"#,
        r#"{"$bytes": 5}"#,
        r#"{"$bytes": "AA"}"#,
    ] {
        let v = Format::Json.decode(text.as_bytes()).unwrap();
        assert_eq!(v.type_name(), "map", "{text}");
    }
}

#[test]
fn json_errors_say_where_and_what() {
    let e = Format::Json.decode(br#"{"a": }"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid JSON at line 1 column 7: expected value"
    );
    assert_eq!(e.format(), Format::Json);
    let e = Format::Json.decode(br#"{"a": 1"#).unwrap_err();
    assert!(e.to_string().contains("unexpected end of input"), "{e}");
    let e = Format::Json.decode(br#"{"a": 1} x"#).unwrap_err();
    assert!(e.to_string().contains("trailing characters"), "{e}");
}

#[test]
fn json_keeps_key_order_and_the_last_of_repeated_keys() {
    let v = Format::Json.decode(br#"{"z": 1, "a": 2, "z": 3}"#).unwrap();
    let keys: Vec<_> = v.as_map().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["z", "a"]);
    assert_eq!(v.get("z"), Some(&Value::Int(3)));
}

// ------------------------------------------------------------ CBOR

#[test]
fn cbor_tags_are_dropped_and_small_floats_widen() {
    // {"t": 1(1700000000), "h": f16 1.5, "s": f32 0.25, "u": undefined}
    let input = [
        0xA4, 0x61, b't', 0xC1, 0x1A, 0x65, 0x53, 0xF1, 0x00, 0x61, b'h', 0xF9, 0x3E, 0x00, 0x61,
        b's', 0xFA, 0x3E, 0x80, 0x00, 0x00, 0x61, b'u', 0xF7,
    ];
    let v = Format::Cbor.decode(&input).unwrap();
    let expected = map(&[
        ("t", Value::Int(1_700_000_000)),
        ("h", Value::Float(1.5)),
        ("s", Value::Float(0.25)),
        ("u", Value::Null),
    ]);
    assert_eq!(v, expected);
}

#[test]
fn cbor_indefinite_lengths_are_read() {
    // {_ "a": [_ 1, 2], "b": (_ h'01', h'02')}
    let input = [
        0xBF, 0x61, b'a', 0x9F, 0x01, 0x02, 0xFF, 0x61, b'b', 0x5F, 0x41, 0x01, 0x41, 0x02, 0xFF,
        0xFF,
    ];
    let v = Format::Cbor.decode(&input).unwrap();
    let expected = map(&[
        ("a", Value::Array(vec![Value::Int(1), Value::Int(2)])),
        ("b", Value::from(vec![1u8, 2])),
    ]);
    assert_eq!(v, expected);
}

#[test]
fn cbor_outside_the_record_model_is_an_error() {
    // -2^64: a valid CBOR integer that no Value holds.
    let e = Format::Cbor
        .decode(&[0x3B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        .unwrap_err();
    assert!(e.to_string().contains("outside the 64-bit range"), "{e}");
    // {1: 2}: an integer map key.
    let e = Format::Cbor.decode(&[0xA1, 0x01, 0x02]).unwrap_err();
    assert!(e.to_string().contains("map keys must be text"), "{e}");
    // A complete item followed by more bytes.
    let e = Format::Cbor.decode(&[0xA0, 0x00]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid CBOR at byte 1: unexpected bytes after the data item"
    );
    // Truncated.
    let e = Format::Cbor.decode(&[0xA1, 0x61]).unwrap_err();
    assert!(e.to_string().contains("unexpected end of input"), "{e}");
}

// ------------------------------------------------------------ MessagePack

#[test]
fn msgpack_reads_float32_and_every_int_width() {
    // {"f": f32 0.5, "n": int8 -100, "u": uint64 2^63}
    let input = [
        0x83, 0xA1, b'f', 0xCA, 0x3F, 0x00, 0x00, 0x00, 0xA1, b'n', 0xD0, 0x9C, 0xA1, b'u', 0xCF,
        0x80, 0, 0, 0, 0, 0, 0, 0,
    ];
    let v = Format::MsgPack.decode(&input).unwrap();
    let expected = map(&[
        ("f", Value::Float(0.5)),
        ("n", Value::Int(-100)),
        ("u", Value::UInt(1 << 63)),
    ]);
    assert_eq!(v, expected);
}

#[test]
fn msgpack_outside_the_record_model_is_an_error() {
    let cases: [(&[u8], &str); 5] = [
        (
            &[0x81, 0x01, 0x02],
            "invalid MessagePack at byte 1: map keys must be strings, found int",
        ),
        (
            &[0xD4, 0x01, 0x00],
            "invalid MessagePack at byte 0: extension types are not supported",
        ),
        (
            &[0xA2, 0xC3, 0x28],
            "invalid MessagePack at byte 1: string is not valid UTF-8",
        ),
        (
            &[0x80, 0x00],
            "invalid MessagePack at byte 1: unexpected bytes after the value",
        ),
        (
            &[0x81, 0xA1],
            "invalid MessagePack at byte 2: unexpected end of input",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(
            Format::MsgPack.decode(input).unwrap_err().to_string(),
            message
        );
    }
}

#[test]
fn huge_declared_lengths_fail_without_allocating_them() {
    // array32 / map32 claiming 4 billion entries, then nothing.
    assert!(
        Format::MsgPack
            .decode(&[0xDD, 0xFF, 0xFF, 0xFF, 0xFF])
            .is_err()
    );
    assert!(
        Format::MsgPack
            .decode(&[0xDF, 0xFF, 0xFF, 0xFF, 0xFF])
            .is_err()
    );
    assert!(
        Format::MsgPack
            .decode(&[0xC6, 0xFF, 0xFF, 0xFF, 0xFF])
            .is_err()
    );
    let cbor_bytes = [0x5B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    assert!(Format::Cbor.decode(&cbor_bytes).is_err());
    let cbor_array = [0x9B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    assert!(Format::Cbor.decode(&cbor_array).is_err());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 10_000;
    let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(Format::Json.decode(json.as_bytes()).is_err());
    assert!(Format::Cbor.decode(&vec![0x81; depth]).is_err());
    assert!(Format::MsgPack.decode(&vec![0x91; depth]).is_err());
    // 100 levels are fine everywhere.
    let mut v = Value::Null;
    for _ in 0..100 {
        v = Value::Array(vec![v]);
    }
    for format in Format::ALL {
        assert_eq!(roundtrip(format, &v), v, "{format}");
    }
}

// ------------------------------------------------------------ detection

#[test]
fn maps_are_detected_in_each_format() {
    let record = map(&[("id", Value::from("a/b")), ("temp", Value::Float(21.5))]);
    for format in Format::ALL {
        let payload = format.encode(&record);
        assert_eq!(
            Format::detect(&payload),
            Some((format, record.clone())),
            "{format}"
        );
    }
    let spaced = b" \r\n\t{\"a\": [1, 2]}";
    assert_eq!(Format::detect(spaced).map(|(f, _)| f), Some(Format::Json));
    // An empty map in each format, and map16/map32 MessagePack headers.
    assert_eq!(Format::detect(b"{}").map(|(f, _)| f), Some(Format::Json));
    assert_eq!(Format::detect(&[0xA0]).map(|(f, _)| f), Some(Format::Cbor));
    assert_eq!(
        Format::detect(&[0x80]).map(|(f, _)| f),
        Some(Format::MsgPack)
    );
    assert_eq!(
        Format::detect(&[0xDE, 0, 0]).map(|(f, _)| f),
        Some(Format::MsgPack)
    );
    assert_eq!(
        Format::detect(&[0xDF, 0, 0, 0, 0]).map(|(f, _)| f),
        Some(Format::MsgPack)
    );
}

#[test]
fn anything_but_a_complete_map_is_binary() {
    let cases: [&[u8]; 14] = [
        b"",
        b"42",
        b"\"text\"",
        b"[1, 2]",
        b"null",
        b"hello world",
        b"{\"a\": 1} junk",
        b"{\"a\": 1}}",
        b"{\"a\": ",
        br#"{"$bytes": "AAE="}"#,
        &[0x82, 0x01, 0x02],       // CBOR array
        &[0xA1, 0x61, b'a'],       // truncated CBOR map
        &[0x81, 0xA1, b'a', 0xC1], // MessagePack map with an invalid value
        &[0xFF, 0x00, 0x13, 0x37], // garbage
    ];
    for payload in cases {
        assert_eq!(Format::detect(payload), None, "{payload:?}");
    }
    // CBOR and MessagePack arrays are not records either...
    let array = Value::Array(vec![Value::from("a"), Value::Int(1)]);
    assert_eq!(Format::detect(&Format::Cbor.encode(&array)), None);
    assert_eq!(Format::detect(&Format::MsgPack.encode(&array)), None);
    // ...but the empty CBOR array, 0x80, is also the empty MessagePack map,
    // and SPEC §3 reads it as the latter.
    assert_eq!(Format::detect(&[0x80]), Some((Format::MsgPack, map(&[]))));
}

// ------------------------------------------------------------ negotiation

#[test]
fn content_types_are_recognised_with_parameters_and_aliases() {
    let cases = [
        ("application/json", Some(Format::Json)),
        ("Application/JSON; charset=utf-8", Some(Format::Json)),
        ("text/json", Some(Format::Json)),
        ("application/ld+json", Some(Format::Json)),
        ("application/cbor", Some(Format::Cbor)),
        ("application/foo+cbor ; x=y", Some(Format::Cbor)),
        ("application/x-msgpack", Some(Format::MsgPack)),
        ("application/msgpack", Some(Format::MsgPack)),
        ("application/vnd.msgpack", Some(Format::MsgPack)),
        ("application/octet-stream", None),
        ("text/plain", None),
        ("json", None),
        ("", None),
    ];
    for (content_type, expected) in cases {
        assert_eq!(
            Format::from_content_type(content_type),
            expected,
            "{content_type}"
        );
    }
    for format in Format::ALL {
        assert_eq!(
            Format::from_content_type(format.content_type()),
            Some(format)
        );
    }
    assert_eq!(Format::MsgPack.content_type(), "application/x-msgpack");
}

#[test]
fn accept_headers_pick_the_best_format() {
    let cases = [
        ("*/*", Some(Format::Json)),
        ("", Some(Format::Json)),
        ("application/cbor", Some(Format::Cbor)),
        ("application/msgpack, */*", Some(Format::MsgPack)),
        (
            "application/json;q=0.5, application/cbor",
            Some(Format::Cbor),
        ),
        (
            "application/cbor;q=0.2, application/x-msgpack;q=0.9",
            Some(Format::MsgPack),
        ),
        ("application/cbor, application/json", Some(Format::Cbor)),
        ("application/json;q=0, */*", Some(Format::Cbor)),
        (
            "application/*;q=0.3, application/cbor;q=0.1",
            Some(Format::Json),
        ),
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            Some(Format::Json),
        ),
        ("text/html, image/png", None),
        ("application/json;q=0", None),
        (
            "application/cbor; q=1.0; ext=1, application/json; q=0.999",
            Some(Format::Cbor),
        ),
        (
            "application/cbor;q=2, application/json;q=0.1",
            Some(Format::Json),
        ),
        ("APPLICATION/VND.MSGPACK", Some(Format::MsgPack)),
    ];
    for (accept, expected) in cases {
        assert_eq!(Format::from_accept(accept), expected, "{accept}");
    }
}

// ------------------------------------------------------------ ordering

#[test]
fn numbers_compare_exactly_across_int_uint_and_float() {
    let two_53 = 1i64 << 53;
    let cases = [
        (Value::Int(1), Value::Float(1.0), Some(Ordering::Equal)),
        (Value::Int(0), Value::Float(-0.0), Some(Ordering::Equal)),
        (
            Value::Int(two_53 + 1),
            Value::Float(two_53 as f64),
            Some(Ordering::Greater),
        ),
        (
            Value::UInt(u64::MAX),
            Value::Float(18_446_744_073_709_551_616.0),
            Some(Ordering::Less),
        ),
        (
            Value::UInt(u64::MAX),
            Value::Int(i64::MAX),
            Some(Ordering::Greater),
        ),
        (
            Value::Int(i64::MIN),
            Value::Float(-9.3e18),
            Some(Ordering::Greater),
        ),
        (Value::Int(-1), Value::Float(-0.5), Some(Ordering::Less)),
        (
            Value::Int(2),
            Value::Float(f64::INFINITY),
            Some(Ordering::Less),
        ),
        (Value::Int(2), Value::Float(f64::NAN), None),
        (Value::from("b"), Value::from("ab"), Some(Ordering::Greater)),
        (
            Value::from(vec![1u8]),
            Value::from(vec![1u8, 0]),
            Some(Ordering::Less),
        ),
        (Value::Bool(false), Value::Bool(true), Some(Ordering::Less)),
        (Value::Null, Value::Null, Some(Ordering::Equal)),
        (Value::Int(1), Value::from("1"), None),
        (Value::Array(vec![]), Value::Array(vec![]), None),
    ];
    for (a, b, expected) in cases {
        assert_eq!(a.compare(&b), expected, "{a:?} vs {b:?}");
        assert_eq!(
            b.compare(&a),
            expected.map(Ordering::reverse),
            "{b:?} vs {a:?}"
        );
    }
}

/// Numbers that straddle the places where f64 stops being exact.
fn indexable_number() -> impl Strategy<Value = Value> {
    let edges = prop_oneof![
        Just(1i128 << 53),
        Just(1i128 << 63),
        Just(1i128 << 64),
        Just(-(1i128 << 63))
    ];
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        special_float().prop_map(Value::Float),
        (edges.clone(), -2100i128..2100)
            .prop_filter_map("in range", |(e, d)| Value::from_i128(e + d)),
        (edges, -3i64..3).prop_map(|(e, steps)| {
            // A float at or next to the edge.
            let f = e as f64;
            Value::Float(f64::from_bits(
                (f.to_bits() as i64 + steps * f.signum() as i64) as u64,
            ))
        }),
    ]
}

fn indexable() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => indexable_number(),
        2 => "[a\u{0}\u{1}b\u{ff}é]{0,5}".prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn index_key_order_is_compare_order(a in indexable(), b in indexable()) {
        let (ka, kb) = (a.index_key().unwrap(), b.index_key().unwrap());
        match a.compare(&b) {
            Some(order) => prop_assert_eq!(ka.cmp(&kb), order, "{:?} vs {:?}", a, b),
            // Different types: keys differ and sort by type.
            None => prop_assert_ne!(ka[0], kb[0], "{:?} vs {:?}", a, b),
        }
    }
}

#[test]
fn unindexable_values_have_no_key() {
    for v in [
        Value::Float(f64::NAN),
        Value::from(vec![1u8]),
        Value::Array(vec![]),
        map(&[]),
    ] {
        assert_eq!(v.index_key(), None, "{v:?}");
    }
    assert_eq!(Value::Float(-0.0).index_key(), Value::Int(0).index_key());
    assert_eq!(
        Value::from("a\0").index_key().unwrap(),
        [4, b'a', 0, 0xFF, 0, 0]
    );
}

// ------------------------------------------------------------ CSV

#[test]
fn csv_quotes_per_rfc_4180_and_unions_the_columns() {
    let rows = [
        map(&[
            ("id", Value::from("1")),
            ("note", Value::from("say \"hi\", then\nleave")),
        ]),
        map(&[
            ("id", Value::from("2")),
            ("tags", Value::Array(vec![Value::from("a"), Value::Int(1)])),
            ("raw", Value::from(vec![0u8, 1, 255])),
            ("t", Value::Float(1.0)),
            ("gone", Value::Null),
        ]),
        Value::from("not a map"),
    ];
    let csv = to_csv(&rows, None);
    assert_eq!(
        csv,
        "id,note,tags,raw,t,gone\r\n\
         1,\"say \"\"hi\"\", then\nleave\",,,,\r\n\
         2,,\"[\"\"a\"\",1]\",AAH/,1.0,\r\n\
         ,,,,,\r\n"
    );
    let columns = ["t".to_owned(), "id".to_owned(), "missing".to_owned()];
    assert_eq!(
        to_csv(&rows[1..2], Some(&columns)),
        "t,id,missing\r\n1.0,2,\r\n"
    );
    assert_eq!(to_csv(&[], None), "");
}

// ------------------------------------------------------------ accessors

#[test]
fn accessors_and_type_names() {
    let v = map(&[
        ("a", Value::Int(1)),
        ("b", Value::from(Some("x"))),
        ("c", Value::from(None::<i64>)),
    ]);
    assert_eq!(v.get("a"), Some(&Value::Int(1)));
    assert_eq!(v.get("b").and_then(Value::as_str), Some("x"));
    assert!(v.get("c").unwrap().is_null());
    assert_eq!(v.get("nope"), None);
    assert_eq!(Value::Int(1).get("a"), None);
    let names: Vec<_> = [
        Value::Null,
        Value::Bool(true),
        Value::UInt(u64::MAX),
        Value::Float(1.0),
        Value::from("s"),
        Value::from(vec![1u8]),
        Value::Array(vec![]),
        map(&[]),
    ]
    .iter()
    .map(Value::type_name)
    .collect();
    assert_eq!(
        names,
        [
            "null", "bool", "int", "float", "string", "bytes", "array", "map"
        ]
    );
}

#[test]
fn format_errors_are_comparable_values() {
    let e = Format::MsgPack.decode(&[0xC1]).unwrap_err();
    assert_eq!(
        e,
        FormatError::MsgPack {
            offset: 0,
            message: "0xc1 is not a valid marker".into()
        }
    );
}
