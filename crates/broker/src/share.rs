//! Shared subscriptions: splitting `$share/{ShareName}/{filter}` into the
//! group and the filter it subscribes to (MQTT 5.0 section 4.8.2).
//!
//! This module only parses; choosing which group member receives a message
//! belongs to the session layer. It borrows from the input and allocates
//! nothing on success, so it can run on every SUBSCRIBE and UNSUBSCRIBE.

use thiserror::Error;

/// What every shared subscription filter starts with (MQTT-4.8.2-1).
pub const SHARE_PREFIX: &str = "$share/";

/// A subscription filter as the client sent it, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription<'a> {
    /// An ordinary filter; every matching session gets each message.
    Plain(&'a str),
    /// `$share/{group}/{filter}`: each message matching `filter` goes to one
    /// session of `group`.
    Shared {
        /// The ShareName: non-empty, without `/`, `+` or `#`.
        group: &'a str,
        /// The filter after the share name; may start with `$` or contain
        /// wildcards like any other filter.
        filter: &'a str,
    },
}

impl<'a> Subscription<'a> {
    /// The topic filter that messages are matched against.
    pub fn filter(&self) -> &'a str {
        match *self {
            Subscription::Plain(filter) | Subscription::Shared { filter, .. } => filter,
        }
    }

    /// The share group, for a shared subscription.
    pub fn group(&self) -> Option<&'a str> {
        match *self {
            Subscription::Plain(_) => None,
            Subscription::Shared { group, .. } => Some(group),
        }
    }

    /// Whether this is a `$share/...` subscription.
    pub fn is_shared(&self) -> bool {
        matches!(self, Subscription::Shared { .. })
    }
}

/// Why a `$share/...` filter is not a valid shared subscription.
///
/// In a SUBSCRIBE this is answered with reason code 0x8F (Topic Filter
/// invalid) for that filter; the mapping lives with the session layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShareError {
    /// `$share/` is not followed by a share name, as in `$share//a` or
    /// `$share/` (MQTT-4.8.2-1).
    #[error("shared subscription has an empty share name (MQTT-4.8.2-1)")]
    EmptyShareName,
    /// The share name contains `+` or `#` (MQTT-4.8.2-2).
    #[error("share name {name:?} contains a wildcard '+' or '#' (MQTT-4.8.2-2)")]
    WildcardInShareName {
        /// The offending share name.
        name: String,
    },
    /// The share name is not followed by `/`, as in `$share/group`
    /// (MQTT-4.8.2-2).
    #[error("share name {name:?} is not followed by '/' and a topic filter (MQTT-4.8.2-2)")]
    MissingFilter {
        /// The share name.
        name: String,
    },
    /// The `/` after the share name is the last character, as in
    /// `$share/group/` (MQTT-4.8.2-2).
    #[error("share name {name:?} is followed by an empty topic filter (MQTT-4.8.2-2)")]
    EmptyFilter {
        /// The share name.
        name: String,
    },
}

/// Splits a subscription filter into a plain or a shared subscription.
///
/// Only a filter beginning with `$share/` is shared: `$share` alone or
/// `$shared/x` are plain filters (whose first level starts with `$`, so no
/// wildcard-first filter matches topics published to them, MQTT-4.7.2-1).
/// The filter after the share name is returned as is; checking its
/// wildcards is the codec's job.
///
/// ```
/// use mqdb_broker::share::{parse_filter, Subscription};
///
/// assert_eq!(
///     parse_filter("$share/workers/jobs/+"),
///     Ok(Subscription::Shared { group: "workers", filter: "jobs/+" }),
/// );
/// assert_eq!(parse_filter("jobs/+"), Ok(Subscription::Plain("jobs/+")));
/// assert!(parse_filter("$share/workers").is_err());
/// ```
pub fn parse_filter(s: &str) -> Result<Subscription<'_>, ShareError> {
    let Some(after_prefix) = s.strip_prefix(SHARE_PREFIX) else {
        return Ok(Subscription::Plain(s));
    };
    // MQTT-4.8.2-2: the ShareName cannot contain `/`, so it ends at the
    // first one, which must be followed by the filter.
    let (group, filter) = match after_prefix.split_once('/') {
        Some((group, filter)) => (group, Some(filter)),
        None => (after_prefix, None),
    };
    // MQTT-4.8.2-1: the ShareName is at least one character long.
    if group.is_empty() {
        return Err(ShareError::EmptyShareName);
    }
    if group.contains(['+', '#']) {
        return Err(ShareError::WildcardInShareName { name: group.into() });
    }
    match filter {
        None => Err(ShareError::MissingFilter { name: group.into() }),
        Some("") => Err(ShareError::EmptyFilter { name: group.into() }),
        Some(filter) => Ok(Subscription::Shared { group, filter }),
    }
}
