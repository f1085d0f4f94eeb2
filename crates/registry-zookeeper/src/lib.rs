//! The ZooKeeper backend of the registry SPI.

#![allow(dead_code)] // Used by the modules that follow.

mod config;
mod error;
mod session;
mod tree;

pub use config::ZookeeperConfig;
