//! The process-wide default pool behind [`offload()`](crate::offload), and
//! the environment variables that size it.
//!
//! It lives with the pool rather than with `offload` so that the builder's
//! `install_default` does not reach back into the module that uses pools.

use std::sync::OnceLock;

use super::BlockingPool;
use crate::error::ConfigError;

static DEFAULT_POOL: OnceLock<BlockingPool> = OnceLock::new();

/// Environment variables that size the default pool at its first use.
const ENV_MAX_THREADS: &str = "COLORSEAM_MAX_THREADS";
const ENV_QUEUE_CAPACITY: &str = "COLORSEAM_QUEUE_CAPACITY";
const ENV_MAX_ABANDONED: &str = "COLORSEAM_MAX_ABANDONED";

pub(crate) fn install_default(pool: BlockingPool) -> Result<(), ConfigError> {
    DEFAULT_POOL
        .set(pool)
        .map_err(|_already| ConfigError::DefaultAlreadySet)
}

/// The process-wide pool behind [`offload()`](crate::offload), created on first use.
///
/// It is named `colorseam-default` and sized by the builder's defaults
/// unless [`Builder::install_default`](crate::pool::Builder::install_default)
/// ran first, or these environment variables are set at first use:
/// `COLORSEAM_MAX_THREADS`, `COLORSEAM_QUEUE_CAPACITY`,
/// `COLORSEAM_MAX_ABANDONED`. A value that does not parse, or a combination
/// the builder rejects, is reported once on stderr and the defaults are used.
///
/// # Panics
///
/// Never in practice: if the configuration from the environment is
/// rejected, the builder's defaults are used, and they are valid (a unit
/// test checks it). The `expect` that says so names that invariant.
pub fn default_pool() -> &'static BlockingPool {
    DEFAULT_POOL.get_or_init(|| {
        let mut builder = BlockingPool::builder().name("colorseam-default");
        let mut bad = Vec::new();
        let mut read = |var: &str| -> Option<usize> {
            let value = std::env::var(var).ok()?;
            match value.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    bad.push(format!("{var}={value:?} is not a number"));
                    None
                }
            }
        };
        if let Some(n) = read(ENV_MAX_THREADS) {
            builder = builder.max_threads(n);
        }
        if let Some(n) = read(ENV_QUEUE_CAPACITY) {
            builder = builder.queue_capacity(n);
        }
        if let Some(n) = read(ENV_MAX_ABANDONED) {
            builder = builder.max_abandoned(n);
        }
        let pool = builder.build().unwrap_or_else(|error| {
            bad.push(error.to_string());
            BlockingPool::from_config(
                BlockingPool::builder()
                    .name("colorseam-default")
                    .into_config()
                    .expect("the builder's defaults are a valid configuration"),
            )
        });
        for problem in bad {
            eprintln!("colorseam: ignoring the default pool's environment: {problem}");
        }
        pool
    })
}
