//! The cluster test harness: real `console-server` processes on loopback.

pub mod binary;
pub mod ports;
pub mod processes;
pub mod proxy;
pub mod services;
pub mod wait;
pub mod zookeeper_server;
