//! The ZooKeeper backend of the registry SPI.

#![allow(dead_code)] // Used by the modules that follow.

mod cache;
mod config;
mod error;
mod lock;
mod session;
mod tree;
mod watch;

pub use config::ZookeeperConfig;
