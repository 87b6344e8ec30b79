//! Parsing `$share/{ShareName}/{filter}` (MQTT 5.0 section 4.8.2), one
//! scenario per test, errors included.

use mqdb_broker::share::{ShareError, Subscription, parse_filter};

#[test]
fn plain_filter_is_plain() {
    for filter in ["a/b", "#", "+/x", "$SYS/#", "", "share/g/a"] {
        assert_eq!(parse_filter(filter), Ok(Subscription::Plain(filter)));
    }
}

#[test]
fn shared_filter_splits_into_group_and_filter() {
    let sub = parse_filter("$share/consumer1/sport/tennis/+").unwrap();
    assert_eq!(
        sub,
        Subscription::Shared {
            group: "consumer1",
            filter: "sport/tennis/+"
        }
    );
    assert!(sub.is_shared());
    assert_eq!(sub.group(), Some("consumer1"));
    assert_eq!(sub.filter(), "sport/tennis/+");
}

#[test]
fn shared_filter_keeps_wildcards_dollar_and_empty_levels() {
    for (input, filter) in [
        ("$share/g/#", "#"),
        ("$share/g/+", "+"),
        ("$share/g/$SYS/#", "$SYS/#"),
        ("$share/g//finance", "/finance"),
        ("$share/g/a/", "a/"),
        ("$share/g/$share/h/x", "$share/h/x"),
    ] {
        assert_eq!(
            parse_filter(input),
            Ok(Subscription::Shared { group: "g", filter }),
            "{input}"
        );
    }
}

#[test]
fn plain_subscription_has_no_group() {
    let sub = parse_filter("a/+").unwrap();
    assert!(!sub.is_shared());
    assert_eq!(sub.group(), None);
    assert_eq!(sub.filter(), "a/+");
}

#[test]
fn share_prefix_without_slash_is_a_plain_filter() {
    for filter in [
        "$share",
        "$shared/g/a",
        "$sharex/+",
        "$SHARE/g/a",
        "$share#",
    ] {
        assert_eq!(parse_filter(filter), Ok(Subscription::Plain(filter)));
    }
}

#[test]
fn empty_share_name_is_rejected() {
    // MQTT-4.8.2-1.
    assert_eq!(parse_filter("$share//a"), Err(ShareError::EmptyShareName));
    assert_eq!(parse_filter("$share/"), Err(ShareError::EmptyShareName));
    assert_eq!(parse_filter("$share//"), Err(ShareError::EmptyShareName));
}

#[test]
fn share_name_with_wildcards_is_rejected() {
    // MQTT-4.8.2-2.
    for (input, name) in [
        ("$share/+/a", "+"),
        ("$share/#/a", "#"),
        ("$share/g+/a", "g+"),
        ("$share/g#", "g#"),
    ] {
        assert_eq!(
            parse_filter(input),
            Err(ShareError::WildcardInShareName { name: name.into() }),
            "{input}"
        );
    }
}

#[test]
fn share_name_without_following_filter_is_rejected() {
    // MQTT-4.8.2-2: the ShareName must be followed by `/` and a filter.
    assert_eq!(
        parse_filter("$share/group"),
        Err(ShareError::MissingFilter {
            name: "group".into()
        })
    );
    assert_eq!(
        parse_filter("$share/group/"),
        Err(ShareError::EmptyFilter {
            name: "group".into()
        })
    );
}

#[test]
fn errors_explain_what_is_wrong() {
    let message = parse_filter("$share/g+/a").unwrap_err().to_string();
    assert!(
        message.contains("g+") && message.contains("wildcard"),
        "{message}"
    );
    let message = parse_filter("$share/group").unwrap_err().to_string();
    assert!(
        message.contains("group") && message.contains("'/'"),
        "{message}"
    );
    let message = parse_filter("$share//a").unwrap_err().to_string();
    assert!(message.contains("empty share name"), "{message}");
}
