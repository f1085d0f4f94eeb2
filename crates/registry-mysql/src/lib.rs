//! The MySQL/MariaDB backend of the registry SPI.

mod config;

pub use config::MysqlConfig;
