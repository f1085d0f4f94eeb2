//! Statements with named parameters, for the owner writes that take many values.
//!
//! sqlx binds by position (`?`): in a statement with a dozen parameters a reader cannot tell
//! which value fills which placeholder. A [`Named`] statement names each one in its text
//! (`t.claimed_by = :node`) and takes its values by name; a name may appear several times (the
//! lease and the fence both use `:node` and `:epoch`) and is given once. The text is rewritten to
//! positional `?` once per process, so the prepared-statement cache sees one fixed statement.

use std::sync::OnceLock;

use sqlx::query::Query;
use sqlx::{Database, MySql, Sqlite};

/// One value of a named parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param<'a> {
    Int(i64),
    /// Text, or NULL.
    Text(Option<&'a str>),
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Self {
        Self::Text(Some(value))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Self::Text(value)
    }
}

/// The databases a [`Named`] statement runs on: how each binds a [`Param`].
pub(crate) trait BindParam: Database {
    fn bind_param<'q>(
        query: Query<'q, Self, Self::Arguments>,
        value: Param<'_>,
    ) -> Query<'q, Self, Self::Arguments>;
}

impl BindParam for MySql {
    fn bind_param<'q>(
        query: Query<'q, Self, Self::Arguments>,
        value: Param<'_>,
    ) -> Query<'q, Self, Self::Arguments> {
        match value {
            Param::Int(value) => query.bind(value),
            Param::Text(value) => query.bind(value),
        }
    }
}

impl BindParam for Sqlite {
    fn bind_param<'q>(
        query: Query<'q, Self, Self::Arguments>,
        value: Param<'_>,
    ) -> Query<'q, Self, Self::Arguments> {
        match value {
            Param::Int(value) => query.bind(value),
            Param::Text(value) => query.bind(value),
        }
    }
}

/// A statement whose parameters are `:name`s. Declared as a `static`.
pub(crate) struct Named {
    text: &'static str,
    positional: OnceLock<Positional>,
}

/// The statement as the database sees it: `?` in place of each `:name`, and the names in order.
#[derive(Debug)]
struct Positional {
    sql: String,
    names: Vec<&'static str>,
}

impl Named {
    pub(crate) const fn new(text: &'static str) -> Self {
        Self {
            text,
            positional: OnceLock::new(),
        }
    }

    /// The statement with `values` bound to its names.
    ///
    /// # Panics
    /// If the statement names a parameter that `values` does not give, or `values` gives one the
    /// statement does not name: the statement and its caller disagree, a bug in this crate that
    /// any run of the statement shows (the store's tests run every one on both databases).
    pub(crate) fn bind<DB: BindParam>(
        &'static self,
        values: &[(&str, Param<'_>)],
    ) -> Query<'static, DB, DB::Arguments> {
        let positional = self.positional.get_or_init(|| positional(self.text));
        for (name, _) in values {
            assert!(
                positional.names.contains(name),
                "statement has no parameter :{name}: {}",
                self.text
            );
        }
        let mut query = sqlx::query(positional.sql.as_str());
        for name in &positional.names {
            let Some((_, value)) = values.iter().find(|(given, _)| given == name) else {
                panic!("no value for :{name} in {}", self.text);
            };
            query = DB::bind_param(query, *value);
        }
        query
    }
}

/// Rewrites each `:name` (a letter or `_`, then letters, digits, `_`) outside quoted literals to
/// `?`, recording the names in order.
fn positional(text: &'static str) -> Positional {
    let mut sql = String::with_capacity(text.len());
    let mut names = Vec::new();
    let mut quoted = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let starts_name = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if c == '\'' {
            quoted = !quoted;
        }
        if c == ':' && !quoted && starts_name {
            names.push(&after[..name_len]);
            sql.push('?');
            rest = &after[name_len..];
        } else {
            sql.push(c);
            rest = after;
        }
    }
    Positional { sql, names }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_positional_in_order_and_literals_are_left_alone() {
        let p = positional(
            "UPDATE t SET a = :node, b = ':not_a_name', c = :epoch WHERE n = :node AND e = :epoch",
        );
        assert_eq!(
            p.sql,
            "UPDATE t SET a = ?, b = ':not_a_name', c = ? WHERE n = ? AND e = ?"
        );
        assert_eq!(p.names, ["node", "epoch", "node", "epoch"]);
    }

    static STATEMENT: Named = Named::new("SELECT :a, :b, :a");

    #[test]
    fn every_name_is_bound_once_per_occurrence() {
        let query = STATEMENT.bind::<Sqlite>(&[("b", Param::Int(2)), ("a", "x".into())]);
        assert_eq!(sqlx::Execute::sql(query).as_str(), "SELECT ?, ?, ?");
    }

    #[test]
    #[should_panic(expected = "no value for :b")]
    fn a_missing_value_is_a_bug() {
        let _ = STATEMENT.bind::<Sqlite>(&[("a", Param::Int(1))]);
    }

    #[test]
    #[should_panic(expected = "no parameter :c")]
    fn an_extra_value_is_a_bug() {
        let _ = STATEMENT.bind::<Sqlite>(&[
            ("a", Param::Int(1)),
            ("b", Param::Int(2)),
            ("c", Param::Int(3)),
        ]);
    }
}
