//! The few SQL words the record store speaks to both engines: arguments
//! ([`Arg`]), result rows ([`Row`]), a statement runner ([`Tx`]) and the
//! [`Dialect`] differences, so that every record kind is written once.
//!
//! Statements are written in the subset `SQLite` and PostgreSQL share, with
//! PostgreSQL's `$1, $2, …` placeholders and three tokens for what differs:
//! `{touch}` (PostgreSQL numbers every change to a product or image for the
//! replicas' change feed; `SQLite` has no feed), `{now_ms}` (the engine's clock,
//! in milliseconds since 1970) and `{skip_locked}` (PostgreSQL's row-claim
//! clause; `SQLite` has one writer). [`Dialect::translate`] rewrites them.

use std::borrow::Cow;

/// Which engine a statement goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql` in this engine's words (see the module doc).
    pub fn translate(self, sql: &str) -> Cow<'_, str> {
        if !sql.contains(['{', '$']) {
            return Cow::Borrowed(sql);
        }
        let (touch, now_ms, skip_locked) = match self {
            Dialect::Sqlite => ("", "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)", ""),
            Dialect::Postgres => {
                (", seq = nextval('change_seq')", "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", " FOR UPDATE SKIP LOCKED")
            }
        };
        let out = sql.replace("{touch}", touch).replace("{now_ms}", now_ms).replace("{skip_locked}", skip_locked);
        match self {
            // `?N` is SQLite's numbered placeholder (`$N` would be a named one, numbered by first use).
            Dialect::Sqlite => Cow::Owned(numbered(&out)),
            Dialect::Postgres => Cow::Owned(out),
        }
    }

    /// A column type written once: `{bigint}`, `{blob}`, `{id}` (an auto-numbered primary key).
    pub fn ddl(self, sql: &str) -> String {
        let (id, blob) = match self {
            Dialect::Sqlite => ("INTEGER PRIMARY KEY", "BLOB"),
            Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
        };
        sql.replace("{id}", id).replace("{blob}", blob).replace("{bigint}", "BIGINT")
    }
}

/// `$N` → `?N` outside string literals.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// `$first, $first+1, …`: `n` placeholders for an `IN (…)` list.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// One statement argument, borrowed from the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Arg<'a> {
                $e
            }
        })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(v),
    i32 => |v| Arg::Int(i64::from(v)),
    u32 => |v| Arg::Int(i64::from(v)),
    usize => |v| Arg::Int(i64::try_from(v).unwrap_or(i64::MAX)),
    f64 => |v| Arg::Real(v),
    bool => |v| Arg::Bool(v),
    &'a str => |v| Arg::Text(v),
    &'a String => |v| Arg::Text(v),
    &'a [u8] => |v| Arg::Bytes(v),
    &'a Vec<u8> => |v| Arg::Bytes(v),
    Option<&'a str> => |v| v.map_or(Arg::Null, Arg::Text),
    &'a Option<String> => |v| v.as_deref().map_or(Arg::Null, Arg::Text),
    Option<&'a [u8]> => |v| v.map_or(Arg::Null, Arg::Bytes),
    &'a Option<Vec<u8>> => |v| v.as_deref().map_or(Arg::Null, Arg::Bytes),
    Option<i64> => |v| v.map_or(Arg::Null, Arg::Int),
}

/// `args![a, b, c]`: a slice of [`Arg`]s.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$($crate::catalog::store::Arg::from($a)),*][..]
    };
}
pub(crate) use args;

/// What a statement failed on.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error("column {column}: expected {want}")]
    Type { column: usize, want: &'static str },
    #[error("the statement returned no row")]
    NoRow,
    /// A stored value that does not read back (a bad label, a bad JSON list).
    #[error("{0}")]
    Data(String),
}

/// A result row, read by column index.
pub trait Row {
    fn int(&self, i: usize) -> Result<Option<i64>, SqlError>;
    fn text(&self, i: usize) -> Result<Option<&str>, SqlError>;
    fn bytes(&self, i: usize) -> Result<Option<&[u8]>, SqlError>;
}

impl dyn Row + '_ {
    pub fn i64(&self, i: usize) -> Result<i64, SqlError> {
        self.int(i)?.ok_or(SqlError::Type { column: i, want: "an integer, not NULL" })
    }
    /// Integer columns holding 0/1 (`SQLite`) or booleans (PostgreSQL).
    pub fn bool(&self, i: usize) -> Result<bool, SqlError> {
        Ok(self.i64(i)? != 0)
    }
    pub fn u32(&self, i: usize) -> Result<u32, SqlError> {
        u32::try_from(self.i64(i)?).map_err(|_| SqlError::Type { column: i, want: "a 32-bit size" })
    }
    pub fn str(&self, i: usize) -> Result<&str, SqlError> {
        self.text(i)?.ok_or(SqlError::Type { column: i, want: "text, not NULL" })
    }
    pub fn string(&self, i: usize) -> Result<String, SqlError> {
        self.str(i).map(str::to_string)
    }
    pub fn opt_string(&self, i: usize) -> Result<Option<String>, SqlError> {
        Ok(self.text(i)?.map(str::to_string))
    }
    pub fn blob(&self, i: usize) -> Result<&[u8], SqlError> {
        self.bytes(i)?.ok_or(SqlError::Type { column: i, want: "bytes, not NULL" })
    }
    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, SqlError> {
        Ok(self.bytes(i)?.map(<[u8]>::to_vec))
    }
    /// A little-endian f32 vector.
    pub fn vector(&self, i: usize) -> Result<Vec<f32>, SqlError> {
        Ok(crate::util::f32s_from_le_bytes(self.blob(i)?))
    }
}

/// Runs statements: inside a write transaction, or plain reads.
pub trait Tx {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, SqlError>;
    /// Runs several statements without arguments (schema changes).
    fn batch(&mut self, sql: &str) -> Result<(), SqlError>;
    /// Runs a query, handing each row to `f`.
    fn each(&mut self, sql: &str, args: &[Arg<'_>], f: &mut dyn FnMut(&dyn Row) -> Result<(), SqlError>) -> Result<(), SqlError>;
}

impl dyn Tx + '_ {
    /// Every row, each read by `f`.
    pub fn query<T>(&mut self, sql: &str, args: &[Arg<'_>], f: impl Fn(&dyn Row) -> Result<T, SqlError>) -> Result<Vec<T>, SqlError> {
        let mut out = Vec::new();
        self.each(sql, args, &mut |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if any.
    pub fn query_opt<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl Fn(&dyn Row) -> Result<T, SqlError>,
    ) -> Result<Option<T>, SqlError> {
        let mut out = None;
        self.each(sql, args, &mut |r| {
            if out.is_none() {
                out = Some(f(r)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row; [`SqlError::NoRow`] without one.
    pub fn query_one<T>(&mut self, sql: &str, args: &[Arg<'_>], f: impl Fn(&dyn Row) -> Result<T, SqlError>) -> Result<T, SqlError> {
        self.query_opt(sql, args, f)?.ok_or(SqlError::NoRow)
    }
}

// -- SQLite ------------------------------------------------------------------

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Real(v) => ValueRef::Real(v),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Bytes(b) => ValueRef::Blob(b),
            Arg::Bool(b) => ValueRef::Integer(i64::from(b)),
        }))
    }
}

impl Row for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<Option<i64>, SqlError> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            _ => Err(SqlError::Type { column: i, want: "an integer" }),
        }
    }
    fn text(&self, i: usize) -> Result<Option<&str>, SqlError> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t).map(Some).map_err(|_| SqlError::Type { column: i, want: "UTF-8 text" }),
            _ => Err(SqlError::Type { column: i, want: "text" }),
        }
    }
    fn bytes(&self, i: usize) -> Result<Option<&[u8]>, SqlError> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) | ValueRef::Text(b) => Ok(Some(b)),
            _ => Err(SqlError::Type { column: i, want: "bytes" }),
        }
    }
}

/// Statements on a `SQLite` connection (or a transaction, which derefs to one).
pub struct SqliteTx<'c>(pub &'c rusqlite::Connection);

impl Tx for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, SqlError> {
        let mut st = self.0.prepare_cached(&Dialect::Sqlite.translate(sql))?;
        Ok(st.execute(rusqlite::params_from_iter(args))? as u64)
    }
    fn batch(&mut self, sql: &str) -> Result<(), SqlError> {
        Ok(self.0.execute_batch(sql)?)
    }
    fn each(&mut self, sql: &str, args: &[Arg<'_>], f: &mut dyn FnMut(&dyn Row) -> Result<(), SqlError>) -> Result<(), SqlError> {
        let mut st = self.0.prepare_cached(&Dialect::Sqlite.translate(sql))?;
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            f(r)?;
        }
        Ok(())
    }
}

// -- PostgreSQL --------------------------------------------------------------

impl postgres::types::ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        // Adapts to the column's type (an INTEGER column takes an i32, a BOOLEAN a bool).
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) => match *ty {
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                Type::FLOAT8 => (v as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().as_str().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Arg::Real(v) => match *ty {
                Type::FLOAT4 => (v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Bytes(b) => b.to_sql(ty, out),
            Arg::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                _ => Arg::Int(i64::from(b)).to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl Row for postgres::Row {
    fn int(&self, i: usize) -> Result<Option<i64>, SqlError> {
        use postgres::types::Type;
        let ty = self.columns().get(i).ok_or(SqlError::Type { column: i, want: "a column" })?.type_().clone();
        Ok(match ty {
            Type::INT2 => self.try_get::<_, Option<i16>>(i)?.map(i64::from),
            Type::INT4 => self.try_get::<_, Option<i32>>(i)?.map(i64::from),
            Type::BOOL => self.try_get::<_, Option<bool>>(i)?.map(i64::from),
            _ => self.try_get::<_, Option<i64>>(i)?,
        })
    }
    fn text(&self, i: usize) -> Result<Option<&str>, SqlError> {
        Ok(self.try_get::<_, Option<&str>>(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Option<&[u8]>, SqlError> {
        Ok(self.try_get::<_, Option<&[u8]>>(i)?)
    }
}

/// Statements on a PostgreSQL connection or transaction.
pub struct PgTx<'c, C: postgres::GenericClient>(pub &'c mut C);

impl<C: postgres::GenericClient> Tx for PgTx<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, SqlError> {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        Ok(self.0.execute(Dialect::Postgres.translate(sql).as_ref(), &params)?)
    }
    fn batch(&mut self, sql: &str) -> Result<(), SqlError> {
        Ok(self.0.batch_execute(sql)?)
    }
    fn each(&mut self, sql: &str, args: &[Arg<'_>], f: &mut dyn FnMut(&dyn Row) -> Result<(), SqlError>) -> Result<(), SqlError> {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        for r in self.0.query(Dialect::Postgres.translate(sql).as_ref(), &params)? {
            f(&r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_tokens_become_each_engines_words() {
        let sql = "UPDATE t SET a = $1, b = '$2'{touch} WHERE c < {now_ms} AND d = $12";
        let lite = Dialect::Sqlite.translate(sql);
        assert_eq!(lite, "UPDATE t SET a = ?1, b = '$2' WHERE c < CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) AND d = ?12");
        let pg = Dialect::Postgres.translate(sql);
        assert!(pg.starts_with("UPDATE t SET a = $1, b = '$2', seq = nextval('change_seq') WHERE c < CAST(EXTRACT"), "{pg}");
        assert!(matches!(Dialect::Sqlite.translate("SELECT 1"), Cow::Borrowed(_)));
        assert_eq!(Dialect::Postgres.ddl("x {id}, y {blob}"), "x BIGSERIAL PRIMARY KEY, y BYTEA");
    }
}
