//! The cluster test harness: real `console-server` processes on loopback.
