//! Finds libfibration to link against, in this order:
//!   1. FIBRATION_LIB_DIR (the folder holding libfibration.so);
//!   2. the `pkg-config` program (`pkg-config --libs fibration`);
//!   3. the meson build directories of the source tree this crate sits in
//!      (<repo>/build*/src), for working inside the repository.
//! The folder found is passed on to dependent crates as DEP_FIBRATION_LIB_DIR.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FIBRATION_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rustc-link-lib=dylib=fibration");

    if let Ok(dir) = env::var("FIBRATION_LIB_DIR") {
        emit_dir(Path::new(&dir));
        return;
    }
    if let Some(dirs) = pkg_config_dirs() {
        for dir in &dirs {
            emit_dir(dir);
        }
        return;
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    if let Some(root) = manifest.ancestors().nth(3) {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with("build") {
                    continue;
                }
                let lib = entry.path().join("src").join("libfibration.so");
                if let Ok(meta) = lib.metadata() {
                    found.push((meta.modified().unwrap(), entry.path().join("src")));
                }
            }
        }
        found.sort();
        if let Some((_, dir)) = found.pop() {
            emit_dir(&dir);
            return;
        }
    }
    println!(
        "cargo:warning=libfibration not found: set FIBRATION_LIB_DIR or install fibration.pc"
    );
}

fn emit_dir(dir: &Path) {
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}

fn pkg_config_dirs() -> Option<Vec<PathBuf>> {
    let out = Command::new("pkg-config")
        .args(["--libs-only-L", "fibration"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut dirs: Vec<PathBuf> = text
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("-L"))
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() {
        let libdir = Command::new("pkg-config")
            .args(["--variable=libdir", "fibration"])
            .output()
            .ok()?;
        let libdir = String::from_utf8_lossy(&libdir.stdout).trim().to_string();
        if !libdir.is_empty() {
            dirs.push(PathBuf::from(libdir));
        }
    }
    Some(dirs)
}
