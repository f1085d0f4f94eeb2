//! Every registry backend, linked in one place, and the configuration section that picks one.
//!
//! `registry.type` in the YAML names the backend (`standalone`, `zookeeper`, `mysql`, ...); its
//! section (`registry.<name>`) configures it ([`RegistryConfig`]). [`connect`] builds and
//! connects the named backend.
//!
//! Backends are found only through the factories they submit
//! ([`registry_api::RegistryFactory`]): this crate names none of them in its code. Adding a
//! backend is one line, its dependency in this crate's `Cargo.toml`; `build.rs` links every
//! `registry-*` dependency, so that its factory is submitted.

mod config;

use registry_api::{Registry, RegistryError};

pub use config::RegistryConfig;

// `use registry_<backend> as _;` for every backend dependency (see build.rs).
include!(concat!(env!("OUT_DIR"), "/backends.rs"));

/// Builds the configured backend without connecting it.
///
/// # Notable errors
/// [`RegistryError::UnknownType`] and [`RegistryError::Config`] naming the offending key.
pub fn build(config: &RegistryConfig) -> Result<Box<dyn Registry>, RegistryError> {
    config.backend()?.build()
}

/// Builds the configured backend and connects it, waiting at most the backend's connect timeout
/// (`registry.zookeeper.connect_timeout_ms`, for instance), or 15 s for a backend without one.
///
/// # Notable errors
/// Those of [`build`], and [`RegistryError::ConnectTimeout`] naming why the backend could not be
/// reached.
pub async fn connect(config: &RegistryConfig) -> Result<Box<dyn Registry>, RegistryError> {
    let backend = config.backend()?;
    let registry = backend.build()?;
    registry
        .connect(
            backend
                .connect_timeout()
                .unwrap_or(config::DEFAULT_CONNECT_TIMEOUT),
        )
        .await?;
    Ok(registry)
}
