//! Topic names and topic filters (section 4.7), validated on construction so
//! that a `TopicName` never holds a wildcard and a `TopicFilter` never holds a
//! misplaced one. Both share the packet's buffer (`ByteString`).

use std::fmt;
use std::ops::Deref;

use bytestring::ByteString;

use crate::error::DecodeError;

/// The longest string MQTT can carry (section 1.5.4).
const MAX_STRING: usize = u16::MAX as usize;

/// The prefix of a shared subscription filter (section 4.8.2).
pub const SHARE_PREFIX: &str = "$share/";

/// A topic name as published: UTF-8, no `+` or `#` (MQTT-3.3.2-2).
///
/// May be empty: an MQTT 5.0 PUBLISH that uses a topic alias carries an empty
/// name. Whether empty is acceptable is decided where the packet is decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `name` as a topic name.
    pub fn new(name: impl Into<ByteString>) -> Result<Self, DecodeError> {
        let name = name.into();
        if name.len() > MAX_STRING {
            return Err(DecodeError::Truncated(
                "topic name (longer than 65535 bytes)",
            ));
        }
        if name.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(DecodeError::TopicNameWildcard);
        }
        if name.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        Ok(TopicName(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying shared string.
    pub fn into_inner(self) -> ByteString {
        self.0
    }
}

/// Why a topic filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// A filter must be at least one character long (MQTT-4.7.3-1).
    #[error("topic filter is empty")]
    Empty,
    /// `#` must be the last character and a whole level (MQTT-4.7.1-1).
    #[error("'#' is only allowed as the whole last level")]
    MisplacedMultiLevelWildcard,
    /// `+` must occupy a whole level (MQTT-4.7.1-2).
    #[error("'+' must occupy a whole level")]
    MisplacedSingleLevelWildcard,
    /// `$share/` must be followed by a share name (MQTT-4.8.2-1).
    #[error("shared subscription has an empty share name")]
    EmptyShareName,
    /// A share name must not contain `+` or `#` (MQTT-4.8.2-2).
    #[error("share name contains a wildcard")]
    WildcardInShareName,
    /// The share name must be followed by `/` and a filter (MQTT-4.8.2-2).
    #[error("shared subscription has no topic filter after the share name")]
    MissingSharedFilter,
    /// Longer than a UTF-8 string may be (section 1.5.4).
    #[error("topic filter longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000 (MQTT-1.5.4-2).
    #[error("topic filter contains U+0000")]
    NullCharacter,
}

/// A topic filter as subscribed: non-empty, wildcards only where section 4.7.1
/// allows them, and a well-formed share name if it starts with `$share/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// Validates `filter` as a topic filter.
    pub fn new(filter: impl Into<ByteString>) -> Result<Self, FilterError> {
        let filter = filter.into();
        validate_filter(&filter)?;
        Ok(TopicFilter(filter))
    }

    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a `$share/{ShareName}/{filter}` subscription.
    pub fn is_shared(&self) -> bool {
        self.0.starts_with(SHARE_PREFIX)
    }

    /// True if any level is `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// The underlying shared string.
    pub fn into_inner(self) -> ByteString {
        self.0
    }
}

fn validate_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    if filter.len() > MAX_STRING {
        return Err(FilterError::TooLong);
    }
    if filter.contains('\0') {
        return Err(FilterError::NullCharacter);
    }
    let plain = match filter.strip_prefix(SHARE_PREFIX) {
        Some(rest) => {
            let (group, inner) = rest.split_once('/').ok_or(if rest.is_empty() {
                FilterError::EmptyShareName
            } else {
                FilterError::MissingSharedFilter
            })?;
            if group.is_empty() {
                return Err(FilterError::EmptyShareName);
            }
            if group.contains(['+', '#']) {
                return Err(FilterError::WildcardInShareName);
            }
            if inner.is_empty() {
                return Err(FilterError::MissingSharedFilter);
            }
            inner
        }
        None => filter,
    };
    let mut levels = plain.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(FilterError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}
string_newtype_impls!(TopicName);
string_newtype_impls!(TopicFilter);

impl TryFrom<&str> for TopicName {
    type Error = DecodeError;
    fn try_from(s: &str) -> Result<Self, DecodeError> {
        TopicName::new(s)
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = FilterError;
    fn try_from(s: &str) -> Result<Self, FilterError> {
        TopicFilter::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_filters() {
        for f in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "//",
            "a//#",
            "$SYS/#",
            "sport/tennis/+",
            "$share/g/a/#",
            "$share/g/#",
            "$sharex/+",
            "$share",
        ] {
            assert!(TopicFilter::new(f).is_ok(), "{f}");
        }
    }

    #[test]
    fn invalid_filters_name_their_rule() {
        use FilterError as E;
        let cases = [
            ("", E::Empty),                              // MQTT-4.7.3-1
            ("a/#/b", E::MisplacedMultiLevelWildcard),   // MQTT-4.7.1-1
            ("a#", E::MisplacedMultiLevelWildcard),      // MQTT-4.7.1-1
            ("a/b#", E::MisplacedMultiLevelWildcard),    // MQTT-4.7.1-1
            ("a+", E::MisplacedSingleLevelWildcard),     // MQTT-4.7.1-2
            ("a/+b/c", E::MisplacedSingleLevelWildcard), // MQTT-4.7.1-2
            ("$share/", E::EmptyShareName),              // MQTT-4.8.2-1
            ("$share//a", E::EmptyShareName),            // MQTT-4.8.2-1
            ("$share/g+/a", E::WildcardInShareName),     // MQTT-4.8.2-2
            ("$share/#/a", E::WildcardInShareName),      // MQTT-4.8.2-2
            ("$share/g", E::MissingSharedFilter),        // MQTT-4.8.2-2
            ("$share/g/", E::MissingSharedFilter),       // MQTT-4.8.2-2
            ("$share/g/a#", E::MisplacedMultiLevelWildcard),
        ];
        for (filter, err) in cases {
            assert_eq!(TopicFilter::new(filter), Err(err), "{filter:?}");
        }
    }

    #[test]
    fn topic_names_reject_wildcards() {
        assert_eq!(TopicName::new("a/+"), Err(DecodeError::TopicNameWildcard));
        assert_eq!(TopicName::new("a/#"), Err(DecodeError::TopicNameWildcard));
        assert!(TopicName::new("a/b/$c d").is_ok());
    }
}
