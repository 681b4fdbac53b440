//! Arguments of the commands that move a whole catalog: where it lives
//! ([`LocationArgs`]), `backup`, `restore` and `migrate`.

use std::path::PathBuf;

use clap::Args;

/// Where a catalog lives, for commands that only read or write its records.
#[derive(Debug, Clone, Args)]
pub struct LocationArgs {
    /// Index folder.
    #[arg(long = "index", env = "KNOCKOFF_INDEX", default_value = "index")]
    pub dir: PathBuf,
    /// Shared backend: the PostgreSQL store, postgres://USER:PASSWORD@HOST:PORT/DB (with --vectors; replaces --index; prefer the environment variable).
    #[arg(long, env = "KNOCKOFF_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Shared backend: the Milvus server, milvus://USER:PASSWORD@HOST:PORT (with --store).
    #[arg(long, env = "KNOCKOFF_VECTORS", hide_env_values = true)]
    pub vectors: Option<String>,
}

impl LocationArgs {
    /// The catalog there with its own model and settings (nothing here creates one).
    #[must_use]
    pub fn spec(&self) -> crate::index::IndexSpec {
        crate::index::IndexSpec {
            store: self.store.clone().filter(|s| !s.is_empty()),
            vectors: self.vectors.clone().filter(|s| !s.is_empty()),
            ..crate::index::IndexSpec::new(&self.dir)
        }
    }

    pub fn location(&self) -> anyhow::Result<crate::catalog::Location> {
        Ok(match self.spec().shared()? {
            Some(s) => crate::catalog::Location::Shared(s),
            None => crate::catalog::Location::Folder(self.dir.clone()),
        })
    }
}

/// Where the models are, for commands that open a catalog without embedding
/// (the catalog names its model; its manifest gives the vectors' size).
#[derive(Debug, Clone, Default, Args)]
pub struct ModelsArg {
    /// Folder holding models/<name>/model.toml (default: ./models found from the current or executable's folder).
    #[arg(long, env = "KNOCKOFF_MODELS")]
    pub models: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new folder to write the backup into (must not exist, or be empty).
    pub dest: PathBuf,
    /// The catalog to back up.
    #[command(flatten)]
    pub from: LocationArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub models: ModelsArg,
    /// A folder written by `knockoff backup`.
    pub src: PathBuf,
    /// Where to restore it: an index folder or the shared backend holding no catalog yet.
    #[command(flatten)]
    pub to: LocationArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub models: ModelsArg,
    /// Source index folder.
    #[arg(long, conflicts_with_all = ["from_store", "from_vectors", "from_shared"], required_unless_present_any = ["from_store", "from_shared"])]
    pub from: Option<PathBuf>,
    /// Source: the shared backend `KNOCKOFF_STORE` and `KNOCKOFF_VECTORS` name (their passwords stay out of the process list).
    #[arg(long, conflicts_with_all = ["from_store", "from_vectors"])]
    pub from_shared: bool,
    /// Source shared backend: PostgreSQL URL (with --from-vectors; a password here is visible to local users: prefer --from-shared).
    #[arg(long, requires = "from_vectors")]
    pub from_store: Option<String>,
    /// Source shared backend: Milvus URL (with --from-store).
    #[arg(long, requires = "from_store")]
    pub from_vectors: Option<String>,
    /// Target index folder.
    #[arg(long, conflicts_with_all = ["to_store", "to_vectors", "to_shared"], required_unless_present_any = ["to_store", "to_shared"])]
    pub to: Option<PathBuf>,
    /// Target: the shared backend `KNOCKOFF_STORE` and `KNOCKOFF_VECTORS` name (their passwords stay out of the process list).
    #[arg(long, conflicts_with_all = ["to_store", "to_vectors"])]
    pub to_shared: bool,
    /// Target shared backend: PostgreSQL URL (with --to-vectors; a password here is visible to local users: prefer --to-shared).
    #[arg(long, requires = "to_vectors")]
    pub to_store: Option<String>,
    /// Target shared backend: Milvus URL (with --to-store).
    #[arg(long, requires = "to_store")]
    pub to_vectors: Option<String>,
}

impl MigrateArgs {
    fn endpoint(
        dir: Option<&PathBuf>,
        shared: bool,
        store: Option<&String>,
        vectors: Option<&String>,
    ) -> anyhow::Result<crate::catalog::Location> {
        use crate::catalog::{Location, SharedSpec};
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(match (dir, store, vectors) {
            (Some(d), _, _) => Location::Folder(d.clone()),
            (None, Some(s), Some(v)) => Location::Shared(SharedSpec { store: s.clone(), vectors: v.clone() }),
            _ if shared => match (env("KNOCKOFF_STORE"), env("KNOCKOFF_VECTORS")) {
                (Some(store), Some(vectors)) => Location::Shared(SharedSpec { store, vectors }),
                _ => anyhow::bail!("--from-shared / --to-shared need KNOCKOFF_STORE and KNOCKOFF_VECTORS in the environment"),
            },
            // clap requires one of the forms.
            _ => Location::Folder(PathBuf::from("index")),
        })
    }
    pub fn source(&self) -> anyhow::Result<crate::catalog::Location> {
        Self::endpoint(self.from.as_ref(), self.from_shared, self.from_store.as_ref(), self.from_vectors.as_ref())
    }
    pub fn target(&self) -> anyhow::Result<crate::catalog::Location> {
        Self::endpoint(self.to.as_ref(), self.to_shared, self.to_store.as_ref(), self.to_vectors.as_ref())
    }
    /// Whether a password was given on the command line.
    #[must_use]
    pub fn passwords_in_argv(&self) -> bool {
        let has_password = |u: &Option<String>| u.as_deref().and_then(|u| url::Url::parse(u).ok()).is_some_and(|u| u.password().is_some());
        [&self.from_store, &self.from_vectors, &self.to_store, &self.to_vectors].into_iter().any(has_password)
    }
}
