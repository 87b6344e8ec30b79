//! Queries over a table, in the URL query syntax shared by REST
//! (`GET /Table/?...`) and MQTT query subscriptions (`Table/?...`):
//!
//! ```text
//! name=kitchen            equality
//! temp=gt=20              comparison: gt, ge, lt, le, ne (and eq)
//! limit(10)               at most 10 records
//! sort(temp) sort(-temp)  ascending / descending by an attribute
//! select(id,temp)         only these attributes in the result
//! ```
//!
//! Parts are joined with `&` and percent-decoded. A literal is read by the
//! attribute's declared type (Int/Long/Float as numbers, Boolean as a bool,
//! ID/String as text); for an undeclared attribute it matches the text, or the
//! number, `true`/`false` or `null` it spells.

use std::cmp::Ordering;

use crate::schema::{AttrType, TableDef};
use crate::value::{Map, Value};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `attr=v` or `attr=eq=v`.
    Eq,
    /// `attr=ne=v`.
    Ne,
    /// `attr=gt=v`.
    Gt,
    /// `attr=ge=v`.
    Ge,
    /// `attr=lt=v`.
    Lt,
    /// `attr=le=v`.
    Le,
}

/// One condition: attribute, operator and the literal as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Attribute name.
    pub attribute: String,
    /// Operator.
    pub op: Op,
    /// The literal, percent-decoded.
    pub literal: String,
}

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// At most this many results.
    pub limit: Option<usize>,
    /// Sort attribute and whether descending.
    pub sort: Option<(String, bool)>,
    /// Attributes to return.
    pub select: Option<Vec<String>>,
}

/// A query that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query `{part}`: {reason}")]
pub struct QueryError {
    /// The offending part.
    pub part: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Query {
    /// Parses a query string (without the leading `?`).
    pub fn parse(query: &str) -> Result<Query, QueryError> {
        let mut q = Query::default();
        for raw in query.split('&').filter(|p| !p.is_empty()) {
            let err = |reason| QueryError {
                part: raw.to_owned(),
                reason,
            };
            if let Some(arg) = call(raw, "limit") {
                q.limit = Some(arg.parse().map_err(|_| err("limit needs a number"))?);
            } else if let Some(arg) = call(raw, "sort") {
                let (attr, desc) = match arg.strip_prefix('-') {
                    Some(a) => (a, true),
                    None => (arg.strip_prefix('+').unwrap_or(arg), false),
                };
                if attr.is_empty() {
                    return Err(err("sort needs an attribute"));
                }
                q.sort = Some((decode(attr).map_err(err)?, desc));
            } else if let Some(arg) = call(raw, "select") {
                let attrs = arg
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(decode)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                if attrs.is_empty() {
                    return Err(err("select needs attributes"));
                }
                q.select = Some(attrs);
            } else {
                let (attr, rest) = raw
                    .split_once('=')
                    .ok_or_else(|| err("expected attr=value"))?;
                if attr.is_empty() {
                    return Err(err("missing attribute name"));
                }
                let (op, literal) = match rest.split_once('=') {
                    Some((op, lit)) => match op {
                        "eq" => (Op::Eq, lit),
                        "ne" => (Op::Ne, lit),
                        "gt" => (Op::Gt, lit),
                        "ge" => (Op::Ge, lit),
                        "lt" => (Op::Lt, lit),
                        "le" => (Op::Le, lit),
                        _ => (Op::Eq, rest),
                    },
                    None => (Op::Eq, rest),
                };
                q.conditions.push(Condition {
                    attribute: decode(attr).map_err(err)?,
                    op,
                    literal: decode(literal).map_err(err)?,
                });
            }
        }
        Ok(q)
    }

    /// Whether a record satisfies every condition.
    pub fn matches(&self, table: &TableDef, record: &Map) -> bool {
        self.conditions.iter().all(|c| c.holds(table, record))
    }

    /// Keeps only the selected attributes (the primary key always stays).
    pub fn project(&self, table: &TableDef, record: Map) -> Map {
        match &self.select {
            None => record,
            Some(attrs) => record
                .into_iter()
                .filter(|(k, _)| *k == table.primary_key || attrs.contains(k))
                .collect(),
        }
    }

    /// Orders two records by the sort attribute (missing values last).
    pub fn order(&self, a: &Map, b: &Map) -> Ordering {
        let Some((attr, desc)) = &self.sort else {
            return Ordering::Equal;
        };
        let ord = match (a.get(attr), b.get(attr)) {
            (Some(x), Some(y)) => x
                .compare(y)
                .unwrap_or_else(|| x.type_name().cmp(y.type_name())),
            (Some(_), None) => return Ordering::Less,
            (None, Some(_)) => return Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if *desc { ord.reverse() } else { ord }
    }
}

impl Condition {
    /// The literal's candidate values for this attribute (see module doc).
    pub fn literals(&self, table: &TableDef) -> Vec<Value> {
        literals(
            &self.literal,
            table.attribute(&self.attribute).map(|a| a.ty),
        )
    }

    fn holds(&self, table: &TableDef, record: &Map) -> bool {
        let value = record.get(&self.attribute).unwrap_or(&Value::Null);
        let candidates = self.literals(table);
        let cmp = |want: fn(Ordering) -> bool| {
            candidates
                .iter()
                .any(|c| value.compare(c).is_some_and(want))
        };
        match self.op {
            Op::Eq => cmp(Ordering::is_eq) || candidates.iter().any(|c| c == value),
            Op::Ne => !(cmp(Ordering::is_eq) || candidates.iter().any(|c| c == value)),
            Op::Gt => cmp(Ordering::is_gt),
            Op::Ge => cmp(Ordering::is_ge),
            Op::Lt => cmp(Ordering::is_lt),
            Op::Le => cmp(Ordering::is_le),
        }
    }
}

fn literals(raw: &str, ty: Option<AttrType>) -> Vec<Value> {
    let number = || -> Option<Value> {
        if let Ok(i) = raw.parse::<i64>() {
            return Some(Value::Int(i));
        }
        if let Ok(u) = raw.parse::<u64>() {
            return Some(Value::UInt(u));
        }
        raw.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
    };
    match ty {
        Some(AttrType::Int | AttrType::Long | AttrType::Float) => number().into_iter().collect(),
        Some(AttrType::Boolean) => match raw {
            "true" => vec![Value::Bool(true)],
            "false" => vec![Value::Bool(false)],
            _ => vec![],
        },
        Some(AttrType::String | AttrType::Id | AttrType::Date) => vec![Value::String(raw.into())],
        _ => {
            let mut out = vec![Value::String(raw.into())];
            out.extend(number());
            match raw {
                "true" => out.push(Value::Bool(true)),
                "false" => out.push(Value::Bool(false)),
                "null" => out.push(Value::Null),
                _ => {}
            }
            out
        }
    }
}

/// `name(arg)` -> `arg`.
fn call<'a>(part: &'a str, name: &str) -> Option<&'a str> {
    part.strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

/// Percent-decoding (`%2F` -> `/`); `+` stays a plus.
pub fn decode(s: &str) -> Result<String, &'static str> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated percent escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "bad percent escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escape is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn parses_every_part() {
        let q = Query::parse("name=a%2Fb&temp=gt=5&limit(10)&sort(-temp)&select(id,temp)").unwrap();
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[0].literal, "a/b");
        assert_eq!(q.conditions[1].op, Op::Gt);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.sort, Some(("temp".into(), true)));
        assert_eq!(q.select, Some(vec!["id".into(), "temp".into()]));
        assert!(Query::parse("limit(x)").is_err());
        assert!(Query::parse("novalue").is_err());
        assert!(Query::parse("a=%zz").is_err());
    }

    #[test]
    fn untyped_literals_match_text_or_number() {
        let t = TableDef::schemaless("T");
        let r = map(&[
            ("n", Value::Int(5)),
            ("s", Value::String("5".into())),
            ("f", Value::Float(5.5)),
        ]);
        let q = |s| Query::parse(s).unwrap().matches(&t, &r);
        assert!(q("n=5") && q("s=5") && q("n=ge=5") && q("f=gt=5") && q("f=lt=6"));
        assert!(!q("n=gt=5") && !q("n=ne=5") && q("n=ne=6") && !q("missing=1"));
        assert!(q("missing=null") && q("n=5.0"));
    }
}
