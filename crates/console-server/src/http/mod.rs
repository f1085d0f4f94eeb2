//! The HTTP API of DESIGN.md ("HTTP API"). Routes are listed in [`router`].

pub mod error;
pub mod extract;
pub mod middleware;
