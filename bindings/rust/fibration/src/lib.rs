//! Safe Rust API of libfibration: find the fibration symmetries (fibers,
//! flavoured opfibers, covers) of a network and compress it by them.
//!
//! ```no_run
//! use fibration::{Activation, ColorOptions, Graph};
//! let mut g = Graph::new()?;
//! let x = g.add_input(2)?;
//! let h = g.add_dense(x, 2, &[1.0, 2.0, 1.0, 2.0], Some(&[0.5, 0.5]))?;
//! g.set_activation(h, Activation::Relu)?;
//! let y = g.add_dense(h, 1, &[1.0, 1.0], None)?;
//! let fibers = g.color(&ColorOptions::default())?;
//! assert_eq!(fibers.num_classes(h)?, 1);
//! let base = g.compress(&fibers)?;
//! assert_eq!(base.graph().group_info(h)?.n_units, 1);
//! # let _ = y;
//! # Ok::<(), fibration::Error>(())
//! ```
//!
//! Ownership: weights are always copied into the graph (FIB_COPY), so a
//! [`Graph`] owns everything it reads. A [`Coloring`] and a [`Base`] borrow
//! the graph they were made from (a base read by [`Base::load`] borrows
//! none). Thread safety follows the C library:
//! distinct handles may be used from different threads and calls taking a
//! const handle may run concurrently, so all handle types are `Send` and
//! `Sync` (mutation needs `&mut`).

mod base_files;
mod graphs;
pub use graphs::{edgelist, Convention, QuotientArc};

use fibration_sys as sys;
use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::{self, NonNull};

/// A failed call: the FIB_E_* status, its name and the library's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub name: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.name)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn cstr(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn check(status: i32) -> Result<()> {
    if status == sys::FIB_OK {
        return Ok(());
    }
    // fib_last_error is thread-local and read right after the failing call
    let message = cstr(unsafe { sys::fib_last_error() });
    let name = cstr(unsafe { sys::fib_status_name(status) });
    Err(Error { code: status, name, message })
}

fn usage(message: String) -> Error {
    Error { code: sys::FIB_E_SHAPE, name: "FIB_E_SHAPE".into(), message }
}

/// The version of the loaded library, (major, minor, patch).
pub fn version() -> (i32, i32, i32) {
    let n = unsafe { sys::fib_version() };
    (n / 10000, n / 100 % 100, n % 100)
}

/// The FIB_FEATURE_* bits of this build and CPU.
pub fn features() -> u32 {
    unsafe { sys::fib_features() }
}

/// Activation applied to a group after its block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Linear,
    Relu,
    /// With its negative slope.
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
    Gelu,
    Silu,
    Relu6,
    Hardswish,
    Hardsigmoid,
    Mish,
    Softplus,
    /// GELU with the tanh approximation (GPT-2's gelu_new).
    GeluTanh,
}

impl Activation {
    fn code(self) -> (i32, f64) {
        match self {
            Activation::Linear => (sys::FIB_ACT_LINEAR, 0.0),
            Activation::Relu => (sys::FIB_ACT_RELU, 0.0),
            Activation::LeakyRelu(s) => (sys::FIB_ACT_LEAKY_RELU, s),
            Activation::Tanh => (sys::FIB_ACT_TANH, 0.0),
            Activation::Sigmoid => (sys::FIB_ACT_SIGMOID, 0.0),
            Activation::Gelu => (sys::FIB_ACT_GELU, 0.0),
            Activation::Silu => (sys::FIB_ACT_SILU, 0.0),
            Activation::Relu6 => (sys::FIB_ACT_RELU6, 0.0),
            Activation::Hardswish => (sys::FIB_ACT_HARDSWISH, 0.0),
            Activation::Hardsigmoid => (sys::FIB_ACT_HARDSIGMOID, 0.0),
            Activation::Mish => (sys::FIB_ACT_MISH, 0.0),
            Activation::Softplus => (sys::FIB_ACT_SOFTPLUS, 0.0),
            Activation::GeluTanh => (sys::FIB_ACT_GELU_TANH, 0.0),
        }
    }

    fn from_code(code: i32, parameter: f64) -> Option<Activation> {
        Some(match code {
            sys::FIB_ACT_LINEAR => Activation::Linear,
            sys::FIB_ACT_RELU => Activation::Relu,
            sys::FIB_ACT_LEAKY_RELU => Activation::LeakyRelu(parameter),
            sys::FIB_ACT_TANH => Activation::Tanh,
            sys::FIB_ACT_SIGMOID => Activation::Sigmoid,
            sys::FIB_ACT_GELU => Activation::Gelu,
            sys::FIB_ACT_SILU => Activation::Silu,
            sys::FIB_ACT_RELU6 => Activation::Relu6,
            sys::FIB_ACT_HARDSWISH => Activation::Hardswish,
            sys::FIB_ACT_HARDSIGMOID => Activation::Hardsigmoid,
            sys::FIB_ACT_MISH => Activation::Mish,
            sys::FIB_ACT_SOFTPLUS => Activation::Softplus,
            sys::FIB_ACT_GELU_TANH => Activation::GeluTanh,
            _ => return None,
        })
    }
}

/// Which symmetry a colouring describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symmetry {
    Fibers,
    Opfibers,
    Covers,
}

impl Symmetry {
    fn code(self) -> i32 {
        match self {
            Symmetry::Fibers => sys::FIB_SYM_FIBERS,
            Symmetry::Opfibers => sys::FIB_SYM_OPFIBERS,
            Symmetry::Covers => sys::FIB_SYM_COVERS,
        }
    }
}

/// How equal colour-sum signatures must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Equal up to the rounding of the sums.
    Exact,
    /// Every coordinate spans at most eps inside a class.
    Abs(f64),
    /// Abs with eps times the group's typical signature scale.
    Rel(f64),
    /// The seed authors' method: cosine distance, average linkage cut at eps.
    Cosine(f64),
    /// Complete linkage on the largest coordinate difference.
    Complete(f64),
    /// Ward linkage on the residual of the merge (see fibration.h).
    Ward(f64),
}

impl Tolerance {
    /// The FIB_TOL_* code and eps.
    fn code(self) -> (i32, f64) {
        match self {
            Tolerance::Exact => (sys::FIB_TOL_EXACT, 0.0),
            Tolerance::Abs(eps) => (sys::FIB_TOL_ABS, eps),
            Tolerance::Rel(eps) => (sys::FIB_TOL_REL, eps),
            Tolerance::Cosine(eps) => (sys::FIB_TOL_COSINE, eps),
            Tolerance::Complete(eps) => (sys::FIB_TOL_COMPLETE, eps),
            Tolerance::Ward(eps) => (sys::FIB_TOL_WARD, eps),
        }
    }
}

/// Options of [`Graph::color`].
#[derive(Debug, Clone, Copy)]
pub struct ColorOptions {
    pub symmetry: Symmetry,
    pub tolerance: Tolerance,
    /// 0 = the library default.
    pub n_threads: i32,
    /// Scale-aware merging (FIB_TOL_SCALED; fibers of dense groups only).
    pub scaled: bool,
}

impl Default for ColorOptions {
    fn default() -> Self {
        ColorOptions {
            symmetry: Symmetry::Fibers,
            tolerance: Tolerance::Exact,
            n_threads: 0,
            scaled: false,
        }
    }
}

impl ColorOptions {
    pub fn new(symmetry: Symmetry) -> Self {
        ColorOptions { symmetry, ..Default::default() }
    }
}

/// The C options for `options` (fib_color_options_init, then the fields).
fn raw_options(options: &ColorOptions) -> Result<sys::fib_color_options> {
    let mut o = std::mem::MaybeUninit::<sys::fib_color_options>::zeroed();
    check(unsafe {
        sys::fib_color_options_init(o.as_mut_ptr(), std::mem::size_of::<sys::fib_color_options>())
    })?;
    let mut o = unsafe { o.assume_init() };
    o.symmetry = options.symmetry.code();
    let (code, eps) = options.tolerance.code();
    o.tolerance = code | if options.scaled { sys::FIB_TOL_SCALED } else { 0 };
    o.eps = eps;
    o.n_threads = options.n_threads;
    Ok(o)
}

/// The grouping of [`Graph::compress_to_budget`]: the budget takes only
/// these (see fib_budget_options in fibration.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetTolerance {
    /// Let the library choose: `ScaledWard` when every hidden activation is
    /// linear, ReLU or leaky ReLU, else `Ward`.
    Auto,
    /// Ward linkage (FIB_TOL_WARD).
    Ward,
    /// Scale-aware Ward linkage (FIB_TOL_SCALED | FIB_TOL_WARD).
    ScaledWard,
}

impl BudgetTolerance {
    fn code(self) -> i32 {
        match self {
            BudgetTolerance::Auto => 0,
            BudgetTolerance::Ward => sys::FIB_TOL_WARD,
            BudgetTolerance::ScaledWard => sys::FIB_TOL_SCALED | sys::FIB_TOL_WARD,
        }
    }

    fn from_code(code: i32) -> Option<BudgetTolerance> {
        match code {
            0 => Some(BudgetTolerance::Auto),
            c if c == sys::FIB_TOL_WARD => Some(BudgetTolerance::Ward),
            c if c == sys::FIB_TOL_SCALED | sys::FIB_TOL_WARD => Some(BudgetTolerance::ScaledWard),
            _ => None,
        }
    }
}

/// Options of [`Graph::compress_to_budget`]; the defaults are the library's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetOptions {
    pub tolerance: BudgetTolerance,
    /// Exponent applied to each gain in the layer sensitivities.
    pub sensitivity_power: f64,
    /// Lloyd rounds after each scaled cut (0: none).
    pub refine_iterations: i32,
    /// Merge the inputs too (by the columns of the first block): the base
    /// then reads the mean of each input class ([`Base::projection`] of the
    /// input group gives the classes).
    pub merge_inputs: bool,
    /// With `merge_inputs`: multiplies the input group's sensitivity (> 0).
    pub input_sensitivity: f64,
    /// > 0: correct the merged layers without data, by least squares on
    /// synthetic inputs N(0, synthetic_scale^2) (the inputs' typical
    /// standard deviation); 0: no correction.
    pub synthetic_scale: f64,
    /// With the correction: the ridge of its least squares, relative to
    /// each Gram matrix's mean diagonal (finite, >= 0; 0: plain least
    /// squares).
    pub synthetic_ridge: f64,
    /// 0 = the library default; never changes a result.
    pub n_threads: i32,
}

impl Default for BudgetOptions {
    fn default() -> Self {
        BudgetOptions {
            tolerance: BudgetTolerance::Auto,
            sensitivity_power: 1.5,
            refine_iterations: 20,
            merge_inputs: false,
            input_sensitivity: 3.0,
            synthetic_scale: 0.0,
            synthetic_ridge: 1e-3,
            n_threads: 0,
        }
    }
}

/// What [`Graph::compress_to_budget`] chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetReport {
    /// The data-free first-order bound of the base (an estimate, not a
    /// worst-case guarantee).
    pub bound: f64,
    /// Parameters of the base, plus one per input when inputs were merged
    /// (their class index).
    pub n_parameters: i64,
    /// The grouping used (never `Auto`).
    pub chosen_tolerance: BudgetTolerance,
    /// Whether the synthetic correction was applied.
    pub corrected: bool,
}

/// The C options for `options` (fib_budget_options_init, then the fields).
fn raw_budget_options(options: &BudgetOptions) -> Result<sys::fib_budget_options> {
    let mut o = std::mem::MaybeUninit::<sys::fib_budget_options>::zeroed();
    check(unsafe {
        sys::fib_budget_options_init(o.as_mut_ptr(), std::mem::size_of::<sys::fib_budget_options>())
    })?;
    let mut o = unsafe { o.assume_init() };
    o.tolerance = options.tolerance.code();
    o.n_threads = options.n_threads;
    o.sensitivity_power = options.sensitivity_power;
    o.refine_iterations = options.refine_iterations;
    o.merge_inputs = options.merge_inputs as i32;
    o.input_sensitivity = options.input_sensitivity;
    o.synthetic_scale = options.synthetic_scale;
    o.synthetic_ridge = options.synthetic_ridge;
    Ok(o)
}

/// What produces a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Input,
    Dense,
    Sum,
}

/// A description of one group (fib_graph_group_info).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub op: Op,
    pub n_units: i64,
    pub activation: Option<Activation>,
    pub has_bias: bool,
    pub sources: Vec<i32>,
    pub is_output: bool,
    pub name: String,
}

/// An element type weights can be given in.
pub trait Element: Copy + Default + sealed::Sealed {
    const DTYPE: i32;
}
impl Element for f32 {
    const DTYPE: i32 = sys::FIB_DTYPE_F32;
}
impl Element for f64 {
    const DTYPE: i32 = sys::FIB_DTYPE_F64;
}
mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A network: groups of units connected by dense blocks and sums.
pub struct Graph {
    ptr: NonNull<sys::fib_graph>,
}

// The C library: distinct handles may be used from different threads, and
// functions taking a const handle may run concurrently on one handle. All
// mutation goes through &mut self, and the graph owns its (copied) weights.
unsafe impl Send for Graph {}
unsafe impl Sync for Graph {}

impl Drop for Graph {
    fn drop(&mut self) {
        unsafe { sys::fib_graph_free(self.ptr.as_ptr()) }
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("groups", &self.num_groups().unwrap_or(-1))
            .field("parameters", &self.num_parameters().unwrap_or(-1))
            .finish()
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Result<Graph> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::fib_graph_create(&mut p) })?;
        Ok(Graph { ptr: NonNull::new(p).expect("fib_graph_create returned NULL") })
    }

    fn from_raw(p: *mut sys::fib_graph) -> Graph {
        Graph { ptr: NonNull::new(p).expect("libfibration returned a NULL graph") }
    }

    fn raw(&self) -> *const sys::fib_graph {
        self.ptr.as_ptr()
    }

    /// Adds an input group of `n_units` units; returns its id.
    pub fn add_input(&mut self, n_units: i64) -> Result<i32> {
        let mut g = 0;
        check(unsafe { sys::fib_graph_add_input(self.ptr.as_ptr(), n_units, &mut g) })?;
        Ok(g)
    }

    /// Adds a dense block over group `source`: `weights` is n_out x n_in,
    /// row-major (n_in = the source's width); `bias` has n_out entries. The
    /// library copies both.
    pub fn add_dense<T: Element>(
        &mut self,
        source: i32,
        n_out: i64,
        weights: &[T],
        bias: Option<&[T]>,
    ) -> Result<i32> {
        let n_in = self.group_info(source)?.n_units;
        if n_out < 1 || weights.len() as i64 != n_out * n_in {
            return Err(usage(format!(
                "weights has {} entries; a {} x {} block needs {}",
                weights.len(),
                n_out,
                n_in,
                n_out * n_in
            )));
        }
        if let Some(b) = bias {
            if b.len() as i64 != n_out {
                return Err(usage(format!("bias has {} entries for {} units", b.len(), n_out)));
            }
        }
        let mut g = 0;
        check(unsafe {
            sys::fib_graph_add_dense(
                self.ptr.as_ptr(),
                source,
                n_out,
                T::DTYPE,
                weights.as_ptr().cast(),
                n_in,
                bias.map_or(ptr::null(), |b| b.as_ptr().cast()),
                sys::FIB_COPY,
                &mut g,
            )
        })?;
        Ok(g)
    }

    /// Adds the elementwise sum of two groups of equal width.
    pub fn add_sum(&mut self, a: i32, b: i32) -> Result<i32> {
        let mut g = 0;
        check(unsafe { sys::fib_graph_add_sum(self.ptr.as_ptr(), a, b, &mut g) })?;
        Ok(g)
    }

    pub fn set_activation(&mut self, group: i32, activation: Activation) -> Result<()> {
        let (code, parameter) = activation.code();
        check(unsafe { sys::fib_graph_set_activation(self.ptr.as_ptr(), group, code, parameter) })
    }

    pub fn set_name(&mut self, group: i32, name: &str) -> Result<()> {
        let name = CString::new(name).map_err(|_| usage("name contains a NUL byte".into()))?;
        check(unsafe { sys::fib_graph_set_group_name(self.ptr.as_ptr(), group, name.as_ptr()) })
    }

    pub fn set_eps(&mut self, group: i32, eps: f64) -> Result<()> {
        check(unsafe { sys::fib_graph_set_group_eps(self.ptr.as_ptr(), group, eps) })
    }

    pub fn num_groups(&self) -> Result<i32> {
        let mut n = 0;
        check(unsafe { sys::fib_graph_num_groups(self.raw(), &mut n) })?;
        Ok(n)
    }

    pub fn group_info(&self, group: i32) -> Result<GroupInfo> {
        let (mut op, mut n, mut act, mut par) = (0i32, 0i64, 0i32, 0f64);
        let (mut has_bias, mut n_src, mut is_out) = (0i32, 0i32, 0i32);
        check(unsafe {
            sys::fib_graph_group_info(
                self.raw(),
                group,
                &mut op,
                &mut n,
                &mut act,
                &mut par,
                &mut has_bias,
                &mut n_src,
                &mut is_out,
            )
        })?;
        let mut sources = Vec::with_capacity(n_src as usize);
        for i in 0..n_src {
            let mut s = 0;
            check(unsafe { sys::fib_graph_group_source(self.raw(), group, i, &mut s) })?;
            sources.push(s);
        }
        let op = match op {
            sys::FIB_OP_INPUT => Op::Input,
            sys::FIB_OP_DENSE => Op::Dense,
            _ => Op::Sum,
        };
        Ok(GroupInfo {
            op,
            n_units: n,
            activation: Activation::from_code(act, par),
            has_bias: has_bias != 0,
            sources,
            is_output: is_out != 0,
            name: cstr(unsafe { sys::fib_graph_group_name(self.raw(), group) }),
        })
    }

    /// Weights (n_units x n_in, row-major) and bias of a dense group.
    pub fn read_dense(&self, group: i32) -> Result<(Vec<f64>, Vec<f64>)> {
        let info = self.group_info(group)?;
        let n_in = match info.sources.first() {
            Some(&s) => self.group_info(s)?.n_units,
            None => 1,
        };
        let mut w = vec![0.0f64; (info.n_units * n_in) as usize];
        let mut b = vec![0.0f64; info.n_units as usize];
        check(unsafe {
            sys::fib_graph_read_dense(
                self.raw(),
                group,
                sys::FIB_DTYPE_F64,
                w.as_mut_ptr().cast(),
                n_in,
                b.as_mut_ptr().cast(),
            )
        })?;
        Ok((w, b))
    }

    /// Index arrays of a sum group: z[i] = a[index_a[i]] + b[index_b[i]].
    pub fn read_sum(&self, group: i32) -> Result<(Vec<i64>, Vec<i64>)> {
        let n = self.group_info(group)?.n_units as usize;
        let (mut a, mut b) = (vec![0i64; n], vec![0i64; n]);
        check(unsafe { sys::fib_graph_read_sum(self.raw(), group, a.as_mut_ptr(), b.as_mut_ptr()) })?;
        Ok((a, b))
    }

    pub fn num_parameters(&self) -> Result<i64> {
        let mut n = 0;
        check(unsafe { sys::fib_graph_num_parameters(self.raw(), &mut n) })?;
        Ok(n)
    }

    /// (sum of input widths, sum of output widths).
    pub fn io_width(&self) -> Result<(i64, i64)> {
        let (mut a, mut b) = (0, 0);
        check(unsafe { sys::fib_graph_io_width(self.raw(), &mut a, &mut b) })?;
        Ok((a, b))
    }

    /// The reference forward pass: `inputs` is batch x n_inputs row-major;
    /// returns batch x n_outputs.
    pub fn forward<T: Element>(&self, batch: i64, inputs: &[T]) -> Result<Vec<T>> {
        let (n_in, n_out) = self.io_width()?;
        if batch < 1 || inputs.len() as i64 != batch * n_in {
            return Err(usage(format!(
                "inputs has {} entries; batch {} x {} inputs needs {}",
                inputs.len(),
                batch,
                n_in,
                batch * n_in
            )));
        }
        let mut out = vec![T::default(); (batch * n_out) as usize];
        check(unsafe {
            sys::fib_graph_forward(
                self.raw(),
                batch,
                T::DTYPE,
                inputs.as_ptr().cast(),
                out.as_mut_ptr().cast(),
            )
        })?;
        Ok(out)
    }

    /// Colours the graph.
    pub fn color(&self, options: &ColorOptions) -> Result<Coloring<'_>> {
        let o = raw_options(options)?;
        let mut c = ptr::null_mut();
        check(unsafe { sys::fib_color(self.raw(), &o, &mut c) })?;
        Ok(Coloring::from_raw(c))
    }

    /// Colourings at the tolerances `eps` (ascending) made to nest
    /// (fib_color_nested): level t is the colouring at eps[t] joined with
    /// level t - 1, so a class never splits as eps grows. The mode is
    /// `options.tolerance` (not Exact); its own eps is ignored.
    pub fn color_nested(&self, options: &ColorOptions, eps: &[f64]) -> Result<Vec<Coloring<'_>>> {
        let mut o = raw_options(options)?;
        o.eps = 0.0;
        let n = i32::try_from(eps.len())
            .map_err(|_| usage(format!("color_nested: {} levels do not fit an int32", eps.len())))?;
        let mut levels: Vec<*mut sys::fib_coloring> = vec![ptr::null_mut(); eps.len()];
        check(unsafe { sys::fib_color_nested(self.raw(), &o, eps.as_ptr(), n, levels.as_mut_ptr()) })?;
        Ok(levels.into_iter().map(Coloring::from_raw).collect())
    }

    /// A colouring where every unit is its own class, to fill with
    /// [`Coloring::set_group`].
    pub fn coloring(&self, symmetry: Symmetry) -> Result<Coloring<'_>> {
        let mut c = ptr::null_mut();
        check(unsafe { sys::fib_coloring_create(self.raw(), symmetry.code(), &mut c) })?;
        Ok(Coloring::from_raw(c))
    }

    /// Whether `coloring` is balanced for this graph (eps 0: up to rounding).
    pub fn is_balanced(&self, coloring: &Coloring<'_>, eps: f64) -> Result<bool> {
        let mut b = 0;
        check(unsafe { sys::fib_coloring_is_balanced(self.raw(), coloring.ptr.as_ptr(), eps, &mut b) })?;
        Ok(b != 0)
    }

    /// Merges every class into one unit: the base.
    pub fn compress(&self, coloring: &Coloring<'_>) -> Result<Base<'_>> {
        let mut b = ptr::null_mut();
        check(unsafe { sys::fib_compress(self.raw(), coloring.ptr.as_ptr(), &mut b) })?;
        Ok(Base::from_raw(b))
    }

    /// Compresses to at most `budget_fraction` (0 < f <= 1) of the
    /// parameters, choosing the grouping and every hidden group's class
    /// count itself, data-free (fib_compress_to_budget_ex; the graph must be
    /// a chain of dense groups). The base is deterministic.
    pub fn compress_to_budget(
        &self,
        budget_fraction: f64,
        options: &BudgetOptions,
    ) -> Result<(Base<'_>, BudgetReport)> {
        let o = raw_budget_options(options)?;
        // all zero is a valid fib_budget_result (plain numbers); fields
        // appended in later versions stay zero
        let mut made: sys::fib_budget_result = unsafe { std::mem::zeroed() };
        made.struct_size = std::mem::size_of::<sys::fib_budget_result>();
        let mut b = ptr::null_mut();
        check(unsafe {
            sys::fib_compress_to_budget_ex(self.raw(), budget_fraction, &o, &mut made, &mut b)
        })?;
        let base = Base::from_raw(b);
        let chosen_tolerance = BudgetTolerance::from_code(made.chosen_tolerance).ok_or_else(|| Error {
            code: sys::FIB_E_INVALID,
            name: "FIB_E_INVALID".into(),
            message: format!("compress_to_budget: unknown chosen tolerance {}", made.chosen_tolerance),
        })?;
        Ok((
            base,
            BudgetReport {
                bound: made.bound,
                n_parameters: made.n_parameters,
                chosen_tolerance,
                corrected: made.corrected != 0,
            },
        ))
    }

    /// Symmetry breaking for continual learning (None: exact covers).
    pub fn break_symmetry(&self, coloring: Option<&Coloring<'_>>, seed: u64) -> Result<Graph> {
        let mut g = ptr::null_mut();
        let c = coloring.map_or(ptr::null(), |c| c.ptr.as_ptr() as *const _);
        check(unsafe { sys::fib_break_symmetry(self.raw(), c, seed, &mut g) })?;
        Ok(Graph::from_raw(g))
    }
}

/// A partition of every group's units into classes; borrows its graph.
pub struct Coloring<'g> {
    ptr: NonNull<sys::fib_coloring>,
    _graph: PhantomData<&'g Graph>,
}

unsafe impl Send for Coloring<'_> {}
unsafe impl Sync for Coloring<'_> {}

impl Drop for Coloring<'_> {
    fn drop(&mut self) {
        unsafe { sys::fib_coloring_free(self.ptr.as_ptr()) }
    }
}

impl<'g> Coloring<'g> {
    fn from_raw(p: *mut sys::fib_coloring) -> Coloring<'g> {
        Coloring { ptr: NonNull::new(p).expect("libfibration returned a NULL colouring"), _graph: PhantomData }
    }

    pub fn num_classes(&self, group: i32) -> Result<i64> {
        let mut n = 0;
        check(unsafe { sys::fib_coloring_num_classes(self.ptr.as_ptr(), group, &mut n) })?;
        Ok(n)
    }

    /// The class of every unit of a group (`n_units` entries).
    pub fn colors(&self, group: i32, n_units: i64) -> Result<Vec<i64>> {
        let mut out = vec![0i64; n_units.max(0) as usize];
        check(unsafe { sys::fib_coloring_colors(self.ptr.as_ptr(), group, out.as_mut_ptr(), n_units) })?;
        Ok(out)
    }

    pub fn class_sizes(&self, group: i32) -> Result<Vec<i64>> {
        let n = self.num_classes(group)?;
        let mut out = vec![0i64; n as usize];
        check(unsafe { sys::fib_coloring_class_sizes(self.ptr.as_ptr(), group, out.as_mut_ptr(), n) })?;
        Ok(out)
    }

    pub fn set_group(&mut self, group: i32, colors: &[i64]) -> Result<()> {
        check(unsafe {
            sys::fib_coloring_set_group(self.ptr.as_ptr(), group, colors.as_ptr(), colors.len() as i64)
        })
    }
}

/// A compressed network and the projection of the original units onto it.
pub struct Base<'g> {
    ptr: NonNull<sys::fib_base>,
    graph: ManuallyDrop<Graph>, // owned by the base: never freed on its own
    _graph: PhantomData<&'g Graph>,
}

unsafe impl Send for Base<'_> {}
unsafe impl Sync for Base<'_> {}

impl Drop for Base<'_> {
    fn drop(&mut self) {
        unsafe { sys::fib_base_free(self.ptr.as_ptr()) }
    }
}

impl fmt::Debug for Base<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Base").field("graph", &*self.graph).finish()
    }
}

impl<'g> Base<'g> {
    fn from_raw(p: *mut sys::fib_base) -> Base<'g> {
        let ptr = NonNull::new(p).expect("libfibration returned a NULL base");
        let graph = unsafe { sys::fib_base_graph(ptr.as_ptr()) } as *mut sys::fib_graph;
        Base { ptr, graph: ManuallyDrop::new(Graph::from_raw(graph)), _graph: PhantomData }
    }

    /// The base network (read-only; it lives as long as the base).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The number of units of `group` of the original graph (known to a
    /// loaded base from its file): the `n_units` of [`Base::projection`].
    pub fn original_units(&self, group: i32) -> Result<i64> {
        let mut n = 0;
        check(unsafe { sys::fib_base_original_units(self.ptr.as_ptr(), group, &mut n) })?;
        Ok(n)
    }

    /// For each unit of `group` of the original graph, its base unit.
    pub fn projection(&self, group: i32, n_units: i64) -> Result<Vec<i64>> {
        let mut out = vec![0i64; n_units.max(0) as usize];
        check(unsafe { sys::fib_base_projection(self.ptr.as_ptr(), group, out.as_mut_ptr(), n_units) })?;
        Ok(out)
    }

    /// Lifts the base (or `weights`, a graph shaped like the base graph) back
    /// to the original's shape.
    pub fn lift(&self, weights: Option<&Graph>) -> Result<Graph> {
        let mut g = ptr::null_mut();
        let w = weights.map_or(ptr::null(), |w| w.raw());
        check(unsafe { sys::fib_lift(self.ptr.as_ptr(), w, &mut g) })?;
        Ok(Graph::from_raw(g))
    }

    /// [`Base::lift`] with every lifted dense block made in `T`
    /// (fib_lift_dtype): `f32` rounds each as it is made, so the lift never
    /// holds float64 copies of them all (an FIB_E_NONFINITE error names a
    /// weight float32 cannot hold); `f64` keeps each base weight divided by
    /// its class size unrounded.
    pub fn lift_as<T: Element>(&self, weights: Option<&Graph>) -> Result<Graph> {
        let mut g = ptr::null_mut();
        let w = weights.map_or(ptr::null(), |w| w.raw());
        check(unsafe { sys::fib_lift_dtype(self.ptr.as_ptr(), w, T::DTYPE, &mut g) })?;
        Ok(Graph::from_raw(g))
    }
}
