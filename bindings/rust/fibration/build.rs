//! Lets the tests and examples find libfibration at run time without
//! LD_LIBRARY_PATH: the folder fibration-sys linked against goes into their
//! rpath.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_FIBRATION_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_FIBRATION_LIB_DIR") {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{}", dir);
        println!("cargo:rustc-link-arg-examples=-Wl,-rpath,{}", dir);
    }
}
