//! The safe API against the freshly built library.

use fibration::{Activation, ColorOptions, Graph, Symmetry, Tolerance};

/// 2 inputs -> 4 hidden units in 2 planted classes -> 1 output.
fn planted() -> (Graph, i32) {
    let mut g = Graph::new().unwrap();
    let x = g.add_input(2).unwrap();
    let w = [0.5, -1.0, 2.0, 0.25, 0.5, -1.0, 2.0, 0.25];
    let h = g.add_dense(x, 4, &w, Some(&[0.1, 0.2, 0.1, 0.2])).unwrap();
    g.set_activation(h, Activation::Relu).unwrap();
    g.add_dense(h, 1, &[1.0, 2.0, 3.0, 4.0], None).unwrap();
    (g, h)
}

#[test]
fn version_matches_the_generated_header() {
    let (major, minor, _) = fibration::version();
    assert_eq!(major, fibration_sys::FIB_VERSION_MAJOR);
    assert!(minor >= fibration_sys::FIB_VERSION_MINOR);
}

#[test]
fn colours_and_compresses_a_planted_network() {
    let (g, h) = planted();
    let fibers = g.color(&ColorOptions::default()).unwrap();
    assert_eq!(fibers.num_classes(h).unwrap(), 2);
    assert_eq!(fibers.colors(h, 4).unwrap(), vec![0, 1, 0, 1]);
    assert_eq!(fibers.class_sizes(h).unwrap(), vec![2, 2]);
    assert!(g.is_balanced(&fibers, 0.0).unwrap());
    let base = g.compress(&fibers).unwrap();
    assert_eq!(base.graph().group_info(h).unwrap().n_units, 2);
    assert_eq!(base.projection(h, 4).unwrap(), vec![0, 1, 0, 1]);
    let x: [f64; 4] = [0.3, -0.7, 1.5, 2.0];
    let a = g.forward(2, &x).unwrap();
    let b = base.graph().forward(2, &x).unwrap();
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-12, "{} vs {}", u, v);
    }
    let lifted = base.lift(None).unwrap();
    assert_eq!(lifted.group_info(h).unwrap().n_units, 4);
    let c = lifted.forward(2, &x).unwrap();
    for (u, v) in a.iter().zip(&c) {
        assert!((u - v).abs() < 1e-12);
    }
}

#[test]
fn float32_weights_and_covers() {
    let mut g = Graph::new().unwrap();
    let x = g.add_input(2).unwrap();
    let h = g.add_dense::<f32>(x, 2, &[1.0, 2.0, 1.0, 2.0], None).unwrap();
    g.set_activation(h, Activation::Tanh).unwrap();
    g.add_dense::<f32>(h, 1, &[1.0, 1.0], None).unwrap();
    let covers = g
        .color(&ColorOptions {
            symmetry: Symmetry::Covers,
            tolerance: Tolerance::Abs(1e-6),
            n_threads: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(covers.num_classes(h).unwrap(), 1);
    let out = g.forward::<f32>(1, &[1.0, 0.0]).unwrap();
    assert!((out[0] - 2.0 * 1.0f32.tanh()).abs() < 1e-6);
}

#[test]
fn errors_carry_code_name_and_message() {
    let mut g = Graph::new().unwrap();
    let err = g.add_dense(7, 1, &[1.0], None).unwrap_err();
    assert_eq!(err.code, fibration_sys::FIB_E_RANGE);
    assert_eq!(err.name, "FIB_E_RANGE");
    assert!(!err.message.is_empty());
    let x = g.add_input(2).unwrap();
    let err = g.add_dense(x, 1, &[1.0, f64::NAN], None).unwrap_err();
    assert_eq!(err.code, fibration_sys::FIB_E_NONFINITE);
    let err = g.add_dense(x, 2, &[1.0], None).unwrap_err();
    assert_eq!(err.code, fibration_sys::FIB_E_SHAPE);
}

#[test]
fn break_symmetry_keeps_the_function() {
    let (g, _) = planted();
    let fresh = g.break_symmetry(None, 7).unwrap();
    let x: [f64; 2] = [0.3, -0.7];
    let (a, b) = (g.forward(1, &x).unwrap(), fresh.forward(1, &x).unwrap());
    assert!((a[0] - b[0]).abs() < 1e-12);
}

#[test]
fn handles_move_between_threads() {
    let (g, h) = planted();
    let handle = std::thread::spawn(move || {
        let fibers = g.color(&ColorOptions::default()).unwrap();
        fibers.num_classes(h).unwrap()
    });
    assert_eq!(handle.join().unwrap(), 2);
}

#[test]
fn many_create_free_cycles() {
    for _ in 0..2000 {
        let (g, _) = planted();
        let c = g.color(&ColorOptions::default()).unwrap();
        let _b = g.compress(&c).unwrap();
    }
}

#[test]
fn every_header_function_is_declared() {
    assert!(fibration_sys::FUNCTION_NAMES.contains(&"fib_graph_add_dense"));
    assert!(fibration_sys::FUNCTION_NAMES.len() >= 39);
}

#[test]
fn nested_colourings_never_split_a_class() {
    let mut g = Graph::new().unwrap();
    let x = g.add_input(2).unwrap();
    let w = [1.0, 0.0, 1.05, 0.0, 0.0, 1.0, 0.0, 1.5];
    let h = g.add_dense(x, 4, &w, None).unwrap();
    g.set_activation(h, Activation::Relu).unwrap();
    g.add_dense(h, 1, &[1.0, 1.0, 1.0, 1.0], None).unwrap();
    let options = ColorOptions { tolerance: Tolerance::Abs(0.0), ..Default::default() };
    let levels = g.color_nested(&options, &[0.01, 0.1, 1.0]).unwrap();
    let counts: Vec<i64> = levels.iter().map(|c| c.num_classes(h).unwrap()).collect();
    assert_eq!(counts[0], 4);
    assert_eq!(counts[1], 3); // units 0 and 1 differ by 0.05
    assert!(counts.windows(2).all(|p| p[1] <= p[0]));
    for pair in levels.windows(2) {
        let (fine, coarse) = (pair[0].colors(h, 4).unwrap(), pair[1].colors(h, 4).unwrap());
        for i in 0..4 {
            for j in 0..4 {
                assert!(fine[i] != fine[j] || coarse[i] == coarse[j]);
            }
        }
    }
    // EXACT has no levels to nest
    assert!(g.color_nested(&ColorOptions::default(), &[0.1]).is_err());
}

#[test]
fn scale_aware_linkage_merges_scaled_copies() {
    let mut g = Graph::new().unwrap();
    let x = g.add_input(2).unwrap();
    // unit 1 is unit 0 times 2 (incoming), its outgoing weight halved
    let h = g.add_dense(x, 2, &[1.0, 2.0, 2.0, 4.0], None).unwrap();
    g.set_activation(h, Activation::Relu).unwrap();
    g.add_dense(h, 1, &[2.0, 1.0], None).unwrap();
    assert_eq!(g.color(&ColorOptions::default()).unwrap().num_classes(h).unwrap(), 2);
    let scaled = ColorOptions { tolerance: Tolerance::Complete(1e-9), scaled: true, ..Default::default() };
    let c = g.color(&scaled).unwrap();
    assert_eq!(c.num_classes(h).unwrap(), 1);
    let base = g.compress(&c).unwrap();
    let input: [f64; 2] = [0.3, 0.9];
    let (a, b) = (g.forward(1, &input).unwrap(), base.graph().forward(1, &input).unwrap());
    assert!((a[0] - b[0]).abs() < 1e-12, "{} vs {}", a[0], b[0]);
}
