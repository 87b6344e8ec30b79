//! Table declarations: which tables exist, which are exported (reachable over
//! MQTT and REST, and under which path), their primary keys, typed attributes
//! and indexes — read from GraphQL SDL files like Harper's `schema.graphql` —
//! and the check of a record against its table ([`TableDef::validate`]).
//!
//! Depends on `async-graphql-parser` (syntax only) and [`crate::value`]; knows
//! nothing of storage, MQTT or HTTP.
//!
//! # The SDL subset
//!
//! ```graphql
//! type Sensor @table @export                     # schemaless: any map
//! type Device @table @export(name: "devices") {  # reachable as devices/<id>
//!   id: ID @primaryKey
//!   name: String! @indexed
//!   temp: Float
//!   tags: [String!]
//! }
//! type AuditLog @table { at: Date! }             # storage only, not exported
//! ```
//!
//! - `type X @table` declares table `X`. `@export` makes it reachable under
//!   its type name, `@export(name: "path")` under `path` (one topic level: no
//!   `/`, `+`, `#`, `?`, `%`, whitespace, no leading `$`; unique across
//!   tables). `@export` without `@table` is an error.
//! - Attribute types are the scalars `ID String Int Long Float Boolean Bytes
//!   Any Date`, `T!` (required: present and not null), `[T]` and `[T!]`
//!   (elements not null). Nested lists, enums, custom scalars and references to
//!   other types are errors (relationships are not supported yet).
//! - `@primaryKey` on at most one attribute, of type ID, String, Int or Long
//!   and not a list. Without it the primary key is `id`: implicitly of type
//!   ID, or the declared `id` attribute (same type rules) if there is one.
//! - `@indexed` on any attribute (a list's elements are indexed one by one).
//!   The primary key is always indexed by storage and is listed by
//!   [`TableDef::indexed_attributes`] only if it carries `@indexed` too.
//! - A table without attributes is schemaless: any map is accepted.
//! - Types without `@table` (and enums, interfaces, `schema { … }`, `directive
//!   @x on …` definitions) are ignored, except that attributes may not refer
//!   to them. Unknown directives on object types, tables and attributes are
//!   errors naming the directive, so `@tabel` or `@primarykey` is caught;
//!   the one directive ignored is `@deprecated` (documentation only). Harper
//!   directives with behaviour mqdb does not implement (`@createdTime`,
//!   `@updatedTime`, `@relationship`, `@computed`, `@sealed`, `@table(expiration:
//!   …)`) are errors rather than silently dropped.
//! - Several files are merged; a table defined twice (in one file or two) is
//!   an error naming both places. Every error names file, line and column.
//!
//! # Validation (see [`TableDef::validate`])
//!
//! A record must be a map. Declared attributes that are present must have
//! their type; attributes not declared are allowed (as in Harper: the schema
//! describes what it knows, records may carry more). No value is coerced:
//! `Bytes` needs a byte string (CBOR / MessagePack), not base64 text, and
//! `Int` does not accept `5.0`.
//!
//! # Schema evolution
//!
//! Records are stored as self-describing maps, not in a layout derived from
//! the schema, so there is nothing to migrate: adding a table, an attribute or
//! `@indexed` keeps every stored record readable. Making an attribute required
//! or changing its type only affects records written afterwards; existing
//! records are not re-validated. Removing a table from the schema hides it but
//! does not delete its data.

mod build;
mod date;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

pub use validate::ValidationError;

/// All declared tables, in declaration order (files in the order given).
#[derive(Debug, Clone, Default)]
pub struct Schema {
    tables: IndexMap<String, TableDef>,
    /// Export path -> table name. Invariant: every value is a key of `tables`
    /// whose `export` is that path, and every exported table is here.
    exports: HashMap<String, String>,
}

impl Schema {
    /// A schema without tables.
    pub fn empty() -> Schema {
        Schema::default()
    }

    /// Reads and merges the SDL files at `paths`. A table defined in two
    /// places is an error naming both; attributes may not refer to types of
    /// another file either (relationships are not supported).
    pub fn load(paths: &[PathBuf]) -> Result<Schema, SchemaError> {
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
                file: path.clone(),
                source,
            })?;
            sources.push((path.clone(), text));
        }
        let sources: Vec<(&Path, &str)> = sources
            .iter()
            .map(|(path, text)| (path.as_path(), text.as_str()))
            .collect();
        build::build(&sources)
    }

    /// Parses one SDL document; `file` is only used in error messages.
    pub fn parse(source: &str, file: &Path) -> Result<Schema, SchemaError> {
        build::build(&[(file, source)])
    }

    /// The table declared as `type <name> @table`.
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name)
    }

    /// The table reachable from outside under `path` (the first topic level /
    /// URL segment); `None` for unknown paths and storage-only tables.
    pub fn exported(&self, path: &str) -> Option<&TableDef> {
        self.exports
            .get(path)
            .and_then(|name| self.tables.get(name))
    }

    /// All tables, in declaration order.
    pub fn tables(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.values()
    }

    /// The number of tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether no table is declared.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl<'a> IntoIterator for &'a Schema {
    type Item = &'a TableDef;
    type IntoIter = indexmap::map::Values<'a, String, TableDef>;

    fn into_iter(self) -> Self::IntoIter {
        self.tables.values()
    }
}

/// One table: `type <name> @table …`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TableDef {
    /// The type name; also the storage name.
    pub name: String,
    /// The path it is reachable under, if exported.
    pub export: Option<String>,
    /// The primary-key attribute: the `@primaryKey` one, else `id`.
    pub primary_key: String,
    /// Declared attributes, in declaration order. An implicit `id` primary
    /// key is not listed.
    pub attributes: IndexMap<String, Attribute>,
    /// No attributes declared: any map is a valid record.
    pub schemaless: bool,
}

impl TableDef {
    /// A schemaless, unexported table with primary key `id` (for tables the
    /// server defines itself rather than reading from SDL).
    pub fn schemaless(name: impl Into<String>) -> TableDef {
        TableDef {
            name: name.into(),
            export: None,
            primary_key: "id".to_owned(),
            attributes: IndexMap::new(),
            schemaless: true,
        }
    }

    /// The declared attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.get(name)
    }

    /// The type of the primary key: the declared attribute's, or ID when it
    /// is implicit.
    pub fn primary_key_type(&self) -> AttrType {
        self.attributes
            .get(&self.primary_key)
            .map_or(AttrType::Id, |attribute| attribute.ty)
    }

    /// Attributes marked `@indexed`, in declaration order.
    pub fn indexed_attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes
            .values()
            .filter(|attribute| attribute.indexed)
    }
}

/// One declared attribute: `name: [Type!]! @indexed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attribute {
    /// The attribute (map key) name.
    pub name: String,
    /// The scalar type (of the elements, for a list).
    pub ty: AttrType,
    /// `[T]`: the value is an array of `ty`.
    pub list: bool,
    /// `T!` / `[T]!`: the attribute must be present and not null.
    pub required: bool,
    /// `[T!]`: list elements must not be null. Always false when not a list.
    pub items_required: bool,
    /// `@indexed`.
    pub indexed: bool,
}

impl Attribute {
    /// The declared GraphQL type, e.g. `[String!]!`.
    pub fn graphql_type(&self) -> String {
        let mut out = if self.list {
            let bang = if self.items_required { "!" } else { "" };
            format!("[{}{bang}]", self.ty)
        } else {
            self.ty.to_string()
        };
        if self.required {
            out.push('!');
        }
        out
    }
}

/// The supported scalar types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    /// A string or an integer.
    Id,
    /// A string.
    String,
    /// An integer in i32 range.
    Int,
    /// An integer in i64 range.
    Long,
    /// Any number (integer or float).
    Float,
    /// A boolean.
    Boolean,
    /// A byte string.
    Bytes,
    /// Any value.
    Any,
    /// An RFC 3339 / ISO 8601 date or date-time string, or an integer
    /// (milliseconds since the Unix epoch).
    Date,
}

impl AttrType {
    /// Every scalar, in the order of the docs.
    pub const ALL: [AttrType; 9] = [
        AttrType::Id,
        AttrType::String,
        AttrType::Int,
        AttrType::Long,
        AttrType::Float,
        AttrType::Boolean,
        AttrType::Bytes,
        AttrType::Any,
        AttrType::Date,
    ];

    /// The scalar named `name` in SDL (case-sensitive, as GraphQL is).
    pub fn from_name(name: &str) -> Option<AttrType> {
        AttrType::ALL.into_iter().find(|ty| ty.name() == name)
    }

    /// The SDL name.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::Id => "ID",
            AttrType::String => "String",
            AttrType::Int => "Int",
            AttrType::Long => "Long",
            AttrType::Float => "Float",
            AttrType::Boolean => "Boolean",
            AttrType::Bytes => "Bytes",
            AttrType::Any => "Any",
            AttrType::Date => "Date",
        }
    }

    /// Whether an attribute of this type may be the primary key.
    pub fn can_be_primary_key(self) -> bool {
        matches!(
            self,
            AttrType::Id | AttrType::String | AttrType::Int | AttrType::Long
        )
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A place in an SDL file; displayed as `file:line:column` (both one-based).
/// Small on purpose (the file name is shared, a second location is boxed), so
/// errors stay cheap to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as given to [`Schema::load`] / [`Schema::parse`].
    pub file: Arc<Path>,
    /// One-based line.
    pub line: u32,
    /// One-based column (in characters).
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a schema could not be loaded. Every variant but [`SchemaError::Read`]
/// starts its message with `file:line:column`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The file could not be read (or is not UTF-8).
    #[error("{}: cannot read schema file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid GraphQL SDL.
    #[error("{at}: syntax error: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// What it expected.
        message: String,
    },
    /// An attribute type that is neither a supported scalar nor declared.
    #[error("{at}: unknown type '{ty}' for attribute '{attribute}' of table '{table}'")]
    UnknownType {
        /// The attribute's type.
        at: Location,
        /// The type name.
        ty: String,
        /// The attribute.
        attribute: String,
        /// The table.
        table: String,
    },
    /// An attribute whose type is an object, interface or union type.
    #[error(
        "{at}: attribute '{attribute}' of table '{table}' has type '{ty}', another \
         object type: relationships are not supported yet"
    )]
    Relationship {
        /// The attribute's type.
        at: Location,
        /// The type name.
        ty: String,
        /// The attribute.
        attribute: String,
        /// The table.
        table: String,
    },
    /// An attribute whose type is an enum, input type, custom scalar or a
    /// nested list.
    #[error(
        "{at}: type '{ty}' of attribute '{attribute}' of table '{table}' is {kind}; only \
         ID, String, Int, Long, Float, Boolean, Bytes, Any, Date and lists of them are supported"
    )]
    UnsupportedType {
        /// The attribute's type.
        at: Location,
        /// The type as written.
        ty: String,
        /// What it is ("an enum", "a nested list", …).
        kind: &'static str,
        /// The attribute.
        attribute: String,
        /// The table.
        table: String,
    },
    /// A directive mqdb does not know (or does not implement).
    #[error("{at}: unknown directive '@{directive}' on {target}")]
    UnknownDirective {
        /// The directive.
        at: Location,
        /// Its name, without `@`.
        directive: String,
        /// "table 'Device'", "attribute 'name' of table 'Device'", "type 'X'".
        target: String,
    },
    /// The same directive twice on one table or attribute.
    #[error("{at}: directive '@{directive}' is given twice on {target}")]
    DuplicateDirective {
        /// The second occurrence.
        at: Location,
        /// Its name, without `@`.
        directive: String,
        /// As in [`SchemaError::UnknownDirective`].
        target: String,
    },
    /// A directive argument that is not supported.
    #[error("{at}: directive '@{directive}' on {target} does not take the argument '{argument}'")]
    UnknownArgument {
        /// The argument.
        at: Location,
        /// The directive, without `@`.
        directive: String,
        /// The argument name.
        argument: String,
        /// As in [`SchemaError::UnknownDirective`].
        target: String,
    },
    /// A directive argument of the wrong type.
    #[error("{at}: argument '{argument}' of '@{directive}' must be {expected}")]
    InvalidArgument {
        /// The argument's value.
        at: Location,
        /// The directive, without `@`.
        directive: String,
        /// The argument name.
        argument: String,
        /// What it must be.
        expected: &'static str,
    },
    /// `@primaryKey` on two attributes.
    #[error("{at}: table '{table}' has two primary keys: '{first}' (at {first_at}) and '{second}'")]
    DuplicatePrimaryKey {
        /// The second `@primaryKey`.
        at: Location,
        /// The table.
        table: String,
        /// The first primary-key attribute.
        first: String,
        /// The first `@primaryKey`.
        first_at: Box<Location>,
        /// The second primary-key attribute.
        second: String,
    },
    /// A primary key that is a list or not ID, String, Int or Long.
    #[error(
        "{at}: primary key '{attribute}' of table '{table}' must be ID, String, Int or \
         Long, not {ty}"
    )]
    InvalidPrimaryKey {
        /// The attribute's type.
        at: Location,
        /// The attribute.
        attribute: String,
        /// The table.
        table: String,
        /// Its declared type.
        ty: String,
    },
    /// A table declared twice.
    #[error("{at}: table '{table}' is already defined at {first}")]
    DuplicateTable {
        /// The second definition.
        at: Location,
        /// The table.
        table: String,
        /// The first definition.
        first: Box<Location>,
    },
    /// An attribute declared twice in one table.
    #[error("{at}: attribute '{attribute}' of table '{table}' is already declared at {first}")]
    DuplicateAttribute {
        /// The second declaration.
        at: Location,
        /// The attribute.
        attribute: String,
        /// The table.
        table: String,
        /// The first declaration.
        first: Box<Location>,
    },
    /// Two tables exported under one path.
    #[error(
        "{at}: table '{table}' is exported as '{path}', which table '{other}' already \
         uses (at {first})"
    )]
    DuplicateExport {
        /// The second export.
        at: Location,
        /// The path.
        path: String,
        /// The second table.
        table: String,
        /// The first table.
        other: String,
        /// The first export.
        first: Box<Location>,
    },
    /// An export path that cannot be a topic level / URL segment.
    #[error("{at}: export name '{path}' of table '{table}' {reason}")]
    InvalidExportName {
        /// The name.
        at: Location,
        /// The name.
        path: String,
        /// The table.
        table: String,
        /// Why not ("must not contain '/'", …).
        reason: &'static str,
    },
    /// `@export` on a type without `@table`.
    #[error("{at}: type '{ty}' has @export but no @table")]
    ExportWithoutTable {
        /// The `@export`.
        at: Location,
        /// The type.
        ty: String,
    },
    /// Valid SDL that mqdb does not implement (`extend type`, `@table` on an
    /// enum, attribute arguments, …).
    #[error("{at}: {what} is not supported")]
    Unsupported {
        /// Where.
        at: Location,
        /// What.
        what: String,
    },
}

impl SchemaError {
    /// Where the error is; `None` only for [`SchemaError::Read`].
    pub fn location(&self) -> Option<&Location> {
        match self {
            SchemaError::Read { .. } => None,
            SchemaError::Syntax { at, .. }
            | SchemaError::UnknownType { at, .. }
            | SchemaError::Relationship { at, .. }
            | SchemaError::UnsupportedType { at, .. }
            | SchemaError::UnknownDirective { at, .. }
            | SchemaError::DuplicateDirective { at, .. }
            | SchemaError::UnknownArgument { at, .. }
            | SchemaError::InvalidArgument { at, .. }
            | SchemaError::DuplicatePrimaryKey { at, .. }
            | SchemaError::InvalidPrimaryKey { at, .. }
            | SchemaError::DuplicateTable { at, .. }
            | SchemaError::DuplicateAttribute { at, .. }
            | SchemaError::DuplicateExport { at, .. }
            | SchemaError::InvalidExportName { at, .. }
            | SchemaError::ExportWithoutTable { at, .. }
            | SchemaError::Unsupported { at, .. } => Some(at),
        }
    }
}
