//! The cluster test harness: real `console-server` processes on loopback.

pub mod binary;
