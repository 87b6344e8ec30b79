//! Topics as records: which table and id a topic names, and which stored
//! records a subscription's filter covers (its retained messages).
//!
//! `Table/<id>` is the record `<id>` of the table exported as `Table`; an id
//! may contain `/`. Every other topic is a free topic, whose retained
//! messages live in the built-in table [`RETAINED_TABLE`] keyed by topic.
//! `Table/?attr=value` is a query subscription.

use mqdb_resource::query::Query;
use mqdb_resource::{Schema, TableDef};

/// The built-in, unexported table of free topics' retained messages.
pub const RETAINED_TABLE: &str = "$mqtt_retained";

/// What a topic names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'a> {
    /// A record of an exported table.
    Record {
        /// The table.
        table: &'a TableDef,
        /// The record id.
        id: &'a str,
    },
    /// A topic outside every exported table.
    Free,
}

/// Resolves a topic name.
pub fn resolve<'a>(schema: &'a Schema, topic: &'a str) -> Target<'a> {
    match topic.split_once('/') {
        Some((path, id)) if !id.is_empty() => match schema.exported(path) {
            Some(table) => Target::Record { table, id },
            None => Target::Free,
        },
        _ => Target::Free,
    }
}

/// Where the retained messages of a filter come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source<'a> {
    /// Records of `table` whose id starts with `prefix`; each must still
    /// match the filter.
    Table {
        /// The table.
        table: &'a TableDef,
        /// Literal id prefix of the filter.
        prefix: String,
    },
    /// Records of `table` that satisfy a query.
    Query {
        /// The table.
        table: &'a TableDef,
        /// The query.
        query: Query,
    },
    /// Retained messages of free topics starting with `prefix`.
    Free {
        /// Literal topic prefix of the filter.
        prefix: String,
    },
}

/// A query subscription's table and query, if `filter` is `Table/?...`.
pub fn query_filter<'a>(schema: &'a Schema, filter: &str) -> Option<(&'a TableDef, Query)> {
    let (path, rest) = filter.split_once('/')?;
    let query = rest.strip_prefix('?')?;
    let table = schema.exported(path)?;
    Some((table, Query::parse(query).ok()?))
}

/// The sources of a filter's retained messages.
pub fn sources<'a>(schema: &'a Schema, filter: &str) -> Vec<Source<'a>> {
    if let Some((table, query)) = query_filter(schema, filter) {
        return vec![Source::Query { table, query }];
    }
    let prefix = literal_prefix(filter);
    let (first, rest) = match filter.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (filter, None),
    };
    if first == "+" || first == "#" {
        let mut all: Vec<Source<'a>> = schema
            .tables()
            .filter(|t| t.export.is_some())
            .map(|table| Source::Table {
                table,
                prefix: String::new(),
            })
            .collect();
        all.push(Source::Free {
            prefix: String::new(),
        });
        return all;
    }
    let mut out = Vec::new();
    if let (Some(table), Some(rest)) = (schema.exported(first), rest) {
        out.push(Source::Table {
            table,
            prefix: literal_prefix(rest),
        });
    }
    // `Table/#` also matches the bare topic `Table`, a free topic.
    out.push(Source::Free { prefix });
    out
}

/// The levels of `filter` before its first wildcard, with their trailing
/// separator (`a/b/+/c` -> `a/b/`); the whole filter if it has none.
fn literal_prefix(filter: &str) -> String {
    let mut prefix = String::new();
    for level in filter.split('/') {
        if level == "+" || level == "#" {
            return prefix;
        }
        prefix.push_str(level);
        prefix.push('/');
    }
    prefix.pop();
    prefix
}

/// Whether `topic` matches `filter` (section 4.7, with the `$` rule of
/// MQTT-4.7.2-1). Used for single checks; routing uses the trie.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(
            "type Sensor @table @export\ntype D @table @export(name: \"dev\")\ntype Hidden @table",
            std::path::Path::new("s.graphql"),
        )
        .unwrap()
    }

    #[test]
    fn topics_resolve_to_records_or_free_topics() {
        let s = schema();
        assert!(matches!(
            resolve(&s, "Sensor/a/b"),
            Target::Record { id: "a/b", .. }
        ));
        assert!(matches!(
            resolve(&s, "dev/x"),
            Target::Record { id: "x", .. }
        ));
        assert_eq!(resolve(&s, "D/x"), Target::Free);
        assert_eq!(resolve(&s, "Hidden/x"), Target::Free);
        assert_eq!(resolve(&s, "Sensor"), Target::Free);
        assert_eq!(resolve(&s, "Sensor/"), Target::Free);
    }

    #[test]
    fn filters_name_their_retained_sources() {
        let s = schema();
        let t = s.exported("Sensor").unwrap();
        assert_eq!(
            sources(&s, "Sensor/a/+/c"),
            vec![
                Source::Table {
                    table: t,
                    prefix: "a/".into()
                },
                Source::Free {
                    prefix: "Sensor/a/".into()
                }
            ]
        );
        assert_eq!(
            sources(&s, "Sensor/x")[0],
            Source::Table {
                table: t,
                prefix: "x".into()
            }
        );
        assert_eq!(sources(&s, "#").len(), 3);
        assert_eq!(
            sources(&s, "chat/#"),
            vec![Source::Free {
                prefix: "chat/".into()
            }]
        );
        assert!(matches!(
            &sources(&s, "Sensor/?temp=gt=5")[0],
            Source::Query { .. }
        ));
    }

    #[test]
    fn matching_follows_the_spec() {
        assert!(matches("a/+/c", "a/b/c") && matches("a/#", "a") && matches("#", "x/y"));
        assert!(
            !matches("a/+", "a/b/c") && !matches("+/x", "$SYS/x") && matches("$SYS/#", "$SYS/x")
        );
        assert!(matches("+", "") && matches("/+", "/x") && !matches("a", "a/b"));
    }
}
