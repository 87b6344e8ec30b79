//! Request paths to tables and record ids (SPEC §1, §4).
//!
//! `/<table>/<id>`: the first segment is the table's export path, everything
//! after the slash that ends it is the id. An id may contain `/`, written
//! either as segments (`/Device/a/b`) or percent-encoded (`/Device/a%2Fb`);
//! both are the record `a/b`. Each part is percent-decoded once; `+` stays a
//! plus (it means a space only in forms). `/<table>/` and `/<table>` are the
//! collection.

use crate::error::HttpError;

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The table's export path, decoded.
    pub(crate) table: String,
    /// The record id, decoded; `None` for the collection.
    pub(crate) id: Option<String>,
}

/// Splits and decodes a request path (without the query).
pub(crate) fn parse(path: &str) -> Result<Target, HttpError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (table, id) = match path.split_once('/') {
        Some((table, "")) => (table, None),
        Some((table, id)) => (table, Some(id)),
        None => (path, None),
    };
    let decode = |part: &str| {
        mqdb_resource::query::decode(part)
            .map_err(|why| HttpError::BadRequest(format!("invalid path `{part}`: {why}")))
    };
    Ok(Target {
        table: decode(table)?,
        id: id.map(decode).transpose()?,
    })
}

/// The path of record `id` in the table exported as `table`, percent-encoding
/// what a path segment cannot hold (a `/` in the id stays a separator).
pub(crate) fn record_path(table: &str, id: &str) -> String {
    let mut out = String::with_capacity(table.len() + id.len() + 2);
    out.push('/');
    encode_into(&mut out, table, false);
    out.push('/');
    encode_into(&mut out, id, true);
    out
}

fn encode_into(out: &mut String, part: &str, keep_slash: bool) {
    for byte in part.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@".contains(&byte)
            || (keep_slash && byte == b'/');
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(table: &str, id: Option<&str>) -> Target {
        Target {
            table: table.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn slashes_in_ids_work_as_segments_and_encoded() {
        assert_eq!(parse("/Device/a/b").unwrap(), target("Device", Some("a/b")));
        assert_eq!(
            parse("/Device/a%2Fb").unwrap(),
            target("Device", Some("a/b"))
        );
        assert_eq!(
            parse("/Device/a%2fb").unwrap(),
            target("Device", Some("a/b"))
        );
        assert_eq!(
            parse("/Device/a+b%20c").unwrap(),
            target("Device", Some("a+b c"))
        );
    }

    #[test]
    fn collections_and_bad_encodings() {
        assert_eq!(parse("/Device/").unwrap(), target("Device", None));
        assert_eq!(parse("/Device").unwrap(), target("Device", None));
        assert_eq!(parse("/").unwrap(), target("", None));
        assert!(parse("/Device/%zz").is_err());
        assert!(parse("/Device/%ff").is_err());
        assert!(parse("/Device/%4").is_err());
    }

    #[test]
    fn record_paths_round_trip() {
        for id in ["a/b", "a b", "50%", "x?y#z", "ünï", "a+b"] {
            let path = record_path("Device", id);
            assert_eq!(parse(&path).unwrap(), target("Device", Some(id)), "{path}");
        }
    }
}
