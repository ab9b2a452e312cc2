//! The safe API against the freshly built library.

use fibration::{Activation, BudgetOptions, BudgetTolerance, ColorOptions, Graph, Symmetry, Tolerance};

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

/// splitmix64: uniform doubles in [-1, 1), the generator of the examples.
struct SplitMix64(u64);

impl SplitMix64 {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn fill(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

/// A random ReLU MLP over `widths` (input first); returns it and its
/// dense groups.
fn random_mlp(seed: u64, widths: &[usize]) -> (Graph, Vec<i32>) {
    let mut rng = SplitMix64(seed);
    let mut g = Graph::new().unwrap();
    let mut prev = g.add_input(widths[0] as i64).unwrap();
    let mut dense = Vec::new();
    for (l, pair) in widths.windows(2).enumerate() {
        let (w, b) = (rng.fill(pair[1] * pair[0]), rng.fill(pair[1]));
        prev = g.add_dense(prev, pair[1] as i64, &w, Some(&b)).unwrap();
        if l + 2 < widths.len() {
            g.set_activation(prev, Activation::Relu).unwrap();
        }
        dense.push(prev);
    }
    (g, dense)
}

#[test]
fn budget_defaults_are_the_librarys() {
    // BudgetOptions::default() writes its fields over fib_budget_options_init's:
    // each must be the library's default, or Default would change a budget
    let mut raw = std::mem::MaybeUninit::<fibration_sys::fib_budget_options>::zeroed();
    let size = std::mem::size_of::<fibration_sys::fib_budget_options>();
    assert_eq!(unsafe { fibration_sys::fib_budget_options_init(raw.as_mut_ptr(), size) }, 0);
    let raw = unsafe { raw.assume_init() };
    let d = BudgetOptions::default();
    assert_eq!(d.tolerance, BudgetTolerance::Auto);
    assert_eq!(raw.tolerance, 0);
    assert_eq!(d.sensitivity_power, raw.sensitivity_power);
    assert_eq!(d.refine_iterations, raw.refine_iterations);
    assert_eq!(d.merge_inputs, raw.merge_inputs != 0);
    assert_eq!(d.input_sensitivity, raw.input_sensitivity);
    assert_eq!(d.synthetic_scale, raw.synthetic_scale);
    assert_eq!(d.synthetic_ridge, raw.synthetic_ridge);
    assert_eq!(d.n_threads, raw.n_threads);
}

#[test]
fn budget_is_met_and_deterministic() {
    let (g, dense) = random_mlp(7, &[12, 40, 30, 4]);
    let total = g.num_parameters().unwrap();
    let options = BudgetOptions::default();
    let (base, report) = g.compress_to_budget(0.5, &options).unwrap();
    let n = base.graph().num_parameters().unwrap();
    assert_eq!(n, report.n_parameters);
    assert!(n as f64 <= 0.5 * total as f64, "{} of {}", n, total);
    assert!(n < total);
    assert!(report.bound.is_finite() && report.bound >= 0.0);
    // ReLU everywhere: the automatic grouping is the scaled one
    assert_eq!(report.chosen_tolerance, BudgetTolerance::ScaledWard);
    // the input and output groups keep their widths
    assert_eq!(base.graph().io_width().unwrap(), (12, 4));
    let (again, report2) = g.compress_to_budget(0.5, &options).unwrap();
    assert_eq!(report, report2);
    for &d in &dense {
        assert_eq!(base.graph().read_dense(d).unwrap(), again.graph().read_dense(d).unwrap());
    }
    // a fixed grouping is reported back
    let ward = BudgetOptions { tolerance: BudgetTolerance::Ward, n_threads: 1, ..Default::default() };
    let (wbase, wreport) = g.compress_to_budget(0.5, &ward).unwrap();
    assert_eq!(wreport.chosen_tolerance, BudgetTolerance::Ward);
    assert!(wbase.graph().num_parameters().unwrap() as f64 <= 0.5 * total as f64);
    assert!(!report.corrected);
    // the synthetic correction: same classes and parameters, other weights
    let fixed = BudgetOptions { synthetic_scale: 1.0, ..Default::default() };
    let (cbase, creport) = g.compress_to_budget(0.5, &fixed).unwrap();
    assert!(creport.corrected);
    assert_eq!(creport.n_parameters, report.n_parameters);
    assert_ne!(cbase.graph().read_dense(dense[0]).unwrap(), base.graph().read_dense(dense[0]).unwrap());
    // its ridge: the default is the library's, another moves the weights,
    // a negative one is refused
    let at = |ridge: f64| BudgetOptions {
        synthetic_scale: 1.0,
        synthetic_ridge: ridge,
        ..Default::default()
    };
    let (same, _) = g.compress_to_budget(0.5, &at(1e-3)).unwrap();
    let (bare, breport) = g.compress_to_budget(0.5, &at(1e-10)).unwrap();
    assert!(breport.corrected);
    assert_eq!(breport.n_parameters, creport.n_parameters);
    for &d in &dense {
        assert_eq!(same.graph().read_dense(d).unwrap(), cbase.graph().read_dense(d).unwrap());
    }
    let moved = |d| bare.graph().read_dense(d).unwrap() != cbase.graph().read_dense(d).unwrap();
    assert!(dense.iter().any(|&d| moved(d)));
    assert!(g.compress_to_budget(0.5, &at(-1.0)).is_err());
}

#[test]
fn budget_merges_planted_input_classes() {
    const N_IN: usize = 24;
    const K_IN: usize = 6;
    const N_H: usize = 16;
    const N_OUT: usize = 3;
    const BATCH: usize = 8;
    let cls: Vec<usize> = (0..N_IN).map(|k| (k * 5 + k / 7) % K_IN).collect();
    let mut rng = SplitMix64(3);
    let r = rng.fill(N_H * K_IN);
    // the first block's columns are equal within each input class
    let w1: Vec<f64> = (0..N_H * N_IN).map(|i| r[(i / N_IN) * K_IN + cls[i % N_IN]]).collect();
    let (b1, w2, b2) = (rng.fill(N_H), rng.fill(N_OUT * N_H), rng.fill(N_OUT));
    let mut g = Graph::new().unwrap();
    let x = g.add_input(N_IN as i64).unwrap();
    let h = g.add_dense(x, N_H as i64, &w1, Some(&b1)).unwrap();
    g.set_activation(h, Activation::Relu).unwrap();
    g.add_dense(h, N_OUT as i64, &w2, Some(&b2)).unwrap();
    let total = g.num_parameters().unwrap();
    let own = (K_IN * N_H + N_H + N_H * N_OUT + N_OUT + N_IN) as i64;
    let options = BudgetOptions { merge_inputs: true, ..Default::default() };
    let (base, report) = g.compress_to_budget(own as f64 / total as f64, &options).unwrap();
    let bg = base.graph();
    assert_eq!(bg.group_info(x).unwrap().n_units, K_IN as i64);
    // merged inputs count one parameter each (their class index)
    assert_eq!(report.n_parameters, bg.num_parameters().unwrap() + N_IN as i64);
    assert!(report.n_parameters <= own);
    let proj = base.projection(x, N_IN as i64).unwrap();
    for a in 0..N_IN {
        for c in 0..N_IN {
            assert_eq!(proj[a] == proj[c], cls[a] == cls[c], "inputs {} and {}", a, c);
        }
    }
    // the base fed the class means gives the original's outputs
    let xs = rng.fill(BATCH * N_IN);
    let mut count = [0.0f64; K_IN];
    for &p in &proj {
        count[p as usize] += 1.0;
    }
    let mut means = vec![0.0f64; BATCH * K_IN];
    for s in 0..BATCH {
        for k in 0..N_IN {
            let p = proj[k] as usize;
            means[s * K_IN + p] += xs[s * N_IN + k] / count[p];
        }
    }
    let y = g.forward(BATCH as i64, &xs).unwrap();
    let yb = bg.forward(BATCH as i64, &means).unwrap();
    for (u, v) in y.iter().zip(&yb) {
        assert!((u - v).abs() <= 1e-12, "{} vs {}", u, v);
    }
    // without the option the inputs stay
    let (plain, _) = g.compress_to_budget(0.9, &BudgetOptions::default()).unwrap();
    assert_eq!(plain.graph().group_info(x).unwrap().n_units, N_IN as i64);
}

#[test]
fn budget_outside_its_range_is_an_error() {
    let (g, _) = random_mlp(11, &[6, 8, 8, 2]);
    for budget in [0.0, 1.5, -0.5, f64::NAN] {
        let err = g.compress_to_budget(budget, &BudgetOptions::default()).unwrap_err();
        assert_eq!(err.code, fibration_sys::FIB_E_INVALID, "budget {}", budget);
        assert!(!err.message.is_empty());
    }
    let bad = BudgetOptions { merge_inputs: true, input_sensitivity: 0.0, ..Default::default() };
    assert!(g.compress_to_budget(0.5, &bad).is_err());
}
