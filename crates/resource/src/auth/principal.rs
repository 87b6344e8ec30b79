//! An authenticated caller and what it may do: the checks MQTT and REST
//! both make before reading or writing (SPEC §5).
//!
//! A principal is the merge of its roles, computed once at login, so each
//! check is a map lookup or a short pattern scan with no lock.

use std::sync::Arc;

use crate::schema::{Schema, TableDef};

use super::roles::{Role, TableOp, covers, matches};

/// Who is calling, and what they are granted. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Principal(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    username: Option<String>,
    grants: Role,
}

/// A refused operation, with a message naming what was missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Principal {
    /// A caller with every permission (a super user, or anyone when
    /// authentication is off and no anonymous role is configured).
    pub fn super_user(username: Option<String>) -> Principal {
        Principal::new(username, Role::super_user())
    }

    /// A caller granted `grants`.
    pub fn new(username: Option<String>, grants: Role) -> Principal {
        Principal(Arc::new(Inner { username, grants }))
    }

    /// A caller holding every role of `roles`.
    pub fn with_roles<'a>(
        username: Option<String>,
        roles: impl IntoIterator<Item = &'a Role>,
    ) -> Principal {
        let mut grants = Role::default();
        for role in roles {
            grants.merge(role);
        }
        Principal::new(username, grants)
    }

    /// The username, or `None` for an anonymous caller.
    pub fn username(&self) -> Option<&str> {
        self.0.username.as_deref()
    }

    /// Whether everything is allowed.
    pub fn is_super_user(&self) -> bool {
        self.0.grants.super_user
    }

    fn who(&self) -> String {
        match self.username() {
            Some(u) => format!("user `{u}`"),
            None => "an anonymous client".to_owned(),
        }
    }

    /// Whether `op` on the records of `table` is granted.
    pub fn may(&self, table: &TableDef, op: TableOp) -> bool {
        self.is_super_user()
            || self
                .0
                .grants
                .tables
                .get(&table.name)
                .is_some_and(|ops| ops.contains(op))
    }

    /// [`Principal::may`] as a `Result` with a message.
    pub fn check(&self, table: &TableDef, op: TableOp) -> Result<(), Denied> {
        if self.may(table, op) {
            Ok(())
        } else {
            Err(Denied(format!(
                "{} may not {} records of table {}",
                self.who(),
                op.as_str(),
                table.name
            )))
        }
    }

    /// Whether a write that creates or replaces a record is granted:
    /// `insert` when it does not exist yet, `update` when it does.
    /// `exists` is asked only when exactly one of the two is granted.
    pub fn check_put(&self, table: &TableDef, exists: impl FnOnce() -> bool) -> Result<(), Denied> {
        match (
            self.may(table, TableOp::Insert),
            self.may(table, TableOp::Update),
        ) {
            (true, true) => Ok(()),
            (false, false) => Err(Denied(format!(
                "{} may not insert or update records of table {}",
                self.who(),
                table.name
            ))),
            (insert, _) => {
                let op = if exists() {
                    TableOp::Update
                } else {
                    TableOp::Insert
                };
                if (op == TableOp::Insert) == insert {
                    Ok(())
                } else {
                    self.check(table, op)
                }
            }
        }
    }

    /// Whether publishing to the free (or `$SYS`) topic `topic` is granted.
    pub fn may_publish_topic(&self, topic: &str) -> bool {
        self.is_super_user() || self.0.grants.publish.iter().any(|p| matches(p, topic))
    }

    /// Whether subscribing to free (or `$SYS`) topics with `filter` is
    /// granted: some subscribe pattern covers every topic it matches.
    pub fn may_subscribe_topics(&self, filter: &str) -> bool {
        self.is_super_user()
            || self.0.grants.subscribe.iter().any(|p| {
                covers(p, filter) && !(filter.starts_with('$') && p.starts_with(['+', '#']))
            })
    }

    /// Whether a subscription to `filter` is granted, where the first level
    /// of `filter` names an exported table (read on it), a wildcard (read
    /// on every exported table, and the free topics covered by a pattern),
    /// or a free topic (a covering subscribe pattern). A query filter
    /// (`Table/?a=1`) needs read on its table.
    pub fn check_subscribe(&self, schema: &Schema, filter: &str) -> Result<(), Denied> {
        if self.is_super_user() {
            return Ok(());
        }
        let first = filter.split('/').next().unwrap_or_default();
        let denied = |what: String| Err(Denied(format!("{} may not {what}", self.who())));
        if first == "+" || first == "#" {
            if let Some(t) = schema
                .tables()
                .filter(|t| t.export.is_some())
                .find(|t| !self.may(t, TableOp::Read))
            {
                return denied(format!(
                    "subscribe to `{filter}`: it spans table {} without read permission",
                    t.name
                ));
            }
            if !self.may_subscribe_topics(filter) {
                return denied(format!("subscribe to the free topics of `{filter}`"));
            }
            return Ok(());
        }
        if filter.contains('/') {
            if let Some(table) = schema.exported(first) {
                return self.check(table, TableOp::Read);
            }
        }
        if self.may_subscribe_topics(filter) {
            Ok(())
        } else {
            denied(format!("subscribe to `{filter}`"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::auth::roles::TableOps;

    fn schema() -> Schema {
        Schema::parse(
            "type Sensor @table @export { id: ID @primaryKey }\n\
             type Device @table @export { id: ID @primaryKey }",
            Path::new("t.graphql"),
        )
        .unwrap()
    }

    fn reader() -> Principal {
        let role = Role {
            tables: HashMap::from([("Sensor".to_owned(), TableOps::default().with(TableOp::Read))]),
            subscribe: vec!["chat/#".to_owned()],
            publish: vec!["chat/+".to_owned()],
            super_user: false,
        };
        Principal::with_roles(Some("r".into()), [&role])
    }

    #[test]
    fn table_operations_follow_the_roles() {
        let s = schema();
        let p = reader();
        let sensor = s.table("Sensor").unwrap();
        assert!(p.check(sensor, TableOp::Read).is_ok());
        let e = p.check(sensor, TableOp::Delete).unwrap_err();
        assert_eq!(e.0, "user `r` may not delete records of table Sensor");
        assert!(p.check_put(sensor, || true).is_err());
    }

    #[test]
    fn put_needs_insert_for_a_new_record_and_update_for_an_existing_one() {
        let s = schema();
        let sensor = s.table("Sensor").unwrap();
        let role = Role {
            tables: HashMap::from([(
                "Sensor".to_owned(),
                TableOps::default().with(TableOp::Insert),
            )]),
            ..Role::default()
        };
        let inserter = Principal::with_roles(None, [&role]);
        assert!(inserter.check_put(sensor, || false).is_ok());
        assert!(inserter.check_put(sensor, || true).is_err());
    }

    #[test]
    fn subscriptions_need_read_or_a_covering_pattern() {
        let s = schema();
        let p = reader();
        assert!(p.check_subscribe(&s, "Sensor/#").is_ok());
        assert!(p.check_subscribe(&s, "Sensor/?kind=t").is_ok());
        assert!(p.check_subscribe(&s, "Device/1").is_err());
        assert!(p.check_subscribe(&s, "chat/room1").is_ok());
        assert!(p.check_subscribe(&s, "chat/#").is_ok());
        assert!(p.check_subscribe(&s, "other/#").is_err());
        // A wildcard first level spans Device, which `r` may not read.
        assert!(p.check_subscribe(&s, "#").is_err());
        assert!(p.check_subscribe(&s, "$SYS/events/#").is_err());
        assert!(Principal::super_user(None).check_subscribe(&s, "#").is_ok());
    }

    #[test]
    fn publishing_to_free_topics_needs_a_matching_pattern() {
        let p = reader();
        assert!(p.may_publish_topic("chat/room1"));
        assert!(!p.may_publish_topic("chat/room1/x"));
        assert!(!p.may_publish_topic("$SYS/x"));
    }
}
