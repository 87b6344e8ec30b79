//! Checking a record against its [`TableDef`]: the map shape, each declared
//! attribute's type, required attributes and list elements. Nothing is
//! coerced; a check either passes or names the first offending attribute.

use std::fmt;

use super::{AttrType, Attribute, TableDef};
use crate::value::Value;

/// A record that does not fit its table. Displayed as
/// `attribute 'temp' of Device must be Float, found string`, or
/// `record of Device must be a map, found array` when the record itself is
/// the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ValidationError {
    /// The table.
    pub table: String,
    /// The offending attribute, `tags[2]` for a list element; `None` when
    /// the record is not a map.
    pub attribute: Option<String>,
    /// What was expected: `Float`, `String!`, `[Int]`, `a map`.
    pub expected: String,
    /// What was found: `string`, `null`, `no value`, `integer 3000000000
    /// (outside the Int range)`.
    pub found: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            Some(attribute) => write!(f, "attribute '{attribute}' of {}", self.table)?,
            None => write!(f, "record of {}", self.table)?,
        }
        write!(f, " must be {}, found {}", self.expected, self.found)
    }
}

impl TableDef {
    /// Checks `record` against this table.
    ///
    /// The record must be a map. For a typed table, every declared attribute
    /// that is present and not null must have its declared type; a required
    /// (`!`) attribute must be present and not null; attributes the table
    /// does not declare are allowed. A schemaless table accepts any map.
    /// The primary key is checked like any other attribute (an implicit `id`
    /// is not declared, so not checked): callers set it from the topic or URL.
    pub fn validate(&self, record: &Value) -> Result<(), ValidationError> {
        let Value::Map(map) = record else {
            return Err(ValidationError {
                table: self.name.clone(),
                attribute: None,
                expected: "a map".to_owned(),
                found: describe(record).to_owned(),
            });
        };
        if self.schemaless {
            return Ok(());
        }
        for attribute in self.attributes.values() {
            let error = |path: String, expected: String, found: String| ValidationError {
                table: self.name.clone(),
                attribute: Some(path),
                expected,
                found,
            };
            match map.get(&attribute.name) {
                None if attribute.required => {
                    return Err(error(
                        attribute.name.clone(),
                        attribute.graphql_type(),
                        "no value".to_owned(),
                    ));
                }
                Some(Value::Null) if attribute.required => {
                    return Err(error(
                        attribute.name.clone(),
                        attribute.graphql_type(),
                        "null".to_owned(),
                    ));
                }
                None | Some(Value::Null) => {}
                Some(value) if attribute.list => check_list(attribute, value)
                    .map_err(|(path, expected, found)| error(path, expected, found))?,
                Some(value) => check_scalar(attribute.ty, value).map_err(|found| {
                    error(attribute.name.clone(), attribute.ty.to_string(), found)
                })?,
            }
        }
        Ok(())
    }
}

/// `Err((attribute path, expected, found))`.
fn check_list(attribute: &Attribute, value: &Value) -> Result<(), (String, String, String)> {
    let Value::Array(items) = value else {
        let bang = if attribute.items_required { "!" } else { "" };
        return Err((
            attribute.name.clone(),
            format!("[{}{bang}]", attribute.ty),
            describe(value).to_owned(),
        ));
    };
    for (index, item) in items.iter().enumerate() {
        let path = || format!("{}[{index}]", attribute.name);
        match item {
            Value::Null if attribute.items_required => {
                return Err((path(), format!("{}!", attribute.ty), "null".to_owned()));
            }
            Value::Null => {}
            item => check_scalar(attribute.ty, item)
                .map_err(|found| (path(), attribute.ty.to_string(), found))?,
        }
    }
    Ok(())
}

/// Whether a non-null `value` is of type `ty`; `Err(what was found)`.
fn check_scalar(ty: AttrType, value: &Value) -> Result<(), String> {
    let fits = match (ty, value) {
        (AttrType::Any, _) => true,
        (AttrType::Id, Value::String(_) | Value::Int(_) | Value::UInt(_)) => true,
        (AttrType::String, Value::String(_)) => true,
        (AttrType::Int, Value::Int(n)) if i32::try_from(*n).is_err() => {
            return Err(out_of_range(n, ty));
        }
        (AttrType::Int, Value::Int(_)) => true,
        (AttrType::Int, Value::UInt(n)) => return Err(out_of_range(n, ty)),
        (AttrType::Long | AttrType::Date, Value::UInt(n)) if i64::try_from(*n).is_err() => {
            return Err(out_of_range(n, ty));
        }
        (AttrType::Long | AttrType::Date, Value::Int(_) | Value::UInt(_)) => true,
        (AttrType::Float, Value::Int(_) | Value::UInt(_) | Value::Float(_)) => true,
        (AttrType::Boolean, Value::Bool(_)) => true,
        (AttrType::Bytes, Value::Bytes(_)) => true,
        (AttrType::Date, Value::String(text)) if !super::date::is_date_time(text) => {
            return Err(format!("string {} (not a date-time)", excerpt(text)));
        }
        (AttrType::Date, Value::String(_)) => true,
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(describe(value).to_owned())
    }
}

fn out_of_range(n: &dyn fmt::Display, ty: AttrType) -> String {
    format!("integer {n} (outside the {ty} range)")
}

/// The string quoted, cut to 40 characters: it is echoed to the client.
fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// The kind of a value, as named in error messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) | Value::UInt(_) => "integer",
        Value::Float(_) => "float",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
    }
}
