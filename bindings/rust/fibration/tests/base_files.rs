//! Bases saved and loaded back (Base::save, Base::load,
//! Base::original_units) and lifts in a chosen dtype (Base::lift_as).

use fibration::{Activation, Base, BudgetOptions, ColorOptions, Graph};
use std::path::PathBuf;

/// A file of this test in the temporary folder, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("fibration-rust-{}-{}", std::process::id(), name)))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// 6 inputs in 3 planted classes (equal columns of the first block) ->
/// 6 hidden ReLU units in 3 planted classes (equal rows) -> 2 outputs.
/// The weights are decimals float32 cannot hold.
fn planted() -> (Graph, i32, i32) {
    let column = |k: usize| [0.1, -0.7, 0.3][k % 3];
    let row = |h: usize| [1.1, 0.6, -0.9][h % 3];
    let w1: Vec<f64> = (0..6 * 6).map(|i| row(i / 6) * column(i % 6) + 0.01 * (i / 6 % 3) as f64).collect();
    let b1: Vec<f64> = (0..6).map(|h| 0.05 * (h % 3) as f64 + 0.1).collect();
    let w2: Vec<f64> = (0..2 * 6).map(|i| 0.1 * (i % 7) as f64 - 0.3).collect();
    let mut g = Graph::new().unwrap();
    let x = g.add_input(6).unwrap();
    let h = g.add_dense(x, 6, &w1, Some(&b1)).unwrap();
    g.set_activation(h, Activation::Relu).unwrap();
    g.add_dense(h, 2, &w2, Some(&[0.2, -0.1])).unwrap();
    (g, x, h)
}

fn inputs(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0).collect()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (u, v) in a.iter().zip(b) {
        assert!((u - v).abs() <= tol, "{} vs {} (tolerance {})", u, v, tol);
    }
}

/// Saves `base`, loads it back and checks the loaded base against it: the
/// same base graph (forward), the same original widths and projections,
/// and the same lift.
fn round_trip(original: &Graph, base: &Base<'_>, file: &TempFile) {
    base.save(&file.0).unwrap();
    let loaded = Base::load(&file.0).unwrap();
    let n_groups = original.num_groups().unwrap();
    assert_eq!(loaded.graph().num_groups().unwrap(), base.graph().num_groups().unwrap());
    for group in 0..n_groups {
        let n = original.group_info(group).unwrap().n_units;
        assert_eq!(loaded.original_units(group).unwrap(), n, "group {}", group);
        assert_eq!(base.original_units(group).unwrap(), n, "group {}", group);
        assert_eq!(loaded.projection(group, n).unwrap(), base.projection(group, n).unwrap(), "group {}", group);
        assert_eq!(
            loaded.graph().group_info(group).unwrap().n_units,
            base.graph().group_info(group).unwrap().n_units
        );
    }
    let (n_in, _) = base.graph().io_width().unwrap();
    let xs = inputs(4 * n_in as usize);
    assert_close(&loaded.graph().forward(4, &xs).unwrap(), &base.graph().forward(4, &xs).unwrap(), 1e-12);
    let (n_in, _) = original.io_width().unwrap();
    let xs = inputs(4 * n_in as usize);
    let lifted = loaded.lift(None).unwrap();
    assert_eq!(lifted.num_groups().unwrap(), n_groups);
    assert_close(&lifted.forward(4, &xs).unwrap(), &base.lift(None).unwrap().forward(4, &xs).unwrap(), 1e-12);
}

#[test]
fn saved_fibers_base_loads_back_with_the_same_forward_projection_and_lift() {
    let (g, _, h) = planted();
    let base = g.compress(&g.color(&ColorOptions::default()).unwrap()).unwrap();
    assert_eq!(base.graph().group_info(h).unwrap().n_units, 3);
    let file = TempFile::new("fibers.safetensors");
    round_trip(&g, &base, &file);
    // the loaded base alone lifts to a network with the original's outputs
    let loaded = Base::load(&file.0).unwrap();
    let xs = inputs(4 * 6);
    assert_close(&loaded.lift(None).unwrap().forward(4, &xs).unwrap(), &g.forward(4, &xs).unwrap(), 1e-12);
}

#[test]
fn saved_budget_base_with_merged_inputs_keeps_its_input_projection() {
    let (g, x, _) = planted();
    let options = BudgetOptions { merge_inputs: true, ..Default::default() };
    let (base, _) = g.compress_to_budget(0.6, &options).unwrap();
    let proj = base.projection(x, 6).unwrap();
    assert!(base.graph().group_info(x).unwrap().n_units < 6, "no input merged: {:?}", proj);
    round_trip(&g, &base, &TempFile::new("budget.safetensors"));
}

#[test]
fn loading_a_missing_file_is_an_io_error() {
    let file = TempFile::new("missing.safetensors");
    let err = Base::load(&file.0).unwrap_err();
    assert_eq!(err.code, fibration_sys::FIB_E_IO, "{}", err);
    assert!(err.message.contains("missing.safetensors"), "{}", err.message);
}

fn dense_weights(g: &Graph) -> Vec<f64> {
    let mut all = Vec::new();
    for group in 0..g.num_groups().unwrap() {
        if g.group_info(group).unwrap().sources.is_empty() {
            continue;
        }
        let (w, b) = g.read_dense(group).unwrap();
        all.extend(w);
        all.extend(b);
    }
    all
}

fn holds_in_f32(v: f64) -> bool {
    v as f32 as f64 == v
}

#[test]
fn lift_as_f32_rounds_every_lifted_weight_and_f64_keeps_them() {
    let (g, _, _) = planted();
    let base = g.compress(&g.color(&ColorOptions::default()).unwrap()).unwrap();
    let xs = inputs(4 * 6);
    let y = g.forward(4, &xs).unwrap();
    let wide = base.lift_as::<f64>(None).unwrap();
    let narrow = base.lift_as::<f32>(None).unwrap();
    let (w64, w32) = (dense_weights(&wide), dense_weights(&narrow));
    assert_eq!(w64.len(), w32.len());
    assert!(w32.iter().all(|&v| holds_in_f32(v)), "a float32 lift holds a float64 weight");
    assert!(w64.iter().any(|&v| !holds_in_f32(v)), "the float64 lift was rounded");
    for (a, b) in w64.iter().zip(&w32) {
        assert_eq!(*b, *a as f32 as f64);
    }
    assert_close(&wide.forward(4, &xs).unwrap(), &y, 1e-12);
    assert_close(&narrow.forward(4, &xs).unwrap(), &y, 1e-5);
    // the default lift of a float64 base is the float64 one
    assert_eq!(dense_weights(&base.lift(None).unwrap()), w64);
}

#[test]
fn base_saved_as_f32_loads_back_rounded_with_its_projection() {
    let (g, _, h) = planted();
    let base = g.compress(&g.color(&ColorOptions::default()).unwrap()).unwrap();
    assert!(dense_weights(base.graph()).iter().any(|&v| !holds_in_f32(v)));
    let file = TempFile::new("f32.safetensors");
    base.save_as::<f32>(&file.0).unwrap();
    let loaded = Base::load(&file.0).unwrap();
    let (saved, kept) = (dense_weights(loaded.graph()), dense_weights(base.graph()));
    assert_eq!(saved.len(), kept.len());
    for (a, b) in saved.iter().zip(&kept) {
        assert_eq!(*a, *b as f32 as f64);
    }
    assert_eq!(loaded.projection(h, 6).unwrap(), base.projection(h, 6).unwrap());
    let xs = inputs(4 * 6);
    assert_close(&loaded.lift(None).unwrap().forward(4, &xs).unwrap(), &g.forward(4, &xs).unwrap(), 1e-5);
}
