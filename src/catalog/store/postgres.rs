//! The shared record store: a PostgreSQL database
//! (`postgres://USER:PASSWORD@HOST:PORT/DB`) and a small pool of connections.
//!
//! Every change to products or images takes a number from `change_seq`
//! while holding one advisory lock, so changes commit in number order and a
//! replica that has applied everything up to N only ever needs `seq > N`
//! (the change feed, read by [`crate::catalog::shared`]). Shared files live
//! in the `files` table, each with a version from the same sequence.

use std::time::Duration;

use parking_lot::Mutex;
use postgres::{Client, NoTls};

use super::sql::PgTx;
use super::{args, Dialect, RecordStore, SqlError, Tx, TxResult};
use crate::catalog::CatalogError;

const ENGINE: &str = "PostgreSQL";
const SETTING: &str = "KNOCKOFF_STORE";
/// Serialises writers of `change_seq` (see the module doc).
const WRITE_LOCK: i64 = 0x6b6e_6f63;

pub struct PgStore {
    config: postgres::Config,
    address: String,
    pool: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.address)
    }
}

impl PgStore {
    /// Parses the setting, connects, and creates or migrates the schema.
    pub fn connect(url: &str) -> Result<PgStore, CatalogError> {
        let mut config: postgres::Config = url.parse().map_err(|e| CatalogError::Invalid {
            field: SETTING,
            detail: format!("not a PostgreSQL URL ({e}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        })?;
        config.connect_timeout(Duration::from_secs(3));
        let address = url::Url::parse(url).ok().map_or_else(
            || "?".into(),
            |u| format!("{}:{}/{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(5432), u.path().trim_start_matches('/')),
        );
        let store = PgStore { config, address, pool: Mutex::new(Vec::new()) };
        store.write_with(&mut |tx| super::schema::migrate(tx))?;
        Ok(store)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs `f` on a pooled connection. A connection that failed is dropped;
    /// an engine that does not answer is `Unavailable` (the service's 503).
    pub(crate) fn with<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T, SqlError>) -> Result<T, CatalogError> {
        let pooled = self.pool.lock().pop();
        let mut client = match pooled {
            Some(mut c) if !c.is_closed() => match f(&mut c) {
                // A pooled connection that died (the server restarted, the
                // network dropped it) is replaced once before giving up.
                Err(SqlError::Postgres(e)) if c.is_closed() || e.is_closed() => {
                    tracing::debug!("PostgreSQL connection lost ({e}); reconnecting");
                    self.config.connect(NoTls).map_err(|e| self.down(&e))?
                }
                other => return self.finish(c, other),
            },
            _ => self.config.connect(NoTls).map_err(|e| self.down(&e))?,
        };
        let result = f(&mut client);
        self.finish(client, result)
    }

    /// Returns a healthy connection to the pool and maps the error.
    fn finish<T>(&self, client: Client, result: Result<T, SqlError>) -> Result<T, CatalogError> {
        match result {
            Ok(v) => {
                self.pool.lock().push(client);
                Ok(v)
            }
            Err(SqlError::Postgres(e)) if e.as_db_error().is_none() || client.is_closed() => Err(self.down(&e)),
            Err(e) => {
                if !client.is_closed() {
                    self.pool.lock().push(client);
                }
                Err(CatalogError::Engine { engine: ENGINE, detail: e.to_string() })
            }
        }
    }

    /// A connection of its own (not pooled): its session locks end with it.
    pub fn connect_one(&self) -> Result<Client, CatalogError> {
        self.config.connect(NoTls).map_err(|e| self.down(&e))
    }

    /// Runs `f` while holding the session lock `key`, unless another
    /// session holds it (then `None`). The lock ends with the connection.
    pub fn with_session_lock<T>(&self, key: i64, f: impl FnOnce() -> T) -> Result<Option<T>, CatalogError> {
        let mut c = self.connect_one()?;
        let got: bool = c.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).map_err(|e| self.down(&e))?.get(0);
        Ok(got.then(f))
    }

    fn down(&self, e: &postgres::Error) -> CatalogError {
        let detail = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
        CatalogError::Unavailable { engine: ENGINE, setting: SETTING, address: self.address.clone(), detail }
    }

    /// Is it answering?
    pub fn ping(&self) -> Result<(), CatalogError> {
        self.with(|c| Ok(c.simple_query("SELECT 1").map(drop)?))
    }

    /// Every shared file: (name, version, content).
    pub fn files(&self) -> Result<Vec<(String, i64, String)>, CatalogError> {
        self.as_dyn().read(|tx| tx.query("SELECT name, version, content FROM files", &[], |r| Ok((r.string(0)?, r.i64(1)?, r.string(2)?))))
    }
}

impl RecordStore for PgStore {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn location(&self) -> String {
        self.address.clone()
    }

    fn read_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError> {
        self.with(|c| f(&mut PgTx(c)))
    }

    fn snapshot_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError> {
        self.with(|c| {
            let mut tx = c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
            f(&mut PgTx(&mut tx))?;
            Ok(tx.commit()?)
        })
    }

    fn write_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            f(&mut PgTx(&mut tx))?;
            Ok(tx.commit()?)
        })
    }

    fn file(&self, name: &str) -> Result<Option<String>, CatalogError> {
        self.as_dyn().read(|tx| tx.query_opt("SELECT content FROM files WHERE name = $1", args![name], |r| r.string(0)))
    }

    fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError> {
        self.as_dyn().write(|tx| {
            match content {
                Some(text) => tx.execute(
                    "INSERT INTO files(name, content, version) VALUES ($1, $2, nextval('change_seq'))
                     ON CONFLICT (name) DO UPDATE SET content = excluded.content, version = excluded.version",
                    args![name, text],
                )?,
                None => tx.execute("DELETE FROM files WHERE name = $1", args![name])?,
            };
            Ok(())
        })
    }

    fn as_dyn(&self) -> &dyn RecordStore {
        self
    }
}

/// The record operations (`meta`, `counts`, `add_images`, …) are written once on `dyn RecordStore`.
impl std::ops::Deref for PgStore {
    type Target = dyn RecordStore;
    fn deref(&self) -> &(dyn RecordStore + 'static) {
        self
    }
}
