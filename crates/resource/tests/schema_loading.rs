//! Loading table declarations from GraphQL SDL files, the errors a broken
//! schema gets (each with file:line:column), and validating records against
//! the tables.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use mqdb_resource::schema::{AttrType, Schema, SchemaError, TableDef, ValidationError};
use mqdb_resource::{Map, Value};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(names: &[&str]) -> Result<Schema, SchemaError> {
    let paths: Vec<PathBuf> = names.iter().map(|name| fixture(name)).collect();
    Schema::load(&paths)
}

/// The error message of loading `name`, with the fixture directory cut off.
fn load_error(names: &[&str]) -> String {
    let error = load(names).expect_err("schema should be rejected");
    let dir = format!(
        "{}/",
        fixture("").display().to_string().trim_end_matches('/')
    );
    error.to_string().replace(&dir, "")
}

fn parse(source: &str) -> Result<Schema, SchemaError> {
    Schema::parse(source, Path::new("schema.graphql"))
}

fn parse_error(source: &str) -> String {
    parse(source)
        .expect_err("schema should be rejected")
        .to_string()
}

fn record(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect::<Map>(),
    )
}

fn string(text: &str) -> Value {
    Value::String(text.to_owned())
}

// ---- directive forms ----

#[test]
fn table_with_export_and_typed_attributes() {
    let schema = load(&["devices.graphql"]).unwrap();
    let device = schema.table("Device").unwrap();
    assert_eq!(device.name, "Device");
    assert_eq!(device.export.as_deref(), Some("Device"));
    assert_eq!(device.primary_key, "id");
    assert!(!device.schemaless);
    let names: Vec<&str> = device.attributes.keys().map(String::as_str).collect();
    assert_eq!(names, ["id", "name", "temp", "tags", "model"]);

    let name = device.attribute("name").unwrap();
    assert_eq!(
        (name.ty, name.list, name.required, name.indexed),
        (AttrType::String, false, true, true)
    );
    let tags = device.attribute("tags").unwrap();
    assert_eq!(
        (tags.ty, tags.list, tags.required, tags.items_required),
        (AttrType::String, true, false, true)
    );
    assert_eq!(tags.graphql_type(), "[String!]");
    assert_eq!(device.attribute("temp").unwrap().ty, AttrType::Float);
    assert!(std::ptr::eq(schema.exported("Device").unwrap(), device));
}

#[test]
fn table_without_attributes_is_schemaless() {
    let schema = load(&["devices.graphql"]).unwrap();
    let sensor = schema.exported("Sensor").unwrap();
    assert!(sensor.schemaless);
    assert!(sensor.attributes.is_empty());
    assert_eq!(sensor.primary_key, "id");
    assert_eq!(sensor.primary_key_type(), AttrType::Id);
}

#[test]
fn export_with_a_name_is_reachable_under_that_name_only() {
    let schema = load(&["devices.graphql"]).unwrap();
    let reading = schema.exported("readings").unwrap();
    assert_eq!(reading.name, "Reading");
    assert!(schema.exported("Reading").is_none());
    assert_eq!(reading.primary_key, "readingId");
    assert_eq!(reading.primary_key_type(), AttrType::Long);
    let values = reading.attribute("values").unwrap();
    assert_eq!(values.graphql_type(), "[Float]!");
    let indexed: Vec<&str> = reading
        .indexed_attributes()
        .map(|attribute| attribute.name.as_str())
        .collect();
    assert_eq!(indexed, ["at"]);
}

#[test]
fn table_without_export_is_stored_but_not_reachable() {
    let schema = load(&["devices.graphql"]).unwrap();
    let audit = schema.table("AuditLog").unwrap();
    assert_eq!(audit.export, None);
    assert!(schema.exported("AuditLog").is_none());
}

#[test]
fn types_without_table_are_ignored() {
    let schema = load(&["devices.graphql"]).unwrap();
    assert!(schema.table("Query").is_none());
    assert!(schema.table("Color").is_none());
    let names: Vec<&str> = schema.tables().map(|table| table.name.as_str()).collect();
    assert_eq!(names, ["Device", "Sensor", "Reading", "AuditLog"]);
    assert_eq!(schema.len(), 4);
    assert_eq!((&schema).into_iter().count(), 4);
}

#[test]
fn declared_id_without_primary_key_directive_is_the_primary_key() {
    let schema = parse("type T @table { id: Int  name: String }").unwrap();
    let table = schema.table("T").unwrap();
    assert_eq!(table.primary_key, "id");
    assert_eq!(table.primary_key_type(), AttrType::Int);
}

#[test]
fn every_scalar_type_is_recognised() {
    let schema = load(&["all_scalars.graphql"]).unwrap();
    let table = schema.table("Everything").unwrap();
    let types: Vec<AttrType> = table
        .attributes
        .values()
        .take(9)
        .map(|attribute| attribute.ty)
        .collect();
    assert_eq!(types, AttrType::ALL);
}

#[test]
fn deprecated_directive_is_ignored() {
    let schema = load(&["devices.graphql"]).unwrap();
    let model = schema.table("Device").unwrap().attribute("model").unwrap();
    assert_eq!(model.ty, AttrType::String);
}

#[test]
fn declarations_for_editors_are_ignored() {
    // Directive and scalar declarations some schemas carry for IDE support.
    let schema = parse(
        "directive @table(table: String) on OBJECT\n\
         directive @primaryKey on FIELD_DEFINITION\n\
         scalar Long\n\
         scalar Date\n\
         type Event @table @export { id: Long @primaryKey  at: Date }",
    )
    .unwrap();
    let event = schema.exported("Event").unwrap();
    assert_eq!(event.primary_key_type(), AttrType::Long);
    assert_eq!(event.attribute("at").unwrap().ty, AttrType::Date);
}

#[test]
fn empty_schema_has_no_tables() {
    let schema = Schema::empty();
    assert!(schema.is_empty());
    assert!(schema.table("Device").is_none());
    assert!(schema.exported("Device").is_none());
    assert!(Schema::load(&[]).unwrap().is_empty());
    assert!(parse("# nothing here\n").unwrap().is_empty());
}

// ---- several files ----

#[test]
fn several_files_are_merged_in_order() {
    let schema = load(&["devices.graphql", "more.graphql"]).unwrap();
    let names: Vec<&str> = schema.tables().map(|table| table.name.as_str()).collect();
    assert_eq!(names, ["Device", "Sensor", "Reading", "AuditLog", "Site"]);
    let site = schema.exported("sites").unwrap();
    assert_eq!(site.primary_key, "code");
    assert!(schema.exported("readings").is_some());
}

#[test]
fn table_defined_in_two_files_names_both_places() {
    assert_eq!(
        load_error(&["devices.graphql", "duplicate_device.graphql"]),
        "duplicate_device.graphql:2:6: table 'Device' is already defined at devices.graphql:2:6"
    );
}

#[test]
fn table_defined_twice_in_one_file_names_both_places() {
    assert_eq!(
        parse_error("type A @table\ntype A @table { x: Int }"),
        "schema.graphql:2:6: table 'A' is already defined at schema.graphql:1:6"
    );
}

#[test]
fn missing_file_is_reported_with_its_path() {
    let error = load(&["no_such_file.graphql"]).unwrap_err();
    assert!(matches!(error, SchemaError::Read { .. }));
    assert!(error.location().is_none());
    assert!(
        error
            .to_string()
            .contains("no_such_file.graphql: cannot read schema file")
    );
}

// ---- errors with their locations ----

#[test]
fn syntax_error_reports_file_line_and_column() {
    let error = load(&["syntax_error.graphql"]).unwrap_err();
    let at = error.location().unwrap();
    assert_eq!(&*at.file, fixture("syntax_error.graphql").as_path());
    assert_eq!((at.line, at.column), (3, 8));
    assert_eq!(
        load_error(&["syntax_error.graphql"]),
        "syntax_error.graphql:3:8: syntax error: expected arguments definition"
    );
}

#[test]
fn unknown_type_reports_its_location() {
    assert_eq!(
        load_error(&["unknown_type.graphql"]),
        "unknown_type.graphql:3:9: unknown type 'Strng' for attribute 'name' of table 'Device'"
    );
}

#[test]
fn two_primary_keys_report_both() {
    assert_eq!(
        load_error(&["two_primary_keys.graphql"]),
        "two_primary_keys.graphql:3:18: table 'Device' has two primary keys: 'id' (at \
         two_primary_keys.graphql:2:10) and 'serial'"
    );
}

#[test]
fn unknown_attribute_directive_is_named() {
    assert_eq!(
        load_error(&["unknown_directive.graphql"]),
        "unknown_directive.graphql:3:16: unknown directive '@index' on attribute 'name' of \
         table 'Device'"
    );
}

#[test]
fn unknown_table_directive_is_named() {
    assert_eq!(
        parse_error("type Device @table @sealed { id: ID }"),
        "schema.graphql:1:20: unknown directive '@sealed' on table 'Device'"
    );
}

#[test]
fn misspelt_table_directive_is_not_silently_ignored() {
    assert_eq!(
        parse_error("type Device @tabel @export { id: ID }"),
        "schema.graphql:1:13: unknown directive '@tabel' on type 'Device'"
    );
}

#[test]
fn export_without_table_is_an_error() {
    assert_eq!(
        parse_error("type Device @export { id: ID }"),
        "schema.graphql:1:13: type 'Device' has @export but no @table"
    );
}

#[test]
fn reference_to_another_type_is_not_supported_yet() {
    assert_eq!(
        parse_error("type Device @table { owner: User }\ntype User @table { name: String }"),
        "schema.graphql:1:29: attribute 'owner' of table 'Device' has type 'User', another \
         object type: relationships are not supported yet"
    );
}

#[test]
fn enum_and_nested_list_types_are_not_supported() {
    let enum_error = parse_error("type T @table { c: Color }\nenum Color { RED }");
    assert!(
        enum_error.starts_with(
            "schema.graphql:1:20: type 'Color' of attribute 'c' of table 'T' is an enum;"
        ),
        "{enum_error}"
    );
    let nested = parse_error("type T @table { grid: [[Int]] }");
    assert!(
        nested.starts_with(
            "schema.graphql:1:23: type '[[Int]]' of attribute 'grid' of table 'T' is a nested list;"
        ),
        "{nested}"
    );
}

#[test]
fn primary_key_must_be_an_id_string_or_integer() {
    assert_eq!(
        parse_error("type T @table {\n  at: Float @primaryKey\n}"),
        "schema.graphql:2:7: primary key 'at' of table 'T' must be ID, String, Int or Long, not Float"
    );
    assert_eq!(
        parse_error("type T @table { id: [ID] }"),
        "schema.graphql:1:21: primary key 'id' of table 'T' must be ID, String, Int or Long, not [ID]"
    );
}

#[test]
fn unsupported_directive_arguments_are_named() {
    assert_eq!(
        parse_error("type T @table(expiration: 3600) { id: ID }"),
        "schema.graphql:1:15: directive '@table' on table 'T' does not take the argument 'expiration'"
    );
    assert_eq!(
        parse_error("type T @table @export(name: 5)"),
        "schema.graphql:1:29: argument 'name' of '@export' must be a string"
    );
}

#[test]
fn export_names_must_be_one_topic_level() {
    for (name, reason) in [
        ("a/b", "must not contain '/'"),
        ("dev+", "must not contain the MQTT wildcards"),
        ("$SYS", "must not start with '$'"),
        ("", "must not be empty"),
        ("a b", "must not contain whitespace"),
    ] {
        let error = parse_error(&format!("type T @table @export(name: \"{name}\")"));
        assert!(
            error.starts_with(&format!(
                "schema.graphql:1:29: export name '{name}' of table 'T' {reason}"
            )),
            "{error}"
        );
    }
}

#[test]
fn two_tables_exported_under_one_path_is_an_error() {
    assert_eq!(
        parse_error("type A @table @export(name: \"x\")\ntype B @table @export(name: \"x\")"),
        "schema.graphql:2:15: table 'B' is exported as 'x', which table 'A' already uses (at \
         schema.graphql:1:15)"
    );
}

#[test]
fn duplicate_attribute_and_directive_are_errors() {
    assert_eq!(
        parse_error("type T @table { a: Int\n a: String }"),
        "schema.graphql:2:2: attribute 'a' of table 'T' is already declared at schema.graphql:1:17"
    );
    assert_eq!(
        parse_error("type T @table { a: Int @indexed @indexed }"),
        "schema.graphql:1:33: directive '@indexed' is given twice on attribute 'a' of table 'T'"
    );
}

#[test]
fn computed_attributes_and_extensions_are_not_supported() {
    assert!(
        parse_error("type T @table { a(x: Int): Int }")
            .starts_with("schema.graphql:1:19: an argument on attribute 'a'")
    );
    assert!(
        parse_error("extend type T @table { a: Int }")
            .starts_with("schema.graphql:1:13: 'extend type' for table 'T' is not supported")
    );
}

// ---- validation ----

fn everything() -> TableDef {
    load(&["all_scalars.graphql"])
        .unwrap()
        .table("Everything")
        .unwrap()
        .clone()
}

fn check(attribute: &str, value: Value) -> Result<(), ValidationError> {
    everything().validate(&record(&[(attribute, value)]))
}

fn rejection(attribute: &str, value: Value) -> String {
    check(attribute, value)
        .expect_err("value should be rejected")
        .to_string()
}

#[test]
fn each_scalar_accepts_its_own_values() {
    let accepted = [
        ("id", string("a/b")),
        ("id", Value::Int(-7)),
        ("id", Value::UInt(u64::MAX)),
        ("string", string("")),
        ("int", Value::Int(i64::from(i32::MIN))),
        ("int", Value::Int(i64::from(i32::MAX))),
        ("long", Value::Int(i64::MIN)),
        ("long", Value::Int(i64::MAX)),
        ("float", Value::Float(1.5)),
        ("float", Value::Int(3)),
        ("float", Value::UInt(u64::MAX)),
        ("boolean", Value::Bool(false)),
        ("bytes", Value::Bytes(Bytes::from_static(b"\x00\xff"))),
        ("any", Value::Array(vec![Value::Null, Value::Bool(true)])),
        ("any", record(&[("nested", Value::Int(1))])),
        ("date", string("2024-02-29T12:00:00Z")),
        ("date", string("2024-02-29T12:00:00.5+01:00")),
        ("date", string("2024-02-29")),
        ("date", Value::Int(1_700_000_000_000)),
        ("date", Value::Int(-1)),
    ];
    for (attribute, value) in accepted {
        assert_eq!(
            check(attribute, value.clone()),
            Ok(()),
            "{attribute} = {value:?}"
        );
    }
}

#[test]
fn each_scalar_rejects_other_values() {
    let rejected = [
        ("id", Value::Float(1.0), "ID", "float"),
        ("id", Value::Bool(true), "ID", "boolean"),
        ("string", Value::Int(1), "String", "integer"),
        (
            "string",
            Value::Bytes(Bytes::from_static(b"x")),
            "String",
            "bytes",
        ),
        ("int", Value::Float(5.0), "Int", "float"),
        ("int", string("5"), "Int", "string"),
        ("long", Value::Float(1.0), "Long", "float"),
        ("float", string("1.5"), "Float", "string"),
        ("float", Value::Bool(true), "Float", "boolean"),
        ("boolean", Value::Int(1), "Boolean", "integer"),
        ("boolean", string("true"), "Boolean", "string"),
        ("bytes", string("AAE="), "Bytes", "string"),
        ("bytes", Value::Array(vec![Value::Int(1)]), "Bytes", "array"),
        ("date", Value::Float(1.5), "Date", "float"),
        ("date", Value::Map(Map::new()), "Date", "map"),
    ];
    for (attribute, value, expected, found) in rejected {
        let error = check(attribute, value).unwrap_err();
        assert_eq!(error.attribute.as_deref(), Some(attribute));
        assert_eq!(
            (error.expected.as_str(), error.found.as_str()),
            (expected, found)
        );
    }
}

#[test]
fn validation_message_names_attribute_table_and_types() {
    let schema = load(&["devices.graphql"]).unwrap();
    let device = schema.table("Device").unwrap();
    let error = device
        .validate(&record(&[("name", string("d")), ("temp", string("hot"))]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "attribute 'temp' of Device must be Float, found string"
    );
}

#[test]
fn int_range_is_i32_and_long_range_is_i64() {
    assert_eq!(
        rejection("int", Value::Int(i64::from(i32::MAX) + 1)),
        "attribute 'int' of Everything must be Int, found integer 2147483648 (outside the Int range)"
    );
    assert!(check("int", Value::Int(i64::from(i32::MIN) - 1)).is_err());
    assert!(check("int", Value::UInt(u64::MAX)).is_err());
    assert_eq!(
        rejection("long", Value::UInt(u64::MAX)),
        "attribute 'long' of Everything must be Long, found integer 18446744073709551615 \
         (outside the Long range)"
    );
}

#[test]
fn date_strings_must_be_real_date_times() {
    for text in [
        "2023-02-29",
        "2024-01-02T25:00:00Z",
        "next tuesday",
        "2024-01-02T03:04:05+0100",
    ] {
        assert!(check("date", string(text)).is_err(), "{text}");
    }
    assert_eq!(
        rejection("date", string("2024-13-01")),
        "attribute 'date' of Everything must be Date, found string \"2024-13-01\" (not a date-time)"
    );
}

#[test]
fn null_is_allowed_for_attributes_that_are_not_required() {
    for attribute in ["id", "string", "int", "date", "ints", "strictInts"] {
        assert_eq!(check(attribute, Value::Null), Ok(()), "{attribute}");
    }
}

#[test]
fn required_attribute_missing_or_null_is_rejected() {
    let schema = load(&["all_scalars.graphql"]).unwrap();
    let required = schema.table("Required").unwrap();
    let tags = Value::Array(vec![]);
    assert_eq!(
        required.validate(&record(&[("name", string("n")), ("tags", tags.clone())])),
        Ok(())
    );
    assert_eq!(
        required
            .validate(&record(&[("tags", tags.clone())]))
            .unwrap_err()
            .to_string(),
        "attribute 'name' of Required must be String!, found no value"
    );
    assert_eq!(
        required
            .validate(&record(&[("name", Value::Null), ("tags", tags)]))
            .unwrap_err()
            .to_string(),
        "attribute 'name' of Required must be String!, found null"
    );
    assert_eq!(
        required
            .validate(&record(&[("name", string("n")), ("tags", Value::Null)]))
            .unwrap_err()
            .to_string(),
        "attribute 'tags' of Required must be [String]!, found null"
    );
}

#[test]
fn lists_must_be_arrays_of_the_element_type() {
    assert_eq!(check("ints", Value::Array(vec![])), Ok(()));
    assert_eq!(
        check(
            "ints",
            Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)])
        ),
        Ok(())
    );
    assert_eq!(
        check(
            "dates",
            Value::Array(vec![string("2024-01-01"), Value::Int(0)])
        ),
        Ok(())
    );
    assert_eq!(
        rejection("ints", Value::Int(1)),
        "attribute 'ints' of Everything must be [Int], found integer"
    );
    assert_eq!(
        rejection("ints", Value::Array(vec![Value::Int(1), string("2")])),
        "attribute 'ints[1]' of Everything must be Int, found string"
    );
    assert_eq!(
        rejection("ints", Value::Array(vec![Value::Int(1 << 40)])),
        "attribute 'ints[0]' of Everything must be Int, found integer 1099511627776 (outside the \
         Int range)"
    );
    assert_eq!(
        rejection("strictInts", Value::Array(vec![Value::Int(1), Value::Null])),
        "attribute 'strictInts[1]' of Everything must be Int!, found null"
    );
}

#[test]
fn undeclared_attributes_are_allowed_in_typed_tables() {
    let table = everything();
    let value = record(&[("int", Value::Int(1)), ("extra", string("anything"))]);
    assert_eq!(table.validate(&value), Ok(()));
}

#[test]
fn a_record_must_be_a_map() {
    let error = everything().validate(&Value::Array(vec![])).unwrap_err();
    assert_eq!(error.attribute, None);
    assert_eq!(
        error.to_string(),
        "record of Everything must be a map, found array"
    );
}

#[test]
fn schemaless_table_accepts_any_map_but_not_a_non_map() {
    let sensor = TableDef::schemaless("Sensor");
    let anything = record(&[
        ("id", Value::Bool(true)),
        ("temp", string("hot")),
        ("raw", Value::Bytes(Bytes::from_static(b"\x01"))),
    ]);
    assert_eq!(sensor.validate(&anything), Ok(()));
    assert_eq!(sensor.validate(&Value::Map(Map::new())), Ok(()));
    for not_a_map in [
        Value::Null,
        Value::Int(1),
        string("{}"),
        Value::Array(vec![]),
    ] {
        assert!(sensor.validate(&not_a_map).is_err(), "{not_a_map:?}");
    }
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::UInt),
        any::<f64>().prop_map(Value::Float),
        ".{0,8}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::Bytes(b.into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,4}", inner), 0..4)
                .prop_map(|pairs| Value::Map(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn schemaless_accepts_exactly_the_maps(value in any_value()) {
        let sensor = load(&["devices.graphql"]).unwrap().table("Sensor").unwrap().clone();
        prop_assert_eq!(sensor.validate(&value).is_ok(), matches!(value, Value::Map(_)));
    }

    #[test]
    fn any_attribute_accepts_every_value(value in any_value()) {
        prop_assert_eq!(check("any", value), Ok(()));
    }

    #[test]
    fn int_accepts_exactly_the_i32_range(n in any::<i64>()) {
        prop_assert_eq!(check("int", Value::Int(n)).is_ok(), i32::try_from(n).is_ok());
    }
}
