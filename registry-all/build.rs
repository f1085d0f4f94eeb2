//! Links every registry backend this crate depends on.
//!
//! A backend submits its factory with `inventory`, which only runs if the backend's crate is
//! linked, and Rust links a dependency only when the code names it. This script names each
//! `registry-*` dependency of `Cargo.toml` (other than `registry-api`) in `backends.rs`, so that
//! adding a backend is one line: its dependency.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=Cargo.toml");
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap_or_else(|error| {
        panic!("registry-all/build.rs: cannot read Cargo.toml: {error}");
    });
    let mut section = "";
    let mut backends = String::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[dependencies]" {
            continue;
        }
        let name = line
            .split(['=', '.', ' '])
            .next()
            .unwrap_or_default()
            .trim_matches('"');
        if name.starts_with("registry-") && name != "registry-api" {
            let _ = writeln!(backends, "use {} as _;", name.replace('-', "_"));
        }
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("backends.rs");
    std::fs::write(&out, backends).unwrap_or_else(|error| {
        panic!(
            "registry-all/build.rs: cannot write {}: {error}",
            out.display()
        );
    });
}
