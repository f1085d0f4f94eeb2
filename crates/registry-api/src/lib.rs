//! registry-api
