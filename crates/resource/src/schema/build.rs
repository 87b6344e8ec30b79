//! From SDL text to a [`Schema`]: parsing, directives, attribute types and the
//! cross-table checks (duplicate tables and export paths), each error carrying
//! the file, line and column it is about.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use async_graphql_parser::types::{
    BaseType, ConstDirective, FieldDefinition, ObjectType, ServiceDocument, Type, TypeDefinition,
    TypeKind, TypeSystemDefinition,
};
use async_graphql_parser::{Pos, Positioned};
use indexmap::IndexMap;

use super::{AttrType, Attribute, Location, Schema, SchemaError, TableDef};

/// Directives accepted and ignored on any type or attribute: documentation only.
const IGNORED_DIRECTIVES: &[&str] = &["deprecated"];

/// Parses every source, then builds one schema from all of them, so an
/// attribute referring to a type of another file gets the "relationship"
/// error rather than "unknown type".
pub(super) fn build(sources: &[(&Path, &str)]) -> Result<Schema, SchemaError> {
    let mut documents = Vec::with_capacity(sources.len());
    for &(file, text) in sources {
        let file: Arc<Path> = Arc::from(file);
        let document = parse_document(text, &file)?;
        documents.push((file, document));
    }
    let mut builder = Builder::default();
    for (_, document) in &documents {
        for definition in &document.definitions {
            if let TypeSystemDefinition::Type(ty) = definition {
                builder
                    .kinds
                    .entry(ty.node.name.node.to_string())
                    .or_insert_with(|| TypeKindInfo::of(&ty.node.kind));
            }
        }
    }
    for (file, document) in &documents {
        for definition in &document.definitions {
            if let TypeSystemDefinition::Type(ty) = definition {
                builder.type_definition(file, &ty.node)?;
            }
        }
    }
    Ok(builder.schema)
}

fn parse_document(text: &str, file: &Arc<Path>) -> Result<ServiceDocument, SchemaError> {
    // GraphQL requires at least one definition; an empty file (or one with
    // only comments) declares no tables.
    if is_blank(text) {
        return Ok(ServiceDocument {
            definitions: Vec::new(),
        });
    }
    async_graphql_parser::parse_schema(text).map_err(|error| {
        // Every error parse_schema returns has a position; 1:1 is a fallback.
        let pos = error
            .positions()
            .next()
            .unwrap_or(Pos { line: 1, column: 1 });
        SchemaError::Syntax {
            at: location(file, pos),
            message: syntax_message(&error.to_string()),
        }
    })
}

/// Only GraphQL's ignored tokens: white space, commas, a BOM and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let code = line.split('#').next().unwrap_or_default();
        code.chars()
            .all(|c| c.is_whitespace() || c == ',' || c == '\u{feff}')
    })
}

/// pest renders its errors as a multi-line picture (` --> 3:5`, the source
/// line, a caret, `= expected type_system_definition`); keep only the `= …`
/// part (the position is reported separately), with grammar rule names made
/// readable.
fn syntax_message(rendered: &str) -> String {
    rendered
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("= "))
        .unwrap_or(rendered)
        .trim()
        .replace('_', " ")
}

fn location(file: &Arc<Path>, pos: Pos) -> Location {
    // Saturating: a schema file with 4 billion lines is not a real case.
    Location {
        file: Arc::clone(file),
        line: u32::try_from(pos.line).unwrap_or(u32::MAX),
        column: u32::try_from(pos.column).unwrap_or(u32::MAX),
    }
}

/// What a declared (non-scalar) type name is, for error messages.
#[derive(Debug, Clone, Copy)]
struct TypeKindInfo {
    /// "an enum", "an object type", …
    description: &'static str,
    /// Object, interface and union types: a reference to one is a relationship.
    relationship: bool,
}

impl TypeKindInfo {
    fn of(kind: &TypeKind) -> TypeKindInfo {
        let (description, relationship) = match kind {
            TypeKind::Scalar => ("a custom scalar", false),
            TypeKind::Object(_) => ("an object type", true),
            TypeKind::Interface(_) => ("an interface", true),
            TypeKind::Union(_) => ("a union", true),
            TypeKind::Enum(_) => ("an enum", false),
            TypeKind::InputObject(_) => ("an input type", false),
        };
        TypeKindInfo {
            description,
            relationship,
        }
    }
}

#[derive(Debug, Default)]
struct Builder {
    schema: Schema,
    /// Every type name declared in any file.
    kinds: HashMap<String, TypeKindInfo>,
    /// Table name -> where it was defined.
    table_at: HashMap<String, Location>,
    /// Export path -> where it was declared.
    export_at: HashMap<String, Location>,
}

impl Builder {
    fn type_definition(
        &mut self,
        file: &Arc<Path>,
        ty: &TypeDefinition,
    ) -> Result<(), SchemaError> {
        let is_table = ty.directives.iter().any(|d| d.node.name.node == "table");
        if is_table {
            return self.table(file, ty);
        }
        // Not a table: ignored, but a directive on an object type is still
        // checked so that a misspelt `@tabel` is not silently dropped.
        if matches!(ty.kind, TypeKind::Object(_)) {
            for directive in &ty.directives {
                match directive.node.name.node.as_str() {
                    "export" => {
                        return Err(SchemaError::ExportWithoutTable {
                            at: location(file, directive.pos),
                            ty: ty.name.node.to_string(),
                        });
                    }
                    name if IGNORED_DIRECTIVES.contains(&name) => {}
                    name => {
                        return Err(SchemaError::UnknownDirective {
                            at: location(file, directive.pos),
                            directive: name.to_owned(),
                            target: format!("type '{}'", ty.name.node),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn table(&mut self, file: &Arc<Path>, ty: &TypeDefinition) -> Result<(), SchemaError> {
        let name = ty.name.node.to_string();
        let at = location(file, ty.name.pos);
        let target = format!("table '{name}'");
        if ty.extend {
            return Err(SchemaError::Unsupported {
                at,
                what: format!("'extend type' for {target}"),
            });
        }
        if let Some(first) = self.table_at.get(&name) {
            return Err(SchemaError::DuplicateTable {
                at,
                table: name,
                first: Box::new(first.clone()),
            });
        }
        let TypeKind::Object(object) = &ty.kind else {
            return Err(SchemaError::Unsupported {
                at,
                what: format!(
                    "@table on {} ('{name}')",
                    TypeKindInfo::of(&ty.kind).description
                ),
            });
        };

        let mut export: Option<(String, Location)> = None;
        let mut seen = HashSet::new();
        for directive in &ty.directives {
            let directive_name = directive.node.name.node.as_str();
            check_once(file, directive, &mut seen, &target)?;
            match directive_name {
                "table" => no_arguments(file, &directive.node, &target)?,
                "export" => {
                    let path = export_path(file, &directive.node, &name, &target)?;
                    export = Some((path, location(file, directive.pos)));
                }
                other if IGNORED_DIRECTIVES.contains(&other) => {}
                other => {
                    return Err(SchemaError::UnknownDirective {
                        at: location(file, directive.pos),
                        directive: other.to_owned(),
                        target,
                    });
                }
            }
        }

        let (attributes, primary_key) = self.attributes(file, object, &name)?;

        if let Some((path, export_at)) = &export {
            if let Some(first) = self.export_at.get(path) {
                return Err(SchemaError::DuplicateExport {
                    at: export_at.clone(),
                    path: path.clone(),
                    table: name,
                    other: self.schema.exports[path].clone(),
                    first: Box::new(first.clone()),
                });
            }
            self.export_at.insert(path.clone(), export_at.clone());
            self.schema.exports.insert(path.clone(), name.clone());
        }
        self.table_at.insert(name.clone(), at);
        let schemaless = attributes.is_empty();
        self.schema.tables.insert(
            name.clone(),
            TableDef {
                name,
                export: export.map(|(path, _)| path),
                primary_key,
                attributes,
                schemaless,
            },
        );
        Ok(())
    }

    /// The declared attributes and the primary-key name.
    fn attributes(
        &self,
        file: &Arc<Path>,
        object: &ObjectType,
        table: &str,
    ) -> Result<(IndexMap<String, Attribute>, String), SchemaError> {
        let mut attributes = IndexMap::new();
        // Attribute name -> (where declared, where its type is written).
        let mut declared: HashMap<String, (Location, Location)> = HashMap::new();
        let mut primary: Option<(String, Location)> = None;
        for field in &object.fields {
            let field = &field.node;
            let name = field.name.node.to_string();
            let at = location(file, field.name.pos);
            if let Some((first, _)) = declared.get(&name) {
                return Err(SchemaError::DuplicateAttribute {
                    at,
                    attribute: name,
                    table: table.to_owned(),
                    first: Box::new(first.clone()),
                });
            }
            let mut attribute = self.attribute(file, field, table)?;
            let target = format!("attribute '{name}' of table '{table}'");
            let mut seen = HashSet::new();
            for directive in &field.directives {
                check_once(file, directive, &mut seen, &target)?;
                match directive.node.name.node.as_str() {
                    "primaryKey" => {
                        no_arguments(file, &directive.node, &target)?;
                        if let Some((first, first_at)) = primary.take() {
                            return Err(SchemaError::DuplicatePrimaryKey {
                                at: location(file, directive.pos),
                                table: table.to_owned(),
                                first,
                                first_at: Box::new(first_at),
                                second: name,
                            });
                        }
                        primary = Some((name.clone(), location(file, directive.pos)));
                    }
                    "indexed" => {
                        no_arguments(file, &directive.node, &target)?;
                        attribute.indexed = true;
                    }
                    other if IGNORED_DIRECTIVES.contains(&other) => {}
                    other => {
                        return Err(SchemaError::UnknownDirective {
                            at: location(file, directive.pos),
                            directive: other.to_owned(),
                            target,
                        });
                    }
                }
            }
            declared.insert(name.clone(), (at, location(file, field.ty.pos)));
            attributes.insert(name, attribute);
        }

        let primary_key = primary.map_or_else(|| "id".to_owned(), |(name, _)| name);
        if let Some(attribute) = attributes.get(&primary_key) {
            if attribute.list || !attribute.ty.can_be_primary_key() {
                return Err(SchemaError::InvalidPrimaryKey {
                    at: declared[&primary_key].1.clone(),
                    attribute: primary_key,
                    table: table.to_owned(),
                    ty: attribute.graphql_type(),
                });
            }
        }
        Ok((attributes, primary_key))
    }

    /// One attribute's name and type (directives are the caller's).
    fn attribute(
        &self,
        file: &Arc<Path>,
        field: &FieldDefinition,
        table: &str,
    ) -> Result<Attribute, SchemaError> {
        let name = field.name.node.to_string();
        if let Some(argument) = field.arguments.first() {
            return Err(SchemaError::Unsupported {
                at: location(file, argument.pos),
                what: format!(
                    "an argument on attribute '{name}' of table '{table}' (computed attributes)"
                ),
            });
        }
        let ty: &Positioned<Type> = &field.ty;
        let at = location(file, ty.pos);
        let (named, list, items_required) = match &ty.node.base {
            BaseType::Named(named) => (named, false, false),
            BaseType::List(inner) => match &inner.base {
                BaseType::Named(named) => (named, true, !inner.nullable),
                BaseType::List(_) => {
                    return Err(SchemaError::UnsupportedType {
                        at,
                        ty: ty.node.to_string(),
                        kind: "a nested list",
                        attribute: name,
                        table: table.to_owned(),
                    });
                }
            },
        };
        let Some(scalar) = AttrType::from_name(named) else {
            let ty = named.to_string();
            let table = table.to_owned();
            return Err(match self.kinds.get(named.as_str()) {
                Some(kind) if kind.relationship => SchemaError::Relationship {
                    at,
                    ty,
                    attribute: name,
                    table,
                },
                Some(kind) => SchemaError::UnsupportedType {
                    at,
                    ty,
                    kind: kind.description,
                    attribute: name,
                    table,
                },
                None => SchemaError::UnknownType {
                    at,
                    ty,
                    attribute: name,
                    table,
                },
            });
        };
        Ok(Attribute {
            name,
            ty: scalar,
            list,
            required: !ty.node.nullable,
            items_required,
            indexed: false,
        })
    }
}

/// A directive may appear once per table or attribute.
fn check_once(
    file: &Arc<Path>,
    directive: &Positioned<ConstDirective>,
    seen: &mut HashSet<String>,
    target: &str,
) -> Result<(), SchemaError> {
    let name = directive.node.name.node.to_string();
    if seen.insert(name.clone()) {
        Ok(())
    } else {
        Err(SchemaError::DuplicateDirective {
            at: location(file, directive.pos),
            directive: name,
            target: target.to_owned(),
        })
    }
}

fn no_arguments(
    file: &Arc<Path>,
    directive: &ConstDirective,
    target: &str,
) -> Result<(), SchemaError> {
    match directive.arguments.first() {
        None => Ok(()),
        Some((argument, _)) => Err(SchemaError::UnknownArgument {
            at: location(file, argument.pos),
            directive: directive.name.node.to_string(),
            argument: argument.node.to_string(),
            target: target.to_owned(),
        }),
    }
}

/// `@export` → the type name; `@export(name: "path")` → `path`, checked.
fn export_path(
    file: &Arc<Path>,
    directive: &ConstDirective,
    table: &str,
    target: &str,
) -> Result<String, SchemaError> {
    let mut path = table.to_owned();
    for (argument, value) in &directive.arguments {
        if argument.node != "name" {
            return Err(SchemaError::UnknownArgument {
                at: location(file, argument.pos),
                directive: "export".to_owned(),
                argument: argument.node.to_string(),
                target: target.to_owned(),
            });
        }
        // The value type lives in async-graphql-value, which is not a direct
        // dependency: go through its JSON form.
        match value.node.clone().into_json() {
            Ok(serde_json::Value::String(name)) => {
                check_export_name(&name).map_err(|reason| SchemaError::InvalidExportName {
                    at: location(file, value.pos),
                    path: name.clone(),
                    table: table.to_owned(),
                    reason,
                })?;
                path = name;
            }
            _ => {
                return Err(SchemaError::InvalidArgument {
                    at: location(file, value.pos),
                    directive: "export".to_owned(),
                    argument: "name".to_owned(),
                    expected: "a string",
                });
            }
        }
    }
    Ok(path)
}

/// An export path is one MQTT topic level and one URL path segment.
fn check_export_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name.starts_with('$') {
        Err("must not start with '$' (reserved for $SYS topics)")
    } else if name.contains('/') {
        Err("must not contain '/' (it is a single topic level)")
    } else if name.contains(['+', '#']) {
        Err("must not contain the MQTT wildcards '+' or '#'")
    } else if name.contains(['?', '%']) {
        Err("must not contain '?' or '%' (query and escape characters)")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("must not contain whitespace or control characters")
    } else {
        Ok(())
    }
}
