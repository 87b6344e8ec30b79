//! Roles (SPEC §5): what a role grants, and whether a topic filter pattern
//! covers another filter. Built from the configuration by the server; this
//! module only holds and evaluates them.

use std::collections::HashMap;
use std::sync::Arc;

/// An operation on a table's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableOp {
    /// Reading records: GET, queries, MQTT subscriptions.
    Read,
    /// Creating a record that does not exist.
    Insert,
    /// Replacing or merging into an existing record.
    Update,
    /// Deleting a record.
    Delete,
}

impl TableOp {
    fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Insert => 2,
            Self::Update => 4,
            Self::Delete => 8,
        }
    }

    /// The lower-case name used in configuration and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A set of [`TableOp`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableOps(u8);

impl TableOps {
    /// Adds `op`.
    #[must_use]
    pub fn with(self, op: TableOp) -> TableOps {
        TableOps(self.0 | op.bit())
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: TableOp) -> bool {
        self.0 & op.bit() != 0
    }

    fn union(self, other: TableOps) -> TableOps {
        TableOps(self.0 | other.0)
    }
}

impl FromIterator<TableOp> for TableOps {
    fn from_iter<I: IntoIterator<Item = TableOp>>(iter: I) -> Self {
        iter.into_iter().fold(TableOps::default(), TableOps::with)
    }
}

/// What one role grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    /// Table name (as declared in the schema) -> granted operations.
    pub tables: HashMap<String, TableOps>,
    /// Free-topic (and `$SYS`) filters the holder may publish to.
    pub publish: Vec<String>,
    /// Free-topic (and `$SYS`) filters the holder may subscribe to.
    pub subscribe: Vec<String>,
    /// Everything is allowed.
    pub super_user: bool,
}

impl Role {
    /// A role that grants everything.
    pub fn super_user() -> Role {
        Role {
            super_user: true,
            ..Role::default()
        }
    }

    /// Adds what `other` grants to this role.
    pub(crate) fn merge(&mut self, other: &Role) {
        self.super_user |= other.super_user;
        for (table, ops) in &other.tables {
            let entry = self.tables.entry(table.clone()).or_default();
            *entry = entry.union(*ops);
        }
        self.publish.extend(other.publish.iter().cloned());
        self.subscribe.extend(other.subscribe.iter().cloned());
    }
}

/// The configured roles by name. The role [`Roles::SUPER_USER`] always
/// exists and grants everything; [`Roles::ANONYMOUS`] is used, when
/// configured, for clients without credentials.
#[derive(Debug, Clone)]
pub struct Roles {
    roles: HashMap<String, Arc<Role>>,
}

impl Default for Roles {
    fn default() -> Self {
        Roles::new(HashMap::new())
    }
}

impl Roles {
    /// The built-in super-user role (the first-start `admin` user has it).
    pub const SUPER_USER: &'static str = "superuser";
    /// The role of clients without credentials, if configured.
    pub const ANONYMOUS: &'static str = "anonymous";

    /// The configured roles; `superuser` is added unless configured.
    pub fn new(mut roles: HashMap<String, Role>) -> Roles {
        roles
            .entry(Self::SUPER_USER.to_owned())
            .or_insert_with(Role::super_user);
        Roles {
            roles: roles.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        }
    }

    /// The role called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Role>> {
        self.roles.get(name)
    }

    /// Whether a role called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.roles.contains_key(name)
    }

    /// The role names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.roles.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Whether every topic matched by `filter` is also matched by `pattern`
/// (both MQTT topic filters). `chat/#` covers `chat`, `chat/a/+` and
/// `chat/#`; `chat/+` covers `chat/x` but not `chat/#`.
pub fn covers(pattern: &str, filter: &str) -> bool {
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            // `#` matches everything below, including the parent level.
            (Some("#"), _) => return true,
            (None, None) => return true,
            // The filter ended before the pattern (which is not at `#`).
            (Some(_), None) => return false,
            (None, Some(_)) => return false,
            (Some(pl), Some(fl)) => {
                if fl == "#" {
                    return false;
                }
                if pl == "+" {
                    continue;
                }
                if fl == "+" || pl != fl {
                    return false;
                }
            }
        }
    }
}

/// Whether topic name `topic` is matched by `filter` (`$` rule included:
/// a filter starting with a wildcard does not match a `$` topic).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    covers(filter, topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_of_filters_by_patterns() {
        let yes = [
            ("#", "a/b"),
            ("#", "#"),
            ("chat/#", "chat"),
            ("chat/#", "chat/#"),
            ("chat/#", "chat/a/+"),
            ("chat/+", "chat/x"),
            ("chat/+", "chat/+"),
            ("chat/+/m", "chat/+/m"),
            ("a/b", "a/b"),
            ("+/#", "x/y/z"),
        ];
        let no = [
            ("chat/+", "chat/#"),
            ("chat/+", "chat"),
            ("chat/x", "chat/+"),
            ("chat/#", "other"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("a/+/c", "a/#"),
        ];
        for (p, f) in yes {
            assert!(covers(p, f), "{p} should cover {f}");
        }
        for (p, f) in no {
            assert!(!covers(p, f), "{p} should not cover {f}");
        }
    }

    #[test]
    fn topics_starting_with_dollar_need_a_literal_first_level() {
        assert!(!matches("#", "$SYS/events/connected"));
        assert!(matches("$SYS/events/#", "$SYS/events/connected"));
        assert!(matches("chat/+", "chat/a"));
    }

    #[test]
    fn the_super_user_role_always_exists() {
        let roles = Roles::new(HashMap::new());
        assert!(roles.get(Roles::SUPER_USER).unwrap().super_user);
        assert!(!roles.contains(Roles::ANONYMOUS));
    }
}
