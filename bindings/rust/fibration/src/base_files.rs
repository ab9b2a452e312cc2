//! Bases in files: [`Base::save`] writes the base network and its
//! projection (fib_base_save), [`Base::load`] reads them back
//! (fib_base_load), so that a base lifts and projects without its original.
//! docs/model-files.md describes the file.

use crate::graphs::path_cstring;
use crate::{check, Base, Element, Result};
use fibration_sys as sys;
use std::path::Path;
use std::ptr;

impl Base<'_> {
    /// Saves the base graph and its projection, each block in its own dtype
    /// (fib_base_save; the file is written beside `path` and renamed, so an
    /// existing file is replaced whole or not at all).
    pub fn save<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        self.save_dtype(path.as_ref(), 0)
    }

    /// [`Base::save`] with every weight tensor stored as `T` (an
    /// FIB_E_NONFINITE error names a weight float32 cannot hold).
    pub fn save_as<T: Element>(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_dtype(path.as_ref(), T::DTYPE)
    }

    fn save_dtype(&self, path: &Path, dtype: i32) -> Result<()> {
        let c = path_cstring(path)?;
        check(unsafe { sys::fib_base_save(self.ptr.as_ptr(), c.as_ptr(), dtype) })
    }
}

impl Base<'static> {
    /// Loads a base saved by [`Base::save`] or `fibration compress` (a file,
    /// or a base checkpoint directory, docs/model-files.md): it borrows no
    /// graph, [`Base::original_units`] and [`Base::projection`] answer from
    /// the file, and [`Base::lift`] expands it to the original's shape. The weights are copied (the
    /// file is closed on return), as every graph of this crate owns them.
    pub fn load<P: AsRef<Path>>(path: P) -> Result<Base<'static>> {
        let c = path_cstring(path.as_ref())?;
        let mut o = std::mem::MaybeUninit::<sys::fib_load_options>::zeroed();
        check(unsafe {
            sys::fib_load_options_init(o.as_mut_ptr(), std::mem::size_of::<sys::fib_load_options>())
        })?;
        let mut o = unsafe { o.assume_init() };
        o.copy = sys::FIB_COPY as i32;
        let mut b = ptr::null_mut();
        check(unsafe { sys::fib_base_load(c.as_ptr(), &o, &mut b) })?;
        Ok(Base::from_raw(b))
    }
}
