//! General directed graphs: node groups joined by arcs (gene regulatory
//! networks, connectomes), from slices or from an edge-list file, with node
//! names, conventions and the quotient (base) graph. See docs/graphs.md.

use crate::{check, cstr, usage, Coloring, Graph, Result};
use fibration_sys as sys;
use std::ffi::CString;
use std::path::Path;
use std::ptr;

/// Format flags of [`Graph::read_edgelist`] (FIB_EDGELIST_*); OR them.
pub mod edgelist {
    use fibration_sys as sys;
    /// Detect the header and the delimiter.
    pub const AUTO: u32 = sys::FIB_EDGELIST_AUTO;
    /// The first line is a header.
    pub const HEADER: u32 = sys::FIB_EDGELIST_HEADER;
    /// No header: `src dst [type [weight]]`.
    pub const NO_HEADER: u32 = sys::FIB_EDGELIST_NO_HEADER;
    pub const COMMA: u32 = sys::FIB_EDGELIST_COMMA;
    pub const TAB: u32 = sys::FIB_EDGELIST_TAB;
    /// Fields separated by runs of blanks.
    pub const WHITESPACE: u32 = sys::FIB_EDGELIST_WHITESPACE;
    /// No header: `src dst weight`.
    pub const THIRD_IS_WEIGHT: u32 = sys::FIB_EDGELIST_THIRD_IS_WEIGHT;
    /// No header: `src dst type [weight]`, even when the types are
    /// fractional numbers (otherwise refused as ambiguous).
    pub const THIRD_IS_TYPE: u32 = sys::FIB_EDGELIST_THIRD_IS_TYPE;
}

/// How the colouring of node groups starts (fib_graph_set_convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// The definition: one initial class per node group (the default).
    Pure,
    /// FastFibration's; reproduces published fiber counts (E. coli: 555).
    Published,
    /// networkfibers': like Published, starting from weakly connected components.
    NetworkFibers,
}

/// One arc of the quotient graph: classes of node groups, the edge type,
/// the weight sum (the multiplicity when unweighted) and the arcs merged.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotientArc {
    pub source_group: i32,
    pub source_class: i64,
    pub target_group: i32,
    pub target_class: i64,
    pub edge_type: i32,
    pub weight: f64,
    pub multiplicity: i64,
}

pub(crate) fn path_cstring(path: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    CString::new(bytes).map_err(|_| usage("the path contains a NUL byte".into()))
}

impl Graph {
    /// Adds a group of `n_nodes` graph nodes; returns its id.
    pub fn add_nodes(&mut self, n_nodes: i64) -> Result<i32> {
        let mut g = 0;
        check(unsafe { sys::fib_graph_add_nodes(self.ptr.as_ptr(), n_nodes, &mut g) })?;
        Ok(g)
    }

    /// Adds arcs `sources[i] -> targets[i]` from node group `source_group` to
    /// `target_group` (copied). `weights`: one per arc, or None (each arc
    /// counts 1); `types`: one edge type per arc, or None.
    pub fn add_edges(
        &mut self,
        source_group: i32,
        target_group: i32,
        sources: &[i64],
        targets: &[i64],
        weights: Option<&[f64]>,
        types: Option<&[i32]>,
    ) -> Result<()> {
        let m = sources.len();
        if targets.len() != m
            || weights.map_or(false, |w| w.len() != m)
            || types.map_or(false, |t| t.len() != m)
        {
            return Err(usage(format!(
                "{} sources, {} targets, {} weights, {} types: one each per arc",
                m,
                targets.len(),
                weights.map_or(m, |w| w.len()),
                types.map_or(m, |t| t.len())
            )));
        }
        check(unsafe {
            sys::fib_graph_add_edges(
                self.ptr.as_ptr(),
                source_group,
                target_group,
                m as i64,
                sources.as_ptr(),
                targets.as_ptr(),
                weights.map_or(ptr::null(), |w| w.as_ptr()),
                types.map_or(ptr::null(), |t| t.as_ptr()),
                sys::FIB_COPY,
            )
        })
    }

    /// A graph of one node group (group 0) with arcs `sources[i] ->
    /// targets[i]`; `n_nodes` defaults to the largest index + 1.
    pub fn from_edges(
        sources: &[i64],
        targets: &[i64],
        weights: Option<&[f64]>,
        types: Option<&[i32]>,
        n_nodes: Option<i64>,
    ) -> Result<Graph> {
        let n = match n_nodes {
            Some(n) => n,
            None => match sources.iter().chain(targets).max() {
                Some(&largest) => largest.saturating_add(1),
                None => return Err(usage("no arcs: give n_nodes".into())),
            },
        };
        let mut g = Graph::new()?;
        let group = g.add_nodes(n)?;
        g.add_edges(group, group, sources, targets, weights, types)?;
        Ok(g)
    }

    /// A graph of one node group read from an edge-list file by the library
    /// (CSV, TSV or whitespace; `flags` from [`edgelist`], 0 detects).
    /// Nodes are numbered in order of first appearance and keep their names.
    pub fn read_edgelist<P: AsRef<Path>>(path: P, flags: u32) -> Result<Graph> {
        let path = path_cstring(path.as_ref())?;
        let g = Graph::new()?;
        let mut group = 0;
        check(unsafe {
            sys::fib_graph_read_edgelist(g.ptr.as_ptr(), path.as_ptr(), flags, &mut group)
        })?;
        Ok(g)
    }

    /// Chooses how the colouring of node groups starts.
    pub fn set_convention(&mut self, convention: Convention) -> Result<()> {
        let code = match convention {
            Convention::Pure => sys::FIB_CONVENTION_PURE,
            Convention::Published => sys::FIB_CONVENTION_PUBLISHED,
            Convention::NetworkFibers => sys::FIB_CONVENTION_NETWORKFIBERS,
        };
        check(unsafe { sys::fib_graph_set_convention(self.ptr.as_ptr(), code) })
    }

    /// The names of a node group's nodes (a group read from a file), or
    /// None when it has none.
    pub fn node_names(&self, group: i32) -> Result<Option<Vec<String>>> {
        let n = self.group_info(group)?.n_units;
        if unsafe { sys::fib_graph_node_name(self.raw(), group, 0) }.is_null() {
            return Ok(None);
        }
        Ok(Some(
            (0..n).map(|i| cstr(unsafe { sys::fib_graph_node_name(self.raw(), group, i) })).collect(),
        ))
    }

    /// The edge-type names of a group read from a file, in type-id order,
    /// or None (untyped, or not from a file).
    pub fn edge_type_names(&self, group: i32) -> Result<Option<Vec<String>>> {
        let mut n = 0;
        check(unsafe { sys::fib_graph_num_edge_types(self.raw(), group, &mut n) })?;
        if n == 0 || unsafe { sys::fib_graph_edge_type_name(self.raw(), group, 0) }.is_null() {
            return Ok(None);
        }
        Ok(Some(
            (0..n).map(|t| cstr(unsafe { sys::fib_graph_edge_type_name(self.raw(), group, t) })).collect(),
        ))
    }

    /// The arcs of the quotient (base) graph of the node groups under
    /// `coloring`, sorted by (source group, source class, target group,
    /// target class, type).
    pub fn quotient(&self, coloring: &Coloring<'_>) -> Result<Vec<QuotientArc>> {
        let mut q = ptr::null_mut();
        check(unsafe { sys::fib_quotient_create(self.raw(), coloring.ptr.as_ptr(), &mut q) })?;
        let mut m = 0;
        let mut result = check(unsafe { sys::fib_quotient_num_arcs(q, &mut m) });
        let n = m.max(0) as usize;
        let (mut sg, mut sc, mut tg, mut tc) = (vec![0i32; n], vec![0i64; n], vec![0i32; n], vec![0i64; n]);
        let (mut ty, mut w, mut mult) = (vec![0i32; n], vec![0f64; n], vec![0i64; n]);
        if result.is_ok() {
            result = check(unsafe {
                sys::fib_quotient_arcs(
                    q,
                    m,
                    sg.as_mut_ptr(),
                    sc.as_mut_ptr(),
                    tg.as_mut_ptr(),
                    tc.as_mut_ptr(),
                    ty.as_mut_ptr(),
                    w.as_mut_ptr(),
                    mult.as_mut_ptr(),
                )
            });
        }
        unsafe { sys::fib_quotient_free(q) };
        result?;
        Ok((0..n)
            .map(|a| QuotientArc {
                source_group: sg[a],
                source_class: sc[a],
                target_group: tg[a],
                target_class: tc[a],
                edge_type: ty[a],
                weight: w[a],
                multiplicity: mult[a],
            })
            .collect())
    }
}
