//! The ZooKeeper backend of the registry SPI.

mod config;

pub use config::ZookeeperConfig;
